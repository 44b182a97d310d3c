//! The one loop that reads the network: a bounded command line at a time, handed to the session; replies
//! are corked and flushed only when the client has nothing more buffered (RFC 2449 PIPELINING: a batch of
//! commands gets its replies in one write instead of one packet each); the login and autologout timers; the
//! TLS hand-off for implicit TLS and STLS. The corked output is `corked`'s; the reading of a PROXY protocol
//! header, which comes before the session's first byte, is `proxy_header`'s.
//!
//! The timers are deadlines, not idle timeouts, so a client cannot stretch them by trickling one octet at
//! a time: AUTHORIZATION must end within `login_timeout` of the greeting, and in TRANSACTION each command
//! line must be complete within `timeout` of the previous reply. Writes have the stream's send timeout.

mod corked;
mod lingering;
mod proxy_header;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use crate::proto::line::{self, Line, MAX_COMMAND_LINE};
use crate::proxy;
use crate::session::{Outcome, Services, Session, Stats, Step};
use crate::stream::Stream;
use crate::tls::Acceptor;
use corked::{Corked, flush};
use lingering::Lingering;
pub use lingering::MAX_LINGERING;
pub use proxy_header::{ProxyHeaderError, read_proxy_header};

/// TLS for one connection: the server's certificate, and whether the connection starts with a handshake
/// (RFC 8314 implicit TLS, port 995) or may ask for one with STLS.
#[derive(Clone, Copy)]
pub struct Tls<'a> {
    pub acceptor: &'a Acceptor,
    pub implicit: bool,
}

/// Input buffer: several pipelined commands per read, yet small for idle sessions.
const INPUT_BUFFER: usize = 4 * 1024;

/// Who the session serves: `peer` for the logs, `ip` for `allow_nets` (`None` without one: inetd on a
/// pipe).
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub peer: &'a str,
    pub ip: Option<std::net::IpAddr>,
}

/// Runs one session to its end and returns its counters, with TLS available (STLS), required from the
/// first byte (implicit TLS), or, `tls` being `None`, not offered. I/O errors end the session; they
/// never delete anything, because only QUIT reaches UPDATE.
///
/// `release` gives up the session's places in the front end's limits as its end nears: its place
/// under `--max-per-ip` once the replies before the last one (to QUIT, or an end the session chose
/// itself) are out, so that a client reconnecting as soon as it reads that reply is not refused; its
/// place under `--max-sessions` once the connection is closed, before the linger, which serves no
/// one (the standalone server's shutdown still waits for it). A session ending any other way keeps
/// its places to the end (a failed login's delay included).
pub fn serve_tls(
    stream: Stream,
    services: &Services,
    client: Client<'_>,
    apop_timestamp: Option<String>,
    tls: Option<Tls<'_>>,
    release: &mut dyn FnMut(Place),
) -> (Stats, Duration) {
    let started = Instant::now();
    let peer = client.peer;
    let mut session = Session::new(services, peer, apop_timestamp).with_client(client.ip);
    let mut reader = BufReader::with_capacity(INPUT_BUFFER, stream);
    let mut pending = Vec::new();
    let ran = run(
        &mut session,
        services,
        &mut reader,
        &mut pending,
        peer,
        tls,
        release,
    );
    let outcome = match ran {
        Ok(outcome) => outcome,
        // A send that timed out (the client stopped reading): nothing more is written, mid-response as
        // it may be. The timers for commands are answered in `run`.
        Err(e) if is_timeout(&e) => Outcome::Timeout,
        Err(e) => {
            if !is_logged(&e) {
                log::debug!("peer={peer}: {e}");
            }
            match e.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe => Outcome::Closed,
                _ => Outcome::Error,
            }
        }
    };
    // However it ended, a SCRAM exchange left after its server-first is a failed login, and its delay
    // is served here, before the caller frees the session's place (the per-address count included).
    if let Some(delay) = session.ended_mid_exchange() {
        std::thread::sleep(delay);
    }
    (session.finish(outcome), started.elapsed())
}

/// An error already logged where it happened, at the level it deserved: the session's end does not
/// log it a second time.
#[derive(Debug)]
struct Logged(io::Error);

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Logged {}

fn is_logged(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Logged>())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

