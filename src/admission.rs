//! Who may start a session: the per-address cap of `--max-per-ip` (the total cap, `--max-sessions`, is
//! the accept loop's). A counter per client address, shared by the accept loop and the session threads.
//!
//! An IPv6 client counts by its network (`--ipv6-prefix`, a /64 by default): a subscriber or a site is
//! given a whole /64 or more, so one client could otherwise take every session slot, one address each.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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
    /// The counter it holds a place in. Kept, so that a reload changing the prefix frees the place it
    /// took.
    ip: IpAddr,
}

/// What a client is counted as: an address, or an IPv6 network (`prefix`). Its `Display` is how a
/// refusal is logged (`192.0.2.7`, `2001:db8:0:1::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    key: IpAddr,
    prefix: Option<u8>,
}

impl Counted {
    /// `ip` under an IPv6 prefix of `prefix` bits. IPv4, also seen through an IPv4-mapped IPv6 address,
    /// counts by its address. So does an IPv4 client that a NAT64 translator shows in the well-known
    /// prefix 64:ff9b::/96 (RFC 6052), by the IPv4 address in its last 32 bits; in the local-use
    /// translation prefix 64:ff9b:1::/48 (RFC 8215) the IPv4 address may sit anywhere, so each address
    /// counts on its own there. Masked as other IPv6, all of a translator's clients would share one count.
    pub(crate) fn of(ip: IpAddr, prefix: u8) -> Counted {
        let exact = |key| Counted { key, prefix: None };
        let v6 = match ip.to_canonical() {
            IpAddr::V6(v6) => v6,
            v4 => return exact(v4),
        };
        let bits = v6.to_bits();
        if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
            return exact(IpAddr::V4(Ipv4Addr::from_bits(bits as u32)));
        }
        if bits >> 80 == 0x0064_ff9b_0001 || prefix >= 128 {
            return exact(IpAddr::V6(v6));
        }
        let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        Counted {
            key: IpAddr::V6(Ipv6Addr::from_bits(bits & mask)),
            prefix: Some(prefix),
        }
    }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(prefix) => write!(f, "{}/{prefix}", self.key),
            None => write!(f, "{}", self.key),
        }
    }
}

impl PerIp {
    pub fn new(max: usize, ipv6_prefix: u8) -> Arc<PerIp> {
        Arc::new(PerIp {
            max: AtomicUsize::new(max),
            ipv6_prefix: AtomicU8::new(ipv6_prefix),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A ticket for one more session from `ip`, or, when its address or network already has `max`,
    /// what it was counted as.
    pub fn enter(self: &Arc<PerIp>, ip: IpAddr) -> Result<Ticket, Counted> {
        let counted = self.counted(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(counted.key).or_insert(0);
        if *count >= self.max() {
            return Err(counted);
        }
        *count += 1;
        Ok(Ticket {
            table: Arc::clone(self),
            ip: counted.key,
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

    /// What `ip` is counted as under the prefix now in force.
    fn counted(&self, ip: IpAddr) -> Counted {
        Counted::of(ip, self.ipv6_prefix.load(Ordering::Relaxed))
    }

    /// Sessions now running from `ip`'s address or network.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.counted(ip).key)
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
        assert!(table.enter(a).is_err(), "third from the same address");
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
        let refused = table.enter(ip("2001:db8:0:1::99")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "2001:db8:0:1::/64",
            "a third of the same /64"
        );
        let _t3 = table.enter(ip("2001:db8:0:2::1")).unwrap();
        assert_eq!(table.count(ip("2001:db8:0:1::abcd")), 2);

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
        assert_eq!(
            table.enter(ip("::ffff:192.0.2.1")).unwrap_err().to_string(),
            "192.0.2.1"
        );
        assert!(table.enter(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn translated_ipv4_clients_count_each_on_its_own() {
        let table = PerIp::new(1, 64);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // NAT64's well-known prefix: the IPv4 address inside, the same as that address seen directly.
        let _a = table.enter(ip("64:ff9b::c000:207")).unwrap();
        let _b = table.enter(ip("64:ff9b::c000:208")).unwrap();
        assert_eq!(
            table.enter(ip("192.0.2.7")).unwrap_err().to_string(),
            "192.0.2.7"
        );
        // The local-use prefix: each address alone, not its /64.
        let _c = table.enter(ip("64:ff9b:1::c000:207")).unwrap();
        let _d = table.enter(ip("64:ff9b:1::c000:208")).unwrap();
        assert_eq!(
            table
                .enter(ip("64:ff9b:1::c000:208"))
                .unwrap_err()
                .to_string(),
            "64:ff9b:1::c000:208"
        );
        // Right beside them, ordinary IPv6 is counted by its /64 again.
        let _e = table.enter(ip("64:ff9b:2::1")).unwrap();
        assert!(table.enter(ip("64:ff9b:2::2")).is_err());
    }
}
