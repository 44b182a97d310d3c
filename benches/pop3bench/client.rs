//! The load generator's POP3 client: blocking, one command at a time (as fetchmail and most clients
//! talk), checking every reply; RETR compares every octet and the terminator with the expected bytes, so
//! a broken server cannot look fast.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::mail::{self, Expected, Spec};

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

    /// STAT, required to report `want` (messages, octets): a server that answers without looking at
    /// the maildrop must not look fast.
    pub fn stat_is(&mut self, want: (u64, u64)) -> io::Result<()> {
        let got = self.stat()?;
        if got == want {
            Ok(())
        } else {
            Err(bad(format!("STAT: got {got:?}, want {want:?}")))
        }
    }

    /// UIDL of the whole maildrop: every line must be `N ID`, N counting up from 1 and ID 1 to 70
    /// octets from 0x21 to 0x7E (RFC 1939 section 7). Returns the ids in order; whether each occurs
    /// once is `Uids::check_unique`'s to say, after the timing.
    pub fn uidl(&mut self) -> io::Result<Uids> {
        self.command("UIDL\r\n")?;
        let mut ids = Uids::default();
        self.multiline(|l| {
            let n = ids.len() + 1;
            let (num, id) = l
                .iter()
                .position(|&b| b == b' ')
                .map(|sp| (&l[..sp], &l[sp + 1..]))
                .ok_or_else(|| bad(format!("UIDL: malformed line {n}")))?;
            if num != n.to_string().as_bytes() {
                return Err(bad(format!(
                    "UIDL: line {n} numbered {:?}",
                    String::from_utf8_lossy(num)
                )));
            }
            if id.is_empty() || id.len() > 70 || id.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
                return Err(bad(format!("UIDL: line {n}: bad unique-id")));
            }
            ids.push(id);
            Ok(())
        })?;
        Ok(ids)
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

    /// After DELE of every odd-numbered message of `spec`'s maildrop and QUIT: exactly the
    /// even-numbered ones are left, in order (LIST gives each one's size), and a spread of them (every
    /// 97th and the last) is intact octet for octet.
    pub fn check_kept(&mut self, spec: &Spec) -> io::Result<()> {
        // Message i (0-based) of what is left is message 2i+1 (0-based) of the maildrop written.
        let kept: Vec<Vec<u8>> = (0..spec.count / 2)
            .map(|i| mail::message(2 * i + 1, spec.size))
            .collect();
        let left = Expected {
            octets: kept.iter().map(|m| mail::octets(m)).collect(),
            bodies: Vec::new(),
        };
        self.list(&left)
            .map_err(|e| bad(format!("after expunge: {e}")))?;
        let mut buf = Vec::new();
        let sample = (0..kept.len()).step_by(97).chain(kept.len().checked_sub(1));
        for i in sample {
            self.retr(i + 1, &mail::encode(&kept[i]), &mut buf)
                .map_err(|e| bad(format!("after expunge: {e}")))?;
        }
        Ok(())
    }

    pub fn quit(mut self) -> io::Result<()> {
        self.command("QUIT\r\n")
    }
}

