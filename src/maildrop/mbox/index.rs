//! The mbox index: what the scanner found in an mbox (each message's offsets, octets and unique-id
//! material), kept in `MBOX.poplar.index` beside the mbox, so that a later login scans only the mail
//! appended since instead of the whole file. Owns the file format, its checks, its atomic replacement,
//! and the decision whether an index still describes the mbox; `read.rs` decides when to use it,
//! `mod.rs` when to save it.
//!
//! # Never trusted blindly
//!
//! An index is used only when all of these hold, else the mbox is scanned whole and the index rebuilt:
//! - the file is a regular file owned by us or by the mbox's owner, writable by no one else, and its
//!   magic line, structure (offsets ascending, messages back to back from offset 0) and FNV checksum
//!   are right: a torn or stray file is ignored;
//! - it was made for the same file (device and inode) and the same `mbox-uidl` setting;
//! - the mbox is not shorter than when indexed; if it has the same size, it also has the same
//!   modification time and change time (an unchanged size with a new mtime is a rewrite, not a
//!   delivery, and mail readers set the mtime back after a rewrite, but no program can set the ctime);
//!   the ctime counts only if the key recorded it as settled, earlier than the session lock file's
//!   ctime set just before (see `stamp`): a same-size rewrite in the same clock tick keeps it;
//! - the `From ` lines of up to [`SAMPLES`] messages spread over the file, and always of the last one,
//!   are still where the index says, after an empty line, with the same digest.
//!
//! The last indexed message is then scanned again with whatever follows it: delivery agents append, so
//! new mail lies after it, and a rewrite that moved anything before it moved its `From ` line too. What
//! remains is checked later as before: each message's `From ` line when it is opened, and the whole
//! scanned part, scanned again and compared, before UPDATE removes anything. A mismatch there removes
//! the index.
//!
//! Size: about 80 octets per message (8 MB for 100,000 messages).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::scan::ScannedMessage;

/// Version 2: a last message ending in a bare CR counts one octet fewer (version 1 counted two for
/// its missing line end, while RETR adds only the LF). Version 3: the key holds the mbox's ctime.
/// Version 4: each message's flag octet also says whether its header has an `X-IMAP:` field (the first
/// message is then an IMAP server's pseudo-message, not listed); a version 3 index does not say, so it
/// could list that message. Version 5: that flag needs the pseudo-message's subject, X-IMAP's two
/// numbers and a size bound as well (see `ScannedMessage::imap_state`): a version 4 index could hide
/// a message a sender wrote with an `X-IMAP:` field. Older indexes are scanned anew.
const MAGIC: &[u8; 20] = b"poplar-mbox-index 5\n";
/// The header after the magic: ten little-endian u64 (see [`Key`] and the message count).
const HEADER_LEN: usize = MAGIC.len() + 10 * 8;
/// Flag bits in the header.
const FLAG_X_UIDL: u64 = 1;
const FLAG_CTIME: u64 = 2;
/// Per message: seven u64, the MD5, the flags (`RECORD_HASHED`, `RECORD_IMAP_STATE`), the X-UIDL
/// length (`NO_X_UIDL` for none).
const RECORD_LEN: usize = 7 * 8 + 16 + 1 + 2;
const NO_X_UIDL: u16 = u16::MAX;
/// Flag bits of a message record.
const RECORD_HASHED: u8 = 1;
const RECORD_IMAP_STATE: u8 = 2;
/// `From ` lines checked at load, spread evenly over the messages (the last one is always checked).
pub const SAMPLES: usize = 32;
/// An index larger than this is not read.
const MAX_INDEX_BYTES: u64 = 1 << 30;

/// What the index was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub dev: u64,
    pub ino: u64,
    /// Octets of the mbox the messages cover: the end of the last one.
    pub covered: u64,
    /// The mbox's size and modification time when the index was written.
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// The mbox's change time (seconds, nanoseconds) when the index was written, if it was already
    /// earlier than a clock file's set to now just before (see `stamp`): then any later change of the
    /// mbox, even one that keeps its size and sets its mtime back, has another ctime.
    pub ctime: Option<(i64, i64)>,
    pub want_x_uidl: bool,
}

