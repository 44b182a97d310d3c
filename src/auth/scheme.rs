//! Password schemes of Dovecot's passwd-file: `{PLAIN}`, `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{BLF-CRYPT}`,
//! `{MD5-CRYPT}`, `{SCRAM-SHA-256}`, the digests of `digest` (`{SSHA512}`, `{SHA}`, `{PLAIN-MD5}`, ...), and
//! the crypt(3) strings of `/etc/shadow` (yescrypt, SHA-crypt, bcrypt, MD5-crypt).
//! Parsing the password field and verifying a password against it; the file formats are `passwd_file`'s
//! and `system`'s.

use std::collections::HashMap;

use sha_crypt::PasswordVerifier;

use super::crypt_b64::ALPHABET as CRYPT_B64;
use super::digest::{self, Digest};
use super::dovecot_pbkdf2::Pbkdf2;
use super::scram;
use super::secret::constant_time_eq;

/// What an unknown or locked user is checked against when the user database holds no crypt hash (see
/// [`pick_dummy`]), so that they cost what a wrong password costs: a SHA512-CRYPT hash with the
/// default 5000 rounds, as `doveadm pw -s SHA512-CRYPT` and `mkpasswd` make them
/// (`openssl passwd -6 -salt Ab3/xY.z tanstaaf`).
pub(super) const DUMMY_HASH: &str = "$6$Ab3/xY.z$dXR7mqLom2U1mzG59z.yPwH.N0SqTMr61ZLZijJT91xGXcWy5oA.jrTV6.PjRBA/LrVFbk8O8DSFcAQUjIOEO1";

/// A stored credential, parsed from `{SCHEME}secret`.
#[derive(Clone, PartialEq, Eq)]
pub enum Stored {
    Plain(Vec<u8>),
    /// A crypt(3) string: `$y$...`, `$6$...`, `$5$...`, `$2b$...`, `$1$...`.
    Crypt(String),
    /// Dovecot's `{SCRAM-SHA-256}`: the SCRAM keys, from which the password cannot be recovered but
    /// against which it can be checked (and a SCRAM proof too).
    Scram(scram::Keys),
    /// One of Dovecot's digest schemes (`{SSHA512}`, `{SHA}`, `{PLAIN-MD5}`, ...): one round of a fast
    /// hash, salted or not.
    Digest(Digest),
    /// Dovecot's `{PBKDF2}`: PBKDF2-HMAC-SHA1, salted, with its rounds.
    Pbkdf2(Pbkdf2),
    /// The account cannot log in (`!`, `*`, empty). An unknown scheme is not this but an error of
    /// [`Stored::parse`], which refuses the whole file.
    Locked,
}

/// The crypt(3) prefixes we can verify: yescrypt, SHA-512, SHA-256, the bcrypt variants and MD5-crypt,
/// the forms a Debian host's `/etc/shadow` actually holds (DES crypt is refused: 8-octet passwords).
pub const CRYPT_PREFIXES: [&str; 7] = ["$y$", "$6$", "$5$", "$2y$", "$2b$", "$2a$", "$1$"];

/// Dovecot's `{ARGON2I}` and `{ARGON2ID}` (no crypt(3) of a Linux host makes these).
const ARGON2_PREFIXES: [&str; 2] = ["$argon2id$", "$argon2i$"];

/// Checks `password` against a crypt string, holding a hashing permit (`gate`) meanwhile. SCRAM keys
/// are derived under a permit of their own (`scram::salted_password`); a permit is never taken while
/// holding one, or the holders could wait on each other for ever.
///
/// Not inlined: the hash functions' frames, and the permit's, would then be part of every `verify`,
/// and a `{PLAIN}` login would touch a stack page more, which an idle session keeps (measured: 24.1
/// against 20.9 KiB of memory per idle session).
#[inline(never)]
fn verify_crypt(hash: &str, password: &[u8]) -> bool {
    match crypt_fault(hash) {
        None => {}
        // Each load of the file has named it.
        Some(CryptFault::Malformed) => return false,
        Some(fault) => {
            log::error!("a stored password is {fault}: refused");
            return false;
        }
    }
    let memory = memory_per_check(hash).unwrap_or(0);
    let _permit = super::gate::enter_with(memory);
    if hash.starts_with("$2") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else if hash.starts_with("$y$") {
        yescrypt::Yescrypt::default()
            .verify_password(password, hash)
            .is_ok()
    } else if hash.starts_with("$1$") {
        super::md5_crypt::verify(password, hash)
    } else if hash.starts_with("$argon2") {
        // Variant, memory, passes and lanes come from the hash.
        argon2_as_libsodium_writes(hash).is_some_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(password, &parsed)
                .is_ok()
        })
    } else {
        // The algorithm ($5$ or $6$) and rounds come from the hash itself.
        super::glibc_sha_crypt::verify(hash, password)
    }
}

/// The most memory a check may take: 1 GiB and 1 MiB (libxcrypt's largest yescrypt setting takes 1 GiB
/// and 16 KiB), 64 times Debian's yescrypt and 16 times Dovecot's Argon2.
/// yescrypt and Argon2 allocate what their hash asks for at once, and an allocation that fails aborts
/// the whole server; a hash asking for more verifies nothing (and `crypt_fault` says so).
const MAX_MEMORY_PER_CHECK: u64 = super::gate::MEMORY_BUDGET;

/// An Argon2 string as libsodium (Dovecot's) writes and accepts it: version 19, and only the m, t
/// and p parameters (no `keyid` or `data`); `None` for anything else, which then verifies nothing.
fn argon2_as_libsodium_writes(hash: &str) -> Option<argon2::PasswordHash> {
    let parsed = argon2::PasswordHash::new(hash).ok()?;
    let version_19 = parsed.version == Some(0x13);
    let only_mtp = parsed
        .params
        .iter()
        .all(|(name, _)| ["m", "t", "p"].contains(&name.as_str()));
    (version_19 && only_mtp && parsed.hash.is_some()).then_some(parsed)
}

/// The memory a check of `hash` allocates, in octets, for yescrypt (128 r (N + p), and 12 KiB of
/// S-boxes per p) and Argon2 (m KiB); `None` for other hashes and for ones whose parameters do not
/// parse (which verify nothing).
fn memory_per_check(hash: &str) -> Option<u64> {
    if let Some(rest) = hash.strip_prefix("$y$") {
        let params: yescrypt::Params = rest.split('$').next()?.parse().ok()?;
        let (n, r, p) = (params.n(), u64::from(params.r()), u64::from(params.p()));
        let blocks = n.checked_add(p).and_then(|np| np.checked_mul(128 * r));
        let sboxes = p.checked_mul(12 * 1024);
        return Some(
            blocks
                .zip(sboxes)
                .and_then(|(b, s)| b.checked_add(s))
                .unwrap_or(u64::MAX),
        );
    }
    if ARGON2_PREFIXES.iter().any(|p| hash.starts_with(p)) {
        let parsed = argon2::PasswordHash::new(hash).ok()?;
        let params = argon2::Params::try_from(&parsed).ok()?;
        return Some(u64::from(params.m_cost()) * 1024);
    }
    None
}

