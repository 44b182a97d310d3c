//! poplar's mbox unique-ids, message split and sizes against the real popa3d (Debian's package) on the
//! same mailbox, so that popa3d's users can switch without their clients downloading everything again.
//!
//! Needs: root (popa3d authenticates a system user through PAM, chroots and drops to its `popa3d`
//! user), network or a cached package for `apt-get download popa3d`, `dpkg-deb`, `useradd`,
//! `chpasswd`, `userdel`, PAM with pam_unix (`/etc/pam.d/common-auth`), and `/var/mail`. It creates the
//! system user `popa3d` and `/var/lib/popa3d` if missing (as the package would), and a temporary user
//! `poplarp3test` with a mailbox in `/var/mail`, removed at the end. Skips, saying why, when not root or
//! when the package cannot be downloaded.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use poplar::maildrop::Maildrop;
use poplar::maildrop::mbox::Mbox;

const USER: &str = "poplarp3test";
const PASSWORD: &str = "Pw-7-for-the-popa3d-test";

/// A mailbox exercising popa3d's header choices and mbox rules.
fn mailbox() -> String {
    let mut m = String::new();
    let long = "x".repeat(3000);
    let variants = [
        "Received: from a by mx with ESMTP id 1A; Thu, 1 Jan 2026 00:00:00 +0000\nSubject: plain\n".to_string(),
        "Received: from b\n\tby mx id 2B;\n\tThu, 1 Jan 2026 00:00:01 +0000\nReceived: from c\nDate: d\n".to_string(),
        "Date: Thu, 1 Jan 2026\nMessage-ID: <3@x>\nSubject: no received\n".to_string(),
        "DELIVERED-TO: u@x\nreceived: lower case\nX-Delivery-ID: 44\nx-delivery-id: 45\n".to_string(),
        format!("Received: {long}\nSubject: long line\n"),
        format!("Subject: {long}\nMessage-ID: <6@x>\n"),
        "Message-id: <7@x>\nReceived: later\nMessage-ID: <after@x>\n".to_string(),
        "Subject: no hashed header at all\n".to_string(),
    ];
    for round in 0..3 {
        for (i, headers) in variants.iter().enumerate() {
            m += &format!("From sender{i}@example.org Thu Jan  1 00:0{round}:{i:02} 2026\n");
            m += &headers.replace("id ", &format!("id r{round}-"));
            m += "\nbody line\n>From quoted\nFrom unquoted but not after an empty line\n";
            if i % 3 == 0 {
                m += "\n\n";
            }
            m += "\n";
        }
    }
    m
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Unpacks popa3d into `dir`; `None` when the package cannot be downloaded.
fn unpack_popa3d(dir: &Path) -> Option<std::path::PathBuf> {
    let got = Command::new("apt-get")
        .args(["download", "popa3d"])
        .current_dir(dir)
        .output()
        .ok()?;
    if !got.status.success() {
        eprintln!(
            "apt-get download popa3d: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        return None;
    }
    let deb = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().ends_with(".deb"))?;
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb.path())
        .arg(dir.join("root")))
    .expect("dpkg-deb -x");
    Some(dir.join("root"))
}

/// What the package's maintainer scripts would set up, and our test user.
fn prepare_system(root: &Path) {
    if Command::new("getent")
        .args(["passwd", "popa3d"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        let args = [
            "--system",
            "--no-create-home",
            "--home-dir",
            "/var/lib/popa3d",
            "--shell",
            "/usr/sbin/nologin",
            "popa3d",
        ];
        run(Command::new("useradd").args(args)).unwrap();
    }
    fs::create_dir_all("/var/lib/popa3d").unwrap();
    if !Path::new("/etc/pam.d/popa3d").exists() {
        fs::copy(root.join("etc/pam.d/popa3d"), "/etc/pam.d/popa3d").unwrap();
    }
    let _ = Command::new("userdel").arg(USER).output();
    run(Command::new("useradd").args(["-M", "-s", "/usr/sbin/nologin", USER])).unwrap();
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    chpasswd
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{USER}:{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(chpasswd.wait().unwrap().success());
}

/// popa3d's `UIDL` and `LIST` answers, in inetd style on stdin/stdout.
fn popa3d_listing(root: &Path) -> (Vec<String>, Vec<u64>) {
    let script = format!("USER {USER}\r\nPASS {PASSWORD}\r\nUIDL\r\nLIST\r\nQUIT\r\n");
    let mut child = Command::new(root.join("usr/sbin/popa3d"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run popa3d");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(
        lines[..4].iter().all(|l| l.starts_with("+OK")),
        "popa3d refused the session: {out}"
    );
    let mut blocks = lines[4..].split(|l| *l == "." || l.starts_with("+OK"));
    let uidl: Vec<String> = blocks
        .next()
        .unwrap()
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    blocks.next();
    let list = blocks
        .next()
        .unwrap()
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    (uidl, list)
}

#[test]
fn same_ids_and_sizes_as_popa3d() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "SKIPPED mbox_popa3d: needs root to run popa3d (PAM login of a system user, chroot)"
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let Some(root) = unpack_popa3d(work.path()) else {
        eprintln!("SKIPPED mbox_popa3d: cannot download the popa3d package");
        return;
    };
    prepare_system(&root);
    let spool = Path::new("/var/mail").join(USER);
    let mbox = mailbox();
    fs::write(&spool, &mbox).unwrap();
    run(Command::new("chown")
        .arg(format!("{USER}:mail"))
        .arg(&spool))
    .unwrap();
    let (their_ids, their_sizes) = popa3d_listing(&root);
    fs::remove_file(&spool).unwrap();
    let _ = Command::new("userdel").arg(USER).output();

    let ours_path = work.path().join("mbox");
    fs::write(&ours_path, &mbox).unwrap();
    let ours = Mbox::open(&ours_path).unwrap();
    let msgs = ours.messages();
    assert_eq!(msgs.len(), their_ids.len(), "same message split");
    assert_eq!(msgs.len(), 24);
    let mut suffixed = 0;
    for (i, (m, theirs)) in msgs.iter().zip(&their_ids).enumerate() {
        assert_eq!(m.octets, their_sizes[i], "LIST {}", i + 1);
        if *m.uid == **theirs {
            continue;
        }
        // Where popa3d repeats an id (no hashed header, or the same ones), ours carries a suffix.
        assert!(
            m.uid.starts_with(&format!("{theirs}-")),
            "UIDL {}: ours {} popa3d {theirs}",
            i + 1,
            m.uid
        );
        assert!(
            their_ids.iter().filter(|t| *t == theirs).count() > 1,
            "suffix only on popa3d's duplicates"
        );
        suffixed += 1;
    }
    // popa3d's id of a message with no hashed header (MD5 of nothing): always suffixed; and any repeat.
    let empty = "d98c1dd404b2008f";
    let repeats = (0..their_ids.len())
        .filter(|&i| their_ids[i] == empty || their_ids[..i].contains(&their_ids[i]));
    assert_eq!(suffixed, repeats.count());
    assert!(suffixed > 0);
}
