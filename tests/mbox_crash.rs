//! mbox maildrops against the real binary: kill -9 during a large UPDATE, mail delivered during a session
//! and during UPDATE (directly and by procmail), always checked byte for byte on the file. The procmail
//! test skips, saying so, when procmail is not installed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::{Fixture, Server};

const MAIL: &[&str] = &["--mail", "mbox:%h/mbox"];

/// `count` messages of about `size` octets each, distinct, in mbox form.
fn messages(count: usize, size: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let line = format!("message {i} body line, to fill the message with ordinary text.\n");
            let body = line.repeat(size / line.len() + 1);
            format!("From sender{i}@example.org Thu Jan  1 00:00:{:02} 2026\nReceived: by mx id {i}\nSubject: {i}\n\n{body}\n", i % 60)
        })
        .collect()
}

fn setup(msgs: &[String]) -> (Fixture, PathBuf) {
    let mut fx = Fixture::new();
    fx.user("alice", "secret");
    let path = fx.home("alice").join("mbox");
    fs::write(&path, msgs.concat()).unwrap();
    (fx, path)
}

/// Logs in (which runs any crash recovery), checks the message count, quits without deleting.
fn login_count(fx: &Fixture) -> usize {
    let server = Server::start(fx, MAIL);
    let mut c = login(&server);
    let stat = c.cmd("STAT");
    assert!(stat.starts_with("+OK "), "{stat}");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    stat.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Logs in as alice, with room for a busy machine: a login that recovers, and an UPDATE of, 24 MB in a
/// debug build took over the client's default 10 s read timeout with the CPUs shared.
fn login(server: &Server) -> common::Client {
    let mut c = server.connect();
    c.set_read_timeout(Duration::from_secs(120));
    c.greeting();
    c.login("alice", "secret");
    c
}

#[test]
fn kill_9_during_a_large_update_loses_nothing() {
    let msgs = messages(24, 1 << 20);
    let all = msgs.concat();
    let kept: String = msgs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, m)| m.as_str())
        .collect();
    let (fx, path) = setup(&msgs);
    let (mut rolled_back, mut completed) = (0, 0);
    // How long an uninterrupted UPDATE takes here; the kills are spread over 0 to 2 times that.
    let full = {
        fs::write(&path, &all).unwrap();
        let server = Server::start(&fx, MAIL);
        let mut c = login(&server);
        for n in (1..=msgs.len()).step_by(2) {
            assert!(c.cmd(&format!("DELE {n}")).starts_with("+OK"));
        }
        let start = std::time::Instant::now();
        assert!(c.cmd("QUIT").starts_with("+OK"));
        assert_eq!(fs::read_to_string(&path).unwrap(), kept);
        start.elapsed()
    };
    let rounds = 12;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..rounds {
        fs::write(&path, &all).unwrap();
        let server = Server::start(&fx, MAIL);
        let mut c = login(&server);
        for n in (1..=msgs.len()).step_by(2) {
            assert!(c.cmd(&format!("DELE {n}")).starts_with("+OK"));
        }
        c.send(b"QUIT\r\n");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Evenly spread, with jitter inside each slot.
        let slot = full.mul_f64(2.0 / rounds as f64);
        thread::sleep(slot * round + slot.mul_f64((seed % 1000) as f64 / 1000.0));
        drop(server); // SIGKILL
        let count = login_count(&fx);
        let now = fs::read_to_string(&path).unwrap();
        assert!(
            !fx.home("alice").join("mbox.poplar-recovery").exists(),
            "round {round}"
        );
        if now == all {
            assert_eq!(count, msgs.len());
            rolled_back += 1;
        } else {
            assert!(
                now == kept,
                "round {round}: mailbox is neither before nor after the expunge"
            );
            assert_eq!(count, msgs.len() / 2);
            completed += 1;
        }
    }
    eprintln!(
        "kill -9 rounds (full UPDATE {full:?}): {rolled_back} rolled back, {completed} completed"
    );
}

#[test]
fn mail_delivered_during_the_session_is_kept() {
    let msgs = messages(3, 200);
    let (fx, path) = setup(&msgs);
    let server = Server::start(&fx, MAIL);
    let mut c = server.login("alice", "secret");
    let late = "From late@example.org Thu Jan  1 00:09:00 2026\nSubject: late\n\nlate\n";
    common::mbox::append(&path, late.as_bytes());
    assert!(
        c.cmd("STAT").starts_with("+OK 3 "),
        "the session's view does not change"
    );
    assert!(c.cmd("DELE 1").starts_with("+OK"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}{}{late}", msgs[1], msgs[2])
    );
    assert_eq!(login_count(&fx), 3);
}

#[test]
fn rewritten_mailbox_is_not_expunged() {
    let msgs = messages(3, 200);
    let (fx, path) = setup(&msgs);
    let server = Server::start(&fx, MAIL);
    let mut c = server.login("alice", "secret");
    // A mail reader rewrites the mbox, adding a Status: header to the first message.
    let rewritten = msgs
        .concat()
        .replacen("Subject: 0\n", "Subject: 0\nStatus: RO\n", 1);
    fs::write(&path, &rewritten).unwrap();
    assert!(c.cmd("DELE 2").starts_with("+OK"));
    let reply = c.cmd("QUIT");
    assert!(reply.starts_with("-ERR [SYS/TEMP]"), "{reply}");
    assert_eq!(fs::read_to_string(&path).unwrap(), rewritten);
}

/// Delivers `text` to the mbox at `path` with procmail, which takes the fcntl lock and `PATH.lock`.
fn procmail_deliver(path: &Path, text: &str) -> bool {
    let mut procmail = Command::new("procmail");
    procmail
        .arg("-m")
        .arg(format!("DEFAULT={}", path.display()))
        .arg("/dev/null");
    common::mbox::deliver_with(&mut procmail, text) == Some(true)
}

#[test]
fn procmail_deliveries_during_update_are_kept() {
    let msgs = messages(16, 1 << 20);
    let (fx, path) = setup(&msgs);
    let probe = fx.root().join("probe");
    if !procmail_deliver(
        &probe,
        "From probe Thu Jan  1 00:00:00 2026\nFrom: probe\n\nprobe\n",
    ) {
        eprintln!("SKIPPED procmail_deliveries_during_update_are_kept: procmail not available");
        return;
    }
    let server = Server::start(&fx, MAIL);
    let mut c = server.login("alice", "secret");
    for n in 1..=msgs.len() / 2 {
        assert!(c.cmd(&format!("DELE {n}")).starts_with("+OK"));
    }
    let deliveries = 20;
    let agent = {
        let path = path.clone();
        thread::spawn(move || {
            for i in 0..deliveries {
                let text = format!(
                    "From agent@example.org Thu Jan  1 00:10:00 2026\nFrom: agent@example.org\nSubject: {i}\n\ndelivery {i}\n"
                );
                assert!(procmail_deliver(&path, &text), "procmail delivery {i}");
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    let reply = c.cmd("QUIT");
    assert!(
        reply.starts_with("+OK"),
        "{reply}: {:?}",
        server.stderr_lines()
    );
    agent.join().unwrap();
    let now = fs::read_to_string(&path).unwrap();
    for i in 0..deliveries {
        assert_eq!(
            now.matches(&format!("\ndelivery {i}\n")).count(),
            1,
            "delivery {i} kept once"
        );
    }
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(now.contains(m.as_str()), i >= msgs.len() / 2, "message {i}");
    }
    assert_eq!(login_count(&fx), msgs.len() / 2 + deliveries);
}