impl Stored {
    /// Parses a passwd-file password field.
    ///
    /// A field without `{SCHEME}` is Dovecot's default passwd-file scheme, CRYPT; of crypt(3) we
    /// accept the forms of `CRYPT_PREFIXES`. Errors name the scheme, never the secret.
    pub fn parse(field: &str) -> Result<Stored, String> {
        // Like shadow(5), a leading '!' or '*' disables the account without losing its password.
        if field.is_empty() || field.starts_with(['!', '*']) {
            return Ok(Stored::Locked);
        }
        let Some(rest) = field.strip_prefix('{') else {
            return crypt(field, "CRYPT");
        };
        let Some((scheme, secret)) = rest.split_once('}') else {
            return Err("password field has '{' without a closing '}'".to_string());
        };
        let unsupported = || format!("unsupported password scheme {scheme}");
        // `{SHA256.HEX}`, `{PLAIN.b64}`: Dovecot's suffixes naming how the value is written.
        let (name, encoding) = digest::split_encoding(scheme).ok_or_else(unsupported)?;
        let name = name.to_ascii_uppercase();
        // Dovecot's {MD5} is an MD5-crypt string (below), or else a PLAIN-MD5 digest; with a suffix it
        // is decoded twice there, a form no tool writes: refused here.
        if name == "MD5" && encoding.is_some() {
            return Err(unsupported());
        }
        let md5_crypt = name == "MD5" && secret.starts_with("$1$");
        if let Some(digest) = Digest::parse(&name, encoding, secret).filter(|_| !md5_crypt) {
            return digest.map(Stored::Digest);
        }
        if matches!(name.as_str(), "PLAIN" | "CLEAR" | "CLEARTEXT") {
            let plain = match encoding {
                None => secret.as_bytes().to_vec(),
                Some(encoding) => digest::decode(secret, encoding)
                    .ok_or_else(|| format!("bad {scheme} value: not {}", encoding.name()))?,
            };
            // Dovecot refuses empty passwords unless told otherwise; an empty secret locks the account.
            return Ok(if plain.is_empty() {
                Stored::Locked
            } else {
                Stored::Plain(plain)
            });
        }
        if encoding.is_some() {
            return Err(unsupported());
        }
        match name.as_str() {
            "MD5" => crypt_with(secret, scheme, &["$1$"]),
            "CRYPT" => crypt(secret, scheme),
            "SHA512-CRYPT" => crypt_with(secret, scheme, &["$6$"]),
            "SHA256-CRYPT" => crypt_with(secret, scheme, &["$5$"]),
            "BLF-CRYPT" => crypt_with(secret, scheme, &["$2y$", "$2b$", "$2a$"]),
            "MD5-CRYPT" => crypt_with(secret, scheme, &["$1$"]),
            // Either names both variants, as libsodium's check in Dovecot takes both.
            "ARGON2I" | "ARGON2ID" => crypt_with(secret, scheme, &ARGON2_PREFIXES),
            "PBKDF2" => Pbkdf2::parse(secret)
                .map(Stored::Pbkdf2)
                .map_err(|e| format!("bad {scheme} value: {e}")),
            "SCRAM-SHA-256" => scram::Keys::parse(secret)
                .map(Stored::Scram)
                .map_err(|e| format!("bad {scheme} value: {e}")),
            _ => Err(unsupported()),
        }
    }

    /// Verifies a password, in time independent of where the first difference lies.
    ///
    /// A malformed crypt string verifies nothing: the file's load checked only its prefix
    /// (`--check-config` names malformed ones, see `crypt_fault`), and a bad hash must lock the
    /// account rather than panic a session.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Stored::Plain(secret) => constant_time_eq(secret, password),
            Stored::Crypt(hash) => verify_crypt(hash, password),
            Stored::Scram(keys) => keys.verify_password(password),
            Stored::Digest(digest) => digest.verify(password),
            Stored::Pbkdf2(pbkdf2) => pbkdf2.verify(password),
            Stored::Locked => false,
        }
    }

    /// Whether a check against this credential takes microseconds where an unknown user's takes a
    /// crypt hash (see `passwd_file::needs_hash_work`).
    ///
    /// A faulty hash (malformed, or too costly) is one: it verifies nothing, in microseconds.
    pub fn is_fast(&self) -> bool {
        match self {
            Stored::Plain(_) | Stored::Digest(_) => true,
            Stored::Crypt(_) | Stored::Pbkdf2(_) => self.fault().is_some(),
            Stored::Scram(_) | Stored::Locked => false,
        }
    }

    /// Why this hash can verify no password, or only at a cost not paid (see [`crypt_fault`]).
    pub fn fault(&self) -> Option<CryptFault> {
        match self {
            Stored::Crypt(hash) => crypt_fault(hash),
            Stored::Pbkdf2(pbkdf2) => pbkdf2.too_slow().then_some(CryptFault::TooSlow),
            _ => None,
        }
    }

    /// The plaintext secret, for APOP; `None` for hashed or locked credentials.
    pub fn plaintext(&self) -> Option<&[u8]> {
        match self {
            Stored::Plain(p) => Some(p),
            _ => None,
        }
    }

    /// Whether SCRAM-SHA-256 keys can be had for this credential: stored, or computed from the
    /// plaintext.
    pub fn has_scram_keys(&self) -> bool {
        matches!(self, Stored::Plain(_) | Stored::Scram(_))
    }
}

/// Why a stored crypt hash can verify no password, or could only at a cost the server does not pay:
/// see [`crypt_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptFault {
    /// Not a shape its algorithm writes: cut short, a salt or hash of the wrong length or with bits
    /// set past its end, parameters the verifier refuses.
    Malformed,
    /// More memory per check than `MAX_MEMORY_PER_CHECK`.
    TooMuchMemory,
    /// A check would take more than about 10 s, up to days: past `MAX_BCRYPT_COST`,
    /// `MAX_SHA_CRYPT_ROUNDS`, `dovecot_pbkdf2::MAX_ROUNDS`, `MAX_ARGON2_PASSES` or
    /// `MAX_YESCRYPT_PASSES`.
    TooSlow,
}

impl std::fmt::Display for CryptFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CryptFault::Malformed => "a malformed crypt hash",
            CryptFault::TooMuchMemory => "a crypt hash asking for more than 1,025 MiB per check",
            CryptFault::TooSlow => {
                "a password hash too slow to check (see PASSWD-FILE in poplar(8))"
            }
        })
    }
}

// The bounds of the time a check takes, each about 10 s at most on a 2020s server core (measured on
// one: the times below); the formats allow hours to days.

/// The highest bcrypt cost checked: 3.5 s (cost 12, which tools suggest, 0.2 s; 31, days).
const MAX_BCRYPT_COST: u32 = 16;

/// The most SHA-crypt rounds checked, 1,000 times the default: a round hashes the password twice, so
/// 1 s for SHA-512 with an 8-octet password and 7.5 s with the longest taken, 512 octets.
const MAX_SHA_CRYPT_ROUNDS: u32 = 5_000_000;

/// The most memory an Argon2 check may pass over, m times t: 11 s (Dovecot's default, 64 MiB 3 times,
/// 0.13 s). libsodium's largest settings (Argon2id 1 GiB x 4, Argon2i 512 MiB x 8) fit, and so does
/// `doveadm pw -r` up to 10.
const MAX_ARGON2_PASSES: u64 = 10 << 30;

/// The most memory a yescrypt check may pass over: 11 s with r = 32. libxcrypt's largest setting
/// (1 GiB, passed over 1 1/3 times) fits. Blocks of r below 8 cost twice as much an octet, and count
/// twice (see `yescrypt_memory_passes`).
const MAX_YESCRYPT_PASSES: u64 = 8 << 30;

