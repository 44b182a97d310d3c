//! Who may linger after QUIT: a session reads, for up to 200 ms, what the client sent behind QUIT
//! (closing with it unread would reset the connection), holding by then no place under the front
//! end's limits; these bounds keep such sessions few, and shared between addresses.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use crate::admission::{PerIp, Ticket};
use crate::config::DEFAULT_IPV6_PREFIX;

/// At most this many sessions linger after QUIT at once, holding a place under no limit: their
/// threads and connections are bounded by it (each lingers 200 ms at most).
pub const MAX_LINGERING: usize = 64;

/// And at most this many from one address, counted as --max-per-ip counts with its default prefix
/// (an IPv6 client by its /64, one through NAT64 by its IPv4 address), as many as that limit's
/// default: one address cycling QUIT-and-keep-open, no login needed, took every turn, and others'
/// commands arriving behind QUIT then met a reset that could cost their last replies (a review).
/// A session without a turn still reads what has arrived before it closes (`conn::quit`).
const MAX_LINGERING_PER_ADDRESS: usize = 10;

/// The sessions lingering, in all and by address (counted by --max-per-ip's own counter).
static LINGERING: AtomicUsize = AtomicUsize::new(0);
static BY_ADDRESS: LazyLock<Arc<PerIp>> =
    LazyLock::new(|| PerIp::new(MAX_LINGERING_PER_ADDRESS, DEFAULT_IPV6_PREFIX));

/// A session's turn at lingering after QUIT: see [`MAX_LINGERING`].
pub(super) struct Lingering {
    _address: Option<Ticket>,
}

impl Lingering {
    pub(super) fn enter(client: Option<IpAddr>) -> Option<Lingering> {
        if LINGERING.fetch_add(1, Ordering::SeqCst) >= MAX_LINGERING {
            LINGERING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let address = match client.map(|ip| BY_ADDRESS.enter(ip)) {
            Some(Err(_)) => {
                LINGERING.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
            entered => entered.and_then(Result::ok),
        };
        Some(Lingering { _address: address })
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        LINGERING.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One address gets at most its few turns at lingering, and another address its own (from a
    /// review: one address cycling QUIT took all 64); addresses are counted as --max-per-ip counts
    /// them: an IPv4 one seen mapped into IPv6 is itself, an IPv6 /64 is one, NAT64 clients are not.
    #[test]
    fn lingering_turns_are_shared_between_addresses() {
        let ip = |text: &str| text.parse::<IpAddr>().ok();
        let mine: Vec<Lingering> = (0..MAX_LINGERING_PER_ADDRESS)
            .map(|_| Lingering::enter(ip("192.0.2.77")).unwrap())
            .collect();
        assert!(Lingering::enter(ip("192.0.2.77")).is_none());
        assert!(Lingering::enter(ip("::ffff:192.0.2.77")).is_none());
        let other = Lingering::enter(ip("198.51.100.77"));
        assert!(other.is_some());
        drop(mine);
        assert!(Lingering::enter(ip("192.0.2.77")).is_some());
        // An IPv6 /64 is one address; NAT64 clients are their IPv4 addresses.
        let net: Vec<Lingering> = (1..=MAX_LINGERING_PER_ADDRESS)
            .map(|i| Lingering::enter(ip(&format!("2001:db8:1:2::{i}"))).unwrap())
            .collect();
        assert!(Lingering::enter(ip("2001:db8:1:2:ffff::1")).is_none());
        assert!(Lingering::enter(ip("2001:db8:1:3::1")).is_some());
        drop(net);
        let nat64: Vec<Lingering> = (1..=MAX_LINGERING_PER_ADDRESS)
            .map(|i| Lingering::enter(ip(&format!("64:ff9b::c000:2{i:02}"))).unwrap())
            .collect();
        assert_eq!(nat64.len(), MAX_LINGERING_PER_ADDRESS);
    }
}
