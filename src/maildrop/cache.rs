//! The Maildir size cache: each message's octet count (RFC 1939 section 5, as RETR sends it) remembered
//! in `.poplar.cache` at the top of the maildrop, so a second login does not read every message again.
//! Owns the file format, its checks and its atomic replacement; `maildir.rs` decides what to look up.
//! Unique-ids need no cache: they are the base name, or its MD5, computed from the listing alone.
//!
//! The cache is never trusted blindly. An entry is used only when the file it describes has the same
//! base name, inode, size and modification time (to the nanosecond) as when it was counted, so a message
//! replaced or rewritten is counted again. The whole file is ignored unless its version line, every
//! entry and its closing line (entry count and an FNV-1a checksum of everything before it) are right,
//! so a torn or corrupt cache is rebuilt, never served.
//!
//! Parsing and formatting are pure; `load` and `save` do the I/O.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// In the maildrop's top directory, beside the lock file, so that it is never listed as a message.
pub const CACHE_FILE: &str = ".poplar.cache";
const TEMP_FILE: &str = ".poplar.cache.tmp";
const VERSION_LINE: &[u8] = b"poplar-maildir-cache 1\n";
/// A cache larger than this is not read: 100,000 entries take about 6 MB.
const MAX_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// What must not have changed since a message was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

/// The entries of a cache file, by base name.
#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<Box<[u8]>, (Stamp, u64)>,
}

impl Cache {
    /// Reads the cache of the maildrop at `root`; missing, unreadable or corrupt gives an empty cache.
    pub fn load(root: &Path) -> Cache {
        let path = root.join(CACHE_FILE);
        let mut bytes = Vec::new();
        let read = File::open(&path).and_then(|f| f.take(MAX_CACHE_BYTES).read_to_end(&mut bytes));
        match read {
            Ok(_) => parse(&bytes).unwrap_or_else(|| {
                log::debug!("{}: corrupt, rebuilt", path.display());
                Cache::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Cache::default(),
            Err(e) => {
                log::debug!("{}: {e}; rebuilt", path.display());
                Cache::default()
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The octets counted for `base` when its file had `stamp`; `None` if unknown or changed since.
    pub fn get(&self, base: &[u8], stamp: Stamp) -> Option<u64> {
        match self.entries.get(base) {
            Some((s, octets)) if *s == stamp => Some(*octets),
            _ => None,
        }
    }
}

/// Replaces the cache of the maildrop at `root` with `entries` (base name, stamp, octets): written to
/// a temporary file and renamed over the old one, so a reader sees the old cache or the new, whole.
/// No fsync: a cache lost or torn by a crash fails its checks and is rebuilt, which costs one slow login.
pub fn save<'a>(root: &Path, entries: impl Iterator<Item = (&'a [u8], Stamp, u64)>) -> io::Result<()> {
    let text = format(entries);
    let temp = root.join(TEMP_FILE);
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
    file.write_all(&text)?;
    drop(file);
    fs::rename(&temp, root.join(CACHE_FILE))
}

/// The file for `entries`. Base names holding a newline cannot be written in this line format and are
/// left out: they are simply counted again.
pub fn format<'a>(entries: impl Iterator<Item = (&'a [u8], Stamp, u64)>) -> Vec<u8> {
    let mut out = VERSION_LINE.to_vec();
    let mut count = 0u64;
    for (base, s, octets) in entries {
        if base.is_empty() || base.contains(&b'\n') {
            continue;
        }
        // `write!` to a Vec cannot fail.
        let _ = write!(out, "{} {} {} {} {octets} ", s.ino, s.size, s.mtime, s.mtime_nsec);
        out.extend_from_slice(base);
        out.push(b'\n');
        count += 1;
    }
    let sum = fnv1a(&out);
    let _ = writeln!(out, "end {count} {sum:016x}");
    out
}

/// Parses a cache file; `None` unless every part of it checks out.
pub fn parse(bytes: &[u8]) -> Option<Cache> {
    let body = bytes.strip_prefix(VERSION_LINE)?;
    let trailer_at = VERSION_LINE.len() + body.strip_suffix(b"\n")?.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (checked, trailer) = bytes.split_at(trailer_at);
    let trailer = std::str::from_utf8(trailer.strip_suffix(b"\n")?).ok()?;
    let mut words = trailer.split(' ');
    let (Some("end"), Some(count), Some(sum), None) = (words.next(), words.next(), words.next(), words.next()) else {
        return None;
    };
    if sum.len() != 16 || u64::from_str_radix(sum, 16).ok()? != fnv1a(checked) {
        return None;
    }
    let mut entries = HashMap::new();
    for line in checked[VERSION_LINE.len()..].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let (base, stamp, octets) = parse_entry(line)?;
        entries.insert(base.into(), (stamp, octets));
    }
    (entries.len() as u64 == count.parse::<u64>().ok()?).then_some(Cache { entries })
}

