//! mbox maildrops next to Debian's mailutils tools and other mail programs, against the real binary:
//! `dotlock` holding the lock while UPDATE (or a login) waits, `putmail` (mailutils' mda) delivering
//! during a session, stale dotlocks, and the `mbox-uidl` option. Tests that need a mailutils tool skip,
//! saying so, when it is missing (`.ci/run` installs mailutils and mailutils-mda).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{Backend, Fixture, Server, listing};

fn message(i: usize) -> String {
    format!(
        "From s{i}@example.org Thu Jan  1 00:00:0{i} 2026\nReceived: by mx id {i}\nSubject: {i}\n\nbody {i}\n\n"
    )
}

fn setup(count: usize) -> (Fixture, std::path::PathBuf, String) {
    let mut fx = Fixture::on(Backend::Mbox);
    fx.user("alice", "secret");
    let path = fx.mbox("alice");
    let content: String = (1..=count).map(message).collect();
    fs::write(&path, &content).unwrap();
    (fx, path, content)
}

/// Runs mailutils' `dotlock` on `mbox` (creating or, with `-u`, removing `MBOX.lock`); false if missing.
fn dotlock(mbox: &Path, unlock: bool) -> bool {
    let mut cmd = Command::new("dotlock");
    if unlock {
        cmd.arg("-u");
    }
    match cmd.arg(mbox).status() {
        Ok(st) => {
            assert!(
                st.success(),
                "dotlock {} failed",
                if unlock { "-u" } else { "" }
            );
            true
        }
        Err(_) => false,
    }
}

#[test]
fn update_waits_for_a_dotlock_held_by_mailutils_then_keeps_the_delivery() {
    let (fx, path, _) = setup(3);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    if !dotlock(&path, false) {
        eprintln!(
            "SKIPPED update_waits_for_a_dotlock_held_by_mailutils: dotlock (mailutils) not installed"
        );
        return;
    }
    let start = Instant::now();
    c.send(b"QUIT\r\n");
    // While the agent holds the lock it delivers; UPDATE must wait for it and keep what it wrote.
    let late = "From late@example.org Thu Jan  1 00:09:00 2026\nSubject: late\n\nlate\n";
    common::mbox::append(&path, late.as_bytes());
    thread::sleep(Duration::from_millis(1500));
    assert!(dotlock(&path, true));
    let reply = c.read_line();
    assert!(reply.starts_with("+OK "), "{reply}");
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "UPDATE did not wait for the dotlock"
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}{}{late}", message(2), message(3))
    );
    assert!(
        !fx.home("alice").join("mbox.lock").exists(),
        "our dotlock was not removed"
    );
}

#[test]
fn login_waits_a_bounded_time_for_a_dotlock() {
    let (fx, path, content) = setup(2);
    if !dotlock(&path, false) {
        eprintln!(
            "SKIPPED login_waits_a_bounded_time_for_a_dotlock: dotlock (mailutils) not installed"
        );
        return;
    }
    let srv = Server::start(&fx, &[]);
    // Held through the whole wait: the login gives up with [SYS/TEMP] (after DELIVERY_LOCK_WAIT, 10 s).
    let mut c = srv.connect();
    c.greeting();
    assert!(c.cmd("USER alice").starts_with("+OK "));
    // The server waits 10 s for the lock, as long as the client's default read timeout: give it room.
    c.set_read_timeout(Duration::from_secs(30));
    let start = Instant::now();
    let reply = c.cmd("PASS secret");
    assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "gave up too early: {:?}",
        start.elapsed()
    );
    // Released during the wait: the login goes through.
    let releaser = {
        let path = path.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(800));
            dotlock(&path, true)
        })
    };
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 2 "));
    assert!(releaser.join().unwrap());
    assert_eq!(fs::read_to_string(&path).unwrap(), content);
}

#[test]
fn stale_dotlocks_are_recovered_by_a_login() {
    let (fx, path, _) = setup(2);
    let lock = fx.home("alice").join("mbox.lock");
    let srv = Server::start(&fx, &[]);
    // Empty (as procmail and mailutils write it) and 10 minutes old: stale by age.
    fs::write(&lock, "").unwrap();
    let old = SystemTime::now() - Duration::from_secs(600);
    fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // A pid that no longer exists, fresh: stale at once (the child has been reaped).
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    for (what, content) in [
        ("old", None),
        ("dead holder", Some(format!("{dead_pid}\n"))),
    ] {
        if let Some(text) = content {
            fs::write(&lock, text).unwrap();
        }
        let start = Instant::now();
        let mut c = srv.login("alice", "secret");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: login waited for a stale dotlock"
        );
        assert!(c.cmd("DELE 1").starts_with("+OK "), "{what}");
        assert!(c.cmd("RSET").starts_with("+OK "));
        assert!(c.cmd("QUIT").starts_with("+OK "));
        assert!(!lock.exists(), "{what}: stale dotlock still there");
    }
    assert!(fs::read_to_string(&path).unwrap().starts_with(&message(1)));
}

