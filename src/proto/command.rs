//! `Command` and its parser: one command line (without CRLF) in, a typed command or a `ParseError` out.
//!
//! Pure: no I/O, no allocation. Whether a command is allowed in the current state is the session's
//! question, not this module's; here only its shape is checked. [`print`](fn@print) renders a command back to its
//! canonical line, so fuzzing can check parse → print → parse.

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
        u32::try_from(index)
            .ok()
            .and_then(|i| i.checked_add(1))
            .and_then(MsgNum::new)
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
    Apop {
        name: &'a [u8],
        digest: &'a [u8],
    },
    /// RFC 5034: `AUTH` alone lists mechanisms; `initial` is the optional initial response.
    Auth {
        mechanism: Option<&'a [u8]>,
        initial: Option<&'a [u8]>,
    },
    Stls,
    Capa,
    Quit,
    Stat,
    List(Option<MsgNum>),
    Retr(MsgNum),
    Dele(MsgNum),
    Noop,
    Rset,
    Top {
        msg: MsgNum,
        lines: u32,
    },
    Uidl(Option<MsgNum>),
}

impl Command<'_> {
    /// The keyword in upper case, for logs and error messages.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Apop { .. } => "APOP",
            Command::Auth { .. } => "AUTH",
            Command::Stls => "STLS",
            Command::Capa => "CAPA",
            Command::Quit => "QUIT",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Top { .. } => "TOP",
            Command::Uidl(_) => "UIDL",
        }
    }
}

/// Why a command line was refused; `Display` gives the text sent after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    UnknownCommand,
    /// Names the missing argument ("message number", "password", ...).
    MissingArgument(&'static str),
    /// Names the command's keyword.
    TooManyArguments(&'static str),
    /// Not a decimal number, zero, or too large.
    BadMessageNumber,
    BadLineCount,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty command"),
            ParseError::UnknownCommand => f.write_str("unknown command"),
            ParseError::MissingArgument(what) => write!(f, "missing argument: {what}"),
            ParseError::TooManyArguments(keyword) => write!(f, "too many arguments for {keyword}"),
            ParseError::BadMessageNumber => f.write_str("invalid message number"),
            ParseError::BadLineCount => f.write_str("invalid line count"),
        }
    }
}

const MSG: &str = "message number";

/// Parses one command line (CRLF already removed). Keywords are case-insensitive.
///
/// RFC 1939 says "Keywords and arguments are each separated by a single SPACE character"; clients in the
/// wild send doubled spaces, tabs and trailing blanks, and nothing is gained by refusing them, so runs of
/// SP/TAB separate arguments. PASS alone is read strictly, because its argument is the rest of the line.
///
/// No argument has a length limit of its own: RFC 1939's 40 characters are gone since RFC 2449 section 4,
/// which "increases the length restrictions on commands and parameters imposed by RFC 1939" and says
/// "Servers which support the CAPA command MUST support commands up to 255 octets". The line reader's
/// 255 octets bound every argument (a user name that is a long e-mail address must get through).
pub fn parse(line: &[u8]) -> Result<Command<'_>, ParseError> {
    if line.iter().all(|&b| is_blank(b)) {
        return Err(ParseError::Empty);
    }
    let keyword_end = line.iter().position(|&b| is_blank(b)).unwrap_or(line.len());
    let (keyword, rest) = line.split_at(keyword_end);
    if keyword.len() > 4 {
        return Err(ParseError::UnknownCommand);
    }
    let mut upper = [0u8; 4];
    let upper = &mut upper[..keyword.len()];
    upper.copy_from_slice(keyword);
    upper.make_ascii_uppercase();
    let mut args = Args { rest };
    let command = match &*upper {
        b"PASS" => return parse_pass(rest),
        b"USER" => Command::User(args.required("name")?),
        b"APOP" => Command::Apop {
            name: args.required("name")?,
            digest: args.required("digest")?,
        },
        b"AUTH" => {
            let mechanism = args.optional();
            let initial = mechanism.and_then(|_| args.optional());
            Command::Auth { mechanism, initial }
        }
        b"STLS" => Command::Stls,
        b"CAPA" => Command::Capa,
        b"QUIT" => Command::Quit,
        b"STAT" => Command::Stat,
        b"LIST" => Command::List(args.optional().map(msg_num).transpose()?),
        b"RETR" => Command::Retr(msg_num(args.required(MSG)?)?),
        b"DELE" => Command::Dele(msg_num(args.required(MSG)?)?),
        b"NOOP" => Command::Noop,
        b"RSET" => Command::Rset,
        b"TOP" => Command::Top {
            msg: msg_num(args.required(MSG)?)?,
            lines: line_count(args.required("line count")?)?,
        },
        b"UIDL" => Command::Uidl(args.optional().map(msg_num).transpose()?),
        _ => return Err(ParseError::UnknownCommand),
    };
    if args.optional().is_some() {
        return Err(ParseError::TooManyArguments(command.keyword()));
    }
    Ok(command)
}

