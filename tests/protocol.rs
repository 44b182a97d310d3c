//! RFC 1939 / RFC 2449 / RFC 3206 behaviour of the real binary over TCP: greeting, CAPA, authentication,
//! every TRANSACTION command with exact bytes, error paths, oversized and junk input.

mod common;

use common::{
    Backend, MESSAGES, Server, crlf, listing, md5_hex, standard, standard_on, unstuff, wire,
};
use std::time::Duration;

fn ok(s: &str) -> bool {
    s.starts_with("+OK ")
}

fn err(s: &str) -> bool {
    s.starts_with("-ERR ")
}

fn total_size() -> usize {
    MESSAGES.iter().map(|m| crlf(m.2).len()).sum()
}

#[test]
fn greeting_without_apop_has_no_timestamp() {
    let fx = standard();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    let g = c.greeting();
    assert!(!g.contains('<'), "greeting announces APOP: {g}");
}

fn capa_lines(c: &mut common::Client) -> Vec<String> {
    let raw = c.multi("CAPA");
    let mut lines: Vec<String> = String::from_utf8(unstuff(&raw))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn capa_in_both_states(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut expected = vec![
        "TOP",
        "UIDL",
        "USER",
        "SASL PLAIN LOGIN SCRAM-SHA-256",
        "PIPELINING",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "IMPLEMENTATION poplar 0.1.0",
    ];
    expected.sort();
    // RFC 2449 section 5: "Capabilities available in the AUTHORIZATION state MUST be announced in
    // both states" (without a certificate, no STLS in either).
    let mut c = srv.connect();
    c.greeting();
    assert_eq!(capa_lines(&mut c), expected, "AUTHORIZATION state");
    c.login("alice", "secret");
    assert_eq!(capa_lines(&mut c), expected, "TRANSACTION state");
}

/// A reply is not held back while only part of the next command has arrived: the rest may take any
/// time, and the client waits for the reply before it sends more.
#[test]
fn a_partial_next_command_does_not_hold_back_a_reply() {
    let fx = standard_on(Backend::Maildir);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    c.send(b"STAT\r\nNO");
    c.set_read_timeout(Duration::from_secs(3));
    assert!(c.read_line().starts_with("+OK 5 "));
    c.send(b"OP\r\n");
    assert!(c.read_line().starts_with("+OK"));
}

fn stat_and_list(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert_eq!(c.cmd("STAT"), format!("+OK 5 {}", total_size()));
    let list = listing(&c.multi("LIST"));
    let expected: Vec<(u32, String)> = MESSAGES
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u32 + 1, crlf(m.2).len().to_string()))
        .collect();
    assert_eq!(list, expected);
    assert_eq!(
        c.cmd("LIST 3"),
        format!("+OK 3 {}", crlf(MESSAGES[2].2).len())
    );
    for bad in [
        "LIST 0",
        "LIST 6",
        "LIST 99999999999999999999",
        "LIST -1",
        "LIST x",
    ] {
        let r = c.cmd(bad);
        assert!(err(&r), "{bad} -> {r}");
    }
}

fn retr_exact_bytes_and_sizes(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    let list = listing(&c.multi("LIST"));
    for (i, (_, _, content)) in MESSAGES.iter().enumerate() {
        let n = i + 1;
        let raw = c.multi(&format!("RETR {n}"));
        assert_eq!(common::show(&raw), common::show(&wire(content)), "RETR {n}");
        let octets: usize = list[i].1.parse().unwrap();
        assert_eq!(
            unstuff(&raw).len(),
            octets,
            "LIST size of {n} vs RETR bytes"
        );
    }
    for bad in ["RETR 0", "RETR 6", "RETR", "RETR abc"] {
        assert!(err(&c.cmd(bad)), "{bad}");
    }
}

