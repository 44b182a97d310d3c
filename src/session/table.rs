//! The session's view of the maildrop: message numbers fixed at login, deletion marks, and the totals
//! STAT reports. RFC 1939 section 5: message numbers are never reassigned during a session, and deleted
//! messages are not counted.

use crate::maildrop::MessageInfo;
use crate::proto::command::MsgNum;

/// Why a message number cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    NoSuchMessage,
    Deleted,
}

/// Deletion marks over the message list taken at login.
#[derive(Debug)]
pub struct Table {
    deleted: Vec<bool>,
    live_count: usize,
    /// Wider than a size: sizes come from file names too (a Maildir's `,W=`), and a few absurd ones
    /// must not overflow the sum (a panic in a debug build, a wrapped total in a release one).
    live_octets: u128,
    initial_octets: u128,
}

impl Table {
    pub fn new(messages: &[MessageInfo]) -> Table {
        let octets = messages.iter().map(|m| u128::from(m.octets)).sum();
        Table {
            deleted: vec![false; messages.len()],
            live_count: messages.len(),
            live_octets: octets,
            initial_octets: octets,
        }
    }

    /// (messages, octets) not marked as deleted, for STAT; octets beyond a `u64` are reported as its largest.
    pub fn totals(&self) -> (usize, u64) {
        let octets = u64::try_from(self.live_octets).unwrap_or(u64::MAX);
        (self.live_count, octets)
    }

    /// The index of a message that exists and is not deleted.
    pub fn live(&self, msg: MsgNum) -> Result<usize, Missing> {
        match self.deleted.get(msg.index()) {
            None => Err(Missing::NoSuchMessage),
            Some(true) => Err(Missing::Deleted),
            Some(false) => Ok(msg.index()),
        }
    }

    pub fn is_deleted(&self, index: usize) -> bool {
        self.deleted[index]
    }

    pub fn delete(&mut self, msg: MsgNum, messages: &[MessageInfo]) -> Result<(), Missing> {
        let index = self.live(msg)?;
        self.deleted[index] = true;
        self.live_count -= 1;
        self.live_octets -= u128::from(messages[index].octets);
        Ok(())
    }

    /// RSET: unmark everything.
    pub fn reset(&mut self) {
        self.deleted.iter_mut().for_each(|d| *d = false);
        self.live_count = self.deleted.len();
        self.live_octets = self.initial_octets;
    }

    /// Indexes marked for deletion, ascending, for UPDATE.
    pub fn deleted_indexes(&self) -> Vec<usize> {
        self.deleted
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infos(sizes: &[u64]) -> Vec<MessageInfo> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &octets)| MessageInfo {
                octets,
                uid: i.to_string().into(),
            })
            .collect()
    }

    #[test]
    fn delete_and_reset() {
        let m = infos(&[10, 20, 30]);
        let mut t = Table::new(&m);
        let n = |n| MsgNum::new(n).unwrap();
        assert_eq!(t.totals(), (3, 60));
        assert_eq!(t.delete(n(2), &m), Ok(()));
        assert_eq!(t.totals(), (2, 40));
        assert_eq!(t.delete(n(2), &m), Err(Missing::Deleted));
        assert_eq!(t.live(n(2)), Err(Missing::Deleted));
        assert_eq!(t.live(n(4)), Err(Missing::NoSuchMessage));
        assert_eq!(t.live(n(3)), Ok(2));
        t.delete(n(1), &m).unwrap();
        assert_eq!(t.deleted_indexes(), vec![0, 1]);
        t.reset();
        assert_eq!(t.totals(), (3, 60));
        assert!(t.deleted_indexes().is_empty());
    }

    #[test]
    fn totals_of_absurd_sizes_do_not_overflow() {
        let m = infos(&[u64::MAX, 1, u64::MAX]);
        let mut t = Table::new(&m);
        assert_eq!(t.totals(), (3, u64::MAX));
        t.delete(MsgNum::new(1).unwrap(), &m).unwrap();
        assert_eq!(t.totals(), (2, u64::MAX));
        t.delete(MsgNum::new(3).unwrap(), &m).unwrap();
        assert_eq!(t.totals(), (1, 1));
    }
}