impl Key {
    /// The key for `messages` of the mbox whose metadata is `meta`; `clock`: the metadata of a file
    /// beside the mbox whose times were set to now just before `meta` was read.
    pub fn new(
        meta: &fs::Metadata,
        clock: Option<&fs::Metadata>,
        messages: &[ScannedMessage],
        want_x_uidl: bool,
    ) -> Key {
        let settled = clock.is_some_and(|clock| {
            clock.dev() == meta.dev()
                && (meta.ctime(), meta.ctime_nsec()) < (clock.ctime(), clock.ctime_nsec())
        });
        Key {
            dev: meta.dev(),
            ino: meta.ino(),
            covered: messages.last().map_or(0, |m| m.end),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: settled.then(|| (meta.ctime(), meta.ctime_nsec())),
            want_x_uidl,
        }
    }

    /// Whether the mbox with `meta` may still begin with what this key describes (the `From ` line
    /// checks come after).
    pub fn admits(&self, meta: &fs::Metadata, want_x_uidl: bool) -> bool {
        let same_file =
            self.dev == meta.dev() && self.ino == meta.ino() && self.want_x_uidl == want_x_uidl;
        let untouched = meta.mtime() == self.mtime
            && meta.mtime_nsec() == self.mtime_nsec
            && self.ctime == Some((meta.ctime(), meta.ctime_nsec()));
        same_file
            && meta.size() >= self.covered
            && (meta.size() > self.size || (meta.size() == self.size && untouched))
    }
}

/// `MBOX.poplar.index`, beside the session lock file.
pub fn index_path(mbox: &Path) -> PathBuf {
    let mut name = mbox.as_os_str().to_owned();
    name.push(".poplar.index");
    PathBuf::from(name)
}

fn temp_path(mbox: &Path) -> PathBuf {
    let mut name = index_path(mbox).into_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Reads the index of the mbox at `mbox`, owned by `mbox_owner`; `None` when it is missing, not ours,
/// or fails any check of its own (the checks against the mbox are the caller's).
pub fn load(mbox: &Path, mbox_owner: u32) -> Option<(Key, Vec<ScannedMessage>)> {
    let path = index_path(mbox);
    let (mut file, meta) = match crate::maildrop::open_kept_file(&path) {
        Ok(opened) => opened?,
        Err(e) => {
            log::debug!("{}: {e}; scanning the mbox", path.display());
            return None;
        }
    };
    if !crate::maildrop::written_by_us(&meta, mbox_owner) || meta.len() > MAX_INDEX_BYTES {
        log::debug!("{}: not a file we wrote; ignored", path.display());
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes).ok()?;
    let decoded = decode(&bytes);
    if decoded.is_none() {
        log::debug!("{}: corrupt; scanning the mbox", path.display());
    }
    decoded
}

/// Replaces the index of the mbox at `mbox`: written to a temporary file (created exclusively, mode
/// 0600) and renamed over the old one, so a reader sees the old index or the new, whole. No fsync: an
/// index lost or torn by a crash fails its checks and costs one full scan.
pub fn save(mbox: &Path, key: &Key, messages: &[ScannedMessage]) -> io::Result<()> {
    crate::maildrop::replace_file(&temp_path(mbox), &index_path(mbox), &encode(key, messages))
}

/// Removes the index of the mbox at `mbox`, after the mbox was found to differ from it.
pub fn remove(mbox: &Path) {
    match fs::remove_file(index_path(mbox)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            log::debug!("{}: {e}", index_path(mbox).display())
        }
        _ => {}
    }
}

