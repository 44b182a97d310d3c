//! `--inetd` mode: one session on stdin/stdout (a socket pair here), with nothing but protocol bytes on the
//! socket even when stderr is the socket too, as inetd arranges it.

mod common;

use common::{Inetd, MESSAGES, standard, wire};
use std::time::Duration;

#[test]
fn basic_session_with_deletion() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start(&fx, &[]);
    let g = c.greeting();
    assert!(!g.contains('<'), "{g}");
    c.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    assert_eq!(c.multi("RETR 4"), wire(MESSAGES[3].2));
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(
        proc_.wait_exit(Duration::from_secs(5)),
        Some(0),
        "exit status after QUIT"
    );
    assert_eq!(fx.files("alice").len(), 4);
    assert!(!fx.files("alice").contains(&MESSAGES[0].1.to_string()));
}

#[test]
fn only_protocol_bytes_on_the_socket() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start_all_fds(&fx, &["--log-level", "trace"]);
    c.send(b"CAPA\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nRETR 2\r\nQUIT\r\n");
    let all = c.read_to_close(Duration::from_secs(15));
    let text = String::from_utf8_lossy(&all);
    // Split into replies: greeting, CAPA (multi), USER, PASS(-ERR), USER, PASS, STAT, RETR (multi), QUIT.
    let mut lines = text.split_inclusive("\r\n");
    let mut next = || {
        lines
            .next()
            .unwrap_or_else(|| panic!("short output: {text:?}"))
    };
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("+OK"));
    while next() != ".\r\n" {}
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("-ERR [AUTH] "));
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("+OK "));
    assert!(next().starts_with("+OK 5 "));
    assert!(next().starts_with("+OK"));
    let mut body = String::new();
    loop {
        let l = next();
        body.push_str(l);
        if l == ".\r\n" {
            break;
        }
    }
    assert_eq!(body.as_bytes(), wire(MESSAGES[1].2));
    assert!(next().starts_with("+OK "), "QUIT");
    let rest: Vec<&str> = lines.collect();
    assert!(rest.is_empty(), "bytes after QUIT: {rest:?}");
    assert!(
        !text.contains("poplar::"),
        "a log line reached the socket: {text:?}"
    );
    assert!(proc_.wait_exit(Duration::from_secs(5)).is_some());
}

#[test]
fn dropped_connection_exits_and_deletes_nothing() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start(&fx, &[]);
    c.greeting();
    c.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    drop(c);
    assert!(
        proc_.wait_exit(Duration::from_secs(5)).is_some(),
        "still running after the peer left"
    );
    assert_eq!(fx.files("alice").len(), 5);
}

#[test]
fn timeout_in_inetd_mode() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start(&fx, &["--timeout", "1"]);
    c.greeting();
    c.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    assert!(c.closed_within(Duration::from_secs(6)));
    assert!(proc_.wait_exit(Duration::from_secs(5)).is_some());
    assert_eq!(fx.files("alice").len(), 5);
}

/// A Maildir fixture whose user alice (password `pw`) has one message of `size` octets of 80-octet
/// lines; returns the fixture and the message.
fn alice_with_one_message_of(size: usize) -> (common::Fixture, Vec<u8>) {
    let mut fx = common::Fixture::new();
    fx.user("alice", "pw");
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789012345678\n";
    let big: Vec<u8> = line.iter().copied().cycle().take(size).collect();
    fx.msg("alice", "new", "1600000000.M1P1.host", &big);
    (fx, big)
}

/// A client that stops reading in the middle of a large RETR: the send timeout ends the process, on a
/// pipe too (a blocking write larger than the room `poll` promised slept until it all fit).
#[test]
fn a_client_that_stops_reading_is_timed_out_on_a_pipe() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (fx, _) = alice_with_one_message_of(8 << 20);
    let mut child = Command::new(common::BIN)
        .args(["--inetd", "--timeout", "2", "--passwd"])
        .arg(fx.passwd())
        .args(common::root_account_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(b"USER alice\r\nPASS pw\r\nRETR 1\r\n")
        .unwrap();
    // stdout is never read: its pipe fills.
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still writing after {:?}", started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// A launcher may hand over the client's socket in non-blocking mode (systemd clears O_NONBLOCK, others
/// need not): a RETR larger than the socket buffer must still be sent in full, not cut off at the first
/// EAGAIN as if the send timer had expired.
#[test]
fn a_non_blocking_socket_on_stdin_and_stdout_is_served_in_full() {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};
    let (fx, big) = alice_with_one_message_of(4 << 20);
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    // O_NONBLOCK belongs to the open file description, which the child's fd 0 and 1 share.
    theirs.set_nonblocking(true).unwrap();
    let stdin = OwnedFd::from(theirs.try_clone().unwrap());
    let mut child = Command::new(common::BIN)
        .args(["--inetd", "--passwd"])
        .arg(fx.passwd())
        .args(common::root_account_args())
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ours.write_all(b"USER alice\r\nPASS pw\r\nRETR 1\r\nQUIT\r\n")
        .unwrap();
    // Let the server fill the socket buffer before anything is read.
    std::thread::sleep(Duration::from_millis(500));
    ours.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut all = Vec::new();
    let _ = ours.read_to_end(&mut all);
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&all);
    assert!(
        all.len() > big.len() && text.contains("\r\n.\r\n+OK poplar signing off"),
        "{} octets, ending {:?}",
        all.len(),
        &text[text.len().saturating_sub(80)..]
    );
}

