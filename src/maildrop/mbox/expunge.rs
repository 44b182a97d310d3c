//! Crash-safe removal of messages from an mbox, and recovery after a crash. The caller holds the
//! delivery agents' locks and supplies the check that the file still holds the messages it scanned.
//!
//! # Design
//!
//! The mbox is rewritten in place: it keeps its inode, owner and mode, and an agent that already has it
//! open never delivers into a file that was replaced. Let O be the file size now (mail delivered during
//! the session included), `offset` the first deleted byte and N the size after removal (N < O).
//!
//! 1. Write `MBOX.poplar-recovery` (mode 0600, created exclusively; layout in `recovery`): the plan
//!    (O, `offset`, N, the deleted ranges), the file's bytes `offset..N` as they are now, random keys
//!    and a keyed hash (`polyhash`) of `N..O` under them; fsync it. Meanwhile a second thread runs
//!    the caller's check (at worst a rescan of what the session scanned, which takes about as long)
//!    and a third computes the hash, which reads as much as the copy does. Once both
//!    are done, and only if both succeeded, add the checksum of it all (`sum`) that makes the file
//!    valid, and fsync it and the directory: a crash before leaves an incomplete file, so no valid
//!    recovery file ever describes an mbox that failed the check. If the check fails, or the writing
//!    does (ENOSPC, EFBIG, EIO), the recovery file is removed: the mbox was not touched. Before this
//!    step, an mbox larger than the process's file size limit is refused (see `file_size_limit`).
//! 2. Compact: copy each kept range down over the deleted ones, in file order. Writes only ever touch
//!    `offset..N`, which is what step 1 saved; `N..O` still holds the old bytes until step 3. No write
//!    extends the file: the disk cannot fill up (but a file size limit applies to the write position,
//!    hence the check above).
//! 3. fsync the mbox; create the mark `MBOX.poplar-recovery-compacted` and fsync the directory; only
//!    then truncate the mbox to N, and fsync again.
//! 4. Remove the recovery file, then the mark, and fsync the directory. This may wait until UPDATE's
//!    reply has left (but not past the session lock): a recovery file left behind describes a
//!    truncated mbox, which recovery only cleans up. (A mark left alone is removed by the next
//!    recovery or step 1.)
//!
//! Recovery (any open of the mbox that finds a recovery file, under the same locks):
//! - The mbox is another file than the recovery file names (version 4 records its inode): a program
//!   rewrote it into a new file since the crash. Nothing is written into that one; the recovery file
//!   stays for the administrator.
//! - The recovery file is short or its checksum is wrong: the crash came during step 1 and the mbox is
//!   untouched. Remove it.
//! - No mark: the truncation cannot have happened, so somewhere in step 2 or 3. Roll back: write the
//!   saved `offset..N` back; `N..O` was never written, so the file is the old one up to O, with
//!   whatever another program changed there since the crash (a flag rewritten in place). Mail an agent
//!   appended after the crash lies past O and stays. Rolling back is idempotent, so a crash during
//!   recovery is recovered the same way. (A file now shorter than N was cut by another program, and
//!   one whose `N..O` changed while its size did too was rewritten by one, say a mail reader saving
//!   it: the saved bytes would not line up with its layout. Nothing is done, and the recovery file
//!   stays for the administrator.)
//! - A mark, and the mbox is at least O octets long and `N..O` still hashes as saved: not truncated
//!   yet; roll back likewise.
//! - A mark otherwise: the truncation happened, the compaction being on disk: the expunge is complete
//!   (mail appended afterwards lies past N and stays). fsync, remove the recovery file.
//!
//! The mark counts, like the recovery file, only as a regular file of the mbox's owner or ours that no
//! one else may write; anything else with its name (where others may create files) is left, with the
//! mbox, for the administrator, unless the mbox is still the old size with the old tail (then the
//! rollback needs no mark).
//!
//! The hash is keyed because after the truncation an agent may append mail, chosen by its sender, over
//! `N..O`: with a plain checksum a sender could make it match and have us "roll back" over the compacted
//! mbox, mangling it. The sender cannot see the key, and `polyhash` bounds the chance of a match for
//! any mail chosen without it (below 10^-12 for 100 MB). Appended octets identical to the old `N..O`
//! cannot be told apart by any means, but then rolling back gives the old mbox, that copy included.
//! Recovery files of versions 1 and 2 saved all of `offset..O` and compared `N..O` octet for octet;
//! they are still applied that way. The poplars that wrote versions 1 to 3 made no mark: for their
//! files the mbox alone decides, as in the last two cases without the mark (a file version 4 comes with
//! the rule above).
//!
//! A rollback means the deleted messages come back: right, since the client never got UPDATE's `+OK`.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::panic;
use std::path::{Path, PathBuf};
use std::thread;