/// RFC 1939 section 7: "the PASS command ... the server may treat the entire remainder of the line
/// after the `PASS ' as the password" -- so spaces, even leading or trailing ones, are part of it.
fn parse_pass(rest: &[u8]) -> Result<Command<'_>, ParseError> {
    // `rest` starts with the one separator that ended the keyword, or is empty.
    match rest.get(1..) {
        Some(password) if !password.is_empty() => Ok(Command::Pass(password)),
        _ => Err(ParseError::MissingArgument("password")),
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The arguments after the keyword, split on runs of blanks.
struct Args<'a> {
    rest: &'a [u8],
}

impl<'a> Args<'a> {
    fn optional(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| !is_blank(b))?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| is_blank(b)).unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }

    fn required(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        self.optional().ok_or(ParseError::MissingArgument(what))
    }
}

/// Decimal digits only: no sign, no blanks, no junk. RFC 1939 numbers messages from 1.
fn msg_num(arg: &[u8]) -> Result<MsgNum, ParseError> {
    decimal(arg)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(MsgNum::new)
        .ok_or(ParseError::BadMessageNumber)
}

/// TOP's line count: any non-negative decimal; a count beyond u32 means "all of it" and saturates.
fn line_count(arg: &[u8]) -> Result<u32, ParseError> {
    let n = decimal(arg).ok_or(ParseError::BadLineCount)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The value of a non-empty string of ASCII digits, saturating at u64::MAX.
fn decimal(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() || !arg.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(arg.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Appends the canonical line for `cmd` (upper-case keyword, single spaces, no CRLF) to `out`.
/// `parse` of the result gives `cmd` back, for every command `parse` can produce. (An `Auth` with an
/// initial response but no mechanism cannot be written as a line; its initial response is dropped.)
pub fn print(cmd: &Command<'_>, out: &mut Vec<u8>) {
    fn arg(out: &mut Vec<u8>, bytes: &[u8]) {
        out.push(b' ');
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(cmd.keyword().as_bytes());
    match *cmd {
        Command::User(name) => arg(out, name),
        Command::Pass(password) => arg(out, password),
        Command::Apop { name, digest } => {
            arg(out, name);
            arg(out, digest);
        }
        Command::Auth {
            mechanism: Some(mechanism),
            initial,
        } => {
            arg(out, mechanism);
            if let Some(initial) = initial {
                arg(out, initial);
            }
        }
        Command::List(Some(msg))
        | Command::Retr(msg)
        | Command::Dele(msg)
        | Command::Uidl(Some(msg)) => arg(out, msg.get().to_string().as_bytes()),
        Command::Top { msg, lines } => {
            arg(out, msg.get().to_string().as_bytes());
            arg(out, lines.to_string().as_bytes());
        }
        Command::Auth {
            mechanism: None, ..
        }
        | Command::Stls
        | Command::Capa
        | Command::Quit
        | Command::Stat
        | Command::List(None)
        | Command::Noop
        | Command::Rset
        | Command::Uidl(None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u32) -> MsgNum {
        MsgNum::new(n).unwrap()
    }

    #[test]
    fn good_lines() {
        let digest = b"c4c9334bac560ecc979e58001b3e22fb";
        let cases: &[(&[u8], Command<'_>)] = &[
            (b"USER alice", Command::User(b"alice")),
            (b"user alice", Command::User(b"alice")),
            (b"UsEr  alice \t ", Command::User(b"alice")),
            (b"USER\talice", Command::User(b"alice")),
            (b"PASS secret", Command::Pass(b"secret")),
            (b"pass  two words ", Command::Pass(b" two words ")),
            (b"PASS\tx", Command::Pass(b"x")),
            (
                b"APOP mrose c4c9334bac560ecc979e58001b3e22fb",
                Command::Apop {
                    name: b"mrose",
                    digest,
                },
            ),
            (
                b"AUTH",
                Command::Auth {
                    mechanism: None,
                    initial: None,
                },
            ),
            (
                b"AUTH PLAIN",
                Command::Auth {
                    mechanism: Some(b"PLAIN"),
                    initial: None,
                },
            ),
            (
                b"AUTH PLAIN =",
                Command::Auth {
                    mechanism: Some(b"PLAIN"),
                    initial: Some(b"="),
                },
            ),
            (b"STLS", Command::Stls),
            (b"capa", Command::Capa),
            (b"QUIT ", Command::Quit),
            (b"stat", Command::Stat),
            (b"LIST", Command::List(None)),
            (b"LIST 2", Command::List(Some(m(2)))),
            (b"LIST 007", Command::List(Some(m(7)))),
            (b"RETR 4294967295", Command::Retr(m(u32::MAX))),
            (b"DELE 1", Command::Dele(m(1))),
            (b"NOOP", Command::Noop),
            (b"RSET", Command::Rset),
            (
                b"TOP 1 0",
                Command::Top {
                    msg: m(1),
                    lines: 0,
                },
            ),
            (
                b"top 3  10",
                Command::Top {
                    msg: m(3),
                    lines: 10,
                },
            ),
            (
                b"TOP 1 99999999999999999999",
                Command::Top {
                    msg: m(1),
                    lines: u32::MAX,
                },
            ),
            (b"UIDL", Command::Uidl(None)),
            (b"UIDL 12", Command::Uidl(Some(m(12)))),
        ];
        for (line, expected) in cases {
            assert_eq!(
                &parse(line).unwrap(),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// RFC 2449 section 4 lifts RFC 1939's 40-character argument limit: a command line of up to 255
    /// octets is accepted whatever the length of its arguments.
    #[test]
    fn long_arguments() {
        for len in [40, 41, 64, 200] {
            let name = vec![b'a'; len];
            let line = [&b"USER "[..], &name].concat();
            assert_eq!(parse(&line), Ok(Command::User(&name)), "{len} octets");
        }
        let name = [b'n'; 60];
        let digest = [b'd'; 32];
        assert_eq!(
            parse(&[&b"APOP "[..], &name, b" ", &digest].concat()),
            Ok(Command::Apop {
                name: &name,
                digest: &digest
            })
        );
        assert_eq!(
            parse(&[&b"LIST "[..], &[b'0'; 60], b"1"].concat()),
            Ok(Command::List(Some(m(1))))
        );
        let password = [b'p'; 200];
        assert_eq!(
            parse(&[&b"PASS "[..], &password].concat()),
            Ok(Command::Pass(&password))
        );
        let initial = [b'Q'; 200];
        let auth = [&b"AUTH PLAIN "[..], &initial].concat();
        assert_eq!(
            parse(&auth),
            Ok(Command::Auth {
                mechanism: Some(b"PLAIN"),
                initial: Some(&initial)
            })
        );
    }

    #[test]
    fn bad_lines() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (b"", Empty),
            (b"  \t", Empty),
            (b"HELO", UnknownCommand),
            (b"STATS", UnknownCommand),
            (b"LISTING 1", UnknownCommand),
            (b" STAT", UnknownCommand),
            (b"ST", UnknownCommand),
            (b"\xff\xfe", UnknownCommand),
            (b"PASS", MissingArgument("password")),
            (b"PASS ", MissingArgument("password")),
            (b"USER", MissingArgument("name")),
            (b"USER  ", MissingArgument("name")),
            (b"USER a b", TooManyArguments("USER")),
            (b"APOP mrose", MissingArgument("digest")),
            (b"APOP a b c", TooManyArguments("APOP")),
            (b"AUTH PLAIN a b", TooManyArguments("AUTH")),
            (b"STAT 1", TooManyArguments("STAT")),
            (b"QUIT now", TooManyArguments("QUIT")),
            (b"LIST 1 2", TooManyArguments("LIST")),
            (b"LIST 0", BadMessageNumber),
            (b"LIST -1", BadMessageNumber),
            (b"LIST +1", BadMessageNumber),
            (b"LIST 1x", BadMessageNumber),
            (b"LIST 0x1", BadMessageNumber),
            (b"LIST 4294967296", BadMessageNumber),
            (b"RETR", MissingArgument("message number")),
            (b"RETR one", BadMessageNumber),
            (b"DELE", MissingArgument("message number")),
            (b"DELE 00", BadMessageNumber),
            (b"TOP", MissingArgument("message number")),
            (b"TOP 1", MissingArgument("line count")),
            (b"TOP 1 -1", BadLineCount),
            (b"TOP 1 x", BadLineCount),
            (b"TOP 0 1", BadMessageNumber),
            (b"TOP 1 2 3", TooManyArguments("TOP")),
            (b"UIDL 0", BadMessageNumber),
            (
                b"RETR 11111111111111111111111111111111111111111",
                BadMessageNumber,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                &parse(line).unwrap_err(),
                expected,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn error_texts_are_single_lines() {
        let cases = [
            (ParseError::Empty, "empty command"),
            (ParseError::UnknownCommand, "unknown command"),
            (
                ParseError::MissingArgument("message number"),
                "missing argument: message number",
            ),
            (
                ParseError::TooManyArguments("STAT"),
                "too many arguments for STAT",
            ),
            (ParseError::BadMessageNumber, "invalid message number"),
            (ParseError::BadLineCount, "invalid line count"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn keywords_are_upper_case() {
        let cases = [
            ("user a", "USER"),
            ("pass a", "PASS"),
            ("apop a b", "APOP"),
            ("auth", "AUTH"),
            ("stls", "STLS"),
            ("capa", "CAPA"),
            ("quit", "QUIT"),
            ("stat", "STAT"),
            ("list", "LIST"),
            ("retr 1", "RETR"),
            ("dele 1", "DELE"),
            ("noop", "NOOP"),
            ("rset", "RSET"),
            ("top 1 1", "TOP"),
            ("uidl", "UIDL"),
        ];
        for (line, keyword) in cases {
            assert_eq!(parse(line.as_bytes()).unwrap().keyword(), keyword);
        }
    }

    #[test]
    fn print_then_parse_gives_the_command_back() {
        let lines: &[(&[u8], &[u8])] = &[
            (b"user  alice ", b"USER alice"),
            (b"PASS  spaced out ", b"PASS  spaced out "),
            (b"apop\tmrose  d1g3st", b"APOP mrose d1g3st"),
            (b"auth", b"AUTH"),
            (b"auth plain  =", b"AUTH plain ="),
            (b"stls", b"STLS"),
            (b"capa", b"CAPA"),
            (b"quit", b"QUIT"),
            (b"stat", b"STAT"),
            (b"list", b"LIST"),
            (b"list 0010", b"LIST 10"),
            (b"retr 1", b"RETR 1"),
            (b"dele 4294967295", b"DELE 4294967295"),
            (b"noop", b"NOOP"),
            (b"rset", b"RSET"),
            (b"top 2 99999999999", b"TOP 2 4294967295"),
            (b"uidl", b"UIDL"),
            (b"uidl 3", b"UIDL 3"),
        ];
        for (line, canonical) in lines {
            let cmd = parse(line).unwrap();
            let mut printed = Vec::new();
            print(&cmd, &mut printed);
            assert_eq!(printed, *canonical, "{:?}", String::from_utf8_lossy(line));
            assert_eq!(parse(&printed).unwrap(), cmd);
        }
    }
}
