//! Locks as RAII guards: the session's exclusive `flock` on a lock file, and for mbox files the delivery
//! agents' locks (an fcntl lock on the mbox plus a `PATH.lock` dotlock). Which file to lock is the
//! backends' business; this module only knows how.

use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, Flock, FlockArg, OFlag, fcntl, openat};
use nix::sys::signal::kill;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

/// How a session lock file is opened: not through a symlink, not waiting on a FIFO (whose open waits
/// for a writer, for ever), and never becoming the daemon's controlling terminal (a user's symlink to a
/// pseudo-terminal they hold would otherwise let them send the server SIGINT with a keystroke).
const LOCK_FILE_FLAGS: OFlag = OFlag::O_NOFOLLOW
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_NOCTTY);

/// An exclusive `flock` held for the session; released when dropped (or by the kernel if the process dies).
pub struct SessionLock {
    lock: Flock<File>,
}

/// Result of trying to take a session lock without waiting.
pub enum TryLock {
    Acquired(SessionLock),
    Busy,
}

impl SessionLock {
    /// Takes an exclusive non-blocking `flock` on `path`, creating it (mode 0600) if needed.
    ///
    /// The lock file lies where the maildrop's owner may write: what has its name is opened as
    /// `LOCK_FILE_FLAGS` says, and must be a regular file.
    pub fn try_acquire(path: &Path) -> io::Result<TryLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(LOCK_FILE_FLAGS.bits())
            .open(path)?;
        SessionLock::try_lock(file)
    }

    /// `try_acquire` for the file `name` in the directory `dir`: the lock is then the one in that
    /// directory, whatever its path names by now.
    pub fn try_acquire_at(dir: impl AsFd, name: &CStr) -> io::Result<TryLock> {
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_CLOEXEC | LOCK_FILE_FLAGS;
        let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600))?;
        SessionLock::try_lock(File::from(fd))
    }

    fn try_lock(file: File) -> io::Result<TryLock> {
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "session lock file is not a regular file",
            ));
        }
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(TryLock::Acquired(SessionLock { lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(TryLock::Busy),
            Err((_, errno)) => Err(io::Error::from(errno)),
        }
    }

    /// `try_acquire`, retried for up to `wait` while the lock is busy: a session that just answered
    /// QUIT may still hold it for the work it does after its reply.
    pub fn acquire_within(path: &Path, wait: Duration) -> io::Result<TryLock> {
        retry_within(wait, || SessionLock::try_acquire(path))
    }

    /// `try_acquire_at`, retried as `acquire_within` does.
    pub fn acquire_within_at(dir: impl AsFd, name: &CStr, wait: Duration) -> io::Result<TryLock> {
        retry_within(wait, || SessionLock::try_acquire_at(dir.as_fd(), name))
    }
}

/// Runs `attempt` until it does not find the lock busy or `wait` has passed.
fn retry_within(
    wait: Duration,
    mut attempt: impl FnMut() -> io::Result<TryLock>,
) -> io::Result<TryLock> {
    let started = Instant::now();
    loop {
        match attempt()? {
            TryLock::Busy if started.elapsed() < wait => thread::sleep(SESSION_LOCK_RETRY),
            other => return Ok(other),
        }
    }
}

impl SessionLock {
    /// Sets the lock file's times to now and returns its metadata (see `touch`).
    pub fn touch(&self) -> io::Result<fs::Metadata> {
        touch(&self.lock)
    }
}

/// Sets `file`'s times to now and returns its metadata: its change time is then the file system's
/// clock at this moment (what `mbox::stamp` needs).
pub fn touch(file: &File) -> io::Result<fs::Metadata> {
    let now = nix::sys::time::TimeSpec::UTIME_NOW;
    nix::sys::stat::futimens(file, &now, &now)?;
    file.metadata()
}

