//! Reading the PROXY protocol header a trusted load balancer sends before the session's first byte:
//! exactly the header, never past it, within a deadline. The parsing is `proxy`'s.

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::proxy::{self, Header, Parsed, ProxyError};

/// Why the PROXY protocol header of a trusted peer could not be taken. Either way the connection closes.
#[derive(Debug)]
pub enum ProxyHeaderError {
    Io(io::Error),
    Invalid(ProxyError),
}

impl fmt::Display for ProxyHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyHeaderError::Io(e) => write!(f, "reading the PROXY protocol header: {e}"),
            ProxyHeaderError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProxyHeaderError {}

/// Reads the PROXY protocol header that a load balancer in `--proxy-from` must send first, within
/// `within`, and returns the client it names (or `peer` itself for LOCAL and UNKNOWN headers). It reads
/// exactly the header and nothing after it: those bytes belong to the POP3 session.
pub fn read_proxy_header<R: Read + AsFd>(
    conn: &mut R,
    peer: SocketAddr,
    within: Duration,
) -> Result<SocketAddr, ProxyHeaderError> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::with_capacity(proxy::V1_MAX);
    loop {
        match proxy::parse(&buf).map_err(ProxyHeaderError::Invalid)? {
            Parsed::Complete {
                header: Header::Proxied { source, .. },
                ..
            } => return Ok(source),
            Parsed::Complete {
                header: Header::Local,
                ..
            } => return Ok(peer),
            Parsed::Incomplete(more) => {
                let start = buf.len();
                buf.resize(start + more, 0);
                let got =
                    read_before(conn, &mut buf[start..], deadline).map_err(ProxyHeaderError::Io)?;
                buf.truncate(start + got);
            }
        }
    }
}

/// One read that waits no later than `deadline`; end of input is an error (the header is incomplete).
fn read_before<R: Read + AsFd>(
    conn: &mut R,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
    match poll(
        &mut fds,
        PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
    ) {
        Ok(0) => return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
        Ok(_) => {}
        Err(Errno::EINTR) => return Ok(0),
        Err(e) => return Err(e.into()),
    }
    match conn.read(buf)? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn peer() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn header_is_read_exactly_and_names_the_client() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs
            .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 50522 110\r\nUSER alice\r\n")
            .unwrap();
        let client = read_proxy_header(&mut ours, peer(), Duration::from_secs(5)).unwrap();
        assert_eq!(client, "192.0.2.7:50522".parse().unwrap());
        let mut rest = [0u8; 12];
        ours.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"USER alice\r\n");
    }

    #[test]
    fn local_keeps_the_peer_and_bad_or_missing_headers_fail() {
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(b"PROXY UNKNOWN\r\n").unwrap();
        assert_eq!(
            read_proxy_header(&mut ours, peer(), Duration::from_secs(5)).unwrap(),
            peer()
        );
        theirs.write_all(b"USER alice\r\n").unwrap();
        let e = read_proxy_header(&mut ours, peer(), Duration::from_secs(5)).unwrap_err();
        assert!(
            matches!(e, ProxyHeaderError::Invalid(ProxyError::NotAHeader)),
            "{e}"
        );
        let (mut ours, _theirs) = UnixStream::pair().unwrap();
        let e = read_proxy_header(&mut ours, peer(), Duration::from_millis(50)).unwrap_err();
        assert!(
            matches!(e, ProxyHeaderError::Io(ref io) if io.kind() == io::ErrorKind::TimedOut),
            "{e}"
        );
    }
}
