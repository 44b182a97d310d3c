//! Status lines (`+OK`/`-ERR`) and RFC 2449/3206 response codes, written in one place; and the lines
//! of LIST and UIDL listings.
//!
//! Message bodies (RETR, TOP) are `body.rs`'s.

use std::fmt;
use std::io::{self, Write};

/// RFC 2449 section 4: "The maximum length of the first line of a command response (including the initial
/// greeting) is unchanged at 512 octets (including the terminating CRLF)."
pub const MAX_STATUS_LINE: usize = 512;

/// Extended response codes (RFC 2449 section 8, RFC 3206).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// RFC 3206: credentials were wrong (not a server problem).
    Auth,
    /// RFC 2449: the maildrop is locked by another session.
    InUse,
    /// RFC 3206: a transient server-side failure; trying later may work.
    SysTemp,
    /// RFC 3206: a permanent server-side failure.
    SysPerm,
    /// RFC 2449: the user logged in too recently.
    LoginDelay,
}

impl RespCode {
    /// The code as it appears between the brackets.
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::Auth => "AUTH",
            RespCode::InUse => "IN-USE",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::LoginDelay => "LOGIN-DELAY",
        }
    }
}

/// Writes `+OK <text>\r\n`. `text` must not be empty or contain CR/LF.
pub fn ok<W: Write + ?Sized>(out: &mut W, text: fmt::Arguments<'_>) -> io::Result<()> {
    write_status(out, "+OK", None, text)
}

/// Writes `-ERR [CODE] <text>\r\n` (the bracket part only when `code` is given).
pub fn err<W: Write + ?Sized>(
    out: &mut W,
    code: Option<RespCode>,
    text: fmt::Arguments<'_>,
) -> io::Result<()> {
    write_status(out, "-ERR", code, text)
}

/// Formats the whole line on the stack and hands it to `out` in one `write_all`.
///
/// Text may carry client-supplied bytes (a user name echoed back), so a CR or LF in it becomes a space
/// rather than ending the line early and forging a second reply. Text that would push the line past
/// [`MAX_STATUS_LINE`] is cut; an empty text leaves just the status indicator.
fn write_status<W: Write + ?Sized>(
    out: &mut W,
    status: &str,
    code: Option<RespCode>,
    text: fmt::Arguments<'_>,
) -> io::Result<()> {
    let mut line = StatusLine {
        buf: [0; MAX_STATUS_LINE],
        len: 0,
    };
    let prefixed = match code {
        Some(code) => fmt::write(&mut line, format_args!("{status} [{}] ", code.as_str())),
        None => fmt::write(&mut line, format_args!("{status} ")),
    };
    let text_start = line.len;
    prefixed
        .and_then(|()| fmt::write(&mut line, text))
        .map_err(|_| io::Error::other("formatting a status line failed"))?;
    if line.len == text_start {
        line.len -= 1; // no text: drop the separating space
    }
    line.buf[line.len..line.len + 2].copy_from_slice(b"\r\n");
    out.write_all(&line.buf[..line.len + 2])
}

/// One line of a LIST or UIDL listing, `N VALUE\r\n` (RFC 1939 section 5, 7), in one `write_all`.
/// Without `core::fmt`, which costs several calls per line: listings of 100,000 messages happen.
/// `value` is an octet count or a unique-id, neither of which holds CR or LF.
pub fn listing_line<W: Write + ?Sized>(out: &mut W, number: usize, value: &[u8]) -> io::Result<()> {
    let mut digits = [0; 20];
    let number = decimal(number as u64, &mut digits);
    let mut line = [0; 128];
    let len = number.len() + 1 + value.len() + 2;
    if len > line.len() {
        return [number, b" ", value, b"\r\n"]
            .iter()
            .try_for_each(|part| out.write_all(part));
    }
    let (n, v) = (number.len(), value.len());
    line[..n].copy_from_slice(number);
    line[n] = b' ';
    line[n + 1..n + 1 + v].copy_from_slice(value);
    line[n + 1 + v..len].copy_from_slice(b"\r\n");
    out.write_all(&line[..len])
}

/// `n` in decimal, in the end of `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// A count and its noun, singular for one: `Tally(1, "message")` shows as "1 message", `Tally(2,
/// "message")` as "2 messages". Only for nouns whose plural takes an "s".
pub struct Tally<'a>(pub u64, pub &'a str);

impl fmt::Display for Tally<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Tally(n, noun) = *self;
        write!(f, "{n} {noun}{}", if n == 1 { "" } else { "s" })
    }
}

