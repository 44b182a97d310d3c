//! Who may start a session: the per-address cap of `--max-per-ip` (the total cap, `--max-sessions`, is
//! the accept loop's). A counter per client address, shared by the accept loop and the session threads.
//!
//! An IPv6 client counts by its network (`--ipv6-prefix`, a /64 by default): a subscriber or a site is
//! given a whole /64 or more, so one client could otherwise take every session slot, one address each.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Sessions per client address (IPv4) or network (IPv6).
#[derive(Debug)]
pub struct PerIp {
    /// A reload may change it; sessions already admitted stay.
    max: AtomicUsize,
    /// The IPv6 prefix length that counts as one client; a reload may change it too.
    ipv6_prefix: AtomicU8,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted session; dropping it (session end, even by panic) frees its slot.
#[derive(Debug)]
pub struct Ticket {
    table: Arc<PerIp>,
    /// The counter it holds a place in: the client's address, or its IPv6 network. Kept, so that a
    /// reload changing the prefix frees the place it took.
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max: usize, ipv6_prefix: u8) -> Arc<PerIp> {
        Arc::new(PerIp {
            max: AtomicUsize::new(max),
            ipv6_prefix: AtomicU8::new(ipv6_prefix),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A ticket for one more session from `ip`, or `None` when its address or network already has
    /// `max`. An IPv4 client seen through an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn enter(self: &Arc<PerIp>, ip: IpAddr) -> Option<Ticket> {
        let ip = self.client(ip);
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

    /// A new cap and IPv6 prefix for the sessions admitted from now on (SIGHUP).
    pub fn set_limits(&self, max: usize, ipv6_prefix: u8) {
        self.max.store(max, Ordering::Relaxed);
        self.ipv6_prefix.store(ipv6_prefix, Ordering::Relaxed);
    }

    /// What `ip` is counted as: its IPv4 address, or its IPv6 network (the address with the bits past
    /// the prefix cleared), which is also how it is logged.
    pub fn client(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u32::from(self.ipv6_prefix.load(Ordering::Relaxed)).min(128);
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
            v4 => v4,
        }
    }

    /// The IPv6 prefix length now in force.
    pub fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix.load(Ordering::Relaxed)
    }

    /// Sessions now running from `ip`'s address or network.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.client(ip))
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
        let table = PerIp::new(2, 64);
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

    #[test]
    fn counts_an_ipv6_client_by_its_network() {
        let table = PerIp::new(2, 64);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _t1 = table.enter(ip("2001:db8:0:1::1")).unwrap();
        let t2 = table.enter(ip("2001:db8:0:1:ffff:ffff:ffff:ffff")).unwrap();
        assert!(
            table.enter(ip("2001:db8:0:1::99")).is_none(),
            "a third address of the same /64"
        );
        let _t3 = table.enter(ip("2001:db8:0:2::1")).unwrap();
        assert_eq!(table.count(ip("2001:db8:0:1::abcd")), 2);
        assert_eq!(table.client(ip("2001:db8:0:1::1")), ip("2001:db8:0:1::"));

        // A reload to /128 counts each address from now on; places taken before are still freed.
        table.set_limits(2, 128);
        let _t4 = table.enter(ip("2001:db8:0:1::1")).unwrap();
        assert_eq!(table.count(ip("2001:db8:0:1::1")), 1);
        drop(t2);
        assert_eq!(
            *table
                .counts
                .lock()
                .unwrap()
                .get(&ip("2001:db8:0:1::"))
                .unwrap(),
            1
        );

        // IPv4, also when mapped into IPv6, is never masked.
        table.set_limits(1, 64);
        let _t5 = table.enter(ip("192.0.2.1")).unwrap();
        assert!(table.enter(ip("::ffff:192.0.2.1")).is_none());
        assert!(table.enter(ip("192.0.2.2")).is_some());
    }
}