/// The session from greeting to close. The loop stays whole: the order of reading a line, answering it
/// and flushing only when no next command is buffered is what makes PIPELINING correct, and it reads best
/// in one place.
fn run(
    session: &mut Session<'_>,
    services: &Services,
    reader: &mut BufReader<Stream>,
    pending: &mut Vec<u8>,
    peer: &str,
    tls: Option<Tls<'_>>,
    release: &mut dyn FnMut(Place),
) -> io::Result<Outcome> {
    let login_deadline = Instant::now() + services.login_timeout;
    // Every read until login ends by then, those of a TLS handshake (implicit, or after STLS) included:
    // a client sending its hello a byte at a time gets no fresh timeout for each.
    reader.get_mut().set_read_deadline(login_deadline);
    // And every write: a client that sends commands but never reads the replies must not stay past
    // it either, blocked in a write for the send timeout each time.
    reader.get_mut().set_write_deadline(Some(login_deadline));
    let mut writes_bounded = true;
    greet(session, reader, pending, peer, tls)?;
    if let Some(outcome) = refuse_stray_proxy_header(session, reader, pending, peer)? {
        return Ok(outcome);
    }
    let mut line = Vec::with_capacity(MAX_COMMAND_LINE);
    loop {
        let limit = session.line_limit();
        let deadline = next_line_deadline(session, services, login_deadline);
        if reader.buffer().is_empty() && session.holds_idle_memory() {
            match wait_for_input(reader, deadline.min(Instant::now() + QUIET)) {
                Err(e) if is_timeout(&e) => session.release_idle_memory(),
                // The line reader retries it.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                waited => waited?,
            }
        }
        let line_read = match line::read_line(&mut Deadline { reader, deadline }, &mut line, limit)
        {
            Err(e) if is_timeout(&e) => return Ok(expire(session, pending, reader.get_mut())),
            read => read?,
        };
        let handling_started = Instant::now();
        let step = match line_read {
            Line::Eof => return client_closed(reader, pending),
            Line::TooLong => session.line_too_long(&mut Corked::new(pending, reader.get_mut()))?,
            Line::Complete => {
                session.handle_line(&line, &mut Corked::new(pending, reader.get_mut()))?
            }
        };
        match step {
            Step::Continue => {}
            // Counted from when the command was read, not from when it was answered: the password check's
            // own cost (a hash for one user, a plain compare for another, a dummy hash for an unknown
            // name) is then hidden inside the delay, and every failure takes the same time.
            Step::Delay(delay) => {
                std::thread::sleep(delay.saturating_sub(handling_started.elapsed()))
            }
            Step::Quit => return quit(session, reader, pending, release),
            Step::StartTls => {
                start_tls(reader, pending, tls, peer)?;
                session.tls_established();
                continue;
            }
        }
        if writes_bounded && session.logged_in() {
            reader.get_mut().set_write_deadline(None);
            writes_bounded = false;
        } else if writes_bounded {
            // A command may take its time before login (a failed login's delay, the wait for a
            // maildrop in use): its reply still gets a moment past the login timer.
            let last_words = Instant::now() + LAST_WORDS;
            reader
                .get_mut()
                .set_write_deadline(Some(login_deadline.max(last_words)));
        }
        if session.is_finished() {
            return close_after_last_failure(reader, pending);
        }
        // Replies wait only while the client's next command is already here whole (pipelining); a part
        // of one may take any time to complete, and must not hold back the replies before it.
        if memchr::memchr(b'\n', reader.buffer()).is_none() {
            flush(pending, reader.get_mut())?;
        }
    }
}

/// How long a client may be quiet before the session gives back the memory it holds only for a
/// stream of commands (the RETR buffers): a client fetching messages one after the other sends its
/// next command well within it, one done with its download pays nothing for the rest of its session.
const QUIET: Duration = Duration::from_secs(1);

/// Waits until input is buffered (or the client closed), or `until`.
fn wait_for_input(reader: &mut BufReader<Stream>, until: Instant) -> io::Result<()> {
    Deadline {
        reader,
        deadline: until,
    }
    .fill_buf()
    .map(drop)
}

/// When the next command line must be complete: the login timer until TRANSACTION, then the autologout
/// timer counted afresh from the last reply.
fn next_line_deadline(
    session: &Session<'_>,
    services: &Services,
    login_deadline: Instant,
) -> Instant {
    if session.logged_in() {
        Instant::now() + services.timeout
    } else {
        login_deadline
    }
}

