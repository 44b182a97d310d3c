//! The Maildir backend: messages from `new/` and `cur/` (never `tmp/`), in delivery order, under an
//! exclusive `flock` on a lock file in the maildrop. Owns listing, sizing and naming messages, opening
//! them and unlinking the deleted ones; the wire encoding of bodies is `proto::body`'s job.
//!
//! Message sizes are remembered in the size cache (`cache.rs`), so only messages new since the last
//! session are read at login; and when neither `new/` nor `cur/` changed since the cache was written
//! (their stamps, see `cache.rs`), the listing comes from the cache too, without a `readdir` or a `stat`.
//! Each message is then checked when it is opened: a file changed in place drops the cache.
//!
//! Other programs (an IMAP server, a mail reader) may rename files while we hold our lock: moving
//! `new/x` to `cur/x:2,S` or changing the flags after `:2,`. The part of the name before the first
//! `:` (the "base name") never changes, so every file operation that finds its file gone looks it
//! up again by base name before giving up.
//!
//! Messages are never reached through the maildrop's path: at login the lock, `new/` and `cur/` are
//! opened under one handle of its directory, and every listing, look-up, read and unlink goes through
//! the handles of `new/` and `cur/`. So a session lists, reads and expunges the maildrop it locked,
//! even if its path is renamed and names another directory meanwhile. (The size cache is still found
//! by path; it checks itself against what it describes.)
//!
//! The naming rules are `names`'s, the listing `list`'s, the handles of `new/` and `cur/` and the
//! relocation of renamed files `dirs`'s, the Maildir++ quota file `quota`'s.

mod dirs;
mod list;
mod names;
mod quota;
#[cfg(test)]
mod testing;

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::proto::body::OctetCounter;

use super::cache::{self, Cache, DirStamps, Stamp};
use super::maildir_uidl::{self, MaildirUidl};
use super::uidl_format::UidlFormat;
use super::{FileRange, Maildrop, MaildropError, MessageInfo, Tidy};
use crate::lock::{SESSION_LOCK_WAIT, SessionLock, TryLock};
use dirs::{Dirs, MESSAGE_DIRS, MessageFile, with_relocation};
use list::{Found, list};
pub(crate) use names::base_of;
pub use names::{name_info, unique_ids};
use names::{plausible_wire_size, uid_of, virtual_size};

/// The lock file, in the maildrop's top directory so that it is never listed as a message.
const LOCK_FILE: &str = ".poplar.lock";
/// `LOCK_FILE` as `openat` takes it (see `Dirs::open` for why not the `&str`).
const LOCK_FILE_C: &CStr = c".poplar.lock";
/// Read size when a message's octets must be counted.
const CHUNK: usize = 64 * 1024;

/// How many messages one UPDATE looks for a second time when the first search of `new/` and `cur/`
/// did not find them (see `Maildir::expunge_moved`): the race that covers is a rename during one
/// directory read, a few at a time, while each search reads both directories whole.
const SECOND_SEARCHES: usize = 8;

pub struct Maildir {
    root: PathBuf,
    messages: Vec<MessageInfo>,
    /// `files[i]` is message `i`'s file, updated when found renamed.
    files: Vec<MessageFile>,
    /// `stamps[i]`: message `i`'s file when listed or cached, to catch a file changed in place.
    stamps: Vec<Stamp>,
    /// `new/` and `cur/` as opened at login: what the session lists, reads and unlinks in.
    dirs: Dirs,
    /// Their stamps before the last reading that found every message again (see `search_moved`).
    searched: Option<DirStamps>,
    /// The maildrop directory's device and inode at login: `maildirsize` is written only in it.
    top_id: Option<(u64, u64)>,
    /// `None` only when the maildrop does not exist yet: there is nothing to protect.
    _lock: Option<SessionLock>,
}

impl Maildir {
    /// Locks the maildrop at `path` and lists its messages, with base-name unique-ids.
    pub fn open(path: &Path) -> Result<Maildir, MaildropError> {
        Maildir::open_with(path, MaildirUidl::Name, &UidlFormat::default())
    }

