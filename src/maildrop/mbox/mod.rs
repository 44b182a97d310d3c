//! The mbox backend: one file holding every message, shared with the delivery agents that append to it.
//! Owns opening and scanning the file under the agents' locks, serving message bytes from it, and
//! checking it is unchanged before UPDATE; the format rules are `scan`'s, unique-ids `uidl`'s, the
//! crash-safe rewrite `expunge`'s.
//!
//! Locks (see `crate::lock`):
//! - Session lock: an exclusive `flock` on `MBOX.poplar.lock`, not on the mbox itself. A `flock` on the
//!   mbox would block, for a whole session, every agent that locks with `flock` (Exim's
//!   `use_flock_lock`, dovecot's `mbox_write_locks = flock`, mail readers), and on NFS Linux turns
//!   `flock` into fcntl locks, blocking them all. Dovecot likewise keeps its POP3 session lock in a
//!   separate file. The file lives next to the mbox, where the dotlock must be created anyway, so the
//!   server needs no more rights than dotlocking needs (on Debian: group `mail` for `/var/mail`).
//! - Delivery locks (fcntl OFD lock + `MBOX.lock`): held while the mbox is read to build the
//!   session's view, then released, so delivery is never blocked for a session; mail that arrives
//!   later lies past what we scanned and is left alone. Held again for the whole UPDATE.
//! - popa3d takes the same care: it re-parses the mailbox under lock before rewriting if its mtime
//!   changed, and gives up if the messages did. We check the ctime instead (`stamp`), which no program
//!   can set back, and otherwise scan the scanned part again: it must be identical.

pub mod expunge;
pub mod index;
pub mod polyhash;
mod recovery;
pub mod scan;
mod stamp;
pub mod sum;
pub mod uidl;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use nix::libc;

use super::{FileRange, Maildrop, MaildropError, MessageInfo, Tidy, read_some_at};
use crate::lock::{DELIVERY_LOCK_WAIT, DeliveryLock, SESSION_LOCK_WAIT, SessionLock, TryLock};
use scan::{MIN_FRAGMENT, ScannedMessage, Scanner};
use stamp::Stamp;
pub use uidl::UidlSource;

/// Read size while scanning: large sequential reads.
const READ_CHUNK: usize = 1 << 20;
/// A `From ` line longer than this is not re-read to check it (the offsets are still checked).
const MAX_FROM_LINE_CHECK: u64 = 64 * 1024;

pub struct Mbox {
    path: PathBuf,
    /// `None`: there is no mbox file, an empty maildrop.
    file: Option<File>,
    scanned: Vec<ScannedMessage>,
    /// The file's size when scanned: what this session knows about.
    scanned_size: u64,
    messages: Vec<MessageInfo>,
    want_x_uidl: bool,
    /// Set when the whole mbox was scanned in this session and the stamp counts: UPDATE need not scan
    /// it again if it still matches.
    stamp: Option<Stamp>,
    /// An index of `scanned` to write when the session ends (see `Drop`), keyed under the delivery locks.
    unsaved_index: Option<index::Key>,
    _session: Option<SessionLock>,
}

/// `MBOX.poplar.lock`: the session lock file.
pub fn session_lock_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".poplar.lock");
    PathBuf::from(name)
}

impl Mbox {
    /// Opens the mbox at `path` with popa3d-compatible unique-ids.
    pub fn open(path: &Path) -> Result<Mbox, MaildropError> {
        Mbox::open_with(path, UidlSource::default())
    }

