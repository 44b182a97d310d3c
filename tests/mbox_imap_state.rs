//! An mbox that UW-IMAP (c-client: pine, alpine) or Dovecot's IMAP also serves begins with a
//! pseudo-message holding the folder's IMAP state (an `X-IMAP:` header field). A real session against
//! the binary: it is not listed, RETR 1 sends the first real message, and DELE 1 and QUIT remove that
//! one and keep the pseudo-message, byte for byte, at the top of the file.

mod common;

use std::fs;

use common::mbox::{block, uid};
use common::{Backend, Fixture, Server};

const PSEUDO: &str = "From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n\
Date: Thu, 1 Jan 2026 00:00:00 +0000\n\
From: Mail System Internal Data <MAILER-DAEMON@example.org>\n\
Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n\
Message-ID: <1767225600@example.org>\n\
X-IMAP: 1767225600 0000000003 $Forwarded\n\
Status: RO\n\
\n\
This text is part of the internal format of your mail folder, and is not\n\
a real message.  It is created automatically by the mail system software.\n\
\n";

#[test]
fn the_imap_pseudo_message_is_hidden_and_kept() {
    let texts = [
        "Received: by mx id 1\nSubject: one\n\nfirst\n",
        "Received: by mx id 2\nSubject: two\n\nsecond\n",
    ];
    let blocks: Vec<Vec<u8>> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| block(i + 1, t.as_bytes()))
        .collect();
    let mut fx = Fixture::on(Backend::Mbox);
    fx.user("alice", "secret");
    let path = fx.mbox("alice");
    fs::write(&path, [PSEUDO.as_bytes(), &blocks.concat()].concat()).unwrap();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    let stat = c.cmd("STAT");
    assert!(stat.starts_with("+OK 2 "), "{stat}");
    let list = common::listing(&c.multi("LIST"));
    let octets: Vec<(u32, String)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u32 + 1, common::crlf(t.as_bytes()).len().to_string()))
        .collect();
    assert_eq!(list, octets);
    let uids = common::listing(&c.multi("UIDL"));
    assert_eq!(uids, [(1, uid(&blocks[0])), (2, uid(&blocks[1]))]);
    assert_eq!(c.multi("RETR 1"), common::wire(texts[0].as_bytes()));
    assert!(c.cmd("RETR 3").starts_with("-ERR"));
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(c.closed_within(std::time::Duration::from_secs(10)));
    let left = fs::read(&path).unwrap();
    assert_eq!(
        common::show(&left),
        common::show(&[PSEUDO.as_bytes(), &blocks[1]].concat())
    );
    // And the next session, through the index written by the UPDATE, lists the one left.
    let mut c = srv.login("alice", "secret");
    assert_eq!(common::listing(&c.multi("UIDL")), [(1, uid(&blocks[1]))]);
    assert!(c.cmd("QUIT").starts_with("+OK"));
}
