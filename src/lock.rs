//! Locks as RAII guards: the session's exclusive `flock` (and, for mbox, the delivery agents' locks).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// An exclusive `flock` held for the session; released when dropped (or by the kernel if the process dies).
pub struct SessionLock {
    _lock: Flock<File>,
}

/// Result of trying to take a session lock without waiting.
pub enum TryLock {
    Acquired(SessionLock),
    Busy,
}

impl SessionLock {
    /// Takes an exclusive non-blocking `flock` on `path`, creating it (mode 0600) if needed.
    pub fn try_acquire(path: &Path) -> io::Result<TryLock> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(TryLock::Acquired(SessionLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(TryLock::Busy),
            Err((_, errno)) => Err(io::Error::from(errno)),
        }
    }
}
