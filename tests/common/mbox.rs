//! The mbox side of the fixtures: messages appended to `HOME/mbox` so that the server sends exactly the
//! bytes the Maildir fixture would, and the mailbox read back as "which of the stored messages are left".
//!
//! What the server sends of an mbox message is the text between its `From ` line and the empty line that
//! separates it from the next one. So each message is stored as `From ` line, the text with LF line ends
//! and a final LF, then an empty line. CRLF line ends and a missing final newline (which an mbox cannot
//! hold as such: the empty line of the separator would be sent) are stored as LF: RETR sends CRLF lines
//! either way, so the client receives the same octets.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use poplar::maildrop::mbox::{UidlSource, scan, uidl};

/// One message as written into the mbox: its `From ` line, text and separating empty line.
pub struct Stored {
    pub name: String,
    pub block: Vec<u8>,
}

/// `content` as an mbox block whose served text has the same CRLF form as `content`.
pub fn block(serial: usize, content: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(content.len() + 64);
    for line in content.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        text.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        text.push(b'\n');
    }
    assert!(
        !text.windows(7).any(|w| w == b"\n\nFrom "),
        "fixture message holds a `From ` line after an empty line: it would be split"
    );
    let mut block =
        format!("From fixture-{serial}@example.org Thu Jan  1 00:00:00 2026\n").into_bytes();
    block.extend_from_slice(&text);
    block.push(b'\n');
    block
}

/// Appends `block` to the mbox at `path`.
pub fn append(path: &Path, block: &[u8]) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open mbox");
    f.write_all(block).expect("append to mbox");
}

/// The unique-id the server must give `block`'s message with the default (popa3d) rule. Ids depend on
/// the message's own bytes only, so scanning it alone must give the id it has inside the whole mailbox.
pub fn uid(block: &[u8]) -> String {
    let msgs = scan::scan_all(block, false).expect("fixture block is an mbox");
    assert_eq!(msgs.len(), 1, "one message per block");
    let ids = uidl::assign(&msgs, UidlSource::Popa3d, |m| {
        use md5::Digest;
        Ok::<_, ()>(md5::Md5::digest(&block[m.from_offset as usize..m.header_end as usize]).into())
    });
    ids.expect("digest never fails")[0].to_string()
}

/// Names of the stored messages still in the mbox at `path`, in mailbox order. Panics unless the file is
/// exactly those messages' blocks, byte for byte, in the order they were stored: an expunge must keep
/// every other byte.
pub fn left(path: &Path, stored: &[Stored]) -> Vec<String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let mut at = 0;
    let mut names = Vec::new();
    for s in stored {
        if bytes[at..].starts_with(&s.block) {
            at += s.block.len();
            names.push(s.name.clone());
        }
    }
    assert_eq!(
        at,
        bytes.len(),
        "{} holds bytes that are not the stored messages in order: {:?}",
        path.display(),
        super::show(&bytes[at..(at + 200).min(bytes.len())])
    );
    names
}

/// Runs a delivery agent with `text` on its standard input: `None` if it cannot be started (not
/// installed), else whether it succeeded.
pub fn deliver_with(agent: &mut Command, text: &str) -> Option<bool> {
    let mut child = agent.stdin(Stdio::piped()).spawn().ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    Some(child.wait().unwrap().success())
}
