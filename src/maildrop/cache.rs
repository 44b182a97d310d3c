//! The Maildir size cache: each message's octet count (RFC 1939 section 5, as RETR sends it) remembered
//! in `.poplar.cache` at the top of the maildrop, so a second login does not read every message again;
//! and the listing itself (each message's file name in `new/` or `cur/`, in delivery order) with the
//! stamps of those two directories, so a login that finds them unchanged need not list them at all.
//! Owns the file format, its checks and its atomic replacement; `maildir/mod.rs` decides what to look up.
//! Unique-ids need no cache: they are the base name, or its MD5, computed from the listing alone (or,
//! with `maildir-uidl = dovecot`, read from `dovecot-uidlist` at every login; see `maildir_uidl.rs`).
//!
//! The cache is never trusted blindly. An entry is used only when the file it describes has the same
//! base name, inode, size and modification time (to the nanosecond) as when it was counted, so a message
//! replaced or rewritten is counted again. The whole file is ignored unless its version line, every
//! entry and its closing line (entry count and an FNV-1a checksum of everything before it) are right,
//! so a torn or corrupt cache is rebuilt, never served.
//!
//! The directory stamps stand for the listing: adding, removing or renaming a file in a directory changes
//! its modification time. A stamp is recorded only once it is [`SETTLE_SECS`] old, because file systems
//! keep coarse clocks (ext4 ticks with the scheduler) and a delivery in the same tick as our listing would
//! leave the stamp unchanged. A message rewritten in place (which Maildir forbids) keeps its directory's
//! stamp; `maildir/mod.rs` catches it when the message is opened and drops the cache.
//!
//! Parsing and formatting are pure; `load` and `save` do the I/O.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// In the maildrop's top directory, beside the lock file, so that it is never listed as a message.
pub const CACHE_FILE: &str = ".poplar.cache";
const TEMP_FILE: &str = ".poplar.cache.tmp";
/// 3: sizes from `,W=` only where the file's size allows them (2 took any `,W=`: such caches are
/// dropped, and their sizes counted again).
const VERSION_LINE: &[u8] = b"poplar-maildir-cache 3\n";
/// A directory modified less than this long before it was listed is listed again next time.
pub const SETTLE_SECS: i64 = 2;
/// A cache larger than this is not read: 100,000 entries take about 6 MB.
const MAX_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// What must not have changed since a message was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Stamp {
    pub fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }

    /// The same from `fstatat`'s answer (a Maildir listing stats names under its directory handles).
    pub fn of_stat(st: &nix::sys::stat::FileStat) -> Stamp {
        Stamp {
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        }
    }
}

/// The stamps of `new/` and `cur/` (all zero for a missing one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirStamps {
    pub new: Stamp,
    pub cur: Stamp,
}

impl DirStamps {
    /// Whether both were last modified at least [`SETTLE_SECS`] before `now` (seconds since the epoch).
    pub fn settled(&self, now: i64) -> bool {
        [self.new, self.cur]
            .iter()
            .all(|s| now.saturating_sub(s.mtime) >= SETTLE_SECS)
    }
}

/// One message: its name under the maildrop (`new/…` or `cur/…`), stamp and octets.
#[derive(Debug)]
pub struct Entry {
    /// `name` is `text[name.0..name.1]`: no allocation per entry.
    name: (usize, usize),
    pub stamp: Stamp,
    pub octets: u64,
}

/// The entries of a cache file, in delivery order.
#[derive(Debug, Default)]
pub struct Cache {
    /// The directories' stamps when they were listed, if settled.
    pub dirs: Option<DirStamps>,
    text: Vec<u8>,
    entries: Vec<Entry>,
    /// Base name → entry, built on first use: only a login that lists the directories needs it.
    by_base: OnceCell<HashMap<Box<[u8]>, usize>>,
}

