//! MD5-crypt (`$1$`), Poul-Henning Kamp's FreeBSD scheme, still found in old `/etc/shadow` files and
//! passwd-files. Verification only: the algorithm is weak and poplar never creates such hashes.
//!
//! No maintained crate implements it over the `md-5` version poplar already uses, and the algorithm is
//! short and fixed, so it lives here, checked against `openssl passwd -1` vectors.

use md5::{Digest, Md5};

use super::crypt_b64;
use super::secret::constant_time_eq;

const MAGIC: &[u8] = b"$1$";
/// The order in which the digest's octets are written (the original's groups of three).
const ORDER: [usize; 16] = [12, 6, 0, 13, 7, 1, 14, 8, 2, 15, 9, 3, 5, 10, 4, 11];
/// The salt is at most 8 characters; longer salts are cut, as every implementation does.
const MAX_SALT: usize = 8;

/// Whether `password` matches the `$1$salt$hash` string `stored`. A malformed string matches nothing.
pub fn verify(password: &[u8], stored: &str) -> bool {
    let Some(rest) = stored.as_bytes().strip_prefix(MAGIC) else {
        return false;
    };
    let Some(dollar) = rest.iter().position(|&b| b == b'$') else {
        return false;
    };
    let salt = &rest[..dollar.min(MAX_SALT)];
    let expected = &rest[dollar + 1..];
    if dollar > MAX_SALT || expected.len() != 22 {
        return false;
    }
    constant_time_eq(hash(password, salt).as_bytes(), expected)
}

/// The 22-character encoded digest of `password` with `salt` (at most 8 octets, no `$`).
pub fn hash(password: &[u8], salt: &[u8]) -> String {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(MAGIC)
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    // The original's quirk: a NUL for each set bit of the length, the first password octet otherwise.
    let mut i = password.len();
    while i > 0 {
        ctx.update(if i & 1 == 1 {
            &[0u8][..]
        } else {
            &password[..1]
        });
        i >>= 1;
    }
    let mut digest = ctx.finalize();
    // 1000 rounds "to slow down the attacker" (the original's comment).
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round & 1 == 1 {
            ctx.update(password)
        } else {
            ctx.update(digest)
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round & 1 == 1 {
            ctx.update(digest)
        } else {
            ctx.update(password)
        }
        digest = ctx.finalize();
    }
    crypt_b64::encode(&digest, &ORDER)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl passwd -1 -salt SALT PASSWORD`; the last one also matches Python's `crypt.crypt`.
    const VECTORS: &[(&str, &str)] = &[
        ("x", "$1$saltsalt$4px9i58NU2Z2/vZOUlGjq."),
        ("", "$1$saltsalt$5Jhcit4zN9UlGiA0txPkO0"),
        ("password", "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/"),
        (
            "a much longer password of more than sixteen bytes",
            "$1$saltsalt$oQytmLS8XzjrPkag5ACKD0",
        ),
        ("tanstaaf", "$1$ab$iRUW81gpsWMyPO7yHCnGY."),
        ("x", "$1$abc$OGyl6dDvZCDiGmIVbeuCq/"),
    ];

    #[test]
    fn known_vectors() {
        for &(password, stored) in VECTORS {
            assert!(verify(password.as_bytes(), stored), "{password:?} {stored}");
            assert!(
                !verify(format!("{password}!").as_bytes(), stored),
                "{password:?}! {stored}"
            );
        }
    }

    #[test]
    fn malformed_strings_match_nothing() {
        let cases = [
            "",
            "$1$",
            "$1$saltsalt",
            "$1$saltsalt$",
            "$1$saltsalt$4px9i58NU2Z2/vZOUlGjq",
            "$1$saltsalt$4px9i58NU2Z2/vZOUlGjq..",
            "$1$saltsaltX$4px9i58NU2Z2/vZOUlGjq.",
            "$5$saltsalt$4px9i58NU2Z2/vZOUlGjq.",
        ];
        for stored in cases {
            assert!(!verify(b"x", stored), "{stored:?}");
        }
    }
}
