//! SCRAM-SHA-256's keys (RFC 5802 section 3, RFC 7677): the salted password and the keys derived from
//! it, the `{SCRAM-SHA-256}` passwd-file value, and the stand-in keys of users who cannot do SCRAM. The
//! exchange's messages are the session's (`session/scram.rs`); nothing here knows the wire format.
//!
//! Passwords are used as sent, without SASLprep (RFC 4013), as everywhere else in poplar: an ASCII
//! password is unchanged by it, but a non-ASCII one may not match a client that applies it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::salt_key::SaltKey;
use super::secret::constant_time_eq;

/// The output of SHA-256, and so the length of every key and signature.
pub const KEY_LEN: usize = 32;

/// The iteration count of users whose keys are computed at login ({PLAIN} users) and of the stand-in
/// keys. RFC 7677 section 4: "the hash iteration-count announced by a server SHOULD be at least 4096";
/// it is also what `doveadm pw -s SCRAM-SHA-256` writes, so stored users look the same.
pub const ITERATIONS: u32 = 4096;

/// The most iterations a `{SCRAM-SHA-256}` value may ask for: each login pays them (about 1 ms per 4096
/// here), so a stray digit must not turn every login into seconds of CPU. 250 times the usual count.
pub const MAX_ITERATIONS: u32 = 1_024_000;

/// Length of the derived salts: Dovecot's salts are 16 octets, and a stored user's salt then looks like
/// any other user's.
pub const SALT_LEN: usize = 16;

/// The longest stored salt accepted; it is sent in every server-first message.
pub const MAX_SALT_LEN: usize = 64;

/// A user's SCRAM credentials: what the server needs to check a proof and to prove itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; KEY_LEN],
    pub server_key: [u8; KEY_LEN],
}

impl Keys {
    /// RFC 5802 section 3: the keys of `password` under `salt`, at the cost of `iterations` HMACs.
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> Keys {
        let salted = salted_password(password, salt, iterations);
        Keys {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&hmac(&salted, b"Client Key")),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Dovecot's `{SCRAM-SHA-256}` value, `<iterations>,<salt>,<StoredKey>,<ServerKey>` in base64. Errors
    /// say which part is wrong, never its value.
    pub fn parse(value: &str) -> Result<Keys, String> {
        let fields: Vec<&str> = value.split(',').collect();
        let &[iterations, salt, stored_key, server_key] = fields.as_slice() else {
            return Err("expected <iterations>,<salt>,<StoredKey>,<ServerKey>".to_string());
        };
        let iterations = iterations
            .parse()
            .ok()
            .filter(|n| (1..=MAX_ITERATIONS).contains(n) && !iterations.starts_with('+'))
            .ok_or(format!(
                "iterations must be a number from 1 to {MAX_ITERATIONS}"
            ))?;
        let salt = STANDARD
            .decode(salt)
            .ok()
            .filter(|s| (1..=MAX_SALT_LEN).contains(&s.len()))
            .ok_or(format!("salt must be 1 to {MAX_SALT_LEN} octets in base64"))?;
        let key = |text: &str, what: &str| {
            STANDARD
                .decode(text)
                .ok()
                .and_then(|k| <[u8; KEY_LEN]>::try_from(k).ok())
                .ok_or(format!("{what} must be {KEY_LEN} octets in base64"))
        };
        Ok(Keys {
            iterations,
            salt,
            stored_key: key(stored_key, "StoredKey")?,
            server_key: key(server_key, "ServerKey")?,
        })
    }

    /// Whether `password` is the one these keys were made from (USER/PASS, AUTH PLAIN and LOGIN for a
    /// `{SCRAM-SHA-256}` user): its StoredKey, derived again, compared in constant time.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let derived = Keys::from_password(password, &self.salt, self.iterations);
        constant_time_eq(&derived.stored_key, &self.stored_key)
    }

