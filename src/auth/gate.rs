//! The bound on password hashing at once. Each check of a stored hash (and of the stand-in hash an
//! unknown user is checked against) and each SCRAM key derivation holds a permit while it computes.
//! yescrypt as Debian configures it takes 16 MiB per check: unbounded, a hundred clients failing
//! logins at once made the server hold 1.45 GB (measured by a review), enough to have a small host's
//! out-of-memory killer end every session. With the gate, a burst of logins waits its turn: it costs
//! time, as hashing on that many cores would anyway, but never memory beyond the permits.

use std::sync::{Condvar, Mutex, OnceLock, PoisonError};

/// Hashing in progress, at most `permits` at once.
struct Gate {
    busy: Mutex<usize>,
    freed: Condvar,
    permits: usize,
}

/// One hashing's right to run; dropping it lets the next one in.
#[must_use = "the permit is held only while it lives"]
pub struct Permit(&'static Gate);

static GATE: OnceLock<Gate> = OnceLock::new();

/// As many permits as the machine has cores (at least two): more at once would only share the same
/// cores, each taking longer while holding its memory.
fn gate() -> &'static Gate {
    GATE.get_or_init(|| Gate {
        busy: Mutex::new(0),
        freed: Condvar::new(),
        permits: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
    })
}

/// Waits for a permit. A panic elsewhere while holding the lock leaves a count that is still right
/// (it is changed only by whole statements), so a poisoned lock is used as it is.
pub fn enter() -> Permit {
    let gate = gate();
    let mut busy = gate.busy.lock().unwrap_or_else(PoisonError::into_inner);
    while *busy >= gate.permits {
        busy = gate
            .freed
            .wait(busy)
            .unwrap_or_else(PoisonError::into_inner);
    }
    *busy += 1;
    Permit(gate)
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(PoisonError::into_inner);
        *busy -= 1;
        self.0.freed.notify_one();
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

    /// While every permit is held, a check of a stored hash waits; it runs once one is given back.
    #[test]
    fn a_hash_check_waits_for_a_permit() {
        let held: Vec<Permit> = (0..permits()).map(|_| enter()).collect();
        let stored = Stored::parse("{SHA512-CRYPT}$6$rounds=1000$Ab3/xY.z$x").unwrap();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = stored.verify(b"guess");
            done.send(()).unwrap();
        });
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "hashed without a permit"
        );
        drop(held);
        finished
            .recv_timeout(Duration::from_secs(20))
            .expect("never hashed once permits were free");
    }
}