use super::recovery::{self, Plan, Version, read_full_at, sync_dir};
use crate::maildrop::HELPER_STACK;
use nix::libc;

/// Copy buffer size: large sequential I/O, small enough to stay in cache.
pub const COPY_CHUNK: usize = 1 << 20;

/// `MBOX.poplar-recovery`, next to the mbox: on the same file system, found by whoever opens the mbox.
pub fn recovery_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".poplar-recovery");
    PathBuf::from(name)
}

/// `MBOX.poplar-recovery-compacted`: made, and its directory fsynced, once the compaction is on disk
/// and before the truncation. Without it the truncation cannot have happened, so recovery rolls back
/// whatever another program did to the mbox after the crash (see `recover`).
pub fn compacted_mark_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".poplar-recovery-compacted");
    PathBuf::from(name)
}

/// What `recover` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// No recovery file.
    Clean,
    /// An incomplete recovery file was removed; the mbox had not been touched.
    DiscardedIncomplete,
    /// An interrupted expunge was undone.
    RolledBack,
    /// An interrupted expunge had finished its rewrite; only the clean-up was left.
    Completed,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recovery::Clean => "nothing to do",
            Recovery::DiscardedIncomplete => {
                "its recovery file was incomplete and is removed, the mbox untouched"
            }
            Recovery::RolledBack => "undone, the mbox as it was before that UPDATE",
            Recovery::Completed => "its rewrite had finished, the clean-up is done",
        })
    }
}

/// Why `prepare` gave up; the mbox was not touched either way.
#[derive(Debug)]
pub enum Refused<E> {
    /// The caller's check failed.
    Check(E),
    Io(io::Error),
}

impl<E> From<io::Error> for Refused<E> {
    fn from(e: io::Error) -> Refused<E> {
        Refused::Io(e)
    }
}

/// An expunge whose recovery file is on disk and whose check passed: `commit` does the rest.
#[must_use = "the recovery file stays until the expunge is committed"]
pub struct Prepared<'f> {
    file: &'f File,
    path: PathBuf,
    /// `None`: nothing to delete.
    plan: Option<Plan>,
    chunk: usize,
}

/// Removes the byte ranges `deleted` from the mbox `file` at `path`, with no check: `prepare` then
/// `commit`.
#[cfg(test)]
pub fn expunge(
    path: &Path,
    file: &File,
    deleted: &[(u64, u64)],
    keep_alive: &mut dyn FnMut(),
) -> io::Result<()> {
    prepare(path, file, deleted, || Ok::<(), io::Error>(()), keep_alive)
        .map_err(|e| match e {
            Refused::Check(e) | Refused::Io(e) => e,
        })?
        .commit(keep_alive)?
        .finish()
}

