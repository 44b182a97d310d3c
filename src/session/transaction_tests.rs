//! TRANSACTION tests that need more than a script: read sizes, and RETR of an mbox message that a
//! mail reader rewrites, or a delivery agent appends to, while it is sent.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::super::tests::{fixture, script};
use super::*;
use crate::session::Session;

#[test]
fn reads_are_sized_to_the_message_within_bounds() {
    assert_eq!(read_size(50_000), 50_001);
    assert_eq!(read_size(10 << 20), READ_CHUNK);
    assert_eq!(read_size(u64::MAX), READ_CHUNK);
    // A size from a file name (`,W=1`) may be far from the truth: never reads of a few octets.
    assert_eq!(read_size(1), MIN_READ_CHUNK);
    assert_eq!(read_size(0), MIN_READ_CHUNK);
}

/// The client's side of RETR: what was sent, and `meanwhile`, run once as soon as the first chunk of
/// message text arrives, when the session has read that much of the message and not the rest.
struct Meanwhile<F: FnOnce()> {
    sent: Vec<u8>,
    meanwhile: Option<F>,
}

impl<F: FnOnce()> Write for Meanwhile<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sent.extend_from_slice(buf);
        if buf.len() >= MIN_READ_CHUNK
            && let Some(meanwhile) = self.meanwhile.take()
        {
            meanwhile();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Message `n`'s block in the mbox: several read chunks long, with a `Status: O` header for mutt to
/// change.
fn block(n: usize) -> String {
    let mut b = format!(
        "From m{n}@example.org Thu Jan  1 00:00:0{n} 2026\nReceived: by mx id {n}\nStatus: O\n\n"
    );
    for line in 0..(4 * READ_CHUNK / 32) {
        b += &format!("message {n}, line {line:>8} of text\n");
    }
    b + "\n"
}

/// What RETR sends of `block`, its terminator included.
fn on_the_wire(block: &str) -> String {
    let text = &block[block.find('\n').unwrap() + 1..block.len() - 1];
    format!("{}.\r\n", text.replace('\n', "\r\n"))
}

/// alice's mbox, holding messages 1 and 2: its path and text.
fn write_mbox(f: &super::super::tests::Fixture) -> (PathBuf, String) {
    let path = f.dir.path().join("mbox");
    let text = block(1) + &block(2);
    fs::write(&path, &text).unwrap();
    (path, text)
}

/// Runs `command` in a session over alice's mbox, calling `meanwhile(mbox path, its text)` once the
/// first chunk of the message is out; returns the session's result and what was sent.
fn during(command: &str, meanwhile: impl FnOnce(&Path, &str)) -> (io::Result<Step>, String) {
    let mut f = fixture(&[]);
    f.services.mail = "mbox:%h/mbox".parse().unwrap();
    let (path, text) = write_mbox(&f);
    let mut s = Session::new(&f.services, "peer", None);
    let (out, _) = script(&mut s, &["USER alice", "PASS secret"]);
    assert!(out.contains("'s maildrop has 2 messages"), "{out}");
    let mut out = Meanwhile {
        sent: Vec::new(),
        meanwhile: Some(|| meanwhile(&path, &text)),
    };
    let result = s.handle_line(command.as_bytes(), &mut out);
    (result, String::from_utf8(out.sent).unwrap())
}

/// What mutt does to mark message 1 read: `Status: RO`, 11 octets more, written over the file from
/// there on, under its locks (which a session streaming a message does not hold).
fn mark_first_read(path: &Path, text: &str) {
    let at = text.find("Status: O").unwrap();
    let rest = text[at..].replacen("Status: O", "Status: RO", 1);
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(rest.as_bytes(), at as u64).unwrap();
}

#[test]
fn a_message_rewritten_while_it_is_sent_ends_the_session_without_the_terminator() {
    for command in ["RETR 1", "RETR 2", "TOP 1 5000", "TOP 2 5000"] {
        let (result, sent) = during(command, mark_first_read);
        let e = result.expect_err(command);
        assert_eq!(e.kind(), io::ErrorKind::Other, "{command}: {e}");
        assert!(sent.starts_with("+OK "), "{command}");
        assert!(
            sent.len() > READ_CHUNK,
            "{command}: read on after the change"
        );
        assert!(!sent.ends_with("\r\n.\r\n"), "{command}: terminator sent");
    }
}

#[test]
fn mail_delivered_while_a_message_is_sent_does_not_stop_it() {
    let late = "From late@example.org Thu Jan  1 00:09:00 2026\nSubject: late\n\nlate\n\n";
    for (command, n) in [("RETR 1", 1), ("RETR 2", 2)] {
        let (result, sent) = during(command, |path, _| {
            let mut f = OpenOptions::new().append(true).open(path).unwrap();
            f.write_all(late.as_bytes()).unwrap();
        });
        assert!(result.is_ok(), "{command}: {result:?}");
        let body = on_the_wire(&block(n));
        let octets = body.len() - 3;
        assert!(
            sent == format!("+OK {octets} octets\r\n{body}"),
            "{command}: not the whole message with its terminator"
        );
    }
}

/// A client whose connection is gone: every reply is taken into the pending output (as `conn`'s
/// corked writer does until it flushes), and sending it fails.
struct Gone;

impl Write for Gone {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
}

/// RETR, DELE and QUIT pipelined by a client that has gone before the replies leave: the messages it
/// never received are not deleted. The replies before QUIT are sent before UPDATE, and that failing,
/// UPDATE never runs.
#[test]
fn quit_sends_the_replies_before_it_deletes_anything() {
    let f = fixture(&[b"Subject: one\n\nbody\n", b"Subject: two\n\nbody\n"]);
    let mut s = Session::new(&f.services, "peer", None);
    let (out, _) = script(&mut s, &["USER alice", "PASS secret", "RETR 1", "DELE 1"]);
    assert!(out.contains("message 1 deleted"), "{out}");
    let quit = s.handle_line(b"QUIT", &mut Gone);
    assert_eq!(
        quit.err().map(|e| e.kind()),
        Some(io::ErrorKind::BrokenPipe)
    );
    drop(s);
    let cur = f.dir.path().join("Maildir/cur");
    assert_eq!(fs::read_dir(cur).unwrap().count(), 2, "nothing deleted");
}
