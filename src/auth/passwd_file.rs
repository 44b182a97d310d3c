//! Dovecot's passwd-file: `user:{SCHEME}secret:uid:gid:gecos:home:shell:extra`, re-read when it changes.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Account, AuthError, Authenticator, Secret};

/// A problem in the passwd-file, naming `file:line`.
#[derive(Debug)]
pub struct PasswdError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub problem: String,
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path.display(), line, self.problem),
            None => write!(f, "{}: {}", self.path.display(), self.problem),
        }
    }
}

/// The passwd-file user database.
pub struct PasswdFile {
    _private: (),
}

impl PasswdFile {
    /// Reads and checks the whole file; any bad line is an error naming its line.
    pub fn open(path: &Path) -> Result<PasswdFile, PasswdError> {
        let _ = path;
        todo!("PasswdFile::open")
    }
    /// Number of users, for `--check-config` and start-up logs.
    pub fn user_count(&self) -> usize {
        todo!("PasswdFile::user_count")
    }
}

impl Authenticator for PasswdFile {
    fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
        let _ = (user, password);
        todo!("PasswdFile::login")
    }
    fn apop(&self, user: &[u8], timestamp: &[u8], digest: &[u8]) -> Result<Account, AuthError> {
        let _ = (user, timestamp, digest);
        todo!("PasswdFile::apop")
    }
}