impl Cache {
    /// Reads the cache of the maildrop at `root`, whose owner is `owner`; missing, unreadable, corrupt
    /// or possibly written by someone else (see `written_by_us`) gives an empty cache.
    pub fn load(root: &Path, owner: u32) -> Cache {
        let path = root.join(CACHE_FILE);
        let mut bytes = Vec::new();
        // Sized from the file first: a Vec grown from nothing read a 100-message cache (7 KB) in ten
        // reads of doubling size, a 100,000-message one (8 MB) in twenty-one; now one read, and one more
        // that finds the end.
        let read = super::open_kept_file(&path).and_then(|opened| {
            let Some((f, meta)) = opened else {
                return Ok(None);
            };
            // Its checksum is no secret: where others may create files, one of theirs would be
            // served as the listing.
            if !super::written_by_us(&meta, owner) {
                return Err(io::Error::other(
                    "not a file of the maildrop's owner, writable by no one else",
                ));
            }
            let len = meta.len().min(MAX_CACHE_BYTES);
            bytes.reserve_exact(usize::try_from(len).unwrap_or(0));
            f.take(MAX_CACHE_BYTES).read_to_end(&mut bytes).map(Some)
        });
        match read {
            Ok(Some(_)) => parse(&bytes).unwrap_or_else(|| {
                log::debug!("{}: corrupt, rebuilt", path.display());
                Cache::default()
            }),
            Ok(None) => Cache::default(),
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

    /// The entries with their names, in delivery order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries
            .iter()
            .map(|e| (&self.text[e.name.0..e.name.1], e))
    }

    /// The octets counted for `base` when its file had `stamp`; `None` if unknown or changed since.
    pub fn get(&self, base: &[u8], stamp: Stamp) -> Option<u64> {
        let by_base = self.by_base.get_or_init(|| {
            self.entries()
                .enumerate()
                .map(|(i, (name, _))| (Box::from(base_of_name(name)), i))
                .collect()
        });
        match by_base.get(base).map(|&i| &self.entries[i]) {
            Some(e) if e.stamp == stamp => Some(e.octets),
            _ => None,
        }
    }
}

/// The base name in `new/NAME` or `cur/NAME:2,FLAGS`.
fn base_of_name(name: &[u8]) -> &[u8] {
    let file = &name[4..];
    memchr::memchr(b':', file).map_or(file, |i| &file[..i])
}

/// Removes the cache of the maildrop at `root`, after a message was found changed under it.
pub fn remove(root: &Path) {
    match fs::remove_file(root.join(CACHE_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            log::debug!("{}: {e}", root.join(CACHE_FILE).display())
        }
        _ => {}
    }
}

/// A message's name under the maildrop, `new/NAME` or `cur/NAME`, in its two parts: the Maildir
/// backend keeps them apart, and joining them for the cache would cost an allocation per message.
#[derive(Debug, Clone, Copy)]
pub struct Name<'a> {
    pub dir: &'a [u8],
    pub file: &'a [u8],
}

impl Name<'_> {
    /// `new/NAME` or `cur/NAME`: one file, no newline.
    fn is_valid(&self) -> bool {
        let f = self.file;
        (self.dir == b"new" || self.dir == b"cur")
            && !f.is_empty()
            && !f.contains(&b'/')
            && !f.contains(&b'\n')
    }
}

/// A whole name, split at its first '/' (one without is left with an empty, invalid, `dir`).
impl<'a> From<&'a [u8]> for Name<'a> {
    fn from(name: &'a [u8]) -> Name<'a> {
        match memchr::memchr(b'/', name) {
            Some(i) => Name {
                dir: &name[..i],
                file: &name[i + 1..],
            },
            None => Name {
                dir: &[],
                file: name,
            },
        }
    }
}

/// Replaces the cache of the maildrop at `root` with `entries` (name under the maildrop, stamp,
/// octets): written to a temporary file and renamed over the old one, so a reader sees the old cache or
/// the new, whole. No fsync: a cache lost or torn by a crash fails its checks and is rebuilt, which
/// costs one slow login.
pub fn save<'a, N: Into<Name<'a>>>(
    root: &Path,
    dirs: Option<DirStamps>,
    entries: impl Iterator<Item = (N, Stamp, u64)>,
) -> io::Result<()> {
    let text = format(dirs, entries);
    super::replace_file(&root.join(TEMP_FILE), &root.join(CACHE_FILE), &text)
}

