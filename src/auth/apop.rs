//! APOP (RFC 1939 section 7): the greeting timestamp and the MD5 digest check.

/// Hex MD5 of `timestamp` followed by `secret`, lower case (RFC 1939: "the digest ... in hexadecimal").
pub fn digest(timestamp: &[u8], secret: &[u8]) -> [u8; 32] {
    let _ = (timestamp, secret);
    todo!("apop::digest")
}

/// A msg-id style timestamp unique per connection: `<pid.counter.time.random@host>`.
pub fn timestamp(pid: u32, counter: u64, unix_time: u64, random: u64, host: &str) -> String {
    let _ = (pid, counter, unix_time, random, host);
    todo!("apop::timestamp")
}