/// Step 1 for removing the byte ranges `deleted` (ascending, disjoint, non-empty, within the file)
/// from the mbox `file` at `path`, with `check` run alongside in another thread; the mbox is not
/// touched unless both succeed. `keep_alive` is called, in this thread, between chunks of the copy
/// to the recovery file (to refresh the dotlock: the copy can outlast a rescan, or need none).
pub fn prepare<'f, E: Send>(
    path: &Path,
    file: &'f File,
    deleted: &[(u64, u64)],
    check: impl FnOnce() -> Result<(), E> + Send,
    keep_alive: &mut dyn FnMut(),
) -> Result<Prepared<'f>, Refused<E>> {
    prepare_with(
        path,
        file,
        deleted,
        check,
        keep_alive,
        COPY_CHUNK,
        Version::V4,
    )
}

fn prepare_with<'f, E: Send>(
    path: &Path,
    file: &'f File,
    deleted: &[(u64, u64)],
    check: impl FnOnce() -> Result<(), E> + Send,
    keep_alive: &mut dyn FnMut(),
    chunk: usize,
    version: Version,
) -> Result<Prepared<'f>, Refused<E>> {
    let mut prepared = Prepared {
        file,
        path: path.to_path_buf(),
        plan: None,
        chunk,
    };
    let Some(&(offset, _)) = deleted.first() else {
        check().map_err(Refused::Check)?;
        return Ok(prepared);
    };
    let size = file.metadata()?.len();
    // The caller checked the file against the ranges; a file that shrank since is refused all the same.
    let new_size = size
        .checked_sub(deleted.iter().map(|(a, b)| b - a).sum::<u64>())
        .filter(|_| deleted.last().is_some_and(|&(_, end)| end <= size))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "mbox shorter than scanned"))?;
    let plan = Plan {
        size,
        offset,
        new_size,
        deleted: deleted.to_vec(),
    };
    if let Some(limit) = file_size_limit().filter(|&limit| plan.size > limit) {
        let why = format!(
            "mbox of {} octets is over the file size limit ({limit}): cannot rewrite it",
            plan.size
        );
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, why).into());
    }
    let rpath = recovery_path(path);
    // A mark left by a crash after an earlier expunge's recovery file was removed must not speak for
    // this one; step 1's fsync of the directory makes its removal last.
    remove_mark(path)?;
    // Someone else's recovery file is left alone: nothing below runs.
    let out = recovery::create(&rpath)?;
    let ran = thread::scope(|s| {
        let helper = |name: &str| {
            thread::Builder::new()
                .name(name.into())
                .stack_size(HELPER_STACK)
        };
        let checker = helper("mbox-check").spawn_scoped(s, check)?;
        // Versions 3 and 4 record a hash of `N..O`.
        let hasher = (version != Version::V2)
            .then(|| {
                helper("mbox-hash").spawn_scoped(s, || recovery::hash_tail(file, &plan, chunk))
            })
            .transpose()?;
        let tail_hash = || {
            hasher
                .expect("versions 3 and 4 have a hasher")
                .join()
                .unwrap_or_else(|panicked| panic::resume_unwind(panicked))
        };
        let written = recovery::write(&out, file, &plan, version, chunk, tail_hash, keep_alive);
        Ok::<_, io::Error>((written, checker.join()))
    });
    // The file gets its checksum only once the check passed: a crash before leaves it incomplete, so
    // no valid recovery file ever describes an mbox that failed the check (one renamed over, say).
    let refused = match ran {
        Ok((Ok(sum), Ok(Ok(())))) => match recovery::seal(&out, &rpath, sum) {
            Ok(()) => {
                prepared.plan = Some(plan);
                return Ok(prepared);
            }
            Err(e) if crash::is_simulated(&e) => return Err(e.into()),
            Err(e) => Refused::Io(e),
        },
        // As if the process had died here: leave everything as it is.
        Ok((Err(e), _)) if crash::is_simulated(&e) => return Err(e.into()),
        Ok((_, Err(panicked))) => {
            let _ = fs::remove_file(&rpath);
            panic::resume_unwind(panicked)
        }
        Ok((_, Ok(Err(changed)))) => Refused::Check(changed),
        Ok((Err(e), Ok(Ok(())))) | Err(e) => Refused::Io(e),
    };
    let _ = fs::remove_file(&rpath);
    Err(refused)
}

