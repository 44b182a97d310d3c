//! The handles of a maildrop's `new/` and `cur/`, opened once at login, and the message files in them:
//! every look-up, open and unlink of a message goes through these handles, and a file another program
//! renamed is found again here by its base name. Not the listing (`list.rs`) nor the naming rules
//! (`names.rs`).

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::dir::Dir;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::Mode;

use super::names::base_of;
use crate::maildrop::MaildropError;
use crate::maildrop::cache::{self, DirStamps, Stamp};

/// How long an open of a message waits for a lease on it to be given up: the kernel breaks a lease
/// whose holder does not answer after `/proc/sys/fs/lease-break-time` seconds (45 by default).
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// How often the open is tried again meanwhile.
const LEASE_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Where messages live. `new/` is listed first so that a file moved to `cur/` while we list is still seen.
pub(super) const MESSAGE_DIRS: [&str; 2] = ["new", "cur"];

/// Handles of `new/` and `cur/` (in `MESSAGE_DIRS` order), `None` for one that is missing.
///
/// Read-only directory handles, so that `fsync` works on them; not `O_NOFOLLOW`: `new/` or `cur/` may
/// be a symlink to a spool elsewhere, and the listing has always followed it. Two descriptors per
/// session, held from login to the end: idle sessions cost two entries in the descriptor table each,
/// and a RETR opens a message with one `openat` of its name, with no path walk (musl's `openat`, unlike
/// its `open`, also sets O_CLOEXEC without a second system call).
pub(super) struct Dirs(
    pub(super) [Option<File>; MESSAGE_DIRS.len()],
    /// Whether messages are opened with `O_NOATIME` (see `open_message`): cleared once the kernel
    /// refused it, so that a maildrop this session does not own costs one `openat` per message, not two.
    AtomicBool,
);

impl Dirs {
    pub(super) fn none() -> Dirs {
        Dirs([None, None], AtomicBool::new(true))
    }

    /// Opens `new/` and `cur/` under `top`, the handle of the maildrop at `root`.
    pub(super) fn open(top: &OwnedFd, root: &Path) -> Result<Dirs, MaildropError> {
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
        Ok(Dirs([open(0)?, open(1)?], AtomicBool::new(true)))
    }

    /// The stamps of `new/` and `cur/`; zero for a missing one. A symlink was followed when they were
    /// opened: deliveries change the directory it points to, never the link, so the link's own stamp
    /// would vouch for a listing forever.
    pub(super) fn stamps(&self, root: &Path) -> Result<DirStamps, MaildropError> {
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
    pub(super) fn at<'f>(&self, file: &'f MessageFile) -> io::Result<(&File, &'f OsStr)> {
        match &self.0[file.dir] {
            Some(dir) => Ok((dir, OsStr::from_bytes(&file.name))),
            // In a directory missing at login: not one of this session's files.
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not in new/ or cur/",
            )),
        }
    }

    /// Makes the unlinks in the directories marked in `unlinked` durable. A deletion lost in a crash
    /// only means a message is downloaded again, so failures are logged, not reported; but the sync
    /// costs little.
    pub(super) fn sync(&self, root: &Path, unlinked: [bool; MESSAGE_DIRS.len()]) {
        for (i, dir) in self.0.iter().enumerate() {
            let Some(dir) = dir.as_ref().filter(|_| unlinked[i]) else {
                continue;
            };
            if let Err(e) = dir.sync_all() {
                log::debug!("{}: fsync: {e}", root.join(MESSAGE_DIRS[i]).display());
            }
        }
    }

    /// Opens message `name` in `dir` (one of these directories) for reading. `O_NOFOLLOW`: a file
    /// swapped for a symlink after listing is refused. `O_NONBLOCK`: one swapped for a FIFO does not
    /// hold the session (and its lock) for ever waiting for a writer; reading a regular file is the
    /// same with it. `O_NOCTTY`: nothing opened here becomes the daemon's controlling terminal.
    ///
    /// With `O_NONBLOCK` an open that meets another's write lease (a file server's) fails with
    /// EWOULDBLOCK instead of waiting for the lease to be given up; the kernel has asked the holder
    /// all the same, so the open is tried again for up to `LEASE_WAIT`, as a blocking open would wait.
    pub(super) fn open_message(&self, dir: &File, name: &OsStr) -> io::Result<File> {
        // The clock is read only once a lease is met: RETR opens a message per command.
        let mut waiting_since = None;
        loop {
            match self.open_message_once(dir, name) {
                Err(e) if e.raw_os_error() == Some(nix::libc::EWOULDBLOCK) => {
                    let since = *waiting_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= LEASE_WAIT {
                        return Err(e);
                    }
                    std::thread::sleep(LEASE_RETRY);
                }
                other => return other,
            }
        }
    }

    /// One attempt of `open_message`, with its flags and `O_NOATIME`: reading a message is no reason to
    /// write its inode. Under `relatime` the first read
    /// after delivery updates the access time, a journal transaction per message, so a first login to
    /// a large maildrop (every message read to be counted) would dirty every inode in it; no Maildir
    /// reader takes anything from a message's access time (flags live in its name). The kernel allows
    /// the flag only to the file's owner (or `CAP_FOWNER`): for anyone else (a shared maildrop read
    /// through group permissions) the open is made again without it, and so are the session's later
    /// ones from the start.
    fn open_message_once(&self, dir: &File, name: &OsStr) -> io::Result<File> {
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        if self.1.load(Ordering::Relaxed) {
            match openat(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
                Err(nix::errno::Errno::EPERM) => self.1.store(false, Ordering::Relaxed),
                other => return Ok(File::from(other?)),
            }
        }
        Ok(File::from(openat(dir, name, flags, Mode::empty())?))
    }
}

