//! The mbox backend: one file holding every message, shared with the delivery agents that append to it.
//! Owns the session's view of it: opening the file under the agents' locks, serving message bytes
//! from it, and UPDATE. Reading the file into the scanner is `read`'s, the checks that it still holds
//! what was scanned `verify`'s, the format rules `scan`'s, unique-ids `uidl`'s, the crash-safe
//! rewrite `expunge`'s.
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
//!   later lies past what we scanned and is left alone. Held again for the whole UPDATE. Not held
//!   while a message is sent either: a mail reader may rewrite the mbox meanwhile, so a message is
//!   checked when it is opened and again once it has been read, before its terminator goes out.
//! - popa3d takes the same care: it re-parses the mailbox under lock before rewriting if its mtime
//!   changed, and gives up if the messages did. We check the ctime instead (`stamp`), which no program
//!   can set back, and otherwise scan the scanned part again: it must be identical.

pub mod expunge;
pub mod index;
pub mod polyhash;
mod read;
mod recovery;
pub mod scan;
mod stamp;
pub mod sum;
pub mod uidl;
mod verify;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

use super::{FileRange, Maildrop, MaildropError, MessageInfo, Tidy};
use crate::lock::{DELIVERY_LOCK_WAIT, DeliveryLock, SESSION_LOCK_WAIT, SessionLock, TryLock};
use read::{header_md5, scan_from_index};
use scan::ScannedMessage;
use stamp::Stamp;
pub use uidl::UidlSource;
use verify::Serving;

pub struct Mbox {
    path: PathBuf,
    /// `None`: there is no mbox file, an empty maildrop.
    file: Option<File>,
    scanned: Vec<ScannedMessage>,
    /// How many of `scanned`, from the start, the session does not see: 1 when the first is an IMAP
    /// server's pseudo-message (see `listed_from`), else 0. The session's message `i` is `scanned[i +
    /// hidden]`.
    hidden: usize,
    /// The file's size when scanned: what this session knows about.
    scanned_size: u64,
    messages: Vec<MessageInfo>,
    want_x_uidl: bool,
    /// The uid the file must belong to, under one name (see `open_owned`).
    owner: Option<u32>,
    /// Set when the whole mbox was scanned in this session and the stamp counts: UPDATE need not scan
    /// it again if it still matches.
    stamp: Option<Stamp>,
    /// An index of `scanned` to write when the session ends (see `Drop`), keyed under the delivery locks.
    unsaved_index: Option<index::Key>,
    /// The message last opened to be served, with what the file was then (see `check_sent`).
    serving: Option<Serving>,
    _session: Option<SessionLock>,
}

