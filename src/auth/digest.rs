//! Dovecot's digest password schemes: `{SHA}`/`{SHA1}`, `{SHA256}`, `{SHA512}`, `{PLAIN-MD5}`,
//! `{LDAP-MD5}` and their salted forms `{SSHA}`, `{SSHA256}`, `{SSHA512}`, `{SMD5}` (the hash of the
//! password followed by the salt, then the salt). One round of a fast hash: weak against anyone who
//! reads the file, and accepted so that a Dovecot or LDAP user database moves over as it is.
//!
//! The value is base64 or hex as Dovecot reads it: as a `.b64`, `.base64` or `.hex` suffix on the
//! scheme name says, else base64, but for an unsalted digest as long as its hex, taken as hex (then as
//! base64 if it is not hex). `doveadm pw` writes base64 but for `{PLAIN-MD5}`, in hex.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use md5::Md5;
use sha1::Sha1;
use sha2::{Sha256, Sha512};

use super::secret::constant_time_eq;

/// How the value of a scheme is written, from the suffix of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Base64,
    Hex,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
        }
    }
}

/// Splits `SCHEME.suffix` into the scheme and the encoding the suffix names; `None` for a suffix
/// Dovecot does not know either.
pub fn split_encoding(scheme: &str) -> Option<(&str, Option<Encoding>)> {
    let Some((name, suffix)) = scheme.split_once('.') else {
        return Some((scheme, None));
    };
    match suffix.to_ascii_lowercase().as_str() {
        "b64" | "base64" => Some((name, Some(Encoding::Base64))),
        "hex" => Some((name, Some(Encoding::Hex))),
        _ => None,
    }
}

/// Decodes `value` as `encoding` says, as Dovecot does: hex in either case; base64 with its padding
/// (Dovecot refuses it without), white space skipped, unused bits of the last character ignored.
pub fn decode(value: &str, encoding: Encoding) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Base64 => {
            let compact: String = value.split_ascii_whitespace().collect();
            DOVECOT_BASE64.decode(compact).ok()
        }
        Encoding::Hex => decode_hex(value),
    }
}

const DOVECOT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

pub(super) fn decode_hex(value: &str) -> Option<Vec<u8>> {
    if value.len() % 2 != 0 {
        return None;
    }
    let nibble = |b: u8| char::from(b).to_digit(16);
    value
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4 | nibble(pair[1])?) as u8))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The digest's length in octets.
    fn len(self) -> usize {
        match self {
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The digest of `password` followed by `salt`.
    fn hash(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        fn of<H: sha2::Digest>(password: &[u8], salt: &[u8]) -> Vec<u8> {
            H::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec()
        }
        match self {
            Algorithm::Md5 => of::<Md5>(password, salt),
            Algorithm::Sha1 => of::<Sha1>(password, salt),
            Algorithm::Sha256 => of::<Sha256>(password, salt),
            Algorithm::Sha512 => of::<Sha512>(password, salt),
        }
    }
}

/// A stored digest, and its salt (empty for the unsalted schemes).
#[derive(Clone, PartialEq, Eq)]
pub struct Digest {
    algorithm: Algorithm,
    hash: Vec<u8>,
    salt: Vec<u8>,
}

/// The algorithm only: the digest is as secret as the password it stands for, against a dictionary.
impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({:?}, ..)", self.algorithm)
    }
}