/// Whether `hash` can be checked: `None` if it is well formed and affordable, else why not.
///
/// For MD5-crypt and SHA-crypt a salt of at most 8 or 16 characters and a hash of 22, 43 or 86; for
/// bcrypt a two-digit cost and 53 characters; for yescrypt parameters, salt and a hash of 43; in
/// each, no bits set past the encoded octets. Nothing is hashed, so a wrong but well-formed one
/// passes. The load checks only the prefix (refusing the whole file for a shape this check does not
/// know would lock everyone out): a faulty hash locks its user, which `--check-config` and each load
/// say with this.
pub fn crypt_fault(hash: &str) -> Option<CryptFault> {
    if !crypt_well_shaped(hash) {
        Some(CryptFault::Malformed)
    } else if memory_per_check(hash).is_some_and(|bytes| bytes > MAX_MEMORY_PER_CHECK) {
        Some(CryptFault::TooMuchMemory)
    } else if too_slow(hash) {
        Some(CryptFault::TooSlow)
    } else {
        None
    }
}

/// bcrypt's base64 alphabet, high bits first.
const BCRYPT_B64: &[u8; 64] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// The standard base64 alphabet, high bits first, without padding: Argon2's (libsodium's) strings.
const STANDARD_B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Whether `s` is base64 in `alphabet` that some octet string encodes to: a length of 4k + 1 never
/// is, and the bits of the last character past the last octet are zero (the verifiers refuse
/// anything else at once, or never match it). `high_first` for alphabets writing an octet's high
/// bits first (bcrypt, standard), where the spare bits are the last character's low bits.
fn canonical_b64(s: &str, alphabet: &[u8; 64], high_first: bool) -> bool {
    let spare_bits = match s.len() % 4 {
        0 => 0,
        2 => 4,
        3 => 2,
        _ => return false,
    };
    let mut values = s.bytes().map(|b| alphabet.iter().position(|&a| a == b));
    let Some(last) = values.next_back() else {
        return false;
    };
    let (Some(last), true) = (last, values.all(|v| v.is_some())) else {
        return false;
    };
    if high_first {
        last % (1 << spare_bits) == 0
    } else {
        last < 64 >> spare_bits
    }
}

/// The shape half of [`crypt_fault`]: cost and memory aside, whether the verifier takes `hash`.
fn crypt_well_shaped(hash: &str) -> bool {
    let b64 = |s: &str| !s.is_empty() && canonical_b64(s, CRYPT_B64, false);
    let salt_and_hash = |rest: &str, max_salt: usize, hash_len: usize| {
        rest.split_once('$')
            .is_some_and(|(salt, h)| salt.len() <= max_salt && h.len() == hash_len && b64(h))
    };
    if let Some(rest) = hash.strip_prefix("$1$") {
        return salt_and_hash(rest, 8, 22);
    }
    for (prefix, hash_len) in [("$5$", 43), ("$6$", 86)] {
        let Some(rest) = hash.strip_prefix(prefix) else {
            continue;
        };
        // Drepper's bounds: glibc writes nothing outside them, and the verifier refuses it at once.
        let rest = match sha_crypt_rounds(rest) {
            None => rest,
            Some(Some((n, rest))) if (1000..=999_999_999).contains(&n) => rest,
            Some(_) => return false,
        };
        return salt_and_hash(rest, 16, hash_len);
    }
    if let Some(rest) = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|p| hash.strip_prefix(p))
    {
        return rest.split_once('$').is_some_and(|(cost, h)| {
            let cost_ok =
                cost.len() == 2 && cost.parse::<u8>().is_ok_and(|c| (4..=31).contains(&c));
            // 16 octets of salt in 22 characters, 23 of hash in 31.
            cost_ok
                && h.len() == 53
                && canonical_b64(&h[..22], BCRYPT_B64, true)
                && canonical_b64(&h[22..], BCRYPT_B64, true)
        });
    }
    if ARGON2_PREFIXES.iter().any(|p| hash.starts_with(p)) {
        // libsodium's decoder takes no other salt (nor at least 8 octets of it: see the tests).
        let salt_ok = hash
            .rsplit('$')
            .nth(1)
            .is_some_and(|salt| canonical_b64(salt, STANDARD_B64, true));
        return salt_ok
            && argon2_as_libsodium_writes(hash)
                .is_some_and(|parsed| argon2::Params::try_from(&parsed).is_ok());
    }
    if let Some(rest) = hash.strip_prefix("$y$") {
        // libxcrypt's yescrypt hashes are 256 bits: 43 characters. Parameters that do not parse (or
        // that yescrypt refuses, as g = 1) fail the check at once.
        let parts: Vec<&str> = rest.split('$').collect();
        return parts.len() == 3
            && parts[0].bytes().all(|b| CRYPT_B64.contains(&b))
            && b64(parts[1])
            && b64(parts[2])
            && parts[2].len() == 43
            && parts[0].parse::<yescrypt::Params>().is_ok();
    }
    false
}

/// The `rounds=N$` of a SHA-crypt string after its `$5$` or `$6$`: `None` without one,
/// `Some(None)` when N is not a number, else N and what follows.
pub(super) fn sha_crypt_rounds(rest: &str) -> Option<Option<(u32, &str)>> {
    let (n, rest) = rest.strip_prefix("rounds=")?.split_once('$')?;
    let digits = n.bytes().all(|b| b.is_ascii_digit());
    Some(digits.then(|| n.parse().ok()).flatten().map(|n| (n, rest)))
}

/// Whether a well-shaped `hash` takes longer to check than the server allows: see [`CryptFault::TooSlow`].
fn too_slow(hash: &str) -> bool {
    if let Some(rest) = hash
        .strip_prefix("$5$")
        .or_else(|| hash.strip_prefix("$6$"))
    {
        return sha_crypt_rounds(rest)
            .flatten()
            .is_some_and(|(n, _)| n > MAX_SHA_CRYPT_ROUNDS);
    }
    if let Some(rest) = hash.strip_prefix("$2") {
        let cost = rest.split('$').nth(1).and_then(|c| c.parse::<u32>().ok());
        return cost.is_none_or(|c| c > MAX_BCRYPT_COST);
    }
    if let Some(rest) = hash.strip_prefix("$y$") {
        let params = rest.split('$').next().unwrap_or_default();
        return yescrypt_memory_passes(params).is_none_or(|bytes| bytes > MAX_YESCRYPT_PASSES);
    }
    if ARGON2_PREFIXES.iter().any(|p| hash.starts_with(p)) {
        let params = argon2::PasswordHash::new(hash)
            .ok()
            .and_then(|parsed| argon2::Params::try_from(&parsed).ok());
        return params.is_none_or(|params| {
            let passes = (u64::from(params.m_cost()) * 1024).saturating_mul(params.t_cost().into());
            passes > MAX_ARGON2_PASSES
        });
    }
    false
}

