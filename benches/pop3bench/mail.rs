//! Fixtures: deterministic messages, their exact wire form (CRLF, byte-stuffing), and the maildrops and
//! passwd-file built from them. The trivial server uses the same generator, so every server under test
//! sends the same octets and the client can check each one.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A set of identical maildrops: `users` accounts named `{prefix}{i}`, each with `count` messages of
/// about `size` octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub prefix: &'static str,
    pub count: usize,
    pub size: usize,
    pub users: usize,
}

pub const PASSWORD: &str = "bench-secret";

/// Message `n` of about `size` octets, LF line ends as most delivery agents store them. Every tenth
/// body line starts with a dot so byte-stuffing is exercised; no body line starts with "From ".
pub fn message(n: usize, size: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(size + 100);
    write!(
        m,
        "Return-Path: <sender{n}@example.org>\nFrom: Sender {n} <sender{n}@example.org>\nTo: user@example.net\n\
         Subject: benchmark message {n}\nMessage-ID: <{n}.{size}@bench.example>\n\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\n\n"
    )
    .expect("write to a Vec");
    let mut seed = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut line = 0usize;
    while m.len() < size {
        line += 1;
        if line % 10 == 3 {
            m.push(b'.');
        }
        let len = 40 + (xorshift(&mut seed) % 36) as usize;
        for _ in 0..len.min(size.saturating_sub(m.len()).max(1)) {
            m.push(b"abcdefghijklmnopqrstuvwxyz  ,.0123"[(xorshift(&mut seed) % 34) as usize]);
        }
        m.push(b'\n');
    }
    m
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// The multi-line body RETR must send for `msg` (RFC 1939 section 3), without the terminating `.CRLF`.
pub fn encode(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 30);
    for line in msg.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Octets as LIST reports them: the CRLF form without the stuffing dots (RFC 1939 section 5).
pub fn octets(msg: &[u8]) -> u64 {
    (msg.len() + memchr_count(msg) + usize::from(!msg.ends_with(b"\n") && !msg.is_empty())) as u64
}

fn memchr_count(msg: &[u8]) -> usize {
    msg.iter().filter(|&&b| b == b'\n').count()
}

/// One drop's messages in memory with their expected wire bodies.
pub struct Expected {
    pub bodies: Vec<Vec<u8>>,
    pub octets: Vec<u64>,
}

impl Expected {
    pub fn of(drop: &Spec) -> Expected {
        let msgs: Vec<Vec<u8>> = (0..drop.count).map(|n| message(n, drop.size)).collect();
        Expected {
            octets: msgs.iter().map(|m| octets(m)).collect(),
            bodies: msgs.iter().map(|m| encode(m)).collect(),
        }
    }

    /// What STAT must answer: (messages, octets).
    pub fn stat(&self) -> (u64, u64) {
        (self.octets.len() as u64, self.octets.iter().sum())
    }

    pub fn payload(&self) -> u64 {
        self.bodies.iter().map(|b| b.len() as u64).sum()
    }
}

/// The home directory of `user` under `root`.
pub fn home(root: &Path, user: &str) -> PathBuf {
    root.join("home").join(user)
}

/// Writes `home/Maildir` for every user of `drop`: `new/`, `cur/`, `tmp/`, messages in `cur/` named as a
/// delivery agent would, without Dovecot's `S=`/`W=` size fields (so a server must size them itself).
pub fn write_maildirs(root: &Path, drop: &Spec) -> io::Result<()> {
    for u in 0..drop.users {
        let md = home(root, &format!("{}{u}", drop.prefix)).join("Maildir");
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(md.join(sub))?;
        }
        for n in 0..drop.count {
            fs::write(md.join(maildir_name(n)), message(n, drop.size))?;
        }
    }
    Ok(())
}

/// Where message `n` (0-based) of a Maildir written by `write_maildirs` lies, below the Maildir.
pub fn maildir_name(n: usize) -> String {
    format!("cur/{}.M{n:06}P4242.bench.example:2,S", 1_700_000_000 + n)
}

/// Writes one mbox with the messages of `drop` (no body line starts with "From ", so none needs quoting).
pub fn write_mbox(path: &Path, drop: &Spec) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    for n in 0..drop.count {
        writeln!(w, "From sender{n}@example.org Mon Jan  1 00:00:00 2024")?;
        w.write_all(&message(n, drop.size))?;
        w.write_all(b"\n")?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Writes `home/inbox` (mbox) for every user of `drop`, and the empty `home/mail` Dovecot wants beside it.
pub fn write_mboxes(root: &Path, drop: &Spec) -> io::Result<()> {
    for u in 0..drop.users {
        let h = home(root, &format!("{}{u}", drop.prefix));
        fs::create_dir_all(h.join("mail"))?;
        write_mbox(&h.join("inbox"), drop)?;
    }
    Ok(())
}

/// The owner of the fixtures: Dovecot refuses uid 0 in a passwd-file, so every user is `nobody`.
pub const UID: u32 = 65534;

/// A passwd-file (Dovecot's format, which poplar reads too) with every user of `drops`, uid/gid `UID`.
pub fn write_passwd(root: &Path, drops: &[Spec]) -> io::Result<PathBuf> {
    let path = root.join("passwd");
    let mut w = BufWriter::new(File::create(&path)?);
    for d in drops {
        for u in 0..d.users {
            let user = format!("{}{u}", d.prefix);
            writeln!(
                w,
                "{user}:{{PLAIN}}{PASSWORD}:{UID}:{UID}::{}::",
                home(root, &user).display()
            )?;
        }
    }
    w.flush()?;
    Ok(path)
}
