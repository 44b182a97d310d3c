//! The AUTHORIZATION-state extensions for secure logins: STLS (RFC 2595), AUTH (RFC 5034, mechanisms in
//! `sasl.rs`), CAPA's login capabilities, and the policy that keeps passwords off the wire until TLS is up.
//! The TLS handshake itself is the caller's: the session only answers and returns [`Step::StartTls`].

use std::io::{self, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::authorization::refuse;
use super::sasl::{self, Exchange, Mechanism, Progress, SaslError};
use super::{Offer, Session, State, Step, write_capability_list};
use crate::auth::{self, Secret};
use crate::proto::reply::{self, RespCode};

impl Session<'_> {
    /// Passwords may be sent: the connection is TLS-protected, or plaintext logins are allowed.
    pub(super) fn plaintext_allowed(&self) -> bool {
        self.tls || !self.services.no_plaintext
    }

    /// RFC 3206: `[AUTH]` covers "an attempt to authenticate in violation of policy". The wording follows
    /// Dovecot's, which mail clients already show to users, plus what to do about it.
    pub(super) fn refuse_plaintext<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<Step> {
        // Only what this server offers: a hint naming a way that is not there leaves the user stuck.
        let hint = if self.services.stls {
            "use STLS first"
        } else if self.apop_timestamp.is_some() {
            "use APOP"
        } else if self.scram {
            "use AUTH SCRAM-SHA-256"
        } else {
            "and no other login method is offered here"
        };
        reply::err(
            out,
            Some(RespCode::Auth),
            format_args!("plaintext authentication disallowed on non-secure connections, {hint}"),
        )?;
        Ok(Step::Continue)
    }

    /// CAPA's login capabilities. RFC 2449 section 6.2: USER means USER/PASS are usable, so it goes when
    /// the policy refuses them, and SASL PLAIN and LOGIN with it (they carry the password too; SCRAM
    /// stays, as it does not). STLS only
    /// until TLS is up: RFC 2595 section 4 has the client discard capabilities learned before TLS.
    /// The same in TRANSACTION: RFC 2449 section 5, "Capabilities available in the AUTHORIZATION state
    /// MUST be announced in both states" (the commands themselves are then refused).
    pub(super) fn offer(&self) -> Offer {
        let plaintext = self.plaintext_allowed();
        Offer {
            user: plaintext,
            sasl_plaintext: plaintext,
            scram: self.scram,
            stls: self.services.stls && !self.tls,
        }
    }

    pub(super) fn capabilities<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<Step> {
        write_capability_list(out, self.offer())?;
        Ok(Step::Continue)
    }

    /// RFC 2595 section 4: STLS is valid only in AUTHORIZATION, once.
    pub(super) fn stls<W: Write + ?Sized>(&mut self, out: &mut W) -> io::Result<Step> {
        if self.tls {
            return refuse(out, "command not permitted when TLS active");
        }
        if !self.services.stls {
            return refuse(out, "STLS not available: no certificate configured");
        }
        reply::ok(out, format_args!("begin TLS negotiation"))?;
        Ok(Step::StartTls)
    }

    /// AUTH (RFC 5034 section 4). Without a mechanism it lists them, one per line, as clients from the
    /// RFC 1734 era (Outlook among them) ask before choosing.
    pub(super) fn auth<W: Write + ?Sized>(
        &mut self,
        mechanism: Option<&[u8]>,
        initial: Option<&[u8]>,
        out: &mut W,
    ) -> io::Result<Step> {
        let Some(name) = mechanism else {
            reply::ok(out, format_args!("SASL mechanisms follow"))?;
            let offer = self.offer();
            for m in sasl::mechanisms(offer.sasl_plaintext, offer.scram) {
                write!(out, "{}\r\n", m.name())?;
            }
            out.write_all(b".\r\n")?;
            return Ok(Step::Continue);
        };
        let Some(mechanism) =
            Mechanism::from_name(name).filter(|&m| m != Mechanism::ScramSha256 || self.scram)
        else {
            return refuse(out, "unsupported SASL mechanism");
        };
        if mechanism.sends_password() && !self.plaintext_allowed() {
            return self.refuse_plaintext(out);
        }
        let user = match &mut self.state {
            State::Authorization { user } => user.take(),
            _ => None,
        };
        self.method = match mechanism {
            Mechanism::Plain => "AUTH-PLAIN",
            Mechanism::Login => "AUTH-LOGIN",
            Mechanism::ScramSha256 => "AUTH-SCRAM-SHA-256",
        };
        let fold_case = self.services.lowercase_users;
        self.sasl_progress(sasl::start(mechanism, initial, fold_case), user, out)
    }

    /// The next line of an exchange in progress.
    pub(super) fn sasl_response<W: Write + ?Sized>(
        &mut self,
        line: &[u8],
        out: &mut W,
    ) -> io::Result<Step> {
        let State::Sasl { exchange, user } =
            std::mem::replace(&mut self.state, State::Authorization { user: None })
        else {
            return refuse(out, "no SASL exchange in progress");
        };
        // After the server-first, a key derivation was made for the name (a PBKDF2): an exchange broken
        // off there counts as a failed login, so that one connection cannot have them made without
        // limit, as it cannot have passwords checked without limit.
        let derived_for = exchange.derived_for();
        match (
            exchange.respond(line, self.services.lowercase_users),
            derived_for,
        ) {
            (Err(e), Some(name)) if !matches!(e, SaslError::AuthzidMismatch { .. }) => {
                self.derivation_wasted(&name, user, format_args!("{e}"), out)
            }
            (progress, _) => self.sasl_progress(progress, user, out),
        }
    }

    /// An exchange broken off after SCRAM's server-first, a key derivation made for `name`: a failed
    /// login, with the USER given before AUTH (`user`) back in place if the session goes on.
    pub(super) fn derivation_wasted<W: Write + ?Sized>(
        &mut self,
        name: &[u8],
        user: Option<Vec<u8>>,
        text: std::fmt::Arguments<'_>,
        out: &mut W,
    ) -> io::Result<Step> {
        let step = self.failed_attempt(name, None, text, out)?;
        self.restore_user(user);
        Ok(step)
    }

    /// `user`: the USER given before AUTH, kept through the exchange and back in place when it fails.
    fn sasl_progress<W: Write + ?Sized>(
        &mut self,
        progress: Result<Progress, SaslError>,
        user: Option<Vec<u8>>,
        out: &mut W,
    ) -> io::Result<Step> {
        // The server-final message would tell the client that its password is right: a login the user
        // database's policy refuses is refused before it, as a wrong password would be.
        if let Ok(Progress::Challenge(
            Exchange::ScramEnd {
                user: name,
                account,
            },
            _,
        )) = &progress
        {
            if let Some(text) = self.policy_refusal(account) {
                let step = self.credentials_refused(name, format_args!("{text}"), out)?;
                self.restore_user(user);
                return Ok(step);
            }
        }
        let step = match progress {
            Ok(Progress::Challenge(exchange, challenge)) => {
                return self.challenge(exchange, &challenge, user, out);
            }
            Ok(Progress::Done(credentials)) => {
                let password = Secret::new(credentials.password.expose().as_slice());
                let result =
                    auth::check_password(&*self.services.auth, &credentials.user, &password);
                self.complete_login(&credentials.user, result, out)?
            }
            Ok(Progress::Lookup(client)) => match server_nonce() {
                Ok(nonce) => {
                    let lookup = self
                        .services
                        .auth
                        .scram(&client.user, &self.services.salt_key);
                    let progress = sasl::server_first(client, lookup, &nonce);
                    return self.sasl_progress(Ok(progress), user, out);
                }
                Err(e) => {
                    log::error!("peer={}: getrandom: {e}", self.peer);
                    reply::err(
                        out,
                        Some(RespCode::SysTemp),
                        format_args!("authentication unavailable, try later"),
                    )?;
                    Step::Continue
                }
            },
            // SCRAM's end: a wrong proof fails here, after the client-final, like a wrong password.
            Ok(Progress::Verdict { user: name, result }) => {
                self.complete_login(&name, result, out)?
            }
            // Proxy authorization is a credentials problem: counted, answered and delayed like a wrong
            // password.
            Err(ref e @ SaslError::AuthzidMismatch { ref authcid }) => {
                self.credentials_refused(authcid, format_args!("{e}"), out)?
            }
            Err(e) => refuse(out, &e.to_string())?,
        };
        self.restore_user(user);
        Ok(step)
    }

    /// Still in AUTHORIZATION after a failure: as if AUTH had not been issued, with the USER given
    /// before it back in place.
    fn restore_user(&mut self, user: Option<Vec<u8>>) {
        if let State::Authorization { user: slot @ None } = &mut self.state {
            *slot = user;
        }
    }

    /// RFC 5034 section 4: a challenge is "+" SP and the base64 text (empty for PLAIN); the next line
    /// is the client's response.
    fn challenge<W: Write + ?Sized>(
        &mut self,
        exchange: Exchange,
        challenge: &str,
        user: Option<Vec<u8>>,
        out: &mut W,
    ) -> io::Result<Step> {
        write!(out, "+ {challenge}\r\n")?;
        self.state = State::Sasl { exchange, user };
        Ok(Step::Continue)
    }
}

/// RFC 5802 section 5.1: the server's part of the nonce, fresh and unpredictable on every exchange:
/// 18 random octets, 24 base64 characters, none of them ','.
fn server_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes)?;
    Ok(STANDARD.encode(bytes))
}

#[cfg(test)]
#[path = "stls_auth_tests.rs"]
mod tests;
