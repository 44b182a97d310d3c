//! The one loop that reads the network: a bounded command line at a time, handed to the session; replies
//! are corked and flushed only when the client has nothing more buffered (RFC 2449 PIPELINING: a batch of
//! commands gets its replies in one write instead of one packet each); the login and autologout timers.
//!
//! The timers are deadlines, not idle timeouts, so a client cannot stretch them by trickling one octet at
//! a time: AUTHORIZATION must end within `login_timeout` of the greeting, and in TRANSACTION each command
//! line must be complete within `timeout` of the previous reply. Writes have the stream's send timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::proto::line::{self, Line, MAX_COMMAND_LINE};
use crate::session::{Outcome, Services, Session, Stats, Step};
use crate::stream::Stream;

/// Input buffer: several pipelined commands per read, yet small for idle sessions.
const INPUT_BUFFER: usize = 4 * 1024;

/// Output is written to the client whenever this much is pending, so RETR of a large message streams
/// with bounded memory instead of waiting for the end of the response.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// Runs one session to its end and returns its counters. I/O errors end the session; they never delete
/// anything, because only QUIT reaches UPDATE.
pub fn serve(stream: Stream, services: &Services, peer: &str, apop_timestamp: Option<String>) -> (Stats, Duration) {
    let started = Instant::now();
    let mut session = Session::new(services, peer, apop_timestamp);
    let mut reader = BufReader::with_capacity(INPUT_BUFFER, stream);
    let mut pending = Vec::new();
    let outcome = match run(&mut session, services, &mut reader, &mut pending) {
        Ok(outcome) => outcome,
        Err(e) if is_timeout(&e) => {
            // Best effort: the client may be gone. RFC 1939 section 3: on autologout the server closes
            // the connection without entering UPDATE.
            let text: &[u8] = if session.logged_in() {
                b"-ERR autologout timer expired, closing\r\n"
            } else {
                b"-ERR login timer expired, closing\r\n"
            };
            let _ = reader.get_mut().write_all(text);
            Outcome::Timeout
        }
        Err(e) => {
            log::debug!("peer={peer}: {e}");
            match e.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                    Outcome::Closed
                }
                _ => Outcome::Error,
            }
        }
    };
    (session.finish(outcome), started.elapsed())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

fn run(
    session: &mut Session<'_>,
    services: &Services,
    reader: &mut BufReader<Stream>,
    pending: &mut Vec<u8>,
) -> io::Result<Outcome> {
    session.greeting(&mut Corked::new(pending, reader.get_mut()))?;
    flush(pending, reader.get_mut())?;
    let login_deadline = Instant::now() + services.login_timeout;
    let mut line = Vec::with_capacity(MAX_COMMAND_LINE);
    loop {
        let deadline = if session.logged_in() { Instant::now() + services.timeout } else { login_deadline };
        let step = match line::read_line(&mut Deadline { reader, deadline }, &mut line, MAX_COMMAND_LINE)? {
            Line::Eof => {
                flush(pending, reader.get_mut())?;
                return Ok(Outcome::Closed);
            }
            Line::TooLong => session.line_too_long(&mut Corked::new(pending, reader.get_mut()))?,
            Line::Complete => session.handle_line(&line, &mut Corked::new(pending, reader.get_mut()))?,
        };
        match step {
            Step::Continue => {}
            Step::Delay(delay) => std::thread::sleep(delay),
            Step::Quit => {
                flush(pending, reader.get_mut())?;
                return Ok(Outcome::Quit);
            }
        }
        if session.is_finished() {
            // Ended without QUIT (too many failed logins): the session has set its own outcome.
            flush(pending, reader.get_mut())?;
            return Ok(Outcome::Closed);
        }
        if reader.buffer().is_empty() {
            flush(pending, reader.get_mut())?;
        }
    }
}

/// The buffered reader with every wait for input bounded by `deadline`: before each read from the
/// network, the stream's read timeout is set to the time left.
struct Deadline<'a> {
    reader: &'a mut BufReader<Stream>,
    deadline: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Deadline<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.reader.buffer().is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
            }
            self.reader.get_mut().set_read_timeout(left);
        }
        self.reader.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.reader.consume(amount);
    }
}

fn flush(pending: &mut Vec<u8>, stream: &mut Stream) -> io::Result<()> {
    if !pending.is_empty() {
        stream.write_all(pending)?;
        pending.clear();
    }
    if pending.capacity() > OUTPUT_HIGH_WATER * 2 {
        // A large response grew the buffer; give the memory back rather than keep it for an idle session.
        pending.shrink_to(OUTPUT_HIGH_WATER);
    }
    Ok(())
}

/// Appends replies to the pending output, writing through to the stream above the high-water mark.
struct Corked<'a> {
    pending: &'a mut Vec<u8>,
    stream: &'a mut Stream,
}

impl<'a> Corked<'a> {
    fn new(pending: &'a mut Vec<u8>, stream: &'a mut Stream) -> Corked<'a> {
        Corked { pending, stream }
    }
}

impl Write for Corked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.len() + buf.len() > OUTPUT_HIGH_WATER {
            flush(self.pending, self.stream)?;
            if buf.len() >= OUTPUT_HIGH_WATER {
                return self.stream.write(buf);
            }
        }
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The session-end log line: key=value, one per session, never a password.
pub fn log_session_end(peer: &str, stats: &Stats, elapsed: Duration) {
    log::info!(
        "session end user={} peer={peer} retr={} dele={} bytes={} secs={:.3} result={}",
        stats.user.as_deref().unwrap_or("-"),
        stats.retr,
        if stats.outcome == Some(Outcome::Quit) { stats.dele } else { 0 },
        stats.bytes,
        elapsed.as_secs_f64(),
        stats.outcome.unwrap_or(Outcome::Closed).as_str(),
    );
}

