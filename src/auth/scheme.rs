//! Password schemes of Dovecot's passwd-file: `{PLAIN}`, `{SHA512-CRYPT}`, `{SHA256-CRYPT}`, `{BLF-CRYPT}`.

/// A stored credential, parsed from `{SCHEME}secret`.
#[derive(Clone, PartialEq, Eq)]
pub enum Stored {
    Plain(Vec<u8>),
    /// A crypt(3) string: `$6$...`, `$5$...`, `$2b$...`.
    Crypt(String),
    /// The account cannot log in (`!`, `*`, empty, unknown scheme).
    Locked,
}

impl Stored {
    pub fn parse(field: &str) -> Result<Stored, String> {
        let _ = field;
        todo!("Stored::parse")
    }
    /// Verifies a password, in time independent of where the first difference lies.
    pub fn verify(&self, password: &[u8]) -> bool {
        let _ = password;
        todo!("Stored::verify")
    }
    /// The plaintext secret, for APOP; `None` for hashed or locked credentials.
    pub fn plaintext(&self) -> Option<&[u8]> {
        match self {
            Stored::Plain(p) => Some(p),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stored::Plain(_) => "Plain(..)",
            Stored::Crypt(_) => "Crypt(..)",
            Stored::Locked => "Locked",
        })
    }
}