/// The file for `messages` under `key`.
pub fn encode(key: &Key, messages: &[ScannedMessage]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + messages.len() * (RECORD_LEN + 2) + 8);
    out.extend_from_slice(MAGIC);
    let (ctime, ctime_nsec) = key.ctime.unwrap_or_default();
    let flags = if key.want_x_uidl { FLAG_X_UIDL } else { 0 }
        | if key.ctime.is_some() { FLAG_CTIME } else { 0 };
    let header = [
        key.dev,
        key.ino,
        key.covered,
        key.size,
        key.mtime as u64,
        key.mtime_nsec as u64,
        ctime as u64,
        ctime_nsec as u64,
        flags,
        messages.len() as u64,
    ];
    header
        .iter()
        .for_each(|n| out.extend_from_slice(&n.to_le_bytes()));
    for m in messages {
        for n in [
            m.from_offset,
            m.data_offset,
            m.header_end,
            m.data_end,
            m.end,
            m.octets,
            m.from_digest,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&m.popa3d_md5);
        out.push(
            if m.popa3d_hashed { RECORD_HASHED } else { 0 }
                | if m.imap_state { RECORD_IMAP_STATE } else { 0 },
        );
        // The scanner records at most one header line's worth; a longer one is never a valid id anyway.
        let x_uidl = m
            .x_uidl
            .as_deref()
            .map(|x| &x.as_bytes()[..x.len().min(usize::from(NO_X_UIDL - 1))]);
        let len = x_uidl.map_or(NO_X_UIDL, |x| x.len() as u16);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(x_uidl.unwrap_or_default());
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Parses an index file; `None` unless every part of it checks out.
pub fn decode(bytes: &[u8]) -> Option<(Key, Vec<ScannedMessage>)> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if checksum(body) != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(body.strip_prefix(MAGIC)?);
    let [
        dev,
        ino,
        covered,
        size,
        mtime,
        mtime_nsec,
        ctime,
        ctime_nsec,
        flags,
        count,
    ] = [(); 10].map(|()| r.u64());
    let flags = flags?;
    if flags & !(FLAG_X_UIDL | FLAG_CTIME) != 0 {
        return None;
    }
    let key = Key {
        dev: dev?,
        ino: ino?,
        covered: covered?,
        size: size?,
        mtime: mtime? as i64,
        mtime_nsec: mtime_nsec? as i64,
        ctime: match (flags & FLAG_CTIME != 0, ctime?, ctime_nsec?) {
            (true, sec, nsec) => Some((sec as i64, nsec as i64)),
            (false, 0, 0) => None,
            (false, _, _) => return None,
        },
        want_x_uidl: flags & FLAG_X_UIDL != 0,
    };
    let count = usize::try_from(count?)
        .ok()
        .filter(|&n| n <= body.len() / RECORD_LEN)?;
    let mut messages = Vec::with_capacity(count);
    for _ in 0..count {
        messages.push(r.message()?);
    }
    (r.0.is_empty() && well_formed(&key, &messages)).then_some((key, messages))
}

/// Offsets in order and back to back, from 0 to `covered`: what the code that serves messages relies on.
fn well_formed(key: &Key, messages: &[ScannedMessage]) -> bool {
    let mut at = 0;
    for m in messages {
        let ordered = m.from_offset < m.data_offset
            && m.data_offset <= m.header_end
            && m.header_end <= m.data_end
            && m.data_end <= m.end;
        if m.from_offset != at || !ordered {
            return false;
        }
        at = m.end;
    }
    !messages.is_empty() && at == key.covered && key.covered <= key.size
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn message(&mut self) -> Option<ScannedMessage> {
        let [
            from_offset,
            data_offset,
            header_end,
            data_end,
            end,
            octets,
            from_digest,
        ] = [(); 7].map(|()| self.u64());
        let popa3d_md5: [u8; 16] = self.take(16)?.try_into().ok()?;
        let [record_flags] = *self.take(1)? else {
            return None;
        };
        if record_flags & !(RECORD_HASHED | RECORD_IMAP_STATE) != 0 {
            return None;
        }
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        let x_uidl = match len {
            NO_X_UIDL => None,
            len => Some(
                std::str::from_utf8(self.take(usize::from(len))?)
                    .ok()?
                    .into(),
            ),
        };
        Some(ScannedMessage {
            from_offset: from_offset?,
            data_offset: data_offset?,
            header_end: header_end?,
            data_end: data_end?,
            end: end?,
            octets: octets?,
            from_digest: from_digest?,
            popa3d_md5,
            popa3d_hashed: record_flags & RECORD_HASHED != 0,
            x_uidl,
            imap_state: record_flags & RECORD_IMAP_STATE != 0,
        })
    }
}

/// The messages whose `From ` lines are checked at load: up to [`SAMPLES`] spread evenly, and the last.
pub fn sample_indexes(count: usize) -> impl Iterator<Item = usize> {
    let step = count.div_ceil(SAMPLES).max(1);
    (0..count).step_by(step).chain(count.checked_sub(1))
}

/// FNV-1a over 64-bit words with a rotation: catches torn writes and stray edits at memory speed. The
/// index guards against accidents, not attackers (only we or the mbox's owner can have written it).
fn checksum(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().expect("8 octets"));
        hash = (hash ^ word)
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(23);
    }
    for &b in words.remainder() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