/// A message's file: which of `MESSAGE_DIRS` holds it, and its name there. The path is rebuilt only
/// for messages in logs and errors: a session on a 100,000-message maildrop keeps one of these per
/// message, and the maildrop's path and `cur/` in each of them cost more than the names themselves.
pub(super) struct MessageFile {
    /// An index into `MESSAGE_DIRS` (and `Dirs`).
    pub(super) dir: usize,
    pub(super) name: Box<[u8]>,
}

impl MessageFile {
    /// The file of a cache entry, `new/NAME` or `cur/NAME`.
    pub(super) fn from_cache_name(name: &[u8]) -> Option<MessageFile> {
        let cache::Name { dir, file } = cache::Name::from(name);
        Some(MessageFile {
            dir: MESSAGE_DIRS.iter().position(|d| d.as_bytes() == dir)?,
            name: file.into(),
        })
    }

    /// `new/NAME` or `cur/NAME`, as the cache records it.
    pub(super) fn cache_name(&self) -> cache::Name<'_> {
        cache::Name {
            dir: MESSAGE_DIRS[self.dir].as_bytes(),
            file: &self.name,
        }
    }

    /// The part of the name that never changes after delivery; see `base_of`.
    pub(super) fn base(&self) -> &[u8] {
        base_of(&self.name)
    }

    /// `root/new/NAME` or `root/cur/NAME`, for logs and errors.
    pub(super) fn path(&self, root: &Path) -> PathBuf {
        root.join(MESSAGE_DIRS[self.dir])
            .join(OsStr::from_bytes(&self.name))
    }
}

