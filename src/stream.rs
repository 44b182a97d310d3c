//! One stream type for every front end: a TCP socket, or stdin/stdout under inetd, optionally with TLS
//! (rustls, feature `tls`) layered over either. Reads and writes wait with `poll(2)` so that the
//! autologout timer and the send timeout work the same on every kind of fd (a pipe under a test harness
//! has no SO_RCVTIMEO); TLS records go through the same timed reads and writes, so the timers hold there too.
//! A TCP socket is the exception: there the timeouts are its SO_SNDTIMEO and SO_RCVTIMEO, which bound a
//! blocked send or receive just as the poll did, without a `poll(2)` before every system call.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The transport under a session.
#[derive(Debug)]
pub enum Transport {
    Tcp(TcpStream),
    /// inetd: the client is fd 0 (read) and fd 1 (write); often the same socket.
    Stdio {
        input: File,
        output: File,
    },
}

/// A transport with read and write deadlines, in the clear or under TLS.
#[derive(Debug)]
pub struct Stream {
    layer: Layer,
}

#[derive(Debug)]
enum Layer {
    Plain(Timed),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, Timed>>),
    /// A handshake failed: the connection is unusable and its descriptors are closed.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Closed,
}

/// The transport with its deadlines: what TLS records travel over.
#[derive(Debug)]
struct Timed {
    transport: Transport,
    /// Each read's wait until a deadline is set (the session sets one before its first read).
    read_timeout: Duration,
    /// When set, each read waits only for what is left of it, and fails once it has passed, instead of
    /// `read_timeout`: TLS reads a record in as many reads as the client cares to send it in, and a
    /// client trickling one byte at a time must not stretch the login or autologout timers.
    read_deadline: Option<Instant>,
    write_timeout: Duration,
    /// When set, each write waits at most what is left of it (and fails once it has passed), if that is
    /// less than `write_timeout`: the login timer bounds writes too, or a client that sends commands
    /// and never reads their replies would stay past it, `write_timeout` at each blocked write.
    write_deadline: Option<Instant>,
    /// The socket's SO_SNDTIMEO bounds a send, so a send needs no poll before it.
    socket_send_timeout: bool,
    /// What SO_SNDTIMEO was last set to (`write_timeout`, or less under a write deadline).
    socket_write_timeout: Duration,
    /// What the socket's SO_RCVTIMEO was last set to, if it was.
    socket_read_timeout: Option<Duration>,
}

/// How far the socket's receive timeout may be from the one wanted before it is set again: a session's
/// deadline moves with each command, and a system call per command to follow it would cost what the
/// poll did. A read may so wait this, plus one `KERNEL_TICK`, longer than asked, never less; and
/// the kernel keeps long socket timeouts on a coarse timer wheel, which may end them up to an eighth
/// later still (a review measured 611 s for 600, 61.2 for 60): the timers are "at least", as RFC 1939
/// asks of the autologout timer.
const READ_TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// SO_RCVTIMEO counts in kernel ticks (10 ms at HZ=100, the coarsest) and can end up to one tick before
/// the time asked, where the poll's timer does not: the socket is given one tick more.
const KERNEL_TICK: Duration = Duration::from_millis(10);

impl Stream {
    pub fn new(transport: Transport, read_timeout: Duration, write_timeout: Duration) -> Stream {
        // A zero timeout cannot be set (it would mean "never"); such a stream keeps the poll.
        // Under inetd fd 1 is usually the client's socket: it gets the same SO_SNDTIMEO (a pipe refuses it).
        let socket_send_timeout = !write_timeout.is_zero()
            && match &transport {
                Transport::Tcp(s) => s.set_write_timeout(Some(write_timeout)).is_ok(),
                Transport::Stdio { output, .. } => socket2::SockRef::from(output)
                    .set_write_timeout(Some(write_timeout))
                    .is_ok(),
            };
        Stream {
            layer: Layer::Plain(Timed {
                transport,
                read_timeout,
                read_deadline: None,
                write_timeout,
                write_deadline: None,
                socket_send_timeout,
                socket_write_timeout: write_timeout,
                socket_read_timeout: None,
            }),
        }
    }

    /// Bounds every read from now on, the TLS layer's own reads included, by `deadline`: reads then
    /// fail with `TimedOut` once it has passed.
    pub fn set_read_deadline(&mut self, deadline: Instant) {
        if let Some(timed) = self.timed_mut() {
            timed.read_deadline = Some(deadline);
        }
    }

