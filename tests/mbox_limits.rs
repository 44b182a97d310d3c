//! A full disk (ENOSPC) or a file size limit (EFBIG) during an mbox UPDATE loses nothing: QUIT answers
//! `-ERR [SYS/TEMP]`, the mbox is byte for byte what it was, no recovery file is left behind, and the next
//! login shows every message. The limit is the server's own `ulimit -f` (the binary ignores SIGXFSZ, so
//! writes fail with EFBIG instead of killing it). The ENOSPC test mounts a small tmpfs over the user's
//! home: it needs root (CI runs as root) and skips, saying so, when mounting is not permitted.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Backend, Fixture, Server};

/// A mailbox of `count` distinct messages, padded so that the file is exactly `size` octets.
fn mailbox(count: usize, size: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..count {
        m.extend_from_slice(
            format!("From s{i}@example.org Thu Jan  1 00:00:00 2026\nSubject: {i}\n\n").as_bytes(),
        );
        let line = format!("body of message {i}\n");
        let room = size / count - 80;
        m.extend_from_slice(line.repeat(room / line.len()).as_bytes());
        m.extend_from_slice(b"\n");
    }
    assert!(m.len() < size, "{} octets do not fit in {size}", m.len());
    let pad = size - m.len();
    // Lengthen the last message's last body line (no new line ends: the message count stays).
    let at = m.len() - 2;
    m.splice(at..at, std::iter::repeat_n(b'x', pad));
    assert_eq!(m.len(), size);
    m
}

fn setup(content: &[u8]) -> (Fixture, std::path::PathBuf) {
    let mut fx = Fixture::on(Backend::Mbox);
    fx.user("alice", "secret");
    let path = fx.mbox("alice");
    fs::write(&path, content).unwrap();
    (fx, path)
}

/// Logs in to `srv`, deletes `dele`, sends QUIT; returns the QUIT reply.
fn delete_and_quit(srv: &Server, count: usize, dele: &[usize]) -> String {
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with(&format!("+OK {count} ")));
    for n in dele {
        assert!(c.cmd(&format!("DELE {n}")).starts_with("+OK "));
    }
    c.cmd("QUIT")
}

/// The mbox is exactly `before`, no recovery file is left, and an unlimited server sees `count` messages.
fn unchanged(fx: &Fixture, path: &Path, before: &[u8], count: usize) {
    assert!(fs::read(path).unwrap() == before, "the mbox changed");
    assert!(
        !fx.home("alice").join("mbox.poplar-recovery").exists(),
        "recovery file left behind"
    );
    let srv = Server::start(fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with(&format!("+OK {count} ")));
}

#[test]
fn efbig_writing_the_recovery_file_changes_nothing() {
    // 8 KiB mbox under an 8 KiB limit: the mbox may be rewritten (no write reaches past 8 KiB), but the
    // recovery file for deleting a short message 1 (what stays, all but that message, plus a header
    // and a trailer longer than the message) cannot be written.
    let short = b"From s@example.org Thu Jan  1 00:00:00 2026\nSubject: short\n\nx\n\n";
    let before = [&short[..], &mailbox(4, 8192 - short.len())].concat();
    let (fx, path) = setup(&before);
    let srv = Server::start_with_file_limit(&fx, &[], 8);
    let reply = delete_and_quit(&srv, 5, &[1]);
    // "Not all", never "some ... not removed": an mbox's UPDATE removes all or none.
    assert!(
        reply.starts_with("-ERR [SYS/TEMP] deleted messages not all removed: "),
        "{reply}"
    );
    unchanged(&fx, &path, &before, 5);
}

#[test]
fn mbox_larger_than_the_limit_is_not_rewritten() {
    // Linux applies RLIMIT_FSIZE to the write position, not to growth: a write past the limit fails even
    // inside an existing file. Deleting message 5 of 8 (4 KiB each) needs a 16 KiB recovery file, which a
    // 20 KiB limit admits, but the compaction writes up to 28 KiB and a rollback up to 32 KiB: the server
    // must refuse before touching anything, or it would leave a recovery file it cannot itself apply.
    let before = mailbox(8, 32768);
    let (fx, path) = setup(&before);
    let srv = Server::start_with_file_limit(&fx, &[], 20);
    let reply = delete_and_quit(&srv, 8, &[5]);
    assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");
    drop(srv);
    unchanged(&fx, &path, &before, 8);
}

#[test]
fn update_within_the_limit_succeeds() {
    // The compaction never grows the mbox, so a limit that admits the recovery file admits the UPDATE.
    let before = mailbox(4, 8192);
    let (fx, path) = setup(&before);
    let srv = Server::start_with_file_limit(&fx, &[], 9);
    let reply = delete_and_quit(&srv, 4, &[1]);
    assert!(reply.starts_with("+OK "), "{reply}");
    let after = fs::read(&path).unwrap();
    let second = before.windows(7).position(|w| w == b"\n\nFrom ").unwrap() + 2;
    assert!(
        after == before[second..],
        "the mbox is not the old one minus message 1"
    );
}

/// A tmpfs of `kib` KiB mounted on `dir`, unmounted when dropped.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, kib: u64) -> Option<Tmpfs<'a>> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("mount: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn enospc_during_update_changes_nothing() {
    let mut fx = Fixture::on(Backend::Mbox);
    fx.user("alice", "secret");
    let home = fx.home("alice");
    let Some(_tmpfs) = Tmpfs::mount(&home, 64) else {
        eprintln!(
            "SKIPPED enospc_during_update_changes_nothing: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    // 40 KiB of mail on a 64 KiB file system: no room for the recovery file of deleting message 1,
    // which saves the 32 KiB that stay.
    let before = mailbox(5, 40 * 1024);
    let path = fx.mbox("alice");
    fs::write(&path, &before).unwrap();
    let srv = Server::start(&fx, &[]);
    let reply = delete_and_quit(&srv, 5, &[1]);
    assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");
    drop(srv);
    unchanged(&fx, &path, &before, 5);
}
