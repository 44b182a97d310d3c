//! Tests for `stls_auth`: STLS and the SASL exchanges of AUTH (PLAIN, LOGIN, SCRAM-SHA-256) driven
//! through a session.

use super::super::tests::{MSG1, fixture, script};
use super::super::{Session, Step};
use crate::proto::line::MAX_COMMAND_LINE;

const REFUSED_STLS: &str =
    "-ERR [AUTH] plaintext authentication disallowed on non-secure connections, use STLS first\r\n";

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
        !before.contains("USER")
            && before.contains("\r\nSASL SCRAM-SHA-256\r\n")
            && before.contains("STLS"),
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
        "+OK SASL mechanisms follow\r\nSCRAM-SHA-256\r\n.\r\n"
    );
    // SCRAM never sends the password: it may be used in the clear.
    assert_eq!(
        script(&mut s, &["AUTH SCRAM-SHA-256", "*"]).0,
        "+ \r\n-ERR authentication cancelled\r\n"
    );
    s.tls_established();
    let after = capa(&mut s);
    assert!(
        after.contains("USER\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\n") && !after.contains("STLS"),
        "{after}"
    );
    let (out, _) = script(&mut s, &["USER alice", "PASS secret"]);
    assert!(
        out.ends_with("+OK alice's maildrop has 1 message (28 octets)\r\n"),
        "{out}"
    );
}

/// The refusal points to a way this server offers: APOP when on, else AUTH SCRAM-SHA-256 (every
/// user here has a {PLAIN} password). It named APOP and TLS, neither of which might be there.
#[test]
fn no_plaintext_without_stls_points_elsewhere() {
    let mut f = fixture(&[]);
    f.services.no_plaintext = true;
    let refused = "-ERR [AUTH] plaintext authentication disallowed on non-secure connections, ";
    let mut s = Session::new(&f.services, "peer", None);
    let (out, _) = script(&mut s, &["USER alice"]);
    assert_eq!(out, format!("{refused}use AUTH SCRAM-SHA-256\r\n"));
    let mut s = Session::new(&f.services, "peer", Some("<1.2@example.org>".to_string()));
    let (out, _) = script(&mut s, &["USER alice"]);
    assert_eq!(out, format!("{refused}use APOP\r\n"));
}

