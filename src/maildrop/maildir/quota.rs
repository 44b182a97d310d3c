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

use super::dirs::Dirs;

/// Reached from `new/` (or `cur/`): the maildrop this session locked, even if its path was renamed.
const MAILDIRSIZE: &CStr = c"../maildirsize";

/// Appends the removal of `count` messages of `bytes` octets (their files' sizes, as Maildir++ counts)
/// to the maildrop's `maildirsize`, if it has one. One `write` of a short line with `O_APPEND`, as
/// the delivery agents add theirs, so lines never mix. Failures are logged: the next recount mends
/// the total.
pub(super) fn record_removal(dirs: &Dirs, root: &Path, bytes: u64, count: u64) {
    if count == 0 {
        return;
    }
    match append(dirs, &format!("-{bytes} -{count}\n")) {
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

/// False when there is no `maildirsize` (or no `new/` or `cur/` to find it from).
fn append(dirs: &Dirs, line: &str) -> io::Result<bool> {
    let Some(dir) = dirs.0.iter().flatten().next() else {
        return Ok(false);
    };
    // Not through a symlink, not waiting on a FIFO: only a regular file is written to.
    let flags = OFlag::O_WRONLY
        | OFlag::O_APPEND
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let file = match openat(dir, MAILDIRSIZE, flags, Mode::empty()) {
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
