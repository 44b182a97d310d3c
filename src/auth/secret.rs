//! `Secret<T>`: a value that never shows in `Debug` output, and constant-time comparison.

use std::fmt;

/// Wraps a password or digest so that `{:?}` prints `Secret(..)` in every build.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }
    /// The wrapped value; call sites that reveal it are few and easy to audit.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let _ = (a, b);
    todo!("constant_time_eq")
}
