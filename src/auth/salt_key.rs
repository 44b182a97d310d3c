//! The secret that keys the SCRAM salts poplar derives (for `{PLAIN}` users and for names that cannot do
//! SCRAM): read from the `scram-salt-key` file, or drawn at random once per process. This file owns
//! reading and checking that file and the derivation of a salt from a name; the keys made with the salt
//! are `scram`'s.
//!
//! The key must be something a client cannot guess. A salt is sent to anyone who starts an AUTH
//! SCRAM-SHA-256 exchange, before any proof, so a key made from guessable data (the passwd-file's
//! contents, say, whose one `{PLAIN}` line is a user name and a password) lets a client test guesses at
//! that data offline, two HMACs each, against the salts it was sent.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::libc;

use super::scram::{KEY_LEN, SALT_LEN, hmac};

/// The fewest octets a key file may hold: as many as the key made from it, 256 bits of secret when they
/// come from `head -c 32 /dev/urandom`.
pub const MIN_KEY_FILE_LEN: usize = 32;

/// The most octets read from a key file. A key needs 32; this many is some other file named by mistake
/// (a log, a mailbox), which is refused rather than read whole.
pub const MAX_KEY_FILE_LEN: u64 = 4096;

/// What the HMAC that makes the key from the file's contents is keyed with: keys made for other uses
/// from the same file (there are none today) would differ from this one.
const LABEL: &[u8] = b"poplar SCRAM-SHA-256 salt key";

/// The key of the derived salts. Its `Debug` says nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SaltKey([u8; KEY_LEN]);

/// A key file that cannot be used: `FILE: problem`.
#[derive(Debug)]
pub struct SaltKeyError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for SaltKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display().to_string();
        write!(f, "{}: {}", crate::config::OneLine(&path), self.problem)
    }
}

impl std::error::Error for SaltKeyError {}

impl SaltKey {
    /// The key a key file's `contents` give: HMAC-SHA-256 of them. Pure; every process that reads the
    /// same file derives the same salts.
    pub fn from_contents(contents: &[u8]) -> SaltKey {
        SaltKey(hmac(LABEL, contents))
    }

    /// Reads the key file at `path`. Refused: a file that cannot be read, is not a regular file, is
    /// owned by another user than root, the server's effective user or `also_owner` (the `--user`
    /// account, which must be able to read it again on SIGHUP), is readable or writable by group or
    /// others (a user who can read it can compute every derived salt, one who can write it can choose
    /// them), holds fewer than [`MIN_KEY_FILE_LEN`] octets or more than [`MAX_KEY_FILE_LEN`]. The checks
    /// are made on the descriptor read, so they describe what was read; it is opened without blocking,
    /// so a FIFO by that name cannot hang the server.
    pub fn load(path: &Path, also_owner: Option<u32>) -> Result<SaltKey, SaltKeyError> {
        let error = |problem: String| SaltKeyError {
            path: path.to_path_buf(),
            problem,
        };
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| error(e.to_string()))?;
        let meta = file.metadata().map_err(|e| error(e.to_string()))?;
        if !meta.is_file() {
            return Err(error("not a regular file".to_string()));
        }
        let owner = meta.uid();
        if owner != 0 && owner != nix::unistd::geteuid().as_raw() && Some(owner) != also_owner {
            return Err(error(format!(
                "owned by uid {owner}, not by root or the server's user: its owner could read or \
                 replace the key"
            )));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o066 != 0 {
            return Err(error(format!(
                "readable or writable by group or others (mode {mode:04o}); chmod 600 it"
            )));
        }
        let mut contents = Vec::new();
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut contents)
            .map_err(|e| error(e.to_string()))?;
        if contents.len() < MIN_KEY_FILE_LEN {
            return Err(error(format!(
                "{} octets, fewer than the {MIN_KEY_FILE_LEN} a key needs \
                 (head -c 32 /dev/urandom > FILE makes one)",
                contents.len()
            )));
        }
        if contents.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(error(format!(
                "larger than {MAX_KEY_FILE_LEN} octets, not a key file"
            )));
        }
        Ok(SaltKey::from_contents(&contents))
    }

    /// The key without a key file: 32 random octets, drawn once per process, so the salts stay the
    /// same for a standalone server's life (reloads included) but change with every connection under
    /// inetd, where each connection is a process.
    pub fn per_process() -> SaltKey {
        static KEY: OnceLock<[u8; KEY_LEN]> = OnceLock::new();
        SaltKey(*KEY.get_or_init(|| {
            let mut key = [0u8; KEY_LEN];
            // Without the OS's randomness anyone could compute the salts, as from a guessable key.
            // Drawn when the services are built, at start-up (and, under inetd, before the session):
            // no session is cut off by the exit.
            if let Err(e) = getrandom::fill(&mut key) {
                log::error!("getrandom: {e}: no secret key for the SCRAM salts; stopping");
                eprintln!("poplar: getrandom: {e}: no secret key for the SCRAM salts");
                std::process::exit(1);
            }
            key
        }))
    }

    /// The salt of a user without a stored one: HMAC-SHA-256 of the name under this key, cut to
    /// [`SALT_LEN`]. Stable across attempts (a salt that changed would mark the name as unknown), not
    /// computable by a client, and the same for a name whichever user database answers.
    pub fn salt(&self, user: &[u8]) -> Vec<u8> {
        hmac(&self.0, user)[..SALT_LEN].to_vec()
    }
}

