//! Fixtures shared by the Maildir unit tests.

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A maildrop with `new/`, `cur/` and `tmp/` in a temporary directory.
pub(super) fn maildir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir(dir.path().join(sub)).unwrap();
    }
    dir
}

/// Writes `root/rel` with `body` and an mtime of `secs` after the epoch.
pub(super) fn put(root: &Path, rel: &str, body: &[u8], secs: u64) {
    let path = root.join(rel);
    fs::write(&path, body).unwrap();
    let file = File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}
