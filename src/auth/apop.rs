//! APOP (RFC 1939 section 7): the greeting timestamp and the MD5 digest check.
//! Which users may use APOP, and the constant-time comparison, belong to the user databases.

use std::fmt::Write as _;

use md5::{Digest, Md5};

/// DNS limits a host name to 255 octets; a longer one would only bloat the greeting line.
const MAX_HOST_LEN: usize = 255;

/// Hex MD5 of `timestamp` followed by `secret`, lower case (RFC 1939: "the digest ... in hexadecimal").
pub fn digest(timestamp: &[u8], secret: &[u8]) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut md5 = Md5::new();
    md5.update(timestamp);
    md5.update(secret);
    let sum = md5.finalize();
    let mut out = [0u8; 32];
    for (pair, byte) in out.chunks_exact_mut(2).zip(sum.iter()) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

/// A msg-id style timestamp unique per connection: `<pid.counter.time.random@host>`.
///
/// RFC 1939 section 7: "the timestamp ... MUST be different each time the POP3 server issues a
/// banner greeting" and has "the syntax of a msg-id \[RFC822\]". The pid and a per-process counter make
/// it unique; the random part makes it unpredictable, so a captured digest cannot be replayed.
pub fn timestamp(pid: u32, counter: u64, unix_time: u64, random: u64, host: &str) -> String {
    let mut out = String::with_capacity(80 + host.len().min(MAX_HOST_LEN));
    // Writing to a String cannot fail.
    let _ = write!(out, "<{pid}.{counter}.{unix_time}.{random:016x}@");
    push_safe_host(&mut out, host);
    out.push('>');
    out
}

/// Appends `host` restricted to letters, digits, '-' and '.', so the msg-id stays one token with no
/// spaces, angle brackets or other RFC 822 specials in it; anything else becomes '-'. A run of dots
/// becomes one: an RFC 822 domain is `sub-domain *("." sub-domain)`, with no empty sub-domain.
fn push_safe_host(out: &mut String, host: &str) {
    let trimmed = host.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        out.push_str("localhost");
        return;
    }
    let mut after_dot = false;
    for c in trimmed.chars().take(MAX_HOST_LEN) {
        if c == '.' && after_dot {
            continue;
        }
        after_dot = c == '.';
        out.push(if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
            c
        } else {
            '-'
        });
    }
    // Cut at the length limit just after a dot: no empty last sub-domain either.
    if out.ends_with('.') {
        out.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1939_example_digest() {
        // RFC 1939 section 7, the example exchange.
        let d = digest(b"<1896.697170952@dbc.mtview.ca.us>", b"tanstaaf");
        assert_eq!(&d, b"c4c9334bac560ecc979e58001b3e22fb");
    }

    #[test]
    fn digest_vectors() {
        // RFC 1321 appendix A.5 test suite: MD5 of the concatenation.
        let cases: &[(&[u8], &[u8], &[u8; 32])] = &[
            (b"", b"", b"d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", b"", b"0cc175b9c0f1b6a831c399e269772661"),
            (b"ab", b"c", b"900150983cd24fb0d6963f7d28e17f72"),
            (b"", b"message digest", b"f96b697d7cb7938d525a2f31aaf161d0"),
        ];
        for &(ts, secret, want) in cases {
            assert_eq!(&digest(ts, secret), want, "{ts:?} + {secret:?}");
        }
    }

    #[test]
    fn timestamp_format() {
        let cases = [
            (
                (42, 7, 1_700_000_000, 0xdead_beef, "mail.example.org"),
                "<42.7.1700000000.00000000deadbeef@mail.example.org>",
            ),
            (
                (1, 0, 0, u64::MAX, ""),
                "<1.0.0.ffffffffffffffff@localhost>",
            ),
            (
                (1, 0, 0, 0, "a b<c>d@e"),
                "<1.0.0.0000000000000000@a-b-c-d-e>",
            ),
            (
                (1, 0, 0, 0, " .host.example. "),
                "<1.0.0.0000000000000000@host.example>",
            ),
            ((1, 0, 0, 0, "hôte"), "<1.0.0.0000000000000000@h-te>"),
            // RFC 822's domain has no empty sub-domain: a run of dots is one dot.
            (
                (1, 0, 0, 0, "mail..example...org."),
                "<1.0.0.0000000000000000@mail.example.org>",
            ),
        ];
        for ((pid, counter, time, random, host), want) in cases {
            assert_eq!(
                timestamp(pid, counter, time, random, host),
                want,
                "host {host:?}"
            );
        }
    }

    #[test]
    fn timestamp_is_one_msg_id() {
        let long_host = "x".repeat(1000);
        let cut_at_a_dot = format!("{}.b", "a".repeat(MAX_HOST_LEN - 1));
        for host in [
            "h",
            "bad host>\r\n<",
            "a..b",
            long_host.as_str(),
            cut_at_a_dot.as_str(),
        ] {
            let ts = timestamp(u32::MAX, u64::MAX, u64::MAX, u64::MAX, host);
            assert!(ts.starts_with('<') && ts.ends_with('>'), "{ts}");
            let inner = &ts[1..ts.len() - 1];
            assert!(!inner.contains(['<', '>', ' ', '\r', '\n']), "{ts}");
            assert_eq!(inner.matches('@').count(), 1, "{ts}");
            assert!(!inner.contains("..") && !inner.ends_with('.'), "{ts}");
            assert!(
                ts.len() < 400,
                "greeting must fit the RFC 2449 512-octet line: {}",
                ts.len()
            );
        }
    }

    #[test]
    fn timestamps_differ_by_counter() {
        let a = timestamp(100, 1, 5, 9, "h");
        let b = timestamp(100, 2, 5, 9, "h");
        assert_ne!(a, b);
        assert_ne!(digest(a.as_bytes(), b"s"), digest(b.as_bytes(), b"s"));
    }
}