/// How often `acquire_within` tries again.
const SESSION_LOCK_RETRY: Duration = Duration::from_millis(10);
/// How long a login waits for a maildrop's session lock before `[IN-USE]`: the session before may have
/// answered QUIT and still be tidying up (an mbox's recovery file of tens of MB to remove, its index to
/// write), or not yet have seen its client's connection close; a client reconnecting at once should
/// not be taken for a concurrent session.
pub const SESSION_LOCK_WAIT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------------------
// Delivery-agent locks for mbox files.
//
// Debian policy (section 11.6) and its delivery agents (procmail, Postfix local, Exim, dovecot-lda) lock a
// mailbox with an fcntl lock on the file and a `PATH.lock` dotlock, fcntl first. On Linux `flock` does not
// exclude fcntl locks, so we take both of theirs, in their order. Classic fcntl locks belong to the process:
// two session threads of poplar would both "own" the same lock. Open-file-description locks
// (`F_OFD_SETLK`) belong to one open of the file, so they separate our own threads and still conflict with
// the agents' classic fcntl locks.
// ---------------------------------------------------------------------------------------------------------

/// How long we wait for a delivery agent to finish before giving up with `[SYS/TEMP]`: long enough for
/// one delivery of a large message, short enough that the client does not time out first.
pub const DELIVERY_LOCK_WAIT: Duration = Duration::from_secs(10);
/// A dotlock older than this was left by a dead program (procmail and dotlockfile use the same kind of
/// limit); we remove it. Holders that keep a lock longer refresh it (`DeliveryLock::refresh`).
pub const DOTLOCK_STALE: Duration = Duration::from_secs(5 * 60);
/// How often a held dotlock's mtime is refreshed during long operations: well within `DOTLOCK_STALE`.
pub const DOTLOCK_REFRESH: Duration = Duration::from_secs(60);
/// Poll interval while waiting for either lock: a bounded wait needs the non-blocking calls.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// The fcntl (OFD) lock and the dotlock on one mbox, held together; released (dotlock removed, fcntl
/// lock dropped) when dropped.
pub struct DeliveryLock {
    // Field order is drop order: the dotlock goes first, the fcntl lock last (reverse of taking them).
    dot: DotLock,
    _ofd: OfdLock,
}

impl DeliveryLock {
    /// Takes the write lock on `file` (an open of the mbox at `path`) then the dotlock `PATH.lock`,
    /// waiting at most `wait` in all. Fails with `ErrorKind::TimedOut` when an agent holds them longer.
    ///
    /// The fcntl lock is not held while waiting for the dotlock: agents that take the dotlock first
    /// and then wait for the fcntl lock (procmail does) would otherwise wait for us while we wait for
    /// them, until our deadline (seen under load: every UPDATE in the window refused).
    pub fn acquire(path: &Path, file: &File, wait: Duration) -> io::Result<DeliveryLock> {
        let deadline = Instant::now() + wait;
        let dotlock = dotlock_path(path);
        loop {
            let ofd = OfdLock::acquire(file, deadline)?;
            if let Some(dot) = DotLock::attempt(&dotlock)? {
                return Ok(DeliveryLock { dot, _ofd: ofd });
            }
            drop(ofd);
            if Instant::now() >= deadline {
                return Err(timed_out("mbox dotlock held by another program"));
            }
            thread::sleep(RETRY_INTERVAL);
        }
    }

    /// Keeps the dotlock fresh during a long operation; cheap when called often. Takes `&self` so that
    /// the threads of one operation (UPDATE's rescan and its copy to the recovery file) can share it.
    pub fn refresh(&self) -> io::Result<()> {
        self.dot.refresh()
    }
}

/// `PATH.lock`, the dotlock name every agent agrees on.
pub fn dotlock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// An exclusive whole-file OFD lock on a duplicate of the caller's descriptor (same open file
/// description); explicitly unlocked when dropped, since the caller's descriptor stays open.
struct OfdLock {
    file: File,
}

impl OfdLock {
    fn acquire(file: &File, deadline: Instant) -> io::Result<OfdLock> {
        let file = file.try_clone()?;
        loop {
            match fcntl(
                &file,
                FcntlArg::F_OFD_SETLK(&whole_file(libc_lock::F_WRLCK)),
            ) {
                Ok(_) => return Ok(OfdLock { file }),
                Err(Errno::EAGAIN | Errno::EACCES) if Instant::now() < deadline => {
                    thread::sleep(RETRY_INTERVAL)
                }
                Err(Errno::EAGAIN | Errno::EACCES) => {
                    return Err(timed_out("mbox fcntl lock held by another program"));
                }
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(io::Error::from(errno)),
            }
        }
    }
}

