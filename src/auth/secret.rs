//! `Secret<T>`: a value that never shows in `Debug` output, and constant-time comparison.
//! It owns no policy about where secrets come from; `scheme` and `apop` decide what to compare.

use std::fmt;
use std::hint::black_box;

/// Wraps a password or digest so that `{:?}` prints `Secret(..)` in every build.
#[derive(Clone)]
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

// `==` on secrets goes through `constant_time_eq` too, so no call site can leak the position of the
// first differing byte by comparing secrets the obvious way.
impl<T: AsRef<[u8]>> PartialEq for Secret<T> {
    fn eq(&self, other: &Secret<T>) -> bool {
        constant_time_eq(self.0.as_ref(), other.0.as_ref())
    }
}

impl<T: AsRef<[u8]>> Eq for Secret<T> {}

/// Compares two byte strings in time that depends only on their lengths.
///
/// Every byte pair is XORed into an accumulator; `black_box` hides the accumulator from the optimiser
/// so that it cannot turn the fold back into an early exit at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut acc = 0u8;
    for (x, y) in a.iter().zip(b) {
        acc = black_box(acc | (x ^ y));
    }
    black_box(acc) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_table() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"", b"", true),
            (b"a", b"a", true),
            (b"secret", b"secret", true),
            (b"secret", b"Secret", false),
            (b"secret", b"secreT", false),
            (b"secret", b"secre", false),
            (b"", b"x", false),
            (b"\x00", b"", false),
            (b"\x00\x00", b"\x00\x01", false),
            (b"\x80\xff", b"\x80\xff", true),
        ];
        for &(a, b, want) in cases {
            assert_eq!(constant_time_eq(a, b), want, "{a:?} vs {b:?}");
            assert_eq!(constant_time_eq(b, a), want, "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(
            format!("{:#?}", Secret::new(b"hunter2".to_vec())),
            "Secret(..)"
        );
        assert_eq!(*s.expose(), "hunter2");
    }

    #[test]
    fn secret_equality() {
        assert_eq!(Secret::new(&b"abc"[..]), Secret::new(&b"abc"[..]));
        assert_ne!(Secret::new(&b"abc"[..]), Secret::new(&b"abd"[..]));
        assert_ne!(Secret::new("abc"), Secret::new("abcd"));
    }
}
