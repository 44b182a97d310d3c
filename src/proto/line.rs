//! Bounded command-line framing: reads one line of at most the RFC 2449 limit and discards the rest.

use std::io::{self, BufRead};

/// RFC 2449 section 4: "The maximum length of a command line is 255 octets, including the terminating CRLF."
pub const MAX_COMMAND_LINE: usize = 255;

/// What one call to [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A whole line is in the buffer, without its CRLF (or bare LF).
    Complete,
    /// The line was longer than the limit; it has been consumed up to and including its end of line.
    TooLong,
    /// The peer closed the connection (a partial line without end of line is dropped).
    Eof,
}

/// Reads one line into `buf` (cleared first), without allocation beyond `buf`'s capacity.
/// `max` counts the terminating CRLF, as RFC 2449 does.
pub fn read_line<R: BufRead + ?Sized>(reader: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    let _ = (reader, buf, max);
    todo!("proto::line::read_line")
}