#[cfg(test)]
thread_local! {
    /// How many times this thread read a directory of messages: what UPDATE's searches cost.
    pub(super) static DIR_READS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The entries of `dir` from the start: a new open of it for each reading, since a `Dir` keeps its
/// place, and the handle every pass and look-up shares cannot be rewound without one.
pub(super) fn read_dir(dir: &File) -> io::Result<Dir> {
    #[cfg(test)]
    DIR_READS.with(|n| n.set(n.get() + 1));
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    Ok(Dir::openat(dir, c".", flags, Mode::empty())?)
}

/// How many times `with_relocation` follows a file that moved again after it was found: a mail
/// reader renames a message for each flag it sets, and may set several while we look.
const RELOCATIONS: usize = 3;

/// Runs `op` on the directory and name of `file`; if the file is gone, finds it again by base name in
/// `new/` or `cur/`, stores its new place in `file` and retries, following it up to `RELOCATIONS`
/// times. A file gone for good gives an `Io` error of kind `NotFound`.
pub(super) fn with_relocation<T>(
    root: &Path,
    dirs: &Dirs,
    file: &mut MessageFile,
    mut op: impl FnMut(&File, &OsStr) -> io::Result<T>,
) -> Result<T, MaildropError> {
    let mut run = |file: &MessageFile| dirs.at(file).and_then(|(dir, name)| op(dir, name));
    let mut moves = 0;
    loop {
        match run(file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && moves < RELOCATIONS => {
                match relocate(dirs, file.base()) {
                    Ok(Some(moved)) => {
                        log::debug!(
                            "{}: renamed to {}",
                            file.path(root).display(),
                            moved.path(root).display()
                        );
                        *file = moved;
                        moves += 1;
                    }
                    Ok(None) => return Err(MaildropError::io(&file.path(root), e)),
                    Err(e) => return Err(MaildropError::io(root, e)),
                }
            }
            other => return other.map_err(|e| MaildropError::io(&file.path(root), e)),
        }
    }
}

/// Finds in one reading of `new/` and `cur/` the files whose base names are those of `wanted`
/// (messages that may no longer be where they were listed), and gives each found elsewhere its new
/// place. `inodes[i]` is `wanted[i]`'s inode when listed. Says, for each of `wanted` in order,
/// whether it was found. A file still at its place keeps it, even when another file with its base
/// name (a twin: a copy put back, a redelivery) comes first in the reading; one that moved goes to
/// the entry with its inode, else to the first with its base name. Looking for each alone would
/// read both directories once per message: thousands of times over, when another program removed
/// thousands of messages.
pub(super) fn relocate_all(
    dirs: &Dirs,
    wanted: &mut [&mut MessageFile],
    inodes: &[u64],
) -> io::Result<Vec<bool>> {
    debug_assert_eq!(wanted.len(), inodes.len());
    let by_base: HashMap<Box<[u8]>, usize> = wanted
        .iter()
        .enumerate()
        .map(|(i, file)| (file.base().into(), i))
        .collect();
    let mut at_place = vec![false; wanted.len()];
    // The best place elsewhere so far, and whether it has the listed inode.
    let mut elsewhere: Vec<Option<(MessageFile, bool)>> = (0..wanted.len()).map(|_| None).collect();
    each_entry(dirs, |dir, ino, name| {
        let Some(&i) = by_base.get(base_of(name)) else {
            return false;
        };
        let same_inode = ino == inodes[i];
        if dir == wanted[i].dir && *name == *wanted[i].name {
            at_place[i] = true;
        } else if elsewhere[i]
            .as_ref()
            .is_none_or(|(_, had)| same_inode && !had)
        {
            let file = MessageFile {
                dir,
                name: name.into(),
            };
            elsewhere[i] = Some((file, same_inode));
        }
        false
    })?;
    let found = (wanted.iter_mut().zip(at_place).zip(elsewhere))
        .map(|((file, at_place), elsewhere)| match elsewhere {
            _ if at_place => true,
            Some((moved, _)) => {
                **file = moved;
                true
            }
            None => false,
        })
        .collect();
    Ok(found)
}

/// The elements of `items` at `indexes` (ascending, no repeats), mutably, in that order.
pub(super) fn pick_mut<'a, T>(items: &'a mut [T], indexes: &[usize]) -> Vec<&'a mut T> {
    debug_assert!(indexes.windows(2).all(|w| w[0] < w[1]));
    let mut wanted = indexes.iter().copied().peekable();
    items
        .iter_mut()
        .enumerate()
        .filter_map(|(i, item)| wanted.next_if_eq(&i).map(|_| item))
        .collect()
}

/// The file in `new/` or `cur/` whose base name is `base`, if any.
fn relocate(dirs: &Dirs, base: &[u8]) -> io::Result<Option<MessageFile>> {
    let mut found = None;
    each_entry(dirs, |dir, _, name| {
        // Compared in place: only the name found is copied.
        if base_of(name) == base {
            found = Some(MessageFile {
                dir,
                name: name.into(),
            });
        }
        found.is_some()
    })?;
    Ok(found)
}

