//! Crash-safe removal of messages from an mbox, and recovery after a crash. The caller holds the
//! delivery agents' locks and has checked that the file still holds the messages it scanned.
//!
//! # Design
//!
//! The mbox is rewritten in place: it keeps its inode, owner and mode, and an agent that already has it
//! open never delivers into a file that was replaced. Let O be the file size now (mail delivered during
//! the session included), `offset` the first deleted byte and N the size after removal (N < O).
//!
//! 1. Write `MBOX.poplar-recovery` (mode 0600, created exclusively): a header (O, `offset`, N, the deleted
//!    ranges), the file's bytes `offset..O` as they are now, and a checksum of all that (`sum`: words at
//!    memory speed; files from before, with an MD5, are still read). fsync it and the
//!    directory. A failure here (ENOSPC, EFBIG, EIO) removes it: the mbox was not touched. Before this
//!    step, an mbox larger than the process's file size limit is refused (see `file_size_limit`).
//! 2. Compact: copy each kept range down over the deleted ones, in file order. Writes only ever touch
//!    `offset..N`, so `N..O` still holds the old bytes until step 3. No write extends the file: the
//!    disk cannot fill up (but a file size limit applies to the write position, hence the check above).
//! 3. fsync the mbox; only then truncate it to N, and fsync again.
//! 4. Remove the recovery file and fsync the directory.
//!
//! Recovery (any open of the mbox that finds a recovery file, under the same locks):
//! - The recovery file is short or its checksum is wrong: the crash came during step 1 and the mbox is
//!   untouched. Remove it.
//! - The mbox is at least O octets long and `N..O` still holds the saved old bytes: not truncated, so
//!   somewhere in step 2 or 3. Roll back: write the saved bytes back at `offset`. Mail an agent appended
//!   after the crash lies past O and stays. Rolling back is idempotent, so a crash during recovery is
//!   recovered the same way.
//! - Otherwise the truncation happened, which we do only after the compaction is on disk: the expunge is
//!   complete (mail appended afterwards lies past N and stays). fsync, remove the recovery file.
//!
//! A rollback means the deleted messages come back: right, since the client never got UPDATE's `+OK`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::sum::{MAGIC_V2, Sum};
use nix::libc;

/// Copy buffer size: large sequential I/O, small enough to stay in cache.
pub const COPY_CHUNK: usize = 1 << 20;
const HEADER_LEN: u64 = 16 + 4 * 8;

/// `MBOX.poplar-recovery`, next to the mbox: on the same file system, found by whoever opens the mbox.
pub fn recovery_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".poplar-recovery");
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

/// Removes the byte ranges `deleted` (ascending, disjoint, non-empty, within the file) from the mbox
/// `file` at `path`. `keep_alive` is called between chunks of work (to refresh the dotlock).
pub fn expunge(
    path: &Path,
    file: &File,
    deleted: &[(u64, u64)],
    keep_alive: &mut dyn FnMut(),
) -> io::Result<()> {
    expunge_with(path, file, deleted, keep_alive, COPY_CHUNK)
}

fn expunge_with(
    path: &Path,
    file: &File,
    deleted: &[(u64, u64)],
    keep_alive: &mut dyn FnMut(),
    chunk: usize,
) -> io::Result<()> {
    let Some(&(offset, _)) = deleted.first() else {
        return Ok(());
    };
    let plan = Plan {
        size: file.metadata()?.len(),
        offset,
        new_size: 0,
        deleted: deleted.to_vec(),
    };
    let plan = Plan {
        new_size: plan.size - deleted.iter().map(|(a, b)| b - a).sum::<u64>(),
        ..plan
    };
    if let Some(limit) = file_size_limit().filter(|&limit| plan.size > limit) {
        let why = format!(
            "mbox of {} octets is over the file size limit ({limit}): cannot rewrite it",
            plan.size
        );
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, why));
    }
    let rpath = recovery_path(path);
    if let Err(e) = write_recovery(&rpath, file, &plan, chunk) {
        if !crash::is_simulated(&e) {
            let _ = fs::remove_file(&rpath);
        }
        return Err(e);
    }
    match rewrite(file, &plan, keep_alive, chunk) {
        Ok(()) => {
            fs::remove_file(&rpath)?;
            crash::point()?;
            sync_dir(&rpath)
        }
        Err(e) if crash::is_simulated(&e) => Err(e),
        Err(e) => {
            // Leave the mbox whole now rather than at the next login: agents keep delivering into it.
            if let Err(again) = recover(path, file) {
                log::error!(
                    "{}: rollback after failed expunge failed too: {again}",
                    path.display()
                );
            }
            Err(e)
        }
    }
}