impl Drop for OfdLock {
    fn drop(&mut self) {
        let _ = fcntl(
            &self.file,
            FcntlArg::F_OFD_SETLK(&whole_file(libc_lock::F_UNLCK)),
        );
    }
}

mod libc_lock {
    pub use nix::libc::{F_UNLCK, F_WRLCK, SEEK_SET, c_short, flock};
}

/// A lock record covering the whole file, now and as it grows (`l_len` 0), as the agents take it.
/// `l_pid` must be 0 for OFD locks.
fn whole_file(kind: i32) -> libc_lock::flock {
    // SAFETY: `flock` is a plain C struct of integers; all-zero is a valid value.
    let mut lock: libc_lock::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc_lock::c_short;
    lock.l_whence = libc_lock::SEEK_SET as libc_lock::c_short;
    lock
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// A `PATH.lock` dotlock we created. Removed when dropped, if it is still ours.
struct DotLock {
    path: PathBuf,
    /// Our lock file, kept open to refresh its mtime and to recognise it (inode) before removing it.
    file: File,
    touched: Mutex<Instant>,
}

/// Makes temporary names unique between the threads of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DotLock {
    /// The dotlock if it can be had now: free, or stale and removed; `None` while a live holder has it.
    fn attempt(path: &Path) -> io::Result<Option<DotLock>> {
        if let Some(lock) = DotLock::try_create(path)? {
            return Ok(Some(lock));
        }
        if !(is_stale(path) || holder_is_dead(path)) {
            return Ok(None);
        }
        log::warn!("{}: removing stale dotlock", path.display());
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => DotLock::try_create(path),
        }
    }

    /// One attempt, NFS-safe: create a uniquely named file with O_EXCL, hard-link it to the lock name,
    /// and trust the link count rather than link(2)'s return value (which NFS may lose on a retransmit).
    fn try_create(path: &Path) -> io::Result<Option<DotLock>> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp = path.as_os_str().to_owned();
        temp.push(format!(".{}.{}", std::process::id(), n));
        let temp = PathBuf::from(temp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temp)?;
        // Our pid lets the next poplar remove the lock at once should we die holding it; an empty lock
        // (procmail's kind) only goes stale with age. On a full disk the write fails: the lock is still
        // taken, so that mail can be read while the disk is full, and the risk is said.
        if let Err(e) =
            io::Write::write_all(&mut file, format!("{}\n", std::process::id()).as_bytes())
        {
            log::warn!(
                "{}: cannot write our pid into the dotlock ({e}): should poplar die holding it, it \
                 would look live for {} minutes",
                path.display(),
                DOTLOCK_STALE.as_secs() / 60
            );
        }
        let linked = fs::hard_link(&temp, path);
        let ours = file.metadata().map(|m| m.nlink() == 2);
        let _ = fs::remove_file(&temp);
        match (ours, linked) {
            (Ok(true), _) => Ok(Some(DotLock {
                path: path.to_path_buf(),
                file,
                touched: Mutex::new(Instant::now()),
            })),
            (_, Err(e)) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            (Err(e), _) => Err(e),
            _ => Ok(None),
        }
    }

    fn refresh(&self) -> io::Result<()> {
        // A poisoned lock only means a panic elsewhere while it was held; the instant is still usable.
        let mut touched = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        if touched.elapsed() >= DOTLOCK_REFRESH {
            self.file.set_modified(SystemTime::now())?;
            *touched = Instant::now();
        }
        Ok(())
    }
}

fn is_stale(path: &Path) -> bool {
    match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(mtime) => SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age > DOTLOCK_STALE),
        Err(_) => false,
    }
}

