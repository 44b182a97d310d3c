//! Shared fixtures for the integration tests: a temporary passwd-file with Maildir users, the real `poplar`
//! binary started on an ephemeral loopback port (or in `--inetd` mode over a socket pair), and a raw-bytes
//! POP3 client. Every read has a socket timeout and every wait a deadline, so a broken server fails a test
//! instead of hanging the suite.
#![allow(dead_code)] // each test crate uses a different subset of these helpers

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_poplar");

/// Long enough for the failed-login delay, short enough that a wedged server fails the test quickly.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the server to report its listening address.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// Upper bound on one multi-line response; the fixtures are far smaller.
const MAX_MULTILINE: usize = 16 << 20;

/// A temporary tree holding a passwd-file and one home directory with a Maildir per user.
pub struct Fixture {
    dir: tempfile::TempDir,
    passwd: PathBuf,
    /// Each message gets a distinct mtime, one second apart, so delivery order is insertion order.
    next_mtime: u64,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = dir.path().join("passwd");
        fs::write(&passwd, "# test users\n").expect("write passwd");
        Fixture { dir, passwd, next_mtime: 1_600_000_000 }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn passwd(&self) -> &Path {
        &self.passwd
    }

    pub fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user)
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.home(user).join("Maildir")
    }

    /// Adds `user` with a `{PLAIN}` password, a home directory and an empty Maildir (new, cur, tmp).
    pub fn user(&mut self, user: &str, password: &str) -> &mut Self {
        let md = self.maildir(user);
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(md.join(sub)).expect("create maildir");
        }
        let meta = fs::metadata(self.dir.path()).expect("stat tempdir");
        let line = format!(
            "{user}:{{PLAIN}}{password}:{}:{}::{}::\n",
            meta.uid(),
            meta.gid(),
            self.home(user).display()
        );
        let mut f = fs::OpenOptions::new().append(true).open(&self.passwd).expect("open passwd");
        f.write_all(line.as_bytes()).expect("append passwd");
        self
    }

    /// Stores a message as `Maildir/<sub>/<name>` (sub is `new` or `cur`) with an mtime later than every
    /// message stored before it. Returns the file's path.
    pub fn msg(&mut self, user: &str, sub: &str, name: &str, content: &[u8]) -> PathBuf {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(self.next_mtime);
        self.next_mtime += 1;
        self.msg_at(user, sub, name, content, Some(t))
    }

    /// Stores a message with the given mtime (or the current time when `None`).
    pub fn msg_at(
        &self,
        user: &str,
        sub: &str,
        name: &str,
        content: &[u8],
        mtime: Option<SystemTime>,
    ) -> PathBuf {
        let path = self.maildir(user).join(sub).join(name);
        fs::write(&path, content).expect("write message");
        if let Some(t) = mtime {
            let f = fs::File::options().write(true).open(&path).expect("open message");
            f.set_modified(t).expect("set mtime");
        }
        path
    }

    /// Names of the files in `Maildir/new` and `Maildir/cur`, sorted.
    pub fn files(&self, user: &str) -> Vec<String> {
        let mut names = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.maildir(user).join(sub);
            for e in fs::read_dir(&dir).expect("read maildir") {
                names.push(e.expect("dirent").file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        names
    }
}

/// Lines the server wrote on stderr, shared with the thread that drains the pipe.
type Lines = Arc<Mutex<Vec<String>>>;

/// The real binary in standalone mode on 127.0.0.1 with an ephemeral port. Killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    lines: Lines,
}

