//! The recovery file `MBOX.poplar-recovery` that makes an expunge crash-safe (`expunge` has the steps
//! and why they are safe): its layout by version, writing it, and reading it back.
//!
//! Layout; numbers are 64-bit little-endian:
//! - the magic (16 octets, `sum::MAGIC_V*`); O, `offset`, N and the count of deleted ranges; each
//!   deleted range as its start and end;
//! - the saved bytes: the mbox's `offset..N` (versions 3 and 4) or `offset..O` (versions 1 and 2);
//! - versions 3 and 4 only: the 4 keys of `polyhash`, then the hash of the mbox's `N..O` under them;
//! - version 4 only: the mbox's inode number;
//! - the checksum (`sum`) of everything before it, 16 octets.
//!
//! Version 4 is written. Its writer makes the mark `MBOX.poplar-recovery-compacted` before the
//! truncation (see `expunge`), which the poplars that wrote versions 1 to 3 did not: their files are
//! still read and applied, by the rule they were written for. Version 4 also names the mbox's inode, so
//! that a file put in the mbox's place since (a mail reader that rewrites a mailbox into a new file and
//! renames it over) is never written into.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::libc;

use super::expunge::{COPY_CHUNK, crash};
use super::polyhash::{self, LANES, PolyHash};
use super::sum::{MAGIC_V2, MAGIC_V3, MAGIC_V4, Sum};

const HEADER_LEN: u64 = 16 + 4 * 8;
const SUM_LEN: u64 = 16;
/// Versions 3 and 4: the keys and the hash.
const TAIL_HASH_LEN: u64 = 2 * 8 * LANES as u64;
/// Version 4: the mbox's inode number.
const INODE_LEN: u64 = 8;

/// The version to write: always 4, but the tests also write versions 2 and 3, as the poplars before
/// the mark wrote them, to check that they are still applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    #[cfg_attr(not(test), allow(dead_code))]
    V2,
    #[cfg_attr(not(test), allow(dead_code))]
    V3,
    V4,
}

/// The expunge to do, as recorded in the recovery file.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// O: the size before.
    pub size: u64,
    /// The first deleted byte: nothing before it moves.
    pub offset: u64,
    /// N: the size after.
    pub new_size: u64,
    pub deleted: Vec<(u64, u64)>,
}

