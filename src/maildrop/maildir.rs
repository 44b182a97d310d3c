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

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::proto::body::OctetCounter;

use super::cache::{self, Cache, DirStamps, Stamp};
use super::maildir_uidl::{self, MaildirUidl};
use super::{FileRange, Maildrop, MaildropError, MessageInfo, Tidy, is_valid_uid};
use crate::lock::{SESSION_LOCK_WAIT, SessionLock, TryLock};

/// The lock file, in the maildrop's top directory so that it is never listed as a message.
const LOCK_FILE: &str = ".poplar.lock";
/// `LOCK_FILE` as `openat` takes it (see `Dirs::open` for why not the `&str`).
const LOCK_FILE_C: &CStr = c".poplar.lock";
/// Where messages live. `new/` is listed first so that a file moved to `cur/` while we list is still seen.
const MESSAGE_DIRS: [&str; 2] = ["new", "cur"];
/// Passes over `new/` and `cur/` at most while they change under the listing (see `list`).
const LIST_PASSES: usize = 4;
/// Read size when a message's octets must be counted.
const CHUNK: usize = 64 * 1024;

pub struct Maildir {
    root: PathBuf,
    messages: Vec<MessageInfo>,
    /// `files[i]` is message `i`'s file, updated when found renamed.
    files: Vec<MessageFile>,
    /// `stamps[i]`: message `i`'s file when listed or cached, to catch a file changed in place.
    stamps: Vec<Stamp>,
    /// `new/` and `cur/` as opened at login: what the session lists, reads and unlinks in.
    dirs: Dirs,
    /// `None` only when the maildrop does not exist yet: there is nothing to protect.
    _lock: Option<SessionLock>,
}

impl Maildir {
    /// Locks the maildrop at `path` and lists its messages, with base-name unique-ids.
    pub fn open(path: &Path) -> Result<Maildir, MaildropError> {
        Maildir::open_with(path, MaildirUidl::Name)
    }

    /// Locks the maildrop at `path` and lists its messages, with unique-ids from `uidl`. A maildrop
    /// that does not exist yet (a new user with no mail) is empty; nothing is created except the lock
    /// file in an existing maildrop.
    pub fn open_with(path: &Path, uidl: MaildirUidl) -> Result<Maildir, MaildropError> {
        let mut md = Maildir::open_listed(path)?;
        if uidl == MaildirUidl::Dovecot && !md.messages.is_empty() {
            md.dovecot_ids();
        }
        Ok(md)
    }

