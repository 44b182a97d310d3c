//! A keyed hash with a proven collision bound, for a recovery file (see `expunge`) to tell the mbox's
//! old tail from mail a delivery agent appended after a crash. That mail is chosen by whoever sends it,
//! so an unkeyed checksum will not do; but the sender never sees the key, which is random per expunge
//! and kept in the recovery file (mode 0600).
//!
//! Polynomial evaluation modulo the prime p = 2^61 - 1, in 4 lanes with independent keys: the input is
//! cut into 7-octet little-endian chunks (each below p), chunk i goes to lane i mod 4, and each lane
//! computes h = h·k + m over its chunks (Horner), then once more with the input's length. Two
//! different inputs give, in some lane, two polynomials in k that differ (in a chunk, or in the length
//! term), whose difference has at most d + 1 roots for d chunks in that lane; so for inputs chosen
//! without knowledge of the keys, Pr[same hash] ≤ (L / 28 + 2) / 2^61: under 10^-12 for 100 MB. The
//! four lanes are four independent multiply chains, which is what makes it fast.

/// The number of lanes (and keys).
pub const LANES: usize = 4;
const P: u64 = (1 << 61) - 1;
const CHUNK: usize = 7;
const BLOCK: usize = CHUNK * LANES;

/// Random keys, each below p, from the OS: never a weak fallback, since the bound needs them unknown.
pub fn random_keys() -> std::io::Result<[u64; LANES]> {
    let mut keys = [0u64; LANES];
    for key in &mut keys {
        *key = (getrandom::u64().map_err(std::io::Error::other)? >> 3) % P;
    }
    Ok(keys)
}

/// A running hash, fed whole blocks of 28 octets whatever the pieces.
pub struct PolyHash {
    keys: [u64; LANES],
    /// k² mod p, per lane.
    squares: [u64; LANES],
    lanes: [u64; LANES],
    pending: [u8; BLOCK],
    pending_len: usize,
    total: u64,
}

/// h·k + m, folded to below 2^61 + 8 but not fully reduced (`finish` does that): with h < 2^61 + 8,
/// k < 2^61 and m < 2^56 the product is below 2^123 and two folds bring it back under 2^61 + 8.
#[inline(always)]
fn mul_add(h: u64, k: u64, m: u64) -> u64 {
    fold(u128::from(h) * u128::from(k) + u128::from(m))
}

/// x mod p, up to a multiple of p: below 2^61 + 8 for any x below 2^124.
#[inline(always)]
fn fold(x: u128) -> u64 {
    let y = (x as u64 & P) + (x >> 61) as u64;
    (y & P) + (y >> 61)
}

