//! The RFC 1939 state machine: AUTHORIZATION → TRANSACTION → (QUIT) UPDATE. One call per command line;
//! replies are written into a `Write`. This module never touches a socket or a clock: delays are asked of
//! the caller through [`Step::Delay`], and TLS is the caller's business too: the session only says when
//! to start it ([`Step::StartTls`]) and is told when it is up ([`Session::tls_established`]).

mod authorization;
pub mod sasl;
pub mod scram;
mod stls_auth;
pub mod table;
mod transaction;

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::auth::{Account, Authenticator, SaltKey};
use crate::maildrop::location::Location;
use crate::maildrop::{Maildrop, Tidy};
use crate::proto::command::{self, Command};
use crate::proto::reply;
use table::Table;

/// What every session shares: the user database, where mail lives, and the policy knobs.
pub struct Services {
    pub auth: Arc<dyn Authenticator>,
    pub mail: Location,
    /// How the backends read maildrops (e.g. the mbox unique-id source).
    pub maildrop: crate::maildrop::Options,
    /// Delay before answering the first failed login; later failures wait longer (see `failure_delay`).
    pub auth_failure_delay: Duration,
    /// Failed logins allowed on one connection; the last one closes it.
    pub max_auth_attempts: u32,
    /// How logged-in sessions take on their account's identity before the maildrop is opened.
    pub identity: Arc<dyn Identity>,
    /// AUTHORIZATION must end (in a login) this long after the greeting.
    pub login_timeout: Duration,
    /// The autologout timer of TRANSACTION, and the send timeout.
    pub timeout: Duration,
    /// Sessions inside UPDATE: shutdown waits for these, whatever its grace period, and then closes
    /// the gate. Shared by every configuration a reload makes.
    pub updates: Arc<UpdateGate>,
    /// STLS is offered (RFC 2595): a certificate is configured and the front end can start TLS.
    pub stls: bool,
    /// Refuse passwords sent in the clear: USER/PASS and AUTH PLAIN/LOGIN wait until TLS is up (AUTH
    /// SCRAM-SHA-256 does not send the password, and APOP only a digest).
    pub no_plaintext: bool,
    /// The key of the SCRAM salts derived for users without a stored one (`scram-salt-key`, or drawn
    /// once per process).
    pub salt_key: SaltKey,
    /// `lowercase-users`: an authorization identity may differ from the user name in case (the user
    /// database sees both in lowercase).
    pub lowercase_users: bool,
}

impl Services {
    /// Services with the default limits and no identity change, for front ends to adjust.
    pub fn new(auth: Arc<dyn Authenticator>, mail: Location) -> Services {
        let timeout = Duration::from_secs(crate::config::DEFAULT_TIMEOUT_SECS);
        Services {
            auth,
            mail,
            maildrop: crate::maildrop::Options::default(),
            auth_failure_delay: Duration::from_secs(crate::config::DEFAULT_AUTH_FAILURE_DELAY_SECS),
            max_auth_attempts: crate::config::DEFAULT_MAX_AUTH_ATTEMPTS,
            identity: Arc::new(SameIdentity),
            login_timeout: timeout,
            timeout,
            updates: Arc::new(UpdateGate::default()),
            stls: false,
            no_plaintext: false,
            salt_key: SaltKey::per_process(),
            lowercase_users: false,
        }
    }
}

/// Takes on a logged-in account's operating-system identity before its maildrop is opened. The session
/// only asks; the system calls live in `privs`. An error ends the session with `[SYS/PERM]`.
pub trait Identity: Send + Sync {
    /// `mbox`: the maildrop is an mbox, the one kind `mail-group` (a spool's group) is given for.
    /// `Ok(Some(uid))` when the session was given such a group: the mbox it opens must then belong to
    /// `uid` under that one name, or the group's rights would reach another user's spool through a
    /// hard link (or a file planted in a spool anyone may write).
    fn assume(&self, account: &Account, mbox: bool) -> Result<Option<u32>, String>;
    /// Undoes `assume` for the calling thread, verified, so that the thread may serve another session;
    /// an error means it must not.
    fn restore(&self) -> Result<(), String> {
        Ok(())
    }
}

/// No identity change: unprivileged servers and tests.
pub struct SameIdentity;

impl Identity for SameIdentity {
    fn assume(&self, _account: &Account, _mbox: bool) -> Result<Option<u32>, String> {
        Ok(None)
    }
}