impl Server {
    /// Starts `poplar --listen 127.0.0.1:0 --passwd <fixture>` plus `extra` arguments.
    pub fn start(fx: &Fixture, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into()];
        args.push("--passwd".into());
        args.push(fx.passwd().display().to_string());
        if !extra.contains(&"--hostname") {
            args.extend(["--hostname".into(), "test.example".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(&args)
    }

    /// Starts the binary with exactly `args`, waiting for its `listening on ADDR` line.
    pub fn spawn(args: &[String]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn poplar");
        let stderr = child.stderr.take().expect("stderr pipe");
        let lines: Lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        thread::spawn(move || drain(stderr, sink, tx));
        let addr = match rx.recv_timeout(START_DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not report `listening on`; stderr: {:?}", lines.lock().unwrap());
            }
        };
        Server { child, addr, lines }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Connects, checks the greeting, logs in with USER/PASS.
    pub fn login(&self, user: &str, pass: &str) -> Client {
        let mut c = self.connect();
        c.greeting();
        c.login(user, pass);
        c
    }

    /// Every line written on stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a stderr line containing every one of `needles`.
    pub fn wait_log(&self, needles: &[&str], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .stderr_lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit code, None if still running.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let st = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("kill");
        assert!(st.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st.code().unwrap_or(-1));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stderr line by line until EOF; reports the first `listening on ADDR` on `tx`.
fn drain(stderr: impl Read, lines: Lines, tx: mpsc::Sender<SocketAddr>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut reported = false;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        if !reported {
            if let Some(addr) = listening_addr(&line) {
                reported = true;
                let _ = tx.send(addr);
            }
        }
        lines.lock().unwrap().push(line);
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token = rest.split_whitespace().next()?;
    token.trim_end_matches([',', ';', ')']).parse().ok()
}

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
        assert!(buf.ends_with(b"\r\n"), "line not terminated by CRLF: {:?}", show(&buf));
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
        self.set_read_timeout(within);
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}

/// The message as the client receives it: a multi-line body without the terminator, dots unstuffed.
pub fn unstuff(raw: &[u8]) -> Vec<u8> {
    assert!(raw.ends_with(b".\r\n"), "no terminator: {:?}", show(raw));
    let body = &raw[..raw.len() - 3];
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
    }
    out
}

/// `LIST` or `UIDL` listing lines as (number, rest) pairs.
pub fn listing(raw: &[u8]) -> Vec<(u32, String)> {
    let text = String::from_utf8(unstuff(raw)).expect("listing is text");
    text.lines()
        .map(|l| {
            let (n, rest) = l.split_once(' ').unwrap_or_else(|| panic!("bad listing line {l:?}"));
            (n.parse().expect("message number"), rest.to_string())
        })
        .collect()
}

/// Printable form of bytes for assertion messages.
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

/// What RETR must send for a file: LF → CRLF (CRLF kept), a final CRLF added if missing. Without stuffing.
pub fn crlf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in content.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Hex MD5, for APOP digests and the UIDL of over-long names.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The binary in `--inetd` mode with stdin/stdout one end of a socket pair and stderr discarded.
pub struct Inetd {
    pub child: Child,
}

impl Inetd {
    /// Spawns `poplar --inetd --passwd <fixture>` plus `extra`; returns the process and a client on the other end.
    pub fn start(fx: &Fixture, extra: &[&str]) -> (Inetd, Client) {
        Inetd::spawn(fx, extra, false)
    }

    /// Like `start`, but with stderr on the socket too, as inetd hands it over (fd 0, 1 and 2).
    pub fn start_all_fds(fx: &Fixture, extra: &[&str]) -> (Inetd, Client) {
        Inetd::spawn(fx, extra, true)
    }

    fn spawn(fx: &Fixture, extra: &[&str], stderr_on_socket: bool) -> (Inetd, Client) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let stdin: OwnedFd = theirs.try_clone().expect("clone").into();
        let stderr = if stderr_on_socket {
            Stdio::from(OwnedFd::from(theirs.try_clone().expect("clone")))
        } else {
            Stdio::null()
        };
        let stdout: OwnedFd = theirs.into();
        let child = Command::new(BIN)
            .arg("--inetd")
            .arg("--passwd")
            .arg(fx.passwd())
            .args(["--hostname", "test.example"])
            .args(extra)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(stderr)
            .spawn()
            .expect("spawn poplar --inetd");
        (Inetd { child }, Client::from_unix(ours))
    }

    /// Waits (bounded) for the process to exit; returns its exit code, or None if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st.code().unwrap_or(-1));
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Inetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args` and no stdin; returns (exit code, stdout, stderr). Bounded by a deadline.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn poplar");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("poplar {args:?} did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The messages of the standard fixture, in delivery order: (subdirectory, file name, content).
pub const MESSAGES: [(&str, &str, &[u8]); 5] = [
    ("new", "1600000000.M1P100.host", b"From: a@example.org\nSubject: one\n\nHello\nWorld\n"),
    (
        "cur",
        "1600000001.M2P100.host:2,S",
        b"Subject: dots\n\n.leading dot\n..two dots\n.\nend\n",
    ),
    ("new", "1600000002.M3P100.host", b"Subject: no newline\n\nlast line has no newline"),
    ("cur", "1600000003.M4P100.host:2,", b"Subject: crlf\r\nX-A: b\r\n\r\nline1\r\nline2\r\n"),
    (
        "new",
        "1600000004.M5P100.host",
        b"Subject: five\nX-Two: 2\n\nb1\nb2\nb3\n.b4\nb5\n",
    ),
];

/// UIDL of a Maildir file name: the base name before `:`.
pub fn uid_of(name: &str) -> &str {
    name.split(':').next().unwrap()
}

/// A fixture with user `alice` (password `secret`) holding `MESSAGES`, and user `bob` (password `bobpw`)
/// holding one message.
pub fn standard() -> Fixture {
    let mut fx = Fixture::new();
    fx.user("alice", "secret").user("bob", "bobpw");
    for (sub, name, content) in MESSAGES {
        fx.msg("alice", sub, name, content);
    }
    fx.msg("bob", "new", "1600000100.M1P200.host", b"Subject: bob\n\nhi bob\n");
    fx
}

/// The exact multi-line response RETR must send for a file: CRLF lines, dots stuffed, terminator.
pub fn wire(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in crlf(content).split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}