/// `ino size mtime mtime_nsec octets base-name`.
fn parse_entry(line: &[u8]) -> Option<(&[u8], Stamp, u64)> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let mut number = || -> Option<i64> {
        let f = fields.next()?;
        // Digits only, with a leading '-' allowed (an mtime before 1970); `parse` alone takes '+'.
        let digits = f.strip_prefix(b"-").unwrap_or(f);
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(f).ok()?.parse().ok()
    };
    let (ino, size, mtime, mtime_nsec, octets) = (number()?, number()?, number()?, number()?, number()?);
    let base = fields.next().filter(|b| !b.is_empty())?;
    let unsigned = |n: i64| u64::try_from(n).ok();
    let stamp = Stamp { ino: unsigned(ino)?, size: unsigned(size)?, mtime, mtime_nsec };
    Some((base, stamp, unsigned(octets)?))
}

/// FNV-1a, 64 bits: catches torn writes and stray edits; the cache guards against accidents, not attackers
/// (only the maildrop's owner can write it, and that owner can change the messages themselves).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u64) -> Stamp {
        Stamp { ino: n, size: n * 10, mtime: 1_700_000_000 + n as i64, mtime_nsec: 5 }
    }

    fn sample() -> Vec<u8> {
        let entries: [(&[u8], Stamp, u64); 3] =
            [(b"1.M1P1.host", stamp(1), 12), (b"2 with space", stamp(2), 0), (b"3,W=5", stamp(3), 5)];
        format(entries.into_iter())
    }

    #[test]
    fn round_trips() {
        let cache = parse(&sample()).expect("valid");
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(b"1.M1P1.host", stamp(1)), Some(12));
        assert_eq!(cache.get(b"2 with space", stamp(2)), Some(0));
        assert_eq!(cache.get(b"3,W=5", stamp(3)), Some(5));
        assert!(parse(&format(std::iter::empty())).expect("valid").is_empty());
    }

    #[test]
    fn a_changed_file_is_not_served() {
        let cache = parse(&sample()).unwrap();
        let s = stamp(1);
        let changed = [
            Stamp { ino: 99, ..s },
            Stamp { size: 11, ..s },
            Stamp { mtime: s.mtime + 1, ..s },
            Stamp { mtime_nsec: 6, ..s },
        ];
        for c in changed {
            assert_eq!(cache.get(b"1.M1P1.host", c), None, "{c:?}");
        }
        assert_eq!(cache.get(b"1.M1P1", s), None);
    }

    #[test]
    fn leaves_out_names_with_newlines() {
        let entries: [(&[u8], Stamp, u64); 2] = [(b"a\nb", stamp(1), 1), (b"ok", stamp(2), 2)];
        let cache = parse(&format(entries.into_iter())).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(b"ok", stamp(2)), Some(2));
    }

    #[test]
    fn rejects_every_damaged_file() {
        let good = sample();
        let text = String::from_utf8(good.clone()).unwrap();
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"poplar-maildir-cache 2\n".to_vec(),
            text.replace("poplar-maildir-cache 1", "poplar-maildir-cache 2").into_bytes(),
            text.replace(" 12 1.M1P1", " 13 1.M1P1").into_bytes(),
            text.replace("end 3", "end 2").into_bytes(),
            text.replace("end 3", "end 3 x").into_bytes(),
            good[..good.len() - 1].to_vec(),
        ];
        // Every truncation, as a crash could leave without the rename.
        cases.extend((0..good.len()).map(|n| good[..n].to_vec()));
        for bad in cases {
            assert!(parse(&bad).is_none(), "{:?}", String::from_utf8_lossy(&bad));
        }
    }

    #[test]
    fn rejects_bad_numbers_even_with_a_matching_checksum() {
        for line in ["+1 2 3 4 5 x", "1 2 3 4 -5 x", "1 2 3 4 5", "1 2 3 4 5 ", "a 2 3 4 5 x", "-1 2 3 4 5 x"] {
            let mut body = VERSION_LINE.to_vec();
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
            let sum = fnv1a(&body);
            body.extend_from_slice(format!("end 1 {sum:016x}\n").as_bytes());
            assert!(parse(&body).is_none(), "{line}");
        }
    }

    #[test]
    fn saves_atomically_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cache::load(dir.path()).is_empty());
        let entries: [(&[u8], Stamp, u64); 1] = [(b"m", stamp(7), 70)];
        save(dir.path(), entries.into_iter()).unwrap();
        assert!(!dir.path().join(TEMP_FILE).exists());
        assert_eq!(Cache::load(dir.path()).get(b"m", stamp(7)), Some(70));
        fs::write(dir.path().join(CACHE_FILE), b"garbage").unwrap();
        assert!(Cache::load(dir.path()).is_empty());
    }
}