/// The largest mbox a login scans: 64 GiB, a few minutes' reading from a disk, within the login
/// timer's default 10 minutes. A larger file (an archive kept as one mbox, or a sparse file of
/// terabytes made to hold a core and the delivery lock for hours) is refused with [SYS/PERM].
pub const MAX_MBOX: u64 = 64 << 30;

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
        Mbox::open_owned(path, uidl, None)
    }

    /// `open_with`, for a session that holds a group beyond its account's own (`mail-group`): with
    /// `owner`, the mbox must belong to that uid and have no other name (a hard link), or it is refused
    /// before anything is read or written. The group may write every spool in `/var/mail`; without
    /// this, a user whose mbox path is their own (`mbox:%h/mbox`) could link another user's spool
    /// there, or plant a file in a spool anyone may create files in, and read and expunge it.
    pub fn open_owned(
        path: &Path,
        uidl: UidlSource,
        owner: Option<u32>,
    ) -> Result<Mbox, MaildropError> {
        let io_err = |e| MaildropError::io(path, e);
        let lock_path = session_lock_path(path);
        let session = match SessionLock::acquire_within(&lock_path, SESSION_LOCK_WAIT) {
            Ok(TryLock::Acquired(lock)) => Some(lock),
            Ok(TryLock::Busy) => {
                return Err(MaildropError::InUse {
                    path: path.to_path_buf(),
                });
            }
            // No directory, so no mbox: nothing to protect.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                super::warn_if_directory_missing(path);
                None
            }
            // Named as what failed: a lock file beside the mbox, whose directory may be writable
            // only by a group (see mail-group), the mbox itself being the user's own.
            Err(e) => return Err(MaildropError::io(&lock_path, e)),
        };
        let want_x_uidl = uidl == UidlSource::XUidl;
        let mut mbox = Mbox {
            path: path.to_path_buf(),
            file: None,
            scanned: Vec::new(),
            hidden: 0,
            scanned_size: 0,
            messages: Vec::new(),
            want_x_uidl,
            owner,
            stamp: None,
            unsaved_index: None,
            serving: None,
            _session: session,
        };
        let Some((file, lock)) = mbox.open_locked()? else {
            return Ok(mbox);
        };
        expunge::recover(path, &file).map_err(io_err)?;
        let file_size = file.metadata().map_err(io_err)?.len();
        if file_size > MAX_MBOX {
            return Err(MaildropError::io(
                path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{file_size} octets, more than the {MAX_MBOX} an mbox may have"),
                ),
            ));
        }
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
        let hidden = listed_from(&scanned);
        // The ids of the listed messages only: the same as in that mbox without the pseudo-message.
        let uids =
            uidl::assign(&scanned[hidden..], uidl, |m| header_md5(&file, m)).map_err(io_err)?;
        // Only now: a login that fails before this point writes no index (it would be of no messages).
        mbox.unsaved_index = key;
        mbox.messages = scanned[hidden..]
            .iter()
            .zip(uids)
            .map(|(m, uid)| MessageInfo {
                octets: m.octets,
                uid,
            })
            .collect();
        (mbox.scanned, mbox.hidden, mbox.scanned_size) = (scanned, hidden, size);
        mbox.file = Some(file);
        Ok(mbox)
    }

    /// The index in `scanned` of the session's message `index` (see `hidden`).
    fn scanned_index(&self, index: usize) -> usize {
        index.saturating_add(self.hidden)
    }

    /// Opens the mbox and takes the delivery locks; `None` when there is no mbox. A program that renames
    /// a new file over the mbox between our open and our lock makes us open it again.
    fn open_locked(&self) -> Result<Option<(File, DeliveryLock)>, MaildropError> {
        let mut attempts = 3;
        loop {
            let Some(file) = open_file(&self.path, self.owner)? else {
                return Ok(None);
            };
            let lock = DeliveryLock::acquire(&self.path, &file, DELIVERY_LOCK_WAIT)
                .map_err(|e| MaildropError::io(&self.path, e))?;
            match self.check_same_file(&file) {
                Err(MaildropError::Changed { .. }) if attempts > 1 => attempts -= 1,
                Err(e) => return Err(e),
                Ok(_) => return Ok(Some((file, lock))),
            }
        }
    }

    fn changed(&self, reason: impl Into<String>) -> MaildropError {
        MaildropError::Changed {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

/// Opens the mbox read-write (the fcntl write lock needs it), not following a symlink and not
/// blocking on a FIFO; `None` when it does not exist. With `owner`, a file of another uid, or with
/// another name besides this one, is refused (see `Mbox::open_owned`).
fn open_file(path: &Path, owner: Option<u32>) -> Result<Option<File>, MaildropError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
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
        Ok(meta) if !meta.is_file() => Err(MaildropError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidData, "not a regular file"),
        )),
        Ok(meta) => match owner {
            Some(uid) if meta.uid() != uid || meta.nlink() != 1 => Err(MaildropError::io(
                path,
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "owned by uid {} with {} name(s), not the account's (uid {uid}) alone; \
                         refused with mail-group",
                        meta.uid(),
                        meta.nlink()
                    ),
                ),
            )),
            _ => Ok(Some(file)),
        },
        Err(e) => Err(MaildropError::io(path, e)),
    }
}

impl Maildrop for Mbox {
    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError> {
        let (listed, index) = (index, self.scanned_index(index));
        let (Some(file), Some(m)) = (self.file.as_ref(), self.scanned.get(index)) else {
            return Err(self.changed(format!("no message with index {listed}")));
        };
        match self.check_message(file, index) {
            Ok(serving) => self.serving = Some(serving),
            Err(e) => {
                // Nor may the index of what this session scanned be written.
                self.unsaved_index = None;
                return Err(e);
            }
        }
        Ok(Box::new(FileRange::new(file, m.data_offset, m.data_end)))
    }