/// The soft `RLIMIT_FSIZE`, `None` when unlimited. Linux applies it to the write position, not to growth:
/// a write at or past the limit fails with EFBIG even inside an existing file. The compaction writes up
/// to N and a rollback up to O, so an mbox larger than the limit is refused before anything is written;
/// otherwise a rollback could fail half-way and leave a recovery file this process cannot apply.
fn file_size_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The expunge to do, as recorded in the recovery file.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// O: the size before.
    size: u64,
    /// The first deleted byte: nothing before it moves.
    offset: u64,
    /// N: the size after.
    new_size: u64,
    deleted: Vec<(u64, u64)>,
}

impl Plan {
    fn header(&self) -> Vec<u8> {
        let mut h = MAGIC_V2.to_vec();
        for n in [
            self.size,
            self.offset,
            self.new_size,
            self.deleted.len() as u64,
        ] {
            h.extend_from_slice(&n.to_le_bytes());
        }
        for &(a, b) in &self.deleted {
            h.extend_from_slice(&a.to_le_bytes());
            h.extend_from_slice(&b.to_le_bytes());
        }
        h
    }

    /// The parts of `offset..size` that stay, in order.
    fn kept(&self) -> Vec<(u64, u64)> {
        let mut kept = Vec::new();
        let mut at = self.offset;
        for &(a, b) in self.deleted.iter().chain([(self.size, self.size)].iter()) {
            if a > at {
                kept.push((at, a));
            }
            at = b;
        }
        kept
    }
}

/// Step 1: the recovery file, complete and on disk before the mbox is touched.
fn write_recovery(rpath: &Path, file: &File, plan: &Plan, chunk: usize) -> io::Result<()> {
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(rpath)?;
    let mut sum = Sum::for_magic(MAGIC_V2).expect("known magic");
    let header = plan.header();
    sum.update(&header);
    out.write_all(&header)?;
    crash::point()?;
    let mut buf = vec![0u8; chunk];
    let mut at = plan.offset;
    while at < plan.size {
        let n = read_full_at(file, &mut buf[..chunk.min((plan.size - at) as usize)], at)?;
        sum.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        crash::point()?;
        at += n as u64;
    }
    out.write_all(&sum.finish())?;
    out.sync_all()?;
    sync_dir(rpath)?;
    crash::point()
}

/// Steps 2 and 3. The file is read in windows of `chunk` octets and the kept octets gathered into
/// writes of `chunk` octets, so deleting every other small message costs a few large system calls per
/// MB, not one read and one write per message.
fn rewrite(file: &File, plan: &Plan, keep_alive: &mut dyn FnMut(), chunk: usize) -> io::Result<()> {
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
    let mut saved = match File::open(&rpath) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recovery::Clean),
        Err(e) => return Err(e),
    };
    let outcome = match read_plan(&mut saved)? {
        None => Recovery::DiscardedIncomplete,
        Some(plan) if !truncated(file, &saved, &plan)? => {
            copy_between(
                &saved,
                HEADER_LEN + 16 * plan.deleted.len() as u64,
                file,
                plan.offset,
                plan.size - plan.offset,
            )?;
            file.sync_all()?;
            Recovery::RolledBack
        }
        Some(_) => {
            file.sync_all()?;
            Recovery::Completed
        }
    };
    crash::point()?;
    fs::remove_file(&rpath)?;
    sync_dir(&rpath)?;
    log::warn!("{}: interrupted expunge found: {outcome:?}", path.display());
    Ok(outcome)
}