    /// Locks the maildrop at `path` and lists its messages, with unique-ids from `uidl` (and, for
    /// Dovecot's, in `format`). A maildrop that does not exist yet (a new user with no mail) is empty;
    /// nothing is created except the lock file in an existing maildrop.
    pub fn open_with(
        path: &Path,
        uidl: MaildirUidl,
        format: &UidlFormat,
    ) -> Result<Maildir, MaildropError> {
        let mut md = Maildir::open_listed(path)?;
        if uidl == MaildirUidl::Dovecot && !md.messages.is_empty() {
            md.dovecot_ids(format);
        }
        Ok(md)
    }

    /// Replaces base-name unique-ids with those `dovecot-uidlist` gives, read afresh: the size cache
    /// holds no ids, so a file Dovecot changed since the last login is always seen.
    ///
    /// Never inlined: its frame stays off the stack of sessions that do not call it.
    #[inline(never)]
    fn dovecot_ids(&mut self, format: &UidlFormat) {
        let Some(list) = maildir_uidl::load(&self.root, format) else {
            return;
        };
        let bases: Vec<&[u8]> = self.files.iter().map(MessageFile::base).collect();
        maildir_uidl::apply(&list, &mut self.messages, &bases);
    }

    /// The locking and listing of `open_with`, with base-name unique-ids.
    fn open_listed(path: &Path) -> Result<Maildir, MaildropError> {
        // The lock and the message directories are opened under one handle of the maildrop, so they
        // belong to the same one even if its path is renamed meanwhile. `O_PATH`: only search
        // permission is needed, as for a path. The path itself may lead through symlinks (a home
        // directory elsewhere), so it is followed.
        // A C string of our own: nix would copy the path into a 1 KiB buffer in this frame, which is
        // on the stack under every call of the login's listing (see `Dirs::open`).
        let c_path =
            CString::new(path.as_os_str().as_bytes()).map_err(|_| MaildropError::BadPath {
                reason: format!("{}: a NUL in the path", path.display()),
            })?;
        let top = match nix::fcntl::open(
            c_path.as_c_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(top) => top,
            // The maildrop is missing: no mail yet.
            Err(nix::errno::Errno::ENOENT) => {
                super::warn_if_directory_missing(path);
                return Ok(Maildir::listed(
                    path,
                    Listing::default(),
                    Dirs::none(),
                    None,
                ));
            }
            Err(e) => return Err(MaildropError::io(path, e.into())),
        };
        let lock = match SessionLock::acquire_within_at(&top, LOCK_FILE_C, SESSION_LOCK_WAIT) {
            Ok(TryLock::Acquired(lock)) => lock,
            Ok(TryLock::Busy) => {
                return Err(MaildropError::InUse {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(MaildropError::io(&path.join(LOCK_FILE), e)),
        };
        let dirs = Dirs::open(&top, path)?;
        let top_stat =
            nix::sys::stat::fstat(&top).map_err(|e| MaildropError::io(path, e.into()))?;
        let (owner, top_id) = (top_stat.st_uid, (top_stat.st_dev, top_stat.st_ino));
        drop(top);
        // Before listing: a change made while we list must show as a change next time. And the clock
        // before the stamps: they may vouch for the listing only if they were settled when it began; a
        // login that took longer than `SETTLE_SECS` (counting a large backlog) would otherwise record
        // the stamp of a directory changed just before it listed, which a delivery in the same clock
        // tick, missed by the listing, leaves as it is.
        let began = unix_now();
        let listed = dirs.stamps(path)?;
        let cache = Cache::load(path, owner);
        let listing = if cache.dirs.is_some_and(|cached| cached == listed) {
            from_cache(&cache)
        } else {
            Maildir::list_afresh(path, &dirs, listed, began, &cache)?
        };
        let mut maildir = Maildir::listed(path, listing, dirs, Some(lock));
        maildir.top_id = Some(top_id);
        Ok(maildir)
    }

    /// Lists the maildrop's directories (the cache did not vouch for the last listing), counts the
    /// messages the cache does not know and saves the cache when it changed. Not inlined: its frame is
    /// then on the stack only while it runs, not under the rest of the login.
    #[inline(never)]
    fn list_afresh(
        path: &Path,
        dirs: &Dirs,
        listed: DirStamps,
        began: i64,
        cache: &Cache,
    ) -> Result<Listing, MaildropError> {
        let mut found = list(path, dirs, listed)?;
        found.retain(|f| {
            let fits = f.stamp.size <= MAX_MESSAGE_FILE;
            if !fits {
                log::warn!(
                    "{}: {} octets, more than the {MAX_MESSAGE_FILE} a message may have: not listed",
                    f.file.path(path).display(),
                    f.stamp.size
                );
            }
            fits
        });
        let mut sizes: Vec<Option<u64>> = found
            .iter()
            .map(|f| {
                let named =
                    virtual_size(f.base()).filter(|&w| plausible_wire_size(w, f.stamp.size));
                named.or_else(|| cache.get(f.base(), f.stamp))
            })
            .collect();
        let deferred = defer_past_budget(&mut found, &mut sizes, |f| f.stamp.size, COUNT_BUDGET);
        if deferred > 0 {
            log::warn!(
                "{}: {} left for the next login: counting them would read more than \
                 {COUNT_BUDGET} octets",
                path.display(),
                crate::proto::reply::Tally(deferred as u64, "new message")
            );
        }
        let counted = sizes.iter().filter(|s| s.is_none()).count();
        count_sizes(path, dirs, &mut found, &mut sizes, counted)?;
        // A message left out (gone, unreadable for now, or deferred) must not stay out for as long as
        // the directories do not change: the cache then does not vouch for this listing.
        let all_sized = deferred == 0 && sizes.iter().all(Option::is_some);
        let mut messages = Vec::with_capacity(found.len());
        let mut files = Vec::with_capacity(found.len());
        let mut stamps = Vec::with_capacity(found.len());
        for (found, size) in found.into_iter().zip(sizes) {
            // Deleted by another program since we listed it: it is simply not in this session.
            let Some(octets) = size else { continue };
            messages.push(MessageInfo {
                octets,
                uid: uid_of(found.base()),
            });
            files.push(found.file);
            stamps.push(found.stamp);
        }
        // Rewritten only when it no longer matches the maildrop: new messages counted, old ones gone, or
        // directories changed (renamed files have new names).
        let settled = Some(listed).filter(|d| all_sized && d.settled(began));
        if counted > 0 || cache.len() != messages.len() || cache.dirs != settled {
            let entries = files
                .iter()
                .zip(&stamps)
                .zip(&messages)
                .map(|((f, s), m)| (f.cache_name(), *s, m.octets));
            if let Err(e) = cache::save(path, settled, entries) {
                log::debug!("{}: cannot save the size cache: {e}", path.display());
            }
        }
        Ok((messages, files, stamps))
    }

    fn listed(
        root: &Path,
        (mut messages, files, stamps): Listing,
        dirs: Dirs,
        lock: Option<SessionLock>,
    ) -> Maildir {
        names::unique_ids(&mut messages, files.iter().map(MessageFile::base));
        Maildir {
            root: root.to_path_buf(),
            messages,
            files,
            stamps,
            dirs,
            searched: None,
            top_id: None,
            _lock: lock,
        }
    }
}

/// The largest message file listed: 4 GiB, far past what mail systems deliver (their limits are tens
/// of megabytes). A larger one is left out, with a warning: a login counts every new message's
/// octets, and a sparse file of terabytes would hold it, a core and the maildrop's lock for hours.
pub const MAX_MESSAGE_FILE: u64 = 4 << 30;

/// The most a login reads to count new messages' octets: 64 GiB, a few minutes from a disk. Messages
/// past it (in delivery order) are left out of the session and counted by later logins, the counted
/// ones being cached: many large files (sparse ones of 4 GiB each cost nothing to make) cannot hold
/// one login, a core and the maildrop's lock for hours.
const COUNT_BUDGET: u64 = 64 << 30;

/// Removes from `found` (and `sizes`) the messages still to count once counting those before them,
/// in order, would read more than `budget` octets; returns how many. Those already sized stay.
/// `file_size` gives a message's file size.
fn defer_past_budget<T>(
    found: &mut Vec<T>,
    sizes: &mut Vec<Option<u64>>,
    file_size: impl Fn(&T) -> u64,
    budget: u64,
) -> usize {
    let mut to_read = 0u64;
    let keep: Vec<bool> = found
        .iter()
        .zip(sizes.iter())
        .map(|(f, size)| {
            size.is_some() || {
                to_read = to_read.saturating_add(file_size(f));
                to_read <= budget
            }
        })
        .collect();
    let deferred = keep.iter().filter(|&&k| !k).count();
    if deferred > 0 {
        let mut kept = keep.iter();
        found.retain(|_| *kept.next().expect("one per message"));
        let mut kept = keep.iter();
        sizes.retain(|_| *kept.next().expect("one per message"));
    }
    deferred
}

/// From this many messages to count on, a login counts them in two threads at once: a first login to a
/// large maildrop (mail moved in from elsewhere) reads every message, and the system calls of two files
/// at once run on two cores.
const COUNT_SPLIT_MIN: usize = 1000;

/// Counts the octets of each listed message whose size is `None` (`missing` of them), into `sizes`; one
/// that is gone by then stays `None`.
fn count_sizes(
    root: &Path,
    dirs: &Dirs,
    found: &mut [Found],
    sizes: &mut [Option<u64>],
    missing: usize,
) -> Result<(), MaildropError> {
    if missing < COUNT_SPLIT_MIN {
        return count_into(root, dirs, found, sizes);
    }
    let cut = half_to_count(sizes, missing);
    let (found_head, found_tail) = found.split_at_mut(cut);
    let (sizes_head, sizes_tail) = sizes.split_at_mut(cut);
    let split = std::thread::scope(|s| {
        let tail = std::thread::Builder::new()
            .name("maildir-count".into())
            .stack_size(crate::maildrop::HELPER_STACK)
            .spawn_scoped(s, || count_into(root, dirs, found_tail, sizes_tail));
        // No thread to be had (a process or memory limit): this thread counts them all.
        let Ok(tail) = tail else { return None };
        let head = count_into(root, dirs, found_head, sizes_head);
        let tail = tail
            .join()
            .unwrap_or_else(|panicked| std::panic::resume_unwind(panicked));
        Some(head.and(tail))
    });
    split.unwrap_or_else(|| count_into(root, dirs, found, sizes))
}

/// Where to cut `sizes` (`missing` of them `None`) so that each side has half of the messages to
/// count: at the first of the second half.
fn half_to_count(sizes: &[Option<u64>], missing: usize) -> usize {
    sizes
        .iter()
        .enumerate()
        .filter(|(_, size)| size.is_none())
        .nth(missing / 2)
        .map_or(sizes.len(), |(i, _)| i)
}

/// Counts, one after the other, the messages of `found` whose entry in `sizes` is `None`. One gone
/// since the listing stays `None`, and so does one that cannot be read (see `unreadable`).
fn count_into(
    root: &Path,
    dirs: &Dirs,
    found: &mut [Found],
    sizes: &mut [Option<u64>],
) -> Result<(), MaildropError> {
    // The read buffer is allocated only when some message must really be read.
    let mut buf = Vec::new();
    let mut count = |dir: &File, name: &OsStr| {
        buf.resize(CHUNK, 0);
        count_octets(&mut dirs.open_message(dir, name)?, &mut buf)
    };
    let mut moved = Vec::new();
    for (i, (found, size)) in found.iter_mut().zip(sizes.iter_mut()).enumerate() {
        if size.is_some() {
            continue;
        }
        match dirs
            .at(&found.file)
            .and_then(|(dir, name)| count(dir, name))
        {
            Ok(n) => *size = Some(n),
            Err(e) if e.kind() == io::ErrorKind::NotFound => moved.push(i),
            Err(e) => unreadable(MaildropError::io(&found.file.path(root), e))?,
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    // Renamed or removed since the listing (an IMAP client at work): the renamed are found in one
    // reading of the directories, not one each.
    let inodes: Vec<u64> = moved.iter().map(|&i| found[i].stamp.ino).collect();
    let mut files: Vec<&mut MessageFile> = dirs::pick_mut(found, &moved)
        .into_iter()
        .map(|f| &mut f.file)
        .collect();
    let again =
        dirs::relocate_all(dirs, &mut files, &inodes).map_err(|e| MaildropError::io(root, e))?;
    for ((file, i), again) in files.into_iter().zip(moved).zip(again) {
        if !again {
            continue;
        }
        match with_relocation(root, dirs, file, &mut count) {
            Ok(n) => sizes[i] = Some(n),
            Err(MaildropError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => unreadable(e)?,
        }
    }
    Ok(())
}

/// A listed message that cannot be read at login (another user's file of mode 0600 delivered into
/// the maildrop, a bad block, a lease never given up) is left out of the session with a warning,
/// not deleted, and is listed again once it can be read: one such file must not lock its user out
/// of all their mail. What says the whole maildrop is out of reach (no descriptors or memory left)
/// still fails the login.
fn unreadable(e: MaildropError) -> Result<(), MaildropError> {
    let MaildropError::Io { source, .. } = &e else {
        return Err(e);
    };
    let systemic = matches!(
        source.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOMEM)
    );
    if systemic {
        return Err(e);
    }
    log::warn!("{e}; message left out of this session");
    Ok(())
}

/// Seconds since the epoch, as `DirStamps::settled` takes them.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Messages, their files and the files' stamps, in delivery order.
type Listing = (Vec<MessageInfo>, Vec<MessageFile>, Vec<Stamp>);

/// The listing as cached: messages, files and stamps, in the cached (delivery) order.
fn from_cache(cache: &Cache) -> Listing {
    let mut messages = Vec::with_capacity(cache.len());
    let mut files = Vec::with_capacity(cache.len());
    let mut stamps = Vec::with_capacity(cache.len());
    for (name, entry) in cache.entries() {
        // `Cache::load` keeps only `new/NAME` and `cur/NAME` entries, so none is skipped here.
        let Some(file) = MessageFile::from_cache_name(name) else {
            continue;
        };
        messages.push(MessageInfo {
            octets: entry.octets,
            uid: uid_of(file.base()),
        });
        files.push(file);
        stamps.push(entry.stamp);
    }
    (messages, files, stamps)
}

impl Maildrop for Maildir {
    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError> {
        if index >= self.files.len() {
            return Err(no_such_message(&self.root, index));
        }
        let at_listed_place = (self.dirs.at(&self.files[index]))
            .and_then(|(dir, name)| self.dirs.open_message(dir, name));
        let file = match at_listed_place {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.search_moved(index)? => {
                let open = |dir: &File, name: &OsStr| self.dirs.open_message(dir, name);
                with_relocation(&self.root, &self.dirs, &mut self.files[index], open)?
            }
            opened => {
                opened.map_err(|e| MaildropError::io(&self.files[index].path(&self.root), e))?
            }
        };
        let message = &self.files[index];
        let meta = file
            .metadata()
            .map_err(|e| MaildropError::io(&message.path(&self.root), e))?;
        if !meta.is_file() {
            return Err(MaildropError::Changed {
                path: message.path(&self.root),
                reason: "no longer a regular file".into(),
            });
        }
        // Maildir messages never change once delivered; one that did may have another size than listed.
        // It is served as it is now, and the cache goes, so the next login counts and lists afresh.
        if Stamp::of(&meta) != self.stamps[index] {
            log::debug!(
                "{}: changed since it was listed; size cache dropped",
                message.path(&self.root).display()
            );
            cache::remove(&self.root);
        }
        // Read no further than the size just taken: the reader then ends without one more `read`
        // system call to find the end of the file.
        Ok(Box::new(FileRange::new(file, 0, meta.len())))
    }

    /// Unlinks every deleted message, even after a failure, and reports the first real failure: a
    /// message left behind is downloaded again next time, which is better than deleting too little.
    fn expunge(mut self: Box<Self>, deleted: &[usize]) -> Result<Tidy, MaildropError> {
        // Unlinked under the handles of `new/` and `cur/` opened at login: the files of the maildrop
        // this session listed and locked, even if its path was renamed and now names another one.
        let mut outcome = Unlinked::default();
        let mut moved = Vec::new();
        for &index in deleted {
            let Some(file) = self.files.get(index) else {
                outcome.failed(no_such_message(&self.root, index));
                continue;
            };
            let listed = self.stamps.get(index).copied();
            match (self.dirs.at(file)).and_then(|(dir, name)| unlink_listed(dir, name, listed)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => moved.push(index),
                done => {
                    let done = done.map_err(|e| MaildropError::io(&file.path(&self.root), e));
                    outcome.record(&self.root, file, listed, done);
                }
            }
        }
        if !moved.is_empty() {
            self.expunge_moved(&moved, &mut outcome);
        }
        self.dirs.sync(&self.root, outcome.dirs);
        quota::record_removal(
            &self.root,
            self.top_id,
            outcome.freed_bytes,
            outcome.freed_count,
        );
        outcome.first_err.map_or(Ok(Tidy::nothing()), Err)
    }
}

impl Maildir {
    /// UPDATE's part for the deleted messages no longer where they were listed (renamed by a mail
    /// reader, or removed): one reading of `new/` and `cur/` finds those renamed, and only those it
    /// did not find are looked for again, each alone, while `SECOND_SEARCHES` lasts.
    fn expunge_moved(&mut self, moved: &[usize], outcome: &mut Unlinked) {
        let mut moved = moved.to_vec();
        moved.sort_unstable();
        moved.dedup();
        let inodes: Vec<u64> = moved.iter().map(|&i| self.listed_inode(i)).collect();
        let mut files = dirs::pick_mut(&mut self.files, &moved);
        let found = match dirs::relocate_all(&self.dirs, &mut files, &inodes) {
            Ok(found) => found,
            Err(e) => return outcome.failed(MaildropError::io(&self.root, e)),
        };
        let mut second_searches = SECOND_SEARCHES;
        for (&index, found) in moved.iter().zip(found) {
            let listed = self.stamps.get(index).copied();
            let unlink = |dir: &File, name: &OsStr| unlink_listed(dir, name, listed);
            let file = &mut self.files[index];
            let done = if found || second_searches > 0 {
                second_searches -= usize::from(!found);
                with_relocation(&self.root, &self.dirs, file, unlink)
            } else {
                Err(MaildropError::io(
                    &file.path(&self.root),
                    io::ErrorKind::NotFound.into(),
                ))
            };
            outcome.record(&self.root, file, listed, done);
        }
    }

    /// Message `index`'s inode when listed (0, which no file has, if unknown).
    fn listed_inode(&self, index: usize) -> u64 {
        self.stamps.get(index).map_or(0, |stamp| stamp.ino)
    }

    /// RETR or TOP found message `index` gone from where it was listed: finds every listed message
    /// again in one reading of `new/` and `cur/` (renamed ones get their new names), and says whether
    /// this one was among them. Not again while the directories stay as they were at the last such
    /// reading, if that was settled (see `DirStamps::settled`): the messages it did not find are
    /// gone, and a session that fetches a folder another program just emptied reads the directories
    /// once, not twice per message. Read a second time when they changed during the reading (which
    /// may miss a file renamed meanwhile), or are too recent for a reading to stand for them.
    fn search_moved(&mut self, index: usize) -> Result<bool, MaildropError> {
        let mut before = self.dirs.stamps(&self.root)?;
        if self.searched == Some(before) {
            return Ok(false);
        }
        for _ in 0..2 {
            let inodes: Vec<u64> = (0..self.files.len())
                .map(|i| self.listed_inode(i))
                .collect();
            let mut all: Vec<&mut MessageFile> = self.files.iter_mut().collect();
            let found = dirs::relocate_all(&self.dirs, &mut all, &inodes)
                .map_err(|e| MaildropError::io(&self.root, e))?;
            if found[index] {
                return Ok(true);
            }
            // Remembered only when nothing changed during the reading, and the stamps are older
            // than the clock's tick on any file system: a rename in the tick of the stamps may
            // leave them as they were.
            let after = self.dirs.stamps(&self.root)?;
            if after == before && before.settled(unix_now()) {
                self.searched = Some(before);
                return Ok(false);
            }
            before = after;
        }
        Ok(false)
    }
}

/// What UPDATE's unlinks came to: which directories lost a file (only those are synced), and the
/// first real failure.
#[derive(Default)]
struct Unlinked {
    dirs: [bool; MESSAGE_DIRS.len()],
    first_err: Option<MaildropError>,
    /// What the unlinked files held, for `maildirsize`.
    freed_bytes: u64,
    freed_count: u64,
}

impl Unlinked {
    fn failed(&mut self, e: MaildropError) {
        log::debug!("expunge: {e}");
        self.first_err.get_or_insert(e);
    }

    /// Notes the outcome of unlinking `file` (as `listed`): `Ok(true)` unlinked, `Ok(false)` not the
    /// file listed.
    fn record(
        &mut self,
        root: &Path,
        file: &MessageFile,
        listed: Option<Stamp>,
        done: Result<bool, MaildropError>,
    ) {
        match done {
            Ok(true) => {
                self.dirs[file.dir] = true;
                self.freed_bytes += listed.map_or(0, |stamp| stamp.size);
                self.freed_count += 1;
            }
            // Another file has its name now (or the message changed in place, which Maildir
            // forbids): left, and the cache goes, as when RETR finds one, so that the next login
            // lists afresh.
            Ok(false) => {
                log::info!(
                    "{}: not the file listed (replaced or changed since); left",
                    file.path(root).display()
                );
                cache::remove(root);
            }
            Err(MaildropError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                log::debug!(
                    "{}: already gone, counted as deleted",
                    file.path(root).display()
                );
            }
            Err(e) => self.failed(e),
        }
    }
}

/// Unlinks `name` in `dir` if it is still the file listed, by its stamp (inode, size, modification
/// time), and says whether it did. Renames (a flag changed, `new/` to `cur/`) keep all three, while
/// another file with the name (one that took it after the listed one went, even on its freed inode,
/// or a copy with the same base name found by relocation) is another message, which the client never
/// saw: that one stays.
fn unlink_listed(dir: &File, name: &OsStr, listed: Option<Stamp>) -> io::Result<bool> {
    use nix::fcntl::AtFlags;
    let now = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if listed.is_some_and(|stamp| stamp != Stamp::of_stat(&now)) {
        return Ok(false);
    }
    unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
    Ok(true)
}

/// Octets as RETR sends them (RFC 1939 section 3: "lines end with a CRLF pair"): every byte, plus one
/// for each LF without a CR before it, plus the CRLF added to a last line without one. Byte-stuffing is
/// not counted: RFC 1939 section 5 sizes the message, not its transmission. This is the rule of
/// `proto::body`'s encoder, kept here so listing does not depend on the codec.
fn count_octets(r: &mut impl Read, buf: &mut [u8]) -> io::Result<u64> {
    // The encoder's own counter, so LIST can never disagree with what RETR sends.
    let mut counter = OctetCounter::new();
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(counter.finish()),
            Ok(n) => counter.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn no_such_message(root: &Path, index: usize) -> MaildropError {
    let msg = format!("no message at index {index}");
    MaildropError::io(root, io::Error::new(io::ErrorKind::InvalidInput, msg))
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
