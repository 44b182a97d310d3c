//! The mbox scanner: finds the messages in mbox bytes, their octets as RETR sends them, and what their
//! unique-ids are made of. Pure: it is fed windows of bytes and does no I/O, so the whole of it is tested
//! on byte strings, in every chunk size.
//!
//! # Where a message begins and ends
//!
//! We split exactly where popa3d does, so that a user who switches from popa3d sees the same messages
//! with the same unique-ids:
//!
//! - A message begins at a `From ` line at the very start of the file, or right after an empty line
//!   (`\n\nFrom `). A `From ` line that does not follow an empty line is message text, and so is
//!   `>From ` (mboxo and mboxrd quoting); both are served as stored, never unquoted.
//! - The `From ` line itself is never sent. The message is what follows it, up to the next `From `
//!   line, except that the empty line before that `From ` line belongs to the separator and is not sent
//!   (the delivery agent added it). The exception to the exception, again popa3d's: when that empty line
//!   is the one that ends the header (a message with no body), it is kept, as the message's own
//!   header/body separator. The last message loses a trailing empty line by the same rule.
//! - An empty line is exactly `\n`. A file that does not begin with `From ` is not an mbox.
//!
//! # Octets
//!
//! RFC 1939 section 11: "the octet count ... is the number of octets in the message as transmitted"
//! with CRLF line ends. So octets = stored bytes + one per LF not preceded by CR + 2 when the last line
//! lacks its LF (the encoder ends it), or + 1 when that line ends in a CR (the encoder adds the LF). Byte-stuffing is not counted: the client removes it again.
//!
//! # Speed
//!
//! Header lines are visited one by one (they are few); bodies are crossed with a SIMD substring
//! search for `\n\nFrom ` and SIMD byte counts, so a large mbox scans at memory speed. No allocation
//! per line; one per message only for an `X-UIDL:` value when asked for.

use md5::{Digest, Md5};
use memchr::memmem;

/// What the scanner learned about one message. Offsets are absolute positions in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedMessage {
    /// The `From ` line.
    pub from_offset: u64,
    /// The first byte after the `From ` line: what RETR sends starts here.
    pub data_offset: u64,
    /// The end of the header block (after its empty line), or `data_end` when it has none.
    pub header_end: u64,
    /// The end of what RETR sends.
    pub data_end: u64,
    /// The end of the message in the file: the next `From ` line, or the end of the scanned bytes.
    pub end: u64,
    /// Octets as RETR sends them (see the module doc).
    pub octets: u64,
    /// FNV-1a of the `From ` line (with its LF), to recognise the message later without storing it.
    pub from_digest: u64,
    /// popa3d's MD5 over the header lines that stay fixed (see `HeaderFlags`).
    pub popa3d_md5: [u8; 16],
    /// Whether any header line went into `popa3d_md5` (if not, it is the MD5 of nothing).
    pub popa3d_hashed: bool,
    /// The first `X-UIDL:` header's value, trimmed, when the scanner was asked for it.
    pub x_uidl: Option<Box<str>>,
    /// The message has the shape of the pseudo-message in which UW-IMAP (c-client) and Dovecot keep a
    /// folder's IMAP state: an `X-IMAP:` field (any case; not `X-IMAPbase:`) whose value begins with
    /// the UIDVALIDITY and last UID, the subject both write, `Subject: DON'T DELETE THIS MESSAGE --
    /// FOLDER INTERNAL DATA`, and at most [`MAX_PSEUDO_MESSAGE`] octets. First in the file, it is
    /// hidden from the session (see `Mbox::open_owned`); elsewhere it means nothing. A delivery agent
    /// that keeps headers as sent (procmail) lets a sender write such a message into an empty mbox:
    /// the bound keeps what it can hide from the user small.
    pub imap_state: bool,
}

/// The largest message taken for the IMAP state pseudo-message: UW-IMAP's and Dovecot's take well
/// under a kilobyte, plus the folder's keywords.
pub const MAX_PSEUDO_MESSAGE: u64 = 64 * 1024;

