//! Status lines (`+OK`/`-ERR`) and RFC 2449/3206 response codes, written in one place.

use std::fmt;
use std::io::{self, Write};

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
        todo!("RespCode::as_str")
    }
}

/// Writes `+OK <text>\r\n`. `text` must not be empty or contain CR/LF.
pub fn ok<W: Write + ?Sized>(out: &mut W, text: fmt::Arguments<'_>) -> io::Result<()> {
    let _ = (out, text);
    todo!("reply::ok")
}

/// Writes `-ERR [CODE] <text>\r\n` (the bracket part only when `code` is given).
pub fn err<W: Write + ?Sized>(out: &mut W, code: Option<RespCode>, text: fmt::Arguments<'_>) -> io::Result<()> {
    let _ = (out, code, text);
    todo!("reply::err")
}