impl Digest {
    /// Parses the value of digest scheme `scheme` (upper case, without its suffix), written as
    /// `encoding` says or, without a suffix, as Dovecot writes it. `None` if `scheme` is no digest
    /// scheme. Errors name the scheme, never the value.
    pub fn parse(
        scheme: &str,
        encoding: Option<Encoding>,
        value: &str,
    ) -> Option<Result<Digest, String>> {
        let (algorithm, salted) = match scheme {
            "SHA" | "SHA1" => (Algorithm::Sha1, false),
            "SHA256" => (Algorithm::Sha256, false),
            "SHA512" => (Algorithm::Sha512, false),
            // Dovecot's {MD5} is MD5-crypt when it starts with $1$ (the caller's), else this.
            "PLAIN-MD5" | "LDAP-MD5" | "MD5" => (Algorithm::Md5, false),
            "SSHA" => (Algorithm::Sha1, true),
            "SSHA256" => (Algorithm::Sha256, true),
            "SSHA512" => (Algorithm::Sha512, true),
            "SMD5" => (Algorithm::Md5, true),
            _ => return None,
        };
        let raw = match encoding {
            Some(encoding) => decode(value, encoding),
            // Without a suffix, as Dovecot reads them: an unsalted digest as long as its hex is hex
            // (its base64 never is that long), or base64 if it is not hex after all; anything else
            // is base64 (PLAIN-MD5, which Dovecot writes in hex, included).
            None if !salted && value.len() == 2 * algorithm.len() => {
                decode(value, Encoding::Hex).or_else(|| decode(value, Encoding::Base64))
            }
            None => decode(value, Encoding::Base64),
        };
        let Some(mut raw) = raw else {
            let expected = encoding.unwrap_or(Encoding::Base64).name();
            return Some(Err(format!("bad {scheme} value: not {expected}")));
        };
        let n = algorithm.len();
        let fits = if salted {
            raw.len() > n
        } else {
            raw.len() == n
        };
        if !fits {
            return Some(Err(format!(
                "bad {scheme} value: {} octets where {} {n} are expected",
                raw.len(),
                if salted { "more than" } else { "exactly" },
            )));
        }
        let salt = raw.split_off(n);
        Some(Ok(Digest {
            algorithm,
            hash: raw,
            salt,
        }))
    }

    /// Whether `password` hashes to the stored digest, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        constant_time_eq(&self.algorithm.hash(password, &self.salt), &self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `doveadm pw -s SCHEME -p tanstaaf` (Dovecot 2.3), each verifying "tanstaaf".
    const DOVEADM_TANSTAAF: [(&str, &str); 13] = [
        ("SHA", "60cXn4M+9rlkPiIl1CM8mjjFKYE="),
        ("SHA1", "60cXn4M+9rlkPiIl1CM8mjjFKYE="),
        ("SHA256", "2OZJiX4f3IEocTIetqYiu1a2GovhuIBYRxZR+uXBLKo="),
        (
            "SHA512",
            "7k4B2Jp+VfRq9eIRUB9fGp9ZeNyZPWiiDRYSh7oJALW7dmzxjah/z/nf+cj/MOzDknLTjla4zoq4EfWvmjU7oA==",
        ),
        ("SSHA", "5aphq8pBIVknECocErtInDm/kcDFFGpB"),
        (
            "SSHA256",
            "QqDEgCEHgHj3u2/JNDOWjCxFOzb3oPidudwSV8nY3eGj+WzW",
        ),
        (
            "SSHA512",
            "NW3AZrmdYrtmn8pZmwhsWjMZ7N3SNb5xMAAdVFm4FWVd9yWH/oEEZQ4KRkvKGaYwmY/0zX00yG3VGE6/wF3OQ13uFKM=",
        ),
        ("SMD5", "tazDCaqvhfaSa8S2RqMVk3h5yvo="),
        ("PLAIN-MD5", "b3aa0ba4e1f957e5f3ef356cfc147008"),
        ("LDAP-MD5", "s6oLpOH5V+Xz7zVs/BRwCA=="),
        (
            "SHA256.HEX",
            "d8e649897e1fdc812871321eb6a622bb56b61a8be1b88058471651fae5c12caa",
        ),
        (
            "SSHA.HEX",
            "9c3c1b4956cc391e7e7aec25a37ffb6b77cd99bae3fd290d",
        ),
        ("MD5", "b3aa0ba4e1f957e5f3ef356cfc147008"),
    ];

    fn parse(scheme: &str, value: &str) -> Result<Digest, String> {
        let (name, encoding) = split_encoding(scheme).unwrap();
        Digest::parse(&name.to_ascii_uppercase(), encoding, value).unwrap()
    }