    /// Replaces base-name unique-ids with those `dovecot-uidlist` gives, read afresh: the size cache
    /// holds no ids, so a file Dovecot changed since the last login is always seen.
    ///
    /// Never inlined: its frame stays off the stack of sessions that do not call it.
    #[inline(never)]
    fn dovecot_ids(&mut self) {
        let Some(list) = maildir_uidl::load(&self.root) else {
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
        drop(top);
        // Before listing: a change made while we list must show as a change next time. And the clock
        // before the stamps: they may vouch for the listing only if they were settled when it began; a
        // login that took longer than `SETTLE_SECS` (counting a large backlog) would otherwise record
        // the stamp of a directory changed just before it listed, which a delivery in the same clock
        // tick, missed by the listing, leaves as it is.
        let began = unix_now();
        let listed = dirs.stamps(path)?;
        let cache = Cache::load(path);
        if cache.dirs.is_some_and(|cached| cached == listed) {
            let listing = from_cache(&cache);
            return Ok(Maildir::listed(path, listing, dirs, Some(lock)));
        }
        let listing = Maildir::list_afresh(path, &dirs, listed, began, &cache)?;
        Ok(Maildir::listed(path, listing, dirs, Some(lock)))
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
        let found = list(path, dirs, listed)?;
        let mut messages = Vec::with_capacity(found.len());
        let mut files = Vec::with_capacity(found.len());
        let mut stamps = Vec::with_capacity(found.len());
        let mut buf = Vec::new();
        let mut counted = 0usize;
        for mut found in found {
            let base = found.base();
            let octets = match virtual_size(base).or_else(|| cache.get(base, found.stamp)) {
                Some(n) => n,
                None => {
                    // The read buffer is allocated only when some message must really be read.
                    buf.resize(CHUNK, 0);
                    counted += 1;
                    let count = |dir: &File, name: &OsStr| count_at(dir, name, &mut buf);
                    match with_relocation(path, dirs, &mut found.file, count) {
                        Ok(n) => n,
                        // Deleted by another program since we listed it: it is simply not in this session.
                        Err(MaildropError::Io { source, .. })
                            if source.kind() == io::ErrorKind::NotFound =>
                        {
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            messages.push(MessageInfo {
                octets,
                uid: uid_of(found.base()),
            });
            files.push(found.file);
            stamps.push(found.stamp);
        }
        // Rewritten only when it no longer matches the maildrop: new messages counted, old ones gone, or
        // directories changed (renamed files have new names).
        let settled = Some(listed).filter(|d| d.settled(began));
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
        (messages, files, stamps): Listing,
        dirs: Dirs,
        lock: Option<SessionLock>,
    ) -> Maildir {
        Maildir {
            root: root.to_path_buf(),
            messages,
            files,
            stamps,
            dirs,
            _lock: lock,
        }
    }
}

/// Handles of `new/` and `cur/` (in `MESSAGE_DIRS` order), `None` for one that is missing.
///
/// Read-only directory handles, so that `fsync` works on them; not `O_NOFOLLOW`: `new/` or `cur/` may
/// be a symlink to a spool elsewhere, and the listing has always followed it. Two descriptors per
/// session, held from login to the end: idle sessions cost two entries in the descriptor table each,
/// and a RETR opens a message with one `openat` of its name, with no path walk (musl's `openat`, unlike
/// its `open`, also sets O_CLOEXEC without a second system call).
struct Dirs([Option<File>; MESSAGE_DIRS.len()]);

impl Dirs {
    fn none() -> Dirs {
        Dirs([None, None])
    }

    /// Opens `new/` and `cur/` under `top`, the handle of the maildrop at `root`.
    fn open(top: &OwnedFd, root: &Path) -> Result<Dirs, MaildropError> {
        // The names as C strings: nix copies a `&str` into a 1 KiB stack buffer to add the NUL. Inlined
        // into the login's frames, such buffers sat under every call the listing makes, and the deepest
        // stack page a login touches stays resident for the whole session, idle or not.
        const NAMES: [&CStr; MESSAGE_DIRS.len()] = [c"new", c"cur"];
        let open = |i: usize| {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            match openat(top, NAMES[i], flags, Mode::empty()) {
                Ok(fd) => Ok(Some(File::from(fd))),
                // A maildrop without `new/` or `cur/` simply has no messages there.
                Err(nix::errno::Errno::ENOENT) => Ok(None),
                Err(e) => Err(MaildropError::io(&root.join(MESSAGE_DIRS[i]), e.into())),
            }
        };
        Ok(Dirs([open(0)?, open(1)?]))
    }

    /// The stamps of `new/` and `cur/`; zero for a missing one. A symlink was followed when they were
    /// opened: deliveries change the directory it points to, never the link, so the link's own stamp
    /// would vouch for a listing forever.
    fn stamps(&self, root: &Path) -> Result<DirStamps, MaildropError> {
        let stamp = |i: usize| match &self.0[i] {
            Some(dir) => dir
                .metadata()
                .map(|meta| Stamp::of(&meta))
                .map_err(|e| MaildropError::io(&root.join(MESSAGE_DIRS[i]), e)),
            None => Ok(Stamp::default()),
        };
        Ok(DirStamps {
            new: stamp(0)?,
            cur: stamp(1)?,
        })
    }

    /// The directory handle and file name of a message's `file`.
    fn at<'f>(&self, file: &'f MessageFile) -> io::Result<(&File, &'f OsStr)> {
        match &self.0[file.dir] {
            Some(dir) => Ok((dir, OsStr::from_bytes(&file.name))),
            // In a directory missing at login: not one of this session's files.
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in new/ or cur/",
            )),
        }
    }
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

/// A message's file: which of `MESSAGE_DIRS` holds it, and its name there. The path is rebuilt only
/// for messages in logs and errors: a session on a 100,000-message maildrop keeps one of these per
/// message, and the maildrop's path and `cur/` in each of them cost more than the names themselves.
struct MessageFile {
    /// An index into `MESSAGE_DIRS` (and `Dirs`).
    dir: usize,
    name: Box<[u8]>,
}

impl MessageFile {
    /// The file of a cache entry, `new/NAME` or `cur/NAME`.
    fn from_cache_name(name: &[u8]) -> Option<MessageFile> {
        let (sub, file) = name.split_at(memchr::memchr(b'/', name)?);
        let dir = MESSAGE_DIRS.iter().position(|d| d.as_bytes() == sub)?;
        Some(MessageFile {
            dir,
            name: file[1..].into(),
        })
    }

    /// `new/NAME` or `cur/NAME`, as the cache records it.
    fn cache_name(&self) -> cache::Name<'_> {
        cache::Name {
            dir: MESSAGE_DIRS[self.dir].as_bytes(),
            file: &self.name,
        }
    }

    /// The part of the name that never changes after delivery; see `base_of`.
    fn base(&self) -> &[u8] {
        base_of(&self.name)
    }

    /// `root/new/NAME` or `root/cur/NAME`, for logs and errors.
    fn path(&self, root: &Path) -> PathBuf {
        root.join(MESSAGE_DIRS[self.dir])
            .join(OsStr::from_bytes(&self.name))
    }
}

impl Maildrop for Maildir {
    fn messages(&self) -> &[MessageInfo] {
        &self.messages
    }

    fn open_message(&mut self, index: usize) -> Result<Box<dyn Read + '_>, MaildropError> {
        let message = self
            .files
            .get_mut(index)
            .ok_or_else(|| no_such_message(&self.root, index))?;
        let file = with_relocation(&self.root, &self.dirs, message, open_at)?;
        let meta = file
            .metadata()
            .map_err(|e| MaildropError::io(&message.path(&self.root), e))?;
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
        let mut first_err = None;
        let mut unlinked = [false; MESSAGE_DIRS.len()];
        for &index in deleted {
            let Some(file) = self.files.get_mut(index) else {
                first_err.get_or_insert(no_such_message(&self.root, index));
                continue;
            };
            let unlink =
                |dir: &File, name: &OsStr| Ok(unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?);
            match with_relocation(&self.root, &self.dirs, file, unlink) {
                // Only the directories that lost a file are synced.
                Ok(()) => unlinked[file.dir] = true,
                Err(MaildropError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound =>
                {
                    log::debug!(
                        "{}: already gone, counted as deleted",
                        file.path(&self.root).display()
                    );
                }
                Err(e) => {
                    log::debug!("expunge: {e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        self.dirs.sync(&self.root, unlinked);
        first_err.map_or(Ok(Tidy::nothing()), Err)
    }
}

/// One listed file before it is sized.
struct Found {
    stamp: Stamp,
    file: MessageFile,
    /// The length of `file`'s base name: sorting a large maildrop compares base names millions of
    /// times, and finding each one's `:` at every comparison made the sorts of a 100,000-message
    /// listing about three times slower. Relocation cannot change it: a file is found again by its
    /// base name.
    base_len: usize,
}

impl Found {
    fn new(stamp: Stamp, file: MessageFile) -> Found {
        let base_len = file.base().len();
        Found {
            stamp,
            file,
            base_len,
        }
    }

    fn base(&self) -> &[u8] {
        &self.file.name[..self.base_len]
    }
}

/// The regular, non-hidden files of `new/` and `cur/` in delivery order, one per base name.
///
/// `readdir` may skip a file renamed while its directory is read: on ext4 a flag change in `cur/` (an
/// IMAP server marking a message seen) moves the entry to another place in the hash order, and a
/// listing can pass both places at the wrong moments. So a pass during which `new/` or `cur/` changed
/// is repeated (up to `LIST_PASSES` in all), and a file an earlier pass found and the last one did not
/// is kept if it is still there: a message is left out only if it is really gone. `before`: the
/// directories' stamps taken just before (the login has them already).
fn list(root: &Path, dirs: &Dirs, mut before: DirStamps) -> Result<Vec<Found>, MaildropError> {
    let mut found = Vec::new();
    let mut earlier = Vec::new();
    for pass in 1..=LIST_PASSES {
        for i in 0..MESSAGE_DIRS.len() {
            list_dir(root, dirs, i, &mut found)?;
        }
        let after = dirs.stamps(root)?;
        if pass == LIST_PASSES || after == before {
            break;
        }
        earlier.append(&mut found);
        before = after;
    }
    if !earlier.is_empty() {
        let seen: std::collections::HashSet<&[u8]> = found.iter().map(|f| f.base()).collect();
        earlier.retain(|f| !seen.contains(f.base()));
        earlier.sort_unstable_by(|a, b| a.base().cmp(b.base()));
        earlier.dedup_by(|dup, kept| dup.base() == kept.base());
        for mut missed in earlier {
            match with_relocation(root, dirs, &mut missed.file, stat_at) {
                Ok(st) if is_file(&st) => {
                    log::debug!(
                        "{}: missed by a listing, found again",
                        missed.file.path(root).display()
                    );
                    missed.stamp = Stamp::of_stat(&st);
                    found.push(missed);
                }
                Ok(_) => {}
                Err(MaildropError::Io { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    // A file renamed from `new/` to `cur/` while we listed appears twice; keep one. Base names are
    // unique in a sound maildrop, and unique-ids must be (RFC 1939 section 7), so any other twin goes too.
    found.sort_unstable_by(|a, b| a.base().cmp(b.base()));
    found.dedup_by(|dup, kept| {
        let same = dup.base() == kept.base();
        if same {
            log::debug!(
                "{}: same base name as {}, listed once",
                dup.file.path(root).display(),
                kept.file.path(root).display()
            );
        }
        same
    });
    // Delivery order. The name's leading timestamp is a convention that delivery agents follow in
    // different ways (and some not at all), while the mtime is set when the message is written to
    // `tmp/` and kept by every later rename, so it orders deliveries from any agent and stays put when
    // an IMAP client moves or flags a message. Within one second the base name breaks ties, so message
    // numbers are the same on every listing.
    found.sort_unstable_by(|a, b| (a.stamp.mtime, a.base()).cmp(&(b.stamp.mtime, b.base())));
    Ok(found)
}

/// Lists directory `i` of `MESSAGE_DIRS` into `found`.
fn list_dir(
    root: &Path,
    dirs: &Dirs,
    i: usize,
    found: &mut Vec<Found>,
) -> Result<(), MaildropError> {
    let Some(dir) = &dirs.0[i] else {
        return Ok(());
    };
    let sub = root.join(MESSAGE_DIRS[i]);
    let mut entries = read_dir(dir).map_err(|e| MaildropError::io(&sub, e))?;
    for entry in entries.iter() {
        let entry = entry.map_err(|e| MaildropError::io(&sub, e.into()))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let mut file = MessageFile {
            dir: i,
            name: name.as_bytes().into(),
        };
        // Not following symlinks: a symlink is not a message, and following one could read outside the
        // maildrop. `fstatat` on the directory's handle, without a path walk.
        // The entry's own C string: a `&OsStr` would be copied into nix's 1 KiB stack buffer, at the
        // deepest point of a login (see `Dirs::open`).
        let meta = match stat_at(dir, entry.file_name()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                with_relocation(root, dirs, &mut file, stat_at)
            }
            other => other.map_err(|e| MaildropError::io(&sub.join(name), e)),
        };
        match meta {
            Ok(st) if is_file(&st) => {
                let stamp = Stamp::of_stat(&st);
                found.push(Found::new(stamp, file));
            }
            Ok(_) => log::debug!("{}: not a regular file, skipped", file.path(root).display()),
            Err(MaildropError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The entries of `dir` from the start: a new open of it for each reading, since a `Dir` keeps its
/// place, and the handle every pass and look-up shares cannot be rewound without one.
fn read_dir(dir: &File) -> io::Result<Dir> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(Dir::openat(dir, c".", flags, Mode::empty())?)
}

fn is_file(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
}

/// `name` in `dir`, not followed if a symlink.
fn stat_at<P: ?Sized + nix::NixPath>(dir: &File, name: &P) -> io::Result<FileStat> {
    Ok(fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?)
}

/// Runs `op` on the directory and name of `file`; if the file is gone, finds it again by base name in
/// `new/` or `cur/`, stores its new place in `file` and retries once. A file gone for good gives an
/// `Io` error of kind `NotFound`.
fn with_relocation<T>(
    root: &Path,
    dirs: &Dirs,
    file: &mut MessageFile,
    mut op: impl FnMut(&File, &OsStr) -> io::Result<T>,
) -> Result<T, MaildropError> {
    let mut run = |file: &MessageFile| dirs.at(file).and_then(|(dir, name)| op(dir, name));
    match run(file) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match relocate(dirs, file.base()) {
            Ok(Some(moved)) => {
                log::debug!(
                    "{}: renamed to {}",
                    file.path(root).display(),
                    moved.path(root).display()
                );
                *file = moved;
                run(file).map_err(|e| MaildropError::io(&file.path(root), e))
            }
            Ok(None) => Err(MaildropError::io(&file.path(root), e)),
            Err(e) => Err(MaildropError::io(root, e)),
        },
        other => other.map_err(|e| MaildropError::io(&file.path(root), e)),
    }
}

/// The file in `new/` or `cur/` whose base name is `base`, if any.
fn relocate(dirs: &Dirs, base: &[u8]) -> io::Result<Option<MessageFile>> {
    for (i, dir) in dirs.0.iter().enumerate() {
        let Some(dir) = dir else { continue };
        let mut entries = read_dir(dir)?;
        for entry in entries.iter() {
            let entry = entry?;
            // Compared in place: only the name found is copied.
            let name = entry.file_name().to_bytes();
            if base_of(name) == base {
                return Ok(Some(MessageFile {
                    dir: i,
                    name: name.into(),
                }));
            }
        }
    }
    Ok(None)
}

/// Opens a message for reading. `O_NOFOLLOW`: a file swapped for a symlink after listing is refused.
fn open_at(dir: &File, name: &OsStr) -> io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(openat(dir, name, flags, Mode::empty())?))
}

fn count_at(dir: &File, name: &OsStr, buf: &mut [u8]) -> io::Result<u64> {
    count_octets(&mut open_at(dir, name)?, buf)
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

/// The UIDL and the Dovecot `,W=` size that a Maildir file name gives. Pure; for the fuzz target.
pub fn name_info(name: &[u8]) -> (Box<str>, Option<u64>) {
    let base = base_of(name);
    (uid_of(base), virtual_size(base))
}

/// The part of a file name before the Maildir info separator `:`; it never changes after delivery.
pub(crate) fn base_of(name: &[u8]) -> &[u8] {
    memchr::memchr(b':', name).map_or(name, |i| &name[..i])
}

/// Dovecot's `,W=<n>` field: the message's size with CRLF line ends, as POP3 counts it, saving a read.
fn virtual_size(base: &[u8]) -> Option<u64> {
    let digits = base
        .split(|&b| b == b',')
        .skip(1)
        .find_map(|field| field.strip_prefix(b"W="))?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The base name when it is a valid unique-id (RFC 1939 section 7), which keeps UIDL equal to what
/// other Maildir POP3 servers announce; otherwise its MD5 in hex, which is valid and as stable.
fn uid_of(base: &[u8]) -> Box<str> {
    if is_valid_uid(base) {
        // All ASCII, so always UTF-8.
        if let Ok(text) = std::str::from_utf8(base) {
            return text.into();
        }
    }
    let digest = Md5::digest(base);
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest.iter() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex.into()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn no_such_message(root: &Path, index: usize) -> MaildropError {
    let msg = format!("no message at index {index}");
    MaildropError::io(root, io::Error::new(io::ErrorKind::InvalidInput, msg))
}

impl Dirs {
    /// Makes the unlinks in the directories marked in `unlinked` durable. A deletion lost in a crash
    /// only means a message is downloaded again, so failures are logged, not reported; but the sync
    /// costs little.
    fn sync(&self, root: &Path, unlinked: [bool; MESSAGE_DIRS.len()]) {
        for (i, dir) in self.0.iter().enumerate() {
            let Some(dir) = dir.as_ref().filter(|_| unlinked[i]) else {
                continue;
            };
            if let Err(e) = dir.sync_all() {
                log::debug!("{}: fsync: {e}", root.join(MESSAGE_DIRS[i]).display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildrop::MAX_UID;
    use std::fs;
    use std::time::{Duration, SystemTime};

    /// A maildrop with `new/`, `cur/` and `tmp/` in a temporary directory.
    fn maildir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
        }
        dir
    }

    /// Writes `root/rel` with `body` and an mtime of `secs` after the epoch.
    fn put(root: &Path, rel: &str, body: &[u8], secs: u64) {
        let path = root.join(rel);
        fs::write(&path, body).unwrap();
        let file = File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    /// `new/` and `cur/` of the maildrop at `root`, as a login opens them.
    fn dirs_of(root: &Path) -> Dirs {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let top = nix::fcntl::open(root, flags, Mode::empty()).unwrap();
        Dirs::open(&top, root).unwrap()
    }

    fn uids(md: &Maildir) -> Vec<&str> {
        md.messages().iter().map(|m| &*m.uid).collect()
    }

    fn read_all(md: &mut Maildir, index: usize) -> Vec<u8> {
        let mut out = Vec::new();
        md.open_message(index)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn counts_octets_in_any_chunk_size() {
        let cases: [(&[u8], u64); 9] = [
            (b"", 0),
            (b"\n", 2),
            (b"a\nb\n", 6),
            (b"a\r\nb\r\n", 6),
            (b"a\nb", 6),
            (b"a\r\nb", 6),
            (b"a\r\n\n", 5),
            // A lone final CR is a cut-short CRLF: the encoder adds only the LF.
            (b"\r", 2),
            (b"\n\n\r\n\r\r\n", 9),
        ];
        for (input, want) in cases {
            for size in [1, 2, 3, CHUNK] {
                let mut buf = vec![0; size];
                let got = count_octets(&mut &input[..], &mut buf).unwrap();
                assert_eq!(got, want, "{input:?} in chunks of {size}");
            }
        }
    }

    #[test]
    fn reads_dovecot_virtual_size() {
        let cases: [(&[u8], Option<u64>); 8] = [
            (b"1.M1P1.host,S=10,W=12", Some(12)),
            (b"1.M1P1.host,W=0,S=10", Some(0)),
            (b"1.M1P1.host,S=10", None),
            (b"1.M1P1.host,W=", None),
            (b"1.M1P1.host,W=12x", None),
            (b"1.M1P1.host,W=+12", None),
            (b"1.M1P1.host,W=99999999999999999999999", None),
            (b"W=12", None),
        ];
        for (base, want) in cases {
            assert_eq!(
                virtual_size(base),
                want,
                "{}",
                String::from_utf8_lossy(base)
            );
        }
    }

    #[test]
    fn names_unique_ids() {
        let long = "x".repeat(MAX_UID + 1);
        let longest = "x".repeat(MAX_UID);
        let cases: [(&[u8], &str); 6] = [
            (b"1700000000.M1P2.host", "1700000000.M1P2.host"),
            (longest.as_bytes(), &longest),
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"hello world", "5eb63bbbe01eeed093cb22bb8f5acdc3"),
            (long.as_bytes(), "522966f2ff9ab1543c945d48ee25045b"),
            (b"caf\xc3\xa9", "07117fe4a1ebd544965dc19573183da2"),
        ];
        for (base, want) in cases {
            let uid = uid_of(base);
            assert_eq!(&*uid, want, "{}", String::from_utf8_lossy(base));
            assert!(
                (1..=MAX_UID).contains(&uid.len())
                    && uid.bytes().all(|b| (0x21..=0x7e).contains(&b))
            );
        }
    }

    #[test]
    fn lists_in_delivery_order() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/b", b"", 100);
        put(root, "cur/a:2,S", b"", 200);
        put(root, "new/c", b"", 100);
        put(root, "cur/0:2,", b"", 300);
        let md = Maildir::open(root).unwrap();
        assert_eq!(uids(&md), ["b", "c", "a", "0"]);
    }

    #[test]
    fn sizes_messages() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/1.lf", b"a\nb\n", 1);
        put(root, "new/2.crlf", b"a\r\nb\r\n", 2);
        put(root, "new/3.open", b"a\nb", 3);
        put(root, "new/4.dovecot,S=4,W=1000", b"a\nb\n", 4);
        put(root, "cur/5.bad,W=1k:2,S", b"abc\n", 5);
        put(root, "new/6.empty", b"", 6);
        let md = Maildir::open(root).unwrap();
        let octets: Vec<u64> = md.messages().iter().map(|m| m.octets).collect();
        assert_eq!(octets, [6, 6, 6, 1000, 5, 0]);
        assert_eq!(uids(&md)[4], "5.bad,W=1k");
    }

    #[test]
    fn ignores_tmp_hidden_and_special_files() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/m1", b"x\n", 1);
        put(root, "tmp/m2", b"x\n", 2);
        put(root, "new/.m3", b"x\n", 3);
        put(root, "cur/.m4:2,S", b"x\n", 4);
        fs::create_dir(root.join("cur/subdir")).unwrap();
        std::os::unix::fs::symlink(root.join("new/m1"), root.join("cur/link")).unwrap();
        put(root, "m5", b"x\n", 5);
        let md = Maildir::open(root).unwrap();
        assert_eq!(uids(&md), ["m1"]);
    }

    #[test]
    fn missing_maildrop_is_empty_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Maildir");
        let md = Maildir::open(&root).unwrap();
        assert!(md.messages().is_empty());
        assert!(!root.exists());
        drop(Box::new(md).expunge(&[]).unwrap());
        assert!(!root.exists());
    }

    #[test]
    fn missing_subdirectories_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("cur")).unwrap();
        put(dir.path(), "cur/m:2,", b"x\n", 1);
        let md = Maildir::open(dir.path()).unwrap();
        assert_eq!(uids(&md), ["m"]);
        assert!(!dir.path().join("new").exists());
    }

    #[test]
    fn a_file_where_the_maildrop_should_be_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Maildir");
        fs::write(&root, b"").unwrap();
        assert!(matches!(
            Maildir::open(&root),
            Err(MaildropError::Io { .. })
        ));
    }

    #[test]
    fn second_open_is_in_use_until_the_first_is_dropped() {
        let dir = maildir();
        let first = Maildir::open(dir.path()).unwrap();
        assert!(matches!(
            Maildir::open(dir.path()),
            Err(MaildropError::InUse { .. })
        ));
        drop(first);
        let again = Maildir::open(dir.path()).unwrap();
        assert!(matches!(
            Maildir::open(dir.path()),
            Err(MaildropError::InUse { .. })
        ));
        drop(Box::new(again).expunge(&[]).unwrap());
        Maildir::open(dir.path()).unwrap();
    }

    #[test]
    fn a_login_waits_briefly_for_a_session_that_is_ending() {
        let dir = maildir();
        let first = Maildir::open(dir.path()).unwrap();
        let ending = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
        });
        let started = std::time::Instant::now();
        Maildir::open(dir.path()).expect("the session lock is waited for");
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
        ending.join().unwrap();
    }

    #[test]
    fn opens_messages_even_after_a_rename() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/x", b"hello\n", 1);
        put(root, "cur/y:2,", b"world\n", 2);
        let mut md = Maildir::open(root).unwrap();
        fs::rename(root.join("new/x"), root.join("cur/x:2,S")).unwrap();
        fs::rename(root.join("cur/y:2,"), root.join("cur/y:2,RS")).unwrap();
        assert_eq!(read_all(&mut md, 0), b"hello\n");
        assert_eq!(read_all(&mut md, 1), b"world\n");
        assert_eq!(read_all(&mut md, 0), b"hello\n");
        fs::remove_file(root.join("cur/x:2,S")).unwrap();
        let err = md.open_message(0).err().unwrap();
        assert!(
            matches!(&err, MaildropError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(md.open_message(2).is_err());
    }

    #[test]
    fn message_files_round_trip_through_cache_names() {
        for name in [&b"new/x"[..], b"cur/1.M2P3.host,S=5:2,S", b"cur/a b:2,"] {
            let file = MessageFile::from_cache_name(name).unwrap();
            let written = file.cache_name();
            assert_eq!([written.dir, b"/", written.file].concat(), name);
        }
        assert_eq!(
            MessageFile::from_cache_name(b"cur/x:2,S").unwrap().base(),
            b"x"
        );
        for bad in [&b"tmp/x"[..], b"x", b"newx", b"/x", b""] {
            assert!(MessageFile::from_cache_name(bad).is_none());
        }
    }

    #[test]
    fn a_message_moved_to_cur_is_found_there_and_stays_found() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/x", b"hello\n", 1);
        let mut md = Maildir::open(root).unwrap();
        assert_eq!(md.files[0].path(root), root.join("new/x"));
        fs::rename(root.join("new/x"), root.join("cur/x:2,S")).unwrap();
        assert_eq!(read_all(&mut md, 0), b"hello\n");
        assert_eq!(md.files[0].path(root), root.join("cur/x:2,S"));
        // Found in cur/: UPDATE unlinks it there.
        drop(Box::new(md).expunge(&[0]).unwrap());
        assert!(left(root).is_empty());
    }

    #[test]
    fn flag_changes_during_the_listing_hide_no_message() {
        // An IMAP server flagging messages (renames inside cur/) while we list: on ext4 a plain
        // readdir pass skips some of them now and then.
        const COUNT: usize = 600;
        let dir = maildir();
        let root = dir.path().to_path_buf();
        for i in 0..COUNT {
            put(&root, &format!("cur/m{i}:2,S"), b"x\n", i as u64);
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let flags = ["S", "RS", "FS", ""];
                // Until the listings are done; bounded too, should a listing fail and never say so.
                let deadline = std::time::Instant::now() + Duration::from_secs(120);
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && n < 50_000_000
                    && std::time::Instant::now() < deadline
                {
                    let i = n.wrapping_mul(7919) % COUNT;
                    for (j, from) in flags.iter().enumerate() {
                        let to = flags[(j + 1) % flags.len()];
                        let old = root.join(format!("cur/m{i}:2,{from}"));
                        if fs::rename(&old, root.join(format!("cur/m{i}:2,{to}"))).is_ok() {
                            break;
                        }
                    }
                    n += 1;
                }
            });
            let mut short = Vec::new();
            for _ in 0..40 {
                let dirs = dirs_of(&root);
                let listed = list(&root, &dirs, dirs.stamps(&root).unwrap())
                    .unwrap()
                    .len();
                if listed != COUNT {
                    short.push(listed);
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            // The passes are bounded, so under renames this relentless (thousands a second, far more
            // than any IMAP client makes) a listing may still miss one now and then: a message then
            // waits for the next session, nothing is lost. Without the repeated passes about a third
            // of these listings came up short.
            assert!(
                short.len() <= 2 && short.iter().all(|&n| n + 1 >= COUNT),
                "listings short of {COUNT}: {short:?}"
            );
        });
    }

    #[test]
    fn a_message_truncated_while_read_is_an_error_not_its_end() {
        let dir = maildir();
        let root = dir.path();
        put(root, "cur/x:2,", &[b'a'; 10_000], 1);
        let mut md = Maildir::open(root).unwrap();
        let mut reader = md.open_message(0).unwrap();
        let mut head = [0u8; 100];
        reader.read_exact(&mut head).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(root.join("cur/x:2,"))
            .unwrap()
            .set_len(5_000)
            .unwrap();
        let mut rest = Vec::new();
        let err = reader.read_to_end(&mut rest).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(rest.len(), 4_900);
        drop(reader);
        // Read whole, it ends at its size, with no read past it.
        assert_eq!(read_all(&mut md, 0).len(), 5_000);
    }

    #[test]
    fn a_message_swapped_for_a_symlink_is_refused() {
        let dir = maildir();
        let root = dir.path();
        put(root, "cur/x:2,S", b"hello\n", 1);
        fs::write(dir.path().join("secret"), b"not mail\n").unwrap();
        let mut md = Maildir::open(root).unwrap();
        assert_eq!(read_all(&mut md, 0), b"hello\n");
        fs::remove_file(root.join("cur/x:2,S")).unwrap();
        std::os::unix::fs::symlink(root.join("secret"), root.join("cur/x:2,S")).unwrap();
        assert!(md.open_message(0).is_err());
    }

    /// The message files left in `new/` and `cur/` of `root`, sorted.
    fn left(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = MESSAGE_DIRS
            .iter()
            .flat_map(|sub| fs::read_dir(root.join(sub)).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_maildrop_moved_away_is_the_one_read_and_expunged() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("Maildir");
        let moved = parent.path().join("moved");
        let names = ["cur/x:2,S", "cur/y:2,S", "new/z", "cur/w:2,"];
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            put(&root, name, name.as_bytes(), i as u64 + 1);
        }
        let mut md = Maildir::open(&root).unwrap();
        // Another maildrop (a restored copy, say) now sits at the path, with the same names; this
        // session holds the lock of the one it opened.
        fs::rename(&root, &moved).unwrap();
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for name in names {
            put(&root, name, b"someone else\n", 9);
        }
        // In the moved maildrop an IMAP client flags y and moves z to cur/.
        fs::rename(moved.join("cur/y:2,S"), moved.join("cur/y:2,RS")).unwrap();
        fs::rename(moved.join("new/z"), moved.join("cur/z:2,S")).unwrap();
        assert_eq!(read_all(&mut md, 0), b"cur/x:2,S");
        assert_eq!(read_all(&mut md, 1), b"cur/y:2,S");
        drop(Box::new(md).expunge(&[0, 1, 2]).unwrap());
        assert_eq!(left(&moved), ["w:2,"]);
        assert_eq!(left(&root), ["w:2,", "x:2,S", "y:2,S", "z"]);
    }

    #[test]
    fn expunges_exactly_the_deleted_messages() {
        let dir = maildir();
        let root = dir.path();
        for (i, name) in ["new/a", "new/b", "cur/c:2,S", "cur/d:2,", "new/e"]
            .iter()
            .enumerate()
        {
            put(root, name, b"x\n", i as u64 + 1);
        }
        let md = Maildir::open(root).unwrap();
        assert_eq!(uids(&md), ["a", "b", "c", "d", "e"]);
        put(root, "new/late", b"x\n", 0);
        fs::rename(root.join("new/b"), root.join("cur/b:2,S")).unwrap();
        fs::remove_file(root.join("new/e")).unwrap();
        drop(Box::new(md).expunge(&[1, 2, 4]).unwrap());
        let md = Maildir::open(root).unwrap();
        assert_eq!(uids(&md), ["late", "a", "d"]);
    }

    #[test]
    fn expunge_keeps_going_and_reports_the_first_error() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/a", b"x\n", 1);
        put(root, "new/b", b"x\n", 2);
        let md = Maildir::open(root).unwrap();
        assert!(Box::new(md).expunge(&[0, 7, 1]).is_err());
        let md = Maildir::open(root).unwrap();
        assert!(md.messages().is_empty());
    }

    fn base_name(path: &Path) -> &[u8] {
        base_of(path.file_name().unwrap().as_bytes())
    }

    /// Rewrites the cache entry of `base` to claim `octets`, with a valid checksum.
    fn forge_cache(root: &Path, base: &[u8], octets: u64) {
        let text = fs::read(root.join(cache::CACHE_FILE)).unwrap();
        let text = String::from_utf8(text).unwrap();
        let mut entries = Vec::new();
        for line in text.lines().skip(2).filter(|l| !l.starts_with("end ")) {
            let f: Vec<&str> = line.splitn(6, ' ').collect();
            let n = |i: usize| f[i].parse::<i64>().unwrap();
            let stamp = Stamp {
                ino: n(0) as u64,
                size: n(1) as u64,
                mtime: n(2),
                mtime_nsec: n(3),
            };
            let o = if base_name(Path::new(f[5])) == base {
                octets
            } else {
                n(4) as u64
            };
            entries.push((f[5].as_bytes().to_vec(), stamp, o));
        }
        let dirs = Cache::load(root).dirs;
        cache::save(root, dirs, entries.iter().map(|(b, s, o)| (&b[..], *s, *o))).unwrap();
    }

    fn sizes(root: &Path) -> Vec<u64> {
        Maildir::open(root)
            .unwrap()
            .messages()
            .iter()
            .map(|m| m.octets)
            .collect()
    }

    #[test]
    fn second_open_uses_the_size_cache() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/a", b"a\n", 1);
        put(root, "cur/b:2,S", b"bb\n", 2);
        assert_eq!(sizes(root), [3, 4]);
        assert!(root.join(cache::CACHE_FILE).exists());
        // A forged entry with a matching stamp is served: proof that the file was not read again.
        forge_cache(root, b"a", 99);
        assert_eq!(sizes(root), [99, 4]);
        // A flag change (rename) keeps the inode, size and mtime: still a hit.
        fs::rename(root.join("cur/b:2,S"), root.join("cur/b:2,RS")).unwrap();
        forge_cache(root, b"b", 77);
        assert_eq!(sizes(root), [99, 77]);
    }

    #[test]
    fn a_changed_or_damaged_cache_is_never_served() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/a", b"a\n", 1);
        put(root, "new/b", b"b\n", 2);
        assert_eq!(sizes(root), [3, 3]);
        forge_cache(root, b"a", 99);
        // The message rewritten (new size, new mtime): counted again.
        put(root, "new/a", b"a\nlonger\n", 1);
        assert_eq!(sizes(root), [11, 3]);
        // A message replaced by another file with the same name, size and mtime: a new inode (both
        // files exist at once, so the number cannot be reused).
        forge_cache(root, b"b", 99);
        put(root, "tmp/b", b"c\n", 2);
        fs::rename(root.join("tmp/b"), root.join("new/b")).unwrap();
        assert_eq!(sizes(root), [11, 3]);
        // Garbage in the cache file: rebuilt.
        forge_cache(root, b"b", 99);
        let mut text = fs::read(root.join(cache::CACHE_FILE)).unwrap();
        let last = text.len() - 2;
        text[last] ^= 1;
        fs::write(root.join(cache::CACHE_FILE), text).unwrap();
        assert_eq!(sizes(root), [11, 3]);
        // Messages gone: the cache shrinks with the maildrop.
        fs::remove_file(root.join("new/a")).unwrap();
        assert_eq!(sizes(root), [3]);
        let text = fs::read_to_string(root.join(cache::CACHE_FILE)).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
    }

    /// Dates `new/` and `cur/` back, as if the last delivery were long ago.
    fn settle(root: &Path) {
        for sub in MESSAGE_DIRS {
            File::open(root.join(sub))
                .unwrap()
                .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(100))
                .unwrap();
        }
    }

    #[test]
    fn a_delivery_into_a_symlinked_subdirectory_is_listed() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("Maildir");
        for sub in ["cur", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        // `new/` lives elsewhere, as with a spool the delivery agent writes to.
        let spool = parent.path().join("spool-new");
        fs::create_dir(&spool).unwrap();
        std::os::unix::fs::symlink(&spool, root.join("new")).unwrap();
        // The link itself dated back, as one made long ago: settled, so a listing is vouched for.
        let old = nix::sys::time::TimeSpec::new(100, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &root.join("new"),
            &old,
            &old,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        put(&root, "new/a", b"a\n", 1);
        settle(&root);
        drop(Maildir::open(&root).unwrap());
        // A delivery through the link changes the directory it points to, not the link.
        put(&root, "new/b", b"b\n", 2);
        assert_eq!(uids(&Maildir::open(&root).unwrap()), ["a", "b"]);
    }

    /// Takes (or with `F_UNLCK` gives up) a lease on `file`; false where the file system has none.
    fn lease(file: &File, kind: nix::libc::c_int) -> bool {
        use nix::sys::signal::{SigHandler, Signal, signal};
        use std::os::fd::AsRawFd;
        // SAFETY: ignoring a signal installs no handler. SIGIO tells the holder that its lease is being
        // broken; by default it would end the tests, and nothing else here uses it.
        unsafe { signal(Signal::SIGIO, SigHandler::SigIgn) }.unwrap();
        // SAFETY: fcntl with integer arguments on a descriptor that `file` keeps open.
        unsafe { nix::libc::fcntl(file.as_raw_fd(), nix::libc::F_SETLEASE, kind) == 0 }
    }

    #[test]
    fn a_listing_vouches_only_for_directories_settled_when_it_began() {
        let dir = maildir();
        let root = dir.path().to_path_buf();
        put(&root, "new/a", b"a\n", 1);
        // A delivery a moment ago.
        let changed = SystemTime::now();
        for sub in MESSAGE_DIRS {
            File::open(root.join(sub))
                .unwrap()
                .set_modified(changed)
                .unwrap();
        }
        // The login takes longer than SETTLE_SECS: counting `a` waits for a write lease on it to be
        // given up (a file server's, say), after the directories were listed.
        let held = File::options()
            .write(true)
            .open(root.join("new/a"))
            .unwrap();
        if !lease(&held, nix::libc::F_WRLCK) {
            eprintln!("skipped: no leases on this file system");
            return;
        }
        let login = {
            let root = root.clone();
            std::thread::spawn(move || {
                let md = Maildir::open(&root).unwrap();
                uids(&md).iter().map(|u| u.to_string()).collect::<Vec<_>>()
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        // Another delivery in the same clock tick as the first (file system clocks are coarse), after
        // the listing read new/: its stamp is unchanged.
        put(&root, "tmp/b", b"b\n", 2);
        fs::rename(root.join("tmp/b"), root.join("new/b")).unwrap();
        File::open(root.join("new"))
            .unwrap()
            .set_modified(changed)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2_200));
        assert!(lease(&held, nix::libc::F_UNLCK));
        assert_eq!(login.join().unwrap(), ["a"]);
        assert_eq!(uids(&Maildir::open(&root).unwrap()), ["a", "b"]);
    }

    #[test]
    fn unique_ids_from_the_cache_are_those_of_the_listing() {
        let dir = maildir();
        let root = dir.path();
        let long = "x".repeat(MAX_UID + 1);
        put(root, "new/a", b"a\n", 1);
        put(root, "cur/b:2,S", b"b\n", 2);
        put(root, &format!("cur/{long}:2,S"), b"c\n", 3);
        put(root, "cur/with space:2,", b"d\n", 4);
        let listed: Vec<String> = uids(&Maildir::open(root).unwrap())
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(&listed[..2], ["a", "b"]);
        assert_eq!(listed[2].len(), 32, "an over-long base name gives its MD5");
        assert_eq!(listed[3].len(), 32, "a space gives the MD5");
        settle(root);
        drop(Maildir::open(root).unwrap());
        assert!(
            Cache::load(root).dirs.is_some(),
            "the next login lists from the cache"
        );
        let cached: Vec<String> = uids(&Maildir::open(root).unwrap())
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(cached, listed);
    }

    #[test]
    fn dovecot_ids_follow_the_uidlist_through_the_cache() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/a", b"a\n", 1);
        put(root, "cur/b:2,S", b"b\n", 2);
        put(root, "cur/c:2,", b"c\n", 3);
        let uidlist = root.join(maildir_uidl::UIDLIST_FILE);
        fs::write(&uidlist, "3 V16 N3 Gx\n1 :a\n2 Psaved :b:2,S\n").unwrap();
        let dovecot = |root: &Path| -> Vec<String> {
            let md = Maildir::open_with(root, MaildirUidl::Dovecot).unwrap();
            uids(&md).iter().map(|u| u.to_string()).collect()
        };
        assert_eq!(dovecot(root), ["0000000100000010", "saved", "c"]);
        assert_eq!(uids(&Maildir::open(root).unwrap()), ["a", "b", "c"]);
        settle(root);
        drop(Maildir::open(root).unwrap());
        assert!(
            Cache::load(root).dirs.is_some(),
            "the next login uses the cache"
        );
        // The directories did not change, the uidlist did: the change is seen all the same.
        fs::write(&uidlist, "3 V16 N4\n1 :a\n2 Psaved :b\n3 :c\n").unwrap();
        assert_eq!(
            dovecot(root),
            ["0000000100000010", "saved", "0000000300000010"]
        );
        assert_eq!(uids(&Maildir::open(root).unwrap()), ["a", "b", "c"]);
        // A broken or missing file leaves base-name ids, never an error.
        fs::write(&uidlist, "garbage\n1 :a\n").unwrap();
        assert_eq!(dovecot(root), ["a", "b", "c"]);
        // Nor one anybody could have written.
        fs::write(&uidlist, "3 V16 N4\n1 :a\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&uidlist, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(dovecot(root), ["a", "b", "c"]);
        fs::remove_file(&uidlist).unwrap();
        assert_eq!(dovecot(root), ["a", "b", "c"]);
        // Not through a symlink.
        let elsewhere = root.join("elsewhere");
        fs::write(&elsewhere, "3 V16 N4\n1 :a\n").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &uidlist).unwrap();
        assert_eq!(dovecot(root), ["a", "b", "c"]);
    }

    #[test]
    fn unchanged_directories_are_not_listed_again() {
        let dir = maildir();
        let root = dir.path();
        put(root, "new/a", b"a\n", 1);
        put(root, "cur/b:2,S", b"bb\n", 2);
        assert_eq!(sizes(root), [3, 4]);
        // Directories changed less than SETTLE_SECS ago are not vouched for.
        assert_eq!(Cache::load(root).dirs, None);
        settle(root);
        assert_eq!(sizes(root), [3, 4]);
        assert!(Cache::load(root).dirs.is_some());
        // A file renamed behind the directory's back keeps its cached name: proof that nothing was listed.
        // Opening it finds it by its base name.
        forge_cache(root, b"a", 99);
        fs::rename(root.join("cur/b:2,S"), root.join("cur/b:2,RS")).unwrap();
        settle(root);
        let mut md = Maildir::open(root).unwrap();
        assert_eq!(md.files[1].path(root), root.join("cur/b:2,S"));
        assert_eq!(read_all(&mut md, 1), b"bb\n");
        assert_eq!(md.files[1].path(root), root.join("cur/b:2,RS"));
        drop(md);
        // A delivery changes new/: listed again (the forged entry keeps its matching stamp).
        put(root, "new/c", b"c\n", 3);
        assert_eq!(sizes(root), [99, 4, 3]);
        settle(root);
        assert_eq!(sizes(root), [99, 4, 3]);
        // A message changed in place (Maildir forbids it) leaves the directories alone: it is listed
        // from the cache, served as it is now, and its opening drops the cache.
        put(root, "new/c", b"c\nlonger\n", 3);
        let mut md = Maildir::open(root).unwrap();
        assert_eq!(md.messages()[2].octets, 3);
        assert_eq!(read_all(&mut md, 2), b"c\nlonger\n");
        drop(md);
        assert!(!root.join(cache::CACHE_FILE).exists());
        assert_eq!(sizes(root), [3, 4, 11]);
    }
}
