//! crypt(3)'s base64: the alphabet MD5-crypt, SHA-crypt and yescrypt write in, and how MD5-crypt and
//! SHA-crypt write a digest: its octets in an order of the scheme's, three at a time, each group's
//! low six bits first. Pure.

/// The alphabet (not RFC 4648's).
pub const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `digest`'s octets taken in `order`, encoded: three octets to four characters, a last one or two
/// to two or three.
pub fn encode(digest: &[u8], order: &[usize]) -> String {
    let ordered: Vec<u8> = order.iter().map(|&i| digest[i]).collect();
    let mut out = String::with_capacity(ordered.len().div_ceil(3) * 4);
    for group in ordered.chunks(3) {
        let word = group
            .iter()
            .rev()
            .fold(0u32, |word, &octet| word << 8 | u32::from(octet));
        for i in 0..=group.len() {
            out.push(char::from(ALPHABET[(word >> (6 * i)) as usize & 63]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_written_low_bits_first() {
        // 0x000001: '/' then three '.'; one octet 0xff: 63 then 3.
        assert_eq!(encode(&[1, 0, 0], &[0, 1, 2]), "/...");
        assert_eq!(encode(&[0xff], &[0]), "z1");
        // The order decides which octet is low: 0x00ff, then 0xff00.
        assert_eq!(encode(&[0, 0xff], &[1, 0]), "z1.");
        assert_eq!(encode(&[0, 0xff], &[0, 1]), ".wD");
    }
}
