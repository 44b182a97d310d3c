//! Maildir++ quotas: the `maildirsize` file that Courier's deliverquota and maildrop, and Dovecot's
//! `quota = maildir`, keep in the maildrop. Each program that removes messages appends a line of what
//! it removed, `-BYTES -COUNT`, so that the running total stays right until the next full recount:
//! without it a user who downloaded and deleted everything would still count as full, and their new
//! mail could be refused. The file is only ever appended to, never created: without one the maildrop
//! has no Maildir++ quota.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

const MAILDIRSIZE: &CStr = c"maildirsize";

/// Appends the removal of `count` messages of `bytes` octets (their files' sizes, as Maildir++ counts)
/// to the `maildirsize` of the maildrop at `root`, if it has one and `root` still is the directory
/// the session locked (`top_id`, its device and inode at login): found by path, as the size cache is,
/// but never in a maildrop that has taken the place of a renamed one. Not through `new/`: that may be
/// a symlink into a spool, whose parent is not the maildrop. One `write` of a short line with
/// `O_APPEND`, as the delivery agents add theirs, so lines never mix. Failures are logged: the next
/// recount mends the total.
pub(super) fn record_removal(root: &Path, top_id: Option<(u64, u64)>, bytes: u64, count: u64) {
    let Some(top_id) = top_id.filter(|_| count > 0) else {
        return;
    };
    match append(root, top_id, &format!("-{bytes} -{count}\n")) {
        Ok(true) => log::debug!(
            "{}/maildirsize: removal of {count} messages, {bytes} octets, recorded",
            root.display()
        ),
        Ok(false) => {}
        Err(e) => log::warn!(
            "{}/maildirsize: cannot record a removal: {e}",
            root.display()
        ),
    }
}

/// False when there is no `maildirsize`, or `root` is another directory now.
fn append(root: &Path, top_id: (u64, u64), line: &str) -> io::Result<bool> {
    let top = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = nix::sys::stat::fstat(&top)?;
    if (st.st_dev, st.st_ino) != top_id {
        return Ok(false);
    }
    // Not through a symlink, not waiting on a FIFO: only a regular file is written to.
    let flags = OFlag::O_WRONLY
        | OFlag::O_APPEND
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let file = match openat(&top, MAILDIRSIZE, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(nix::errno::Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    (&file).write_all(line.as_bytes())?;
    Ok(true)
}
