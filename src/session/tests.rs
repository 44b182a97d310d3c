//! Session tests: scripted exchanges against a fake user database and a temporary Maildir, asserting the
//! exact reply bytes.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::auth::scram::Keys;
use crate::auth::{Account, AuthError, Authenticator, SaltKey, ScramLookup, Secret};

/// alice, password "secret"; for SCRAM with the salt "salt" and 4096 iterations.
struct OneUser {
    home: std::path::PathBuf,
}

impl OneUser {
    fn alice(&self) -> Account {
        Account {
            name: "alice".into(),
            uid: None,
            gid: None,
            home: Some(self.home.clone()),
            policy: Default::default(),
        }
    }
}

impl Authenticator for OneUser {
    fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
        if user == b"alice" && *password.expose() == b"secret".as_slice() {
            Ok(self.alice())
        } else {
            Err(AuthError::BadCredentials)
        }
    }
    fn apop(&self, _user: &[u8], _timestamp: &[u8], _digest: &[u8]) -> Result<Account, AuthError> {
        Err(AuthError::BadCredentials)
    }
    fn scram(&self, user: &[u8], salts: &SaltKey) -> ScramLookup {
        if user != b"alice" {
            return ScramLookup::unusable(user, salts);
        }
        ScramLookup {
            keys: Keys::from_password(b"secret", b"salt", 4096),
            account: Ok(self.alice()),
        }
    }
    fn scram_for_every_user(&self) -> bool {
        true
    }
}

pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) services: Services,
}

pub(super) fn fixture(messages: &[&[u8]]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    for (i, body) in messages.iter().enumerate() {
        let path = maildir
            .join("cur")
            .join(format!("{}.M{i}P1.test:2,", 1_000_000 + i));
        std::fs::write(&path, body).unwrap();
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000 + i as u64);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let mut services = Services::new(
        Arc::new(OneUser {
            home: dir.path().to_path_buf(),
        }),
        "maildir:%h/Maildir".parse().unwrap(),
    );
    services.auth_failure_delay = Duration::from_millis(7);
    Fixture { dir, services }
}

/// Feeds each line and returns everything written, with the step of the last line.
pub(super) fn script(session: &mut Session<'_>, lines: &[&str]) -> (String, Step) {
    let mut out = Vec::new();
    let mut step = Step::Continue;
    for line in lines {
        step = session.handle_line(line.as_bytes(), &mut out).unwrap();
    }
    (String::from_utf8(out).unwrap(), step)
}

pub(super) const MSG1: &[u8] = b"Subject: one\n\nbody\n.dot\n";
const MSG2: &[u8] = b"Subject: two\n\nno newline";

#[test]
fn greeting_without_and_with_apop() {
    let f = fixture(&[]);
    let mut out = Vec::new();
    Session::new(&f.services, "peer", None)
        .greeting(&mut out)
        .unwrap();
    assert_eq!(out, b"+OK poplar ready\r\n");
    out.clear();
    Session::new(&f.services, "peer", Some("<1.2@h>".into()))
        .greeting(&mut out)
        .unwrap();
    assert_eq!(out, b"+OK poplar ready <1.2@h>\r\n");
}