    #[test]
    fn doveadm_hashes_verify_their_password_only() {
        for (scheme, value) in DOVEADM_TANSTAAF {
            let digest = parse(scheme, value).unwrap_or_else(|e| panic!("{scheme}: {e}"));
            assert!(digest.verify(b"tanstaaf"), "{scheme}");
            for wrong in [&b"tanstaa"[..], b"tanstaaff", b"TANSTAAF", b""] {
                assert!(!digest.verify(wrong), "{scheme} {wrong:?}");
            }
        }
    }

    #[test]
    fn unsalted_values_are_read_as_hex_or_base64_by_their_length() {
        // The SHA256 digest of "tanstaaf" in base64 (the default) and in hex, with and without a suffix.
        let b64 = "2OZJiX4f3IEocTIetqYiu1a2GovhuIBYRxZR+uXBLKo=";
        let hex = "d8e649897e1fdc812871321eb6a622bb56b61a8be1b88058471651fae5c12caa";
        let want = parse("SHA256", b64).unwrap();
        assert_eq!(parse("SHA256", hex), Ok(want.clone()));
        assert_eq!(
            parse("sha256.hex", &hex.to_ascii_uppercase()),
            Ok(want.clone())
        );
        assert_eq!(parse("SHA256.b64", b64), Ok(want.clone()));
        assert_eq!(parse("SHA256.BASE64", b64), Ok(want.clone()));
        // Dovecot skips white space in base64 (`doveadm pw -t` verifies these).
        let spaced = format!("{} {} ", &b64[..10], &b64[10..]);
        assert_eq!(parse("SHA256", &spaced), Ok(want.clone()));
        assert!(parse("SHA256", b64.trim_end_matches('=')).is_err());
        // PLAIN-MD5 is hex by default, LDAP-MD5 base64; either reads the other by its length.
        let md5_b64 = "s6oLpOH5V+Xz7zVs/BRwCA==";
        let md5_hex = "b3aa0ba4e1f957e5f3ef356cfc147008";
        assert_eq!(parse("PLAIN-MD5", md5_b64), parse("LDAP-MD5", md5_hex));
        assert!(parse("PLAIN-MD5", md5_b64).unwrap().verify(b"tanstaaf"));
        // A salted value is base64 unless the suffix says hex (`doveadm pw -t` agrees).
        let ssha_hex = "9c3c1b4956cc391e7e7aec25a37ffb6b77cd99bae3fd290d";
        assert!(parse("SSHA.hex", ssha_hex).unwrap().verify(b"tanstaaf"));
        assert!(!parse("SSHA", ssha_hex).unwrap().verify(b"tanstaaf"));
    }

    #[test]
    fn bad_values_name_the_scheme_and_never_the_value() {
        let cases = [
            ("SHA", "hunter2", "bad SHA value: not base64"),
            (
                "SHA",
                "aHVudGVyMg==",
                "bad SHA value: 7 octets where exactly 20 are expected",
            ),
            ("SHA256.hex", "zz", "bad SHA256 value: not hex"),
            ("SSHA512", "hunter2!", "bad SSHA512 value: not base64"),
            (
                "SSHA",
                "",
                "bad SSHA value: 0 octets where more than 20 are expected",
            ),
            (
                "SSHA",
                "60cXn4M+9rlkPiIl1CM8mjjFKYE=",
                "bad SSHA value: 20 octets where more than 20 are expected",
            ),
            (
                "PLAIN-MD5",
                "",
                "bad PLAIN-MD5 value: 0 octets where exactly 16 are expected",
            ),
        ];
        for (scheme, value, want) in cases {
            assert_eq!(
                parse(scheme, value),
                Err(want.to_string()),
                "{scheme} {value}"
            );
        }
        assert_eq!(split_encoding("SHA.rot13"), None);
        assert!(Digest::parse("SHA512-CRYPT", None, "x").is_none());
    }
}
