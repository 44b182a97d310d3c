//! What the process does with signals. Those whose default action would end every session for one
//! session's trouble are ignored, by both front ends; the standalone server turns SIGTERM, SIGINT and
//! SIGHUP into bytes on a pipe that its accept loop polls (session threads block them, see `workers`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Signals whose default action would kill every session for one session's trouble are ignored, so the
/// failing system call returns an error to that session instead: SIGPIPE (a client gone mid-write gives
/// EPIPE) and SIGXFSZ (a file size limit, `ulimit -f`, gives EFBIG during an mbox UPDATE, which rolls back).
pub fn ignore_fatal_signals() {
    ignore_signals(&[Signal::SIGPIPE, Signal::SIGXFSZ]);
}

/// Sets `signals` to be ignored, process-wide.
pub fn ignore_signals(signals: &[Signal]) {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for &signal in signals {
        // SAFETY: SIG_IGN installs no code.
        if let Err(e) = unsafe { sigaction(signal, &ignore) } {
            log::warn!("cannot ignore {signal}: {e}");
        }
    }
}

/// The signals the standalone server handles (see `SignalPipe`); a session thread blocks them all, so
/// the kernel gives them to the main thread, which waits for them. A session thread that took one would
/// see a read or write on its socket fail with EINTR (a socket timeout makes the call unrestartable even
/// under SA_RESTART), which rustls passes up from a flush, ending the session.
pub const HANDLED_SIGNALS: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// The self-pipe trick: signal handlers only write a byte, which wakes the accept loop's `poll`. SIGTERM
/// and SIGINT stop the server; SIGHUP asks for a reload.
pub struct SignalPipe {
    /// Readable when a signal has arrived: the accept loop polls it.
    pub read: OwnedFd,
    _write: OwnedFd,
}

static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; the fd stays open for the life of the process.
        unsafe { nix::libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

impl SignalPipe {
    pub fn install() -> nix::Result<SignalPipe> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        SIGNAL_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in HANDLED_SIGNALS {
            // SAFETY: the handler only calls write(2) on a descriptor it loads atomically.
            unsafe { sigaction(signal, &action) }?;
        }
        Ok(SignalPipe {
            read,
            _write: write,
        })
    }

    /// The signal that arrived, if any.
    pub fn take(&self) -> Option<Signal> {
        let mut byte = [0u8; 1];
        match nix::unistd::read(&self.read, &mut byte) {
            Ok(1) => Signal::try_from(i32::from(byte[0])).ok(),
            _ => None,
        }
    }
}