fn top(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    let cases: [(&str, &[u8]); 7] = [
        (
            "TOP 1 0",
            b"From: a@example.org\r\nSubject: one\r\n\r\n.\r\n",
        ),
        ("TOP 5 0", b"Subject: five\r\nX-Two: 2\r\n\r\n.\r\n"),
        (
            "TOP 5 2",
            b"Subject: five\r\nX-Two: 2\r\n\r\nb1\r\nb2\r\n.\r\n",
        ),
        (
            "TOP 5 4",
            b"Subject: five\r\nX-Two: 2\r\n\r\nb1\r\nb2\r\nb3\r\n..b4\r\n.\r\n",
        ),
        (
            "TOP 2 2",
            b"Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n.\r\n",
        ),
        ("TOP 4 0", b"Subject: crlf\r\nX-A: b\r\n\r\n.\r\n"),
        (
            "TOP 3 100",
            b"Subject: no newline\r\n\r\nlast line has no newline\r\n.\r\n",
        ),
    ];
    for (cmd, expected) in cases {
        assert_eq!(common::show(&c.multi(cmd)), common::show(expected), "{cmd}");
    }
    // More lines than the body has: the whole message.
    assert_eq!(c.multi("TOP 5 1000"), wire(MESSAGES[4].2));
    for bad in ["TOP 0 1", "TOP 6 0", "TOP 1", "TOP", "TOP 1 -1", "TOP x 1"] {
        assert!(err(&c.cmd(bad)), "{bad}");
    }
}

fn dele_hides_message_and_rset_restores(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(ok(&c.cmd("DELE 2")));
    let size2 = crlf(MESSAGES[1].2).len();
    assert_eq!(c.cmd("STAT"), format!("+OK 4 {}", total_size() - size2));
    let nums: Vec<u32> = listing(&c.multi("LIST")).into_iter().map(|e| e.0).collect();
    assert_eq!(nums, [1, 3, 4, 5], "numbers are never reused");
    let uids: Vec<u32> = listing(&c.multi("UIDL")).into_iter().map(|e| e.0).collect();
    assert_eq!(uids, [1, 3, 4, 5]);
    for cmd in ["LIST 2", "UIDL 2", "RETR 2", "TOP 2 0", "DELE 2"] {
        let r = c.cmd(cmd);
        assert!(err(&r), "{cmd} on a deleted message -> {r}");
    }
    assert_eq!(
        c.cmd("LIST 3"),
        format!("+OK 3 {}", crlf(MESSAGES[2].2).len())
    );
    assert!(ok(&c.cmd("RSET")));
    assert_eq!(c.cmd("STAT"), format!("+OK 5 {}", total_size()));
    assert_eq!(c.multi("RETR 2"), wire(MESSAGES[1].2));
    assert!(ok(&c.cmd("NOOP")));
    assert!(ok(&c.cmd("QUIT")));
    assert_eq!(fx.files("alice").len(), 5, "RSET undid the deletion");
}

fn uidl_stable_across_sessions_and_deletions(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let expected: Vec<(u32, String)> = MESSAGES
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u32 + 1, fx.uid("alice", m.1)))
        .collect();
    let mut c = srv.login("alice", "secret");
    assert_eq!(listing(&c.multi("UIDL")), expected);
    assert_eq!(c.cmd("UIDL 4"), format!("+OK 4 {}", expected[3].1));
    assert!(err(&c.cmd("UIDL 0")));
    assert!(err(&c.cmd("UIDL 6")));
    assert!(ok(&c.cmd("DELE 1")));
    assert!(ok(&c.cmd("QUIT")));

    let mut c = srv.login("alice", "secret");
    let after: Vec<(u32, String)> = expected[1..]
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u32 + 1, e.1.clone()))
        .collect();
    assert_eq!(listing(&c.multi("UIDL")), after);
    assert!(ok(&c.cmd("QUIT")));
}

fn keywords_are_case_insensitive(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    assert!(ok(&c.cmd("user alice")));
    assert!(ok(&c.cmd("pAsS secret")));
    assert!(c.cmd("stat").starts_with("+OK 5 "));
    assert!(ok(&c.cmd("list 1")));
    assert!(ok(&c.cmd("Noop")));
    assert_eq!(c.multi("retr 1"), wire(MESSAGES[0].2));
    assert_eq!(c.multi("uidl").len(), c.multi("UIDL").len());
    assert!(ok(&c.cmd("quit")));
}

fn unknown_and_wrong_state_commands(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    for cmd in [
        "FOO", "STAT", "LIST", "RETR 1", "DELE 1", "RSET", "NOOP", "TOP 1 0", "UIDL", "",
    ] {
        let r = c.cmd(cmd);
        assert!(err(&r), "{cmd:?} before login -> {r}");
    }
    c.login("alice", "secret");
    for cmd in [
        "FOO",
        "USER alice",
        "PASS secret",
        "APOP alice 0123456789abcdef0123456789abcdef",
    ] {
        let r = c.cmd(cmd);
        assert!(err(&r), "{cmd} after login -> {r}");
    }
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
}

