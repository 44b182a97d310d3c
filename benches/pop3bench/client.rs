//! The load generator's POP3 client: blocking, one command at a time (as fetchmail and most clients
//! talk), checking every reply; RETR compares every octet and the terminator with the expected bytes, so
//! a broken server cannot look fast.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::mail::Expected;

pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: Vec<u8>,
    /// The mbox separator line may be served as part of the message (popa3d does): accept one extra
    /// empty line before the terminator.
    pub allow_trailing_blank: bool,
}

pub fn bad(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut c = Client {
            reader: BufReader::with_capacity(64 * 1024, stream),
            writer,
            line: Vec::new(),
            allow_trailing_blank: false,
        };
        c.status("greeting")?;
        Ok(c)
    }

    /// Reads one status line and requires `+OK`.
    fn status(&mut self, what: &str) -> io::Result<()> {
        self.read_line()?;
        if self.line.starts_with(b"+OK") {
            Ok(())
        } else {
            Err(bad(format!(
                "{what}: {}",
                String::from_utf8_lossy(&self.line).trim_end()
            )))
        }
    }

    fn read_line(&mut self) -> io::Result<()> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(())
    }

    pub fn send(&mut self, command: &str) -> io::Result<()> {
        self.writer.write_all(command.as_bytes())
    }

    /// One command, one `+OK` line.
    pub fn command(&mut self, command: &str) -> io::Result<()> {
        self.send(command)?;
        self.status(command.trim_end())
    }

    pub fn login(&mut self, user: &str, pass: &str) -> io::Result<()> {
        self.command(&format!("USER {user}\r\n"))?;
        self.command(&format!("PASS {pass}\r\n"))
    }

    /// STAT: (messages, octets).
    pub fn stat(&mut self) -> io::Result<(u64, u64)> {
        self.command("STAT\r\n")?;
        let text = String::from_utf8_lossy(&self.line);
        let mut words = text
            .split_ascii_whitespace()
            .skip(1)
            .map(|w| w.parse::<u64>());
        match (words.next(), words.next()) {
            (Some(Ok(n)), Some(Ok(o))) => Ok((n, o)),
            _ => Err(bad(format!("STAT: {}", text.trim_end()))),
        }
    }

    /// Reads a multi-line body up to the terminator, calling `each` with every line (CRLF stripped).
    fn multiline(&mut self, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        loop {
            self.read_line()?;
            let l = self
                .line
                .strip_suffix(b"\r\n")
                .ok_or_else(|| bad("line without CRLF"))?;
            if l == b"." {
                return Ok(());
            }
            each(l)?;
        }
    }

    /// LIST, checked against the expected sizes.
    pub fn list(&mut self, expected: &Expected) -> io::Result<()> {
        self.command("LIST\r\n")?;
        let mut n = 0usize;
        self.multiline(|l| {
            let want = format!("{} {}", n + 1, expected.octets.get(n).copied().unwrap_or(0));
            n += 1;
            if l == want.as_bytes() {
                Ok(())
            } else {
                Err(bad(format!(
                    "LIST: got {:?}, want {want:?}",
                    String::from_utf8_lossy(l)
                )))
            }
        })?;
        if n != expected.octets.len() {
            return Err(bad(format!(
                "LIST: {n} messages, want {}",
                expected.octets.len()
            )));
        }
        Ok(())
    }

    /// UIDL of the whole maildrop; returns the number of messages listed.
    pub fn uidl(&mut self) -> io::Result<usize> {
        self.command("UIDL\r\n")?;
        let mut n = 0usize;
        self.multiline(|l| {
            n += 1;
            if l.split(|&b| b == b' ').count() == 2 {
                Ok(())
            } else {
                Err(bad("UIDL: malformed line"))
            }
        })?;
        Ok(n)
    }

    /// RETR `msg` (1-based) and compares the body and terminator with `body` octet for octet.
    pub fn retr(&mut self, msg: usize, body: &[u8], buf: &mut Vec<u8>) -> io::Result<()> {
        self.command(&format!("RETR {msg}\r\n"))?;
        buf.resize(body.len(), 0);
        self.reader.read_exact(buf)?;
        if buf[..] != *body {
            let at = buf.iter().zip(body).position(|(a, b)| a != b).unwrap_or(0);
            return Err(bad(format!("RETR {msg}: octet {at} differs")));
        }
        let mut end = [0u8; 3];
        self.reader.read_exact(&mut end)?;
        if &end == b".\r\n" {
            return Ok(());
        }
        let mut rest = [0u8; 2];
        if self.allow_trailing_blank
            && &end == b"\r\n."
            && self.reader.read_exact(&mut rest).is_ok()
            && &rest == b"\r\n"
        {
            return Ok(());
        }
        Err(bad(format!(
            "RETR {msg}: bad terminator {:?}",
            String::from_utf8_lossy(&end)
        )))
    }

    /// DELE of many messages, pipelined in batches (RFC 2449 PIPELINING; every server here copes with
    /// a batch that fits the socket buffers).
    pub fn dele_many(&mut self, msgs: impl Iterator<Item = usize>) -> io::Result<usize> {
        let msgs: Vec<usize> = msgs.collect();
        for batch in msgs.chunks(200) {
            let mut out = String::with_capacity(batch.len() * 12);
            for m in batch {
                out.push_str(&format!("DELE {m}\r\n"));
            }
            self.send(&out)?;
            for m in batch {
                self.status(&format!("DELE {m}"))?;
            }
        }
        Ok(msgs.len())
    }

    pub fn quit(mut self) -> io::Result<()> {
        self.command("QUIT\r\n")
    }
}
