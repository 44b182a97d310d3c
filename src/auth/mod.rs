//! Who the user is: the `Authenticator` trait, the account it yields, and the secrets it handles.
//! Each user database lives in its own file (`passwd_file`, `system`, `chain` to consult several, and
//! `lowercase` to look names up in lowercase);
//! password schemes in `scheme` and `md5_crypt`, APOP in `apop`, SCRAM-SHA-256's keys in `scram` and the
//! secret its derived salts are keyed with in `salt_key`, the `/etc` file formats in `unix_files`.

pub mod apop;
pub mod chain;
pub mod crypt_b64;
pub mod digest;
pub mod dovecot_pbkdf2;
pub mod gate;
pub mod glibc_sha_crypt;
pub mod lowercase;
pub mod md5_crypt;
pub mod passwd_file;
pub mod salt_key;
pub mod scheme;
pub mod scram;
pub mod secret;
pub mod system;
pub mod unix_files;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::maildrop::location::Location;

pub use salt_key::SaltKey;
pub use secret::Secret;

/// An authenticated user, as the maildrop and privilege code need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The home directory, for `%h` in mail locations.
    pub home: Option<PathBuf>,
    /// What the user database asks of a login beyond the password.
    pub policy: Policy,
}

/// A passwd-file line's extra fields (Dovecot's names) that poplar applies. Checked after the password,
/// so they tell nothing to someone who does not have it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `allow_nets=`: the networks the user may log in from; `None` for anywhere.
    pub allow_nets: Option<Nets>,
    /// `nologin`: logins are refused even with the right password, with `reason=` as the reply's text.
    pub nologin: Option<String>,
    /// `userdb_mail=`: the user's mail location, instead of the server's.
    pub mail: Option<Location>,
    /// Whose `/etc/group` memberships the session gets as supplementary groups (Dovecot's
    /// `system_groups_user`): a system account's own name, or `userdb_system_groups_user=` on a
    /// passwd-file line. `None`: the account's gid alone. A passwd-file name is not a system user's,
    /// even when it is spelled the same.
    pub system_groups_user: Option<String>,
}

impl Policy {
    /// Where this user's mail is: `userdb_mail=`, or else the server's location (`server`).
    pub fn mail_location<'a>(&'a self, server: &'a Location) -> &'a Location {
        self.mail.as_ref().unwrap_or(server)
    }
}

/// The networks of `allow_nets=`: addresses and prefix lengths, and `local` for a session that has no
/// IP address (inetd on a pipe or a Unix socket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nets {
    pub networks: Vec<(IpAddr, u8)>,
    pub local: bool,
}

impl Nets {
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        match client {
            Some(ip) => crate::config::in_networks(ip, &self.networks),
            None => self.local,
        }
    }
}

/// Why authentication failed. The client sees only `[AUTH]` or `[SYS/TEMP]`; the log sees the detail.
#[derive(Debug)]
pub enum AuthError {
    /// Unknown user, wrong password, locked account, or APOP for a user without a plaintext secret:
    /// deliberately indistinguishable to the client.
    BadCredentials,
    /// The user database could not be read; trying later may work.
    Unavailable(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadCredentials => f.write_str("bad credentials"),
            AuthError::Unavailable(why) => write!(f, "user database unavailable: {why}"),
        }
    }
}

impl std::error::Error for AuthError {}

/// A source of users. Implementations must spend the same work on unknown users as on wrong passwords.
pub trait Authenticator: Send + Sync {
    /// USER/PASS and SASL PLAIN/LOGIN.
    fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError>;
    /// APOP (RFC 1939 section 7): `digest` is the client's hex MD5 of `timestamp` + secret.
    fn apop(&self, user: &[u8], timestamp: &[u8], digest: &[u8]) -> Result<Account, AuthError>;
    /// Whether this source has an entry (locked or not) for `user`: with several sources, the first that
    /// knows a name decides for it (see `chain`). A source that cannot tell answers `true`.
    fn knows(&self, _user: &[u8]) -> bool {
        true
    }
    /// SASL SCRAM-SHA-256: the keys to check the client's proof against, and the account a valid proof
    /// opens. A user without a stored salt has one derived under `salts`. A user who cannot do SCRAM
    /// gets [`ScramLookup::unusable`]: the exchange runs to its end and fails like a wrong password.
    /// That is the default, for sources with no usable secrets.
    fn scram(&self, user: &[u8], salts: &SaltKey) -> ScramLookup {
        ScramLookup::unusable(user, salts)
    }
    /// Whether every user of this source who can log in at all could do so with SCRAM-SHA-256 (and
    /// there is one). Otherwise it is not offered: a client that picks the strongest mechanism listed,
    /// as mpop does, would fail for a user with a crypt hash where PLAIN works.
    fn scram_for_every_user(&self) -> bool {
        false
    }
}