#[test]
fn quit_in_authorization() {
    let fx = standard();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    assert!(ok(&c.cmd("QUIT")));
    assert!(c.closed_within(Duration::from_secs(5)));
}

fn overlong_lines_are_refused_and_session_continues(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    // 300 octets: over the RFC 2449 limit of 255 including CRLF.
    let r = c.cmd(&format!("NOOP {}", "a".repeat(294)));
    assert!(err(&r), "300-octet line -> {r}");
    assert!(ok(&c.cmd("NOOP")), "one reply per line, session continues");
    // 1 MB in one line; the answer must be a single -ERR.
    let mut big = b"LIST ".to_vec();
    big.resize(1 << 20, b'9');
    big.extend_from_slice(b"\r\n");
    c.send(&big);
    let r = c.read_line();
    assert!(err(&r), "1 MB line -> {r}");
    assert!(ok(&c.cmd("NOOP")));
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
}

fn binary_junk_does_not_crash(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    let junk: Vec<u8> = (0u8..=200).filter(|&b| b != b'\n').collect();
    c.send(&junk);
    c.send(b"\r\n");
    let r = c.read_line();
    assert!(err(&r), "junk -> {r}");
    c.send(b"\x00\x00\x00\r\n\xff\xfe USER\r\nUSER \x00\r\n");
    for _ in 0..3 {
        let r = c.read_line();
        assert!(r.starts_with("-ERR ") || r.starts_with("+OK "), "{r}");
    }
    c.send(b"\r\n"); // bare CRLF
    assert!(err(&c.read_line()));
    c.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    // The server is still serving other clients.
    let mut d = srv.connect();
    d.greeting();
}

fn status_lines_have_text(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    let mut statuses = vec![c.greeting()];
    let script = [
        "CAPA",
        "STAT",
        "PASS x",
        "USER alice",
        "PASS secret",
        "STAT",
        "LIST",
        "LIST 1",
        "LIST 9",
        "UIDL",
        "UIDL 1",
        "RETR 1",
        "TOP 1 0",
        "DELE 1",
        "DELE 1",
        "RSET",
        "NOOP",
        "XYZZY",
        "QUIT",
    ];
    for cmd in script {
        let s = c.cmd(cmd);
        if s.starts_with("+OK") && ["CAPA", "LIST", "UIDL", "RETR 1", "TOP 1 0"].contains(&cmd) {
            c.read_multiline();
        }
        statuses.push(s);
    }
    for s in statuses {
        let text = s.strip_prefix("+OK ").or_else(|| s.strip_prefix("-ERR "));
        assert!(
            text.is_some_and(|t| !t.trim().is_empty()),
            "status line without text: {s:?}"
        );
    }
}

#[test]
fn max_sessions_refuses_extra_clients() {
    let fx = standard();
    let srv = Server::start(&fx, &["--max-sessions", "1"]);
    let mut first = srv.connect();
    first.greeting();
    let mut second = srv.connect();
    let r = second.read_line();
    assert!(r.starts_with("-ERR [SYS/TEMP] "), "{r}");
    assert!(second.closed_within(Duration::from_secs(5)));
    assert!(ok(&first.cmd("QUIT")));
    assert!(first.closed_within(Duration::from_secs(5)));
    // The slot is free again once the first session has ended (its thread may take a while to see the
    // close on a busy machine: the retries are bounded by time, not by a count of 2.5 s worth).
    srv.greeted_again(Duration::from_secs(10), "session slot never freed");
}

#[test]
fn line_length_limit_is_255_octets_with_crlf() {
    let fx = standard();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    assert!(ok(&c.cmd("USER alice")));
    // "PASS " + 248 octets + CRLF = 255: within the limit, so it is a (wrong) password.
    let r = c.cmd(&format!("PASS {}", "p".repeat(248)));
    assert!(r.starts_with("-ERR [AUTH] "), "255-octet line -> {r}");
    assert!(ok(&c.cmd("USER alice")));
    // One octet more: refused as too long, not checked as a password.
    let r = c.cmd(&format!("PASS {}", "p".repeat(249)));
    assert!(err(&r) && !r.contains("[AUTH]"), "256-octet line -> {r}");
}