    /// Bounds every write from now on, the TLS layer's own included, by `deadline` as well as by the
    /// write timeout; `None` lifts it.
    pub fn set_write_deadline(&mut self, deadline: Option<Instant>) {
        if let Some(timed) = self.timed_mut() {
            timed.write_deadline = deadline;
        }
    }

    /// Whether the connection has room for a short write now (or would fail it at once): such a write
    /// then does not wait on the client.
    pub fn has_room(&mut self) -> bool {
        self.timed_mut()
            .is_none_or(|timed| wait(timed.output_fd(), PollFlags::POLLOUT, Duration::ZERO).is_ok())
    }

    /// True once a TLS handshake has completed on this stream.
    pub fn is_tls(&self) -> bool {
        match &self.layer {
            #[cfg(feature = "tls")]
            Layer::Tls(_) => true,
            _ => false,
        }
    }

    fn timed_mut(&mut self) -> Option<&mut Timed> {
        match &mut self.layer {
            Layer::Plain(timed) => Some(timed),
            #[cfg(feature = "tls")]
            Layer::Tls(tls) => Some(&mut tls.sock),
            Layer::Closed => None,
        }
    }

    /// Runs the server side of a TLS handshake over the plain transport, each read and write bounded by
    /// the stream's timeouts. The caller must have dropped any plaintext it had buffered (RFC 2595 section
    /// 4's "plaintext injection" concern); whatever the client sent early and is still in the kernel is fed
    /// to rustls, which rejects it as a bad record. On failure the connection is closed.
    #[cfg(feature = "tls")]
    pub fn start_tls(&mut self, acceptor: &crate::tls::Acceptor) -> io::Result<()> {
        let Layer::Plain(mut timed) = std::mem::replace(&mut self.layer, Layer::Closed) else {
            return Err(io::Error::other("TLS already active"));
        };
        let handshake_error =
            |e: io::Error| io::Error::new(e.kind(), format!("TLS handshake failed: {e}"));
        let mut conn =
            rustls::ServerConnection::new(acceptor.server_config()).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut timed).map_err(handshake_error)?;
        }
        // TLS 1.3 session tickets may still be queued; send them now rather than with the first reply.
        while conn.wants_write() {
            conn.write_tls(&mut timed).map_err(handshake_error)?;
        }
        log::debug!(
            "TLS established: {:?} {:?}",
            conn.protocol_version(),
            conn.negotiated_cipher_suite().map(|s| s.suite())
        );
        self.layer = Layer::Tls(Box::new(rustls::StreamOwned::new(conn, timed)));
        Ok(())
    }

    /// Without the `tls` feature no `Acceptor` exists, so this is never called.
    #[cfg(not(feature = "tls"))]
    pub fn start_tls(&mut self, acceptor: &crate::tls::Acceptor) -> io::Result<()> {
        match acceptor.never {}
    }

    /// Ends the connection politely: under TLS a close_notify alert, so the client can tell a complete
    /// response from a truncated one. Best effort; the socket closes when the stream is dropped.
    pub fn close(&mut self) {
        #[cfg(feature = "tls")]
        if let Layer::Tls(tls) = &mut self.layer {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }

    /// Ends the sending side (a TCP FIN): the client sees the end of the connection while we may still
    /// read what it sent. Best effort; a pipe under inetd has no such thing and is closed at exit.
    pub fn shutdown_write(&self) {
        let timed = match &self.layer {
            Layer::Plain(timed) => timed,
            #[cfg(feature = "tls")]
            Layer::Tls(tls) => &tls.sock,
            Layer::Closed => return,
        };
        let _ = match &timed.transport {
            Transport::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Transport::Stdio { output, .. } => {
                socket2::SockRef::from(output).shutdown(std::net::Shutdown::Write)
            }
        };
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed after a failed TLS handshake",
    )
}

impl Timed {
    fn input_fd(&self) -> BorrowedFd<'_> {
        match &self.transport {
            Transport::Tcp(s) => s.as_fd(),
            Transport::Stdio { input, .. } => input.as_fd(),
        }
    }

    fn output_fd(&self) -> BorrowedFd<'_> {
        match &self.transport {
            Transport::Tcp(s) => s.as_fd(),
            Transport::Stdio { output, .. } => output.as_fd(),
        }
    }
}

