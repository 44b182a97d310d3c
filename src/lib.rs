//! poplar: a POP3 server (RFC 1939, RFC 2449, RFC 3206) for Maildir and mbox maildrops.
//!
//! # Layout
//!
//! Arrows point one way: front ends → `conn` → `session` → {`proto`, `auth`, `maildrop`}; `maildrop` → `lock`.
//!
//! - [`proto`]: the pure codec. Line framing, command parsing, status lines and response codes, the
//!   multi-line body encoder. No I/O beyond a caller-supplied `BufRead`/`Write`.
//! - [`session`]: the RFC 1939 state machine (AUTHORIZATION → TRANSACTION → UPDATE), with the SASL
//!   mechanisms of AUTH (PLAIN, LOGIN, SCRAM-SHA-256). Writes replies into a `Write`; never touches a
//!   socket or a clock.
//! - [`auth`]: who the user is: the passwd-file, system accounts, password schemes, APOP, SCRAM's keys
//!   and the key of its derived salts, `Secret`.
//! - [`maildrop`]: what the user has: Maildir and mbox behind the `Maildrop` trait, mail-location templates,
//!   the Maildir size cache, Maildir unique-ids from Dovecot's `dovecot-uidlist` in its `pop3_uidl_format`,
//!   and the Maildir++ `maildirsize` that UPDATE appends its removals to.
//! - [`lock`]: session `flock`s and the mbox delivery-agent locks, as RAII guards.
//! - [`conn`]: the one loop that reads the network: bounded lines, timeouts, flush-when-idle (PIPELINING).
//! - [`stream`]: one stream type over TCP and stdin/stdout, with poll-based timeouts, and TLS over either.
//! - [`tls`]: the certificate and key (PEM), checked at start-up and reloaded on SIGHUP (feature `tls`).
//! - [`server`], [`inetd`]: the two front ends.
//! - [`startup`]: what both front ends share: the session services built from the configuration (user
//!   database, TLS certificate, APOP host), the start-up error, keepalive, the client behind a PROXY header.
//! - [`signals`]: the signals both front ends ignore, and the self-pipe that turns SIGTERM, SIGINT and
//!   SIGHUP into events for the standalone server's accept loop.
//! - [`workers`]: session threads kept after a clean session for the next one.
//! - [`stack`]: a session thread's stack bounds, and the giving back of the pages a TLS handshake touched.
//! - [`pages`]: memory pages given back to the kernel (a stack's below its frames, idle RETR buffers).
//! - [`listen`]: the standalone server's listening sockets, bound from the settings or passed by systemd.
//! - [`activation`]: systemd socket activation (`LISTEN_FDS`), listeners the standalone server adopts.
//! - [`notify`]: systemd's readiness protocol (`NOTIFY_SOCKET`): ready, reloading, stopping.
//! - [`reload`]: what SIGHUP swaps: the settings and user database new sessions start with.
//! - [`cli`], [`config`]: argv and `key = value` files, sharing one setter, into a typed `Config`.
//! - [`check`]: `--check-config`, validating the settings and printing the effective ones.
//! - [`admission`]: the per-address session cap.
//! - [`capabilities`]: the three Linux capabilities a root server keeps, and the dropping of the rest.
//! - [`privs`]: privilege changes (setuid, setgroups; per-thread file-system ids) and the privilege model.
//! - [`logging`]: env_logger on stderr, or syslog (facility mail) when stderr is the client's socket.
//! - [`proxy`]: the PROXY protocol v1/v2 header a load balancer puts before the client's bytes; pure.

pub mod activation;
pub mod admission;
pub mod auth;
pub mod capabilities;
pub mod check;
pub mod cli;
pub mod config;
pub mod conn;
pub mod inetd;
pub mod listen;
pub mod lock;
pub mod logging;
pub mod maildrop;
pub mod notify;
pub mod pages;
pub mod privs;
pub mod proto;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod session;
pub mod signals;
pub mod stack;
pub mod startup;
pub mod stream;
pub mod tls;
pub mod workers;
