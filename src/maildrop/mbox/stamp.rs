//! Knowing, without reading it again, that an mbox is unchanged since this session scanned it, so that
//! UPDATE need not scan 100 MB again to find out.
//!
//! The kernel sets a file's change time (ctime) from its clock at every write, truncation, chmod,
//! chown and utime, and no call lets a program choose it (mail readers do set the mtime back with
//! utime, which is why popa3d's mtime check is not enough). So if the mbox's ctime, size, mtime,
//! device and inode are at UPDATE what they were when the scan began, nothing changed it in between,
//! provided no change after the scan's start can get that same ctime again. Timestamps are coarse (a
//! clock tick; a second or two on some file systems), so a change in the tick of the last one before
//! the scan would leave the ctime as it was. Hence the scan's start is marked on the file system's own
//! clock: the session lock file beside the mbox is touched before the mbox's metadata is read, and
//! the stamp counts only if the mbox's ctime is strictly earlier than the lock file's. Every later
//! change then gets a ctime no earlier than the lock file's, so a different one. (Unless the system
//! clock is stepped back past the scan in the meantime and a change lands on the very same ctime,
//! to the nanosecond where the file system keeps them, with the same size and mtime.)
//!
//! Without a stamp that counts (mail delivered during the session, a change too close to the scan,
//! messages taken from the index rather than scanned, a lock file on another file system), UPDATE scans
//! the mbox again and compares, as before. Neither way covers a program that writes the mbox in
//! place without taking the delivery locks: it could as well write during the rewrite itself.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// What an mbox's metadata said when its scan began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp of the mbox whose metadata, read before its scan, is `mbox`, if it counts: `clock` is
    /// the metadata of a file in the same directory whose times were set to now just before.
    pub fn taken(mbox: &Metadata, clock: &Metadata) -> Option<Stamp> {
        let settled = clock.dev() == mbox.dev()
            && (mbox.ctime(), mbox.ctime_nsec()) < (clock.ctime(), clock.ctime_nsec());
        settled.then(|| Stamp::of(mbox))
    }

    /// Whether the mbox whose metadata is now `meta` is the one stamped, unchanged.
    pub fn matches(&self, meta: &Metadata) -> bool {
        Stamp::of(meta) == *self
    }
}

/// Helpers for the tests here and the backend's.
#[cfg(test)]
pub(super) mod testing {
    use std::fs::{File, Metadata, OpenOptions};
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::path::Path;
    use std::thread;
    use std::time::Duration;

    use nix::sys::stat::futimens;
    use nix::sys::time::TimeSpec;

    /// Sets `file`'s times to now; returns its metadata.
    pub fn touch(file: &File) -> Metadata {
        crate::lock::touch(file).unwrap()
    }

    /// Waits (every 10 ms, at most 3 s) until a file touched now beside `path` gets a later change time
    /// than `path`'s, however coarse the file system's clock: a stamp taken from then on counts.
    pub fn settle(path: &Path) {
        let probe = File::create(path.with_extension("probe")).unwrap();
        let ctime = |m: &Metadata| (m.ctime(), m.ctime_nsec());
        for _ in 0..300 {
            if ctime(&touch(&probe)) > ctime(&std::fs::metadata(path).unwrap()) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("the clock never passed {}'s change time", path.display());
    }

    /// What a mail reader does: writes `bytes` at `offset` of `path` in place, then sets its access
    /// and modification times back to what they were.
    pub fn rewrite_keeping_times(path: &Path, offset: u64, bytes: &[u8]) {
        let before = std::fs::metadata(path).unwrap();
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, offset).unwrap();
        let atime = TimeSpec::new(before.atime(), before.atime_nsec());
        let mtime = TimeSpec::new(before.mtime(), before.mtime_nsec());
        futimens(&file, &atime, &mtime).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{rewrite_keeping_times, settle, touch};
    use super::*;
    use std::fs::{File, OpenOptions};
    use std::io::Write;
    use std::path::Path;

    /// An mbox in `dir` and a stamp of it that counts.
    fn settled_stamp(dir: &Path) -> (File, Stamp) {
        let mbox_path = dir.join("inbox");
        std::fs::write(&mbox_path, b"From a\n\nbody\n").unwrap();
        settle(&mbox_path);
        let clock = File::create(dir.join("inbox.poplar.lock")).unwrap();
        let mbox = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&mbox_path)
            .unwrap();
        let stamp = Stamp::taken(&mbox.metadata().unwrap(), &touch(&clock)).expect("settled");
        (mbox, stamp)
    }

    #[test]
    fn unchanged_mbox_matches_and_any_change_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mbox, stamp) = settled_stamp(dir.path());
        assert!(stamp.matches(&mbox.metadata().unwrap()));
        // A same-size rewrite with the mtime set back, as a mail reader does: the ctime still moves.
        let before = mbox.metadata().unwrap();
        rewrite_keeping_times(&dir.path().join("inbox"), 8, b"X");
        let after = mbox.metadata().unwrap();
        assert_eq!(
            (after.size(), after.mtime_nsec()),
            (before.size(), before.mtime_nsec())
        );
        assert!(
            !stamp.matches(&after),
            "a rewrite with its mtime restored went unnoticed"
        );
        // An append.
        let (mut mbox2, stamp2) = settled_stamp(dir.path());
        mbox2.write_all(b"From b\n\nmore\n").unwrap();
        assert!(!stamp2.matches(&mbox2.metadata().unwrap()));
    }

    #[test]
    fn mbox_changed_since_the_clock_was_set_gets_no_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let clock = File::create(dir.path().join("inbox.poplar.lock")).unwrap();
        let clock_meta = touch(&clock);
        // Changed at or after the mark: a later change could share its ctime.
        std::fs::write(dir.path().join("inbox"), b"From a\n\nbody\n").unwrap();
        let mbox = std::fs::metadata(dir.path().join("inbox")).unwrap();
        assert_eq!(Stamp::taken(&mbox, &clock_meta), None);
        // Same ctime as the mark: no stamp either.
        assert_eq!(Stamp::taken(&clock_meta, &clock_meta), None);
    }
}