impl Plan {
    fn header(&self, magic: &[u8; 16]) -> Vec<u8> {
        let mut h = magic.to_vec();
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
    pub fn kept(&self) -> Vec<(u64, u64)> {
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

/// How a recovery file tells whether the truncation happened.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    /// Versions 1 and 2: the saved bytes run to O, and `N..O` is compared with their end.
    Copied,
    /// Versions 3 and 4: `N..O` gave `hash` under `keys`.
    Hashed {
        keys: [u64; LANES],
        hash: [u64; LANES],
    },
}

/// A whole recovery file, read back.
pub struct Saved {
    file: File,
    plan: Plan,
    tail: Tail,
    /// Version 4 (whose writer makes the mark before truncating): the mbox's inode number.
    inode: Option<u64>,
}

impl Saved {
    /// Whether the file's writer made the mark `MBOX.poplar-recovery-compacted` before truncating the
    /// mbox (version 4), so that its absence proves the truncation did not happen.
    pub fn writer_marks(&self) -> bool {
        self.inode.is_some()
    }

    /// Whether `mbox` is another file than the one the expunge worked on (version 4 knows): one put in
    /// its place since, by a program that writes a mailbox anew and renames it over.
    pub fn replaced(&self, mbox: &File) -> io::Result<bool> {
        let Some(ino) = self.inode else {
            return Ok(false);
        };
        Ok(ino != mbox.metadata()?.ino())
    }

    /// Whether the mbox is now shorter than the expunge would have left it: a program other than
    /// poplar shortened it after the crash, and nothing can say what it holds.
    pub fn shortened(&self, mbox: &File) -> io::Result<bool> {
        Ok(mbox.metadata()?.len() < self.plan.new_size)
    }

    /// Whether the mbox is no longer the size it had before the expunge (O). Used once the old tail is
    /// known changed: a change of the same size is an edit in place (a flag rewritten), while another
    /// size means a program rewrote the file around the changed tail, and the saved bytes would no
    /// longer line up with what it wrote.
    pub fn resized(&self, mbox: &File) -> io::Result<bool> {
        Ok(mbox.metadata()?.len() != self.plan.size)
    }

    /// Where the saved bytes begin in the recovery file.
    fn start(&self) -> u64 {
        HEADER_LEN + 16 * self.plan.deleted.len() as u64
    }

    /// Whether the truncation happened: the mbox is shorter than O, or its `N..O` is no longer the
    /// old bytes (then it is mail appended after the truncation).
    pub fn truncated(&self, mbox: &File) -> io::Result<bool> {
        let plan = &self.plan;
        if mbox.metadata()?.len() < plan.size {
            return Ok(true);
        }
        match self.tail {
            Tail::Hashed { keys, hash } => {
                let mut buf = vec![0u8; COPY_CHUNK];
                Ok(hash_range(mbox, plan.new_size, plan.size, keys, &mut buf)? != hash)
            }
            Tail::Copied => {
                let (mut a, mut b) = (vec![0u8; COPY_CHUNK], vec![0u8; COPY_CHUNK]);
                let mut at = plan.new_size;
                while at < plan.size {
                    let want = COPY_CHUNK.min((plan.size - at) as usize);
                    let n = read_full_at(mbox, &mut a[..want], at)?;
                    let at_saved = self.start() + (at - plan.offset);
                    let m = read_full_at(&self.file, &mut b[..want], at_saved)?;
                    if n != want || m != want || a[..n] != b[..n] {
                        return Ok(true);
                    }
                    at += want as u64;
                }
                Ok(false)
            }
        }
    }

    /// Writes the saved bytes back at `offset`, the only place the compaction wrote. Idempotent.
    pub fn roll_back(&self, mbox: &File) -> io::Result<()> {
        let end = match self.tail {
            Tail::Copied => self.plan.size,
            Tail::Hashed { .. } => self.plan.new_size,
        };
        let len = end - self.plan.offset;
        copy_between(&self.file, self.start(), mbox, self.plan.offset, len)
    }
}

/// Creates the recovery file: exclusively (never someone else's), mode 0600 (it holds mail and keys).
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Writes all of the recovery file `out` for `plan` but its checksum, from the mbox, and puts that on
/// disk; returns the checksum, for `seal`. Versions 3 and 4 take the hash of `N..O` from `tail_hash` (see
/// `hash_tail`), called once the saved bytes are written, so that it can be computed meanwhile. Until
/// then the file is incomplete: a crash leaves a file that recovery discards. Nothing else may write
/// the mbox meanwhile (the caller holds the locks).
pub fn write(
    mut out: &File,
    mbox: &File,
    plan: &Plan,
    version: Version,
    chunk: usize,
    tail_hash: impl FnOnce() -> io::Result<TailHash>,
    keep_alive: &mut dyn FnMut(),
) -> io::Result<[u8; SUM_LEN as usize]> {
    let (magic, saved_end) = match version {
        Version::V2 => (MAGIC_V2, plan.size),
        Version::V3 => (MAGIC_V3, plan.new_size),
        Version::V4 => (MAGIC_V4, plan.new_size),
    };
    let mut sum = Sum::for_magic(magic).expect("known magic");
    let mut written = 0u64;
    let mut put = |bytes: &[u8]| {
        sum.update(bytes);
        out.write_all(bytes)?;
        // Tens of MB: written out while the rest is copied, the fsync below has little left to do.
        start_writeback(out, written, bytes.len());
        written += bytes.len() as u64;
        Ok::<(), io::Error>(())
    };
    put(&plan.header(magic))?;
    crash::point()?;
    each_chunk(
        mbox,
        plan.offset..saved_end,
        &mut vec![0u8; chunk],
        |_, bytes| {
            put(bytes)?;
            keep_alive();
            crash::point()
        },
    )?;
    if version != Version::V2 {
        let TailHash { keys, hash } = tail_hash()?;
        let words: Vec<u8> = keys
            .iter()
            .chain(&hash)
            .flat_map(|w| w.to_le_bytes())
            .collect();
        put(&words)?;
    }
    if version == Version::V4 {
        put(&mbox.metadata()?.ino().to_le_bytes())?;
    }
    out.sync_data()?;
    Ok(sum.finish())
}

/// Versions 3 and 4: the record of the mbox's `N..O`: the keys and the hash under them.
pub struct TailHash {
    keys: [u64; LANES],
    hash: [u64; LANES],
}

/// The keyed hash of the mbox's `N..O` under fresh random keys, for `write`.
pub fn hash_tail(mbox: &File, plan: &Plan, chunk: usize) -> io::Result<TailHash> {
    let keys = polyhash::random_keys()?;
    let hash = hash_range(mbox, plan.new_size, plan.size, keys, &mut vec![0u8; chunk])?;
    Ok(TailHash { keys, hash })
}

/// Completes the recovery file `out` at `path` with its checksum and puts it on disk with its
/// directory entry: from now on a crash is recovered by applying it.
pub fn seal(mut out: &File, path: &Path, sum: [u8; SUM_LEN as usize]) -> io::Result<()> {
    out.write_all(&sum)?;
    out.sync_all()?;
    sync_dir(path)?;
    crash::point()
}

/// The keyed hash of the mbox's `from..to`.
fn hash_range(
    mbox: &File,
    from: u64,
    to: u64,
    keys: [u64; LANES],
    buf: &mut [u8],
) -> io::Result<[u64; LANES]> {
    let mut hash = PolyHash::new(keys);
    each_chunk(mbox, from..to, buf, |_, bytes| {
        hash.update(bytes);
        Ok(())
    })?;
    Ok(hash.finish())
}

/// Reads `file`'s `range` in pieces of `buf`'s size and hands each to `f` with its offset; a file that
/// ends before `range` does is an `UnexpectedEof` error.
fn each_chunk(
    file: &File,
    range: Range<u64>,
    buf: &mut [u8],
    mut f: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut at = range.start;
    while at < range.end {
        let want = buf.len().min((range.end - at) as usize);
        let n = read_full_at(file, &mut buf[..want], at)?;
        if n < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than planned",
            ));
        }
        f(at, &buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

/// The recovery file `saved`, read back; `None` when it is incomplete, corrupt or of an unknown
/// version (a crash came while it was written: the mbox was not touched yet).
pub fn read(saved: File) -> io::Result<Option<Saved>> {
    let len = saved.metadata()?.len();
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN + SUM_LEN || read_full_at(&saved, &mut head, 0)? < head.len() {
        return Ok(None);
    }
    let Some(mut sum) = Sum::for_magic(&head[..16]) else {
        return Ok(None);
    };
    let hashed = &head[..16] == MAGIC_V3 || &head[..16] == MAGIC_V4;
    let marks = &head[..16] == MAGIC_V4;
    let word =
        |i: usize| u64::from_le_bytes(head[16 + 8 * i..24 + 8 * i].try_into().expect("8 octets"));
    let (size, offset, new_size, count) = (word(0), word(1), word(2), word(3));
    let (saved_end, extra) = match (hashed, marks) {
        (true, true) => (new_size, TAIL_HASH_LEN + INODE_LEN),
        (true, false) => (new_size, TAIL_HASH_LEN),
        _ => (size, 0),
    };
    let expected = count
        .checked_mul(16)
        .and_then(|r| r.checked_add(HEADER_LEN + SUM_LEN + extra));
    let expected = expected
        .zip(saved_end.checked_sub(offset))
        .and_then(|(e, saved)| e.checked_add(saved));
    if expected != Some(len) || new_size > size {
        return Ok(None);
    }
    let summed = each_chunk(
        &saved,
        0..len - SUM_LEN,
        &mut vec![0u8; COPY_CHUNK],
        |_, bytes| {
            sum.update(bytes);
            Ok(())
        },
    );
    match summed {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let mut saved_sum = [0u8; SUM_LEN as usize];
    read_full_at(&saved, &mut saved_sum, len - SUM_LEN)?;
    if saved_sum != sum.finish() {
        return Ok(None);
    }
    // The ranges follow the fixed header; the length check above bounds their count by the file's size.
    let mut words = vec![0u8; 16 * count as usize];
    saved.read_exact_at(&mut words, HEADER_LEN)?;
    let tail = if hashed {
        let mut words = [0u8; TAIL_HASH_LEN as usize];
        saved.read_exact_at(&mut words, len - SUM_LEN - extra)?;
        let word = |i: usize| u64::from_le_bytes(words[8 * i..8 * i + 8].try_into().expect("8"));
        Tail::Hashed {
            keys: std::array::from_fn(word),
            hash: std::array::from_fn(|i| word(LANES + i)),
        }
    } else {
        Tail::Copied
    };
    let inode = if marks {
        let mut word = [0u8; INODE_LEN as usize];
        saved.read_exact_at(&mut word, len - SUM_LEN - INODE_LEN)?;
        Some(u64::from_le_bytes(word))
    } else {
        None
    };
    let deleted = words
        .chunks_exact(16)
        .map(|r| {
            let word = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 octets"));
            (word(&r[..8]), word(&r[8..]))
        })
        .collect();
    Ok(Some(Saved {
        file: saved,
        plan: Plan {
            size,
            offset,
            new_size,
            deleted,
        },
        tail,
        inode,
    }))
}

/// Copies `len` octets from `src` at `from` to `dst` at `to`.
fn copy_between(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    each_chunk(
        src,
        from..from + len,
        &mut vec![0u8; COPY_CHUNK],
        |at, bytes| {
            dst.write_all_at(bytes, to + (at - from))?;
            crash::point()
        },
    )
}

/// Reads until `buf` is full or the file ends; returns the count read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A directory or nothing: what else has the name is neither waited on nor made a terminal.
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOCTTY)
        .open(dir)?
        .sync_all()?;
    crash::note("directory synced");
    Ok(())
}

/// Starts writing `file`'s `offset..offset + len` to disk without waiting for it, so that the fsync
/// that follows the last chunk finds most of the data written already instead of starting it all
/// then. Only a hint: the fsync still gives the guarantee, so a failure here is ignored.
pub fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range reads no memory of ours; a bad descriptor or range only returns an error.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}
