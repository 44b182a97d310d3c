//! A POP3 client speaking raw bytes over TCP or a Unix socket, every read bounded by a timeout.

use super::{MAX_MULTILINE, READ_TIMEOUT, show};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// One end of the conversation: TCP for standalone mode, a Unix socket for inetd mode.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn try_clone(&self) -> Box<dyn Read + Send> {
        match self {
            Sock::Tcp(s) => Box::new(s.try_clone().expect("clone tcp")),
            Sock::Unix(s) => Box::new(s.try_clone().expect("clone unix")),
        }
    }
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.write_all(b),
            Sock::Unix(s) => s.write_all(b),
        }
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(how),
            Sock::Unix(s) => s.shutdown(how),
        }
    }
}

/// A POP3 client speaking raw bytes. Reads time out after `READ_TIMEOUT`.
pub struct Client {
    sock: Sock,
    reader: BufReader<Box<dyn Read + Send>>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Client::from_sock(Sock::Tcp(s))
    }

    /// Connects from `local` (any of 127/8 is loopback on Linux): another client address.
    pub fn connect_from(addr: SocketAddr, local: std::net::IpAddr) -> Client {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(local, 0).into()).unwrap();
        s.connect_timeout(&addr.into(), Duration::from_secs(5))
            .expect("connect");
        let s = TcpStream::from(s);
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Client::from_sock(Sock::Tcp(s))
    }

    /// Connects with a receive buffer of `rcvbuf` octets, set before the connection is made: what the
    /// server can have sent ahead of our reads is then that and its own send buffer, no more.
    pub fn connect_small_window(addr: SocketAddr, rcvbuf: usize) -> Client {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrStorage, connect, setsockopt, socket,
            sockopt,
        };
        use std::os::fd::AsRawFd;
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).expect("socket");
        setsockopt(&fd, sockopt::RcvBuf, &rcvbuf).expect("SO_RCVBUF");
        connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)).expect("connect");
        let s = TcpStream::from(fd);
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Client::from_sock(Sock::Tcp(s))
    }

    pub fn from_unix(s: UnixStream) -> Client {
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Client::from_sock(Sock::Unix(s))
    }

    fn from_sock(sock: Sock) -> Client {
        let reader = BufReader::new(sock.try_clone());
        Client { sock, reader }
    }

    pub fn set_read_timeout(&self, t: Duration) {
        match &self.sock {
            Sock::Tcp(s) => s.set_read_timeout(Some(t)).unwrap(),
            Sock::Unix(s) => s.set_read_timeout(Some(t)).unwrap(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("send");
    }

    /// Everything the server sends until it closes the connection (bounded by `within`).
    pub fn read_to_close(&mut self, within: Duration) -> Vec<u8> {
        self.set_read_timeout(within);
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline && out.len() < MAX_MULTILINE {
            match self.reader.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!("no close within {within:?}: {e}; got {:?}", show(&out)),
            }
        }
        panic!("no close within {within:?}; got {:?}", show(&out));
    }

    /// A second handle for writing, e.g. from another thread while this one reads; errors are returned.
    pub fn writer(&self) -> Box<dyn Write + Send> {
        match &self.sock {
            Sock::Tcp(s) => Box::new(s.try_clone().expect("clone tcp")),
            Sock::Unix(s) => Box::new(s.try_clone().expect("clone unix")),
        }
    }

    /// Half-closes the connection: the server sees end of input.
    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// One line including its terminator, as sent. Panics on EOF, timeout, or a line without CRLF.
    pub fn read_line_raw(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_MULTILINE as u64)
            .read_until(b'\n', &mut buf)
            .expect("read line (timeout?)");
        assert!(n > 0, "connection closed while waiting for a line");
        assert!(
            buf.ends_with(b"\r\n"),
            "line not terminated by CRLF: {:?}",
            show(&buf)
        );
        buf
    }

    /// One line without its CRLF.
    pub fn read_line(&mut self) -> String {
        let raw = self.read_line_raw();
        String::from_utf8_lossy(&raw[..raw.len() - 2]).into_owned()
    }

    /// The lines of a multi-line response after its status line, raw, up to and including ".\r\n".
    pub fn read_multiline(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let line = self.read_line_raw();
            out.extend_from_slice(&line);
            if line == b".\r\n" {
                return out;
            }
            assert!(out.len() < MAX_MULTILINE, "multi-line response too long");
        }
    }

    /// The rest of a multi-line response: up to and including ".\r\n" (then `true`), or all that
    /// arrives before the server closes the connection without it (then `false`).
    pub fn read_multiline_or_close(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            let n = (&mut self.reader)
                .take(MAX_MULTILINE as u64)
                .read_until(b'\n', &mut out)
                .expect("read line (timeout?)");
            if n == 0 {
                return (out, false);
            }
            if &out[start..] == b".\r\n" {
                return (out, true);
            }
            assert!(out.len() < MAX_MULTILINE, "multi-line response too long");
        }
    }

    /// Sends `line` + CRLF, returns the status line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_line()
    }

    /// Sends `line`, expects `+OK`, returns the multi-line body (raw, with the terminator).
    pub fn multi(&mut self, line: &str) -> Vec<u8> {
        let status = self.cmd(line);
        assert!(status.starts_with("+OK"), "{line} -> {status}");
        self.read_multiline()
    }

    /// Reads and checks the greeting, returning it.
    pub fn greeting(&mut self) -> String {
        let g = self.read_line();
        assert!(g.starts_with("+OK "), "greeting: {g}");
        g
    }

    pub fn login(&mut self, user: &str, pass: &str) {
        let r = self.cmd(&format!("USER {user}"));
        assert!(r.starts_with("+OK "), "USER -> {r}");
        let r = self.cmd(&format!("PASS {pass}"));
        assert!(r.starts_with("+OK "), "PASS -> {r}");
    }

    /// Waits for the server to close the connection: true if EOF (or reset) arrives within `within`,
    /// ignoring any bytes that arrive before it.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.read_until_closed(within).is_some()
    }

    /// What the server sends until it closes the connection, if it does within `within`.
    pub fn read_until_closed(&mut self, within: Duration) -> Option<Vec<u8>> {
        self.set_read_timeout(within);
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return Some(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Some(got),
                Err(_) => return None,
            }
        }
        None
    }
}