/// RFC 2449 section 4 "increases the length restrictions on commands and parameters imposed by RFC
/// 1939" (whose arguments were at most 40 characters): "Servers which support the CAPA command MUST
/// support commands up to 255 octets". A user name that is a long e-mail address logs in.
#[test]
fn user_names_longer_than_40_octets() {
    let name = "firstname.lastname@departement.example.org";
    assert!(name.len() > 40);
    let mut fx = common::Fixture::new();
    fx.user(name, "secret");
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    let r = c.cmd(&format!("USER {name}"));
    assert!(ok(&r), "USER of {} octets -> {r}", name.len());
    let r = c.cmd("PASS secret");
    assert!(ok(&r), "PASS -> {r}");
}

/// RFC 2449 section 6.4: with RESP-CODES announced, "any response text issued by this server which begins
/// with an open square bracket ("[") is an extended response code". The login reply names the user, and
/// a user name may begin with '['.
#[test]
fn a_user_name_never_reads_as_a_response_code() {
    let mut fx = common::Fixture::new();
    fx.user("[IN-USE]x", "secret");
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    assert!(ok(&c.cmd("USER [IN-USE]x")));
    let r = c.cmd("PASS secret");
    assert!(ok(&r) && !r.starts_with("+OK ["), "PASS -> {r}");
    assert!(
        r.contains("[IN-USE]x"),
        "the reply still names the user: {r}"
    );
}

#[test]
fn ipv6_loopback_listener() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let fx = standard();
    let mut args: Vec<String> = [
        "--listen",
        "[::1]:0",
        "--passwd",
        fx.passwd().to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(common::root_account_args());
    let srv = Server::spawn(&args);
    assert!(srv.addr.is_ipv6(), "{}", srv.addr);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    assert!(ok(&c.cmd("QUIT")));
    let line = srv.wait_log(&["session end", "user=alice"], Duration::from_secs(5));
    assert!(
        line.is_some_and(|l| l.contains("peer=[::1]:")),
        "{:?}",
        srv.stderr_lines()
    );
}

#[test]
fn session_end_logged_without_login() {
    let fx = standard();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    assert!(ok(&c.cmd("QUIT")));
    let line = srv.wait_log(&["session end", "user=-"], Duration::from_secs(5));
    assert!(
        line.is_some_and(|l| l.contains("result=quit") && l.contains("retr=0")),
        "{:?}",
        srv.stderr_lines()
    );
}

fn huge_and_odd_numbers(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    for cmd in [
        "RETR 4294967296",
        "RETR 4294967297",
        "DELE 18446744073709551617",
        "LIST +1",
        "UIDL 1x",
        "TOP 1 x",
        "RETR 1 2",
        "LIST 1 1",
        "DELE",
        "TOP 99999999999999999999 1",
    ] {
        let r = c.cmd(cmd);
        assert!(err(&r), "{cmd} -> {r}");
    }
    // A huge line count is either refused or means "the whole message"; the session goes on either way.
    let r = c.cmd("TOP 1 99999999999999999999");
    if ok(&r) {
        assert_eq!(c.read_multiline(), wire(MESSAGES[0].2));
    } else {
        assert!(err(&r), "{r}");
    }
    assert!(c.cmd("STAT").starts_with("+OK 5 "), "nothing was deleted");
}

fn lowercase_transaction_keywords(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &["--apop"]);
    let mut c = srv.connect();
    let g = c.greeting();
    assert!(ok(&c.cmd(&format!(
        "apop alice {}",
        md5_hex(format!("{}secret", common::apop_timestamp(&g)).as_bytes())
    ))));
    assert_eq!(
        c.multi("top 1 0"),
        b"From: a@example.org\r\nSubject: one\r\n\r\n.\r\n"
    );
    assert!(ok(&c.cmd("dele 1")));
    assert!(c.cmd("stat").starts_with("+OK 4 "));
    assert!(ok(&c.cmd("rset")));
    assert!(c.cmd("StAt").starts_with("+OK 5 "));
    assert!(c.multi("capa").windows(3).any(|w| w == b"TOP"));
}

common::both_backends!(
    capa_in_both_states,
    stat_and_list,
    retr_exact_bytes_and_sizes,
    top,
    dele_hides_message_and_rset_restores,
    uidl_stable_across_sessions_and_deletions,
    keywords_are_case_insensitive,
    unknown_and_wrong_state_commands,
    overlong_lines_are_refused_and_session_continues,
    binary_junk_does_not_crash,
    status_lines_have_text,
    huge_and_odd_numbers,
    lowercase_transaction_keywords,
);