/// An expunge that is complete on disk, with its recovery file still there: `finish` removes it.
#[must_use = "the recovery file stays until `finish`"]
pub struct Committed {
    /// The mbox; `None`: there was nothing to delete, and no recovery file.
    mbox: Option<PathBuf>,
}

impl Committed {
    /// Step 4. Not needed for the mbox to be right: a recovery file left behind describes a truncated
    /// mbox, which recovery only cleans up. So it may wait until the client has its reply (removing
    /// 50 MB takes ~12 ms), but not past the session lock, which keeps another expunge from starting.
    pub fn finish(self) -> io::Result<()> {
        let Some(mbox) = self.mbox else {
            return Ok(());
        };
        let rpath = recovery_path(&mbox);
        remove_recovery_file(&rpath)?;
        crash::point()?;
        // The mark goes only after the recovery file: a recovery file without it is rolled back.
        remove_mark(&mbox)?;
        sync_dir(&rpath)
    }
}

impl Prepared<'_> {
    /// Steps 2 and 3. `keep_alive` is called between chunks of work (to refresh the dotlock).
    pub fn commit(self, keep_alive: &mut dyn FnMut()) -> io::Result<Committed> {
        let Some(plan) = &self.plan else {
            return Ok(Committed { mbox: None });
        };
        match rewrite(self.file, &self.path, plan, keep_alive, self.chunk) {
            Ok(()) => Ok(Committed {
                mbox: Some(self.path.clone()),
            }),
            Err(e) if crash::is_simulated(&e) => Err(e),
            Err(e) => {
                // Leave the mbox whole now rather than at the next login: agents keep delivering into it.
                if let Err(again) = recover(&self.path, self.file) {
                    log::error!(
                        "{}: rollback after failed expunge failed too: {again}",
                        self.path.display()
                    );
                }
                Err(e)
            }
        }
    }
}

/// The soft `RLIMIT_FSIZE`, `None` when unlimited. Linux applies it to the write position, not to growth:
/// a write at or past the limit fails with EFBIG even inside an existing file. The compaction and a
/// rollback write up to N (a rollback from a version 1 or 2 file, up to O), so an mbox larger than the
/// limit is refused before anything is written; otherwise the compaction could fail half-way.
fn file_size_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Steps 2 and 3. The file is read in windows of `chunk` octets and the kept octets gathered into
/// writes of `chunk` octets, so deleting every other small message costs a few large system calls per
/// MB, not one read and one write per message.
fn rewrite(
    file: &File,
    path: &Path,
    plan: &Plan,
    keep_alive: &mut dyn FnMut(),
    chunk: usize,
) -> io::Result<()> {
    let mut window = Window {
        buf: vec![0u8; chunk],
        start: 0,
        len: 0,
    };
    let mut out = Vec::with_capacity(chunk);
    let mut to = plan.offset;
    for (mut from, end) in plan.kept() {
        while from < end {
            let piece = window.at(file, from, plan.size)?;
            let take = piece
                .len()
                .min((end - from) as usize)
                .min(chunk - out.len());
            out.extend_from_slice(&piece[..take]);
            from += take as u64;
            if out.len() == chunk {
                // `to + chunk <= from`: everything this overwrites was read already.
                file.write_all_at(&out, to)?;
                recovery::start_writeback(file, to, out.len());
                to += out.len() as u64;
                out.clear();
                crash::point()?;
                keep_alive();
            }
        }
    }
    file.write_all_at(&out, to)?;
    to += out.len() as u64;
    crash::point()?;
    debug_assert_eq!(to, plan.new_size);
    file.sync_all()?;
    crash::point()?;
    // Created exclusively like the recovery file (step 1 removed any old mark); it holds nothing.
    let mark = compacted_mark_path(path);
    recovery::create(&mark)?;
    sync_dir(&mark)?;
    crash::point()?;
    file.set_len(plan.new_size)?;
    crash::point()?;
    file.sync_all()
}

