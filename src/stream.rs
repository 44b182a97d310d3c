//! One stream type for every front end: a TCP socket, or stdin/stdout under inetd. Reads and writes wait
//! with `poll(2)` so that the autologout timer and the send timeout work the same on every kind of fd
//! (a pipe under a test harness has no SO_RCVTIMEO).

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The transport under a session.
#[derive(Debug)]
pub enum Transport {
    Tcp(TcpStream),
    /// inetd: the client is fd 0 (read) and fd 1 (write); often the same socket.
    Stdio { input: File, output: File },
}

/// A transport with read and write deadlines.
#[derive(Debug)]
pub struct Stream {
    transport: Transport,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl Stream {
    pub fn new(transport: Transport, read_timeout: Duration, write_timeout: Duration) -> Stream {
        Stream { transport, read_timeout, write_timeout }
    }

    /// Changes the inactivity timeout (the pre-login and the autologout timers may differ).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

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
        wait(self.input_fd(), PollFlags::POLLIN, self.read_timeout)?;
        match &mut self.transport {
            Transport::Tcp(s) => s.read(buf),
            Transport::Stdio { input, .. } => input.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        wait(self.output_fd(), PollFlags::POLLOUT, self.write_timeout)?;
        match &mut self.transport {
            Transport::Tcp(s) => s.write(buf),
            Transport::Stdio { output, .. } => output.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
        (Stream::new(Transport::Stdio { input, output }, t, t), theirs)
    }

    #[test]
    fn read_times_out_when_the_peer_is_silent() {
        let (mut stream, _peer) = stdio_pair();
        let mut buf = [0u8; 8];
        let err = stream.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
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
