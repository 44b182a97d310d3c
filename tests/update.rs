//! The UPDATE state and the maildrop lock: what QUIT, a dropped connection and a timeout do to the files,
//! mail delivered during a session, and a second session for the same user.

mod common;

use common::{Backend, MESSAGES, Server, show, standard, standard_on, wire};
use std::thread;
use std::time::{Duration, Instant};

fn names(idx: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = idx.iter().map(|&i| MESSAGES[i].1.to_string()).collect();
    v.sort();
    v
}

/// Polls (bounded) until `cond` holds.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn quit_applies_deletions(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    c.multi("RETR 2");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    assert!(c.cmd("DELE 3").starts_with("+OK "));
    let r = c.cmd("QUIT");
    assert!(r.starts_with("+OK "), "{r}");
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(fx.files("alice"), names(&[1, 3, 4]));
    assert_eq!(fx.files("bob").len(), 1, "other users untouched");
    let line = srv
        .wait_log(
            &["session end", "user=alice", "result=quit"],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no session end line: {:?}", srv.stderr_lines()));
    for field in ["peer=127.0.0.1:", "retr=1", "dele=2", "bytes=", "secs="] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 3 "));
}

fn dropped_connection_deletes_nothing(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    assert!(c.cmd("DELE 2").starts_with("+OK "));
    drop(c);
    let line = srv.wait_log(&["session end", "user=alice"], Duration::from_secs(5));
    assert!(
        line.as_deref().is_some_and(|l| l.contains("result=closed")),
        "{line:?}"
    );
    assert_eq!(fx.files("alice").len(), 5);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
}

fn timeout_closes_and_deletes_nothing(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &["--timeout", "1"]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    let start = Instant::now();
    // RFC 1939 section 3: the server closes "without removing any messages or sending any response".
    assert_eq!(
        c.read_until_closed(Duration::from_secs(6))
            .map(|got| show(&got)),
        Some(String::new()),
        "not closed, or not silently, after the 1 s timeout"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "closed too early"
    );
    let line = srv.wait_log(&["session end", "user=alice"], Duration::from_secs(5));
    assert!(
        line.as_deref()
            .is_some_and(|l| l.contains("result=timeout")),
        "{line:?}"
    );
    assert_eq!(fx.files("alice").len(), 5);
    // The lock was released with the session.
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
}

#[test]
fn timeout_in_authorization_closes() {
    let fx = standard();
    let srv = Server::start(&fx, &["--timeout", "1"]);
    let mut c = srv.connect();
    c.greeting();
    assert!(c.closed_within(Duration::from_secs(6)));
}

fn mail_delivered_during_session_survives_update(backend: Backend) {
    let mut fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    let late = b"Subject: late\n\narrived during the session\n";
    fx.msg("alice", "new", "1700000000.M9P100.host", late);
    assert!(
        c.cmd("STAT").starts_with("+OK 5 "),
        "the maildrop is a snapshot"
    );
    for n in 1..=5 {
        assert!(c.cmd(&format!("DELE {n}")).starts_with("+OK "));
    }
    assert!(c.cmd("DELE 6").starts_with("-ERR "));
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert_eq!(fx.files("alice"), ["1700000000.M9P100.host"]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 1 "));
    assert_eq!(c.multi("RETR 1"), wire(late));
}

fn quit_whose_reply_is_never_read_still_updates(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("DELE 4").starts_with("+OK "));
    c.send(b"QUIT\r\n");
    c.shutdown_write();
    drop(c);
    // The session-end line comes after UPDATE: an mbox read while UPDATE rewrites it is half written.
    let end = srv.wait_log(&["session end", "user=alice"], Duration::from_secs(30));
    assert!(end.is_some(), "{:?}", srv.stderr_lines());
    assert_eq!(fx.files("alice"), names(&[0, 1, 2, 4]));
}

fn second_session_gets_in_use_until_first_quits(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut first = srv.login("alice", "secret");
    let mut second = srv.connect();
    second.greeting();
    assert!(second.cmd("USER alice").starts_with("+OK "));
    let start = Instant::now();
    let r = second.cmd("PASS secret");
    assert!(r.starts_with("-ERR [IN-USE] "), "{r}");
    // An mbox login waits up to 1 s for a session that has answered QUIT to finish tidying up;
    // a session that is still running is not waited for longer.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "IN-USE must come within the session lock wait"
    );
    // Another user is not blocked.
    let mut bob = srv.login("bob", "bobpw");
    assert!(bob.cmd("STAT").starts_with("+OK 1 "));
    assert!(first.cmd("QUIT").starts_with("+OK "));
    assert!(first.closed_within(Duration::from_secs(5)));
    let mut third = srv.login("alice", "secret");
    assert!(third.cmd("STAT").starts_with("+OK 5 "));
}