/// The greeting, after the handshake on an implicit-TLS connection, sent at once.
fn greet(
    session: &mut Session<'_>,
    reader: &mut BufReader<Stream>,
    pending: &mut Vec<u8>,
    peer: &str,
    tls: Option<Tls<'_>>,
) -> io::Result<()> {
    if let Some(Tls {
        acceptor,
        implicit: true,
    }) = tls
    {
        // The handshake runs here, in the session's thread.
        handshake(reader.get_mut(), acceptor, peer)?;
        session.tls_established();
    }
    session.greeting(&mut Corked::new(pending, reader.get_mut()))?;
    flush(pending, reader.get_mut())
}

/// A trusted proxy's header was consumed before the session began, so one here comes from an address
/// not in --proxy-from: it would make us log and limit the wrong client. Refuse it. This first wait
/// for input is under the login timer too, and a client silent until it expires is told so. Returns how
/// the session ended, or `None` to go on.
fn refuse_stray_proxy_header(
    session: &Session<'_>,
    reader: &mut BufReader<Stream>,
    pending: &mut Vec<u8>,
    peer: &str,
) -> io::Result<Option<Outcome>> {
    let header = match fill_buf_retrying(reader) {
        Ok(first) => proxy::looks_like_header(first),
        Err(e) if is_timeout(&e) => return Ok(Some(expire(session, pending, reader.get_mut()))),
        Err(e) => return Err(e),
    };
    if header {
        log::warn!("peer={peer}: PROXY protocol header from an address not in proxy-from; closing");
        linger(reader, LINGER);
        return Ok(Some(Outcome::Error));
    }
    Ok(None)
}

/// The client closed its side: the replies still pending go out, then ours closes.
fn client_closed(reader: &mut BufReader<Stream>, pending: &mut Vec<u8>) -> io::Result<Outcome> {
    flush(pending, reader.get_mut())?;
    // Under TLS the client's close_notify: answered with ours (RFC 8446 section 6.1).
    reader.get_mut().close();
    Ok(Outcome::Closed)
}

/// The session asked to close (QUIT, or an end it chose and has answered): the last reply goes out, then
/// ours closes. An outcome the session set itself takes precedence over `Quit` in [`Session::finish`].
fn quit(
    session: &mut Session<'_>,
    reader: &mut BufReader<Stream>,
    pending: &mut Vec<u8>,
    release: &mut dyn FnMut(Place),
) -> io::Result<Outcome> {
    // The replies before QUIT's own go out first, with the place held: a session giving up its place
    // and then stuck in this flush to a client that stops reading would let one address hold any
    // number of them. QUIT's reply, one line, goes out after the place is given up, or a client
    // reconnecting as soon as it reads it could find the place still taken (woken by the write, it
    // can run before this thread does); so when the connection has room for it now, which is
    // when the client keeps up. When it has none (a slow client still taking a large response),
    // the reply waits its turn under the send timeout first, the place held: a moment's bound
    // there could cut the reply to a QUIT whose UPDATE is done. The close then gets a moment, not
    // the send timeout (under TLS, close_notify), and so does the linger (200 ms).
    let last_reply = pending.split_off(start_of_last_line(pending));
    flush(pending, reader.get_mut())?;
    let room = reader.get_mut().has_room();
    if room {
        give_up_address_place(reader, release);
    }
    *pending = last_reply;
    flush(pending, reader.get_mut())?;
    if !room {
        give_up_address_place(reader, release);
    }
    reader.get_mut().close();
    // The maildrop's lock goes before the client sees the end, as it did when the session
    // was dropped first, so a client that reconnects at once does not find it held; and
    // nothing stays held while the close lingers.
    session.tidy();
    // Held through the linger, one address reconnecting as it reads each QUIT reply (and keeping
    // each connection open) kept every place under --max-sessions lingering: other addresses were
    // refused (a review: 1,423 of 1,424 times at --max-sessions 5).
    release(Place::Session);
    // A pipelining client may have sent commands behind QUIT: read for a while (a turn at lingering),
    // or past `MAX_LINGERING` sessions doing so (or `MAX_LINGERING_PER_ADDRESS` from its address),
    // only what has arrived already.
    let turn = Lingering::enter(session.client());
    linger(reader, if turn.is_some() { LINGER } else { GLANCE });
    drop(turn);
    Ok(Outcome::Quit)
}

