//! RETR of an mbox message while another program writes the mbox, against the real binary. No lock is
//! held while a message is sent: a mail reader that rewrites the mbox meanwhile must cost the client
//! its download (the connection closes without the terminator), never hand it shifted text as the
//! message; a delivery agent appending meanwhile must change nothing.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use common::{Backend, Client, Fixture, Server};

/// The client's receive buffer (the kernel doubles it).
const RCVBUF: usize = 64 << 10;
/// What the client reads of the message before the mbox changes.
const READ_FIRST: usize = 64 << 10;

/// Octets message 1 must exceed so that, while the client reads no more than `READ_FIRST` of it, the
/// server cannot have read it to its end: its socket's send buffer at its largest (`tcp_wmem`), our
/// receive buffer, and its own buffers, with room to spare. `None` when that would be too large to
/// be worth a test.
fn large_enough() -> Option<usize> {
    let wmem = fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    let size = wmem + READ_FIRST + (2 << 20);
    (size <= 32 << 20).then_some(size)
}

/// Message `n`'s block: a `From ` line, a `Status: O` header for a mail reader to change, and
/// `octets` or a little more of text.
fn block(n: usize, octets: usize) -> String {
    let mut b = format!(
        "From m{n}@example.org Thu Jan  1 00:00:0{n} 2026\nReceived: by mx id {n}\nStatus: O\nSubject: {n}\n\n"
    );
    let mut line = 0;
    while b.len() < octets {
        b += &format!("message {n}, line {line:>9} of its text\n");
        line += 1;
    }
    b + "\n"
}

/// What RETR sends of `block`: its text after the `From ` line, without the separator's empty line.
fn sent_of(block: &str) -> Vec<u8> {
    let text = &block[block.find('\n').unwrap() + 1..block.len() - 1];
    common::wire(text.as_bytes())
}

/// An mbox holding a large message 1 and a small message 2; alice logged in over a small window.
fn setup() -> Option<(Fixture, Server, Client, String)> {
    let Some(size) = large_enough() else {
        eprintln!("SKIPPED: tcp_wmem's maximum is too large for a message to outlast the buffers");
        return None;
    };
    let mut fx = Fixture::on(Backend::Mbox);
    fx.user("alice", "secret");
    let text = block(1, size) + &block(2, 100);
    fs::write(fx.mbox("alice"), &text).unwrap();
    let srv = Server::start(&fx, &[]);
    let mut c = Client::connect_small_window(srv.addr, RCVBUF);
    c.greeting();
    c.login("alice", "secret");
    Some((fx, srv, c, text))
}

/// Sends RETR 1 and reads its status line and at least `READ_FIRST` octets of the message; returns
/// what was read of the message.
fn start_retr(c: &mut Client) -> Vec<u8> {
    let status = c.cmd("RETR 1");
    assert!(status.starts_with("+OK "), "{status}");
    let mut got = Vec::new();
    while got.len() < READ_FIRST {
        got.extend_from_slice(&c.read_line_raw());
    }
    got
}

/// What mutt does to mark message 1 read: under its locks (not the server's to wait for while it sends a
/// message) a `Status: RO` header, 11 octets more, and everything after it written again further on.
fn mark_first_read(path: &Path, text: &str) -> String {
    let at = text.find("Status: O").unwrap();
    let marked = text.replacen("Status: O", "Status: RO", 1);
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&marked.as_bytes()[at..], at as u64).unwrap();
    marked
}

#[test]
fn a_mail_reader_rewriting_the_mbox_during_retr_costs_the_download_not_the_message() {
    let Some((fx, srv, mut c, text)) = setup() else {
        return;
    };
    let mut got = start_retr(&mut c);
    let marked = mark_first_read(&fx.mbox("alice"), &text);
    let (rest, terminated) = c.read_multiline_or_close();
    got.extend_from_slice(&rest);
    // Without the check, the server sent the rest from the old offsets, 11 octets late, and then the
    // terminator: the client kept a message whose text repeats 11 octets, under its unique-id.
    assert!(
        !terminated,
        "the terminator was sent after {} octets of a message the mbox no longer holds",
        got.len()
    );
    assert!(got.len() > READ_FIRST);
    assert!(c.closed_within(Duration::from_secs(5)));
    let logged = srv.wait_log(
        &["WARN", "user=alice message 1: changed while it was sent"],
        Duration::from_secs(5),
    );
    assert!(logged.is_some(), "{:#?}", srv.stderr_lines());
    // The next session lists the message as it is now and sends it whole.
    let mut c = srv.login("alice", "secret");
    let marked_1 = &marked[..marked.find("From m2@").unwrap()];
    let expected = sent_of(marked_1);
    assert_eq!(c.cmd("LIST 1"), format!("+OK 1 {}", expected.len() - 3));
    assert!(c.multi("RETR 1") == expected, "RETR 1 after the rewrite");
    assert!(c.cmd("QUIT").starts_with("+OK "));
}

#[test]
fn mail_delivered_during_retr_changes_nothing() {
    let Some((fx, srv, mut c, text)) = setup() else {
        return;
    };
    let mut got = start_retr(&mut c);
    let late = "From late@example.org Thu Jan  1 00:09:00 2026\nSubject: late\n\nlate\n\n";
    common::mbox::append(&fx.mbox("alice"), late.as_bytes());
    got.extend_from_slice(&c.read_multiline());
    let expected = sent_of(&text[..text.find("From m2@").unwrap()]);
    assert!(got == expected, "RETR 1 while mail was delivered");
    assert!(c.cmd("QUIT").starts_with("+OK "));
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 3 "));
    assert!(c.cmd("QUIT").starts_with("+OK "));
}
