//! The bound on password hashing at once. Each check of a stored hash (and of the stand-in hash an
//! unknown user is checked against) and each SCRAM key derivation holds a permit while it computes.
//! yescrypt as Debian configures it takes 16 MiB per check: unbounded, a hundred clients failing
//! logins at once made the server hold 1.45 GB (measured by a review), enough to have a small host's
//! out-of-memory killer end every session. With the gate, a burst of logins waits its turn, in the
//! order it came: it costs time, as hashing on that many cores would anyway, but never more memory
//! than `MEMORY_BUDGET`.

use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

/// The most memory the checks running at once may take together (each alone may take up to this:
/// `scheme` refuses hashes asking for more). With Debian's yescrypt (16 MiB) the cores bound first;
/// hashes asking for hundreds of MiB run fewer at a time, one at 1 GiB. A MiB over 1 GiB, so that
/// libxcrypt's largest yescrypt setting (`jFT`: 1 GiB and 16 KiB) still fits.
pub const MEMORY_BUDGET: u64 = (1 << 30) + (1 << 20);

/// Hashing in progress, at most `permits` at once and `MEMORY_BUDGET` of memory together.
struct Gate {
    state: Mutex<State>,
    freed: Condvar,
    permits: usize,
}

#[derive(Default)]
struct State {
    busy: usize,
    memory: u64,
    /// Checks go in in the order they asked (`next` is the next number given, `serving` the one let
    /// in next): otherwise small checks arriving all the time keep a large one out for ever (a
    /// review measured a 1 GiB check kept waiting as long as 16 MiB ones overlapped).
    next: u64,
    serving: u64,
}

/// One hashing's right to run, and the memory it was let in with; dropping it lets the next in.
#[must_use = "the permit is held only while it lives"]
pub struct Permit(&'static Gate, u64);

static GATE: OnceLock<Gate> = OnceLock::new();

/// As many permits as the machine has cores (at least two): more at once would only share the same
/// cores, each taking longer while holding its memory.
fn gate() -> &'static Gate {
    GATE.get_or_init(|| Gate {
        state: Mutex::new(State::default()),
        freed: Condvar::new(),
        permits: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
    })
}

/// Waits for a permit for a computation that takes little memory (SHA-crypt, bcrypt, PBKDF2).
pub fn enter() -> Permit {
    enter_with(0)
}

/// Waits for a permit for a check that allocates `memory` octets (yescrypt, Argon2): a free permit,
/// and room under `MEMORY_BUDGET` beside the checks running (or none running). A panic elsewhere
/// while holding the lock leaves counts that are still right (they are changed only by whole
/// statements), so a poisoned lock is used as it is.
pub fn enter_with(memory: u64) -> Permit {
    let gate = gate();
    let mut state = gate.state.lock().unwrap_or_else(PoisonError::into_inner);
    let turn = state.next;
    state.next += 1;
    while state.serving != turn
        || state.busy >= gate.permits
        || (state.busy > 0 && state.memory.saturating_add(memory) > MEMORY_BUDGET)
    {
        state = gate
            .freed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    }
    state.serving += 1;
    state.busy += 1;
    state.memory += memory;
    // The next in line may fit beside this one.
    gate.freed.notify_all();
    Permit(gate, memory)
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.busy -= 1;
        state.memory -= self.1;
        // Every waiter: only the next in line can go in, and the condition variable does not know
        // which one that is.
        self.0.freed.notify_all();
    }
}

/// How many permits there are.
pub fn permits() -> usize {
    gate().permits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scheme::Stored;
    use std::sync::mpsc;
    use std::time::Duration;

    /// The gate is the process's: its tests take turns, or each holding a permit while waiting for
    /// another they would deadlock.
    static TURN: Mutex<()> = Mutex::new(());

    /// Runs `check` on a thread of its own: still waiting after 300 ms (`held` says what it waits
    /// for), and done within 20 s once `release` has run.
    fn waits_until(release: impl FnOnce(), check: impl FnOnce() + Send + 'static, held: &str) {
        let (done, finished) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            check();
            done.send(()).unwrap();
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "{held}"
        );
        release();
        finished
            .recv_timeout(Duration::from_secs(20))
            .expect("never let in once released");
        waiter.join().unwrap();
    }

    /// While every permit is held, a check of a stored hash waits; it runs once one is given back.
    #[test]
    fn a_hash_check_waits_for_a_permit() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let held: Vec<Permit> = (0..permits()).map(|_| enter()).collect();
        let hash = format!("{{SHA512-CRYPT}}$6$rounds=1000$Ab3/xY.z${}", ".".repeat(86));
        let stored = Stored::parse(&hash).unwrap();
        waits_until(
            || drop(held),
            move || {
                let _ = stored.verify(b"guess");
            },
            "hashed without a permit",
        );
    }

    /// A check that would take the memory in use past the budget waits, though permits are free, and
    /// goes in once the memory is given back.
    #[test]
    fn large_checks_wait_for_memory() {
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(permits() >= 2);
        let big = enter_with(MEMORY_BUDGET - (100 << 20));
        waits_until(
            || drop(big),
            || drop(enter_with(200 << 20)),
            "let in past the memory budget",
        );
    }

    /// Checks go in in the order they asked: a large check waiting for memory is not kept out by
    /// small ones arriving after it. Before, with overlapping small checks kept going, a 1 GiB one
    /// did not get in within 5 s (a review's measurement); here it must get in while they go on.
    #[test]
    fn a_large_check_is_not_kept_out_by_small_ones() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let _turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        let stop = Arc::new(AtomicBool::new(false));
        let small: Vec<_> = (0..3)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    // Bounded: at most 20,000 checks of 1 ms each, until told to stop.
                    for _ in 0..20_000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let permit = enter_with(16 << 20);
                        std::thread::sleep(Duration::from_millis(1));
                        drop(permit);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        let (done, finished) = mpsc::channel();
        let large = std::thread::spawn(move || {
            drop(enter_with(1 << 30));
            done.send(()).unwrap();
        });
        let got_in = finished.recv_timeout(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        for t in small {
            t.join().unwrap();
        }
        large.join().unwrap();
        assert!(got_in.is_ok(), "a large check kept out by small ones");
    }
}