/// The longest password checked, in octets. SHA-crypt's work grows with the password's length (each
/// of its 5000 rounds hashes the password again), and a SASL response may be 2048 octets, which leaves
/// room for a password of some 1500: a client could multiply the cost of every attempt, an unknown
/// name's dummy hash included. No one types a password this long.
pub const MAX_PASSWORD_LEN: usize = 512;

/// What a password over [`MAX_PASSWORD_LEN`] is checked as instead: a short wrong password, whose work
/// it then costs (12 octets: SHA-crypt takes the same time for it as for an 8-octet one; from about 20
/// octets on, longer). Its outcome is ignored.
const OVERLONG_STAND_IN: &[u8] = b"over the cap";

/// USER/PASS and SASL PLAIN/LOGIN: [`Authenticator::login`], except that a password over
/// [`MAX_PASSWORD_LEN`] octets fails as a wrong password does, after the same work (the user database
/// checks `OVERLONG_STAND_IN` for the name) and never hashing the long input. (A
/// `{SCRAM-SHA-256}` user's password is checked here too: PBKDF2 with it as the key.)
pub fn check_password(
    auth: &dyn Authenticator,
    user: &[u8],
    password: &Secret<&[u8]>,
) -> Result<Account, AuthError> {
    if password.expose().len() <= MAX_PASSWORD_LEN {
        return auth.login(user, password);
    }
    match auth.login(user, &Secret::new(OVERLONG_STAND_IN)) {
        Ok(_) => Err(AuthError::BadCredentials),
        Err(e) => Err(e),
    }
}

/// What a SCRAM exchange needs of the user database, asked before the client has proved anything.
#[derive(Debug)]
pub struct ScramLookup {
    pub keys: scram::Keys,
    /// The account, given only to a client whose proof matches `keys`; an error for users who cannot
    /// do SCRAM, reported only after the proof, as a wrong password would be.
    pub account: Result<Account, AuthError>,
}

impl ScramLookup {
    /// Stand-in keys (see [`scram::Keys::stand_in`]) and no account.
    pub fn unusable(user: &[u8], salts: &SaltKey) -> ScramLookup {
        ScramLookup {
            keys: scram::Keys::stand_in(user, salts),
            account: Err(AuthError::BadCredentials),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// One user whose password is `password`; remembers the passwords it was asked to check.
    struct Recording {
        password: Vec<u8>,
        checked: Mutex<Vec<Vec<u8>>>,
        unavailable: bool,
    }

    impl Authenticator for Recording {
        fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
            self.checked
                .lock()
                .unwrap()
                .push(password.expose().to_vec());
            if self.unavailable {
                return Err(AuthError::Unavailable("down".to_string()));
            }
            if user == b"alice" && *password.expose() == self.password.as_slice() {
                return Ok(Account {
                    name: "alice".to_string(),
                    uid: None,
                    gid: None,
                    home: None,
                    policy: Policy::default(),
                });
            }
            Err(AuthError::BadCredentials)
        }
        fn apop(&self, _: &[u8], _: &[u8], _: &[u8]) -> Result<Account, AuthError> {
            Err(AuthError::BadCredentials)
        }
    }

    fn recording(password: Vec<u8>) -> Recording {
        Recording {
            password,
            checked: Mutex::new(Vec::new()),
            unavailable: false,
        }
    }

    /// Up to the cap a password is checked as given; over it, even the right one fails, and what the
    /// user database was asked to check is the short stand-in, never the long input.
    #[test]
    fn passwords_over_the_cap_fail_without_being_checked() {
        for len in [1, 8, MAX_PASSWORD_LEN] {
            let db = recording(vec![b'p'; len]);
            let right = vec![b'p'; len];
            assert!(check_password(&db, b"alice", &Secret::new(&right)).is_ok());
            assert_eq!(*db.checked.lock().unwrap(), [right]);
        }
        for len in [MAX_PASSWORD_LEN + 1, 1500, 2048] {
            let db = recording(vec![b'p'; len]);
            let right = vec![b'p'; len];
            let result = check_password(&db, b"alice", &Secret::new(&right));
            assert!(matches!(result, Err(AuthError::BadCredentials)), "{len}");
            assert_eq!(*db.checked.lock().unwrap(), [OVERLONG_STAND_IN], "{len}");
        }
        // The stand-in is never a way in, even for a user whose password it is.
        let db = recording(OVERLONG_STAND_IN.to_vec());
        let long = vec![b'p'; MAX_PASSWORD_LEN + 1];
        let result = check_password(&db, b"alice", &Secret::new(&long));
        assert!(matches!(result, Err(AuthError::BadCredentials)));
        // A database that cannot answer says so, as it would for a short password.
        let db = Recording {
            unavailable: true,
            ..recording(Vec::new())
        };
        let result = check_password(&db, b"alice", &Secret::new(&long));
        assert!(matches!(result, Err(AuthError::Unavailable(_))));
    }
}