/// The failed-login delays grow with each failure on a connection (delay × failures), up to this cap:
/// a guesser pays more per attempt, a user who mistyped once waits only the configured delay.
pub const MAX_AUTH_FAILURE_DELAY: Duration = Duration::from_secs(30);

/// The delay before answering the `failures`-th failed login of a connection.
pub fn failure_delay(delay: Duration, failures: u32) -> Duration {
    delay
        .saturating_mul(failures.max(1))
        .min(MAX_AUTH_FAILURE_DELAY.max(delay))
}

/// What the caller does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Wait this long before sending the reply (failed logins), then continue.
    Delay(Duration),
    /// Close the connection (QUIT was handled).
    Quit,
    /// STLS was accepted: flush the reply, discard any input already received, do the TLS handshake,
    /// then call [`Session::tls_established`].
    StartTls,
}

/// How a session ended, for the session-end log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Quit,
    UpdateFailed,
    Timeout,
    Closed,
    Error,
    /// Closed after `--max-auth-attempts` failed logins.
    AuthFailures,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Quit => "quit",
            Outcome::UpdateFailed => "update-failed",
            Outcome::Timeout => "timeout",
            Outcome::Closed => "closed",
            Outcome::Error => "error",
            Outcome::AuthFailures => "auth-failures",
        }
    }
}

/// Counters for the session-end log line.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub user: Option<String>,
    pub retr: u64,
    pub dele: u64,
    pub bytes: u64,
    pub outcome: Option<Outcome>,
}

enum State {
    Authorization {
        user: Option<Vec<u8>>,
    },
    /// Still AUTHORIZATION, in the middle of a SASL exchange: the next line is a client response.
    /// `user`: a USER given before AUTH, back in place if the exchange fails (RFC 5034 section 4: the
    /// server "MUST behave as if the client had not issued the AUTH command").
    Sasl {
        exchange: sasl::Exchange,
        user: Option<Vec<u8>>,
    },
    Transaction(Box<Transaction>),
    Finished,
}

/// A logged-in session's maildrop and marks.
struct Transaction {
    account: Account,
    maildrop: Box<dyn Maildrop>,
    table: Table,
    buffers: transaction::RetrBuffers,
}

/// One client's POP3 session.
pub struct Session<'a> {
    services: &'a Services,
    peer: &'a str,
    /// The client's IP address (behind `--proxy-from`, the one its PROXY header names); `None` when the
    /// session has none (inetd on a pipe). For `allow_nets`.
    client: Option<IpAddr>,
    /// The APOP timestamp sent in the greeting, when APOP is offered.
    apop_timestamp: Option<String>,
    state: State,
    stats: Stats,
    /// Failed logins so far on this connection.
    failures: u32,
    /// The connection is TLS-protected (implicit TLS, or after STLS).
    tls: bool,
    /// How the login in progress authenticates (`USER`, `APOP`, `AUTH-PLAIN`, `AUTH-LOGIN`,
    /// `AUTH-SCRAM-SHA-256`), for the login's log line.
    method: &'static str,
    /// What UPDATE left to do: done when the session is dropped, after the reply has left.
    after_update: Option<Tidy>,
    /// SCRAM-SHA-256 is offered: some user could use it. Asked of the user database once, at the
    /// start: in TRANSACTION the thread may have the account's file-system identity, as which the
    /// passwd-file should not be read.
    scram: bool,
}