#[test]
fn login_stat_list_retr_top_uidl() {
    let f = fixture(&[MSG1, MSG2]);
    let mut s = Session::new(&f.services, "peer", None);
    let (out, _) = script(&mut s, &["USER alice", "PASS secret"]);
    assert_eq!(
        out,
        "+OK send PASS\r\n+OK alice's maildrop has 2 messages (56 octets)\r\n"
    );
    let (out, _) = script(&mut s, &["STAT", "LIST", "LIST 2", "LIST 3", "LIST 0"]);
    assert_eq!(
        out,
        "+OK 2 56\r\n+OK 2 messages (56 octets)\r\n1 28\r\n2 28\r\n.\r\n+OK 2 28\r\n\
         -ERR no such message 3\r\n-ERR invalid message number\r\n"
            .replace(
                "-ERR invalid message number",
                &format!(
                    "-ERR {}",
                    crate::proto::command::ParseError::BadMessageNumber
                )
            )
    );
    let (out, _) = script(&mut s, &["RETR 1"]);
    assert_eq!(
        out,
        "+OK 28 octets\r\nSubject: one\r\n\r\nbody\r\n..dot\r\n.\r\n"
    );
    let (out, _) = script(&mut s, &["retr 2"]);
    assert_eq!(
        out,
        "+OK 28 octets\r\nSubject: two\r\n\r\nno newline\r\n.\r\n"
    );
    let (out, _) = script(&mut s, &["TOP 1 0"]);
    assert_eq!(
        out,
        "+OK top of message 1 follows\r\nSubject: one\r\n\r\n.\r\n"
    );
    let (out, _) = script(&mut s, &["UIDL"]);
    assert_eq!(
        out,
        "+OK unique-id listing follows\r\n1 1000000.M0P1.test\r\n2 1000001.M1P1.test\r\n.\r\n"
    );
}

#[test]
fn deleted_messages_vanish_until_rset() {
    let f = fixture(&[MSG1, MSG2]);
    let mut s = Session::new(&f.services, "peer", None);
    script(&mut s, &["USER alice", "PASS secret"]);
    let (out, _) = script(
        &mut s,
        &[
            "DELE 1", "DELE 1", "STAT", "LIST", "RETR 1", "UIDL 1", "TOP 1 1",
        ],
    );
    assert_eq!(
        out,
        "+OK message 1 deleted\r\n-ERR message 1 already deleted\r\n+OK 1 28\r\n\
         +OK 1 message (28 octets)\r\n2 28\r\n.\r\n-ERR message 1 already deleted\r\n\
         -ERR message 1 already deleted\r\n-ERR message 1 already deleted\r\n"
    );
    let (out, _) = script(&mut s, &["RSET", "STAT"]);
    assert_eq!(
        out,
        "+OK maildrop has 2 messages (56 octets)\r\n+OK 2 56\r\n"
    );
}

#[test]
fn quit_in_transaction_applies_deletions() {
    let f = fixture(&[MSG1, MSG2]);
    let mut s = Session::new(&f.services, "peer", None);
    let (out, step) = script(&mut s, &["USER alice", "PASS secret", "DELE 2", "QUIT"]);
    assert!(
        out.ends_with("+OK poplar signing off (1 message left)\r\n"),
        "{out}"
    );
    assert_eq!(step, Step::Quit);
    let left: Vec<_> = std::fs::read_dir(f.dir.path().join("Maildir/cur"))
        .unwrap()
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(s.finish(Outcome::Closed).outcome, Some(Outcome::Quit));
}

#[test]
fn no_quit_deletes_nothing() {
    let f = fixture(&[MSG1, MSG2]);
    let mut s = Session::new(&f.services, "peer", None);
    script(&mut s, &["USER alice", "PASS secret", "DELE 1", "DELE 2"]);
    let stats = s.finish(Outcome::Closed);
    assert_eq!(stats.outcome, Some(Outcome::Closed));
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("Maildir/cur"))
            .unwrap()
            .count(),
        2
    );
}

#[test]
fn bad_credentials_are_delayed_and_uniform() {
    let f = fixture(&[]);
    let mut s = Session::new(&f.services, "peer", None);
    let (wrong_pass, step) = script(&mut s, &["USER alice", "PASS nope"]);
    assert_eq!(step, Step::Delay(Duration::from_millis(7)));
    let (unknown, _) = script(&mut s, &["USER bob", "PASS secret"]);
    assert_eq!(wrong_pass, unknown);
    assert_eq!(
        unknown,
        "+OK send PASS\r\n-ERR [AUTH] invalid user name or password\r\n"
    );
    // After a failed PASS, the client must start over with USER.
    let (out, _) = script(&mut s, &["PASS secret"]);
    assert_eq!(out, "-ERR send USER first\r\n");
}