/// The file for `entries` (name under the maildrop, stamp, octets). Names holding a newline cannot be
/// written in this line format and are left out: they are simply counted again, and the directory
/// stamps are not recorded, so that the next login lists the directories and finds them.
pub fn format<'a, N: Into<Name<'a>>>(
    mut dirs: Option<DirStamps>,
    entries: impl Iterator<Item = (N, Stamp, u64)>,
) -> Vec<u8> {
    let mut body = Vec::new();
    let mut count = 0u64;
    for (name, s, octets) in entries {
        let name = name.into();
        if !name.is_valid() {
            dirs = None;
            continue;
        }
        let out = &mut body;
        // `write!` to a Vec cannot fail.
        let _ = write!(
            out,
            "{} {} {} {} {octets} ",
            s.ino, s.size, s.mtime, s.mtime_nsec
        );
        out.extend_from_slice(name.dir);
        out.push(b'/');
        out.extend_from_slice(name.file);
        out.push(b'\n');
        count += 1;
    }
    let mut head = VERSION_LINE.to_vec();
    match dirs {
        Some(DirStamps { new: n, cur: c }) => {
            let _ = writeln!(
                head,
                "dirs {} {} {} {} {} {} {} {}",
                n.ino, n.size, n.mtime, n.mtime_nsec, c.ino, c.size, c.mtime, c.mtime_nsec
            );
        }
        None => head.extend_from_slice(b"dirs -\n"),
    }
    // The head is put in front of the body in place: a copy of the body after the head had two of
    // them in memory at once (8 MB each for 100,000 messages), and glibc does not always give freed
    // memory back to the system. `reserve_exact`: room for the head and the trailer, or the insertion
    // itself could move the body to a larger buffer.
    body.reserve_exact(head.len() + TRAILER_MAX);
    body.splice(0..0, head);
    let sum = fnv1a(&body);
    let _ = writeln!(body, "end {count} {sum:016x}");
    body
}

/// The longest `end COUNT SUM` line: a u64 in decimal and 16 hexadecimal digits.
const TRAILER_MAX: usize = "end  \n".len() + 20 + 16;

/// Parses a cache file; `None` unless every part of it checks out.
pub fn parse(bytes: &[u8]) -> Option<Cache> {
    let body = bytes.strip_prefix(VERSION_LINE)?;
    let trailer_at = VERSION_LINE.len()
        + body
            .strip_suffix(b"\n")?
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
    let (checked, trailer) = bytes.split_at(trailer_at);
    let trailer = std::str::from_utf8(trailer.strip_suffix(b"\n")?).ok()?;
    let mut words = trailer.split(' ');
    let (Some("end"), Some(count), Some(sum), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return None;
    };
    if sum.len() != 16 || u64::from_str_radix(sum, 16).ok()? != fnv1a(checked) {
        return None;
    }
    let rest = &checked[VERSION_LINE.len()..];
    let dirs_end = memchr::memchr(b'\n', rest)?;
    let dirs = parse_dirs(&rest[..dirs_end])?;
    let mut entries = Vec::new();
    let mut at = VERSION_LINE.len() + dirs_end + 1;
    for line in checked[at..].split(|&b| b == b'\n') {
        if !line.is_empty() {
            let (name, stamp, octets) = parse_entry(line)?;
            let start = at + (line.len() - name.len());
            entries.push(Entry {
                name: (start, start + name.len()),
                stamp,
                octets,
            });
        }
        at += line.len() + 1;
    }
    let text = bytes.to_vec();
    (entries.len() as u64 == count.parse::<u64>().ok()?).then_some(Cache {
        dirs,
        text,
        entries,
        by_base: OnceCell::new(),
    })
}