/// (lines, expected output of the last line, expected step of the last line)
#[test]
fn auth_exchanges() {
    let delay = Step::Delay(std::time::Duration::from_millis(7));
    let logged_in = "+OK alice's maildrop has 1 message (28 octets)\r\n";
    let failed = "-ERR [AUTH] invalid user name or password\r\n";
    let cases: &[(&[&str], &str, Step)] = &[
        (
            &["AUTH"],
            "+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n.\r\n",
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
    let logged_in = "+OK alice's maildrop has 1 message (28 octets)\r\n";
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

#[test]
fn scram_logins() {
    let delay = Step::Delay(std::time::Duration::from_millis(7));
    let logged_in = "+OK alice's maildrop has 1 message (28 octets)\r\n";
    let failed = "-ERR [AUTH] invalid user name or password\r\n";
    // user, password, initial response, the outcome after client-final (and the empty response).
    let cases = [
        ("alice", "secret", false, logged_in, Step::Continue),
        ("alice", "secret", true, logged_in, Step::Continue),
        ("alice", "wrong", false, failed, delay),
        ("nobody", "secret", true, failed, delay),
    ];
    for (user, password, initial, want, want_step) in cases {
        let f = fixture(&[MSG1]);
        let mut s = Session::new(&f.services, "peer", None);
        let client = scram_client::Client::new(user, password, "n,,");
        let server_first = if initial {
            script(&mut s, &[&format!("AUTH SCRAM-SHA-256 {}", client.first())]).0
        } else {
            assert_eq!(script(&mut s, &["AUTH SCRAM-SHA-256"]).0, "+ \r\n");
            script(&mut s, &[&client.first()]).0
        };
        let (client_final, server_signature) = client.last(&server_first);
        let (out, step) = script(&mut s, &[&client_final]);
        if want == logged_in {
            assert_eq!(out, format!("+ {server_signature}\r\n"), "{user}");
            let (out, step) = script(&mut s, &[""]);
            assert_eq!((out.as_str(), step), (want, want_step), "{user}");
            assert!(s.logged_in());
        } else {
            assert_eq!((out.as_str(), step), (want, want_step), "{user} {password}");
            assert!(!s.logged_in());
        }
    }
}

/// Unknown users get a server-first like a real one: the same shape, a salt that does not change.
#[test]
fn scram_server_first_for_unknown_users() {
    let f = fixture(&[MSG1]);
    let salt_of = |user: &str| {
        let mut s = Session::new(&f.services, "peer", None);
        let client = scram_client::Client::new(user, "x", "n,,");
        let out = script(&mut s, &[&format!("AUTH SCRAM-SHA-256 {}", client.first())]).0;
        let first = scram_client::server_first(&out);
        let fields: Vec<&str> = first.split(',').collect();
        assert_eq!(fields.len(), 3, "{first}");
        assert_eq!(fields[0].len(), "r=".len() + 20 + 24, "{first}");
        assert_eq!(fields[2], "i=4096");
        fields[1].to_string()
    };
    assert_eq!(salt_of("nobody"), salt_of("nobody"));
    assert_ne!(salt_of("nobody"), salt_of("somebody"));
    assert_eq!(salt_of("alice"), "s=c2FsdA==");
}

#[test]
fn scram_breaking_off() {
    let f = fixture(&[MSG1]);
    let client = scram_client::Client::new("alice", "secret", "n,,");
    let first = format!("AUTH SCRAM-SHA-256 {}", client.first());
    let cancelled = "-ERR authentication cancelled\r\n";
    let cases: &[(&[&str], &str)] = &[
        (&["AUTH SCRAM-SHA-256", "*"], cancelled),
        (&[&first, "*"], cancelled),
        // "p=tls-unique,,n=alice,r=x" and "n,,m=x,n=alice,r=x"
        (
            &["AUTH SCRAM-SHA-256 cD10bHMtdW5pcXVlLCxuPWFsaWNlLHI9eA=="],
            "-ERR channel binding not supported\r\n",
        ),
        (
            &["AUTH SCRAM-SHA-256 biwsbT14LG49YWxpY2Uscj14"],
            "-ERR unsupported mandatory SCRAM extension\r\n",
        ),
        // "n,a=bob,n=alice,r=x": acting as another user counts as a failed login, as with PLAIN.
        (
            &["AUTH SCRAM-SHA-256 bixhPWJvYixuPWFsaWNlLHI9eA=="],
            "-ERR [AUTH] authorization identity must be empty or the user name\r\n",
        ),
        (&["AUTH SCRAM-SHA-256 ="], "-ERR malformed SASL message\r\n"),
        (&[&first, "@@@"], "-ERR invalid base64 in SASL response\r\n"),
        (&[&first, "Yz1iaXdz"], "-ERR malformed SASL message\r\n"),
    ];
    for (lines, want) in cases {
        let mut s = Session::new(&f.services, "peer", None);
        script(&mut s, &["USER alice"]);
        let (out, _) = script(&mut s, lines);
        assert!(out.ends_with(want), "{lines:?}: {out}");
        // Broken off after the server-first (a key derivation made), or acting as another user:
        // a failed login. Before it, nothing was spent: not counted.
        let counted = lines.len() == 2 && lines[0] == first || want.contains("[AUTH]");
        assert_eq!(s.failures, u32::from(counted), "{lines:?}");
        // RFC 5034: as if AUTH had not been issued.
        assert_eq!(
            script(&mut s, &["PASS secret"]).0.get(..3),
            Some("+OK"),
            "{lines:?}"
        );
    }
    // After the server-final: only an empty response completes the login.
    for (last, want) in [
        ("*", "-ERR authentication cancelled\r\n"),
        ("eA==", "-ERR malformed SASL message\r\n"),
    ] {
        let mut s = Session::new(&f.services, "peer", None);
        let out = script(&mut s, &[&first]).0;
        let (client_final, _) = client.last(&out);
        script(&mut s, &[&client_final]);
        assert_eq!(script(&mut s, &[last]).0, want);
        assert!(!s.logged_in());
    }
}

/// A connection that ends (closed, timed out, broken) after SCRAM's server-first, a key derivation
/// made, is a failed login with its delay, counted once; before the server-first, outside an
/// exchange, or after a proof that matched, nothing was spent for nothing and nothing is counted.
#[test]
fn a_connection_ended_after_the_server_first_counts_as_a_failed_login() {
    use std::time::Duration;
    let f = fixture(&[MSG1]);
    let client = scram_client::Client::new("alice", "secret", "n,,");
    let first = format!("AUTH SCRAM-SHA-256 {}", client.first());
    let mut s = Session::new(&f.services, "peer", None);
    assert!(script(&mut s, &[&first]).0.starts_with("+ "));
    assert_eq!(s.ended_mid_exchange(), Some(Duration::from_millis(7)));
    assert_eq!(s.failures, 1);
    assert!(s.is_finished());
    assert_eq!(s.ended_mid_exchange(), None, "counted once");
    // After an earlier failure, the delay grows as it does for a second wrong password.
    let mut s = Session::new(&f.services, "peer", None);
    script(
        &mut s,
        &[
            "USER alice",
            "PASS wrong",
            "AUTH SCRAM-SHA-256",
            &client.first(),
        ],
    );
    assert_eq!(s.ended_mid_exchange(), Some(Duration::from_millis(14)));
    assert_eq!(s.failures, 2);
    let nothing_spent: &[&[&str]] = &[
        &[],
        &["USER alice"],
        &["AUTH SCRAM-SHA-256"],
        &["AUTH PLAIN"],
        &["AUTH LOGIN", "YWxpY2U="],
        &[&first, "*"],
    ];
    for lines in nothing_spent {
        let mut s = Session::new(&f.services, "peer", None);
        script(&mut s, lines);
        let failures = s.failures;
        assert_eq!(s.ended_mid_exchange(), None, "{lines:?}");
        assert_eq!(s.failures, failures, "{lines:?}");
    }
    // The proof matched and the server-final was sent: the password was right.
    let mut s = Session::new(&f.services, "peer", None);
    let out = script(&mut s, &[&first]).0;
    let (client_final, _) = client.last(&out);
    assert!(script(&mut s, &[&client_final]).0.starts_with("+ "));
    assert_eq!(s.ended_mid_exchange(), None);
    assert_eq!(s.failures, 0);
}

/// A response over the SASL line limit after SCRAM's server-first counts as a failed login, as
/// any other broken-off exchange there does: otherwise one connection could have key derivations
/// made without limit. Before the server-first, nothing was spent and nothing is counted.
#[test]
fn an_over_long_scram_response_counts_as_a_failed_login() {
    let mut f = fixture(&[MSG1]);
    f.services.max_auth_attempts = 2;
    let client = scram_client::Client::new("alice", "secret", "n,,");
    let first = format!("AUTH SCRAM-SHA-256 {}", client.first());
    let too_long = "-ERR SASL response too long (limit 2048 octets)\r\n";
    let mut s = Session::new(&f.services, "peer", None);
    script(&mut s, &["USER alice", "AUTH SCRAM-SHA-256"]);
    let mut out = Vec::new();
    assert_eq!(s.line_too_long(&mut out).unwrap(), Step::Continue);
    assert_eq!(out, too_long.as_bytes());
    assert_eq!(s.failures, 0);
    for attempt in 1..=2 {
        assert!(script(&mut s, &[&first]).0.starts_with("+ "));
        let mut out = Vec::new();
        let step = s.line_too_long(&mut out).unwrap();
        assert_eq!(out, too_long.as_bytes());
        assert!(matches!(step, Step::Delay(_)), "{step:?}");
        assert_eq!(s.failures, attempt);
    }
    // Two failures allowed: the second ends the session.
    assert!(s.is_finished());
    // With attempts left, the USER given before AUTH is back in place.
    let mut s = Session::new(&f.services, "peer", None);
    script(&mut s, &["USER alice", &first]);
    s.line_too_long(&mut Vec::new()).unwrap();
    assert_eq!(script(&mut s, &["PASS secret"]).0.get(..3), Some("+OK"));
}

/// A SCRAM client for these tests, computing its proof with `auth::scram`'s functions.
mod scram_client {
    use crate::auth::scram;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    pub struct Client {
        bare: String,
        gs2: &'static str,
        password: &'static str,
    }

    /// The decoded server-first message of a `+ ` line.
    pub fn server_first(line: &str) -> String {
        let b64 = line
            .strip_prefix("+ ")
            .and_then(|l| l.strip_suffix("\r\n"))
            .unwrap();
        String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
    }

    impl Client {
        pub fn new(user: &str, password: &'static str, gs2: &'static str) -> Client {
            Client {
                bare: format!("n={user},r=fyko+d2lbbFgONRv9qkx"),
                gs2,
                password,
            }
        }

        pub fn first(&self) -> String {
            STANDARD.encode(format!("{}{}", self.gs2, self.bare))
        }

        /// The client-final for the server's `+ ` line, and the server-final it expects.
        pub fn last(&self, line: &str) -> (String, String) {
            let first = server_first(line);
            let mut nonce = "";
            let mut salt = Vec::new();
            let mut iterations = 0;
            for field in first.split(',') {
                match field.split_at(2) {
                    ("r=", v) => nonce = v,
                    ("s=", v) => salt = STANDARD.decode(v).unwrap(),
                    ("i=", v) => iterations = v.parse().unwrap(),
                    _ => panic!("{first}"),
                }
            }
            assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkx"), "{first}");
            let without_proof = format!("c={},r={nonce}", STANDARD.encode(self.gs2));
            let auth = format!("{},{first},{without_proof}", self.bare);
            let salted = scram::salted_password(self.password.as_bytes(), &salt, iterations);
            let client_key = scram::hmac(&salted, b"Client Key");
            let signature = scram::hmac(&scram::sha256(&client_key), auth.as_bytes());
            let proof: Vec<u8> = client_key
                .iter()
                .zip(signature)
                .map(|(k, s)| k ^ s)
                .collect();
            let server_key = scram::hmac(&salted, b"Server Key");
            let v = format!(
                "v={}",
                STANDARD.encode(scram::hmac(&server_key, auth.as_bytes()))
            );
            (
                STANDARD.encode(format!("{without_proof},p={}", STANDARD.encode(proof))),
                STANDARD.encode(v),
            )
        }
    }
}