/// The pseudo-message's subject, as UW-IMAP and Dovecot write it.
const PSEUDO_SUBJECT: &[u8] = b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA";

/// The input is not an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotMbox;

/// Header lines shorter than this are always looked at whole; a longer one may be seen in fragments,
/// the first at least this long (enough for the longest header name we look for and an `X-UIDL:`).
pub const MIN_FRAGMENT: usize = 256;
/// `\n\nFrom `: an empty line, then a `From ` line.
pub const SEPARATOR: &[u8] = b"\n\nFrom ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first byte: the file must begin with `From `.
    Start,
    /// Inside a `From ` line.
    FromLine,
    /// At the start of a header line.
    HeaderLineStart,
    /// Inside a long header line whose first fragment was already handled.
    HeaderLineRest,
    /// In the body.
    Body,
}

/// The message being scanned.
struct Current {
    from_offset: u64,
    data_offset: Option<u64>,
    header_end: Option<u64>,
    lf: u64,
    crlf: u64,
    from_digest: u64,
    flags: HeaderFlags,
    md5: Md5,
    hashed: bool,
    x_uidl: Option<Box<str>>,
    /// An `X-IMAP:` field with the UIDVALIDITY and last UID, and the pseudo-message's subject.
    x_imap: bool,
    pseudo_subject: bool,
}

/// popa3d's choice of header lines for its unique-ids: those an MUA never rewrites. The first
/// `Received:` (added by the local MTA: a unique queue id and time), every `Delivered-To:` and
/// `X-Delivery-ID:` (only with a capital X, as popa3d), and `Date:` and `Message-ID:` only while no
/// `Received:` was seen. Continuation lines go with their header.
#[derive(Default)]
struct HeaderFlags {
    fixed: bool,
    received: bool,
}

impl HeaderFlags {
    /// Classifies a header line (or its first fragment) and says whether to hash it.
    fn classify(&mut self, line: &[u8]) -> bool {
        self.fixed = match line[0] {
            b'\t' | b' ' => self.fixed,
            b'R' | b'r' => {
                !self.received && {
                    self.received = starts_with_ci(line, b"Received:");
                    self.received
                }
            }
            b'D' | b'd' => {
                starts_with_ci(line, b"Delivered-To:")
                    || (!self.received && starts_with_ci(line, b"Date:"))
            }
            b'M' | b'm' => !self.received && starts_with_ci(line, b"Message-ID:"),
            b'X' => starts_with_ci(line, b"X-Delivery-ID:"),
            _ => false,
        };
        self.fixed
    }
}

