//! The multi-line body encoder (RFC 1939 section 3): LF → CRLF, byte-stuffing of leading dots, the TOP
//! line limit and the `.CRLF` terminator, fed arbitrary chunks with no allocation per line; and the
//! matching octet counter, so sizes in LIST/STAT equal what RETR sends.

use std::io::{self, Write};

/// How much of a message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// RETR: the whole message.
    Whole,
    /// TOP n m: the headers, the blank line, then at most m body lines.
    Top(u32),
}

/// Streams one message as a multi-line response body.
#[derive(Debug)]
pub struct Encoder {
    _private: (),
}

impl Encoder {
    pub fn new(limit: Limit) -> Encoder {
        let _ = limit;
        todo!("Encoder::new")
    }

    /// Encodes the next chunk of the stored message. Returns `Ok(false)` once the TOP limit is reached:
    /// the rest of the message need not be read.
    pub fn write_chunk<W: Write + ?Sized>(&mut self, chunk: &[u8], out: &mut W) -> io::Result<bool> {
        let _ = (chunk, out);
        todo!("Encoder::write_chunk")
    }

    /// Ends the body: a CRLF if the last line had none, then `.CRLF`.
    pub fn finish<W: Write + ?Sized>(self, out: &mut W) -> io::Result<()> {
        let _ = out;
        todo!("Encoder::finish")
    }
}

/// Counts the octets RETR will send for a stored message (CRLF line ends, a final CRLF added when the last
/// line lacks one, byte-stuffing not counted, per RFC 1939 section 5 LIST).
#[derive(Debug, Default)]
pub struct OctetCounter {
    _private: (),
}

impl OctetCounter {
    pub fn new() -> OctetCounter {
        todo!("OctetCounter::new")
    }
    pub fn update(&mut self, chunk: &[u8]) {
        let _ = chunk;
        todo!("OctetCounter::update")
    }
    pub fn finish(self) -> u64 {
        todo!("OctetCounter::finish")
    }
}