/// Gives up the session's place under `--max-per-ip`; what it still writes gets a moment from now.
fn give_up_address_place(reader: &mut BufReader<Stream>, release: &mut dyn FnMut(Place)) {
    release(Place::PerAddress);
    reader
        .get_mut()
        .set_write_deadline(Some(Instant::now() + LAST_WORDS));
}

/// A session's places in the front end's limits, given up as its end nears (see [`serve_tls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Under `--max-per-ip`.
    PerAddress,
    /// Under `--max-sessions` (and `--max-per-ip`, if still held).
    Session,
}

/// Where the last CRLF-ended line of `output` begins (0 for one line or none).
fn start_of_last_line(output: &[u8]) -> usize {
    let before_last_crlf = output.len().saturating_sub(1);
    memchr::memrchr(b'\n', &output[..before_last_crlf]).map_or(0, |i| i + 1)
}

/// Ended without QUIT (too many failed logins): the session has set its own outcome. What a
/// pipelining client sent behind the last password is read first, or the close is a reset.
fn close_after_last_failure(
    reader: &mut BufReader<Stream>,
    pending: &mut Vec<u8>,
) -> io::Result<Outcome> {
    flush(pending, reader.get_mut())?;
    reader.get_mut().close();
    linger(reader, LINGER);
    Ok(Outcome::Closed)
}

/// How long a session's last words may take to go out once it holds nothing for them: the reply to
/// an expired login timer, and QUIT's once the session's place under --max-per-ip is given up.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// The login or autologout timer ran out between commands, no response under way: ends the session.
/// Best effort: the client may be gone. RFC 1939 section 3: on autologout "the session does NOT enter
/// the UPDATE state--the server should close the TCP connection without removing any messages or
/// sending any response to the client", so a logged-in client hears nothing (a line sent then would
/// be read as the reply to a command crossing it). The login timer is poplar's own bound on
/// AUTHORIZATION, not an inactivity timer, and says why it ends.
fn expire(session: &Session<'_>, pending: &mut Vec<u8>, stream: &mut Stream) -> Outcome {
    let last_words: &[u8] = if session.logged_in() {
        b""
    } else {
        // The login timer bounded the writes too, and has run out: the last words get a moment of
        // their own, enough for a client that reads, too little to hold the session.
        stream.set_write_deadline(Some(Instant::now() + LAST_WORDS));
        b"-ERR login timer expired, closing\r\n"
    };
    if flush(pending, stream)
        .and_then(|()| stream.write_all(last_words))
        .is_ok()
    {
        // Flushes what was written; under TLS the close_notify after it tells the client nothing was cut.
        stream.close();
    }
    Outcome::Timeout
}

/// How long a close lingers.
const LINGER: Duration = Duration::from_millis(200);
/// How long it lingers after QUIT without a turn at it (`Lingering`): it reads what has arrived.
const GLANCE: Duration = Duration::from_millis(1);

/// Before closing on a client that may have sent more than was read (commands behind QUIT or the last
/// failed login, or whatever follows a refused PROXY header): ends our side of the connection, then reads
/// (for `how_long` at most) what the client still sends, because closing a socket with unread input
/// makes the kernel send a reset instead of an orderly end, and a client that gets the reset before it
/// has read the last reply may lose that reply. Ending our side first lets the client see the end at
/// once, so the wait costs it nothing; most clients then close too, which ends the wait.
fn linger(reader: &mut BufReader<Stream>, how_long: Duration) {
    reader.get_mut().shutdown_write();
    let deadline = Instant::now() + how_long;
    for _ in 0..16 {
        let n = reader.buffer().len();
        reader.consume(n);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        reader.get_mut().set_read_deadline(deadline);
        if !matches!(reader.fill_buf(), Ok(b) if !b.is_empty()) {
            return;
        }
    }
}

/// The buffered reader with every wait for input bounded by `deadline`, which the stream enforces on
/// each of its reads (under TLS, a line may take many).
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
        // Set even when input is buffered: a TLS handshake after STLS reads under the last one set.
        self.reader.get_mut().set_read_deadline(self.deadline);
        if self.reader.buffer().is_empty() && self.deadline <= Instant::now() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.reader.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.reader.consume(amount);
    }
}