    /// The keys offered for a user who cannot do SCRAM (unknown, locked, a crypt hash, a system
    /// account): the same salt on every attempt and the same work as a {PLAIN} user's, so the
    /// server-first message and its timing tell nothing. No proof can succeed with them: the lookup
    /// that returns them returns no account. The salt is `user`'s under `salts`, as a {PLAIN} user's is.
    pub fn stand_in(user: &[u8], salts: &SaltKey) -> Keys {
        Keys::from_password(b"no such secret", &salts.salt(user), ITERATIONS)
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys(i={}, ..)", self.iterations)
    }
}

/// RFC 5802 section 2.2, Hi(): PBKDF2 with HMAC-SHA-256, one block.
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    let _permit = super::gate::enter();
    pbkdf2::pbkdf2_hmac_array::<Sha256, KEY_LEN>(password, salt, iterations)
}

pub fn hmac(key: &[u8], data: &[u8]) -> [u8; KEY_LEN] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's user "user", password "pencil", salt and iteration count, with the StoredKey
    /// and ServerKey that follow from them (Python's hashlib.pbkdf2_hmac and hmac agree).
    const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC7677_STORED: &str = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
    const RFC7677_SERVER: &str = "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    fn rfc7677_value() -> String {
        format!("4096,{RFC7677_SALT},{RFC7677_STORED},{RFC7677_SERVER}")
    }

    #[test]
    fn keys_of_the_rfc7677_example() {
        let salt = STANDARD.decode(RFC7677_SALT).unwrap();
        let keys = Keys::from_password(b"pencil", &salt, 4096);
        assert_eq!(keys, Keys::parse(&rfc7677_value()).unwrap());
        assert!(keys.verify_password(b"pencil"));
        for wrong in [&b"Pencil"[..], b"pencil ", b"", b"penci"] {
            assert!(!keys.verify_password(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong_but_not_the_value() {
        let key = RFC7677_STORED;
        let short = STANDARD.encode([1u8; 31]);
        let long_salt = STANDARD.encode([1u8; MAX_SALT_LEN + 1]);
        let cases = [
            (String::new(), "expected"),
            (format!("4096,{RFC7677_SALT},{key}"), "expected"),
            (format!("4096,{RFC7677_SALT},{key},{key},x"), "expected"),
            (format!("0,{RFC7677_SALT},{key},{key}"), "iterations"),
            (format!("+4096,{RFC7677_SALT},{key},{key}"), "iterations"),
            (format!("4096x,{RFC7677_SALT},{key},{key}"), "iterations"),
            (
                format!("99999999999,{RFC7677_SALT},{key},{key}"),
                "iterations",
            ),
            (format!("1024001,{RFC7677_SALT},{key},{key}"), "iterations"),
            (format!("4096,,{key},{key}"), "salt"),
            (format!("4096,{long_salt},{key},{key}"), "salt"),
            (format!("4096,not base64!,{key},{key}"), "salt"),
            (format!("4096,{RFC7677_SALT},{short},{key}"), "StoredKey"),
            (format!("4096,{RFC7677_SALT},{key},{short}"), "ServerKey"),
            (format!("4096,{RFC7677_SALT},{key},hunter2"), "ServerKey"),
        ];
        for (value, want) in cases {
            let err = Keys::parse(&value).unwrap_err();
            assert!(err.contains(want), "{value:?}: {err}");
            assert!(!err.contains("hunter2") && !err.contains(key), "{err}");
        }
    }

    #[test]
    fn stand_in_keys_are_stable_per_name_and_key() {
        let salts = SaltKey::from_contents(&[7u8; 32]);
        let stand_in = Keys::stand_in(b"nobody", &salts);
        assert_eq!(stand_in, Keys::stand_in(b"nobody", &salts));
        assert_eq!(stand_in.salt, salts.salt(b"nobody"));
        assert_eq!(
            (stand_in.iterations, stand_in.salt.len()),
            (ITERATIONS, SALT_LEN)
        );
        let other = SaltKey::from_contents(&[8u8; 32]);
        assert_ne!(stand_in.salt, Keys::stand_in(b"nobody", &other).salt);
    }

    #[test]
    fn debug_hides_the_keys() {
        let keys = Keys::parse(&rfc7677_value()).unwrap();
        assert_eq!(format!("{keys:?}"), "Keys(i=4096, ..)");
    }
}