impl<'a> Session<'a> {
    pub fn new(
        services: &'a Services,
        peer: &'a str,
        apop_timestamp: Option<String>,
    ) -> Session<'a> {
        Session {
            services,
            peer,
            client: None,
            apop_timestamp,
            state: State::Authorization { user: None },
            stats: Stats::default(),
            failures: 0,
            tls: false,
            method: "",
            after_update: None,
            scram: services.auth.scram_for_every_user(),
        }
    }

    /// The client's address, where the front end knows one.
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// The session of a client at `client` (see the field).
    pub fn with_client(mut self, client: Option<IpAddr>) -> Session<'a> {
        self.client = client;
        self
    }

    /// RFC 1939 section 4: the greeting; with APOP, the timestamp ends it (clients look for the `<`).
    pub fn greeting<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<()> {
        match &self.apop_timestamp {
            Some(ts) => reply::ok(out, format_args!("poplar ready {ts}")),
            None => reply::ok(out, format_args!("poplar ready")),
        }
    }

    /// Handles one command line (CRLF removed).
    pub fn handle_line<W: Write + ?Sized>(&mut self, line: &[u8], out: &mut W) -> io::Result<Step> {
        if matches!(self.state, State::Sasl { .. }) {
            return self.sasl_response(line, out);
        }
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(e) => {
                reply::err(out, None, format_args!("{e}"))?;
                return Ok(Step::Continue);
            }
        };
        match &mut self.state {
            State::Authorization { .. } | State::Sasl { .. } => self.authorization(command, out),
            State::Transaction(_) if matches!(command, Command::Capa) => {
                write_capability_list(out, self.offer())?;
                Ok(Step::Continue)
            }
            State::Transaction(tx) => {
                let step = transaction::handle(
                    tx,
                    &mut self.stats,
                    command,
                    self.services,
                    &mut self.after_update,
                    out,
                )?;
                if step == Step::Quit {
                    self.state = State::Finished;
                }
                Ok(step)
            }
            State::Finished => {
                reply::err(out, None, format_args!("session is over"))?;
                Ok(Step::Quit)
            }
        }
    }

    /// A command line over the RFC 2449 limit was discarded.
    pub fn line_too_long<W: Write + ?Sized>(&mut self, out: &mut W) -> io::Result<Step> {
        if let State::Sasl { user, exchange } = &mut self.state {
            // An over-long response ends the exchange, as a malformed one would: after SCRAM's
            // server-first, as a failed login (see `sasl_response`).
            let derived_for = exchange.derived_for();
            let user = user.take();
            self.state = State::Authorization { user: None };
            let text = format_args!(
                "SASL response too long (limit {} octets)",
                sasl::MAX_RESPONSE_LINE
            );
            if let Some(name) = derived_for {
                return self.derivation_wasted(&name, user, text, out);
            }
            self.state = State::Authorization { user };
            reply::err(out, None, text)?;
            return Ok(Step::Continue);
        }
        reply::err(
            out,
            None,
            format_args!(
                "command line too long (limit {} octets)",
                crate::proto::line::MAX_COMMAND_LINE
            ),
        )?;
        Ok(Step::Continue)
    }

    /// The longest line the caller may read next, CRLF included: RFC 2449's command line, or a longer
    /// SASL response while an AUTH exchange is in progress.
    pub fn line_limit(&self) -> usize {
        match self.state {
            State::Sasl { .. } => sasl::MAX_RESPONSE_LINE,
            _ => crate::proto::line::MAX_COMMAND_LINE,
        }
    }

    /// The TLS handshake completed (implicit TLS before the greeting, or after STLS). RFC 2595 section 4:
    /// the session starts over in AUTHORIZATION, nothing learned before the handshake (a USER name)
    /// carried across, and CAPA no longer offers STLS.
    pub fn tls_established(&mut self) {
        self.tls = true;
        if !self.logged_in() {
            self.state = State::Authorization { user: None };
        }
    }

    /// The connection ended without the session choosing to (the client closed it, a timer ran out, an
    /// error) in the middle of a SCRAM exchange past its server-first: the key derivation made for the
    /// name counts as a failed login, logged as every other, as it does when the exchange is broken off
    /// on a connection that goes on (see `sasl_response`). Otherwise a client could have derivations
    /// made for free by closing after each client-first. Returns the failure's delay, which the caller
    /// waits before it frees the session's place, as a failed PASS holds it; `None` when nothing was
    /// spent. The session is over either way.
    pub fn ended_mid_exchange(&mut self) -> Option<Duration> {
        let State::Sasl { exchange, .. } = &self.state else {
            return None;
        };
        let name = exchange.derived_for()?;
        self.state = State::Finished;
        Some(self.count_failure(&name).0)
    }

    /// Ends the session and returns its counters; `outcome` applies when QUIT did not set one.
    pub fn finish(self, outcome: Outcome) -> Stats {
        let mut stats = self.stats;
        stats.outcome.get_or_insert(outcome);
        stats
    }

    /// Does now what UPDATE left for after its reply (see [`Tidy`]), the release of the maildrop's lock
    /// among it, instead of when the session is dropped: the caller has sent the reply.
    pub fn tidy(&mut self) {
        drop(self.after_update.take());
    }

    /// True while the session holds memory it needs only while commands keep coming (the RETR
    /// buffers after a RETR or TOP): the caller calls `release_idle_memory` once the client is quiet.
    pub fn holds_idle_memory(&self) -> bool {
        matches!(&self.state, State::Transaction(tx) if tx.buffers.hold_pages())
    }

    /// Gives back what `holds_idle_memory` spoke of.
    pub fn release_idle_memory(&mut self) {
        if let State::Transaction(tx) = &mut self.state {
            tx.buffers.release_pages();
        }
    }

    /// True once the session entered TRANSACTION (for choosing the autologout timer).
    pub fn logged_in(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    /// True once the session is over (QUIT, too many failed logins, a failed identity change): the
    /// caller sends what is pending, after any delay asked for, and closes.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }
}