/// A password over `auth::MAX_PASSWORD_LEN` octets fails like a wrong one (the same reply, counted and
/// delayed), even the user's own; one of exactly that length logs in. Through the passwd-file, by AUTH
/// PLAIN and LOGIN, whose responses have room for it (a PASS line does not).
#[test]
fn a_password_over_the_cap_fails_like_a_wrong_one() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let f = fixture(&[MSG1]);
    let home = f.dir.path().display();
    let at_cap = "p".repeat(crate::auth::MAX_PASSWORD_LEN);
    let over = "q".repeat(crate::auth::MAX_PASSWORD_LEN + 1);
    let passwd = f.dir.path().join("passwd");
    std::fs::write(
        &passwd,
        format!("ok:{{PLAIN}}{at_cap}::::{home}::\nlong:{{PLAIN}}{over}::::{home}::\n"),
    )
    .unwrap();
    let mut services = Services::new(
        Arc::new(crate::auth::passwd_file::PasswdFile::open(&passwd).unwrap()),
        "maildir:%h/Maildir".parse().unwrap(),
    );
    services.auth_failure_delay = Duration::from_millis(7);
    let failed = "-ERR [AUTH] invalid user name or password\r\n";
    let delay = Step::Delay(Duration::from_millis(7));
    for (user, password) in [("long", &over), ("nobody", &over), ("ok", &over)] {
        let plain = b64(format!("\0{user}\0{password}").as_bytes());
        let login = [
            "AUTH LOGIN",
            &b64(user.as_bytes()),
            &b64(password.as_bytes()),
        ];
        for lines in [&["AUTH PLAIN", &plain][..], &login] {
            let mut s = Session::new(&services, "peer", None);
            let (out, step) = script(&mut s, lines);
            assert!(out.ends_with(failed), "{user}: {out}");
            assert_eq!((step, s.failures), (delay, 1), "{user}");
        }
    }
    let mut s = Session::new(&services, "peer", None);
    let (out, _) = script(
        &mut s,
        &["AUTH PLAIN", &b64(format!("\0ok\0{at_cap}").as_bytes())],
    );
    assert!(
        out.ends_with("+OK ok's maildrop has 1 message (28 octets)\r\n"),
        "{out}"
    );
}

#[test]
fn wrong_state_and_unknown_commands() {
    let f = fixture(&[MSG1]);
    let mut s = Session::new(&f.services, "peer", None);
    let (out, _) = script(&mut s, &["STAT", "RETR 1", "APOP alice 0123"]);
    assert_eq!(
        out,
        "-ERR STAT is not valid before login\r\n-ERR RETR is not valid before login\r\n-ERR APOP not enabled\r\n"
    );
    script(&mut s, &["USER alice", "PASS secret"]);
    let (out, _) = script(&mut s, &["USER alice", "PASS x", "STLS"]);
    assert_eq!(
        out,
        "-ERR USER is not valid after login\r\n-ERR PASS is not valid after login\r\n-ERR STLS is not valid after login\r\n"
    );
    let (out, _) = script(&mut s, &["XYZZY"]);
    assert!(out.starts_with("-ERR ") && out.len() > 7, "{out}");
}

#[test]
fn capa_in_both_states() {
    let f = fixture(&[]);
    let mut s = Session::new(&f.services, "peer", None);
    let (before, _) = script(&mut s, &["CAPA"]);
    let capa = |sasl: &str| {
        format!(
            "+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\n{sasl}PIPELINING\r\nRESP-CODES\r\n\
             AUTH-RESP-CODE\r\nIMPLEMENTATION poplar {}\r\n.\r\n",
            env!("CARGO_PKG_VERSION")
        )
    };
    assert_eq!(before, capa("SASL PLAIN LOGIN SCRAM-SHA-256\r\n"));
    script(&mut s, &["USER alice", "PASS secret"]);
    let (after, _) = script(&mut s, &["CAPA"]);
    // RFC 2449 section 5: "Capabilities available in the AUTHORIZATION state MUST be announced in both
    // states", though AUTH itself is refused after login.
    assert_eq!(after, before);
}

