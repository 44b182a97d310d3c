//! The Maildir naming rules: a file name's base name (the part before the info separator `:`, which
//! never changes after delivery), the size Dovecot's `,W=` field records in it, and the unique-id it
//! gives. Pure: byte strings in, no I/O.

use std::collections::HashMap;

use md5::{Digest, Md5};

use crate::maildrop::{MessageInfo, is_valid_uid};

/// The UIDL and the Dovecot `,W=` size that a Maildir file name gives. Pure; for the fuzz target.
pub fn name_info(name: &[u8]) -> (Box<str>, Option<u64>) {
    let base = base_of(name);
    (uid_of(base), virtual_size(base))
}

/// The part of a file name before the Maildir info separator `:`; it never changes after delivery.
pub(crate) fn base_of(name: &[u8]) -> &[u8] {
    memchr::memchr(b':', name).map_or(name, |i| &name[..i])
}

/// Dovecot's `,W=<n>` field: the message's size with CRLF line ends, as POP3 counts it, saving a read.
pub(super) fn virtual_size(base: &[u8]) -> Option<u64> {
    let digits = base
        .split(|&b| b == b',')
        .skip(1)
        .find_map(|field| field.strip_prefix(b"W="))?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Whether a `,W=` size can be that of a file of `file_size` octets: at least the file, and at most
/// twice it and a final CRLF (every line an empty one or a lone dot, each of which doubles). A name
/// that says otherwise is wrong (made by hand, or copied beside another file), and the file is counted.
pub(super) fn plausible_wire_size(wire: u64, file_size: u64) -> bool {
    (file_size..=file_size.saturating_mul(2).saturating_add(2)).contains(&wire)
}

/// The base name when it is a valid unique-id (RFC 1939 section 7), which keeps UIDL equal to what
/// other Maildir POP3 servers announce; otherwise its MD5 in hex, which is valid and as stable.
pub(super) fn uid_of(base: &[u8]) -> Box<str> {
    if is_valid_uid(base) {
        // All ASCII, so always UTF-8.
        if let Ok(text) = std::str::from_utf8(base) {
            return text.into();
        }
    }
    let digest = Md5::digest(base);
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest.iter() {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex.into()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Makes the base-name ids of one listing unique (RFC 1939 section 7). Base names are unique in a
/// listing, so literal ids are, and so are MD5 ones; but a file may be named as another's MD5 id (a
/// review: `new/a b` and `new/0cc9cd4dd26c5137b675a0d819cb9ab0` announced one id, and a client that
/// keeps mail would never fetch the second). The MD5 id gives way, with `-1`, `-2`... until it is
/// unique: literal ids never change, so the outcome does not depend on the listing's order. `bases`
/// are the messages' base names, in order.
pub fn unique_ids<'a>(messages: &mut [MessageInfo], bases: impl Iterator<Item = &'a [u8]>) {
    let hashed: Vec<usize> = bases
        .zip(messages.iter())
        .enumerate()
        .filter(|(_, (base, m))| m.uid.as_bytes() != *base)
        .map(|(i, _)| i)
        .collect();
    if hashed.is_empty() {
        return;
    }
    let mut taken: HashMap<Box<str>, usize> = HashMap::with_capacity(messages.len());
    for m in messages.iter() {
        *taken.entry(m.uid.clone()).or_default() += 1;
    }
    for i in hashed {
        if taken[&messages[i].uid] < 2 {
            continue;
        }
        let unique = (1u64..)
            .map(|n| format!("{}-{n}", messages[i].uid).into_boxed_str())
            .find(|id| !taken.contains_key(id))
            .expect("fewer ids than numbers");
        log::warn!(
            "maildir: unique-id {} is another file's name; announced as {unique}",
            messages[i].uid
        );
        taken.insert(unique.clone(), 1);
        messages[i].uid = unique;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildrop::MAX_UID;

    #[test]
    fn reads_dovecot_virtual_size() {
        let cases: [(&[u8], Option<u64>); 8] = [
            (b"1.M1P1.host,S=10,W=12", Some(12)),
            (b"1.M1P1.host,W=0,S=10", Some(0)),
            (b"1.M1P1.host,S=10", None),
            (b"1.M1P1.host,W=", None),
            (b"1.M1P1.host,W=12x", None),
            (b"1.M1P1.host,W=+12", None),
            (b"1.M1P1.host,W=99999999999999999999999", None),
            (b"W=12", None),
        ];
        for (base, want) in cases {
            assert_eq!(
                virtual_size(base),
                want,
                "{}",
                String::from_utf8_lossy(base)
            );
        }
    }

    #[test]
    fn names_unique_ids() {
        let long = "x".repeat(MAX_UID + 1);
        let longest = "x".repeat(MAX_UID);
        let cases: [(&[u8], &str); 6] = [
            (b"1700000000.M1P2.host", "1700000000.M1P2.host"),
            (longest.as_bytes(), &longest),
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"hello world", "5eb63bbbe01eeed093cb22bb8f5acdc3"),
            (long.as_bytes(), "522966f2ff9ab1543c945d48ee25045b"),
            (b"caf\xc3\xa9", "07117fe4a1ebd544965dc19573183da2"),
        ];
        for (base, want) in cases {
            let uid = uid_of(base);
            assert_eq!(&*uid, want, "{}", String::from_utf8_lossy(base));
            assert!(
                (1..=MAX_UID).contains(&uid.len())
                    && uid.bytes().all(|b| (0x21..=0x7e).contains(&b))
            );
        }
    }
}
