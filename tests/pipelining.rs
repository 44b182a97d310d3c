//! RFC 2449 PIPELINING: batches of commands sent in one write get complete responses, in order, and the
//! server neither deadlocks nor stalls on large batches or commands split across writes.

mod common;

use common::{Backend, MESSAGES, Server, crlf, listing, standard_on, wire};
use std::thread;
use std::time::{Duration, Instant};

fn batch_responses_in_order(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    c.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nRETR 1\r\nUIDL\r\nLIST 2\r\nQUIT\r\n");
    assert!(c.read_line().starts_with("+OK "), "USER");
    assert!(c.read_line().starts_with("+OK "), "PASS");
    let total: usize = MESSAGES.iter().map(|m| crlf(m.2).len()).sum();
    assert_eq!(c.read_line(), format!("+OK 5 {total}"));
    assert!(c.read_line().starts_with("+OK"));
    assert_eq!(listing(&c.read_multiline()).len(), 5);
    assert!(c.read_line().starts_with("+OK"));
    assert_eq!(c.read_multiline(), wire(MESSAGES[0].2));
    assert!(c.read_line().starts_with("+OK"));
    let uids = listing(&c.read_multiline());
    assert_eq!(uids[4].1, fx.uid("alice", MESSAGES[4].1));
    assert_eq!(
        c.read_line(),
        format!("+OK 2 {}", crlf(MESSAGES[1].2).len())
    );
    assert!(c.read_line().starts_with("+OK "), "QUIT");
    assert!(c.closed_within(Duration::from_secs(5)));
}

fn many_pipelined_retrs(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    let mut batch = Vec::new();
    for round in 0..20 {
        for n in 1..=5 {
            batch.extend_from_slice(format!("RETR {n}\r\n").as_bytes());
        }
        if round % 4 == 0 {
            batch.extend_from_slice(b"NOOP\r\nRETR 9\r\n");
        }
    }
    c.send(&batch);
    for round in 0..20 {
        for (n, m) in MESSAGES.iter().enumerate() {
            assert!(
                c.read_line().starts_with("+OK"),
                "round {round} RETR {}",
                n + 1
            );
            assert_eq!(
                c.read_multiline(),
                wire(m.2),
                "round {round} RETR {}",
                n + 1
            );
        }
        if round % 4 == 0 {
            assert!(c.read_line().starts_with("+OK "), "NOOP");
            assert!(c.read_line().starts_with("-ERR "), "RETR 9");
        }
    }
    assert!(c.cmd("QUIT").starts_with("+OK "));
}

fn big_batch_before_reading_does_not_deadlock(backend: Backend) {
    let mut fx = common::Fixture::on(backend);
    fx.user("dave", "pw");
    // 40 KB per RETR: 500 commands produce several MB the client reads only after writing all of them.
    let line = "0123456789".repeat(7) + "\n";
    let big = format!("Subject: big\n\n{}", line.repeat(570));
    fx.msg("dave", "new", "1600000000.M1P1.host", big.as_bytes());
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("dave", "pw");
    let cmds = ["RETR 1", "LIST", "UIDL 1", "TOP 1 3", "NOOP"];
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend_from_slice(cmds[i % cmds.len()].as_bytes());
        batch.extend_from_slice(b"\r\n");
    }
    let start = Instant::now();
    c.send(&batch);
    let expected = wire(big.as_bytes());
    for i in 0..500 {
        let status = c.read_line();
        assert!(status.starts_with("+OK"), "reply {i}: {status}");
        match cmds[i % cmds.len()] {
            "RETR 1" => assert_eq!(c.read_multiline(), expected, "reply {i}"),
            "LIST" | "TOP 1 3" => {
                c.read_multiline();
            }
            _ => {}
        }
    }
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert!(start.elapsed() < Duration::from_secs(30));
}

fn commands_split_across_writes(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    for piece in [
        &b"US"[..],
        b"ER ali",
        b"ce\r",
        b"\nPASS secret\r\nST",
        b"A",
        b"T\r\n",
    ] {
        c.send(piece);
        thread::sleep(Duration::from_millis(30));
    }
    assert!(c.read_line().starts_with("+OK "));
    assert!(c.read_line().starts_with("+OK "));
    assert!(c.read_line().starts_with("+OK 5 "));
}

fn overlong_line_inside_a_batch(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    let mut batch = b"NOOP\r\n".to_vec();
    batch.extend_from_slice(format!("LIST {}\r\n", "1".repeat(5000)).as_bytes());
    batch.extend_from_slice(b"LIST 1\r\nNOOP\r\n");
    c.send(&batch);
    assert!(c.read_line().starts_with("+OK "));
    assert!(c.read_line().starts_with("-ERR "), "overlong line");
    assert!(
        c.read_line().starts_with("+OK 1 "),
        "LIST 1 after the overlong line"
    );
    assert!(c.read_line().starts_with("+OK "));
}

fn concurrent_sessions_do_not_interfere(backend: Backend) {
    let mut fx = common::Fixture::on(backend);
    let users: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        fx.user(u, "pw");
        fx.msg(
            u,
            "new",
            &format!("1600000000.M{i}P1.host"),
            format!("Subject: {u}\n\nfor {u}\n").as_bytes(),
        );
    }
    // 16 sessions from one address: above the default --max-per-ip of 10.
    let srv = Server::start(&fx, &["--max-per-ip", "16"]);
    thread::scope(|s| {
        for u in &users {
            let srv = &srv;
            s.spawn(move || {
                let mut c = srv.login(u, "pw");
                for _ in 0..10 {
                    let body = c.multi("RETR 1");
                    assert_eq!(body, wire(format!("Subject: {u}\n\nfor {u}\n").as_bytes()));
                }
                assert!(c.cmd("DELE 1").starts_with("+OK "));
                assert!(c.cmd("QUIT").starts_with("+OK "));
            });
        }
    });
    for u in &users {
        assert!(fx.files(u).is_empty(), "{u}");
    }
}

/// QUIT with more commands behind it in the same write: the reply arrives whole and the connection ends
/// in order. Closed with that input unread, the socket would reset, and a reset can cost the client the
/// reply still in its receive queue.
fn quit_with_input_behind_it_closes_in_order(backend: Backend) {
    let fx = standard_on(backend);
    let srv = Server::start(&fx, &[]);
    // More than the server's 4 KB input buffer takes in one read: the rest waits in the kernel.
    let long_tail = "NOOP\r\n".repeat(2000);
    // Everything `c` receives after sending QUIT and `tail`.
    let quit = |mut c: common::Client, tail: &str| {
        c.send(format!("QUIT\r\n{tail}").as_bytes());
        // The reply, and the server's close, reach us before we read anything.
        thread::sleep(Duration::from_millis(300));
        String::from_utf8_lossy(&c.read_to_close(Duration::from_secs(5))).into_owned()
    };
    for tail in ["NOOP\r\nNOOP\r\n", long_tail.as_str()] {
        let mut c = srv.connect();
        c.greeting();
        assert_eq!(quit(c, tail), "+OK poplar signing off\r\n");
        assert_eq!(
            quit(srv.login("alice", "secret"), tail),
            "+OK poplar signing off (5 messages left)\r\n"
        );
    }
}

common::both_backends!(
    batch_responses_in_order,
    many_pipelined_retrs,
    big_batch_before_reading_does_not_deadlock,
    commands_split_across_writes,
    overlong_line_inside_a_batch,
    concurrent_sessions_do_not_interfere,
    quit_with_input_behind_it_closes_in_order,
);
