//! Checking that the mbox still holds what this session scanned: before a message is served, again
//! once it has been read and before its terminator goes out, and under the delivery locks before
//! UPDATE cuts anything. A change found is refused, never repaired.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use super::read::{READ_CHUNK, scan_file};
use super::scan::{self, ScannedMessage};
use super::{Mbox, index};
use crate::lock::DeliveryLock;
use crate::maildrop::{MaildropError, read_some_at};

/// A `From ` line longer than this is not re-read to check it (the offsets are still checked).
const MAX_FROM_LINE_CHECK: u64 = 64 * 1024;

/// What the mbox's metadata said when a message was opened to be served, for the check after its
/// last octet was read (`check_sent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Serving {
    index: usize,
    size: u64,
    ctime: (i64, i64),
}

impl Mbox {
    /// Spot check before serving a message: the file is not shorter than scanned and the message's
    /// `From ` line is still where it was, after an empty line, and so is the next one's, where the
    /// message ends (for the last message, see `last_end_intact`): an edit that moved only the
    /// messages between two of the index's samples (one message a line longer, the next a line
    /// shorter) must not have RETR send other bytes than LIST counted, or a piece of the next
    /// message. Returns what `check_sent` needs to know of the file as it was.
    pub(super) fn check_message(
        &self,
        file: &File,
        index: usize,
    ) -> Result<Serving, MaildropError> {
        let meta = file
            .metadata()
            .map_err(|e| MaildropError::io(&self.path, e))?;
        self.check_boundaries(file, index, &meta)?;
        Ok(Serving {
            index,
            size: meta.len(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }

    /// After the last octet of the message at `index` was read for RETR or TOP, before its terminator
    /// goes out: no lock is held while a message is sent, and a mail reader that rewrote the mbox
    /// meanwhile (mutt takes the delivery locks, inserts a `Status:` header into message 1 and writes
    /// everything after it again, 11 octets further on) had the client receive shifted, doubled or
    /// missing text. So the checks made at open are made again: they see every rewrite that moved the
    /// message or the one after it, and never mail appended past what was scanned. And when the file
    /// has the size it had at open (`serving`) but not the change time, it was written in place,
    /// which no delivery does: a rewrite that kept every boundary (one in the clock tick of the open
    /// goes unseen so, file system times being coarse; a cheap extra, not a guarantee). Costs one
    /// `fstat` and two `pread`s of a few hundred octets at most, from the page cache.
    pub(super) fn check_sent(
        &self,
        file: &File,
        index: usize,
        serving: Option<Serving>,
    ) -> Result<(), MaildropError> {
        let meta = file
            .metadata()
            .map_err(|e| MaildropError::io(&self.path, e))?;
        let in_place = serving.is_some_and(|s| {
            s.index == index && s.size == meta.len() && s.ctime != (meta.ctime(), meta.ctime_nsec())
        });
        if in_place {
            // Not a reason to drop the index: it keeps the size and the times it was made for.
            return Err(self.changed(format!(
                "mbox written in place while the message at offset {} was sent",
                self.scanned[index].from_offset
            )));
        }
        self.check_boundaries(file, index, &meta)
    }

    /// The boundaries of the message at `index`, in the file whose metadata is now `meta`.
    fn check_boundaries(
        &self,
        file: &File,
        index: usize,
        meta: &fs::Metadata,
    ) -> Result<(), MaildropError> {
        let io_err = |e| MaildropError::io(&self.path, e);
        let m = &self.scanned[index];
        let end_intact = || match self.scanned.get(index + 1) {
            Some(next) => from_line_intact(file, next),
            None => last_end_intact(file, m),
        };
        let intact = meta.len() >= self.scanned_size
            && from_line_intact(file, m).map_err(io_err)?
            && end_intact().map_err(io_err)?;
        if intact {
            Ok(())
        } else {
            // The index, if any, describes what is no longer there: the next login scans everything.
            index::remove(&self.path);
            Err(self.changed(format!("message at offset {} moved", m.from_offset)))
        }
    }

    /// Under the delivery locks, before UPDATE cuts anything: the mbox is not shorter than scanned,
    /// and if the last scanned message goes while mail was appended after it, how far past the scanned
    /// end its cut must reach: over the empty lines an agent wrote before the appended mail's `From `
    /// line (one LF when the mbox's last line had none, two for a separating empty line). Cutting
    /// only to the scanned end would leave them to the kept message before, or at the start of the
    /// file, which then is no mbox. Anything else there is refused: it is not known whose it is.
    pub(super) fn tail_to_cut(&self, file: &File, deleted: &[usize]) -> Result<u64, MaildropError> {
        let io_err = |e| MaildropError::io(&self.path, e);
        let size = file.metadata().map_err(io_err)?.len();
        self.not_shrunk(size)?;
        let last_goes = deleted.last().is_some_and(|&i| i + 1 == self.scanned.len());
        if !last_goes || size == self.scanned_size {
            return Ok(0);
        }
        let mut head = [0u8; 64];
        let n = read_some_at(file, &mut head, self.scanned_size).map_err(io_err)?;
        let empty_lines = head[..n].iter().take_while(|&&b| b == b'\n').count();
        if head[empty_lines..n].starts_with(b"From ") {
            Ok(empty_lines as u64)
        } else {
            Err(self
                .changed("what was appended during the session does not begin with a From line"))
        }
    }

    /// The mbox, now `size` octets, still holds all that was scanned.
    fn not_shrunk(&self, size: u64) -> Result<(), MaildropError> {
        if size < self.scanned_size {
            return Err(self.changed(format!(
                "mbox shrank from {} to {size} octets",
                self.scanned_size
            )));
        }
        Ok(())
    }

    /// Under the delivery locks: `path` still names the file we opened. Some programs rewrite an mbox
    /// into a new file and rename it over the old one (mailutils does, to add its X-UID headers); our
    /// descriptor then holds the old, unlinked file, and "expunging" it would change nothing real.
    /// Returns the held file's metadata, which the caller may need too: one `fstat`, not two.
    pub(super) fn check_same_file(&self, file: &File) -> Result<fs::Metadata, MaildropError> {
        let io_err = |e| MaildropError::io(&self.path, e);
        let (named, held) = (
            fs::symlink_metadata(&self.path),
            file.metadata().map_err(io_err)?,
        );
        match named {
            Ok(named) if named.dev() == held.dev() && named.ino() == held.ino() => Ok(held),
            Ok(_) => Err(self.changed("mbox replaced by another file (renamed over it)")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.changed("mbox removed")),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Under the delivery locks: the mbox is unchanged since the scan (see `stamp`), or the part we
    /// scanned scans the same again, in the same file.
    pub(super) fn verify_unchanged(
        &self,
        file: &File,
        lock: &DeliveryLock,
    ) -> Result<(), MaildropError> {
        let meta = self.check_same_file(file)?;
        if self.stamp.is_some_and(|stamp| stamp.matches(&meta)) {
            log::debug!("{}: unchanged since scanned", self.path.display());
            return Ok(());
        }
        self.not_shrunk(meta.len())?;
        let (again, _) = scan_file(
            &self.path,
            file,
            Some(self.scanned_size),
            self.want_x_uidl,
            lock,
            READ_CHUNK,
        )?;
        if again != self.scanned {
            index::remove(&self.path);
            return Err(self.changed("mbox rewritten by another program during the session"));
        }
        Ok(())
    }
}

/// The end of `m`, the last message scanned, where the scan ended: the empty line that it lost as a
/// separator is still just before, and after it comes the end of the file or what a delivery agent
/// appends: empty lines, then a `From ` line, of which it may have written only a part yet. A mail
/// reader that inserted `Status: RO` into this message instead leaves there the message's own last
/// octets, and an empty line before them no more.
fn last_end_intact(file: &File, m: &ScannedMessage) -> io::Result<bool> {
    const FROM: &[u8] = b"From ";
    let stripped = m.end - m.data_end;
    let start = m.end - 2 * stripped;
    let mut buf = [0u8; 64];
    let n = read_some_at(file, &mut buf, start)?;
    let Some((before, after)) = buf[..n].split_at_checked((m.end - start) as usize) else {
        return Ok(false);
    };
    if stripped > 0 && before != b"\n\n" {
        return Ok(false);
    }
    let appended = &after[after.iter().take_while(|&&b| b == b'\n').count()..];
    Ok(appended.starts_with(FROM) || FROM.starts_with(appended))
}

/// `From ` line checks: the line is still at `m.from_offset`, after an empty line (or at the start),
/// with the same digest (lines over `MAX_FROM_LINE_CHECK` octets are only checked to begin there).
pub(super) fn from_line_intact(file: &File, m: &ScannedMessage) -> io::Result<bool> {
    let start = m.from_offset.saturating_sub(2);
    let len = (m.data_offset - start).min(MAX_FROM_LINE_CHECK + 2) as usize;
    // Checked at every RETR and TOP, for the message and the next, before it is sent and again after:
    // a From line of usual length is read onto the stack.
    let (mut short, mut long) = ([0u8; 256], Vec::new());
    let line = if len <= short.len() {
        &mut short[..len]
    } else {
        long.resize(len, 0);
        &mut long[..]
    };
    match file.read_exact_at(line, start) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        other => other?,
    }
    let (before, from_line) = line.split_at((m.from_offset - start) as usize);
    let separated = m.from_offset == 0 || before == b"\n\n";
    let same = m.data_offset - m.from_offset > MAX_FROM_LINE_CHECK
        || scan::from_line_digest(from_line) == m.from_digest;
    Ok(separated && same && from_line.starts_with(b"From "))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