    fn check_still_listed(&mut self, index: usize) -> Result<(), MaildropError> {
        let serving = self.serving.take();
        let (listed, index) = (index, self.scanned_index(index));
        let Some(file) = self.file.as_ref().filter(|_| index < self.scanned.len()) else {
            return Err(self.changed(format!("no message with index {listed}")));
        };
        let checked = self.check_sent(file, index, serving);
        if checked.is_err() {
            self.unsaved_index = None;
        }
        checked
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
        // From here on, indexes into `scanned`: a hidden pseudo-message is never among them, and stays.
        let deleted: Vec<usize> = deleted.iter().map(|&i| self.scanned_index(i)).collect();
        let deleted = &deleted[..];
        let mut ranges = deleted_ranges(&self.scanned, deleted)
            .ok_or_else(|| self.changed("bad deletion list"))?;
        let lock = DeliveryLock::acquire(&self.path, file, DELIVERY_LOCK_WAIT).map_err(io_err)?;
        // Before UPDATE's own reads, which may move the access time on.
        let before = file.metadata().ok();
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
        if let Some(before) = before {
            // Mail delivered during the session, past what was scanned, is new whatever the
            // access time says (a RETR after the delivery moved it on).
            let delivered = before.len() > self.scanned_size;
            keep_new_mail_state(&self.path, file, &before, delivered);
        }
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
        let Some(key) = self.unsaved_index.take() else {
            return;
        };
        if let Err(e) = index::save(&self.path, &key, &self.scanned) {
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

/// After UPDATE rewrote the mbox (under the delivery locks): shells, biff and mail readers say
/// "new mail" when an mbox's modification time is after its access time, and the rewrite moved
/// the former on. A mailbox that did not say so before the rewrite (mostly the case: the session
/// read it) must not say so after, as mutt and Dovecot also see to: its access time is set to
/// the new modification time. One that did must keep saying so, and so must one that received mail
/// during the session (`delivered`), which the client has not seen: UPDATE's own reads may have
/// moved its access time up to the rewrite's clock tick (relatime does, after a change of the
/// inode), so it is set a second before the modification time, as mutt does. Needs the owner's
/// rights; without them the times stay as the rewrite left them.
fn keep_new_mail_state(path: &Path, file: &File, before: &fs::Metadata, delivered: bool) {
    use nix::sys::time::TimeSpec;
    let new_mail = |m: &fs::Metadata| (m.mtime(), m.mtime_nsec()) > (m.atime(), m.atime_nsec());
    let had_new_mail = delivered || new_mail(before);
    let Ok(after) = file.metadata() else { return };
    let atime = match (had_new_mail, new_mail(&after)) {
        (true, true) => return,
        (true, false) => TimeSpec::new(after.mtime() - 1, after.mtime_nsec()),
        (false, _) => TimeSpec::new(after.mtime(), after.mtime_nsec()),
    };
    if let Err(e) = nix::sys::stat::futimens(file, &atime, &TimeSpec::UTIME_OMIT) {
        log::debug!("{}: cannot set the access time: {e}", path.display());
    }
}

/// How many scanned messages, from the start, the session does not list: the first when it has the
/// shape of an IMAP state pseudo-message (`ScannedMessage::imap_state`). UW-IMAP (c-client: pine, alpine) and Dovecot keep the folder's IMAP state
/// (UIDVALIDITY, the next UID, keywords) in such a pseudo-message at the top of the mbox, and hide it,
/// as Dovecot's POP3 does; a POP3 client that deleted it would make every IMAP client resynchronise.
/// So it is skipped here, once, and everything else maps the session's indexes past it: it is never
/// listed, served or deleted, and UPDATE, which cuts only deleted messages' byte ranges, keeps it as it
/// is. It stays in `scanned` (and in the index file), so that the checks of what was scanned and the
/// offsets of the rest hold as for any message. Dovecot's `X-IMAPbase:` goes in a real message: listed.
fn listed_from(scanned: &[ScannedMessage]) -> usize {
    usize::from(
        scanned
            .first()
            .is_some_and(|m| m.from_offset == 0 && m.imap_state),
    )
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