/// Waits until `fd` is ready for `events`, or fails with `TimedOut`.
fn wait(fd: BorrowedFd<'_>, events: PollFlags, timeout: Duration) -> io::Result<()> {
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(fd, events)];
        match poll(&mut fds, timeout) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
            // Ready, or an error/hang-up condition that the read or write itself will report.
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.layer {
            Layer::Plain(timed) => timed.read(buf),
            // rustls's stream reads plaintext it has already decrypted before it polls the socket again:
            // a client's pipelined commands that arrived in one record are all served.
            #[cfg(feature = "tls")]
            Layer::Tls(tls) => tls.read(buf),
            Layer::Closed => Err(closed()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.layer {
            Layer::Plain(timed) => timed.write(buf),
            #[cfg(feature = "tls")]
            Layer::Tls(tls) => tls.write(buf),
            Layer::Closed => Err(closed()),
        }
    }

    /// A status line and a body chunk leave in one `writev`.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.layer {
            Layer::Plain(timed) => timed.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Layer::Tls(tls) => tls.write_vectored(bufs),
            Layer::Closed => Err(closed()),
        }
    }

    /// Under TLS, writes out the records still queued in rustls; the plain transport has no buffer.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.layer {
            Layer::Plain(_) => Ok(()),
            #[cfg(feature = "tls")]
            Layer::Tls(tls) => tls.flush(),
            Layer::Closed => Err(closed()),
        }
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.read_deadline {
            None => self.read_timeout,
            Some(deadline) => match deadline.saturating_duration_since(Instant::now()) {
                left if left.is_zero() => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
                left => left,
            },
        };
        if !self.socket_read_timeout_set(timeout) {
            wait(self.input_fd(), PollFlags::POLLIN, timeout)?;
        }
        socket_timed_out(match &mut self.transport {
            Transport::Tcp(s) => s.read(buf),
            Transport::Stdio { input, .. } => input.read(buf),
        })
    }
}

impl Timed {
    /// Sets a TCP socket's SO_RCVTIMEO to `wanted` unless it is already that, within the slack.
    /// False when the read must poll instead: not a socket, a zero timeout, or the option refused.
    fn socket_read_timeout_set(&mut self, wanted: Duration) -> bool {
        let Transport::Tcp(socket) = &self.transport else {
            return false;
        };
        if self
            .socket_read_timeout
            .is_some_and(|set| set >= wanted && set - wanted <= READ_TIMEOUT_SLACK)
        {
            return true;
        }
        // Rounded up to the slack, so that the next command's timeout, a little shorter, still fits.
        let slack = READ_TIMEOUT_SLACK.as_millis();
        let rounded =
            u64::try_from(wanted.as_millis().div_ceil(slack) * slack).map(Duration::from_millis);
        let Ok(rounded) = rounded else {
            self.socket_read_timeout = None;
            return false;
        };
        if rounded.is_zero()
            || socket
                .set_read_timeout(Some(rounded + KERNEL_TICK))
                .is_err()
        {
            self.socket_read_timeout = None;
            return false;
        }
        self.socket_read_timeout = Some(rounded);
        true
    }

    /// Before a write: waits for room in the output, unless the socket's own send timeout bounds it,
    /// which is first set to what is left of the write deadline when that is less than the timeout.
    fn wait_writable(&mut self) -> io::Result<()> {
        let timeout = match self.write_deadline {
            None => self.write_timeout,
            Some(deadline) => match deadline.saturating_duration_since(Instant::now()) {
                left if left.is_zero() => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
                }
                left => left.min(self.write_timeout),
            },
        };
        if !self.socket_send_timeout {
            return wait(self.output_fd(), PollFlags::POLLOUT, timeout);
        }
        if timeout != self.socket_write_timeout {
            let set = match &self.transport {
                Transport::Tcp(s) => s.set_write_timeout(Some(timeout)),
                Transport::Stdio { output, .. } => {
                    socket2::SockRef::from(output).set_write_timeout(Some(timeout))
                }
            };
            if set.is_err() {
                // Keeps the bound with a poll instead (a write then goes out in pieces it can take).
                self.socket_send_timeout = false;
                return wait(self.output_fd(), PollFlags::POLLOUT, timeout);
            }
            self.socket_write_timeout = timeout;
        }
        Ok(())
    }
}