/// The capabilities that depend on the state and the connection's security.
#[derive(Debug, Clone, Copy)]
struct Offer {
    /// RFC 2449 section 6.2: USER means USER/PASS may be used.
    user: bool,
    /// The SASL mechanisms that send the password (PLAIN, LOGIN) may be used.
    sasl_plaintext: bool,
    /// SCRAM-SHA-256 is offered: some user can log in with it.
    scram: bool,
    stls: bool,
}

/// The capability list, one per line (RFC 2449 section 5).
fn write_capability_list<W: Write + ?Sized>(out: &mut W, offer: Offer) -> io::Result<()> {
    reply::ok(out, format_args!("capability list follows"))?;
    out.write_all(b"TOP\r\nUIDL\r\n")?;
    if offer.user {
        out.write_all(b"USER\r\n")?;
    }
    let mechanisms: Vec<&str> = sasl::mechanisms(offer.sasl_plaintext, offer.scram)
        .map(sasl::Mechanism::name)
        .collect();
    // RFC 2449 section 6.3 lists at least one mechanism: none (no TLS for passwords, no SCRAM
    // users), no SASL line.
    if !mechanisms.is_empty() {
        write!(out, "SASL {}\r\n", mechanisms.join(" "))?;
    }
    if offer.stls {
        out.write_all(b"STLS\r\n")?;
    }
    out.write_all(b"PIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n")?;
    write!(
        out,
        "IMPLEMENTATION poplar {}\r\n.\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// A client-supplied name, made safe for a log line (no control characters, bounded length).
pub fn printable(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().min(64));
    for &b in bytes.iter().take(64) {
        if (0x21..0x7f).contains(&b) && b != b'\\' {
            s.push(b as char);
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    if bytes.len() > 64 {
        s.push_str("...");
    }
    s
}

/// The sessions inside UPDATE, and whether another may begin: shutdown closes the gate, in the same
/// atomic step that sees none inside, so no UPDATE is begun that the exit would cut off.
#[derive(Debug, Default)]
pub struct UpdateGate(AtomicUsize);

/// The gate's closed flag, above any count of sessions.
const GATE_CLOSED: usize = 1 << (usize::BITS - 1);

impl UpdateGate {
    /// Counts a session in, unless the gate is closed.
    fn enter(&self) -> Option<UpdateGuard<'_>> {
        if self.0.fetch_add(1, Ordering::SeqCst) & GATE_CLOSED != 0 {
            self.0.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(UpdateGuard(self))
    }

    /// Sessions inside UPDATE now (shutdown needs only `close_if_idle`).
    #[cfg(test)]
    pub fn in_progress(&self) -> usize {
        self.0.load(Ordering::SeqCst) & !GATE_CLOSED
    }

    /// Closes the gate if no session is inside; true when it is closed.
    pub fn close_if_idle(&self) -> bool {
        match (self.0).compare_exchange(0, GATE_CLOSED, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => true,
            Err(now) => now & GATE_CLOSED != 0,
        }
    }
}

/// A session inside UPDATE, counted while alive.
struct UpdateGuard<'a>(&'a UpdateGate);

impl Drop for UpdateGuard<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Commands that are valid only in TRANSACTION, for the wrong-state reply in AUTHORIZATION.
fn transaction_only(command: &Command<'_>) -> bool {
    matches!(
        command,
        Command::Stat
            | Command::List(_)
            | Command::Retr(_)
            | Command::Dele(_)
            | Command::Noop
            | Command::Rset
            | Command::Top { .. }
            | Command::Uidl(_)
    )
}

#[cfg(test)]
mod tests;