/// The plan in a recovery file, or `None` when the file is incomplete or corrupt.
fn read_plan(saved: &mut File) -> io::Result<Option<Plan>> {
    let len = saved.metadata()?.len();
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN + 16 || read_full_at(saved, &mut head, 0)? < head.len() {
        return Ok(None);
    }
    let Some(mut sum) = Sum::for_magic(&head[..16]) else {
        return Ok(None);
    };
    let word =
        |i: usize| u64::from_le_bytes(head[16 + 8 * i..24 + 8 * i].try_into().expect("8 octets"));
    let (size, offset, new_size, count) = (word(0), word(1), word(2), word(3));
    let expected = count
        .checked_mul(16)
        .and_then(|r| r.checked_add(HEADER_LEN + 16));
    let expected = expected
        .zip(size.checked_sub(offset))
        .and_then(|(e, tail)| e.checked_add(tail));
    if expected != Some(len) {
        return Ok(None);
    }
    let mut ranges = Vec::new();
    let mut reader = io::BufReader::with_capacity(COPY_CHUNK, (&*saved).take(len - 16));
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
        collect_ranges(&buf[..n], pos, count, &mut ranges);
        pos += n as u64;
    }
    let mut saved_sum = [0u8; 16];
    read_full_at(saved, &mut saved_sum, len - 16)?;
    if saved_sum != sum.finish() {
        return Ok(None);
    }
    let deleted = ranges.chunks(2).map(|r| (r[0], r[1])).collect();
    Ok(Some(Plan {
        size,
        offset,
        new_size,
        deleted,
    }))
}

/// Gathers the range words (after the fixed header) from a stream read at `pos`.
fn collect_ranges(bytes: &[u8], pos: u64, count: u64, words: &mut Vec<u64>) {
    let (start, end) = (HEADER_LEN, HEADER_LEN + 16 * count);
    let mut word = [0u8; 8];
    for (i, &b) in bytes.iter().enumerate() {
        let at = pos + i as u64;
        if (start..end).contains(&at) {
            word[((at - start) % 8) as usize] = b;
            if (at - start) % 8 == 7 {
                words.push(u64::from_le_bytes(word));
            }
        }
    }
}

/// Whether step 3's truncation happened: `N..O` no longer holds the saved old bytes.
fn truncated(file: &File, saved: &File, plan: &Plan) -> io::Result<bool> {
    if file.metadata()?.len() < plan.size {
        return Ok(true);
    }
    let tail_start = HEADER_LEN + 16 * plan.deleted.len() as u64;
    let (mut a, mut b) = (vec![0u8; COPY_CHUNK], vec![0u8; COPY_CHUNK]);
    let mut at = plan.new_size;
    while at < plan.size {
        let want = COPY_CHUNK.min((plan.size - at) as usize);
        let n = read_full_at(file, &mut a[..want], at)?;
        let m = read_full_at(saved, &mut b[..want], tail_start + (at - plan.offset))?;
        if n != want || m != want || a[..n] != b[..n] {
            return Ok(true);
        }
        at += want as u64;
    }
    Ok(false)
}

/// Copies `len` octets from `src` at `from` to `dst` at `to`.
fn copy_between(src: &File, mut from: u64, dst: &File, mut to: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_CHUNK];
    let end = from + len;
    while from < end {
        let n = read_full_at(src, &mut buf[..COPY_CHUNK.min((end - from) as usize)], from)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "recovery file shorter than recorded",
            ));
        }
        dst.write_all_at(&buf[..n], to)?;
        crash::point()?;
        (from, to) = (from + n as u64, to + n as u64);
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns the count read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// fsync of the directory holding `path`, so that a file's creation or removal is on disk.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Test-only crash injection: `crash::point()` fails with a recognisable error at the n-th call on this
/// thread, which the code above lets through untouched, as if the process had died there.
#[cfg(not(test))]
mod crash {
    use std::io;
    #[inline(always)]
    pub fn point() -> io::Result<()> {
        Ok(())
    }
    pub fn is_simulated(_: &io::Error) -> bool {
        false
    }
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
}

#[cfg(test)]
#[path = "expunge_tests.rs"]
mod tests;