/// The last octets read from the mbox: `buf[..len]` holds the file's `start..start + len`.
struct Window {
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl Window {
    /// The octets from `at` to the end of the window, reading a new window there (up to `size`) first
    /// if `at` lies outside the current one.
    fn at(&mut self, file: &File, at: u64, size: u64) -> io::Result<&[u8]> {
        if at < self.start || at >= self.start + self.len as u64 {
            let want = self.buf.len().min((size - at) as usize);
            self.len = read_full_at(file, &mut self.buf[..want], at)?;
            self.start = at;
            if self.len == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "mbox shorter than planned",
                ));
            }
        }
        Ok(&self.buf[(at - self.start) as usize..self.len])
    }
}

/// Completes or rolls back an interrupted expunge of the mbox `file` at `path` (see the module doc).
/// The caller holds the delivery locks.
pub fn recover(path: &Path, file: &File) -> io::Result<Recovery> {
    let rpath = recovery_path(path);
    let saved = match crate::maildrop::open_kept_file(&rpath) {
        Ok(Some((saved, meta)))
            if crate::maildrop::written_by_us(&meta, file.metadata()?.uid()) =>
        {
            saved
        }
        // Only a file a session of this mbox wrote is applied: its checksum is no secret.
        Ok(Some(_)) => return Err(not_ours(&rpath)),
        Ok(None) => {
            // A mark whose recovery file was removed (a crash in between) means nothing any more.
            remove_mark(path)?;
            return Ok(Recovery::Clean);
        }
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Err(not_ours(&rpath)),
        Err(e) => return Err(e),
    };
    let outcome = match recovery::read(saved)? {
        None => Recovery::DiscardedIncomplete,
        // Neither the old bytes nor the truncation belong in another file.
        Some(saved) if saved.replaced(file)? => {
            return Err(left_alone(
                path,
                "another file since an interrupted expunge",
            ));
        }
        // Still the old size with the old tail: the truncation did not happen, mark or none. Roll back.
        Some(saved) if !saved.truncated(file)? => roll_back(&saved, file)?,
        // A file of version 1 to 3 was written by a poplar that made no mark: the mbox alone decides,
        // as it did then.
        Some(saved) if !saved.writer_marks() => complete(file)?,
        Some(_) if marked(path, file)? => complete(file)?,
        Some(saved) if saved.shortened(file)? => {
            return Err(left_alone(path, "shortened after an interrupted expunge"));
        }
        // Not marked, so the truncation never happened, yet the old tail changed: a program wrote to
        // the file since the crash. If it also changed its size, it rewrote the file (a mail reader
        // saving it, messages moved): the saved bytes written back over its layout would mangle it.
        Some(saved) if saved.resized(file)? => {
            return Err(left_alone(path, "rewritten after an interrupted expunge"));
        }
        // Not marked, and the same size: the compaction wrote only below N, and another program
        // changed the file in place (a flag rewritten past N). Restoring the saved bytes gives the old
        // mbox with its changes.
        Some(saved) => roll_back(&saved, file)?,
    };
    crash::point()?;
    remove_recovery_file(&rpath)?;
    remove_mark(path)?;
    sync_dir(&rpath)?;
    log::warn!("{}: interrupted expunge found: {outcome}", path.display());
    Ok(outcome)
}

/// The mbox at `path` was changed by another program after a crash (`what`), so that neither rolling
/// back nor completing is sure to be right: it is left, with its recovery file, for the administrator.
fn left_alone(path: &Path, what: &str) -> io::Error {
    io::Error::other(format!(
        "{}: {what} (by another program); recovery file left for the administrator",
        path.display()
    ))
}

