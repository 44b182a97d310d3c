//! First logins to maildrops large enough that the server shares the work with a helper thread (an mbox
//! of 8 MiB or more is scanned in two halves at once; 1,000 or more Maildir messages to size are
//! counted in two threads), through the real server with its session threads' stacks: every message
//! listed in order, sized, identified and sent as one thread would, and the same at a later login that
//! takes the listing from the index or the size cache.

mod common;

use common::{Backend, Fixture, Server, crlf, listing, wire};
use std::time::Duration;

/// Message `i`: a few headers and a body of varied length, with lines a client must see unstuffed
/// and, now and then, a `From ` line that is text (it follows no empty line).
fn message(i: usize) -> Vec<u8> {
    let mut m = format!(
        "Received: from host{i} by mx; Thu, 1 Jan 2026 00:00:00 +0000\nMessage-ID: <{i}@example.org>\nSubject: message {i}\n\n"
    );
    // A first line of text, so that no `From ` line follows the header's empty line.
    m.push_str("Hello,\n");
    for line in 0..(20 + i * 7 % 60) {
        match (i + line) % 9 {
            0 => m.push_str(".a line that must be stuffed"),
            1 => m.push_str("From inside the text, not after an empty line"),
            2 => m.push_str(&"w".repeat(150 + i % 50)),
            _ => m.push_str(&format!(
                "line {line} of message {i}, some text to fill it up"
            )),
        }
        m.push('\n');
    }
    m.into_bytes()
}

fn check_large_drop(backend: Backend, count: usize, min_octets: usize) {
    let mut fx = Fixture::on(backend);
    fx.user("big", "pw");
    let mut names = Vec::with_capacity(count);
    let mut stored = 0;
    for i in 0..count {
        let content = message(i);
        stored += content.len();
        // Maildir: in both directories, as a mail reader leaves them.
        let (sub, name) = if i % 3 == 0 {
            ("cur", format!("{i:06}.poplar-test:2,S"))
        } else {
            ("new", format!("{i:06}.poplar-test"))
        };
        fx.msg("big", sub, &name, &content);
        names.push(name);
    }
    assert!(stored >= min_octets, "only {stored} octets stored");
    let srv = Server::start(&fx, &[]);
    let expected_sizes: Vec<(u32, String)> = (0..count)
        .map(|i| (i as u32 + 1, crlf(&message(i)).len().to_string()))
        .collect();
    let expected_uids: Vec<(u32, String)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (i as u32 + 1, fx.uid("big", name)))
        .collect();
    let total: usize = (0..count).map(|i| crlf(&message(i)).len()).sum();
    for login in ["first", "later"] {
        let mut c = srv.login("big", "pw");
        c.set_read_timeout(Duration::from_secs(60));
        assert_eq!(
            c.cmd("STAT"),
            format!("+OK {count} {total}"),
            "{login} login"
        );
        assert!(
            listing(&c.multi("LIST")) == expected_sizes,
            "{login} login: LIST differs"
        );
        assert!(
            listing(&c.multi("UIDL")) == expected_uids,
            "{login} login: UIDL differs"
        );
        // Around the middle, where an mbox is cut, and at both ends.
        let middle = count / 2;
        for n in [1, middle - 1, middle, middle + 1, middle + 2, count]
            .into_iter()
            .chain((1..=count).step_by(97))
        {
            assert!(
                c.multi(&format!("RETR {n}")) == wire(&message(n - 1)),
                "{login} login: RETR {n} differs"
            );
        }
        assert!(c.cmd("QUIT").starts_with("+OK"));
        assert!(c.closed_within(Duration::from_secs(30)));
    }
    assert_eq!(fx.files("big").len(), count, "a message went missing");
}

#[test]
fn an_mbox_scanned_in_two_halves_lists_and_serves_every_message() {
    // Over 8 MiB, the size from which the scan is split.
    check_large_drop(Backend::Mbox, 3_600, 8 << 20);
}

#[test]
fn a_maildir_counted_in_two_threads_lists_and_serves_every_message() {
    // Over 1,000 messages to count, the number from which counting is split.
    check_large_drop(Backend::Maildir, 1_500, 0);
}
