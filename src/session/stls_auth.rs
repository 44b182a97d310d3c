//! The AUTHORIZATION-state extensions for secure logins: STLS (RFC 2595), AUTH (RFC 5034, mechanisms in
//! `sasl.rs`), CAPA's login capabilities, and the policy that keeps passwords off the wire until TLS is up.
//! The TLS handshake itself is the caller's: the session only answers and returns [`Step::StartTls`].

use std::io::{self, Write};

use super::authorization::refuse;
use super::sasl::{self, Mechanism, Progress, SaslError};
use super::{Offer, Session, State, Step, write_capability_list};
use crate::auth::Secret;
use crate::proto::reply::{self, RespCode};

impl Session<'_> {
    /// Passwords may be sent: the connection is TLS-protected, or plaintext logins are allowed.
    pub(super) fn plaintext_allowed(&self) -> bool {
        self.tls || !self.services.no_plaintext
    }

    /// RFC 3206: `[AUTH]` covers "an attempt to authenticate in violation of policy". The wording follows
    /// Dovecot's, which mail clients already show to users, plus what to do about it.
    pub(super) fn refuse_plaintext<W: Write + ?Sized>(&self, out: &mut W) -> io::Result<Step> {
        let hint = if self.services.stls {
            "use STLS first"
        } else {
            "use APOP or TLS"
        };
        reply::err(
            out,
            Some(RespCode::Auth),
            format_args!("plaintext authentication disallowed on non-secure connections, {hint}"),
        )?;
        Ok(Step::Continue)
    }

    /// CAPA's login capabilities. RFC 2449 section 6.2: USER means USER/PASS are usable, so it goes when
    /// the policy refuses them, and SASL with it (PLAIN and LOGIN carry the password too). STLS only
    /// until TLS is up: RFC 2595 section 4 has the client discard capabilities learned before TLS.
    /// The same in TRANSACTION: RFC 2449 section 5, "Capabilities available in the AUTHORIZATION state
    /// MUST be announced in both states" (the commands themselves are then refused).
    pub(super) fn offer(&self) -> Offer {
        let plaintext = self.plaintext_allowed();
        Offer {
            user: plaintext,
            sasl: plaintext,
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
            if self.plaintext_allowed() {
                for m in sasl::MECHANISMS {
                    write!(out, "{m}\r\n")?;
                }
            }
            out.write_all(b".\r\n")?;
            return Ok(Step::Continue);
        };
        let Some(mechanism) = Mechanism::from_name(name) else {
            return refuse(out, "unsupported SASL mechanism");
        };
        if !self.plaintext_allowed() {
            return self.refuse_plaintext(out);
        }
        let user = match &mut self.state {
            State::Authorization { user } => user.take(),
            _ => None,
        };
        self.method = match mechanism {
            Mechanism::Plain => "AUTH-PLAIN",
            Mechanism::Login => "AUTH-LOGIN",
        };
        self.sasl_progress(sasl::start(mechanism, initial), user, out)
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
        self.sasl_progress(exchange.respond(line), user, out)
    }

    /// `user`: the USER given before AUTH, kept through the exchange and back in place when it fails.
    fn sasl_progress<W: Write + ?Sized>(
        &mut self,
        progress: Result<Progress, SaslError>,
        user: Option<Vec<u8>>,
        out: &mut W,
    ) -> io::Result<Step> {
        let step = match progress {
            Ok(Progress::Challenge(exchange, challenge)) => {
                // RFC 5034 section 4: a challenge is "+" SP and the base64 text (empty for PLAIN).
                write!(out, "+ {challenge}\r\n")?;
                self.state = State::Sasl { exchange, user };
                return Ok(Step::Continue);
            }
            Ok(Progress::Done(credentials)) => {
                let password = Secret::new(credentials.password.expose().as_slice());
                let result = self.services.auth.login(&credentials.user, &password);
                self.complete_login(&credentials.user, result, out)?
            }
            // Proxy authorization is a credentials problem: counted, answered and delayed like a wrong
            // password.
            Err(ref e @ SaslError::AuthzidMismatch { ref authcid }) => {
                self.credentials_refused(authcid, format_args!("{e}"), out)?
            }
            Err(e) => refuse(out, &e.to_string())?,
        };
        // Still in AUTHORIZATION after a failure: as if AUTH had not been issued.
        if let State::Authorization { user: slot @ None } = &mut self.state {
            *slot = user;
        }
        Ok(step)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{MSG1, fixture, script};
    use super::super::{Session, Step};
    use crate::proto::line::MAX_COMMAND_LINE;

    const REFUSED_STLS: &str = "-ERR [AUTH] plaintext authentication disallowed on non-secure connections, use STLS first\r\n";

    fn capa(s: &mut Session<'_>) -> String {
        script(s, &["CAPA"]).0
    }

    #[test]
    fn stls_is_offered_until_tls_is_up_and_refused_twice() {
        let mut f = fixture(&[]);
        f.services.stls = true;
        let mut s = Session::new(&f.services, "peer", None);
        assert!(capa(&mut s).contains("\r\nSTLS\r\n"));
        script(&mut s, &["USER alice"]);
        let (out, step) = script(&mut s, &["STLS"]);
        assert_eq!(
            (out.as_str(), step),
            ("+OK begin TLS negotiation\r\n", Step::StartTls)
        );
        s.tls_established();
        assert!(!capa(&mut s).contains("STLS"));
        // RFC 2595: the session starts over; the USER given before the handshake is forgotten.
        assert_eq!(
            script(&mut s, &["PASS secret"]).0,
            "-ERR send USER first\r\n"
        );
        let (out, step) = script(&mut s, &["STLS"]);
        assert_eq!(
            (out.as_str(), step),
            (
                "-ERR command not permitted when TLS active\r\n",
                Step::Continue
            )
        );
    }

    #[test]
    fn stls_without_a_certificate() {
        let f = fixture(&[]);
        let mut s = Session::new(&f.services, "peer", None);
        assert!(!capa(&mut s).contains("STLS"));
        let (out, step) = script(&mut s, &["STLS"]);
        assert_eq!(
            (out.as_str(), step),
            (
                "-ERR STLS not available: no certificate configured\r\n",
                Step::Continue
            )
        );
    }

    #[test]
    fn no_plaintext_refuses_passwords_until_tls() {
        let mut f = fixture(&[MSG1]);
        f.services.stls = true;
        f.services.no_plaintext = true;
        let mut s = Session::new(&f.services, "peer", None);
        let before = capa(&mut s);
        assert!(
            !before.contains("USER") && !before.contains("SASL") && before.contains("STLS"),
            "{before}"
        );
        for line in [
            "USER alice",
            "PASS secret",
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            "AUTH LOGIN",
        ] {
            assert_eq!(script(&mut s, &[line]).0, REFUSED_STLS, "{line}");
        }
        assert_eq!(
            script(&mut s, &["AUTH"]).0,
            "+OK SASL mechanisms follow\r\n.\r\n"
        );
        s.tls_established();
        let after = capa(&mut s);
        assert!(
            after.contains("USER\r\nSASL PLAIN LOGIN\r\n") && !after.contains("STLS"),
            "{after}"
        );
        let (out, _) = script(&mut s, &["USER alice", "PASS secret"]);
        assert!(
            out.ends_with("+OK alice's maildrop has 1 messages (28 octets)\r\n"),
            "{out}"
        );
    }

    #[test]
    fn no_plaintext_without_stls_points_elsewhere() {
        let mut f = fixture(&[]);
        f.services.no_plaintext = true;
        let mut s = Session::new(&f.services, "peer", None);
        let (out, _) = script(&mut s, &["USER alice"]);
        assert_eq!(
            out,
            "-ERR [AUTH] plaintext authentication disallowed on non-secure connections, use APOP or TLS\r\n"
        );
    }

    /// (lines, expected output of the last line, expected step of the last line)
    #[test]
    fn auth_exchanges() {
        let delay = Step::Delay(std::time::Duration::from_millis(7));
        let logged_in = "+OK alice's maildrop has 1 messages (28 octets)\r\n";
        let failed = "-ERR [AUTH] invalid user name or password\r\n";
        let cases: &[(&[&str], &str, Step)] = &[
            (
                &["AUTH"],
                "+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n",
                Step::Continue,
            ),
            (
                &["AUTH PLAIN AGFsaWNlAHNlY3JldA=="],
                logged_in,
                Step::Continue,
            ),
            (
                &["auth plain YWxpY2UAYWxpY2UAc2VjcmV0"],
                logged_in,
                Step::Continue,
            ),
            (&["AUTH PLAIN"], "+ \r\n", Step::Continue),
            (
                &["AUTH PLAIN", "AGFsaWNlAHNlY3JldA=="],
                logged_in,
                Step::Continue,
            ),
            (
                &["AUTH PLAIN", "*"],
                "-ERR authentication cancelled\r\n",
                Step::Continue,
            ),
            (
                &["AUTH PLAIN", "@@@"],
                "-ERR invalid base64 in SASL response\r\n",
                Step::Continue,
            ),
            (&["AUTH PLAIN AGFsaWNlAHdyb25n"], failed, delay),
            (
                &["AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA=="],
                "-ERR [AUTH] authorization identity must be empty or the user name\r\n",
                delay,
            ),
            (
                &["AUTH PLAIN ="],
                "-ERR malformed SASL message\r\n",
                Step::Continue,
            ),
            (&["AUTH LOGIN"], "+ VXNlcm5hbWU6\r\n", Step::Continue),
            (
                &["AUTH LOGIN", "YWxpY2U="],
                "+ UGFzc3dvcmQ6\r\n",
                Step::Continue,
            ),
            (
                &["AUTH LOGIN", "YWxpY2U=", "c2VjcmV0"],
                logged_in,
                Step::Continue,
            ),
            (
                &["AUTH LOGIN YWxpY2U=", "c2VjcmV0"],
                logged_in,
                Step::Continue,
            ),
            (&["AUTH LOGIN", "YWxpY2U=", "d3Jvbmc="], failed, delay),
            (
                &["AUTH LOGIN =", "NOOP"],
                "-ERR NOOP is not valid before login\r\n",
                Step::Continue,
            ),
            (
                &["AUTH LOGIN ="],
                "-ERR malformed SASL message\r\n",
                Step::Continue,
            ),
            (
                &["AUTH LOGIN", "*"],
                "-ERR authentication cancelled\r\n",
                Step::Continue,
            ),
            (
                &["AUTH CRAM-MD5"],
                "-ERR unsupported SASL mechanism\r\n",
                Step::Continue,
            ),
            // After a cancelled exchange the next line is a command again.
            (
                &["AUTH LOGIN", "*", "NOOP"],
                "-ERR NOOP is not valid before login\r\n",
                Step::Continue,
            ),
        ];
        for (lines, expected, step) in cases {
            let f = fixture(&[MSG1]);
            let mut s = Session::new(&f.services, "peer", None);
            let (_, _) = script(&mut s, &lines[..lines.len() - 1]);
            let (out, got_step) = script(&mut s, &lines[lines.len() - 1..]);
            assert_eq!((out.as_str(), got_step), (*expected, *step), "{lines:?}");
        }
    }

    /// RFC 5034 section 4: after a failed AUTH the server "MUST behave as if the client had not issued
    /// the AUTH command", so a USER given before it still stands.
    #[test]
    fn a_failed_auth_leaves_an_earlier_user_in_place() {
        let logged_in = "+OK alice's maildrop has 1 messages (28 octets)\r\n";
        let failures: &[&[&str]] = &[
            &["AUTH PLAIN", "*"],
            &["AUTH LOGIN", "YWxpY2U=", "*"],
            &["AUTH PLAIN @@@"],
            &["AUTH PLAIN ="],
            &["AUTH PLAIN AGFsaWNlAHdyb25n"],
            &["AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA=="],
            &["AUTH CRAM-MD5"],
        ];
        for lines in failures {
            let f = fixture(&[MSG1]);
            let mut s = Session::new(&f.services, "peer", None);
            script(&mut s, &["USER alice"]);
            script(&mut s, lines);
            let (out, _) = script(&mut s, &["PASS secret"]);
            assert_eq!(out, logged_in, "{lines:?}");
        }
        // An over-long response ends the exchange the same way.
        let f = fixture(&[MSG1]);
        let mut s = Session::new(&f.services, "peer", None);
        script(&mut s, &["USER alice", "AUTH PLAIN"]);
        s.line_too_long(&mut Vec::new()).unwrap();
        assert_eq!(script(&mut s, &["PASS secret"]).0, logged_in);
        // A successful AUTH logs in as its own user, whatever USER said.
        drop(s);
        let mut s = Session::new(&f.services, "peer", None);
        script(&mut s, &["USER bob"]);
        assert_eq!(
            script(&mut s, &["AUTH PLAIN AGFsaWNlAHNlY3JldA=="]).0,
            logged_in
        );
        assert!(s.logged_in());
    }

    #[test]
    fn a_refused_authorization_identity_counts_as_a_failed_login() {
        let mut f = fixture(&[MSG1]);
        f.services.max_auth_attempts = 2;
        let mut s = Session::new(&f.services, "peer", None);
        let mismatch = "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==";
        script(&mut s, &[mismatch]);
        assert!(!s.is_finished());
        let (out, _) = script(&mut s, &[mismatch]);
        assert_eq!(
            out,
            "-ERR [AUTH] authorization identity must be empty or the user name\r\n"
        );
        assert!(s.is_finished(), "the second failure of two allowed ends it");
    }

    #[test]
    fn sasl_responses_may_be_longer_than_command_lines() {
        let f = fixture(&[]);
        let mut s = Session::new(&f.services, "peer", None);
        assert_eq!(s.line_limit(), MAX_COMMAND_LINE);
        script(&mut s, &["AUTH PLAIN"]);
        assert!(s.line_limit() > 1024);
        let mut out = Vec::new();
        s.line_too_long(&mut out).unwrap();
        assert_eq!(out, b"-ERR SASL response too long (limit 2048 octets)\r\n");
        assert_eq!(s.line_limit(), MAX_COMMAND_LINE);
    }
}