fn lock_freed_when_holder_drops_connection(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let first = srv.login("alice", "secret");
    drop(first);
    // The server notices the close and releases the lock; poll with fresh sessions.
    let mut last = String::new();
    let freed = eventually(Duration::from_secs(30), || {
        let mut c = srv.connect();
        c.greeting();
        c.cmd("USER alice");
        last = c.cmd("PASS secret");
        last.starts_with("+OK ")
    });
    assert!(freed, "lock still held: {last}");
}

fn lock_of_killed_session_is_released(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let (mut holder, mut c) = common::Inetd::start(&fx, &[]);
    c.greeting();
    c.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    // Another process holds the maildrop: the standalone server sees it as in use.
    let mut other = srv.connect();
    other.greeting();
    other.cmd("USER alice");
    let r = other.cmd("PASS secret");
    assert!(r.starts_with("-ERR [IN-USE] "), "{r}");
    holder.child.kill().unwrap();
    assert!(holder.wait_exit(Duration::from_secs(5)).is_some());
    let mut c = srv.login("alice", "secret");
    assert!(
        c.cmd("STAT").starts_with("+OK 5 "),
        "nothing deleted by the killed session"
    );
}

fn dele_everything_then_quit_empties_the_maildrop(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    for n in 1..=5 {
        assert!(c.cmd(&format!("DELE {n}")).starts_with("+OK "));
    }
    assert_eq!(c.cmd("STAT"), "+OK 0 0");
    assert_eq!(c.multi("LIST"), b".\r\n");
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert!(fx.files("alice").is_empty());
}

#[test]
fn activity_resets_the_timer() {
    let fx = standard();
    let srv = Server::start(&fx, &["--timeout", "2"]);
    let mut c = srv.login("alice", "secret");
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(800));
        assert!(c.cmd("NOOP").starts_with("+OK "), "closed despite activity");
    }
}

fn end_of_input_after_pipelined_commands(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    c.send(b"USER alice\r\nPASS secret\r\nDELE 1\r\nSTAT\r\n");
    c.shutdown_write();
    for want in ["+OK ", "+OK ", "+OK ", "+OK 4 "] {
        let r = c.read_line();
        assert!(r.starts_with(want), "{r}");
    }
    assert!(c.closed_within(Duration::from_secs(5)));
    let line = srv.wait_log(&["session end", "user=alice"], Duration::from_secs(5));
    assert!(line.is_some_and(|l| l.contains("result=closed")));
    assert_eq!(fx.files("alice").len(), 5, "no QUIT, no UPDATE");
}

fn quit_after_half_close_is_answered(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    c.send(b"DELE 2\r\nQUIT\r\n");
    c.shutdown_write();
    assert!(c.read_line().starts_with("+OK "));
    assert!(c.read_line().starts_with("+OK "), "QUIT reply");
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(fx.files("alice"), names(&[0, 2, 3, 4]));
}

fn client_that_stops_reading_is_timed_out(backend: Backend) {
    let mut fx = common::Fixture::on(backend);
    fx.user("max", "pw");
    let line = "x".repeat(99) + "\n";
    fx.msg(
        "max",
        "new",
        "1600000000.M1P1.host",
        line.repeat(80_000).as_bytes(),
    );
    let srv = Server::start(&fx, &["--timeout", "1"]);
    let mut c = srv.login("max", "pw");
    // 8 MB requested and never read: the server's writes stall. It must not hold the session (and the
    // maildrop lock) forever.
    c.send(b"RETR 1\r\n");
    let line = srv.wait_log(&["session end", "user=max"], Duration::from_secs(8));
    assert!(
        line.is_some(),
        "session still running with a stalled client: {:?}",
        srv.stderr_lines()
    );
    drop(c);
    let mut c = srv.login("max", "pw");
    assert!(c.cmd("STAT").starts_with("+OK 1 "));
}

common::both_backends!(
    quit_applies_deletions,
    dropped_connection_deletes_nothing,
    timeout_closes_and_deletes_nothing,
    mail_delivered_during_session_survives_update,
    quit_whose_reply_is_never_read_still_updates,
    second_session_gets_in_use_until_first_quits,
    lock_freed_when_holder_drops_connection,
    lock_of_killed_session_is_released,
    dele_everything_then_quit_empties_the_maildrop,
    end_of_input_after_pipelined_commands,
    quit_after_half_close_is_answered,
    client_that_stops_reading_is_timed_out,
);