/// The octets of memory a yescrypt check passes over: 128 r octets a block, N blocks filled and then
/// as many again as t asks for (a third, two thirds, t - 1 times N in its native mode; N, 1.5 N, t N
/// in scrypt's and its write-once modes, which also repeat it all p times), counted twice when r is
/// below 8, where an octet costs twice as much. `None` if `params` do not parse or the sum overflows.
fn yescrypt_memory_passes(params: &str) -> Option<u64> {
    let parsed: yescrypt::Params = params.parse().ok()?;
    let (n, r, p) = (parsed.n(), u64::from(parsed.r()), u64::from(parsed.p()));
    let t = u64::from(yescrypt_t(params.as_bytes())?);
    // The first character is the mode: `j` the native one, `.` scrypt's, `/` write-once.
    let native = params.starts_with('j');
    let (again, repeats) = if native {
        let again = match t {
            0 => n.div_ceil(3),
            1 => n.checked_mul(2)?.div_ceil(3),
            t => n.checked_mul(t - 1)?,
        };
        (again, 1)
    } else {
        let again = match t {
            0 => n,
            1 => n.checked_add(n.div_ceil(2))?,
            t => n.checked_mul(t)?,
        };
        (again, p)
    };
    let weight = if r < 8 { 2 } else { 1 };
    n.checked_add(again)?
        .checked_mul(repeats)?
        .checked_mul(128)?
        .checked_mul(r)?
        .checked_mul(weight)
}

/// yescrypt's t, from its parameter string (flags, log2 N, r, then an optional mask saying which of
/// p, t, g and NROM follow), each field in yescrypt's variable-length base64 integers; 0 when absent.
fn yescrypt_t(params: &[u8]) -> Option<u32> {
    let (_flags, at) = yescrypt_int(params, 0, 0)?;
    let (_log2_n, at) = yescrypt_int(params, at, 1)?;
    let (_r, at) = yescrypt_int(params, at, 1)?;
    if at == params.len() {
        return Some(0);
    }
    let (have, mut at) = yescrypt_int(params, at, 1)?;
    if have & 1 != 0 {
        at = yescrypt_int(params, at, 2)?.1;
    }
    if have & 2 == 0 {
        return Some(0);
    }
    yescrypt_int(params, at, 1).map(|(t, _)| t)
}

/// One of yescrypt's variable-length integers at `at`, at least `min`, and where the next begins:
/// the first character's value says how many follow (0-47 none, 48-55 one, 56-59 two, ...), each
/// adding six bits. `None` where the crate's own decoder would fail, or past u32.
fn yescrypt_int(s: &[u8], at: usize, min: u32) -> Option<(u32, usize)> {
    let value_of = |i: usize| {
        s.get(i)
            .and_then(|c| CRYPT_B64.iter().position(|a| a == c))
            .map(|v| v as u64)
    };
    let first = value_of(at)?;
    let (mut start, mut end, mut bits, mut extra) = (0u64, 47u64, 0u32, 0usize);
    let mut value = u64::from(min);
    while first > end {
        value += (end + 1 - start) << bits;
        start = end + 1;
        end = start + (62 - end) / 2;
        bits += 6;
        extra += 1;
    }
    value += (first - start) << bits;
    for i in 1..=extra {
        bits -= 6;
        value += value_of(at + i)? << bits;
    }
    Some((u32::try_from(value).ok()?, at + 1 + extra))
}

/// `{CRYPT}` or a bare field: any crypt(3) form we can verify.
fn crypt(hash: &str, scheme: &str) -> Result<Stored, String> {
    crypt_with(hash, scheme, &CRYPT_PREFIXES)
}

/// A crypt string for `scheme`, which must start with one of `prefixes`.
fn crypt_with(hash: &str, scheme: &str, prefixes: &[&str]) -> Result<Stored, String> {
    if prefixes.iter().any(|p| hash.starts_with(p)) {
        Ok(Stored::Crypt(hash.to_string()))
    } else {
        // Saying only what was expected keeps a mistyped plaintext password out of the logs.
        Err(format!(
            "unsupported password scheme {scheme}: expected a hash starting with {}",
            prefixes.join(" or ")
        ))
    }
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stored::Plain(_) => "Plain(..)",
            Stored::Crypt(_) => "Crypt(..)",
            Stored::Scram(_) => "Scram(..)",
            Stored::Digest(_) => "Digest(..)",
            Stored::Pbkdf2(_) => "Pbkdf2(..)",
            Stored::Locked => "Locked",
        })
    }
}

/// An unknown user must cost what a real one costs, and hash costs differ by scheme and parameters
/// (yescrypt's `j9T`, bcrypt's `05`, SHA-crypt's rounds). So the dummy is a real hash of the most common
/// kind in the user database (system accounts or passwd-file; without one, `DUMMY_HASH`): verifying against it does the same work, and its result is thrown away.
pub fn pick_dummy<'a>(stored: impl Iterator<Item = &'a Stored>) -> Stored {
    let mut kinds: HashMap<String, (usize, &'a Stored)> = HashMap::new();
    for s in stored {
        // A faulty hash verifies nothing in microseconds: no stand-in for a real one.
        let class = match s {
            Stored::Crypt(hash) => cost_class(hash),
            Stored::Pbkdf2(pbkdf2) => pbkdf2.cost_class(),
            _ => continue,
        };
        if s.fault().is_none() {
            kinds.entry(class).or_insert((0, s)).0 += 1;
        }
    }
    let most = kinds
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| b.0.cmp(&a.0)));
    most.map_or_else(
        || Stored::Crypt(DUMMY_HASH.to_string()),
        |(_, (_, s))| s.clone(),
    )
}

