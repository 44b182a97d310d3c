//! Several user databases consulted in order (`--passwd` first, then `--system-users`). The first source
//! that knows a name decides for it, so a passwd-file entry shadows a system account of the same name and
//! a wrong password is never retried elsewhere. Every source does its work on every attempt, so the time
//! taken does not tell which source (if any) knows the name.

use super::{Account, AuthError, Authenticator, SaltKey, ScramLookup, Secret};
use std::sync::Arc;

/// Sources in order of precedence.
pub struct Chain {
    sources: Vec<Arc<dyn Authenticator>>,
}

impl Chain {
    pub fn new(sources: Vec<Arc<dyn Authenticator>>) -> Chain {
        Chain { sources }
    }

    /// Runs `attempt` on every source; returns the answer of the first that knows `user`, and the first
    /// answer of a source that did not decide (what an unknown name gets where a stand-in is needed).
    fn ask_all<T>(
        &self,
        user: &[u8],
        attempt: impl Fn(&dyn Authenticator) -> T,
    ) -> (Option<T>, Option<T>) {
        let (mut decided, mut other) = (None, None);
        for source in &self.sources {
            let knows = source.knows(user);
            let answer = attempt(source.as_ref());
            if decided.is_none() && knows {
                decided = Some(answer);
            } else if other.is_none() {
                other = Some(answer);
            }
        }
        (decided, other)
    }

    /// The answer of the first source that knows `user`; a name none knows is refused.
    fn decide(
        &self,
        user: &[u8],
        attempt: impl Fn(&dyn Authenticator) -> Result<Account, AuthError>,
    ) -> Result<Account, AuthError> {
        self.ask_all(user, attempt)
            .0
            .unwrap_or(Err(AuthError::BadCredentials))
    }
}

impl Authenticator for Chain {
    fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
        self.decide(user, |s| s.login(user, password))
    }

    fn apop(&self, user: &[u8], timestamp: &[u8], digest: &[u8]) -> Result<Account, AuthError> {
        self.decide(user, |s| s.apop(user, timestamp, digest))
    }

    fn knows(&self, user: &[u8]) -> bool {
        self.sources.iter().any(|s| s.knows(user))
    }

    fn scram_for_every_user(&self) -> bool {
        !self.sources.is_empty() && self.sources.iter().all(|s| s.scram_for_every_user())
    }

    /// As `decide`; when no source knows the name, another source's answer: the stand-in keys, the same
    /// whichever source made them, with no key derivation more than for a known name.
    fn scram(&self, user: &[u8], salts: &SaltKey) -> ScramLookup {
        let (decided, other) = self.ask_all(user, |s| s.scram(user, salts));
        decided
            .or(other)
            .unwrap_or_else(|| ScramLookup::unusable(user, salts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::Keys;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// One user with one password; counts the attempts it was asked to judge.
    struct One {
        name: &'static str,
        password: &'static str,
        uid: u32,
        attempts: AtomicUsize,
    }

    impl Authenticator for One {
        fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if user == self.name.as_bytes() && *password.expose() == self.password.as_bytes() {
                Ok(Account {
                    name: self.name.into(),
                    uid: Some(self.uid),
                    gid: None,
                    home: None,
                    policy: Default::default(),
                })
            } else {
                Err(AuthError::BadCredentials)
            }
        }
        fn apop(&self, _: &[u8], _: &[u8], _: &[u8]) -> Result<Account, AuthError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            Err(AuthError::BadCredentials)
        }
        fn knows(&self, user: &[u8]) -> bool {
            user == self.name.as_bytes()
        }
        fn scram(&self, user: &[u8], salts: &SaltKey) -> ScramLookup {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if !self.knows(user) {
                return ScramLookup::unusable(user, salts);
            }
            ScramLookup {
                keys: Keys::from_password(self.password.as_bytes(), b"salt", 1),
                account: self.login(user, &Secret::new(self.password.as_bytes())),
            }
        }
        fn scram_for_every_user(&self) -> bool {
            true
        }
    }

    fn one(name: &'static str, password: &'static str, uid: u32) -> Arc<One> {
        Arc::new(One {
            name,
            password,
            uid,
            attempts: AtomicUsize::new(0),
        })
    }

    #[test]
    fn first_source_that_knows_decides() {
        let file = one("alice", "file-pw", 1);
        let system = one("alice", "system-pw", 2);
        let other = one("bob", "bob-pw", 3);
        let chain = Chain::new(vec![file.clone(), system.clone(), other.clone()]);
        let login = |u: &str, p: &str| {
            chain
                .login(u.as_bytes(), &Secret::new(p.as_bytes()))
                .ok()
                .and_then(|a| a.uid)
        };
        let cases = [
            ("alice", "file-pw", Some(1)),
            ("alice", "system-pw", None),
            ("bob", "bob-pw", Some(3)),
            ("bob", "file-pw", None),
            ("carol", "x", None),
        ];
        for (user, password, want) in cases {
            assert_eq!(login(user, password), want, "{user} {password}");
        }
        // Every source worked on every attempt.
        for source in [&file, &system, &other] {
            assert_eq!(source.attempts.load(Ordering::SeqCst), cases.len());
        }
        assert!(chain.apop(b"alice", b"<t@h>", b"00").is_err());
        // SCRAM too: the first source that knows the name gives the keys and the account.
        let salts = SaltKey::from_contents(&[5; 32]);
        let alice = chain.scram(b"alice", &salts);
        assert_eq!(alice.keys, Keys::from_password(b"file-pw", b"salt", 1));
        assert_eq!(alice.account.unwrap().uid, Some(1));
        assert_eq!(chain.scram(b"bob", &salts).account.unwrap().uid, Some(3));
        let carol = chain.scram(b"carol", &salts);
        assert!(carol.account.is_err());
        assert_eq!(carol.keys, Keys::stand_in(b"carol", &salts));
        assert!(chain.knows(b"bob") && !chain.knows(b"carol"));
        assert!(chain.scram_for_every_user());
        assert!(!Chain::new(vec![]).scram_for_every_user());
    }
}