#[test]
fn second_session_gets_in_use() {
    let f = fixture(&[MSG1]);
    let mut first = Session::new(&f.services, "peer", None);
    script(&mut first, &["USER alice", "PASS secret"]);
    let mut second = Session::new(&f.services, "peer", None);
    let (out, _) = script(&mut second, &["USER alice", "PASS secret"]);
    assert_eq!(
        out,
        "+OK send PASS\r\n-ERR [IN-USE] maildrop already locked by another session\r\n"
    );
    script(&mut first, &["QUIT"]);
    let (out, _) = script(&mut second, &["USER alice", "PASS secret"]);
    assert!(
        out.ends_with("+OK alice's maildrop has 1 message (28 octets)\r\n"),
        "{out}"
    );
}

#[test]
fn printable_escapes_control_characters() {
    assert_eq!(printable(b"bob"), "bob");
    assert_eq!(printable(b"a\r\nb c"), "a\\x0d\\x0ab\\x20c");
    assert_eq!(printable(&[b'x'; 70]).len(), 67);
}

#[test]
fn failed_logins_grow_the_delay_then_close() {
    let mut f = fixture(&[]);
    f.services.max_auth_attempts = 3;
    let mut s = Session::new(&f.services, "peer", None);
    let ms = Duration::from_millis;
    let cases = [
        (&["USER alice", "PASS nope"][..], ms(7)),
        (&["USER nobody", "PASS secret"][..], ms(14)),
        (&["APOP alice 0123"][..], Step::Continue.delay_or(ms(0))),
    ];
    // APOP is not enabled here: a refusal, not a failed login, so it does not count.
    for (lines, delay) in cases {
        let (_, step) = script(&mut s, lines);
        assert_eq!(step.delay_or(ms(0)), delay, "{lines:?}");
        assert!(!s.is_finished());
    }
    let (out, step) = script(&mut s, &["USER alice", "PASS again"]);
    assert_eq!(
        out,
        "+OK send PASS\r\n-ERR [AUTH] invalid user name or password\r\n"
    );
    assert_eq!(step, Step::Delay(ms(21)));
    assert!(s.is_finished());
    // Nothing more is served on this connection, even the right password.
    let (out, step) = script(&mut s, &["USER alice"]);
    assert_eq!(
        (out.as_str(), step),
        ("-ERR session is over\r\n", Step::Quit)
    );
    assert_eq!(
        s.finish(Outcome::Closed).outcome,
        Some(Outcome::AuthFailures)
    );
}

#[test]
fn failure_delay_is_capped() {
    let s = Duration::from_secs;
    let cases = [
        (s(2), 1, s(2)),
        (s(2), 0, s(2)),
        (s(2), 3, s(6)),
        (s(2), 100, s(30)),
        (s(45), 2, s(45)),
        (s(0), 9, s(0)),
    ];
    for (delay, failures, want) in cases {
        assert_eq!(
            failure_delay(delay, failures),
            want,
            "{delay:?} x {failures}"
        );
    }
}

struct Refuse;

impl Identity for Refuse {
    fn assume(&self, account: &Account, _mbox: bool) -> Result<Option<u32>, String> {
        Err(format!("no ids for {}", account.name))
    }
}

/// Records each identity change, and can refuse to go back.
#[derive(Default)]
struct Recorded {
    calls: std::sync::Mutex<Vec<String>>,
    restore_fails: bool,
}

