//! `--inetd` mode: one session on stdin/stdout (a socket pair here), with nothing but protocol bytes on the
//! socket even when stderr is the socket too, as inetd arranges it.

mod common;

use common::{Inetd, MESSAGES, standard, wire};
use std::time::Duration;

#[test]
fn basic_session_with_deletion() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start(&fx, &[]);
    let g = c.greeting();
    assert!(!g.contains('<'), "{g}");
    c.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    assert_eq!(c.multi("RETR 4"), wire(MESSAGES[3].2));
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(
        proc_.wait_exit(Duration::from_secs(5)),
        Some(0),
        "exit status after QUIT"
    );
    assert_eq!(fx.files("alice").len(), 4);
    assert!(!fx.files("alice").contains(&MESSAGES[0].1.to_string()));
}

#[test]
fn only_protocol_bytes_on_the_socket() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start_all_fds(&fx, &["--log-level", "trace"]);
    c.send(b"CAPA\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nRETR 2\r\nQUIT\r\n");
    let all = c.read_to_close(Duration::from_secs(15));
    let text = String::from_utf8_lossy(&all);
    // Split into replies: greeting, CAPA (multi), USER, PASS(-ERR), USER, PASS, STAT, RETR (multi), QUIT.
    let mut lines = text.split_inclusive("\r\n");
    let mut next = || {
        lines
            .next()
            .unwrap_or_else(|| panic!("short output: {text:?}"))
    };
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("+OK"));
    while next() != ".\r\n" {}
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("-ERR [AUTH] "));
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("+OK 5 "));
    assert!(next().starts_with("+OK"));
    let mut body = String::new();
    loop {
        let l = next();
        body.push_str(l);
        if l == ".\r\n" {
            break;
        }
    }
    assert_eq!(body.as_bytes(), wire(MESSAGES[1].2));
    assert!(next().starts_with("+OK "), "QUIT");
    let rest: Vec<&str> = lines.collect();
    assert!(rest.is_empty(), "bytes after QUIT: {rest:?}");
    assert!(
        !text.contains("poplar::"),
        "a log line reached the socket: {text:?}"
    );
    assert!(proc_.wait_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn dropped_connection_exits_and_deletes_nothing() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start(&fx, &[]);
    c.greeting();
    c.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    drop(c);
    assert!(
        proc_.wait_exit(Duration::from_secs(5)).is_some(),
        "still running after the peer left"
    );
    assert_eq!(fx.files("alice").len(), 5);
}

#[test]
fn timeout_in_inetd_mode() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start(&fx, &["--timeout", "1"]);
    c.greeting();
    c.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    assert!(c.closed_within(Duration::from_secs(6)));
    assert!(proc_.wait_exit(Duration::from_secs(5)).is_some());
    assert_eq!(fx.files("alice").len(), 5);
}
