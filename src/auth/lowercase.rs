//! `lowercase-users`: user names looked up in ASCII lowercase, whatever case the client typed (phone
//! keyboards capitalise the first letter; Dovecot's `auth_username_format = %Lu` does the same). A
//! wrapper around the user databases, so every way of logging in (USER/PASS, APOP, SASL) gets it and
//! the account's own name, as the database spells it, is what the session uses from then on.

use super::{Account, AuthError, Authenticator, SaltKey, ScramLookup, Secret};
use std::sync::Arc;

pub struct Lowercase(pub Arc<dyn Authenticator>);

impl Authenticator for Lowercase {
    fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
        self.0.login(&user.to_ascii_lowercase(), password)
    }

    fn apop(&self, user: &[u8], timestamp: &[u8], digest: &[u8]) -> Result<Account, AuthError> {
        self.0.apop(&user.to_ascii_lowercase(), timestamp, digest)
    }

    fn knows(&self, user: &[u8]) -> bool {
        self.0.knows(&user.to_ascii_lowercase())
    }

    fn scram(&self, user: &[u8], salts: &SaltKey) -> ScramLookup {
        self.0.scram(&user.to_ascii_lowercase(), salts)
    }

    fn scram_for_every_user(&self) -> bool {
        self.0.scram_for_every_user()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::passwd_file::PasswdFile;

    #[test]
    fn names_are_looked_up_in_lowercase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "alice@example.org:{PLAIN}Secret\nBob:{PLAIN}b\n").unwrap();
        let db = Lowercase(Arc::new(PasswdFile::open(&path).unwrap()));
        let login = |user: &str, password: &str| {
            db.login(user.as_bytes(), &Secret::new(password.as_bytes()))
                .map(|a| a.name)
                .ok()
        };
        for typed in [
            "alice@example.org",
            "Alice@Example.ORG",
            "ALICE@EXAMPLE.ORG",
        ] {
            assert_eq!(
                login(typed, "Secret").as_deref(),
                Some("alice@example.org"),
                "{typed}"
            );
            assert!(db.knows(typed.as_bytes()));
        }
        // Passwords keep their case; a database name with capitals can no longer be reached.
        assert_eq!(login("alice@example.org", "secret"), None);
        assert_eq!(login("Bob", "b"), None);
        let digest = crate::auth::apop::digest(b"<1.2@h>", b"Secret");
        let apop = db.apop(b"ALICE@example.org", b"<1.2@h>", &digest);
        assert_eq!(
            apop.map(|a| a.name).ok().as_deref(),
            Some("alice@example.org")
        );
    }
}
