//! Session threads, kept for the next session: a thread whose session ended cleanly waits a while for
//! another connection instead of exiting. Creating a thread and ending it costs more than a login's
//! protocol work: clone, a stack, the signal stack Rust maps for each thread, guard pages, and at the
//! end the unmapping of them with TLB shootdowns on the other cores (measured: 56-76 µs of CPU per
//! spawn and exit with four threads spawning at once, glibc and musl alike).
//!
//! A job says whether its thread may serve again: a session restores the thread's start-up identity
//! first (`Identity::restore`), and a thread that could not, or whose job panicked, ends. At most
//! `MAX_PARKED` threads wait, each at most `PARK_TIME`.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use nix::sys::signal::SigSet;

use crate::signals::HANDLED_SIGNALS;

/// Work for a session thread.
pub trait Work: Send + 'static {
    /// Runs on a session thread; returns whether the thread may then take another job.
    fn serve(self: Box<Self>) -> bool;

    /// Called instead of `serve`, on the caller's thread, when no thread could be had for the work
    /// (`thread::Builder::spawn` failed: out of memory, or a process limit). By default nothing.
    fn refuse(self: Box<Self>) {}
}

/// A closure is work that is never refused in words: dropping it is all.
impl<F: FnOnce() -> bool + Send + 'static> Work for F {
    fn serve(self: Box<Self>) -> bool {
        (*self)()
    }
}

pub type Job = Box<dyn Work>;

/// Threads kept waiting at most: enough for a burst of logins, few enough that an idle server holds
/// little (each keeps its touched stack pages).
const MAX_PARKED: usize = 16;

/// How long a waiting thread stays before it ends.
const PARK_TIME: Duration = Duration::from_secs(60);

/// The waiting threads, each reachable through the sending end of its own channel, with an id so that
/// a thread whose wait ran out can find and remove its entry.
static PARKED: Mutex<Vec<(u64, SyncSender<Job>)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Runs `job` on a waiting thread, or on a new one named `name` with `stack` bytes of stack. When no
/// thread can be started, the job is refused (`Work::refuse`) and the error returned.
pub fn run(mut job: Job, name: &str, stack: usize) -> std::io::Result<()> {
    loop {
        let waiting = lock().pop();
        let Some((_, to)) = waiting else { break };
        match to.try_send(job) {
            Ok(()) => return Ok(()),
            // Neither happens (a thread leaves the list before it ends, and each entry carries one
            // job), but the job is never lost: try the next thread.
            Err(TrySendError::Disconnected(back) | TrySendError::Full(back)) => job = back,
        }
    }
    start(job, name, stack)
}

/// Starts a new thread for `job`; if it cannot be started, refuses the job and returns the error.
fn start(job: Job, name: &str, stack: usize) -> std::io::Result<()> {
    // The job goes through a slot the new thread empties: when `spawn` fails, it drops its closure and
    // the job is still here, to be refused (a client told so, not just closed on).
    let slot = Arc::new(Mutex::new(Some(job)));
    let theirs = Arc::clone(&slot);
    let started = thread::Builder::new()
        .name(name.to_string())
        .stack_size(stack)
        .spawn(move || {
            let job = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(theirs);
            if let Some(job) = job {
                serve(job);
            }
        });
    match started {
        Ok(_) => Ok(()),
        Err(e) => {
            let job = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(job) = job {
                job.refuse();
            }
            Err(e)
        }
    }
}