fn starts_with_ci(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `X-IMAP:`'s value as UW-IMAP and Dovecot write it: the UIDVALIDITY and the last UID, decimal, then
/// the keywords if any.
fn begins_with_two_numbers(value: &[u8]) -> bool {
    let mut words = value
        .split(|&b| b == b' ' || b == b'\t' || b == b'\r' || b == b'\n')
        .filter(|w| !w.is_empty());
    let number = |w: Option<&[u8]>| w.is_some_and(|w| w.iter().all(u8::is_ascii_digit));
    number(words.next()) && number(words.next())
}

/// A header line without its line end and trailing blanks.
fn trim_line_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// The scanner. Call `feed` with a window of the input starting at the first unconsumed byte; it
/// returns how many bytes it consumed. Give the unconsumed rest again, with more after it, next time:
/// when it consumes nothing, it needs a longer window (at most `MIN_FRAGMENT` bytes, or 6 in a body).
/// At the end call `feed(rest, true)` (which consumes everything) and then `finish`.
pub struct Scanner {
    state: State,
    /// Absolute offset of the next unconsumed byte.
    pos: u64,
    /// The last two consumed bytes (zero before the start).
    prev: [u8; 2],
    want_x_uidl: bool,
    current: Option<Current>,
    messages: Vec<ScannedMessage>,
    separator: memmem::Finder<'static>,
    /// Built once: a searcher built per call costs more than the search in a short header line.
    crlf: memmem::Finder<'static>,
}

enum Step {
    /// Consumed this many bytes of the window's rest; keep going.
    Ate(usize),
    /// Cannot go on without more input.
    NeedMore,
}

impl Scanner {
    /// `want_x_uidl`: also record `X-UIDL:` header values.
    pub fn new(want_x_uidl: bool) -> Scanner {
        Scanner {
            state: State::Start,
            pos: 0,
            prev: [0; 2],
            want_x_uidl,
            current: None,
            messages: Vec::new(),
            separator: memmem::Finder::new(SEPARATOR),
            crlf: memmem::Finder::new(b"\r\n"),
        }
    }

    /// A scanner fed from `offset` of the input on, where a `From ` line begins: an mbox index's last
    /// message, everything before it known from an earlier scan. Offsets it reports are absolute.
    pub fn starting_at(offset: u64, want_x_uidl: bool) -> Scanner {
        Scanner {
            pos: offset,
            ..Scanner::new(want_x_uidl)
        }
    }

    /// Scans as much of `window` as it can; `eof`: nothing follows `window`.
    pub fn feed(&mut self, window: &[u8], eof: bool) -> Result<usize, NotMbox> {
        let mut at = 0;
        while at < window.len() {
            let rest = &window[at..];
            let step = match self.state {
                State::Start => self.start(rest, eof)?,
                State::FromLine => self.in_from_line(rest),
                State::HeaderLineStart => self.header_line_start(rest, eof),
                State::HeaderLineRest => self.header_line_rest(rest),
                State::Body => self.body(rest, eof),
            };
            match step {
                Step::Ate(n) => at += n,
                Step::NeedMore => break,
            }
        }
        Ok(at)
    }

    /// Ends the scan (after the last `feed`, with `eof`) and returns the messages in file order.
    pub fn finish(mut self) -> Vec<ScannedMessage> {
        self.end_message(false);
        self.messages
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn start(&mut self, rest: &[u8], eof: bool) -> Result<Step, NotMbox> {
        if rest.len() < 5 && !eof && b"From ".starts_with(rest) {
            return Ok(Step::NeedMore);
        }
        if !rest.starts_with(b"From ") {
            return Err(NotMbox);
        }
        self.begin_message();
        Ok(Step::Ate(0))
    }

    fn in_from_line(&mut self, rest: &[u8]) -> Step {
        let (n, done) = line_piece(rest);
        let cur = self
            .current
            .as_mut()
            .expect("a message is open in FromLine");
        cur.from_digest = fnv1a(cur.from_digest, &rest[..n]);
        self.advance(&rest[..n], false);
        if done {
            self.current.as_mut().expect("open").data_offset = Some(self.pos);
            self.state = State::HeaderLineStart;
        }
        Step::Ate(n)
    }

    fn header_line_start(&mut self, rest: &[u8], eof: bool) -> Step {
        let (line, complete) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..=i], true),
            None if eof || rest.len() >= MIN_FRAGMENT => (rest, false),
            None => return Step::NeedMore,
        };
        if line == b"\n" {
            self.advance(line, true);
            self.current.as_mut().expect("open").header_end = Some(self.pos);
            self.state = State::Body;
            return Step::Ate(1);
        }
        let want_x_uidl = self.want_x_uidl;
        let cur = self
            .current
            .as_mut()
            .expect("a message is open in a header");
        if cur.flags.classify(line) {
            cur.md5.update(line);
            cur.hashed = true;
        }
        // The field name must be followed by its colon: `X-IMAPbase:` (Dovecot's, in a real message) is not it.
        // Both judged on what every way of cutting the input into windows shows of the line: its
        // first `MIN_FRAGMENT` octets, and the subject only on a line shorter than that.
        let seen = &line[..line.len().min(MIN_FRAGMENT)];
        cur.x_imap |= starts_with_ci(seen, b"X-IMAP:") && begins_with_two_numbers(&seen[7..]);
        // The prefix first: almost every header line fails at its first octet, before any trim.
        cur.pseudo_subject |= complete
            && line.len() < MIN_FRAGMENT
            && starts_with_ci(line, PSEUDO_SUBJECT)
            && trim_line_end(line).len() == PSEUDO_SUBJECT.len();
        if want_x_uidl && cur.x_uidl.is_none() && starts_with_ci(line, b"X-UIDL:") {
            // A line too long to see whole holds no valid unique-id (70 octets at most): record it as empty.
            // (Lines of `MIN_FRAGMENT` octets or more are treated so however the input was cut into windows.)
            let whole = complete && line.len() < MIN_FRAGMENT;
            cur.x_uidl = Some(if whole {
                x_uidl_value(&line[7..])
            } else {
                "".into()
            });
        }
        if complete {
            self.advance_line(line);
        } else {
            self.advance(line, true);
        }
        self.state = if complete {
            State::HeaderLineStart
        } else {
            State::HeaderLineRest
        };
        Step::Ate(line.len())
    }

    fn header_line_rest(&mut self, rest: &[u8]) -> Step {
        let (n, done) = line_piece(rest);
        let cur = self
            .current
            .as_mut()
            .expect("a message is open in a header");
        if cur.flags.fixed {
            cur.md5.update(&rest[..n]);
        }
        self.advance(&rest[..n], true);
        if done {
            self.state = State::HeaderLineStart;
        }
        Step::Ate(n)
    }

    fn body(&mut self, rest: &[u8], eof: bool) -> Step {
        // A separator whose LFs were already consumed (we came from a header line or a `From ` line, which
        // end at an LF): the window starts at "From " after an empty line, or at "\nFrom " after a line end.
        for (needed, skip) in [(*b"\n\n", 0), ([self.prev[0], b'\n'], 1)] {
            if self.prev != needed {
                continue;
            }
            let pattern = &SEPARATOR[2 - skip..];
            if rest.len() < pattern.len() && !eof && pattern.starts_with(rest) {
                return Step::NeedMore;
            }
            if rest.starts_with(pattern) {
                self.advance(&rest[..skip], true);
                self.end_message(true);
                self.begin_message();
                return Step::Ate(skip);
            }
        }
        match self.separator.find(rest) {
            Some(i) => {
                self.advance(&rest[..i + 2], true);
                self.end_message(true);
                self.begin_message();
                Step::Ate(i + 2)
            }
            None => {
                // A separator may straddle the window's end: leave its possible beginning for next time.
                let n = if eof {
                    rest.len()
                } else {
                    rest.len().saturating_sub(SEPARATOR.len() - 1)
                };
                if n == 0 {
                    return Step::NeedMore;
                }
                self.advance(&rest[..n], true);
                Step::Ate(n)
            }
        }
    }

    /// Consumes `bytes`; counts their line ends into the message when they are message data.
    fn advance(&mut self, bytes: &[u8], data: bool) {
        if data && !bytes.is_empty() {
            let (lf, crlf) = count_line_ends_with(&self.crlf, bytes, self.prev[1]);
            self.count_line_ends(lf, crlf);
        }
        self.step_over(bytes);
    }

    /// [`advance`](Self::advance) for message data that is one whole line: its only LF is its last
    /// byte, so the line ends are known without searching (header lines are many and short).
    fn advance_line(&mut self, line: &[u8]) {
        debug_assert!(line.ends_with(b"\n") && memchr::memchr(b'\n', line) == Some(line.len() - 1));
        let before_lf = match line {
            [.., cr, _] => *cr,
            _ => self.prev[1],
        };
        self.count_line_ends(1, u64::from(before_lf == b'\r'));
        self.step_over(line);
    }

    fn count_line_ends(&mut self, lf: u64, crlf: u64) {
        let cur = self.current.as_mut().expect("data belongs to a message");
        cur.lf += lf;
        cur.crlf += crlf;
    }

    /// Moves past `bytes`, remembering the last two consumed.
    fn step_over(&mut self, bytes: &[u8]) {
        self.prev = match bytes {
            [.., a, b] => [*a, *b],
            [b] => [self.prev[1], *b],
            [] => self.prev,
        };
        self.pos += bytes.len() as u64;
    }

    fn begin_message(&mut self) {
        self.current = Some(Current {
            from_offset: self.pos,
            data_offset: None,
            header_end: None,
            lf: 0,
            crlf: 0,
            from_digest: FNV_OFFSET,
            flags: HeaderFlags::default(),
            md5: Md5::new(),
            hashed: false,
            x_uidl: None,
            x_imap: false,
            pseudo_subject: false,
        });
        self.state = State::FromLine;
    }

    /// Closes the current message at `self.pos`; `at_separator`: a `From ` line follows.
    fn end_message(&mut self, at_separator: bool) {
        let Some(cur) = self.current.take() else {
            return;
        };
        let end = self.pos;
        let data_offset = cur.data_offset.unwrap_or(end);
        let last_line_empty = at_separator || (end > data_offset && self.prev == *b"\n\n");
        // The empty line before a `From ` line (or at the end) is the separator's, unless it ends the header.
        let strip = last_line_empty && cur.header_end.is_some_and(|h| end > h);
        let data_end = end - strip as u64;
        let lf = cur.lf - strip as u64;
        let last_has_lf = at_separator || strip || self.prev[1] == b'\n';
        // The encoder ends an unterminated last line with CRLF, or with just the LF after a bare CR.
        let unterminated = match (data_end > data_offset && !last_has_lf, self.prev[1]) {
            (false, _) => 0,
            (true, b'\r') => 1,
            (true, _) => 2,
        };
        self.messages.push(ScannedMessage {
            from_offset: cur.from_offset,
            data_offset,
            header_end: cur.header_end.unwrap_or(data_end).min(data_end),
            data_end,
            end,
            octets: (data_end - data_offset) + lf - cur.crlf + unterminated,
            from_digest: cur.from_digest,
            popa3d_md5: cur.md5.finalize().into(),
            popa3d_hashed: cur.hashed,
            x_uidl: cur.x_uidl,
            imap_state: cur.x_imap
                && cur.pseudo_subject
                && end - cur.from_offset <= MAX_PSEUDO_MESSAGE,
        });
    }
}