/// A status line being formatted; always leaves room for the CRLF.
struct StatusLine {
    buf: [u8; MAX_STATUS_LINE],
    len: usize,
}

impl fmt::Write for StatusLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_STATUS_LINE - 2 - self.len;
        let take = s.len().min(room);
        let dst = &mut self.buf[self.len..self.len + take];
        for (d, &b) in dst.iter_mut().zip(s.as_bytes()) {
            *d = if b == b'\r' || b == b'\n' { b' ' } else { b };
        }
        self.len += take;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each `write` call separately, to check a line goes out in one piece.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ok_line(text: fmt::Arguments<'_>) -> Vec<Vec<u8>> {
        let mut out = Writes::default();
        ok(&mut out, text).unwrap();
        out.0
    }

    fn err_line(code: Option<RespCode>, text: fmt::Arguments<'_>) -> Vec<Vec<u8>> {
        let mut out = Writes::default();
        err(&mut out, code, text).unwrap();
        out.0
    }

    #[test]
    fn listing_lines_in_one_write() {
        for (number, value) in [
            (1, &b"0"[..]),
            (100_000, b"0123456789abcdef"),
            (7, &[b'u'; 70]),
        ] {
            let mut w = Writes::default();
            listing_line(&mut w, number, value).unwrap();
            let expected = format!("{number} {}\r\n", String::from_utf8_lossy(value));
            assert_eq!(w.0, [expected.into_bytes()]);
        }
        // Past the stack buffer it still writes the whole line.
        let mut w = Writes::default();
        listing_line(&mut w, usize::MAX, &[b'v'; 200]).unwrap();
        assert_eq!(
            w.0.concat(),
            format!("{} {}\r\n", usize::MAX, "v".repeat(200)).into_bytes()
        );
        let mut buf = [0; 20];
        for n in [0, 9, 10, 4_294_967_296, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn codes() {
        let cases = [
            (RespCode::Auth, "AUTH"),
            (RespCode::InUse, "IN-USE"),
            (RespCode::SysTemp, "SYS/TEMP"),
            (RespCode::SysPerm, "SYS/PERM"),
            (RespCode::LoginDelay, "LOGIN-DELAY"),
        ];
        for (code, text) in cases {
            assert_eq!(code.as_str(), text);
        }
    }

    #[test]
    fn tally_is_singular_for_one_only() {
        let shown = [0, 1, 2, 11].map(|n| Tally(n, "message").to_string());
        assert_eq!(
            shown,
            ["0 messages", "1 message", "2 messages", "11 messages"]
        );
    }

    #[test]
    fn exact_bytes_in_one_write() {
        let n = 2;
        let cases: &[(Vec<Vec<u8>>, &[u8])] = &[
            (
                ok_line(format_args!("{n} messages ({} octets)", 320)),
                b"+OK 2 messages (320 octets)\r\n",
            ),
            (ok_line(format_args!("")), b"+OK\r\n"),
            (
                err_line(None, format_args!("no such message")),
                b"-ERR no such message\r\n",
            ),
            (
                err_line(Some(RespCode::InUse), format_args!("maildrop locked")),
                b"-ERR [IN-USE] maildrop locked\r\n",
            ),
            (
                err_line(Some(RespCode::SysTemp), format_args!("")),
                b"-ERR [SYS/TEMP]\r\n",
            ),
            (
                err_line(Some(RespCode::Auth), format_args!("bad {}", "login")),
                b"-ERR [AUTH] bad login\r\n",
            ),
        ];
        for (writes, expected) in cases {
            assert_eq!(writes, &[expected.to_vec()]);
        }
    }

    #[test]
    fn line_breaks_in_text_cannot_forge_a_reply() {
        let user = "x\r\n+OK hi";
        assert_eq!(
            err_line(None, format_args!("{user} unknown")),
            [b"-ERR x  +OK hi unknown\r\n".to_vec()]
        );
    }

    #[test]
    fn long_text_is_cut_to_512_octets() {
        let long = "y".repeat(600);
        let writes = ok_line(format_args!("{long}"));
        assert_eq!(writes.len(), 1);
        let line = &writes[0];
        assert_eq!(line.len(), MAX_STATUS_LINE);
        assert!(line.starts_with(b"+OK yyy"));
        assert!(line.ends_with(b"y\r\n"));
    }

    #[test]
    fn write_errors_propagate() {
        let mut full = [0u8; 4];
        let err = ok(&mut &mut full[..], format_args!("too long for the slice")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }
}
