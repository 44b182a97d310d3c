//! Shared fixtures for the integration tests: a temporary passwd-file with users whose maildrops are
//! Maildirs or mbox files, the real `poplar` binary started on an ephemeral loopback port (or in `--inetd`
//! mode over a socket pair), and a raw-bytes POP3 client. Every read has a socket timeout and every wait a deadline, so a broken server fails a test
//! instead of hanging the suite.
#![allow(dead_code, unused_imports, unused_macros)] // each test crate uses a different subset of these helpers

mod client;
pub mod mbox;
mod server;

pub use client::Client;
pub use server::{Inetd, Server, run, run_tool};

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_poplar");

/// `--first-valid-uid 0 --first-valid-gid 0` when the tests run as root (as CI does), nothing otherwise.
/// The fixture's accounts have the temporary directory owner's uid and gid (`Fixture::user_with`), 0:0
/// as root, which a server started as root refuses by default; every test that starts the binary on
/// such accounts adds these, through here only, so that the tests about the limits can start without.
pub fn root_account_args() -> Vec<String> {
    if nix::unistd::geteuid().is_root() {
        ["--first-valid-uid", "0", "--first-valid-gid", "0"]
            .map(String::from)
            .to_vec()
    } else {
        Vec::new()
    }
}

/// Long enough for the failed-login delay, short enough that a wedged server fails the test quickly.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on one multi-line response; the fixtures are far smaller.
pub const MAX_MULTILINE: usize = 16 << 20;

/// Which maildrop format the fixture's users have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `HOME/Maildir` (the server's default `--mail`).
    Maildir,
    /// `HOME/mbox`, served with `--mail mbox:%h/mbox` (added by `Server::start` and `Inetd::start`).
    Mbox,
}

/// Generates, for each named `fn NAME(backend: Backend)`, a module `NAME` holding the tests `maildir`
/// and `mbox` that run it on each backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn maildir() {
                super::$name($crate::common::Backend::Maildir)
            }
            #[test]
            fn mbox() {
                super::$name($crate::common::Backend::Mbox)
            }
        }
    )*};
}
pub(crate) use both_backends;

