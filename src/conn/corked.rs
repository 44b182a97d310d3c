//! The corked output of a session: replies gather in a pending buffer and leave only when `conn`
//! flushes (the client has nothing more buffered) or the buffer passes its high-water mark; a large
//! write (a chunk of a message body) goes straight to the stream, together with what is pending, in
//! one `writev`.

use std::io::{self, IoSlice, Write};

use crate::stream::Stream;

/// Output is written to the client whenever this much is pending, so RETR of a large message streams
/// with bounded memory instead of waiting for the end of the response.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// A write at least this large (a chunk of a message body) goes to the stream at once, together with
/// what is pending in one `writev`, instead of being copied into the pending output first.
const DIRECT_WRITE: usize = 8 * 1024;

pub(super) fn flush(pending: &mut Vec<u8>, stream: &mut Stream) -> io::Result<()> {
    if !pending.is_empty() {
        stream.write_all(pending)?;
        pending.clear();
    }
    // Under TLS, the records rustls still holds; a no-op in the clear.
    stream.flush()?;
    if pending.capacity() > OUTPUT_HIGH_WATER * 2 {
        // A large response grew the buffer; give the memory back rather than keep it for an idle session.
        pending.shrink_to(OUTPUT_HIGH_WATER);
    }
    Ok(())
}

/// Appends replies to the pending output, writing through to the stream above the high-water mark.
pub(super) struct Corked<'a> {
    pending: &'a mut Vec<u8>,
    stream: &'a mut Stream,
}

impl<'a> Corked<'a> {
    pub(super) fn new(pending: &'a mut Vec<u8>, stream: &'a mut Stream) -> Corked<'a> {
        Corked { pending, stream }
    }
}

impl Write for Corked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() >= DIRECT_WRITE {
            return self.write_through(buf);
        }
        if self.pending.len() + buf.len() > OUTPUT_HIGH_WATER {
            flush(self.pending, self.stream)?;
        }
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Sends what is pending now. The session asks it only before UPDATE (`transaction::update`), so
    /// that a connection reset by then has nothing deleted; replies otherwise leave when `conn`
    /// decides.
    fn flush(&mut self) -> io::Result<()> {
        flush(self.pending, self.stream)
    }
}

impl Corked<'_> {
    /// Writes the pending output and then `buf`, in one system call when the stream takes it all. Returns
    /// how much of `buf` was written, never 0 for a non-empty `buf` unless the stream failed.
    fn write_through(&mut self, buf: &[u8]) -> io::Result<usize> {
        while !self.pending.is_empty() {
            let n = self
                .stream
                .write_vectored(&[IoSlice::new(self.pending), IoSlice::new(buf)])?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            if n < self.pending.len() {
                self.pending.drain(..n);
                continue;
            }
            let of_buf = n - self.pending.len();
            self.pending.clear();
            if of_buf > 0 {
                return Ok(of_buf);
            }
        }
        self.stream.write(buf)
    }
}
