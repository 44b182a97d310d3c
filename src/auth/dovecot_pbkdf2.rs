//! Dovecot's `{PBKDF2}` password scheme: `$1$salt$rounds$hash`, the hash being PBKDF2-HMAC-SHA1 of
//! the password, 20 octets in hex, with the salt as written (its characters, not decoded) and the
//! rounds given. `doveadm pw -s PBKDF2` writes a 16-character salt and 5000 rounds.

use sha1::Sha1;

use super::digest::decode_hex;
use super::secret::constant_time_eq;

/// The octets of the hash: SHA-1's.
const KEY_LEN: usize = 20;

/// The most rounds checked: 10,000 times the default, whatever the length of the password, 5 s a
/// check on a 2020s server core with SHA instructions and 8 s without (see
/// `scheme::CryptFault::TooSlow`).
pub const MAX_ROUNDS: u32 = 50_000_000;

/// A parsed `{PBKDF2}` value.
#[derive(Clone, PartialEq, Eq)]
pub struct Pbkdf2 {
    salt: String,
    rounds: u32,
    key: [u8; KEY_LEN],
}

impl Pbkdf2 {
    /// Parses `$1$salt$rounds$hash` as Dovecot does: rounds in decimal digits, the hash 40 hex
    /// digits in either case; the salt may be empty. Zero rounds is refused (Dovecot's check would then
    /// compare against no hash at all). Errors never quote the value.
    pub fn parse(value: &str) -> Result<Pbkdf2, &'static str> {
        const SHAPE: &str = "not $1$salt$rounds$hash";
        let fields: Vec<&str> = value.strip_prefix("$1$").ok_or(SHAPE)?.split('$').collect();
        let [salt, rounds, hash] = fields[..] else {
            return Err(SHAPE);
        };
        let rounds = Some(rounds)
            .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|r| r.parse::<u32>().ok())
            .ok_or("rounds not a number")?;
        if rounds == 0 {
            return Err("zero rounds");
        }
        let key = decode_hex(hash)
            .and_then(|k| <[u8; KEY_LEN]>::try_from(k).ok())
            .ok_or("hash not 40 hex digits")?;
        Ok(Pbkdf2 {
            salt: salt.to_string(),
            rounds,
            key,
        })
    }

    /// Checks `password`, holding a hashing permit meanwhile (see `gate`); one past [`MAX_ROUNDS`]
    /// verifies nothing, at once.
    #[inline(never)]
    pub fn verify(&self, password: &[u8]) -> bool {
        if self.too_slow() {
            return false;
        }
        let _permit = super::gate::enter();
        let key =
            pbkdf2::pbkdf2_hmac_array::<Sha1, KEY_LEN>(password, self.salt.as_bytes(), self.rounds);
        constant_time_eq(&key, &self.key)
    }

    pub fn too_slow(&self) -> bool {
        self.rounds > MAX_ROUNDS
    }

    /// What decides the cost of a check: the rounds (see `scheme::pick_dummy`).
    pub fn cost_class(&self) -> String {
        format!("PBKDF2 {}", self.rounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `doveadm pw -s PBKDF2 -p tanstaaf` (Dovecot 2.3), verified with `doveadm pw -t`.
    const TANSTAAF: &str = "$1$kxPCE654Ni5CNcAB$5000$5219cc0e5e4f61712a599e497960932e7a2f4dbc";

    #[test]
    fn doveadm_vectors_verify() {
        let stored = Pbkdf2::parse(TANSTAAF).unwrap();
        assert!(stored.verify(b"tanstaaf"));
        assert!(!stored.verify(b"tanstaaF"));
        assert!(!stored.verify(b""));
        // Hex in capitals reads the same.
        let (salt_and_rounds, hash) = TANSTAAF.rsplit_once('$').unwrap();
        let upper = format!("{salt_and_rounds}${}", hash.to_ascii_uppercase());
        assert!(Pbkdf2::parse(&upper).unwrap().verify(b"tanstaaf"));
        // RFC 6070's PBKDF2-HMAC-SHA1 vectors, 20 octets: the salt is used as written.
        for (salt, rounds, hash) in [
            ("salt", 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6"),
            ("salt", 4096, "4b007901b765489abead49d926f721d065a429c1"),
        ] {
            let stored = Pbkdf2::parse(&format!("$1${salt}${rounds}${hash}")).unwrap();
            assert!(stored.verify(b"password"), "{rounds}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "$2$salt$5000$5219cc0e5e4f61712a599e497960932e7a2f4dbc",
            "$1$salt$5000",
            "$1$salt$5000$5219cc0e5e4f61712a599e497960932e7a2f4dbc$",
            "$1$salt$-5$5219cc0e5e4f61712a599e497960932e7a2f4dbc",
            "$1$salt$+5$5219cc0e5e4f61712a599e497960932e7a2f4dbc",
            "$1$salt$0$5219cc0e5e4f61712a599e497960932e7a2f4dbc",
            "$1$salt$99999999999$5219cc0e5e4f61712a599e497960932e7a2f4dbc",
            "$1$salt$5000$5219cc0e5e4f61712a599e497960932e7a2f4db",
            "$1$salt$5000$5219cc0e5e4f61712a599e497960932e7a2f4dbz",
        ] {
            assert!(Pbkdf2::parse(bad).is_err(), "{bad}");
        }
        assert!(Pbkdf2::parse("$1$$1$0c60c80f961f0e71f3a9b524af6012062fe037a6").is_ok());
    }

    #[test]
    fn rounds_past_the_bound_verify_nothing() {
        let at_bound = TANSTAAF.replace("$5000$", &format!("${MAX_ROUNDS}$"));
        assert!(!Pbkdf2::parse(&at_bound).unwrap().too_slow());
        let past = TANSTAAF.replace("$5000$", "$4000000000$");
        let past = Pbkdf2::parse(&past).unwrap();
        assert!(past.too_slow());
        // Would take half an hour were it hashed.
        assert!(!past.verify(b"tanstaaf"));
    }
}
