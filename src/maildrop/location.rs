//! Mail-location templates: `maildir:%h/Maildir`, `mbox:/var/mail/%u`. Pure: no file-system access.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The storage format named by the template's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Maildir,
    Mbox,
}

/// A parsed `FORMAT:PATH` template; `%u` user name, `%h` home, `%%` a percent sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub format: Format,
    template: String,
}

impl Location {
    /// The template as configured (for `--check-config` output).
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The maildrop path of one user. Rejects user names that could escape the template (`/`, `..`,
    /// control characters, over [`MAX_USER_NAME`] octets) before any file-system access, and `%h` when
    /// the account has no home.
    pub fn expand(&self, user: &str, home: Option<&Path>) -> Result<PathBuf, String> {
        let _ = (user, home);
        todo!("Location::expand")
    }
}

/// Longest user name accepted in a path (Linux `LOGIN_NAME_MAX` is 256; mail systems use far less).
pub const MAX_USER_NAME: usize = 64;

impl FromStr for Location {
    type Err = String;
    fn from_str(s: &str) -> Result<Location, String> {
        let _ = s;
        todo!("Location::from_str")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.format {
            Format::Maildir => "maildir",
            Format::Mbox => "mbox",
        };
        write!(f, "{prefix}:{}", self.template)
    }
}