/// LFs in `bytes`, and those preceded by CR (`prev` is the byte before `bytes`). SIMD counts: CRLF is
/// searched for as a pair, which costs nothing in the common LF-only mbox (no CR to find).
pub fn count_line_ends(bytes: &[u8], prev: u8) -> (u64, u64) {
    count_line_ends_with(&memmem::Finder::new(b"\r\n"), bytes, prev)
}

/// [`count_line_ends`] with a CRLF searcher built once.
fn count_line_ends_with(crlf: &memmem::Finder<'_>, bytes: &[u8], prev: u8) -> (u64, u64) {
    let lf = memchr::memchr_iter(b'\n', bytes).count() as u64;
    let straddling = (prev == b'\r' && bytes.first() == Some(&b'\n')) as u64;
    let crlf = crlf.find_iter(bytes).count() as u64 + straddling;
    (lf, crlf)
}

/// An `X-UIDL:` value without surrounding white space (validity is the unique-id code's business).
fn x_uidl_value(raw: &[u8]) -> Box<str> {
    let trimmed = raw.trim_ascii();
    String::from_utf8_lossy(trimmed).into()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `hash`: a cheap fingerprint of short byte strings (here, `From ` lines).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The fingerprint `ScannedMessage::from_digest` holds for a whole `From ` line.
pub fn from_line_digest(line: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, line)
}

/// How much of `rest` belongs to the current line (up to and including its LF), and whether the LF
/// is among it.
fn line_piece(rest: &[u8]) -> (usize, bool) {
    match memchr::memchr(b'\n', rest) {
        Some(i) => (i + 1, true),
        None => (rest.len(), false),
    }
}

/// Scans a whole byte string at once.
pub fn scan_all(bytes: &[u8], want_x_uidl: bool) -> Result<Vec<ScannedMessage>, NotMbox> {
    let mut scanner = Scanner::new(want_x_uidl);
    let used = scanner.feed(bytes, true)?;
    debug_assert_eq!(used, bytes.len());
    Ok(scanner.finish())
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