/// `dirs -`, or `dirs` and the eight numbers of the two stamps.
fn parse_dirs(line: &[u8]) -> Option<Option<DirStamps>> {
    let words = line.strip_prefix(b"dirs ")?;
    if words == b"-" {
        return Some(None);
    }
    let mut fields = words.split(|&b| b == b' ');
    let mut next = || number(fields.next()?);
    let mut stamp = || {
        let (ino, size, mtime, mtime_nsec) = (next()?, next()?, next()?, next()?);
        Some(Stamp {
            ino: u64::try_from(ino).ok()?,
            size: u64::try_from(size).ok()?,
            mtime,
            mtime_nsec,
        })
    };
    let dirs = DirStamps {
        new: stamp()?,
        cur: stamp()?,
    };
    fields.next().is_none().then_some(Some(dirs))
}

/// `new/NAME` or `cur/NAME`: one file, no newline.
fn valid_name(name: &[u8]) -> bool {
    Name::from(name).is_valid()
}

/// Digits only, with a leading '-' allowed (an mtime before 1970); `parse` alone takes '+'.
fn number(f: &[u8]) -> Option<i64> {
    let digits = f.strip_prefix(b"-").unwrap_or(f);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(f).ok()?.parse().ok()
}

/// `ino size mtime mtime_nsec octets new/NAME`.
fn parse_entry(line: &[u8]) -> Option<(&[u8], Stamp, u64)> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let mut next = || number(fields.next()?);
    let (ino, size, mtime, mtime_nsec, octets) = (next()?, next()?, next()?, next()?, next()?);
    let base = fields.next().filter(|b| valid_name(b))?;
    let unsigned = |n: i64| u64::try_from(n).ok();
    let stamp = Stamp {
        ino: unsigned(ino)?,
        size: unsigned(size)?,
        mtime,
        mtime_nsec,
    };
    Some((base, stamp, unsigned(octets)?))
}

