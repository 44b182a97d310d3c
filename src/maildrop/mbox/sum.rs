//! The checksum that tells a whole recovery file (see `expunge`) from one a crash cut short or tore.
//! Versions 2 and 3 (3 is written now; see `recovery` for the layouts) use a sum over 64-bit words that
//! runs at memory speed: the file holds a large part of the mbox, and MD5 over 100 MB cost more than
//! everything else UPDATE does. Version 1 files (MD5) are still read, so a recovery file left by an
//! older poplar is applied after an upgrade. Neither guards against an attacker: only the mbox's owner
//! can write the file, and that owner can change the mbox itself. (What does face an attacker, mail
//! appended after a crash, is told apart by `polyhash`, not by this sum.)

use md5::{Digest, Md5};

/// The recovery file's first 16 octets, by version.
pub const MAGIC_V1: &[u8; 16] = b"poplar-mbox-rcv1";
pub const MAGIC_V2: &[u8; 16] = b"poplar-mbox-rcv2";
pub const MAGIC_V3: &[u8; 16] = b"poplar-mbox-rcv3";
pub const MAGIC_V4: &[u8; 16] = b"poplar-mbox-rcv4";

/// A running checksum of either version; both give 16 octets.
pub enum Sum {
    Md5(Box<Md5>),
    Words(Words),
}

impl Sum {
    /// The checksum a file beginning with `magic` carries; `None` for an unknown magic.
    pub fn for_magic(magic: &[u8]) -> Option<Sum> {
        match magic {
            m if m == MAGIC_V1 => Some(Sum::Md5(Box::default())),
            m if m == MAGIC_V2 || m == MAGIC_V3 || m == MAGIC_V4 => {
                Some(Sum::Words(Words::default()))
            }
            _ => None,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Sum::Md5(md5) => md5.update(bytes),
            Sum::Words(words) => words.update(bytes),
        }
    }

    pub fn finish(self) -> [u8; 16] {
        match self {
            Sum::Md5(md5) => md5.finalize().into(),
            Sum::Words(words) => words.finish(),
        }
    }
}

/// Two lanes of FNV-1a over 64-bit words with a rotation, fed 16 octets at a time whatever the pieces.
pub struct Words {
    lanes: [u64; 2],
    pending: [u8; 16],
    pending_len: usize,
    total: u64,
}

impl Default for Words {
    fn default() -> Words {
        Words {
            lanes: [0xcbf2_9ce4_8422_2325, 0x8422_2325_cbf2_9ce4],
            pending: [0; 16],
            pending_len: 0,
            total: 0,
        }
    }
}

const PRIME: u64 = 0x0000_0100_0000_01b3;

impl Words {
    fn block(&mut self, block: &[u8]) {
        for (lane, word) in self.lanes.iter_mut().zip(block.chunks_exact(8)) {
            let word = u64::from_le_bytes(word.try_into().expect("8 octets"));
            *lane = (*lane ^ word).wrapping_mul(PRIME).rotate_left(23);
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = bytes.len().min(16 - self.pending_len);
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            (self.pending_len, bytes) = (self.pending_len + take, &bytes[take..]);
            if self.pending_len < 16 {
                return;
            }
            let block = self.pending;
            self.block(&block);
            self.pending_len = 0;
        }
        let mut blocks = bytes.chunks_exact(16);
        for block in &mut blocks {
            self.block(block);
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    pub fn finish(mut self) -> [u8; 16] {
        // The length goes in too, so trailing zeros cut off or added change the sum.
        let mut last = [0u8; 16];
        last[..self.pending_len].copy_from_slice(&self.pending[..self.pending_len]);
        last[8..]
            .iter_mut()
            .zip(self.total.to_le_bytes())
            .for_each(|(b, t)| *b ^= t);
        self.block(&last);
        let [a, b] = self.lanes;
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(a ^ b.rotate_left(32)).wrapping_mul(PRIME).to_le_bytes());
        out[8..].copy_from_slice(&(b ^ a.rotate_left(17)).wrapping_mul(PRIME).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(magic: &[u8], pieces: &[&[u8]]) -> [u8; 16] {
        let mut s = Sum::for_magic(magic).unwrap();
        pieces.iter().for_each(|p| s.update(p));
        s.finish()
    }

    #[test]
    fn any_split_gives_the_same_sum_and_any_change_another() {
        let data: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        for magic in [MAGIC_V1, MAGIC_V2, MAGIC_V3, MAGIC_V4] {
            let whole = sum(magic, &[&data]);
            for cut in 0..data.len() {
                for cut2 in cut..data.len() {
                    assert_eq!(
                        sum(magic, &[&data[..cut], &data[cut..cut2], &data[cut2..]]),
                        whole,
                        "{cut} {cut2}"
                    );
                }
                assert_ne!(sum(magic, &[&data[..cut]]), whole, "cut at {cut}");
                let mut changed = data.clone();
                changed[cut] ^= 1;
                assert_ne!(sum(magic, &[&changed]), whole, "octet {cut}");
            }
            // Trailing zeros count.
            assert_ne!(sum(magic, &[&[0u8; 16]]), sum(magic, &[&[0u8; 17]]));
        }
        assert_eq!(
            sum(MAGIC_V1, &[b"abc"]),
            <[u8; 16]>::from(Md5::digest(b"abc"))
        );
        assert!(Sum::for_magic(b"poplar-mbox-rcv5").is_none());
    }
}