    /// Opens and scans the mbox at `path`. A missing or empty file is an empty maildrop. An expunge
    /// that a crash interrupted is finished or undone first.
    pub fn open_with(path: &Path, uidl: UidlSource) -> Result<Mbox, MaildropError> {
        let io_err = |e| MaildropError::io(path, e);
        let session = match SessionLock::acquire_within(&session_lock_path(path), SESSION_LOCK_WAIT)
        {
            Ok(TryLock::Acquired(lock)) => Some(lock),
            Ok(TryLock::Busy) => {
                return Err(MaildropError::InUse {
                    path: path.to_path_buf(),
                });
            }
            // No directory, so no mbox: nothing to protect.
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(e)),
        };
        let want_x_uidl = uidl == UidlSource::XUidl;
        let mut mbox = Mbox {
            path: path.to_path_buf(),
            file: None,
            scanned: Vec::new(),
            scanned_size: 0,
            messages: Vec::new(),
            want_x_uidl,
            stamp: None,
            unsaved_index: None,
            _session: session,
        };
        let Some((file, lock)) = mbox.open_locked()? else {
            return Ok(mbox);
        };
        expunge::recover(path, &file).map_err(io_err)?;
        let (scanned, size, stale) = match scan_from_index(path, &file, want_x_uidl, &lock)? {
            Some(indexed) => indexed,
            None => {
                let (scanned, size, stamp) = mbox.scan_whole(&file, &lock)?;
                mbox.stamp = stamp;
                (scanned, size, true)
            }
        };
        // Under the delivery locks, so the key's size and mtime are those of what was scanned. The
        // index itself is written when the session ends (see `Drop`): the client is not kept waiting
        // for it, and an UPDATE that removes messages writes its own instead.
        // The clock first, so that a same-size rewrite later in this tick is not taken for no change.
        let key = if stale {
            let clock = mbox._session.as_ref().and_then(|s| s.touch().ok());
            let meta = file.metadata().map_err(io_err)?;
            Some(index::Key::new(
                &meta,
                clock.as_ref(),
                &scanned,
                want_x_uidl,
            ))
        } else {
            None
        };
        drop(lock);
        let uids = uidl::assign(&scanned, uidl, |m| header_md5(&file, m)).map_err(io_err)?;
        // Only now: a login that fails before this point writes no index (it would be of no messages).
        mbox.unsaved_index = key;
        mbox.messages = scanned
            .iter()
            .zip(uids)
            .map(|(m, uid)| MessageInfo {
                octets: m.octets,
                uid,
            })
            .collect();
        (mbox.scanned, mbox.scanned_size, mbox.file) = (scanned, size, Some(file));
        Ok(mbox)
    }

    /// Opens the mbox and takes the delivery locks; `None` when there is no mbox. A program that renames
    /// a new file over the mbox between our open and our lock makes us open it again.
    fn open_locked(&self) -> Result<Option<(File, DeliveryLock)>, MaildropError> {
        let mut attempts = 3;
        loop {
            let Some(file) = open_file(&self.path)? else {
                return Ok(None);
            };
            let lock = DeliveryLock::acquire(&self.path, &file, DELIVERY_LOCK_WAIT)
                .map_err(|e| MaildropError::io(&self.path, e))?;
            match self.check_same_file(&file) {
                Err(MaildropError::Changed { .. }) if attempts > 1 => attempts -= 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(Some((file, lock))),
            }
        }
    }

    fn changed(&self, reason: impl Into<String>) -> MaildropError {
        MaildropError::Changed {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Spot check before serving a message: the file is not shorter than scanned and the message's
    /// `From ` line is still where it was, after an empty line, and so is the next one's, where the
    /// message ends: an edit that moved only the messages between two of the index's samples (one
    /// message a line longer, the next a line shorter) must not have RETR send other bytes than LIST
    /// counted, or a piece of the next message.
    fn check_message(&self, file: &File, index: usize) -> Result<(), MaildropError> {
        let io_err = |e| MaildropError::io(&self.path, e);
        let m = &self.scanned[index];
        let next_intact = |next: &ScannedMessage| from_line_intact(file, next);
        let intact = file.metadata().map_err(io_err)?.len() >= self.scanned_size
            && from_line_intact(file, m).map_err(io_err)?
            && self
                .scanned
                .get(index + 1)
                .map_or(Ok(true), next_intact)
                .map_err(io_err)?;
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
    fn tail_to_cut(&self, file: &File, deleted: &[usize]) -> Result<u64, MaildropError> {
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
    fn check_same_file(&self, file: &File) -> Result<(), MaildropError> {
        let io_err = |e| MaildropError::io(&self.path, e);
        let (named, held) = (
            fs::symlink_metadata(&self.path),
            file.metadata().map_err(io_err)?,
        );
        match named {
            Ok(named) if named.dev() == held.dev() && named.ino() == held.ino() => Ok(()),
            Ok(_) => Err(self.changed("mbox replaced by another file (renamed over it)")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.changed("mbox removed")),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Scans all of the mbox, under the delivery locks; with the messages and the octets scanned, the
    /// stamp that lets UPDATE skip scanning it again, if it counts. The session lock's file is touched
    /// first, then the mbox's metadata read, both before the scan (see `stamp`).
    fn scan_whole(
        &self,
        file: &File,
        lock: &DeliveryLock,
    ) -> Result<(Vec<ScannedMessage>, u64, Option<Stamp>), MaildropError> {
        let clock = self._session.as_ref().map(SessionLock::touch);
        let before = file
            .metadata()
            .map_err(|e| MaildropError::io(&self.path, e))?;
        let (scanned, size) =
            scan_file(&self.path, file, None, self.want_x_uidl, lock, READ_CHUNK)?;
        let stamp = match clock {
            Some(Ok(clock)) if size == before.len() => Stamp::taken(&before, &clock),
            _ => None,
        };
        Ok((scanned, size, stamp))
    }

    /// Under the delivery locks: the mbox is unchanged since the scan (see `stamp`), or the part we
    /// scanned scans the same again, in the same file.
    fn verify_unchanged(&self, file: &File, lock: &DeliveryLock) -> Result<(), MaildropError> {
        self.check_same_file(file)?;
        let meta = file
            .metadata()
            .map_err(|e| MaildropError::io(&self.path, e))?;
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

/// Opens the mbox read-write (the fcntl write lock needs it), not following a symlink and not
/// blocking on a FIFO; `None` when it does not exist.
fn open_file(path: &Path) -> Result<Option<File>, MaildropError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if expunge::recovery_path(path).exists() {
                let reason =
                    "recovery file without its mbox: left for the administrator".to_string();
                return Err(MaildropError::Changed {
                    path: path.to_path_buf(),
                    reason,
                });
            }
            return Ok(None);
        }
        Err(e) => return Err(MaildropError::io(path, e)),
    };
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(Some(file)),
        Ok(_) => Err(MaildropError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
        )),
        Err(e) => Err(MaildropError::io(path, e)),
    }
}

/// `From ` line checks: the line is still at `m.from_offset`, after an empty line (or at the start),
/// with the same digest (lines over `MAX_FROM_LINE_CHECK` octets are only checked to begin there).
fn from_line_intact(file: &File, m: &ScannedMessage) -> io::Result<bool> {
    let start = m.from_offset.saturating_sub(2);
    let len = (m.data_offset - start).min(MAX_FROM_LINE_CHECK + 2) as usize;
    // Checked at every RETR and TOP, twice: a From line of usual length is read onto the stack.
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

/// The messages from the mbox's index where it still describes the file (see `index`): then only the
/// last indexed message and what follows it are read. Returns the messages, the octets scanned, and
/// whether the index must be written again (mail was appended); `None` when the index cannot be used
/// and the whole mbox must be scanned.
fn scan_from_index(
    path: &Path,
    file: &File,
    want_x_uidl: bool,
    lock: &DeliveryLock,
) -> Result<Option<(Vec<ScannedMessage>, u64, bool)>, MaildropError> {
    let Some((key, mut messages)) = indexed_prefix(path, file, want_x_uidl)? else {
        return Ok(None);
    };
    let last = messages.pop().expect("an index holds at least one message");
    match scan_range(
        path,
        file,
        last.from_offset,
        None,
        want_x_uidl,
        lock,
        READ_CHUNK,
    ) {
        Ok((tail, size))
            if tail
                .first()
                .is_some_and(|t| t.from_digest == last.from_digest) =>
        {
            let stale = size != key.size || tail.len() != 1 || tail[0] != last;
            messages.extend(tail);
            Ok(Some((messages, size, stale)))
        }
        Ok(_) | Err(_) => {
            log::debug!(
                "{}: the last indexed message moved; scanning it all",
                path.display()
            );
            Ok(None)
        }
    }
}

/// The index's key and messages when it passes every check against the mbox but the last rescan.
fn indexed_prefix(
    path: &Path,
    file: &File,
    want_x_uidl: bool,
) -> Result<Option<(index::Key, Vec<ScannedMessage>)>, MaildropError> {
    let meta = file.metadata().map_err(|e| MaildropError::io(path, e))?;
    let Some((key, messages)) = index::load(path, meta.uid()) else {
        return Ok(None);
    };
    let mut intact = key.admits(&meta, want_x_uidl);
    for i in index::sample_indexes(messages.len()) {
        if !intact {
            break;
        }
        intact = from_line_intact(file, &messages[i]).map_err(|e| MaildropError::io(path, e))?;
    }
    if !intact {
        log::debug!(
            "{}: index out of date; scanning the whole mbox",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some((key, messages)))
}

/// Scans `file` from the start to its end, or to `limit`. Returns the messages and the octets scanned.
fn scan_file(
    path: &Path,
    file: &File,
    limit: Option<u64>,
    want_x_uidl: bool,
    lock: &DeliveryLock,
    chunk: usize,
) -> Result<(Vec<ScannedMessage>, u64), MaildropError> {
    scan_range(path, file, 0, limit, want_x_uidl, lock, chunk)
}

/// Scans `file` from `start`, where a `From ` line must begin, to its end or to `limit`.
fn scan_range(
    path: &Path,
    file: &File,
    start: u64,
    limit: Option<u64>,
    want_x_uidl: bool,
    lock: &DeliveryLock,
    chunk: usize,
) -> Result<(Vec<ScannedMessage>, u64), MaildropError> {
    let io_err = |e| MaildropError::io(path, e);
    let mut scanner = Scanner::starting_at(start, want_x_uidl);
    // The scanner leaves fewer than MIN_FRAGMENT octets unconsumed, so this buffer never grows.
    let mut buf = vec![0u8; chunk + MIN_FRAGMENT];
    let (mut kept, mut read_pos) = (0usize, start);
    let limit = limit.unwrap_or(u64::MAX);
    loop {
        let room = chunk.min((limit - read_pos).try_into().unwrap_or(usize::MAX));
        let n = read_some_at(file, &mut buf[kept..kept + room], read_pos).map_err(io_err)?;
        read_pos += n as u64;
        let eof = n == 0;
        let used = scanner
            .feed(&buf[..kept + n], eof)
            .map_err(|_| not_mbox(path))?;
        buf.copy_within(used..kept + n, 0);
        kept = kept + n - used;
        if eof {
            break;
        }
        lock.refresh().map_err(io_err)?;
    }
    Ok((scanner.finish(), read_pos))
}

fn not_mbox(path: &Path) -> MaildropError {
    let e = io::Error::new(
        io::ErrorKind::InvalidData,
        "not an mbox: it does not begin with a \"From \" line",
    );
    MaildropError::io(path, e)
}

/// MD5 of a message's `From ` line and header, for the unique-id suffix (see `uidl`).
fn header_md5(file: &File, m: &ScannedMessage) -> io::Result<[u8; 16]> {
    let mut md5 = Md5::new();
    io::copy(
        &mut FileRange::new(file, m.from_offset, m.header_end),
        &mut Md5Writer(&mut md5),
    )?;
    Ok(md5.finalize().into())
}

struct Md5Writer<'a>(&'a mut Md5);

impl io::Write for Md5Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Maildrop for Mbox {
    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError> {
        let (Some(file), Some(m)) = (self.file.as_ref(), self.scanned.get(index)) else {
            return Err(self.changed(format!("no message with index {index}")));
        };
        if let Err(e) = self.check_message(file, index) {
            // Nor may the index of what this session scanned be written.
            self.unsaved_index = None;
            return Err(e);
        }
        Ok(Box::new(FileRange::new(file, m.data_offset, m.data_end)))
    }

    fn expunge(mut self: Box<Self>, deleted: &[usize]) -> Result<Tidy, MaildropError> {
        if !deleted.is_empty() {
            // Whatever comes of it, the index of the mbox as scanned is not written: the tidying
            // writes one of what is left, and a failure leaves the mbox in doubt.
            self.unsaved_index = None;
        }
        let Some(file) = self.file.as_ref().filter(|_| !deleted.is_empty()) else {
            // Nothing removed: the index of what was scanned, if due, is written after the reply.
            return Ok(Tidy::later(move || drop(self)));
        };
        let io_err = |e| MaildropError::io(&self.path, e);
        let mut ranges = deleted_ranges(&self.scanned, deleted)
            .ok_or_else(|| self.changed("bad deletion list"))?;
        let lock = DeliveryLock::acquire(&self.path, file, DELIVERY_LOCK_WAIT).map_err(io_err)?;
        if let Some(last) = ranges.last_mut() {
            last.1 += self.tail_to_cut(file, deleted)?;
        }
        // The index describes the mbox before the removal; until the tidying writes one of what is
        // left, there must be none (a crash in between would otherwise leave offsets that later mail
        // can happen to line up with). Removed before step 1, whose fsync of the directory makes it last.
        index::remove(&self.path);
        // The rescan runs in a second thread while the recovery file is written.
        let mut keep_alive = || {
            if let Err(e) = lock.refresh() {
                log::warn!("{}: cannot refresh dotlock: {e}", self.path.display());
            }
        };
        let prepared = expunge::prepare(
            &self.path,
            file,
            &ranges,
            || self.verify_unchanged(file, &lock),
            &mut keep_alive,
        )
        .map_err(|refused| match refused {
            expunge::Refused::Check(changed) => changed,
            expunge::Refused::Io(e) => io_err(e),
        })?;
        let committed = prepared.commit(&mut keep_alive).map_err(io_err)?;
        // Still under the delivery locks: the index's key must describe the file as we left it.
        let clock = self._session.as_ref().and_then(|s| s.touch().ok());
        let meta = file.metadata().ok();
        drop(lock);
        Ok(Tidy::later(move || {
            (*self).tidy(committed, meta, clock, &ranges)
        }))
    }
}

impl Drop for Mbox {
    /// The session is over: writes the index of the scanned messages if it is due. Before the session
    /// lock is released (the field is dropped after this), so no other session sees it half done.
    fn drop(&mut self) {
        if let Some(key) = self.unsaved_index.take()
            && let Err(e) = index::save(&self.path, &key, &self.scanned)
        {
            log::debug!(
                "{}: cannot save the index: {e}",
                index::index_path(&self.path).display()
            );
        }
    }
}

impl Mbox {
    /// After UPDATE's reply: the recovery file goes, the index of what was kept is written (the kept
    /// messages moved down by what was removed before them), and dropping `self` frees the lists and
    /// releases the session lock last.
    fn tidy(
        self,
        committed: expunge::Committed,
        meta: Option<fs::Metadata>,
        clock: Option<fs::Metadata>,
        ranges: &[(u64, u64)],
    ) {
        if let Err(e) = committed.finish() {
            log::warn!(
                "{}: cannot remove the recovery file: {e}",
                self.path.display()
            );
        }
        let kept = after_removal(&self.scanned, ranges);
        let saved = match meta {
            Some(meta) if !kept.is_empty() => index::save(
                &self.path,
                &index::Key::new(&meta, clock.as_ref(), &kept, self.want_x_uidl),
                &kept,
            ),
            _ => Err(io::ErrorKind::NotFound.into()),
        };
        if saved.is_err() {
            index::remove(&self.path);
        }
    }
}

/// The messages of `scanned` outside the `removed` byte ranges (ascending, each a run of whole
/// messages), at their offsets once those ranges are cut out of the file.
fn after_removal(scanned: &[ScannedMessage], removed: &[(u64, u64)]) -> Vec<ScannedMessage> {
    let (mut kept, mut ranges, mut shift) = (
        Vec::with_capacity(scanned.len()),
        removed.iter().peekable(),
        0,
    );
    for m in scanned {
        while let Some(&&(start, end)) =
            ranges.peek().filter(|&&&(start, _)| start <= m.from_offset)
        {
            if m.from_offset < end {
                break;
            }
            shift += end - start;
            ranges.next();
        }
        if ranges
            .peek()
            .is_some_and(|&&(start, end)| (start..end).contains(&m.from_offset))
        {
            continue;
        }
        kept.push(ScannedMessage {
            from_offset: m.from_offset - shift,
            data_offset: m.data_offset - shift,
            header_end: m.header_end - shift,
            data_end: m.data_end - shift,
            end: m.end - shift,
            ..m.clone()
        });
    }
    kept
}

/// The byte ranges (From line to the next From line) of the messages at `deleted`, ascending and
/// merged; `None` if the indexes are out of range or not ascending.
fn deleted_ranges(scanned: &[ScannedMessage], deleted: &[usize]) -> Option<Vec<(u64, u64)>> {
    let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(deleted.len());
    for (i, &index) in deleted.iter().enumerate() {
        if i > 0 && index <= deleted[i - 1] {
            return None;
        }
        let m = scanned.get(index)?;
        match ranges.last_mut() {
            Some(last) if last.1 == m.from_offset => last.1 = m.end,
            _ => ranges.push((m.from_offset, m.end)),
        }
    }
    Some(ranges)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
