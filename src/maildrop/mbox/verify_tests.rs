//! Tests for the checks around a message served while no lock is held: a mail reader's rewrite during
//! RETR is caught once the message has been read, mail appended meanwhile never is.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::super::stamp::testing::{rewrite_keeping_times, settle};
use super::super::{Mbox, index};
use crate::maildrop::{Maildrop, MaildropError};

/// Three messages as Debian's agents write them, each ending with the empty line of the separator.
const MBOX: &str = "From a@example.org Thu Jan  1 00:00:00 2026\n\
Received: by mx id 1\n\
Status: O\n\
Subject: one\n\
\n\
first\n\
\n\
From b@example.org Thu Jan  1 00:00:01 2026\n\
Received: by mx id 2\n\
Status: O\n\
\n\
second\n\
\n\
From c@example.org Thu Jan  1 00:00:02 2026\n\
Received: by mx id 3\n\
Status: O\n\
\n\
third\n\
\n";

/// A delivery, whole and as far as an agent may have written it when RETR's check runs.
const DELIVERIES: [&str; 5] = [
    "From d@example.org Thu Jan  1 00:00:09 2026\nSubject: late\n\nlate\n\n",
    "From d@ex",
    "Fr",
    "\n",
    "\n\nFrom d@example.org Thu Jan  1 00:00:09 2026\n",
];

fn mbox_in(dir: &tempfile::TempDir, content: &str) -> PathBuf {
    let path = dir.path().join("user");
    fs::write(&path, content).unwrap();
    path
}

/// RETR's part: opens message `i`, calls `meanwhile` once a few octets of its header have been read,
/// reads the rest, then asks whether what was read is still the message listed.
fn serve(mbox: &mut Mbox, i: usize, meanwhile: impl FnOnce()) -> Result<(), MaildropError> {
    let mut reader = mbox.open_message(i).unwrap();
    reader.read_exact(&mut [0; 10]).unwrap();
    meanwhile();
    // The rest as it is now: a file that shrank reads short, which RETR already refuses.
    let _ = reader.read_to_end(&mut Vec::new());
    drop(reader);
    mbox.check_still_listed(i)
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Writes `text` over the file at `path` from its start, in place, as mutt does from the first message
/// it changed, and leaves it that long.
fn rewrite(path: &Path, text: &str) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(text.as_bytes(), 0).unwrap();
    f.set_len(text.len() as u64).unwrap();
}

fn is_changed(checked: Result<(), MaildropError>) -> bool {
    matches!(checked, Err(MaildropError::Changed { .. }))
}

#[test]
fn a_message_read_while_nothing_changed_or_mail_was_appended_is_still_listed() {
    for last_line in ["third\n\n", "third\n", "third"] {
        let text = MBOX.replace("third\n\n", last_line);
        for delivery in [None].into_iter().chain(DELIVERIES.map(Some)) {
            for i in 0..3 {
                let dir = tempfile::tempdir().unwrap();
                let path = mbox_in(&dir, &text);
                let mut mbox = Mbox::open(&path).unwrap();
                let checked = serve(&mut mbox, i, || {
                    if let Some(delivery) = delivery {
                        append(&path, delivery);
                    }
                });
                assert!(
                    checked.is_ok(),
                    "message {i}, last line {last_line:?}, delivery {delivery:?}: {checked:?}"
                );
                // And at the next RETR.
                assert!(serve(&mut mbox, i, || ()).is_ok());
            }
        }
    }
}

#[test]
fn a_mail_reader_rewriting_the_mbox_while_a_message_is_sent_is_caught() {
    // mutt marks message 1 read: `Status: RO`, 11 octets more for it, everything after it moved. Each
    // message is caught: the first because the next `From ` line moved, the last because its own did.
    let marked = MBOX.replacen("Status: O\n", "Status: RO\n", 1);
    for i in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let path = mbox_in(&dir, MBOX);
        let mut mbox = Mbox::open(&path).unwrap();
        assert!(mbox.unsaved_index.is_some());
        assert!(is_changed(serve(&mut mbox, i, || rewrite(&path, &marked))));
        // What the session scanned is not written as the index of the mbox now.
        assert!(mbox.unsaved_index.is_none());
        drop(mbox);
        assert!(!index::index_path(&path).exists());
    }
}

#[test]
fn the_last_message_rewritten_longer_is_caught() {
    // Marked read in place, one octet more, as mail readers do to the message just read: its end moved
    // past what was scanned and looks like a delivery's first octets (an LF), but the empty line
    // that ended it is no longer just before the scanned end.
    for (from, to) in [
        ("Status: O\n\nthird", "Status: RO\n\nthird"),
        ("third\n", "third!\n"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = mbox_in(&dir, MBOX);
        let mut mbox = Mbox::open(&path).unwrap();
        let marked = MBOX.replacen(from, to, 1);
        assert!(
            is_changed(serve(&mut mbox, 2, || rewrite(&path, &marked))),
            "{to:?}"
        );
    }
}

#[test]
fn a_rewrite_in_place_that_kept_every_boundary_is_caught() {
    // The same number of octets (a flag changed in place), with the times set back as mail readers do:
    // no `From ` line moved, and the file is as long as when the message was opened, so no delivery
    // wrote it.
    for i in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let path = mbox_in(&dir, MBOX);
        let mut mbox = Mbox::open(&path).unwrap();
        let status = MBOX.find("Status: O").unwrap() as u64;
        let checked = serve(&mut mbox, i, || {
            settle(&path);
            rewrite_keeping_times(&path, status, b"Status: R");
        });
        assert!(is_changed(checked), "message {i}");
        // That check is for the message just opened; its boundaries still pass at the next RETR.
        assert!(serve(&mut mbox, i, || ()).is_ok());
    }
}
