//! `Command` and its parser: one command line (without CRLF) in, a typed command or a `ParseError` out.

use std::fmt;
use std::num::NonZeroU32;

/// An RFC 1939 message number: 1-based, never zero. Storage uses 0-based indexes (`MsgNum::index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgNum(NonZeroU32);

impl MsgNum {
    pub fn new(n: u32) -> Option<MsgNum> {
        NonZeroU32::new(n).map(MsgNum)
    }
    /// The number as the client sees it.
    pub fn get(self) -> u32 {
        self.0.get()
    }
    /// The 0-based index into the session's message table.
    pub fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }
    /// The message number of a 0-based index.
    pub fn from_index(index: usize) -> Option<MsgNum> {
        u32::try_from(index).ok().and_then(|i| i.checked_add(1)).and_then(MsgNum::new)
    }
}

impl fmt::Display for MsgNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A parsed command. Arguments borrow from the line buffer: no allocation per command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    User(&'a [u8]),
    /// RFC 1939: the password is the rest of the line and may contain spaces.
    Pass(&'a [u8]),
    Apop { name: &'a [u8], digest: &'a [u8] },
    /// RFC 5034: `AUTH` alone lists mechanisms; `initial` is the optional initial response.
    Auth { mechanism: Option<&'a [u8]>, initial: Option<&'a [u8]> },
    Stls,
    Capa,
    Quit,
    Stat,
    List(Option<MsgNum>),
    Retr(MsgNum),
    Dele(MsgNum),
    Noop,
    Rset,
    Top { msg: MsgNum, lines: u32 },
    Uidl(Option<MsgNum>),
}

impl Command<'_> {
    /// The keyword in upper case, for logs and error messages.
    pub fn keyword(&self) -> &'static str {
        todo!("Command::keyword")
    }
}

/// Why a command line was refused; `Display` gives the text sent after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    UnknownCommand,
    MissingArgument(&'static str),
    TooManyArguments(&'static str),
    /// Not a decimal number, zero, or too large.
    BadMessageNumber,
    BadLineCount,
    /// RFC 2449 section 4: arguments are at most 40 octets (PASS excepted).
    ArgumentTooLong,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("ParseError::fmt")
    }
}

/// Parses one command line (CRLF already removed). Keywords are case-insensitive.
pub fn parse(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let _ = line;
    todo!("command::parse")
}