fn roll_back(saved: &recovery::Saved, file: &File) -> io::Result<Recovery> {
    saved.roll_back(file)?;
    file.sync_all()?;
    Ok(Recovery::RolledBack)
}

fn complete(file: &File) -> io::Result<Recovery> {
    file.sync_all()?;
    Ok(Recovery::Completed)
}

/// Whether the mark of the mbox `file` at `path` is there. Like the recovery file, it counts only as a
/// regular file of the mbox's owner or ours that no one else may write: in a spool where others may
/// create files, a planted mark would turn the rollback of an expunge cut short in its compaction
/// into "complete" once the tail no longer hashes as saved. Anything else with its name is left, with
/// the mbox, for the administrator.
fn marked(path: &Path, file: &File) -> io::Result<bool> {
    let mark = compacted_mark_path(path);
    match crate::maildrop::open_kept_file(&mark) {
        Ok(Some((_, meta))) if crate::maildrop::written_by_us(&meta, file.metadata()?.uid()) => {
            Ok(true)
        }
        Ok(Some(_)) => Err(not_ours(&mark)),
        Ok(None) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(not_ours(&mark)),
        Err(e) => Err(e),
    }
}

/// A recovery file that no session of its mbox wrote: left, with the mbox, for the administrator.
fn not_ours(rpath: &Path) -> io::Error {
    io::Error::other(format!(
        "{}: not a regular file of the mbox's owner, writable by no one else; \
         left for the administrator",
        rpath.display()
    ))
}

/// Removes the recovery file at `rpath` and puts its removal on disk before anything else happens to
/// the directory. The mark, which goes next, must not be gone on disk while the recovery file is still
/// there: without a directory fsync in between, the two unlinks may reach the disk in either order,
/// and a crash could leave the recovery file of a truncated mbox without its mark, which recovery
/// would "roll back" over the new mbox, mixing the two.
fn remove_recovery_file(rpath: &Path) -> io::Result<()> {
    fs::remove_file(rpath)?;
    crash::note("recovery file removed");
    sync_dir(rpath)
}

/// Removes the compaction mark of the mbox at `path`, if there is one.
fn remove_mark(path: &Path) -> io::Result<()> {
    crash::note("mark removed");
    match fs::remove_file(compacted_mark_path(path)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Test-only crash injection: `crash::point()` fails with a recognisable error at the n-th call on this
/// thread, which the code above lets through untouched, as if the process had died there.
#[cfg(not(test))]
pub(super) mod crash {
    use std::io;
    #[inline(always)]
    pub fn point() -> io::Result<()> {
        Ok(())
    }
    pub fn is_simulated(_: &io::Error) -> bool {
        false
    }
    #[inline(always)]
    pub fn note(_: &'static str) {}
}

#[cfg(test)]
pub(crate) mod crash {
    use std::cell::Cell;
    use std::io;

    thread_local! {
        /// Calls left before the simulated crash; `None`: never.
        pub static CRASH_IN: Cell<Option<usize>> = const { Cell::new(None) };
    }
    const MESSAGE: &str = "simulated crash";

    pub fn point() -> io::Result<()> {
        CRASH_IN.with(|c| match c.get() {
            Some(0) => Err(io::Error::other(MESSAGE)),
            Some(n) => {
                c.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        })
    }

    pub fn is_simulated(e: &io::Error) -> bool {
        e.to_string() == MESSAGE
    }

    pub fn arm(n: Option<usize>) {
        CRASH_IN.with(|c| c.set(n));
    }

    thread_local! {
        /// The directory operations done on this thread, in order, for the tests of their ordering.
        static NOTES: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// Records a directory operation (see `notes`).
    pub fn note(what: &'static str) {
        NOTES.with(|n| n.borrow_mut().push(what));
    }

    /// The operations recorded since the last call, which clears them.
    pub fn notes() -> Vec<&'static str> {
        NOTES.with(|n| n.take())
    }
}

#[cfg(test)]
#[path = "expunge_tests.rs"]
mod tests;