/// Whether the dotlock names, as its holder, a process of this host that no longer exists (a crashed
/// poplar, or a dotlockfile user): then it need not age for `DOTLOCK_STALE`, as liblockfile also judges.
/// Locks holding no pid (procmail writes none) only go stale by age. On a mail spool shared over NFS
/// this assumes pids name local processes, as liblockfile does.
fn holder_is_dead(path: &Path) -> bool {
    use std::io::Read;
    // The dotlock lies where others may write (a user's own mbox directory): opened as the session
    // lock is, and only its first octets read, which is all a pid takes.
    let Ok(file) = OpenOptions::new()
        .read(true)
        .custom_flags(LOCK_FILE_FLAGS.bits())
        .open(path)
    else {
        return false;
    };
    if !file.metadata().is_ok_and(|meta| meta.is_file()) {
        return false;
    }
    let mut head = Vec::with_capacity(32);
    if io::Read::take(&file, 32).read_to_end(&mut head).is_err() {
        return false;
    }
    match std::str::from_utf8(&head)
        .unwrap_or("")
        .trim()
        .parse::<i32>()
    {
        Ok(pid) if pid > 0 => kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH),
        _ => false,
    }
}

/// Whether `path` (not followed if a symlink) names the file `held` is open on: false when it names
/// nothing or another file.
fn names(path: &Path, held: &File) -> io::Result<bool> {
    let held = held.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == held.dev() && named.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        // Another program may have judged our lock stale and replaced it: remove only our own inode.
        if names(&self.path, &self.file).unwrap_or(false) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbox(dir: &tempfile::TempDir) -> (PathBuf, File) {
        let path = dir.path().join("user");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap();
        (path, file)
    }

    const SHORT: Duration = Duration::from_millis(150);

    #[test]
    fn session_lock_excludes_a_second_session() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = SessionLock::try_acquire(&path).unwrap();
        assert!(matches!(held, TryLock::Acquired(_)));
        assert!(matches!(
            SessionLock::try_acquire(&path).unwrap(),
            TryLock::Busy
        ));
        drop(held);
        assert!(matches!(
            SessionLock::try_acquire(&path).unwrap(),
            TryLock::Acquired(_)
        ));
    }

    #[test]
    fn delivery_lock_excludes_another_thread_then_releases() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = mbox(&dir);
        let held = DeliveryLock::acquire(&path, &file, SHORT).unwrap();
        assert!(dotlock_path(&path).exists());
        let other = thread::scope(|s| {
            s.spawn(|| {
                let file = File::options().read(true).write(true).open(&path).unwrap();
                DeliveryLock::acquire(&path, &file, SHORT)
                    .err()
                    .map(|e| e.kind())
            })
            .join()
            .unwrap()
        });
        assert_eq!(other, Some(io::ErrorKind::TimedOut));
        drop(held);
        assert!(!dotlock_path(&path).exists());
        DeliveryLock::acquire(&path, &file, SHORT).unwrap();
    }

    /// A delivery agent's classic (per-process) fcntl lock blocks us: OFD and classic locks conflict.
    /// An agent that takes the dotlock first and then waits for the fcntl lock (procmail's order) and
    /// us taking them the other way round: neither waits for the other until a deadline.
    #[test]
    fn an_agent_taking_the_locks_in_the_other_order_is_not_deadlocked() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = mbox(&dir);
        let dot = dotlock_path(&path);
        let agent_has_dotlock = std::sync::Arc::new(std::sync::Barrier::new(2));
        let agent = {
            let (path, dot, barrier) = (path.clone(), dot.clone(), agent_has_dotlock.clone());
            std::thread::spawn(move || {
                let held = DotLock::attempt(&dot).unwrap().expect("free");
                barrier.wait();
                // Give the other side time to take the fcntl lock first.
                std::thread::sleep(Duration::from_millis(200));
                let own = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .unwrap();
                let fcntl = OfdLock::acquire(&own, Instant::now() + Duration::from_secs(3));
                drop(held);
                fcntl.is_ok()
            })
        };
        agent_has_dotlock.wait();
        let ours = DeliveryLock::acquire(&path, &file, Duration::from_secs(3));
        assert!(ours.is_ok(), "{:?}", ours.err());
        drop(ours);
        assert!(
            agent.join().unwrap(),
            "the agent got the fcntl lock in time"
        );
    }

    #[test]
    fn classic_fcntl_lock_blocks_us() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = mbox(&dir);
        let agent = File::options().read(true).write(true).open(&path).unwrap();
        fcntl(&agent, FcntlArg::F_SETLK(&whole_file(libc_lock::F_WRLCK))).unwrap();
        let e = DeliveryLock::acquire(&path, &file, SHORT)
            .err()
            .expect("blocked");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            !dotlock_path(&path).exists(),
            "no dotlock taken without the fcntl lock"
        );
        fcntl(&agent, FcntlArg::F_SETLK(&whole_file(libc_lock::F_UNLCK))).unwrap();
        DeliveryLock::acquire(&path, &file, SHORT).unwrap();
    }

    #[test]
    fn dotlock_fresh_is_waited_for_stale_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = mbox(&dir);
        let lock = File::create(dotlock_path(&path)).unwrap();
        let e = DeliveryLock::acquire(&path, &file, SHORT)
            .err()
            .expect("fresh dotlock held");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        lock.set_modified(SystemTime::now() - DOTLOCK_STALE - Duration::from_secs(1))
            .unwrap();
        let held = DeliveryLock::acquire(&path, &file, SHORT).unwrap();
        assert_eq!(
            fs::read_to_string(dotlock_path(&path)).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(held);
        assert!(!dotlock_path(&path).exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["user"], "temporary link names cleaned up");
    }

    #[test]
    fn dotlock_of_a_dead_process_is_removed_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = mbox(&dir);
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        fs::write(dotlock_path(&path), format!("{}\n", gone.id())).unwrap();
        DeliveryLock::acquire(&path, &file, SHORT).unwrap();
        // A live holder (this process) is waited for.
        fs::write(dotlock_path(&path), format!("{}\n", std::process::id())).unwrap();
        let e = DeliveryLock::acquire(&path, &file, SHORT)
            .err()
            .expect("live holder");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn refresh_touches_and_drop_spares_a_replaced_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = mbox(&dir);
        let mut held = DeliveryLock::acquire(&path, &file, SHORT).unwrap();
        let old = SystemTime::now() - Duration::from_secs(600);
        held.dot.file.set_modified(old).unwrap();
        *held.dot.touched.get_mut().unwrap() -= DOTLOCK_REFRESH;
        held.refresh().unwrap();
        assert!(
            fs::metadata(dotlock_path(&path))
                .unwrap()
                .modified()
                .unwrap()
                > old
        );
        // Someone judged it stale and took it over: dropping ours must not remove theirs.
        fs::remove_file(dotlock_path(&path)).unwrap();
        fs::write(dotlock_path(&path), b"theirs").unwrap();
        drop(held);
        assert_eq!(fs::read(dotlock_path(&path)).unwrap(), b"theirs");
    }

    /// The dotlock's name is in a directory others may write to: a FIFO there is not waited on for
    /// its pid, a symlink is not followed (to a dead pid elsewhere, it would break a live lock), and a
    /// regular file gives its pid.
    #[test]
    fn a_dotlock_is_read_for_its_pid_only_when_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let dead = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            child.wait().unwrap();
            child.id()
        };
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, format!("{dead}\n")).unwrap();
        let plain = dir.path().join("plain.lock");
        fs::write(&plain, format!("{dead}\n")).unwrap();
        assert!(holder_is_dead(&plain));
        let link = dir.path().join("link.lock");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        assert!(!holder_is_dead(&link));
        let fifo = dir.path().join("fifo.lock");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let probed = fifo.clone();
        std::thread::spawn(move || tx.send(holder_is_dead(&probed)));
        let got = rx.recv_timeout(Duration::from_secs(5));
        if got.is_err() {
            let _ = OpenOptions::new().write(true).open(&fifo);
        }
        assert_eq!(got.ok(), Some(false), "a FIFO dotlock was waited on");
    }
}
