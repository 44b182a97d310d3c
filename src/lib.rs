//! poplar: a POP3 server (RFC 1939, RFC 2449, RFC 3206) for Maildir and mbox maildrops.
//!
//! # Layout
//!
//! Arrows point one way: front ends → `conn` → `session` → {`proto`, `auth`, `maildrop`}; `maildrop` → `lock`.
//!
//! - [`proto`]: the pure codec. Line framing, command parsing, status lines and response codes, the
//!   multi-line body encoder. No I/O beyond a caller-supplied `BufRead`/`Write`.
//! - [`session`]: the RFC 1939 state machine (AUTHORIZATION → TRANSACTION → UPDATE). Writes replies into a
//!   `Write`; never touches a socket or a clock.
//! - [`auth`]: who the user is: the passwd-file, password schemes, APOP, `Secret`.
//! - [`maildrop`]: what the user has: Maildir and mbox behind the `Maildrop` trait, mail-location templates.
//! - [`lock`]: session `flock`s and the mbox delivery-agent locks, as RAII guards.
//! - [`conn`]: the one loop that reads the network: bounded lines, timeouts, flush-when-idle (PIPELINING).
//! - [`stream`]: one stream type over TCP and stdin/stdout, with poll-based timeouts.
//! - [`server`], [`inetd`]: the two front ends; [`admission`]: the per-address session cap.
//! - [`cli`], [`config`]: argv and `key = value` files, sharing one setter, into a typed `Config`.
//! - [`privs`]: privilege changes (setuid, setgroups; per-thread file-system ids) and the privilege model.
//! - [`logging`]: env_logger on stderr, or syslog (facility mail) when stderr is the client's socket.

pub mod admission;
pub mod auth;
pub mod cli;
pub mod config;
pub mod conn;
pub mod inetd;
pub mod lock;
pub mod logging;
pub mod maildrop;
pub mod privs;
pub mod proto;
pub mod server;
pub mod session;
pub mod stream;
