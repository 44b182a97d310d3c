//! AUTHORIZATION state handlers: USER, PASS, APOP, CAPA, QUIT (RFC 1939 sections 4 and 7), and the move
//! into TRANSACTION: resolving the maildrop path, opening and locking the maildrop. STLS, AUTH and the
//! plaintext-password policy are in `stls_auth.rs`.

use std::fmt;
use std::io::{self, Write};

use super::{Session, State, Step, Transaction, printable, transaction_only};
use crate::auth::{self, Account, AuthError, Secret};
use crate::maildrop::{self, Maildrop, MaildropError};
use crate::proto::command::Command;
use crate::proto::reply::{self, RespCode, Tally};
use crate::session::table::Table;

impl Session<'_> {
    pub(super) fn authorization<W: Write + ?Sized>(
        &mut self,
        command: Command<'_>,
        out: &mut W,
    ) -> io::Result<Step> {
        match command {
            Command::User(_) | Command::Pass(_) if !self.plaintext_allowed() => {
                self.refuse_plaintext(out)
            }
            Command::User(name) => self.user(name, out),
            Command::Pass(password) => self.pass(password, out),
            Command::Apop { name, digest } => self.apop(name, digest, out),
            Command::Capa => self.capabilities(out),
            Command::Quit => {
                self.state = State::Finished;
                self.stats.outcome = Some(super::Outcome::Quit);
                reply::ok(out, format_args!("poplar signing off")).map(|()| Step::Quit)
            }
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial, out),
            Command::Stls => self.stls(out),
            command if transaction_only(&command) => refuse(
                out,
                &format!("{} is not valid before login", command.keyword()),
            ),
            command => refuse(out, &format!("{} is not valid now", command.keyword())),
        }
    }

    /// RFC 1939: USER may be repeated; the last name given counts.
    fn user<W: Write + ?Sized>(&mut self, name: &[u8], out: &mut W) -> io::Result<Step> {
        self.state = State::Authorization {
            user: Some(name.to_vec()),
        };
        reply::ok(out, format_args!("send PASS"))?;
        Ok(Step::Continue)
    }

    fn pass<W: Write + ?Sized>(&mut self, password: &[u8], out: &mut W) -> io::Result<Step> {
        let State::Authorization { user } = &mut self.state else {
            unreachable!("PASS outside AUTHORIZATION")
        };
        // RFC 1939: after a failed PASS the client starts again with USER or APOP.
        let Some(user) = user.take() else {
            return refuse(out, "send USER first");
        };
        let result = auth::check_password(&*self.services.auth, &user, &Secret::new(password));
        self.method = "USER";
        self.complete_login(&user, result, out)
    }

    fn apop<W: Write + ?Sized>(
        &mut self,
        name: &[u8],
        digest: &[u8],
        out: &mut W,
    ) -> io::Result<Step> {
        let Some(timestamp) = &self.apop_timestamp else {
            return refuse(out, "APOP not enabled");
        };
        let result = self.services.auth.apop(name, timestamp.as_bytes(), digest);
        self.method = "APOP";
        self.complete_login(name, result, out)
    }

    pub(super) fn complete_login<W: Write + ?Sized>(
        &mut self,
        user: &[u8],
        result: Result<Account, AuthError>,
        out: &mut W,
    ) -> io::Result<Step> {
        self.state = State::Authorization { user: None };
        match result {
            Ok(account) => match self.policy_refusal(&account) {
                Some(text) => self.credentials_refused(user, format_args!("{text}"), out),
                None => self.open_maildrop(account, out),
            },
            Err(AuthError::BadCredentials) => {
                // The same answer and delay whether the name or the password was wrong (RFC 3206 [AUTH]).
                self.credentials_refused(user, format_args!("invalid user name or password"), out)
            }
            Err(e @ AuthError::Unavailable(_)) => {
                log::error!("login user={} peer={}: {e}", printable(user), self.peer);
                reply::err(
                    out,
                    Some(RespCode::SysTemp),
                    format_args!("authentication unavailable, try later"),
                )?;
                Ok(Step::Continue)
            }
        }
    }

    /// Why the user database's policy for `account` refuses this login, as the client's text; the reason
    /// is logged here, and the refusal then counts like a wrong password (the client could be guessing
    /// from the wrong network, and fail2ban should hear of it).
    pub(super) fn policy_refusal(&self, account: &Account) -> Option<String> {
        let policy = &account.policy;
        if let Some(nets) = &policy.allow_nets {
            if !nets.allows(self.client) {
                log::info!(
                    "user={} peer={}: login from outside the user's allow_nets",
                    account.name,
                    self.peer
                );
                return Some("invalid user name or password".to_string());
            }
        }
        let reason = policy.nologin.as_deref()?;
        log::info!(
            "user={} peer={}: login refused, nologin",
            account.name,
            self.peer
        );
        Some(if reason.is_empty() {
            "login disabled for this account".to_string()
        } else {
            printable(reason.as_bytes())
        })
    }

    /// Credentials refused: counted toward `max-auth-attempts`, logged, answered `-ERR [AUTH]` with
    /// `text` and delayed; the last failure allowed ends the session.
    pub(super) fn credentials_refused<W: Write + ?Sized>(
        &mut self,
        user: &[u8],
        text: fmt::Arguments<'_>,
        out: &mut W,
    ) -> io::Result<Step> {
        self.failed_attempt(user, Some(RespCode::Auth), text, out)
    }

    /// A login attempt that failed, whatever the reason: counted, logged, answered with `code` and
    /// `text`, and delayed, as [`Session::credentials_refused`] is.
    pub(super) fn failed_attempt<W: Write + ?Sized>(
        &mut self,
        user: &[u8],
        code: Option<RespCode>,
        text: fmt::Arguments<'_>,
        out: &mut W,
    ) -> io::Result<Step> {
        let (delay, last) = self.count_failure(user);
        reply::err(out, code, text)?;
        if last {
            self.state = State::Finished;
            self.stats.outcome = Some(super::Outcome::AuthFailures);
        }
        Ok(Step::Delay(delay))
    }

    /// Counts a failed login for `user` and logs it in the one form fail2ban's filter reads (see
    /// `man/examples/fail2ban-filter.conf`); returns its delay and whether it was the last one allowed.
    pub(super) fn count_failure(&mut self, user: &[u8]) -> (std::time::Duration, bool) {
        self.failures += 1;
        let last = self.failures >= self.services.max_auth_attempts;
        log::info!(
            "login failed user={} peer={} attempt={}{}",
            printable(user),
            self.peer,
            self.failures,
            if last { ", closing" } else { "" }
        );
        let delay = super::failure_delay(self.services.auth_failure_delay, self.failures);
        (delay, last)
    }

    /// Resolves the maildrop path (a pure check of the user name, before any file-system access), takes
    /// on the account's identity, then opens and locks the maildrop and enters TRANSACTION.
    fn open_maildrop<W: Write + ?Sized>(
        &mut self,
        account: Account,
        out: &mut W,
    ) -> io::Result<Step> {
        let mail = account.policy.mail_location(&self.services.mail);
        let path = mail
            .expand(&account.name, account.home.as_deref())
            .map_err(|reason| MaildropError::BadPath {
                reason: format!("user {}: {reason}", account.name),
            });
        let mut owner = None;
        if path.is_ok() {
            let mbox = mail.format == maildrop::location::Format::Mbox;
            match self.services.identity.assume(&account, mbox) {
                Ok(required) => owner = required,
                Err(why) => return self.identity_refused(&account.name, &why, out),
            }
        }
        let assumed = path.is_ok();
        let opened = path
            .and_then(|path| maildrop::open(mail.format, &path, &self.services.maildrop, owner));
        match opened {
            Ok(maildrop) => self.enter_transaction(account, maildrop, out),
            Err(e) => self.maildrop_refused(&account.name, &e, assumed, out),
        }
    }

    /// Half a switch cannot be trusted: the session ends here, the maildrop unopened.
    fn identity_refused<W: Write + ?Sized>(
        &mut self,
        user: &str,
        why: &str,
        out: &mut W,
    ) -> io::Result<Step> {
        log::error!(
            "user={user} peer={}: cannot take on the account's identity: {why}",
            self.peer
        );
        reply::err(
            out,
            Some(RespCode::SysPerm),
            format_args!("cannot access the maildrop, closing"),
        )?;
        Ok(self.end_in_error())
    }

    /// The maildrop could not be opened or locked: the client is told why, in its response code.
    /// After `assumed` (the account's identity taken on), the session goes on in AUTHORIZATION only
    /// if the start-up identity comes back; otherwise it ends here, and the reply says so.
    fn maildrop_refused<W: Write + ?Sized>(
        &mut self,
        user: &str,
        e: &MaildropError,
        assumed: bool,
        out: &mut W,
    ) -> io::Result<Step> {
        match e {
            MaildropError::InUse { .. } => log::info!("user={user} peer={}: {e}", self.peer),
            _ => log::error!("user={user} peer={}: {e}", self.peer),
        }
        // Back to the start-up identity, or the next USER/PASS would read the passwd-file (and
        // anything else) as this account. A thread that cannot go back (a process that became the
        // user for good) ends the session.
        let restored = if assumed {
            self.services.identity.restore()
        } else {
            Ok(())
        };
        let closing = if restored.is_err() { ", closing" } else { "" };
        reply::err(
            out,
            Some(e.resp_code()),
            format_args!("{}{closing}", e.client_text()),
        )?;
        if let Err(why) = restored {
            log::debug!("peer={}: session ends: {why}", self.peer);
            return Ok(self.end_in_error());
        }
        Ok(Step::Continue)
    }

    /// The session ends without UPDATE, its outcome an error.
    fn end_in_error(&mut self) -> Step {
        self.state = State::Finished;
        self.stats.outcome = Some(super::Outcome::Error);
        Step::Quit
    }

    /// The maildrop is open and locked: the client hears its totals, and the session is in TRANSACTION.
    fn enter_transaction<W: Write + ?Sized>(
        &mut self,
        account: Account,
        maildrop: Box<dyn Maildrop>,
        out: &mut W,
    ) -> io::Result<Step> {
        let table = Table::new(maildrop.messages());
        let (count, octets) = table.totals();
        log::info!(
            "login user={} peer={} messages={count} octets={octets} method={} tls={}",
            account.name,
            self.peer,
            self.method,
            if self.tls { "yes" } else { "no" }
        );
        // RFC 2449 section 6.4: with RESP-CODES announced, "any response text issued by this server which
        // begins with an open square bracket ("[") is an extended response code", so a user name that
        // begins with one must not lead the text.
        if account.name.starts_with('[') {
            reply::ok(
                out,
                format_args!(
                    "maildrop of {} has {} ({})",
                    account.name,
                    Tally(count as u64, "message"),
                    Tally(octets, "octet")
                ),
            )?;
        } else {
            reply::ok(
                out,
                format_args!(
                    "{}'s maildrop has {} ({})",
                    account.name,
                    Tally(count as u64, "message"),
                    Tally(octets, "octet")
                ),
            )?;
        }
        self.stats.user = Some(account.name.clone());
        self.state = State::Transaction(Box::new(Transaction {
            account,
            maildrop,
            table,
            buffers: Default::default(),
        }));
        Ok(Step::Continue)
    }
}

pub(super) fn refuse<W: Write + ?Sized>(out: &mut W, text: &str) -> io::Result<Step> {
    reply::err(out, None, format_args!("{text}"))?;
    Ok(Step::Continue)
}