/// A SIGHUP (`pkill -HUP poplar`, meant for a standalone server's reload) does not end an inetd session:
/// there is nothing to reload in a one-session process, and its default action would kill it mid-UPDATE.
#[test]
fn sighup_does_not_end_an_inetd_session() {
    let fx = standard();
    let (mut proc_, mut c) = Inetd::start(&fx, &[]);
    c.greeting();
    c.login("alice", "secret");
    let pid = nix::unistd::Pid::from_raw(proc_.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert!(proc_.wait_exit(Duration::from_secs(5)).is_some());
    assert_eq!(fx.files("alice").len(), 4);
}

const MISCONFIGURED: &str = "-ERR [SYS/PERM] server misconfigured\r\n";

/// `poplar --inetd <args>` with a socket pair as fd 0/1 and `stderr` as fd 2 (`None`: the socket too, as
/// inetd hands it over). Returns what the client read before the close and the exit code.
fn failed_start(args: &[&str], stderr: Option<std::process::Stdio>) -> (String, Option<i32>) {
    let (mut proc_, mut c) = Inetd::spawn_args(args, stderr);
    let got = c.read_to_close(Duration::from_secs(10));
    let code = proc_.wait_exit(Duration::from_secs(5));
    (String::from_utf8_lossy(&got).into_owned(), code)
}

/// Run by hand with a bad option or configuration, inetd mode says why on stderr (a terminal, a file, a
/// pipe of its own), not only in syslog; the client gets one protocol line rather than a silent close.
#[test]
fn a_start_up_error_goes_to_a_private_stderr_too() {
    let fx = standard();
    let missing = fx.root().join("no-such-passwd");
    let missing = missing.to_str().unwrap();
    for (args, problem) in [
        (
            &["--timeout", "soon"][..],
            "poplar: --timeout: not a number",
        ),
        (&["--passwd", missing], "poplar: --passwd: "),
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        let (client, code) = failed_start(args, Some(writer.into()));
        let err = std::io::read_to_string(reader).unwrap();
        assert_eq!(
            (client.as_str(), code),
            (MISCONFIGURED, Some(2)),
            "{args:?}"
        );
        assert!(
            err.starts_with(problem) && err.ends_with('\n'),
            "{args:?}: {err:?}"
        );
        assert_eq!(err.lines().count(), 1, "{err:?}");
    }
}

/// Under inetd syslog is the administrator's only view of a start-up failure, so it is logged there at
/// every `log-level`, `off` too. Needs root to stand in for the syslog daemon at /dev/log, and a machine
/// without one (as CI's); skipped otherwise.
#[test]
fn a_start_up_error_reaches_syslog_at_log_level_off() {
    use std::os::unix::net::UnixDatagram;
    let dev_log = std::path::Path::new("/dev/log");
    if !nix::unistd::geteuid().is_root() || dev_log.symlink_metadata().is_ok() {
        eprintln!("skipped: needs root and no syslog daemon at /dev/log");
        return;
    }
    struct Removed<'a>(&'a std::path::Path);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let syslog = UnixDatagram::bind(dev_log).expect("bind /dev/log");
    let _removed = Removed(dev_log);
    syslog
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let fx = standard();
    let missing = fx.root().join("no-such-passwd");
    let args = ["--log-level", "off", "--passwd", missing.to_str().unwrap()];
    assert_eq!(
        failed_start(&args, None),
        (MISCONFIGURED.to_string(), Some(2))
    );
    // Other tests' servers may log here meanwhile: looked for among them, for a bounded time.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < deadline {
        let Ok(n) = syslog.recv(&mut buf) else {
            continue;
        };
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        if line.contains("poplar[") && line.contains(missing.to_str().unwrap()) {
            assert!(line.contains("--passwd"), "{line}");
            return;
        }
        seen.push(line);
    }
    panic!("no syslog line names the passwd-file; seen {seen:?}");
}

/// When stderr is the client's socket (inetd) or the very pipe the client reads (a launcher handing over
/// pipes), the client sees the protocol line and nothing else; with --tls it sees nothing at all, since
/// it expects a handshake.
#[test]
fn a_start_up_error_shows_the_client_only_a_protocol_line() {
    assert_eq!(
        failed_start(&["--timeout", "soon"], None),
        (MISCONFIGURED.to_string(), Some(2))
    );
    assert_eq!(
        failed_start(&["--tls", "--timeout", "soon"], None),
        (String::new(), Some(2))
    );
    // fd 1 and 2 one pipe: what is written to either reaches the client.
    let (reader, writer) = std::io::pipe().expect("pipe");
    let child = std::process::Command::new(common::BIN)
        .args(["--inetd", "--timeout", "soon"])
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone().expect("clone"))
        .stderr(writer)
        .spawn()
        .expect("spawn poplar --inetd");
    // Read once it has exited: the pipe holds what it wrote, then the end of file.
    assert_eq!(Inetd { child }.wait_exit(Duration::from_secs(10)), Some(2));
    assert_eq!(std::io::read_to_string(reader).unwrap(), MISCONFIGURED);
}