impl Identity for Recorded {
    fn assume(&self, account: &Account, mbox: bool) -> Result<Option<u32>, String> {
        let kind = if mbox { "mbox" } else { "maildir" };
        self.calls
            .lock()
            .unwrap()
            .push(format!("assume {} {kind}", account.name));
        Ok(None)
    }
    fn restore(&self) -> Result<(), String> {
        self.calls.lock().unwrap().push("restore".to_string());
        if self.restore_fails {
            Err("cannot go back".to_string())
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_maildrop_that_does_not_open_gives_back_the_identity() {
    for restore_fails in [false, true] {
        let mut f = fixture(&[MSG1]);
        let _holder = {
            let mut s = Session::new(&f.services, "peer", None);
            script(&mut s, &["USER alice", "PASS secret"]);
            s
        };
        let recorded = Arc::new(Recorded {
            restore_fails,
            ..Recorded::default()
        });
        f.services.identity = recorded.clone();
        let mut s = Session::new(&f.services, "peer", None);
        let (out, step) = script(&mut s, &["USER alice", "PASS secret"]);
        // The reply says when the session ends with it (an inetd session switched for good).
        let closing = if restore_fails { ", closing" } else { "" };
        assert!(
            out.ends_with(&format!(
                "-ERR [IN-USE] maildrop already locked by another session{closing}\r\n"
            )),
            "{out}"
        );
        // The fixture's maildrop is a Maildir: no mail-group for it.
        assert_eq!(
            *recorded.calls.lock().unwrap(),
            ["assume alice maildir", "restore"]
        );
        // Still in AUTHORIZATION when the start-up identity is back; ended when it cannot be.
        assert_eq!(s.is_finished(), restore_fails);
        assert_eq!(step == Step::Quit, restore_fails);
    }
}

/// A name the mail location refuses (no domain for `%d`) is refused before any identity is taken on:
/// nothing to give back, so the session stays in AUTHORIZATION even where going back is impossible
/// (under inetd as root it ended, its reply not saying so).
#[test]
fn a_refused_mail_location_takes_on_no_identity() {
    let mut f = fixture(&[MSG1]);
    f.services.mail = "maildir:/nonexistent/%d/%n".parse().unwrap();
    let recorded = Arc::new(Recorded {
        restore_fails: true,
        ..Recorded::default()
    });
    f.services.identity = recorded.clone();
    let mut s = Session::new(&f.services, "peer", None);
    let (out, step) = script(&mut s, &["USER alice", "PASS secret"]);
    assert!(
        out.ends_with("-ERR [SYS/PERM] no maildrop for this user\r\n"),
        "{out}"
    );
    assert!(recorded.calls.lock().unwrap().is_empty());
    assert!(!s.is_finished());
    assert_eq!(step, Step::Continue);
}

#[test]
fn identity_failure_ends_the_session_unopened() {
    let mut f = fixture(&[MSG1]);
    f.services.identity = Arc::new(Refuse);
    let mut s = Session::new(&f.services, "peer", None);
    let (out, step) = script(&mut s, &["USER alice", "PASS secret"]);
    assert_eq!(
        out,
        "+OK send PASS\r\n-ERR [SYS/PERM] cannot access the maildrop, closing\r\n"
    );
    assert_eq!(step, Step::Quit);
    assert!(s.is_finished() && !s.logged_in());
    // The maildrop was never opened, so it is not locked: another session gets in.
    f.services.identity = Arc::new(SameIdentity);
    let mut other = Session::new(&f.services, "peer", None);
    let (out, _) = script(&mut other, &["USER alice", "PASS secret"]);
    assert!(
        out.ends_with("+OK alice's maildrop has 1 message (28 octets)\r\n"),
        "{out}"
    );
}

impl Step {
    fn delay_or(self, none: Duration) -> Duration {
        match self {
            Step::Delay(d) => d,
            _ => none,
        }
    }
}

/// Records each write apart, to see how RETR hands its body on.
#[derive(Default)]
struct Writes(Vec<Vec<u8>>);

impl std::io::Write for Writes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn retr_writes_the_body_with_its_terminator_across_chunk_sizes() {
    // Sizes around the read chunk and several chunks long, so that every path of the loop is taken.
    let line = b"0123456789 .line of text that is byte-stuffed when at the start\n";
    for (lines, one_body_write) in [(1, true), (400, true), (1_500, false)] {
        let mut body = Vec::new();
        for _ in 0..lines {
            body.extend_from_slice(&line[11..]);
            body.extend_from_slice(line);
        }
        let f = fixture(&[&body]);
        let mut s = Session::new(&f.services, "peer", None);
        script(&mut s, &["USER alice", "PASS secret"]);
        let mut out = Writes::default();
        s.handle_line(b"RETR 1", &mut out).unwrap();
        let expected = String::from_utf8(body.clone())
            .unwrap()
            .replace('\n', "\r\n")
            .replace("\r\n.", "\r\n..");
        let expected = format!("..{}.\r\n", &expected[1..]);
        let sent = String::from_utf8(out.0[1..].concat()).unwrap();
        assert!(sent == expected, "{lines} lines: body differs");
        assert_eq!(
            out.0.len() == 2,
            one_body_write,
            "{lines} lines: {} writes",
            out.0.len()
        );
    }
}

#[test]
fn retr_sends_exact_bytes_whatever_the_order_of_message_sizes() {
    // The read and encode buffers live for the session: a small message after a large one must not
    // carry any of the large one's octets, and a large one after a small one must grow them.
    let line = b".stuffed line, then a bare LF\nand a CRLF line\r\n";
    let body = |lines: usize| line.repeat(lines);
    let (small, large, huge) = (body(1), body(1_200), body(3_000));
    let f = fixture(&[&small, &large, &huge]);
    let mut s = Session::new(&f.services, "peer", None);
    script(&mut s, &["USER alice", "PASS secret"]);
    let encoded = |body: &[u8]| {
        let text = String::from_utf8(body.to_vec())
            .unwrap()
            .replace("\r\n", "\n");
        format!(
            "{}.\r\n",
            text.replace('\n', "\r\n").replace("\r\n.", "\r\n..")
        )
        .replacen('.', "..", 1)
    };
    for msg in [3, 1, 2, 1, 3, 2] {
        let expected = [&small, &large, &huge][msg - 1];
        let (out, _) = script(&mut s, &[&format!("RETR {msg}")]);
        let (status, sent) = out.split_once("\r\n").unwrap();
        assert!(status.starts_with("+OK"), "RETR {msg}: {status}");
        assert!(sent == encoded(expected), "RETR {msg}: body differs");
    }
}

#[test]
fn the_update_gate_closes_only_when_no_update_runs() {
    let gate = UpdateGate::default();
    let inside = gate.enter().expect("open");
    assert_eq!(gate.in_progress(), 1);
    assert!(!gate.close_if_idle());
    drop(inside);
    assert!(gate.close_if_idle() && gate.close_if_idle());
    assert!(gate.enter().is_none());
    assert_eq!(gate.in_progress(), 0);
}

#[test]
fn quit_after_shutdown_closed_the_gate_deletes_nothing() {
    let f = fixture(&[MSG1]);
    let mut s = Session::new(&f.services, "peer", None);
    script(&mut s, &["USER alice", "PASS secret", "DELE 1"]);
    assert!(f.services.updates.close_if_idle());
    let (out, step) = script(&mut s, &["QUIT"]);
    assert_eq!(
        (out.as_str(), step),
        (
            "-ERR [SYS/TEMP] server shutting down, nothing deleted\r\n",
            Step::Quit
        )
    );
    drop(s);
    let services = Services::new(f.services.auth.clone(), f.services.mail.clone());
    let mut again = Session::new(&services, "peer", None);
    let (out, _) = script(&mut again, &["USER alice", "PASS secret"]);
    assert!(out.ends_with("has 1 message (28 octets)\r\n"), "{out}");
}