/// FNV-1a, 64 bits: catches torn writes and stray edits; the cache guards against accidents, not attackers
/// (only the maildrop's owner can write it, and that owner can change the messages themselves).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u64) -> Stamp {
        Stamp {
            ino: n,
            size: n * 10,
            mtime: 1_700_000_000 + n as i64,
            mtime_nsec: 5,
        }
    }

    fn sample() -> Vec<u8> {
        let entries: [(&[u8], Stamp, u64); 3] = [
            (b"new/1.M1P1.host", stamp(1), 12),
            (b"cur/2 with space:2,S", stamp(2), 0),
            (b"new/3,W=5", stamp(3), 5),
        ];
        format(None, entries.into_iter())
    }

    #[test]
    fn round_trips() {
        let cache = parse(&sample()).expect("valid");
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(b"1.M1P1.host", stamp(1)), Some(12));
        assert_eq!(cache.get(b"2 with space", stamp(2)), Some(0));
        assert_eq!(cache.get(b"3,W=5", stamp(3)), Some(5));
        let names: Vec<&[u8]> = cache.entries().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                &b"new/1.M1P1.host"[..],
                b"cur/2 with space:2,S",
                b"new/3,W=5"
            ]
        );
        assert!(
            parse(&format(None, std::iter::empty::<(&[u8], Stamp, u64)>()))
                .expect("valid")
                .is_empty()
        );
    }

    #[test]
    fn a_changed_file_is_not_served() {
        let cache = parse(&sample()).unwrap();
        let s = stamp(1);
        let changed = [
            Stamp { ino: 99, ..s },
            Stamp { size: 11, ..s },
            Stamp {
                mtime: s.mtime + 1,
                ..s
            },
            Stamp { mtime_nsec: 6, ..s },
        ];
        for c in changed {
            assert_eq!(cache.get(b"1.M1P1.host", c), None, "{c:?}");
        }
        assert_eq!(cache.get(b"1.M1P1", s), None);
    }

    #[test]
    fn leaves_out_names_with_newlines() {
        let entries: [(&[u8], Stamp, u64); 4] = [
            (b"new/a\nb", stamp(1), 1),
            (b"new/ok", stamp(2), 2),
            (b"tmp/x", stamp(3), 3),
            (b"new/a/b", stamp(4), 4),
        ];
        let dirs = DirStamps {
            new: stamp(8),
            cur: stamp(9),
        };
        let cache = parse(&format(Some(dirs), entries.into_iter())).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(b"ok", stamp(2)), Some(2));
        // The listing is incomplete: the next login must list the directories.
        assert_eq!(cache.dirs, None);
    }

    #[test]
    fn names_in_two_parts_are_written_as_whole_ones() {
        let name = |dir: &'static [u8], file: &'static [u8]| Name { dir, file };
        let parts = [
            (name(b"new", b"ok"), stamp(1), 1),
            (name(b"cur", b"1.M2P3.host:2,S"), stamp(2), 2),
        ];
        let whole: [(&[u8], Stamp, u64); 2] = [
            (b"new/ok", stamp(1), 1),
            (b"cur/1.M2P3.host:2,S", stamp(2), 2),
        ];
        assert_eq!(
            format(None, parts.into_iter()),
            format(None, whole.into_iter())
        );
        // The rules of whole names hold for each part.
        let dirs = DirStamps {
            new: stamp(8),
            cur: stamp(9),
        };
        for bad in [
            name(b"tmp", b"x"),
            name(b"", b"new"),
            name(b"new", b""),
            name(b"new", b"a/b"),
            name(b"cur", b"a\nb"),
            name(b"new/", b"x"),
        ] {
            let entries = [(bad, stamp(1), 1), (name(b"new", b"ok"), stamp(2), 2)];
            let cache = parse(&format(Some(dirs), entries.into_iter())).unwrap();
            assert_eq!(cache.len(), 1, "{bad:?}");
            assert_eq!(cache.dirs, None, "{bad:?}");
        }
    }

    #[test]
    fn rejects_every_damaged_file() {
        let good = sample();
        let text = String::from_utf8(good.clone()).unwrap();
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"poplar-maildir-cache 3\n".to_vec(),
            text.replace("poplar-maildir-cache 3", "poplar-maildir-cache 2")
                .into_bytes(),
            text.replace(" 12 new/1.M1P1", " 13 new/1.M1P1")
                .into_bytes(),
            text.replace("dirs -", "dirs 1 2 3 4 5 6 7 8").into_bytes(),
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
        let lines = [
            "+1 2 3 4 5 new/x",
            "1 2 3 4 -5 new/x",
            "1 2 3 4 5",
            "1 2 3 4 5 ",
            "a 2 3 4 5 new/x",
            "-1 2 3 4 5 new/x",
            "1 2 3 4 5 x",
            "1 2 3 4 5 tmp/x",
            "1 2 3 4 5 new/",
            "dirs 1 2 3 4 5 6 7",
            "dirs -1 2 3 4 5 6 7 8",
        ];
        for line in lines {
            let mut body = VERSION_LINE.to_vec();
            if !line.starts_with("dirs") {
                body.extend_from_slice(b"dirs -\n");
            }
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
            let sum = fnv1a(&body);
            let count = if line.starts_with("dirs") { 0 } else { 1 };
            body.extend_from_slice(format!("end {count} {sum:016x}\n").as_bytes());
            assert!(parse(&body).is_none(), "{line}");
        }
    }

    /// `Cache::load` for a maildrop of the tests' own user.
    fn load(root: &Path) -> Cache {
        Cache::load(root, nix::unistd::geteuid().as_raw())
    }

    #[test]
    fn saves_atomically_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let entries: [(&[u8], Stamp, u64); 1] = [(b"cur/m:2,", stamp(7), 70)];
        save(dir.path(), None, entries.into_iter()).unwrap();
        assert!(!dir.path().join(TEMP_FILE).exists());
        assert_eq!(load(dir.path()).get(b"m", stamp(7)), Some(70));
        fs::write(dir.path().join(CACHE_FILE), b"garbage").unwrap();
        assert!(load(dir.path()).is_empty());
    }

    /// A save that cannot be completed (here: the temporary name is taken by a directory, as a full disk
    /// or a quota fails the write) leaves the last cache whole and no temporary file of ours behind.
    #[test]
    fn a_failed_save_leaves_the_old_cache() {
        let dir = tempfile::tempdir().unwrap();
        let old: [(&[u8], Stamp, u64); 1] = [(b"cur/m:2,", stamp(7), 70)];
        save(dir.path(), None, old.into_iter()).unwrap();
        fs::create_dir(dir.path().join(TEMP_FILE)).unwrap();
        let new: [(&[u8], Stamp, u64); 1] = [(b"new/n", stamp(8), 80)];
        assert!(save(dir.path(), None, new.into_iter()).is_err());
        let cache = load(dir.path());
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(b"m", stamp(7)), Some(70));
        // The rename fails after the write: the written temporary file is not left behind.
        fs::remove_dir(dir.path().join(TEMP_FILE)).unwrap();
        fs::remove_file(dir.path().join(CACHE_FILE)).unwrap();
        fs::create_dir_all(dir.path().join(CACHE_FILE).join("x")).unwrap();
        assert!(save(dir.path(), None, new.into_iter()).is_err());
        assert!(!dir.path().join(TEMP_FILE).exists());
    }

    /// A cache that others may write (a maildrop whose directory others may create files in) is not
    /// read: its checksum is no secret, and its sizes and names would be served as they are.
    #[test]
    fn a_cache_others_may_write_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let entries: [(&[u8], Stamp, u64); 1] = [(b"cur/m:2,", stamp(7), 70)];
        save(dir.path(), None, entries.into_iter()).unwrap();
        assert_eq!(load(dir.path()).len(), 1);
        let cache = dir.path().join(CACHE_FILE);
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o620)).unwrap();
        assert!(load(dir.path()).is_empty());
        fs::set_permissions(&cache, fs::Permissions::from_mode(0o600)).unwrap();
        // Owned by neither the maildrop's owner nor us.
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(Cache::load(dir.path(), me).len(), 1);
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&cache, Some(65534), None).unwrap();
            assert_eq!(Cache::load(dir.path(), 65534).len(), 1, "the owner's own");
            // Root reads as root: a file of 65534 is not ours, nor the owner's when that is 1234.
            assert!(Cache::load(dir.path(), 1234).is_empty());
        }
    }

    /// Only a regular file is read: a symlink (to a cache written elsewhere) is not followed, and a FIFO
    /// (whose open would wait for a writer) neither blocks the login nor is read.
    #[test]
    fn only_a_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let entries: [(&[u8], Stamp, u64); 1] = [(b"cur/m:2,", stamp(7), 70)];
        save(elsewhere.path(), None, entries.into_iter()).unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join(CACHE_FILE),
            dir.path().join(CACHE_FILE),
        )
        .unwrap();
        assert!(load(dir.path()).is_empty());
        fs::remove_file(dir.path().join(CACHE_FILE)).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join(CACHE_FILE),
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
        let (done, wait) = std::sync::mpsc::channel();
        let root = dir.path().to_path_buf();
        std::thread::spawn(move || done.send(load(&root).is_empty()));
        let loaded = wait.recv_timeout(std::time::Duration::from_secs(5));
        // Unblock a load stuck in open(2), so the test ends either way.
        use std::os::unix::fs::OpenOptionsExt;
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(dir.path().join(CACHE_FILE));
        assert_eq!(loaded, Ok(true), "a FIFO blocked the load");
    }

    #[test]
    fn directory_stamps_round_trip_and_settle() {
        let dirs = DirStamps {
            new: stamp(1),
            cur: Stamp {
                mtime: -5,
                ..stamp(2)
            },
        };
        let entries: [(&[u8], Stamp, u64); 1] = [(b"new/m", stamp(7), 70)];
        assert_eq!(
            parse(&format(Some(dirs), entries.into_iter()))
                .unwrap()
                .dirs,
            Some(dirs)
        );
        let newest = dirs.new.mtime;
        let cases = [
            (newest, false),
            (newest + SETTLE_SECS - 1, false),
            (newest + SETTLE_SECS, true),
            (i64::MIN, false),
        ];
        for (now, settled) in cases {
            assert_eq!(dirs.settled(now), settled, "{now}");
        }
    }
}