/// The part of a crypt string that decides its cost: the scheme and its parameters, not the salt.
pub(super) fn cost_class(hash: &str) -> String {
    let fields: Vec<&str> = hash.split('$').collect();
    match fields.get(1).copied() {
        Some("y" | "2a" | "2b" | "2y") => {
            fields.iter().take(3).copied().collect::<Vec<_>>().join("$")
        }
        // $argon2id$v=19$m=65536,t=3,p=1$salt$hash
        Some("argon2i" | "argon2id") => {
            fields.iter().take(4).copied().collect::<Vec<_>>().join("$")
        }
        Some(scheme @ ("5" | "6")) => match fields.get(2) {
            Some(rounds) if rounds.starts_with("rounds=") => format!("${scheme}${rounds}"),
            _ => format!("${scheme}"),
        },
        _ => fields.iter().take(2).copied().collect::<Vec<_>>().join("$"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::{Algorithm, Params, PasswordHasher, ShaCrypt};

    /// Drepper's SHA-crypt specification vectors, reproduced by glibc and `openssl passwd`.
    const SHA512_HELLO: &str = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    const SHA512_ROUNDS: &str = "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.";
    const SHA256_HELLO: &str = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
    /// `openssl passwd -6 -salt Ab3/xY.z tanstaaf`
    const SHA512_TANSTAAF: &str = "$6$Ab3/xY.z$dXR7mqLom2U1mzG59z.yPwH.N0SqTMr61ZLZijJT91xGXcWy5oA.jrTV6.PjRBA/LrVFbk8O8DSFcAQUjIOEO1";
    /// Openwall crypt_blowfish's test vector, also produced by libxcrypt's crypt(3).
    const BCRYPT_UU: &str = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    /// `mkpasswd -m yescrypt tanstaaf` (Debian's default parameters, j9T).
    const YESCRYPT_TANSTAAF: &str =
        "$y$j9T$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtl3";
    /// `mkpasswd -m bcrypt -R 5 tanstaaf`
    const BCRYPT_2B_TANSTAAF: &str = "$2b$05$YYicO/sIB3d98f.fEMf7X.MU/McUht8yOW1hNKmMeQYSiEQ5wwW4a";
    /// `openssl passwd -1 -salt ab tanstaaf`
    const MD5_TANSTAAF: &str = "$1$ab$iRUW81gpsWMyPO7yHCnGY.";
    /// `doveadm pw -s ARGON2ID -p tanstaaf` and `-s ARGON2I` (Dovecot 2.3, libsodium's defaults).
    const ARGON2ID_TANSTAAF: &str = "$argon2id$v=19$m=65536,t=3,p=1$tgeIwKClij4voICCwop3eA$vKQD+w/VJ+K5yZdH5/khD3N4c9VQ2w/GUCmMC3mLVBw";
    const ARGON2I_TANSTAAF: &str = "$argon2i$v=19$m=32768,t=4,p=1$PRtqD0/yfi1AOeKBiPAk9A$iaIefEysIPC9rF4XYQE/4xOaFlM61NdhDDpLcpQCY1w";

    /// A hash asking for more than 1,025 MiB per check verifies nothing and is not well formed (its
    /// allocation could abort the server); up to that it is.
    #[test]
    fn hashes_asking_for_more_than_a_gigabyte_verify_nothing() {
        // 128 * 32 * (4096 + 1) + 12 KiB.
        assert_eq!(
            memory_per_check(YESCRYPT_TANSTAAF),
            Some((16 << 20) + 4096 + 12288)
        );
        assert_eq!(memory_per_check(ARGON2ID_TANSTAAF), Some(64 << 20));
        assert_eq!(memory_per_check(SHA512_HELLO), None);
        // The bound is 1 GiB and 1 MiB (1,049,600 KiB): Argon2 at exactly that fits, a KiB more not.
        let argon2_most = ARGON2ID_TANSTAAF.replace("m=65536", "m=1049600");
        let argon2_more = ARGON2ID_TANSTAAF.replace("m=65536", "m=1049601");
        assert_eq!(memory_per_check(&argon2_most), Some((1 << 30) + (1 << 20)));
        assert_eq!(crypt_fault(&argon2_most), None);
        // libxcrypt's largest yescrypt setting: 1 GiB and 16 KiB.
        let yescrypt_largest = YESCRYPT_TANSTAAF.replace("$j9T$", "$jFT$");
        assert_eq!(
            memory_per_check(&yescrypt_largest),
            Some((1 << 30) + 4096 + 12288)
        );
        assert_eq!(crypt_fault(&yescrypt_largest), None);
        assert_eq!(crypt_fault(&argon2_more), Some(CryptFault::TooMuchMemory));
        let stored = Stored::parse(&format!("{{ARGON2ID}}{argon2_more}")).unwrap();
        assert!(!stored.verify(b"tanstaaf"));
        // Debian's "j9T" is N = 4096 with r = 32; "jIT" is N = 2^21: 128 * 32 * 2^21 octets, 8 GiB.
        let yescrypt_more = YESCRYPT_TANSTAAF.replace("$j9T$", "$jIT$");
        assert!(memory_per_check(&yescrypt_more).unwrap() >= 8 << 30);
        assert_eq!(crypt_fault(&yescrypt_more), Some(CryptFault::TooMuchMemory));
        assert!(!Stored::Crypt(yescrypt_more).verify(b"tanstaaf"));
        // p counts too: from a review, $y$ with N = 2 and p = 2^30 - 1 (128 GiB) aborted the server.
        for huge_p in ["....zyxvrB", "jH..xvrB"] {
            let hash = YESCRYPT_TANSTAAF.replace("j9T", huge_p);
            assert!(memory_per_check(&hash).unwrap() > 1 << 30, "{hash}");
            assert_eq!(
                crypt_fault(&hash),
                Some(CryptFault::TooMuchMemory),
                "{hash}"
            );
            assert!(!Stored::Crypt(hash).verify(b"tanstaaf"));
        }
    }

    /// The stand-in hash unknown users are checked against is never a malformed one (it would answer
    /// in microseconds where the file's users take milliseconds), and a malformed hash's user pays
    /// the stand-in on a wrong password, as a `{PLAIN}` user does.
    #[test]
    fn malformed_hashes_are_no_stand_in_and_pay_one() {
        let cut = "$y$j9T$Sj62rNd2JPNUzt3dfLgZ61";
        let stored = [
            Stored::Crypt(cut.into()),
            Stored::Crypt(cut.into()),
            Stored::Crypt(YESCRYPT_TANSTAAF.into()),
        ];
        assert_eq!(
            pick_dummy(stored.iter()),
            Stored::Crypt(YESCRYPT_TANSTAAF.into())
        );
        assert_eq!(
            pick_dummy([Stored::Crypt(cut.into())].iter()),
            Stored::Crypt(DUMMY_HASH.into())
        );
        assert!(Stored::Crypt(cut.into()).is_fast());
        assert!(!Stored::Crypt(YESCRYPT_TANSTAAF.into()).is_fast());
    }

    /// A file of `{PBKDF2}` users gets a stand-in of theirs, so that an unknown user costs their rounds;
    /// one whose rounds are past the bound is no stand-in, and pays one.
    #[test]
    fn pbkdf2_users_get_a_pbkdf2_stand_in() {
        let pbkdf2 = |rounds: u32| {
            Stored::parse(&format!(
                "{{PBKDF2}}$1$kxPCE654Ni5CNcAB${rounds}$5219cc0e5e4f61712a599e497960932e7a2f4dbc"
            ))
            .unwrap()
        };
        let users = [
            pbkdf2(5000),
            pbkdf2(5000),
            Stored::Crypt(YESCRYPT_TANSTAAF.into()),
        ];
        assert_eq!(pick_dummy(users.iter()), pbkdf2(5000));
        assert!(!pbkdf2(5000).is_fast());
        let slow = [pbkdf2(50_000_001), pbkdf2(50_000_001)];
        assert_eq!(pick_dummy(slow.iter()), Stored::Crypt(DUMMY_HASH.into()));
        assert!(slow[0].is_fast());
        assert_eq!(slow[0].fault(), Some(CryptFault::TooSlow));
    }

    #[test]
    fn argon2_strings_of_doveadm_verify() {
        for hash in [ARGON2ID_TANSTAAF, ARGON2I_TANSTAAF] {
            // Either scheme name takes either variant; a bare field (crypt(3)) takes neither.
            for scheme in ["ARGON2ID", "argon2i"] {
                let stored = Stored::parse(&format!("{{{scheme}}}{hash}")).unwrap();
                assert_eq!(stored, Stored::Crypt(hash.to_string()));
                assert!(stored.verify(b"tanstaaf"), "{hash}");
                assert!(!stored.verify(b"tanstaaF"), "{hash}");
            }
            assert!(Stored::parse(hash).is_err());
        }
        // What libsodium refuses (no version, a key id) verifies nothing here either.
        for other in [
            ARGON2ID_TANSTAAF.replace("v=19$", ""),
            ARGON2ID_TANSTAAF.replace("p=1$", "p=1,keyid=AAAA$"),
        ] {
            assert!(!Stored::Crypt(other.clone()).verify(b"tanstaaf"), "{other}");
        }
        assert_eq!(
            cost_class(ARGON2ID_TANSTAAF),
            "$argon2id$v=19$m=65536,t=3,p=1"
        );
        assert_eq!(
            Stored::parse("{ARGON2ID}$6$s$h"),
            Err(
                "unsupported password scheme ARGON2ID: expected a hash starting with $argon2id$ or $argon2i$"
                    .to_string()
            )
        );
    }

    #[test]
    fn crypt_shapes() {
        let good = [
            SHA512_HELLO,
            SHA512_ROUNDS,
            SHA256_HELLO,
            SHA512_TANSTAAF,
            BCRYPT_UU,
            YESCRYPT_TANSTAAF,
            BCRYPT_2B_TANSTAAF,
            MD5_TANSTAAF,
            DUMMY_HASH,
            ARGON2ID_TANSTAAF,
            ARGON2I_TANSTAAF,
        ];
        for hash in good {
            assert_eq!(crypt_fault(hash), None, "{hash}");
            // Cut short, as a half-pasted line is: never well formed.
            for cut in [hash.len() - 1, hash.len() / 2, 4] {
                assert_eq!(
                    crypt_fault(&hash[..cut]),
                    Some(CryptFault::Malformed),
                    "{}",
                    &hash[..cut]
                );
            }
        }
        for bad in [
            "$6$trunc",
            "$6$rounds=x$salt$",
            "$2a$5$abc",
            "$y$j9T$salt",
            "$7$xyz",
            // Shapes right, parameters the verifiers refuse at once (from a review: they answered in
            // microseconds, which told their users' names from unknown ones).
            "$2b$99$YYicO/sIB3d98f.fEMf7X.MU/McUht8yOW1hNKmMeQYSiEQ5wwW4a",
            "$2b$03$YYicO/sIB3d98f.fEMf7X.MU/McUht8yOW1hNKmMeQYSiEQ5wwW4a",
            "$6$rounds=0$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "$6$rounds=999$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "$y$zzz$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtl3",
            "$y$j9T$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtlz",
            "$argon2id$v=19$m=65536,t=3,p=1$tgeIwKClij4voICCwop3eA",
            "$argon2id$v=19$m=1,t=3,p=1$tgeIwKClij4voICCwop3eA$vKQD+w/VJ+K5yZdH5/khD3N4c9VQ2w/GUCmMC3mLVBw",
            "$argon2d$v=19$m=65536,t=3,p=1$tgeIwKClij4voICCwop3eA$vKQD+w/VJ+K5yZdH5/khD3N4c9VQ2w/GUCmMC3mLVBw",
            "$argon2id$m=65536,t=3,p=1$tgeIwKClij4voICCwop3eA$vKQD+w/VJ+K5yZdH5/khD3N4c9VQ2w/GUCmMC3mLVBw",
            "$argon2id$v=16$m=65536,t=3,p=1$tgeIwKClij4voICCwop3eA$vKQD+w/VJ+K5yZdH5/khD3N4c9VQ2w/GUCmMC3mLVBw",
            "$argon2id$v=19$m=65536,t=3,p=1,keyid=AAAA$tgeIwKClij4voICCwop3eA$vKQD+w/VJ+K5yZdH5/khD3N4c9VQ2w/GUCmMC3mLVBw",
        ] {
            assert_eq!(crypt_fault(bad), Some(CryptFault::Malformed), "{bad}");
        }
    }

    /// The verifiers' own verdict on a crypt string: whether they hash the password (`true`, the
    /// password being wrong) or refuse the string at once. SHA-crypt is read here
    /// (`glibc_sha_crypt`), and hashed whenever it reads.
    fn verifier_hashes(hash: &str) -> bool {
        use sha_crypt::password_hash::Error::PasswordInvalid;
        let password = b"not the password";
        if hash.starts_with("$2") {
            bcrypt::verify(password, hash).is_ok()
        } else if hash.starts_with("$y$") {
            let verdict = yescrypt::Yescrypt::default().verify_password(password, hash);
            matches!(verdict, Err(PasswordInvalid))
        } else if hash.starts_with("$argon2") {
            argon2_as_libsodium_writes(hash).is_some_and(|parsed| {
                let verdict = argon2::Argon2::default().verify_password(password, &parsed);
                matches!(verdict, Err(PasswordInvalid))
            })
        } else {
            super::super::glibc_sha_crypt::reads(hash)
        }
    }

    /// A hash called well formed is one its verifier hashes, and one it refuses at once is called
    /// malformed: otherwise its user's wrong password would be answered in microseconds where an
    /// unknown user's takes a hash (a review measured 0.07 against 1.1 ms). Every character of the
    /// alphabets (and some outside them) in the last place of each salt and hash, and the salts cut.
    #[test]
    fn well_formed_is_what_the_verifiers_hash() {
        let sha512 = SHA512_ROUNDS.replace("rounds=10000", "rounds=1000");
        let sha256 = SHA256_HELLO.replace("$5$", "$5$rounds=1000$");
        let yescrypt = YESCRYPT_TANSTAAF.replace("$j9T$", "$j75$");
        let argon2 = ARGON2ID_TANSTAAF.replace("m=65536,t=3", "m=64,t=1");
        let chars: Vec<char> = CRYPT_B64
            .iter()
            .chain(b"+-=_!")
            .map(|&b| b as char)
            .collect();
        let mut variants = Vec::new();
        for base in [&sha512, &sha256, &yescrypt, &argon2] {
            let hash_at = base.rfind('$').unwrap();
            // The last character of the hash, and of the salt (before the last '$').
            for at in [base.len() - 1, hash_at - 1] {
                for &c in &chars {
                    let mut v = base.to_string();
                    v.replace_range(at..at + 1, &c.to_string());
                    variants.push(v);
                }
            }
            for cut in 1..=3 {
                variants.push(format!("{}{}", &base[..hash_at - cut], &base[hash_at..]));
            }
        }
        // bcrypt: 22 characters of salt, then 31 of hash, after "$2b$04$".
        for at in [7 + 21, BCRYPT_2B_TANSTAAF.len() - 1] {
            for &c in &chars {
                let mut v = BCRYPT_2B_TANSTAAF.replace("$05$", "$04$");
                v.replace_range(at..at + 1, &c.to_string());
                variants.push(v);
            }
        }
        let mut both = 0;
        for v in &variants {
            let well_formed = crypt_fault(v).is_none();
            if v.starts_with("$5$") || v.starts_with("$6$") {
                // Read here, it hashes any salt, and a hash with bits past its end, which no
                // password gives, costs a hash too: called malformed, it costs the stand-in.
                assert!(!well_formed || verifier_hashes(v), "{v}");
            } else {
                assert_eq!(well_formed, verifier_hashes(v), "{v}");
            }
            both += usize::from(well_formed);
        }
        // Neither side took everything or nothing.
        assert!(
            both > 50 && both < variants.len() - 50,
            "{both} of {}",
            variants.len()
        );
    }

    /// Hashes whose check would take seconds to days verify nothing and are named too slow; the
    /// largest settings of libxcrypt, libsodium and the SHA-crypt and bcrypt bounds fit.
    #[test]
    fn hashes_too_slow_to_check_verify_nothing() {
        let bcrypt = |cost: &str| BCRYPT_2B_TANSTAAF.replace("$05$", &format!("${cost}$"));
        let sha = |rounds: u32| SHA512_ROUNDS.replace("rounds=10000", &format!("rounds={rounds}"));
        let argon2 = |mtp: &str| ARGON2ID_TANSTAAF.replace("m=65536,t=3,p=1", mtp);
        let yescrypt = |params: &str| YESCRYPT_TANSTAAF.replace("j9T", params);
        let fitting = [
            bcrypt("16"),
            sha(5_000_000),
            SHA256_HELLO.replace("$5$", "$5$rounds=5000000$"),
            // libsodium's SENSITIVE limits for Argon2id and Argon2i; `doveadm pw -r 5` and 10.
            argon2("m=1048576,t=4,p=1"),
            ARGON2I_TANSTAAF.replace("m=32768,t=4", "m=524288,t=8"),
            argon2("m=1048576,t=5,p=1"),
            argon2("m=1048576,t=10,p=1"),
            // libxcrypt's largest yescrypt (1 GiB) with t = 0 and 6, and Debian's with t = 1 and 4.
            yescrypt("jFT"),
            yescrypt(&yescrypt_params(yescrypt::Mode::Rw, 1 << 18, 32, 1, 6)),
            yescrypt("j9T/."),
            yescrypt("j9T/1"),
            // 128 MiB with r = 8, passed over 41 times in scrypt's mode: 5 GiB.
            yescrypt(&yescrypt_params(yescrypt::Mode::Classic, 1 << 17, 8, 1, 40)),
        ];
        for hash in &fitting {
            assert_eq!(crypt_fault(hash), None, "{hash}");
        }
        let too_slow = [
            bcrypt("17"),
            bcrypt("31"),
            sha(5_000_001),
            sha(999_999_999),
            argon2("m=1048576,t=11,p=1"),
            argon2("m=65536,t=65537,p=1"),
            // Debian's with t = 2^20; libxcrypt's largest with t = 9 (9 GiB); 64 MiB in scrypt's
            // mode with p = 100 (12.5 GiB); the 5 GiB above with r = 1 (twice the cost an octet).
            yescrypt(&yescrypt_params(yescrypt::Mode::Rw, 4096, 32, 1, 1 << 20)),
            yescrypt(&yescrypt_params(yescrypt::Mode::Rw, 1 << 18, 32, 1, 9)),
            yescrypt(&yescrypt_params(
                yescrypt::Mode::Classic,
                1 << 14,
                32,
                100,
                0,
            )),
            yescrypt(&yescrypt_params(yescrypt::Mode::Classic, 1 << 20, 1, 1, 40)),
        ];
        for hash in &too_slow {
            assert_eq!(crypt_fault(hash), Some(CryptFault::TooSlow), "{hash}");
            let stored = Stored::Crypt(hash.clone());
            assert!(stored.is_fast(), "{hash}");
            assert_eq!(
                pick_dummy([stored.clone(), stored].iter()),
                Stored::Crypt(DUMMY_HASH.into())
            );
        }
        // Refused before any hashing: were it hashed, bcrypt cost 31 would take days.
        assert!(!Stored::Crypt(bcrypt("31")).verify(b"tanstaaf"));
        // The octets passed over: 16 MiB and a third more for Debian's, N t in scrypt's mode.
        assert_eq!(
            yescrypt_memory_passes("j9T"),
            Some(128 * 32 * (4096 + 1366))
        );
        assert_eq!(
            yescrypt_memory_passes("j9T/1"),
            Some(128 * 32 * (4096 + 3 * 4096))
        );
        for (p, t) in [
            (1, 0),
            (1, 1),
            (1, 4),
            (4, 0),
            (64, 3),
            (1, 1 << 20),
            (2000, 40_000),
        ] {
            let params = yescrypt_params(yescrypt::Mode::Rw, 4096, 32, p, t);
            assert_eq!(yescrypt_t(params.as_bytes()), Some(t), "{params}");
        }
    }

    /// yescrypt's parameter string for these, as the crate writes it.
    fn yescrypt_params(mode: yescrypt::Mode, n: u64, r: u32, p: u32, t: u32) -> String {
        yescrypt::Params::new_with_all_params(mode, n, r, p, t, 0)
            .unwrap()
            .to_string()
    }

    #[test]
    fn parse_table() {
        let plain = |s: &str| Ok(Stored::Plain(s.as_bytes().to_vec()));
        let crypt = |s: &str| Ok(Stored::Crypt(s.to_string()));
        let sha = format!("{{SHA512-CRYPT}}{SHA512_HELLO}");
        let cases: Vec<(&str, Result<Stored, String>)> = vec![
            ("{PLAIN}tanstaaf", plain("tanstaaf")),
            ("{plain}a:b}c", plain("a:b}c")),
            ("{CLEARTEXT}x", plain("x")),
            ("{PLAIN}", Ok(Stored::Locked)),
            ("", Ok(Stored::Locked)),
            ("!", Ok(Stored::Locked)),
            ("*", Ok(Stored::Locked)),
            ("!{PLAIN}secret", Ok(Stored::Locked)),
            ("!$6$salt$hash", Ok(Stored::Locked)),
            (&sha, crypt(SHA512_HELLO)),
            ("{sha512-crypt}$6$s$h", crypt("$6$s$h")),
            ("{SHA256-CRYPT}$5$s$h", crypt("$5$s$h")),
            ("{BLF-CRYPT}$2y$05$x", crypt("$2y$05$x")),
            ("{Blf-Crypt}$2b$05$x", crypt("$2b$05$x")),
            ("{BLF-CRYPT}$2a$05$x", crypt("$2a$05$x")),
            ("{CRYPT}$5$s$h", crypt("$5$s$h")),
            ("$6$s$h", crypt("$6$s$h")),
            ("$5$s$h", crypt("$5$s$h")),
            ("$2y$05$x", crypt("$2y$05$x")),
            ("$y$j9T$s$h", crypt("$y$j9T$s$h")),
            ("$1$s$h", crypt("$1$s$h")),
            ("{MD5-CRYPT}$1$s$h", crypt("$1$s$h")),
            ("{CRYPT}$y$j9T$s$h", crypt("$y$j9T$s$h")),
            // Dovecot's {MD5}: an MD5-crypt string, else a PLAIN-MD5 digest.
            ("{MD5}$1$s$h", crypt("$1$s$h")),
            ("{PLAIN.b64}dGFuc3RhYWY=", plain("tanstaaf")),
            ("{plain.HEX}74616E7374616166", plain("tanstaaf")),
            ("{CLEAR.base64}", Ok(Stored::Locked)),
        ];
        for (field, want) in cases {
            assert_eq!(Stored::parse(field), want, "{field:?}");
        }
    }

    #[test]
    fn parse_errors_name_the_scheme_only() {
        let cases = [
            ("{MD5}abc", "bad MD5 value: not base64"),
            ("{MD5}$1", "bad MD5 value: not base64"),
            (
                "{SSHA}abc=",
                "bad SSHA value: 2 octets where more than 20 are expected",
            ),
            ("{SHA.rot13}abc", "unsupported password scheme SHA.rot13"),
            (
                "{MD5.hex}b3aa0ba4e1f957e5f3ef356cfc147008",
                "unsupported password scheme MD5.hex",
            ),
            ("{PLAIN.hex}7", "bad PLAIN.hex value: not hex"),
            (
                "{SHA512-CRYPT.b64}abc",
                "unsupported password scheme SHA512-CRYPT.b64",
            ),
            (
                "{PBKDF2}$1$5.iUrhiHNeeoiHCv$5000$dd87",
                "bad PBKDF2 value: hash not 40 hex digits",
            ),
            (
                "{PBKDF2}5000$dd87",
                "bad PBKDF2 value: not $1$salt$rounds$hash",
            ),
            (
                "{PBKDF2.hex}$1$s$5000$5219cc0e5e4f61712a599e497960932e7a2f4dbc",
                "unsupported password scheme PBKDF2.hex",
            ),
            (
                "{SHA512-CRYPT}$5$s$h",
                "unsupported password scheme SHA512-CRYPT: expected a hash starting with $6$",
            ),
            (
                "{BLF-CRYPT}hunter2",
                "unsupported password scheme BLF-CRYPT: expected a hash starting with $2y$ or $2b$ or $2a$",
            ),
            (
                "{PLAIN hunter2",
                "password field has '{' without a closing '}'",
            ),
        ];
        for (field, want) in cases {
            assert_eq!(Stored::parse(field), Err(want.to_string()), "{field:?}");
        }
        // A bare field is CRYPT; DES crypt is not supported.
        for field in ["hunter2", "$3$salt$hash", "ab01FAX.bQRSU"] {
            let err = Stored::parse(field).unwrap_err();
            assert!(
                err.starts_with("unsupported password scheme CRYPT"),
                "{field:?}: {err}"
            );
            assert!(!err.contains(field), "error leaks the field: {err}");
        }
    }

    #[test]
    fn known_vectors() {
        let cases = [
            (SHA512_HELLO, "Hello world!"),
            (SHA512_ROUNDS, "Hello world!"),
            (SHA256_HELLO, "Hello world!"),
            (SHA512_TANSTAAF, "tanstaaf"),
            (BCRYPT_UU, "U*U"),
            (YESCRYPT_TANSTAAF, "tanstaaf"),
            (BCRYPT_2B_TANSTAAF, "tanstaaf"),
            (MD5_TANSTAAF, "tanstaaf"),
        ];
        for (hash, password) in cases {
            let stored = Stored::parse(hash).unwrap();
            assert!(stored.verify(password.as_bytes()), "{hash}");
            assert!(!stored.verify(b"wrong"), "{hash}");
            assert!(!stored.verify(b""), "{hash}");
        }
    }

    #[test]
    fn generated_hashes() {
        let params = Params::new(Params::ROUNDS_MIN).unwrap();
        let sha512 = ShaCrypt::new(Algorithm::Sha512Crypt, params)
            .hash_password_with_salt(b"pass word", b"0123456789ab")
            .unwrap()
            .to_string();
        let sha256 = ShaCrypt::new(Algorithm::Sha256Crypt, params)
            .hash_password_with_salt(b"pass word", b"0123456789ab")
            .unwrap()
            .to_string();
        let blf = bcrypt::hash_with_salt("pass word", 4, [7; 16]).unwrap();
        let cases = [
            format!("{{SHA512-CRYPT}}{sha512}"),
            format!("{{SHA256-CRYPT}}{sha256}"),
            format!(
                "{{BLF-CRYPT}}{}",
                blf.format_for_version(bcrypt::Version::TwoY)
            ),
            format!(
                "{{BLF-CRYPT}}{}",
                blf.format_for_version(bcrypt::Version::TwoB)
            ),
            sha512,
        ];
        for field in cases {
            let stored = Stored::parse(&field).unwrap();
            assert!(matches!(stored, Stored::Crypt(_)), "{field}");
            assert!(stored.verify(b"pass word"), "{field}");
            assert!(!stored.verify(b"pass Word"), "{field}");
            assert!(!stored.verify(b"pass word "), "{field}");
        }
    }

    #[test]
    fn digests_verify_and_give_no_plaintext() {
        let md5 = Stored::parse("{MD5}b3aa0ba4e1f957e5f3ef356cfc147008").unwrap();
        let ssha = Stored::parse("{SSHA}5aphq8pBIVknECocErtInDm/kcDFFGpB").unwrap();
        for stored in [&md5, &ssha] {
            assert!(matches!(stored, Stored::Digest(_)));
            assert!(stored.verify(b"tanstaaf") && !stored.verify(b"tanstaa"));
            assert_eq!(stored.plaintext(), None, "no APOP");
            assert!(!stored.has_scram_keys());
            assert!(stored.is_fast());
        }
        assert_eq!(format!("{ssha:?}"), "Digest(..)");
    }

    #[test]
    fn plain_and_locked_verify() {
        let plain = Stored::parse("{PLAIN}tanstaaf").unwrap();
        assert!(plain.verify(b"tanstaaf"));
        assert_eq!(plain.plaintext(), Some(&b"tanstaaf"[..]));
        for wrong in [&b"tanstaa"[..], b"tanstaaff", b"TANSTAAF", b""] {
            assert!(!plain.verify(wrong), "{wrong:?}");
        }
        assert!(!Stored::Locked.verify(b""));
        assert!(!Stored::Locked.verify(b"anything"));
        assert_eq!(Stored::Locked.plaintext(), None);
        assert_eq!(Stored::parse(SHA512_HELLO).unwrap().plaintext(), None);
    }

    #[test]
    fn malformed_hashes_never_verify() {
        let cases = [
            "$6$",
            "$6$$",
            "$6$salt",
            "$6$salt$",
            "$6$salt$not base64!",
            "$6$rounds=abc$salt$hash",
            "$6$rounds=1$salt$hash",
            "$6$a$b$c$d",
            "$5$s\u{e9}$h",
            "$2y$",
            "$2y$05$short",
            "$2y$99$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2y$0x$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe\u{e9}",
            "$y$",
            "$y$j9T$",
            "$y$j9T$salt",
            "$y$j9T$salt$",
            "$y$zzz$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtl3",
            "$y$j9T$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtlz",
            "$y$j9T$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtl",
            "$y$j9T$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtl3$x",
            "$1$",
            "$1$s",
        ];
        for hash in cases {
            let stored = Stored::parse(hash).unwrap();
            assert!(!stored.verify(b""), "{hash}");
            assert!(!stored.verify(b"hash"), "{hash}");
        }
    }

    /// `doveadm pw -s SCRAM-SHA-256` writes `{SCRAM-SHA-256}4096,<salt>,<StoredKey>,<ServerKey>`; here the
    /// RFC 7677 example user's, password "pencil".
    const SCRAM_PENCIL: &str = "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn scram_values_verify_passwords_but_give_no_plaintext() {
        let stored = Stored::parse(SCRAM_PENCIL).unwrap();
        assert!(matches!(&stored, Stored::Scram(k) if k.iterations == 4096));
        assert_eq!(
            Stored::parse(&SCRAM_PENCIL.replace("SCRAM-SHA-256", "scram-sha-256")),
            Ok(stored.clone())
        );
        assert!(stored.verify(b"pencil"));
        assert!(!stored.verify(b"pencil2") && !stored.verify(b""));
        assert_eq!(stored.plaintext(), None, "no APOP for a SCRAM user");
        assert_eq!(format!("{stored:?}"), "Scram(..)");
        assert_eq!(
            Stored::parse("{SCRAM-SHA-256}4096,hunter2"),
            Err(
                "bad SCRAM-SHA-256 value: expected <iterations>,<salt>,<StoredKey>,<ServerKey>"
                    .into()
            )
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let dbg = format!("{:?}", Stored::parse("{PLAIN}hunter2").unwrap());
        assert_eq!(dbg, "Plain(..)");
        assert_eq!(
            format!("{:?}", Stored::parse(SHA512_HELLO).unwrap()),
            "Crypt(..)"
        );
    }
}