#[inline(always)]
fn chunk(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

impl PolyHash {
    pub fn new(keys: [u64; LANES]) -> PolyHash {
        let keys = keys.map(|k| k % P);
        PolyHash {
            keys,
            squares: keys.map(|k| ((u128::from(k) * u128::from(k)) % u128::from(P)) as u64),
            lanes: [0; LANES],
            pending: [0; BLOCK],
            pending_len: 0,
            total: 0,
        }
    }

    /// One block: a chunk per lane, each read as 8 octets less the one that is not its own.
    #[inline(always)]
    fn chunks(block: &[u8]) -> [u64; LANES] {
        let word = |at: usize| u64::from_le_bytes(block[at..at + 8].try_into().expect("8 octets"));
        const LOW_56: u64 = (1 << 56) - 1;
        [
            word(0) & LOW_56,
            word(7) & LOW_56,
            word(14) & LOW_56,
            word(20) >> 8,
        ]
    }

    #[inline(always)]
    fn block(&mut self, block: &[u8]) {
        let chunks = PolyHash::chunks(block);
        for ((lane, key), m) in self.lanes.iter_mut().zip(self.keys).zip(chunks) {
            *lane = mul_add(*lane, key, m);
        }
    }

    /// Two blocks in one step, the same as two `block`s: h·k² + a·k + b has one multiplication in
    /// the chain from one h to the next where two steps have two, and the chains are what is slow.
    #[inline(always)]
    fn two_blocks(&mut self, blocks: &[u8]) {
        let (a, b) = (
            PolyHash::chunks(&blocks[..BLOCK]),
            PolyHash::chunks(&blocks[BLOCK..]),
        );
        for i in 0..LANES {
            let x = u128::from(self.lanes[i]) * u128::from(self.squares[i])
                + u128::from(a[i]) * u128::from(self.keys[i])
                + u128::from(b[i]);
            self.lanes[i] = fold(x);
        }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.pending_len > 0 {
            let take = bytes.len().min(BLOCK - self.pending_len);
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            (self.pending_len, bytes) = (self.pending_len + take, &bytes[take..]);
            if self.pending_len < BLOCK {
                return;
            }
            let block = self.pending;
            self.block(&block);
            self.pending_len = 0;
        }
        let mut pairs = bytes.chunks_exact(2 * BLOCK);
        for pair in &mut pairs {
            self.two_blocks(pair);
        }
        let mut blocks = pairs.remainder().chunks_exact(BLOCK);
        for block in &mut blocks {
            self.block(block);
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// The lanes' values, fully reduced. The last, partial chunks (zero-padded) go to the first lanes,
    /// then every lane takes the length, so inputs that differ only in trailing zeros differ.
    pub fn finish(mut self) -> [u64; LANES] {
        let pending = self.pending;
        for (i, piece) in pending[..self.pending_len].chunks(CHUNK).enumerate() {
            self.lanes[i] = mul_add(self.lanes[i], self.keys[i], chunk(piece));
        }
        let total = self.total % P;
        for (lane, key) in self.lanes.iter_mut().zip(self.keys) {
            let mut h = mul_add(*lane, key, total);
            while h >= P {
                h -= P;
            }
            *lane = h;
        }
        self.lanes
    }
}

/// The hash of `bytes` under `keys`, in one call.
#[cfg(test)]
pub fn hash(keys: [u64; LANES], bytes: &[u8]) -> [u64; LANES] {
    let mut h = PolyHash::new(keys);
    h.update(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [u64; LANES] = [
        0x0123_4567_89ab_cdef % P,
        0x1bad_b002_dead_beef % P,
        0x0f0f_0f0f_1234_5678 % P,
        P - 1,
    ];

    /// The same polynomials, computed the slow obvious way: chunk by chunk, reducing each step.
    fn reference(keys: [u64; LANES], bytes: &[u8]) -> [u64; LANES] {
        let mut lanes = [0u128; LANES];
        let p = u128::from(P);
        for (i, piece) in bytes.chunks(CHUNK).enumerate() {
            let lane = i % LANES;
            lanes[lane] = (lanes[lane] * u128::from(keys[lane]) + u128::from(chunk(piece))) % p;
        }
        let len = bytes.len() as u128 % p;
        std::array::from_fn(|i| ((lanes[i] * u128::from(keys[i]) + len) % p) as u64)
    }

    #[test]
    fn matches_the_polynomial_for_any_split() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 151 % 251) as u8 | 0x80).collect();
        for len in 0..data.len() {
            let whole = hash(KEYS, &data[..len]);
            assert_eq!(whole, reference(KEYS, &data[..len]), "length {len}");
            for cut in [1, 7, 13, 27, 28, 29, 100] {
                let mut h = PolyHash::new(KEYS);
                data[..len].chunks(cut).for_each(|piece| h.update(piece));
                assert_eq!(h.finish(), whole, "length {len} in pieces of {cut}");
            }
        }
    }

    #[test]
    fn large_values_reduce_correctly() {
        let ones = [0xffu8; 1000];
        assert_eq!(hash(KEYS, &ones), reference(KEYS, &ones));
        assert!(hash(KEYS, &ones).iter().all(|&h| h < P));
    }

    #[test]
    fn any_change_changes_the_hash() {
        let data: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37)).collect();
        let whole = hash(KEYS, &data);
        for i in 0..data.len() {
            let mut changed = data.clone();
            changed[i] ^= 1;
            assert_ne!(hash(KEYS, &changed), whole, "octet {i}");
            assert_ne!(hash(KEYS, &data[..i]), whole, "cut at {i}");
        }
        assert_ne!(hash(KEYS, &[0u8; 7]), hash(KEYS, &[0u8; 8]));
        assert_ne!(
            hash(KEYS, &data),
            hash([1, 2, 3, 4], &data),
            "the keys matter"
        );
    }

    #[test]
    fn keys_are_random_and_below_p() {
        let (a, b) = (random_keys().unwrap(), random_keys().unwrap());
        assert_ne!(a, b);
        assert!(a.iter().chain(&b).all(|&k| k < P));
    }
}