/// The unique-ids of one UIDL listing, in order, in one buffer (no allocation per id in the timed
/// loop).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Uids {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Uids {
    fn push(&mut self, id: &[u8]) {
        self.text.extend_from_slice(id);
        self.ends.push(self.text.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// Every id occurs once (RFC 1939: unique within the maildrop).
    pub fn check_unique(&self) -> io::Result<()> {
        let mut seen = std::collections::HashSet::with_capacity(self.len());
        for i in 0..self.len() {
            if !seen.insert(self.get(i)) {
                return Err(bad(format!(
                    "UIDL: message {} repeats the unique-id {:?}",
                    i + 1,
                    String::from_utf8_lossy(self.get(i))
                )));
            }
        }
        Ok(())
    }
}

// Cargo builds the harness-less bench with `--cfg test` but without its `#[test]` functions, which
// leaves their helpers unused there; the tests run from tests/pop3bench_report.rs.
#[cfg(test)]
#[allow(dead_code, unused_imports)]
mod tests {
    use super::*;
    use crate::mail::{encode, message, octets};
    use std::net::TcpListener;

    const SPEC: Spec = Spec {
        prefix: "t",
        count: 3,
        size: 3000,
        users: 1,
    };

    /// A one-connection fake server: greets, then answers each command line with `answer(line)`.
    fn fake(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread_spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut out = stream.try_clone().expect("clone");
            let mut lines = BufReader::new(stream);
            let _ = out.write_all(b"+OK fake\r\n");
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                if out.write_all(&answer(line.trim_end())).is_err() {
                    return;
                }
                line.clear();
            }
        });
        addr
    }

    fn thread_spawn(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f);
    }

    /// A correct server of `SPEC`'s maildrop, with `retr` deciding the octets sent for RETR n.
    fn server(retr: fn(usize, Vec<u8>) -> Vec<u8>) -> SocketAddr {
        fake(move |cmd| {
            let e = Expected::of(&SPEC);
            let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
            match verb {
                "STAT" => format!("+OK {} {}\r\n", e.stat().0, e.stat().1).into_bytes(),
                "LIST" => {
                    let mut r = b"+OK\r\n".to_vec();
                    for (i, o) in e.octets.iter().enumerate() {
                        r.extend(format!("{} {o}\r\n", i + 1).bytes());
                    }
                    r.extend(b".\r\n");
                    r
                }
                "UIDL" => b"+OK\r\n1 a\r\n2 b\r\n3 c\r\n.\r\n".to_vec(),
                "RETR" => {
                    let n: usize = arg.parse().expect("number");
                    let mut r = b"+OK\r\n".to_vec();
                    let mut body = e.bodies[n - 1].clone();
                    body.extend(b".\r\n");
                    r.extend(retr(n, body));
                    r
                }
                _ => b"+OK\r\n".to_vec(),
            }
        })
    }

    fn client(addr: SocketAddr) -> Client {
        Client::connect(addr, Duration::from_secs(5)).expect("connect")
    }

    /// RETR of every message of `SPEC`, the first error if any.
    fn retr_all(addr: SocketAddr) -> io::Result<()> {
        let e = Expected::of(&SPEC);
        let mut c = client(addr);
        let mut buf = Vec::new();
        for (i, body) in e.bodies.iter().enumerate() {
            c.retr(i + 1, body, &mut buf)?;
        }
        Ok(())
    }

    #[test]
    fn a_correct_server_passes_every_check() {
        let e = Expected::of(&SPEC);
        let mut c = client(server(|_, b| b));
        c.stat_is(e.stat()).expect("stat");
        c.list(&e).expect("list");
        let ids = c.uidl().expect("uidl");
        assert_eq!(ids.len(), 3);
        ids.check_unique().expect("unique");
        let mut buf = Vec::new();
        for (i, body) in e.bodies.iter().enumerate() {
            c.retr(i + 1, body, &mut buf).expect("retr");
        }
        c.quit().expect("quit");
        // The fixtures exercise byte-stuffing.
        assert!(e.bodies[0].windows(3).any(|w| w == b"\n.."));
        assert_eq!(encode(&message(0, SPEC.size)), e.bodies[0]);
    }

    #[test]
    fn a_dropped_octet_is_caught() {
        let err = retr_all(server(|n, mut b| {
            if n == 2 {
                b.remove(1234);
            }
            b
        }))
        .unwrap_err();
        assert!(
            err.to_string().contains("RETR 2: octet 1234 differs"),
            "{err}"
        );
    }

    #[test]
    fn a_changed_octet_is_caught() {
        let err = retr_all(server(|n, mut b| {
            if n == 3 {
                let last = b.len() - 4;
                b[last] ^= 1;
            }
            b
        }))
        .unwrap_err();
        assert!(err.to_string().contains("RETR 3: octet"), "{err}");
    }

    #[test]
    fn an_unstuffed_dot_is_caught() {
        let err = retr_all(server(|n, b| {
            if n != 1 {
                return b;
            }
            // Undo the stuffing of the first stuffed line (a server that forgot it).
            let at = b
                .windows(3)
                .position(|w| w == b"\n..")
                .expect("stuffed line");
            [&b[..at + 1], &b[at + 2..]].concat()
        }))
        .unwrap_err();
        assert!(err.to_string().contains("RETR 1: octet"), "{err}");
    }

    #[test]
    fn a_bad_or_missing_terminator_is_caught() {
        let err = retr_all(server(|_, b| {
            let mut b = b[..b.len() - 3].to_vec();
            b.extend(b"..\r\n");
            b
        }))
        .unwrap_err();
        assert!(err.to_string().contains("bad terminator"), "{err}");
        // No terminator, the connection closed after the body: an error, not a hang or a pass.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread_spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            let _ = stream.write_all(b"+OK fake\r\n");
            let _ = stream.read(&mut [0u8; 64]);
            let mut r = b"+OK\r\n".to_vec();
            r.extend(&Expected::of(&SPEC).bodies[0]);
            let _ = stream.write_all(&r);
        });
        let e = Expected::of(&SPEC);
        let err = client(addr)
            .retr(1, &e.bodies[0], &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[test]
    fn the_trailing_blank_line_is_accepted_only_when_allowed() {
        let popa3d = |_, b: Vec<u8>| [&b[..b.len() - 3], b"\r\n.\r\n"].concat();
        assert!(retr_all(server(popa3d)).is_err());
        let e = Expected::of(&SPEC);
        let mut c = client(server(popa3d));
        c.allow_trailing_blank = true;
        c.retr(1, &e.bodies[0], &mut Vec::new()).expect("retr");
    }

    #[test]
    fn wrong_list_stat_and_uidl_answers_are_caught() {
        let e = Expected::of(&SPEC);
        let answer = |text: &'static str| fake(move |_| text.as_bytes().to_vec());
        let mut short = e.octets.clone();
        short.pop();
        let addr = fake(move |_| {
            let mut r = b"+OK\r\n".to_vec();
            for (i, o) in short.iter().enumerate() {
                r.extend(format!("{} {o}\r\n", i + 1).bytes());
            }
            r.extend(b".\r\n");
            r
        });
        let err = client(addr).list(&e).unwrap_err();
        assert!(err.to_string().contains("2 messages, want 3"), "{err}");
        let err = client(answer("+OK\r\n1 5\r\n.\r\n")).list(&e).unwrap_err();
        assert!(err.to_string().contains("LIST: got"), "{err}");
        let err = client(answer("+OK 3 10\r\n"))
            .stat_is(e.stat())
            .unwrap_err();
        assert!(err.to_string().contains("STAT: got (3, 10)"), "{err}");
        let err = client(answer("+OK\r\n1 a\r\n3 b\r\n.\r\n"))
            .uidl()
            .unwrap_err();
        assert!(err.to_string().contains("line 2 numbered"), "{err}");
        let err = client(answer("+OK\r\n1 a b\r\n.\r\n")).uidl().unwrap_err();
        assert!(err.to_string().contains("bad unique-id"), "{err}");
        let ids = client(answer("+OK\r\n1 a\r\n2 b\r\n3 a\r\n.\r\n"))
            .uidl()
            .expect("well-formed");
        let err = ids.check_unique().unwrap_err();
        assert!(err.to_string().contains("message 3 repeats"), "{err}");
        let err = client(answer("-ERR no\r\n")).uidl().unwrap_err();
        assert!(err.to_string().contains("UIDL: -ERR no"), "{err}");
    }

    /// A server of the messages `kept` (0-based numbers of `BIG`'s messages), as after an expunge.
    fn after_expunge(kept: Vec<usize>) -> SocketAddr {
        fake(move |cmd| {
            if cmd == "LIST" || cmd.starts_with("RETR") {
                after_expunge_answer(cmd, &kept).concat()
            } else {
                b"+OK\r\n".to_vec()
            }
        })
    }

    const BIG: Spec = Spec {
        prefix: "b",
        count: 1000,
        size: 300,
        users: 1,
    };

    #[test]
    fn an_expunge_must_leave_exactly_the_even_numbered_messages() {
        let even: Vec<usize> = (0..BIG.count).filter(|n| n % 2 == 1).collect();
        client(after_expunge(even.clone()))
            .check_kept(&BIG)
            .expect("the right half");
        // The first half kept instead: as many messages, the wrong ones.
        let err = client(after_expunge((0..BIG.count / 2).collect()))
            .check_kept(&BIG)
            .unwrap_err();
        assert!(err.to_string().contains("after expunge: LIST"), "{err}");
        // One message too many left.
        let mut more = even.clone();
        more.push(0);
        let err = client(after_expunge(more)).check_kept(&BIG).unwrap_err();
        assert!(err.to_string().contains("after expunge: LIST"), "{err}");
        // The sizes right but a kept message's content not: caught by the RETR sample.
        let err = client(fake(move |cmd| {
            if cmd.starts_with("RETR 98") {
                let mut r = b"+OK\r\n".to_vec();
                let mut body = encode(&message(2 * 97 + 1, BIG.size));
                body[10] ^= 1;
                r.extend(body);
                r.extend(b".\r\n");
                r
            } else if cmd == "LIST" || cmd.starts_with("RETR") {
                after_expunge_answer(cmd, &even).concat()
            } else {
                b"+OK\r\n".to_vec()
            }
        }))
        .check_kept(&BIG)
        .unwrap_err();
        assert!(
            err.to_string().contains("after expunge: RETR 98: octet"),
            "{err}"
        );
    }

    /// `after_expunge`'s answer to `cmd`, for a fake server that changes some of them.
    fn after_expunge_answer(cmd: &str, kept: &[usize]) -> Vec<Vec<u8>> {
        let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
        match verb {
            "LIST" => {
                let mut r = vec![b"+OK\r\n".to_vec()];
                for (i, &n) in kept.iter().enumerate() {
                    let o = octets(&message(n, BIG.size));
                    r.push(format!("{} {o}\r\n", i + 1).into_bytes());
                }
                r.push(b".\r\n".to_vec());
                r
            }
            _ => {
                let i: usize = arg.parse().expect("number");
                vec![
                    b"+OK\r\n".to_vec(),
                    encode(&message(kept[i - 1], BIG.size)),
                    b".\r\n".to_vec(),
                ]
            }
        }
    }
}