/// A temporary tree holding a passwd-file and one home directory per user, with a Maildir or an mbox.
pub struct Fixture {
    dir: tempfile::TempDir,
    passwd: PathBuf,
    /// Each message gets a distinct mtime, one second apart, so delivery order is insertion order.
    next_mtime: u64,
    pub backend: Backend,
    /// mbox: what was stored for each user, in order.
    stored: std::collections::HashMap<String, Vec<mbox::Stored>>,
    serial: usize,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::on(Backend::Maildir)
    }

    pub fn on(backend: Backend) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = dir.path().join("passwd");
        fs::write(&passwd, "# test users\n").expect("write passwd");
        Fixture {
            dir,
            passwd,
            next_mtime: 1_600_000_000,
            backend,
            stored: Default::default(),
            serial: 0,
        }
    }

    /// The `--mail` arguments for this fixture's backend (none for the default Maildir).
    pub fn mail_args(&self) -> &'static [&'static str] {
        match self.backend {
            Backend::Maildir => &[],
            Backend::Mbox => &["--mail", "mbox:%h/mbox"],
        }
    }

    /// `HOME/mbox` of `user`.
    pub fn mbox(&self, user: &str) -> PathBuf {
        self.home(user).join("mbox")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn passwd(&self) -> &Path {
        &self.passwd
    }

    /// Writes `poplar.conf` in the fixture's root: this passwd-file, an ephemeral loopback port, no
    /// failed-login delay, then the lines `extra`. Returns its path; a second call replaces the file.
    pub fn config(&self, extra: &str) -> PathBuf {
        let conf = self.dir.path().join("poplar.conf");
        let text = format!(
            "passwd = {}\nlisten = 127.0.0.1:0\nauth-failure-delay = 0\n{extra}",
            self.passwd.display()
        );
        fs::write(&conf, text).expect("write poplar.conf");
        conf
    }

    pub fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user)
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.home(user).join("Maildir")
    }

    /// Adds `user` with a `{PLAIN}` password, a home directory and an empty Maildir (new, cur, tmp).
    pub fn user(&mut self, user: &str, password: &str) -> &mut Self {
        self.user_with(user, &format!("{{PLAIN}}{password}"))
    }

    /// Appends Dovecot extra fields (`allow_nets=... nologin`) to `user`'s passwd-file line.
    pub fn extra(&mut self, user: &str, fields: &str) -> &mut Self {
        let text = fs::read_to_string(&self.passwd).expect("read passwd");
        let mut found = false;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with(&format!("{user}:")) {
                    found = true;
                    format!("{line}{fields}\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        assert!(found, "no passwd line for {user}");
        fs::write(&self.passwd, lines.concat()).expect("write passwd");
        self
    }

    /// Adds `user` with the given passwd-file password field (scheme and secret), a home directory and an
    /// empty Maildir (new, cur, tmp).
    pub fn user_with(&mut self, user: &str, password_field: &str) -> &mut Self {
        let md = self.maildir(user);
        match self.backend {
            Backend::Maildir => {
                for sub in ["new", "cur", "tmp"] {
                    fs::create_dir_all(md.join(sub)).expect("create maildir");
                }
            }
            // No mbox file yet: a missing mbox is an empty maildrop.
            Backend::Mbox => fs::create_dir_all(self.home(user)).expect("create home"),
        }
        let meta = fs::metadata(self.dir.path()).expect("stat tempdir");
        let line = format!(
            "{user}:{password_field}:{}:{}::{}::\n",
            meta.uid(),
            meta.gid(),
            self.home(user).display()
        );
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.passwd)
            .expect("open passwd");
        f.write_all(line.as_bytes()).expect("append passwd");
        self
    }

    /// Stores a message as `Maildir/<sub>/<name>` (sub is `new` or `cur`) with an mtime later than every
    /// message stored before it, or appends it to the user's mbox (`sub` ignored, `name` remembered for
    /// `files` and `uid`). Returns the file's path.
    pub fn msg(&mut self, user: &str, sub: &str, name: &str, content: &[u8]) -> PathBuf {
        if self.backend == Backend::Mbox {
            self.serial += 1;
            let block = mbox::block(self.serial, content);
            let path = self.mbox(user);
            mbox::append(&path, &block);
            self.stored
                .entry(user.to_string())
                .or_default()
                .push(mbox::Stored {
                    name: name.to_string(),
                    block,
                });
            return path;
        }
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(self.next_mtime);
        self.next_mtime += 1;
        self.msg_at(user, sub, name, content, Some(t))
    }

    /// Stores a message in the Maildir with the given mtime (or the current time when `None`).
    pub fn msg_at(
        &self,
        user: &str,
        sub: &str,
        name: &str,
        content: &[u8],
        mtime: Option<SystemTime>,
    ) -> PathBuf {
        assert_eq!(
            self.backend,
            Backend::Maildir,
            "msg_at is for Maildir fixtures"
        );
        let path = self.maildir(user).join(sub).join(name);
        fs::write(&path, content).expect("write message");
        if let Some(t) = mtime {
            let f = fs::File::options()
                .write(true)
                .open(&path)
                .expect("open message");
            f.set_modified(t).expect("set mtime");
        }
        path
    }

    /// The names of the messages still in the maildrop, sorted: the files in `Maildir/new` and
    /// `Maildir/cur`, or the names given to `msg` of the messages left in the mbox (which must hold
    /// exactly those, byte for byte).
    pub fn files(&self, user: &str) -> Vec<String> {
        if self.backend == Backend::Mbox {
            let mut names = mbox::left(
                &self.mbox(user),
                self.stored.get(user).map_or(&[], |v| v.as_slice()),
            );
            names.sort();
            return names;
        }
        let mut names = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.maildir(user).join(sub);
            for e in fs::read_dir(&dir).expect("read maildir") {
                names.push(
                    e.expect("dirent")
                        .file_name()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        names.sort();
        names
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
            let (n, rest) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad listing line {l:?}"));
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
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The messages of the standard fixture, in delivery order: (subdirectory, file name, content).
pub const MESSAGES: [(&str, &str, &[u8]); 5] = [
    (
        "new",
        "1600000000.M1P100.host",
        b"From: a@example.org\nSubject: one\n\nHello\nWorld\n",
    ),
    (
        "cur",
        "1600000001.M2P100.host:2,S",
        b"Subject: dots\n\n.leading dot\n..two dots\n.\nend\n",
    ),
    (
        "new",
        "1600000002.M3P100.host",
        b"Subject: no newline\n\nlast line has no newline",
    ),
    (
        "cur",
        "1600000003.M4P100.host:2,",
        b"Subject: crlf\r\nX-A: b\r\n\r\nline1\r\nline2\r\n",
    ),
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

impl Fixture {
    /// The unique-id the server must list for the message stored as `name`.
    pub fn uid(&self, user: &str, name: &str) -> String {
        match self.backend {
            Backend::Maildir => uid_of(name).to_string(),
            Backend::Mbox => {
                let stored = self
                    .stored
                    .get(user)
                    .and_then(|v| v.iter().find(|s| s.name == name));
                mbox::uid(
                    &stored
                        .unwrap_or_else(|| panic!("no message {name} for {user}"))
                        .block,
                )
            }
        }
    }
}

/// A Maildir fixture with user `alice` (password `secret`) holding `MESSAGES`, and user `bob` (password
/// `bobpw`) holding one message.
pub fn standard() -> Fixture {
    standard_on(Backend::Maildir)
}

/// `standard` on either backend.
pub fn standard_on(backend: Backend) -> Fixture {
    let mut fx = Fixture::on(backend);
    fx.user("alice", "secret").user("bob", "bobpw");
    for (sub, name, content) in MESSAGES {
        fx.msg("alice", sub, name, content);
    }
    fx.msg(
        "bob",
        "new",
        "1600000100.M1P200.host",
        b"Subject: bob\n\nhi bob\n",
    );
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

/// The `<...>` timestamp of an APOP greeting.
pub fn apop_timestamp(greeting: &str) -> &str {
    let start = greeting.find('<').expect("timestamp start");
    let end = greeting.rfind('>').expect("timestamp end");
    &greeting[start..=end]
}