/// Shows `visit` each entry of `new/`, then of `cur/` (the index into `MESSAGE_DIRS`, the inode, the
/// name), until it returns true.
fn each_entry(dirs: &Dirs, mut visit: impl FnMut(usize, u64, &[u8]) -> bool) -> io::Result<()> {
    for (i, dir) in dirs.0.iter().enumerate() {
        let Some(dir) = dir else { continue };
        let mut entries = read_dir(dir)?;
        for entry in entries.iter() {
            let entry = entry?;
            if visit(i, entry.ino(), entry.file_name().to_bytes()) {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A maildrop at a temporary path with one message, `cur/NAME`, and the handles of its directories.
    fn one_message(name: &str) -> (tempfile::TempDir, Dirs, MessageFile) {
        let top = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir(top.path().join(sub)).unwrap();
        }
        std::fs::write(top.path().join("cur").join(name), b"hello\n").unwrap();
        let handle = OwnedFd::from(File::open(top.path()).unwrap());
        let dirs = Dirs::open(&handle, top.path()).unwrap();
        let file = MessageFile {
            dir: 1,
            name: name.as_bytes().into(),
        };
        (top, dirs, file)
    }

    /// What a mail reader does between our look-up and our system call: renames the message in `cur/`
    /// to `to` (or out of the maildrop, or back in). The call then finds no file by the old name.
    fn moved<T>(root: &Path, from: &str, to: &str) -> io::Result<T> {
        std::fs::rename(root.join(from), root.join(to)).unwrap();
        Err(io::ErrorKind::NotFound.into())
    }

    #[test]
    fn a_message_renamed_again_after_it_was_found_is_followed() {
        let (top, dirs, mut file) = one_message("1.M1P1.host:2,");
        let root = top.path();
        let mut calls = 0;
        let found = with_relocation(root, &dirs, &mut file, |_, name| {
            calls += 1;
            match calls {
                1 => moved(root, "cur/1.M1P1.host:2,", "cur/1.M1P1.host:2,S"),
                2 => moved(root, "cur/1.M1P1.host:2,S", "cur/1.M1P1.host:2,RS"),
                _ => Ok(name.to_owned()),
            }
        });
        assert_eq!(found.unwrap(), OsStr::new("1.M1P1.host:2,RS"));
        assert_eq!(&*file.name, b"1.M1P1.host:2,RS");
        // Bounded: a file that keeps moving is given up on.
        let mut calls = 0;
        let flags = ["T", "TS", "RTS", "FRTS", "DFRTS"];
        let chased = with_relocation(root, &dirs, &mut file, |_, name| {
            let now = name.to_str().unwrap().to_owned();
            let next = format!("1.M1P1.host:2,{}", flags[calls]);
            calls += 1;
            moved::<()>(root, &format!("cur/{now}"), &format!("cur/{next}"))
        });
        assert!(
            matches!(&chased, Err(MaildropError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound)
        );
        assert_eq!(calls, RELOCATIONS + 1);
    }

    /// A message its reader does not own (a maildrop shared through group or other permissions) still
    /// opens: the kernel refuses `O_NOATIME` to others, and the open is made again without it. Needs
    /// root, to make a file owned by someone else than the reading thread.
    #[test]
    fn a_message_of_another_owner_opens_without_noatime() {
        use nix::unistd::{Uid, setfsuid};
        if !Uid::effective().is_root() {
            eprintln!("a_message_of_another_owner_opens_without_noatime: needs root, skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m"), b"hello\n").unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let handle = File::open(dir.path()).unwrap();
        // In a thread of its own: the file-system uid is per thread. Leaving uid 0 drops CAP_FOWNER,
        // which would otherwise allow `O_NOATIME` on any file.
        let opened = std::thread::spawn(move || {
            setfsuid(Uid::from_raw(65534));
            let direct = openat(
                &handle,
                c"m",
                OFlag::O_RDONLY | OFlag::O_NOATIME,
                Mode::empty(),
            );
            let dirs = Dirs::none();
            let ours = || {
                dirs.open_message(&handle, OsStr::new("m"))
                    .map(|f| f.metadata().unwrap().len())
                    .map_err(|e| e.to_string())
            };
            // Refused, then not asked for again.
            let (first, second) = (ours(), ours());
            (direct.err(), first, second, dirs.1.load(Ordering::Relaxed))
        })
        .join()
        .unwrap();
        assert_eq!(
            opened.0,
            Some(nix::errno::Errno::EPERM),
            "the premise: O_NOATIME refused"
        );
        assert_eq!((opened.1, opened.2), (Ok(6), Ok(6)));
        assert!(!opened.3, "O_NOATIME still asked for after a refusal");
    }
}