impl fmt::Debug for SaltKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn key_file(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn salts_are_stable_per_name_and_differ_between_names_and_keys() {
        let key = SaltKey::from_contents(&[7u8; 32]);
        assert_eq!(key.salt(b"alice"), key.salt(b"alice"));
        assert_ne!(key.salt(b"alice"), key.salt(b"Alice"));
        assert_eq!(key.salt(b"").len(), SALT_LEN);
        assert_ne!(
            key.salt(b"alice"),
            SaltKey::from_contents(&[8u8; 32]).salt(b"alice")
        );
    }

    /// Two processes that read the same key file derive the same salts: two loads stand for them.
    #[test]
    fn a_key_file_gives_the_same_salts_to_every_load() {
        let dir = tempfile::tempdir().unwrap();
        let secret: Vec<u8> = (0..32).map(|i| i * 7 + 3).collect();
        let path = key_file(dir.path(), "key", &secret, 0o600);
        let first = SaltKey::load(&path, None).unwrap();
        let second = SaltKey::load(&path, None).unwrap();
        assert_eq!(first.salt(b"alice"), second.salt(b"alice"));
        assert_eq!(first.salt(b"nobody"), second.salt(b"nobody"));
        assert_ne!(first.salt(b"alice"), second.salt(b"nobody"));
        // Owner-only read, or longer than the minimum, is as good.
        let path = key_file(
            dir.path(),
            "ro",
            &[secret.as_slice(), b"\n"].concat(),
            0o400,
        );
        assert_ne!(SaltKey::load(&path, None).unwrap(), first);
        // The random key is not the file's.
        assert_ne!(SaltKey::per_process(), first);
        assert_eq!(format!("{first:?}"), "SaltKey(..)");
    }

    #[test]
    fn bad_key_files_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let secret = [9u8; 32];
        let cases = [
            (
                key_file(d, "short", &secret[..31], 0o600),
                "31 octets, fewer than the 32 a key needs (head -c 32 /dev/urandom > FILE makes one)",
            ),
            (key_file(d, "empty", b"", 0o600), "0 octets, fewer than"),
            (
                key_file(d, "group", &secret, 0o640),
                "readable or writable by group or others (mode 0640); chmod 600 it",
            ),
            (
                key_file(d, "others", &secret, 0o604),
                "readable or writable by group or others (mode 0604)",
            ),
            (
                key_file(d, "group-writable", &secret, 0o620),
                "readable or writable by group or others (mode 0620)",
            ),
            (
                key_file(d, "big", &[1u8; 4097], 0o600),
                "larger than 4096 octets, not a key file",
            ),
            (d.join("missing"), "No such file or directory"),
            (d.to_path_buf(), "not a regular file"),
        ];
        for (path, want) in cases {
            let e = SaltKey::load(&path, None).unwrap_err().to_string();
            let prefix = format!("{}: ", path.display());
            assert!(e.starts_with(&prefix) && e.contains(want), "{e}");
        }
        // Unreadable: root reads it all the same, so this is checked only where it applies.
        if !nix::unistd::geteuid().is_root() {
            let path = key_file(d, "unreadable", &secret, 0o200);
            let e = SaltKey::load(&path, None).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{}: Permission denied", path.display())),
                "{e}"
            );
        }
        // Executable by others is not reading it: accepted.
        assert!(SaltKey::load(&key_file(d, "x", &secret, 0o701), None).is_ok());
        // A FIFO by the name is refused at once, not waited on (bounded: the load runs in a thread).
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (done, loaded) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(SaltKey::load(&fifo, None).map(drop)).unwrap());
        let e = loaded
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the load of a FIFO blocked")
            .unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    /// A key file of another user is refused: its owner could read or replace the key. Root's, the
    /// server's own user's, and the `--user` account's are taken. Needs root, to give a file away.
    #[test]
    fn a_key_file_of_another_user_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("a_key_file_of_another_user_is_refused: needs root, skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), "key", &[7u8; 32], 0o600);
        assert!(SaltKey::load(&path, None).is_ok(), "root's");
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let e = SaltKey::load(&path, None).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534, not by root"), "{e}");
        assert!(
            SaltKey::load(&path, Some(65534)).is_ok(),
            "the --user account's"
        );
    }
}