/// SO_SNDTIMEO or SO_RCVTIMEO expiring with nothing done is EAGAIN; it is a timeout like the poll's.
fn socket_timed_out(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
        }
        other => other,
    }
}

/// What a blocking write may hand a pipe after `poll` said it is writable: POSIX promises room for at
/// least this much, and a larger write would sleep, past any timeout, until all of it fits.
const POLLED_WRITE: usize = nix::libc::PIPE_BUF;

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wait_writable()?;
        self.write_now(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.wait_writable()?;
        if !self.socket_send_timeout {
            // One polled write at a time, of the first slice with anything in it.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return self.write_now(first);
        }
        socket_timed_out(match &mut self.transport {
            Transport::Tcp(s) => s.write_vectored(bufs),
            Transport::Stdio { output, .. } => output.write_vectored(bufs),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Timed {
    /// The write itself, after `wait_writable`: whole under a send timeout, else what a poll promised.
    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        let buf = if self.socket_send_timeout {
            buf
        } else {
            &buf[..buf.len().min(POLLED_WRITE)]
        };
        socket_timed_out(match &mut self.transport {
            Transport::Tcp(s) => s.write(buf),
            Transport::Stdio { output, .. } => output.write(buf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn stdio_pair() -> (Stream, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let input = File::from(std::os::fd::OwnedFd::from(ours.try_clone().unwrap()));
        let output = File::from(std::os::fd::OwnedFd::from(ours));
        let t = Duration::from_millis(50);
        (
            Stream::new(Transport::Stdio { input, output }, t, t),
            theirs,
        )
    }

    /// A peer that never reads: writes stop at the write deadline, well before the write timeout,
    /// and go on under the timeout alone once the deadline is lifted.
    #[test]
    fn writes_stop_at_the_write_deadline() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let input = File::from(std::os::fd::OwnedFd::from(ours.try_clone().unwrap()));
        let output = File::from(std::os::fd::OwnedFd::from(ours));
        let long = Duration::from_secs(30);
        let mut stream = Stream::new(Transport::Stdio { input, output }, long, long);
        let started = Instant::now();
        stream.set_write_deadline(Some(started + Duration::from_millis(200)));
        let chunk = [b'x'; 64 * 1024];
        let err = (0..1000)
            .find_map(|_| stream.write_all(&chunk).err())
            .expect("the peer's buffer filled up");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        stream.set_write_deadline(None);
        let mut drained = vec![0u8; 1 << 20];
        let n = (&theirs).read(&mut drained).unwrap();
        assert!(n > 0);
        stream.write_all(&chunk[..n.min(chunk.len())]).unwrap();
    }

    #[test]
    fn read_times_out_when_the_peer_is_silent() {
        let (mut stream, _peer) = stdio_pair();
        let mut buf = [0u8; 8];
        let err = stream.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// A silent TCP client: the socket's receive timeout ends the read, as the poll did.
    #[test]
    fn tcp_read_times_out_when_the_peer_is_silent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let t = Duration::from_millis(100);
        let mut stream = Stream::new(Transport::Tcp(ours), t, t);
        let mut buf = [0u8; 8];
        for timeout in [t, Duration::from_millis(95), Duration::from_millis(250)] {
            let started = std::time::Instant::now();
            stream.set_read_deadline(started + timeout);
            let err = stream.read(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            let waited = started.elapsed();
            assert!(
                waited >= timeout && waited < timeout + Duration::from_millis(500),
                "{timeout:?}: {waited:?}"
            );
        }
    }

    /// A TCP client that never reads: the socket's send timeout ends the write, as the poll did.
    #[test]
    fn tcp_write_times_out_when_the_peer_stops_reading() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        let t = Duration::from_millis(100);
        let mut stream = Stream::new(Transport::Tcp(ours), t, t);
        let big = vec![b'x'; 64 << 20];
        let started = std::time::Instant::now();
        let err = stream.write_all(&big).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn data_flows_both_ways() {
        let (mut stream, mut peer) = stdio_pair();
        peer.write_all(b"NOOP\r\n").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).unwrap(), 6);
        stream.write_all(b"+OK\r\n").unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"+OK\r\n");
    }
}