/// `fill_buf`, again after a signal interrupted it (a process-wide signal may land on a session thread,
/// and a socket with SO_RCVTIMEO returns EINTR even under SA_RESTART), as every other read here does.
fn fill_buf_retrying(reader: &mut BufReader<Stream>) -> io::Result<&[u8]> {
    loop {
        match reader.fill_buf() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Borrowed again to return it: the loop's borrow ends with each iteration.
            Ok(_) => return reader.fill_buf(),
            Err(e) => return Err(e),
        }
    }
}

/// The first octet of a TLS record carrying a handshake message (RFC 8446 section 5.1, `handshake(22)`).
const TLS_HANDSHAKE_RECORD: u8 = 22;

/// STLS accepted: the `+OK` goes out in the clear, then the handshake.
///
/// RFC 2595 section 4 warns that a client "MUST discard cached information about server capabilities"
/// once TLS starts; the server's side of that bargain is to discard commands received before the
/// handshake: an attacker on the path can append `STLS\r\nUSER x\r\n...` to a client's packet, and
/// those commands must not run inside the protected session (the plaintext-injection attack, CVE-2011-0411
/// in Postfix). Everything buffered after the STLS line is dropped unread.
fn start_tls(
    reader: &mut BufReader<Stream>,
    pending: &mut Vec<u8>,
    tls: Option<Tls<'_>>,
    peer: &str,
) -> io::Result<()> {
    flush(pending, reader.get_mut())?;
    // RFC 2595 section 4: what came with STLS, before its reply, is not part of the TLS session: it
    // is discarded (commands an attacker on the path appended to the client's STLS must not run once
    // TLS is up). A TLS handshake record among it is a client that did not wait for the reply: its
    // handshake cannot complete, so it is told at once, by the close, rather than at the login timer.
    let injected = reader.buffer();
    if injected.first() == Some(&TLS_HANDSHAKE_RECORD) {
        log::info!(
            "peer={peer}: TLS handshake sent with STLS, before its reply (RFC 2595 section 4), closing"
        );
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            Logged(io::Error::other("TLS handshake sent before STLS's reply")),
        ));
    }
    let injected = injected.len();
    if injected > 0 {
        log::debug!("discarding {injected} octets received after STLS");
    }
    reader.consume(injected);
    // The session offers STLS only when the front end configured a certificate.
    let acceptor = tls
        .map(|t| t.acceptor)
        .ok_or_else(|| io::Error::other("STLS without a certificate"))?;
    handshake(reader.get_mut(), acceptor, peer)
}

/// The TLS handshake, its failure logged at info: it is what an admin looks for when a client cannot
/// connect (no cipher suite or protocol version in common, a plaintext client on the TLS port, a client
/// that rejects the certificate), and the session-end line after it only says `result=error`.
fn handshake(stream: &mut Stream, acceptor: &Acceptor, peer: &str) -> io::Result<()> {
    let done = stream.start_tls(acceptor).map_err(|e| {
        log::info!("peer={peer}: {e}");
        io::Error::new(e.kind(), Logged(e))
    });
    // The handshake is the deepest a session's stack goes; the session then waits, mostly idle, far
    // above it. Those pages would otherwise stay in memory for the thread's life.
    crate::stack::trim();
    done
}

/// The session-end log line: key=value, one per session, never a password.
pub fn log_session_end(peer: &str, stats: &Stats, elapsed: Duration) {
    log::info!(
        "session end user={} peer={peer} retr={} dele={} bytes={} secs={:.3} result={}",
        stats.user.as_deref().unwrap_or("-"),
        stats.retr,
        if stats.outcome == Some(Outcome::Quit) {
            stats.dele
        } else {
            0
        },
        stats.bytes,
        elapsed.as_secs_f64(),
        stats.outcome.unwrap_or(Outcome::Closed).as_str(),
    );
}

#[cfg(test)]
mod tests {
    use super::start_of_last_line;

    #[test]
    fn the_last_line_is_found() {
        assert_eq!(start_of_last_line(b""), 0);
        assert_eq!(start_of_last_line(b"+OK bye\r\n"), 0);
        assert_eq!(start_of_last_line(b"+OK 1\r\n+OK bye\r\n"), 7);
        assert_eq!(start_of_last_line(b"+OK\r\n.\r\n+OK bye\r\n"), 8);
    }
}