/// Delivers `text` to the mbox at `path` with mailutils' `putmail` (the mda's URL front end); false if
/// it is not installed.
fn putmail(path: &Path, text: &str) -> bool {
    let mut putmail = Command::new("putmail");
    putmail
        .arg("--no-config")
        .arg(format!("mbox:{}", path.display()))
        .stdout(Stdio::null());
    let Some(ok) = common::mbox::deliver_with(&mut putmail, text) else {
        return false;
    };
    assert!(ok, "putmail failed");
    true
}

fn stat_count(srv: &Server) -> usize {
    let mut c = srv.login("alice", "secret");
    let stat = c.cmd("STAT");
    assert!(c.cmd("QUIT").starts_with("+OK "));
    stat.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn mailutils_deliveries_during_a_session_are_kept() {
    let (fx, path, _) = setup(3);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("DELE 2").starts_with("+OK "));
    if !putmail(
        &path,
        "From: a@example.org\nSubject: first delivery\n\nfirst delivery\n",
    ) {
        eprintln!(
            "SKIPPED mailutils_deliveries_during_a_session_are_kept: putmail (mailutils-mda) not installed"
        );
        return;
    }
    // mailutils rewrote the mailbox into a new file with its X-IMAPbase and X-UID headers and renamed it
    // over the old one: what we scanned is gone, so UPDATE deletes nothing and says so.
    let reply = c.cmd("QUIT");
    assert!(reply.starts_with("-ERR [SYS/TEMP] "), "{reply}");
    let now = fs::read_to_string(&path).unwrap();
    assert!(
        now.contains("X-IMAPbase:")
            && now.contains("\nbody 2\n")
            && now.contains("\nfirst delivery\n")
    );
    assert_eq!(stat_count(&srv), 4);
    // From now on mailutils appends and rewrites the X-IMAPbase digits in place: offsets stay, UPDATE
    // goes ahead.
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("DELE 2").starts_with("+OK "));
    assert!(putmail(
        &path,
        "From: b@example.org\nSubject: second delivery\n\nsecond delivery\n"
    ));
    let reply = c.cmd("QUIT");
    assert!(reply.starts_with("+OK "), "{reply}");
    let now = fs::read_to_string(&path).unwrap();
    assert!(!now.contains("\nbody 2\n"), "message 2 deleted");
    for kept in [
        "Subject: 1\n",
        "\nbody 3\n",
        "\nfirst delivery\n",
        "\nsecond delivery\n",
    ] {
        assert_eq!(now.matches(kept).count(), 1, "{kept:?} kept once");
    }
    assert_eq!(stat_count(&srv), 4);
}

#[test]
fn x_uidl_option_on_the_command_line_and_in_a_config_file() {
    let mut fx = Fixture::on(Backend::Mbox);
    fx.user("alice", "secret");
    let mbox = [
        "From a Thu Jan  1 00:00:00 2026\nReceived: r1\nX-UIDL: qpopper-id-1\n\none\n\n",
        "From b Thu Jan  1 00:00:01 2026\nReceived: r2\n\ntwo\n\n",
        "From c Thu Jan  1 00:00:02 2026\nReceived: r3\nX-UIDL: not valid\n\nthree\n",
    ]
    .concat();
    fs::write(fx.mbox("alice"), &mbox).unwrap();
    let uids = |extra: &[&str]| {
        let srv = Server::start(&fx, extra);
        let mut c = srv.login("alice", "secret");
        let got: Vec<String> = listing(&c.multi("UIDL"))
            .into_iter()
            .map(|(_, uid)| uid)
            .collect();
        assert!(c.cmd("QUIT").starts_with("+OK "));
        got
    };
    let popa3d = uids(&[]);
    assert_eq!(popa3d, uids(&["--mbox-uidl", "popa3d"]));
    assert!(
        popa3d.iter().all(|u| u.len() == 16),
        "popa3d ids: {popa3d:?}"
    );
    let x_uidl = uids(&["--mbox-uidl", "x-uidl"]);
    assert_eq!(x_uidl, ["qpopper-id-1", &popa3d[1], &popa3d[2]]);
    let conf = fx.root().join("poplar.conf");
    fs::write(&conf, "mbox-uidl = x-uidl\n").unwrap();
    assert_eq!(uids(&["-c", conf.to_str().unwrap()]), x_uidl);
    let (code, _, err) = common::run(&[
        "--mbox-uidl",
        "qpopper",
        "--passwd",
        fx.passwd().to_str().unwrap(),
    ]);
    assert!(code != 0 && err.contains("mbox-uidl"), "{code} {err}");
}
