//! Who may start a session: the per-address cap of `--max-per-ip` (the total cap, `--max-sessions`, is
//! the accept loop's). A counter per client address, shared by the accept loop and the session threads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Sessions per client address.
#[derive(Debug)]
pub struct PerIp {
    /// A reload may change it; sessions already admitted stay.
    max: AtomicUsize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted session; dropping it (session end, even by panic) frees its slot.
#[derive(Debug)]
pub struct Ticket {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max: AtomicUsize::new(max),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A ticket for one more session from `ip`, or `None` when it already has `max`. An IPv4 client seen
    /// through an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn enter(self: &Arc<PerIp>, ip: IpAddr) -> Option<Ticket> {
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max() {
            return None;
        }
        *count += 1;
        Some(Ticket {
            table: Arc::clone(self),
            ip,
        })
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// A new cap for the sessions admitted from now on (SIGHUP).
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Sessions now running from `ip`.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            // Forget idle addresses, so the table stays as small as the set of current clients.
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_separately() {
        let table = PerIp::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let t1 = table.enter(a).unwrap();
        let t2 = table.enter(a6).unwrap();
        assert!(table.enter(a).is_none(), "third from the same address");
        let t3 = table.enter(b).unwrap();
        assert_eq!((table.count(a), table.count(b)), (2, 1));
        drop(t1);
        let t4 = table.enter(a).unwrap();
        drop((t2, t3, t4));
        assert_eq!((table.count(a), table.count(b)), (0, 0));
        assert!(table.counts.lock().unwrap().is_empty());
    }
}
