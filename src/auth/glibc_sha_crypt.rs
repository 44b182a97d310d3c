//! SHA-crypt (`$5$`, `$6$`) read as glibc and libxcrypt read it: a salt of up to 16 characters of
//! any kind but `$`, empty included. The verifier crate takes only the characters of the modular
//! crypt format, and no empty salt, which `openssl passwd -6 -salt 'a_b'` and libxcrypt's
//! `crypt(pw, "$6$$")` write; so the string is read here and the crate only hashes. Pure.

use sha_crypt::{Params, sha256_crypt, sha512_crypt};

use super::crypt_b64;
use super::secret::constant_time_eq;

/// The order in which SHA-512-crypt writes its 64 octets, three at a time (Drepper's specification).
const SHA512_ORDER: [usize; 64] = [
    42, 21, 0, 1, 43, 22, 23, 2, 44, 45, 24, 3, 4, 46, 25, 26, 5, 47, 48, 27, 6, 7, 49, 28, 29, 8,
    50, 51, 30, 9, 10, 52, 31, 32, 11, 53, 54, 33, 12, 13, 55, 34, 35, 14, 56, 57, 36, 15, 16, 58,
    37, 38, 17, 59, 60, 39, 18, 19, 61, 40, 41, 20, 62, 63,
];

/// The same for SHA-256-crypt's 32 octets.
const SHA256_ORDER: [usize; 32] = [
    20, 10, 0, 11, 1, 21, 2, 22, 12, 23, 13, 3, 14, 4, 24, 5, 25, 15, 26, 16, 6, 17, 7, 27, 8, 28,
    18, 29, 19, 9, 30, 31,
];

/// The default rounds, when the string names none.
const DEFAULT_ROUNDS: u32 = 5000;

/// A `$5$` or `$6$` string read: SHA-512 or not, its rounds, salt and written hash.
struct Read<'a> {
    sha512: bool,
    params: Params,
    salt: &'a str,
    written: &'a str,
}

fn read(hash: &str) -> Option<Read<'_>> {
    let (sha512, rest) = (hash.strip_prefix("$6$").map(|r| (true, r)))
        .or_else(|| hash.strip_prefix("$5$").map(|r| (false, r)))?;
    let (rounds, rest) = match super::scheme::sha_crypt_rounds(rest) {
        None => (DEFAULT_ROUNDS, rest),
        Some(found) => found?,
    };
    let (salt, written) = rest.split_once('$')?;
    Some(Read {
        sha512,
        params: Params::new(rounds).ok()?,
        salt,
        written,
    })
}

/// Whether `hash` reads as a SHA-crypt string, which [`verify`] then hashes.
#[cfg(test)]
pub fn reads(hash: &str) -> bool {
    read(hash).is_some()
}

/// Checks `password` against a `$5$` or `$6$` string; `false` for one that does not read as one
/// (the caller has checked its shape: see `scheme::crypt_fault`).
pub fn verify(hash: &str, password: &[u8]) -> bool {
    let Some(Read {
        sha512,
        params,
        salt,
        written,
    }) = read(hash)
    else {
        return false;
    };
    let salt = salt.as_bytes();
    let ours = if sha512 {
        crypt_b64::encode(&sha512_crypt(password, salt, params), &SHA512_ORDER)
    } else {
        crypt_b64::encode(&sha256_crypt(password, salt, params), &SHA256_ORDER)
    };
    constant_time_eq(ours.as_bytes(), written.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made with libxcrypt's crypt(3) (Python's ctypes on libcrypt.so.1) for "tanstaaf": salts
    /// the verifier crate refuses, an empty one, and one cut to 16 characters by crypt.
    const LIBXCRYPT: [&str; 4] = [
        "$6$a_b$5hs.LkYj6iojEXe.9Zfl6hNcgdK6F4OWjUGttNxZ5G7yzYXd2BL9suyr2PwUef/MuOIJOjiOoywKJSajt0N0E.",
        "$6$$tX4RoG.fUorHs/kGqB.E.NfEYR4UgeFE19WZL6c0WaGIygAm9DnKwnwJ/QXWEop/mDSfIkZy3rPKwERzUvc6e1",
        "$5$$WoY16r4nx2YszDzCzvaqSsmeizECu7svDa7YvR6TE/9",
        "$6$rounds=1000$0123456789abcdef$gwxgAKlOQ4gUCFiBQaLdRXdBH71QOss7kDqIE5I95dH8sRvOaJ8Jaw1UmC1/.zOJ814sTbanUaemKVk6Ues5o1",
    ];

    #[test]
    fn glibc_strings_of_any_salt_verify() {
        for hash in LIBXCRYPT {
            assert!(verify(hash, b"tanstaaf"), "{hash}");
            assert!(!verify(hash, b"tanstaaF"), "{hash}");
        }
        // Drepper's specification vectors (also in `scheme`'s tests), read here as the crate reads them.
        for (hash, password) in [
            (
                "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
                "Hello world!",
            ),
            (
                "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
                "Hello world!",
            ),
        ] {
            assert!(verify(hash, password.as_bytes()), "{hash}");
        }
    }

    #[test]
    fn strings_that_do_not_read_verify_nothing() {
        for bad in [
            "$6$a_b",
            "$7$a_b$x",
            "$6$rounds=x$a_b$x",
            "$6$rounds=999$a_b$x",
            "$6$a_b$5hs.LkYj6iojEXe.9Zfl6hNcgdK6F4OWjUGttNxZ5G7yzYXd2BL9suyr2PwUef/MuOIJOjiOoywKJSajt0N0E",
        ] {
            assert!(!verify(bad, b"tanstaaf"), "{bad}");
        }
    }
}
