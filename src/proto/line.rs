//! Bounded command-line framing: reads one line of at most the RFC 2449 limit and discards the rest.
//!
//! This module owns only the framing: where a line ends and how long it may be. What the line means is
//! `command.rs`'s business; what to answer to an over-long line is the session's.

use std::io::{self, BufRead};

use memchr::memchr;

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
///
/// The length counted is the octets received, end of line included: a client that ends its lines with a
/// bare LF (RFC 1939 asks for CRLF, but some scripts send LF) is measured by what it actually sent. Over
/// the limit, the rest of the line is read and thrown away so the next call starts on a fresh line; `buf`
/// never holds more than `max` octets and is left empty.
pub fn read_line<R: BufRead + ?Sized>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            buf.clear();
            return Ok(Line::Eof);
        }
        let (piece, used, ended) = match memchr(b'\n', available) {
            Some(lf) => (&available[..lf], lf + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            // The LF (seen or still to come) needs one more octet within `max`.
            if buf.len() + piece.len() >= max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(piece);
            }
        }
        reader.consume(used);
        if ended {
            break;
        }
    }
    if too_long {
        return Ok(Line::TooLong);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Line::Complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `BufRead` that hands out at most `step` octets per `fill_buf`, as a slow network would.
    struct Chunked<'a> {
        data: &'a [u8],
        pos: usize,
        step: usize,
    }

    impl io::Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.fill_buf()?.len().min(out.len());
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.consume(n);
            Ok(n)
        }
    }

    impl BufRead for Chunked<'_> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            let end = (self.pos + self.step).min(self.data.len());
            Ok(&self.data[self.pos..end])
        }
        fn consume(&mut self, n: usize) {
            self.pos += n;
        }
    }

    /// Each result of `read_line` with the buffer's contents after it.
    type Seen = Vec<(Line, Vec<u8>)>;

    /// Reads lines until EOF, recording each result with the buffer's contents.
    fn read_all(data: &[u8], step: usize, max: usize) -> Seen {
        let mut reader = Chunked { data, pos: 0, step };
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        loop {
            let line = read_line(&mut reader, &mut buf, max).unwrap();
            assert!(
                buf.len() <= max,
                "buffer grew to {} over max {max}",
                buf.len()
            );
            let done = line == Line::Eof;
            seen.push((line, buf.clone()));
            if done {
                return seen;
            }
        }
    }

    fn complete(s: &[u8]) -> (Line, Vec<u8>) {
        (Line::Complete, s.to_vec())
    }

    fn eof() -> (Line, Vec<u8>) {
        (Line::Eof, Vec::new())
    }

    fn too_long() -> (Line, Vec<u8>) {
        (Line::TooLong, Vec::new())
    }

    #[test]
    fn every_chunk_size_gives_the_same_lines() {
        let max = 8;
        let cases: &[(&[u8], Seen)] = &[
            (b"", vec![eof()]),
            (b"STAT\r\n", vec![complete(b"STAT"), eof()]),
            (b"STAT\n", vec![complete(b"STAT"), eof()]),
            (b"\r\n\n", vec![complete(b""), complete(b""), eof()]),
            (b"A\rB\r\n", vec![complete(b"A\rB"), eof()]),
            (b"A\r\r\n", vec![complete(b"A\r"), eof()]),
            (
                b"USER a\r\nPASS b\r\nQUIT\r\n",
                vec![
                    complete(b"USER a"),
                    complete(b"PASS b"),
                    complete(b"QUIT"),
                    eof(),
                ],
            ),
            (b"QUIT", vec![eof()]),
            (b"NOOP\r\nQU", vec![complete(b"NOOP"), eof()]),
            // Exactly 8 octets with CRLF, and with a bare LF.
            (b"123456\r\n", vec![complete(b"123456"), eof()]),
            (b"1234567\n", vec![complete(b"1234567"), eof()]),
            // One octet over, in each form; the next line is read normally.
            (
                b"1234567\r\nNOOP\r\n",
                vec![too_long(), complete(b"NOOP"), eof()],
            ),
            (
                b"12345678\nNOOP\n",
                vec![too_long(), complete(b"NOOP"), eof()],
            ),
            (
                b"123456789012345678901234567890\r\nX\r\n",
                vec![too_long(), complete(b"X"), eof()],
            ),
            // An over-long line cut off by EOF is simply EOF.
            (b"123456789012345678901234567890", vec![eof()]),
        ];
        for (input, expected) in cases {
            for step in 1..=input.len().max(1) {
                assert_eq!(
                    &read_all(input, step, max),
                    expected,
                    "input {input:?}, {step} octets per read"
                );
            }
        }
    }

    #[test]
    fn the_rfc_limit_is_255_with_crlf() {
        let mut at = vec![b'x'; MAX_COMMAND_LINE - 2];
        at.extend_from_slice(b"\r\n");
        assert_eq!(
            read_all(&at, 7, MAX_COMMAND_LINE)[0],
            complete(&at[..MAX_COMMAND_LINE - 2])
        );
        let mut over = vec![b'x'; MAX_COMMAND_LINE - 1];
        over.extend_from_slice(b"\r\n");
        assert_eq!(read_all(&over, 7, MAX_COMMAND_LINE)[0], too_long());
    }

    #[test]
    fn zero_max_refuses_every_line() {
        assert_eq!(read_all(b"\n", 1, 0), vec![too_long(), eof()]);
    }

    #[test]
    fn the_buffer_is_cleared_first() {
        let mut reader = Chunked {
            data: b"B\n",
            pos: 0,
            step: 9,
        };
        let mut buf = b"old".to_vec();
        assert_eq!(read_line(&mut reader, &mut buf, 9).unwrap(), Line::Complete);
        assert_eq!(buf, b"B");
    }

    #[test]
    fn works_through_a_std_bufreader() {
        let data: &[u8] = b"CAPA\r\nLIST 1\r\n";
        let mut reader = io::BufReader::with_capacity(
            3,
            Chunked {
                data,
                pos: 0,
                step: 2,
            },
        );
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut buf, 255).unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"CAPA");
        assert_eq!(
            read_line(&mut reader, &mut buf, 255).unwrap(),
            Line::Complete
        );
        assert_eq!(buf, b"LIST 1");
        assert_eq!(read_line(&mut reader, &mut buf, 255).unwrap(), Line::Eof);
    }

    /// Fails once with `Interrupted`, then with `kind` forever.
    struct Failing {
        interrupted: bool,
        kind: io::ErrorKind,
    }

    impl io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("read_line only uses BufRead")
        }
    }

    impl BufRead for Failing {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            Err(self.kind.into())
        }
        fn consume(&mut self, _: usize) {}
    }

    #[test]
    fn reader_errors_propagate_and_interrupts_are_retried() {
        for kind in [io::ErrorKind::TimedOut, io::ErrorKind::ConnectionReset] {
            let mut reader = Failing {
                interrupted: false,
                kind,
            };
            let err = read_line(&mut reader, &mut Vec::new(), 255).unwrap_err();
            assert_eq!(err.kind(), kind);
            assert!(reader.interrupted);
        }
    }
}
