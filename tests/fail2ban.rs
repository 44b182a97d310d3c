//! fail2ban, the ban tool small hosts run against password guessing, reading the log of the real binary
//! through the filter in man/examples (fail2ban-filter.conf) with its own `fail2ban-regex`. Fails if
//! fail2ban is missing (CI installs it).

mod common;

use base64::Engine;
use common::{Server, standard};
use std::fs;
use std::process::Command;
use std::time::Duration;

const FILTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/man/examples/fail2ban-filter.conf"
);

/// The addresses `fail2ban-regex` finds in `lines` with the filter (and its `options`, e.g.
/// `[mode=aggressive]`), one per matched line, in order. `dated` says whether the lines begin with a
/// date; journal entries do not carry one in the line (fail2ban takes it from the journal).
fn banned(lines: &[String], options: &str, dated: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    // fail2ban-regex looks for the filter's `before = common.conf` in the filter's own directory.
    let filters = dir.path().join("filter.d");
    fs::create_dir(&filters).unwrap();
    fs::copy(FILTER, filters.join("poplar.conf")).unwrap();
    fs::copy(
        "/etc/fail2ban/filter.d/common.conf",
        filters.join("common.conf"),
    )
    .expect("fail2ban's common.conf (is fail2ban installed?)");
    let log = dir.path().join("log");
    fs::write(&log, lines.concat()).unwrap();
    let filter = format!("{}{options}", filters.join("poplar.conf").display());
    let mut cmd = Command::new("fail2ban-regex");
    cmd.args(["-o", "ip"]);
    if !dated {
        cmd.args(["-d", "{NONE}"]);
    }
    let out = cmd
        .arg(&log)
        .arg(&filter)
        .output()
        .unwrap_or_else(|e| panic!("cannot run fail2ban-regex (is fail2ban installed?): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fail2ban-regex: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

/// The server's stderr lines (`[TIME LEVEL MODULE] MESSAGE`) in the three forms fail2ban reads: the
/// file as written, syslog's (`DATE HOST poplar[PID]: MESSAGE`, as under inetd) and the journal's
/// (`HOST poplar[PID]: [LEVEL MODULE] MESSAGE`: standalone under systemd leaves the time to the journal).
fn log_forms(server: &Server) -> [(Vec<String>, bool); 3] {
    let lines = server.stderr_lines();
    for line in &lines {
        // fail2ban ignores a line of a log file in which it finds no time.
        let time = line.get(1..21).unwrap_or_default();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "not dated: {line}"
        );
    }
    let file = lines.iter().map(|l| format!("{l}\n")).collect();
    let syslog = lines
        .iter()
        .map(|l| {
            let message = l.split_once("] ").expect("env_logger line").1;
            format!("Nov 27 10:09:02 mailhost poplar[4321]: {message}\n")
        })
        .collect();
    let journal = lines
        .iter()
        .map(|l| format!("mailhost poplar[4321]: [{}\n", &l[22..]))
        .collect();
    [(file, true), (syslog, true), (journal, false)]
}

#[test]
fn each_refused_login_is_found_with_the_client_address_and_nothing_else() {
    let fx = standard();
    let server = Server::start(
        &fx,
        &[
            "--apop",
            "--auth-failure-delay",
            "0",
            "--max-auth-attempts",
            "10",
        ],
    );
    let mut c = server.connect();
    c.greeting();
    // A wrong password, an unknown user, a failed APOP, a failed AUTH PLAIN whose user name tries to
    // forge a peer field of its own, and a failed AUTH SCRAM-SHA-256.
    assert!(c.cmd("USER alice").starts_with("+OK"));
    assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    assert!(c.cmd("USER nosuch").starts_with("+OK"));
    assert!(c.cmd("PASS secret").starts_with("-ERR [AUTH]"));
    let apop = c.cmd("APOP alice 0123456789abcdef0123456789abcdef");
    assert!(apop.starts_with("-ERR [AUTH]"), "{apop}");
    let forged = base64::engine::general_purpose::STANDARD.encode(b"\0x peer=10.9.8.7:5\0wrong");
    let plain = c.cmd(&format!("AUTH PLAIN {forged}"));
    assert!(plain.starts_with("-ERR [AUTH]"), "{plain}");
    // A failed AUTH SCRAM-SHA-256: the proof is wrong, whatever the password.
    let b64 = base64::engine::general_purpose::STANDARD;
    let server_first = c.cmd(&format!(
        "AUTH SCRAM-SHA-256 {}",
        b64.encode("n,,n=alice,r=abc")
    ));
    let server_first = b64
        .decode(server_first.strip_prefix("+ ").unwrap())
        .unwrap();
    let nonce = String::from_utf8(server_first).unwrap();
    let nonce = nonce.split(',').next().unwrap();
    let client_final = format!("c=biws,{nonce},p={}", b64.encode([0u8; 32]));
    let scram = c.cmd(&b64.encode(client_final));
    assert!(scram.starts_with("-ERR [AUTH]"), "{scram}");
    // And a login that succeeds, which must not count.
    c.login("alice", "secret");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let found = server.wait_log(&["attempt=5"], Duration::from_secs(10));
    assert!(found.is_some(), "{:?}", server.stderr_lines());
    assert!(
        server
            .wait_log(&["login user=alice"], Duration::from_secs(10))
            .is_some()
    );

    for (lines, dated) in log_forms(&server) {
        assert_eq!(banned(&lines, "", dated), vec!["127.0.0.1"; 5], "{lines:?}");
    }
}

#[test]
fn aggressive_mode_also_counts_connections_refused_by_max_per_ip() {
    let fx = standard();
    let server = Server::start(&fx, &["--max-per-ip", "1"]);
    let mut held = server.connect();
    held.greeting();
    let mut refused = server.connect();
    let reply = refused.read_line();
    assert!(reply.starts_with("-ERR"), "{reply}");
    assert!(
        server
            .wait_log(&["refused, 1 sessions from"], Duration::from_secs(10))
            .is_some(),
        "{:?}",
        server.stderr_lines()
    );
    for (lines, dated) in log_forms(&server) {
        assert_eq!(banned(&lines, "", dated), Vec::<String>::new(), "{lines:?}");
        assert_eq!(
            banned(&lines, "[mode=aggressive]", dated),
            vec!["127.0.0.1"],
            "{lines:?}"
        );
    }
    drop(held);
}

#[test]
fn lines_into_the_journal_are_undated_and_found_as_the_journal_shows_them() {
    let fx = standard();
    let server = Server::start_in_journal(&fx, &["--auth-failure-delay", "0"]);
    let mut c = server.connect();
    c.greeting();
    assert!(c.cmd("USER alice").starts_with("+OK"));
    assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    let line = server
        .wait_log(&["login failed user=alice"], Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{:?}", server.stderr_lines()));
    // The journal dates each line; the line itself carries no time.
    assert!(
        line.starts_with("[INFO  poplar::session::authorization] login failed"),
        "{line}"
    );
    let journal = vec![format!("mailhost poplar[4321]: {line}\n")];
    assert_eq!(banned(&journal, "", false), vec!["127.0.0.1"]);
}