fn serve(mut job: Job) {
    block_handled_signals();
    crate::stack::record();
    // The thread's mailbox for its whole life: a sending end goes into the list each time it waits.
    let (to, from) = mpsc::sync_channel(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    loop {
        // A panicking job has ended its session; the thread's state is not trusted after it.
        match panic::catch_unwind(AssertUnwindSafe(move || job.serve())) {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        match park(id, &to, &from) {
            Some(next) => job = next,
            None => return,
        }
    }
}

/// Not inlined: its signal set (128 octets) must not stay in `serve`'s frame, under every session's
/// stack: that pushed the deepest point of a login onto one more page of each thread's stack (idle
/// sessions measured 21.1 KiB each instead of 17.9).
#[inline(never)]
fn block_handled_signals() {
    let handled: SigSet = HANDLED_SIGNALS.into_iter().collect();
    if let Err(e) = handled.thread_block() {
        log::debug!("session thread: cannot block the handled signals: {e}");
    }
}

/// Waits for the next job; `None` when enough threads wait already or the wait ran out.
fn park(id: u64, to: &SyncSender<Job>, from: &Receiver<Job>) -> Option<Job> {
    {
        let mut parked = lock();
        if parked.len() >= MAX_PARKED {
            return None;
        }
        parked.push((id, to.clone()));
    }
    if let Ok(job) = from.recv_timeout(PARK_TIME) {
        return Some(job);
    }
    let mut parked = lock();
    if let Some(i) = parked.iter().position(|(p, _)| *p == id) {
        parked.swap_remove(i);
        return None;
    }
    drop(parked);
    // `run` took this thread's entry just now: its job is on the way.
    from.recv().ok()
}

/// The list stays consistent whatever a panicking holder did (only push, pop and remove touch it).
fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, SyncSender<Job>)>> {
    PARKED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    /// Which thread ran each job, reported on a channel.
    fn job(report: mpsc::Sender<thread::ThreadId>, again: bool) -> Job {
        Box::new(move || {
            report.send(thread::current().id()).unwrap();
            again
        })
    }

    /// Waits (bounded) until at least `n` threads are parked.
    fn parked_at_least(n: usize) -> bool {
        for _ in 0..500 {
            if lock().len() >= n {
                return true;
            }
            thread::sleep(Duration::from_millis(2));
        }
        false
    }

    /// A session thread leaves the server's signals to the main thread. (On a thread of its own, through
    /// `serve`, not `run`: the shared list of parked threads belongs to the test below.)
    #[test]
    fn session_threads_block_the_handled_signals() {
        let (report, seen) = channel();
        let job: Job = Box::new(move || {
            let mask = SigSet::thread_get_mask().unwrap();
            report
                .send(HANDLED_SIGNALS.iter().all(|&s| mask.contains(s)))
                .unwrap();
            false // the thread ends: it never parks
        });
        thread::spawn(move || serve(job)).join().unwrap();
        assert_eq!(seen.recv_timeout(Duration::from_secs(10)), Ok(true));
    }

    /// Work that records whether it was served or refused.
    struct Recorded(mpsc::Sender<&'static str>);

    impl Work for Recorded {
        fn serve(self: Box<Self>) -> bool {
            self.0.send("served").unwrap();
            false
        }
        fn refuse(self: Box<Self>) {
            self.0.send("refused").unwrap();
        }
    }

    #[test]
    fn work_no_thread_can_be_started_for_is_refused() {
        let (report, seen) = channel();
        // A stack larger than any address space: the thread cannot be made.
        let huge = 1usize << 56;
        assert!(start(Box::new(Recorded(report.clone())), "t", huge).is_err());
        assert_eq!(seen.try_recv(), Ok("refused"));
        start(Box::new(Recorded(report)), "t", 64 * 1024).unwrap();
        assert_eq!(seen.recv_timeout(Duration::from_secs(5)), Ok("served"));
    }

    // One test drives the shared list, so that no other test's threads park in between.
    #[test]
    fn a_thread_serves_again_only_after_a_clean_job() {
        let (report, seen) = channel();
        run(job(report.clone(), true), "t", 64 * 1024).unwrap();
        let first = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            parked_at_least(1),
            "the thread parks after a job that allows it"
        );
        run(job(report.clone(), false), "t", 64 * 1024).unwrap();
        let second = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(second, first, "the parked thread took the next job");
        // That job said no: the thread ended, and the next job gets a new thread.
        thread::sleep(Duration::from_millis(20));
        assert_eq!(lock().len(), 0);
        run(job(report.clone(), true), "t", 64 * 1024).unwrap();
        let third = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_ne!(third, first);
        // A panicking job ends its thread too.
        assert!(parked_at_least(1));
        run(Box::new(|| panic!("a session bug")), "t", 64 * 1024).unwrap();
        run(job(report, true), "t", 64 * 1024).unwrap();
        let fourth = seen.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_ne!(
            fourth, third,
            "a thread whose job panicked does not serve again"
        );
    }
}
