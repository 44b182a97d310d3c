//! The command line and the configuration file: help, version, exit statuses and the wording of errors
//! (`poplar: FILE:LINE: option: problem`, `poplar: --option: problem`), SIGTERM.

mod common;

use common::{Fixture, Server, run, standard};
use std::fs;
use std::net::TcpListener;
use std::time::Duration;

const OPTIONS: [&str; 12] = [
    "--inetd",
    "--listen",
    "--config",
    "--passwd",
    "--mail",
    "--hostname",
    "--apop",
    "--timeout",
    "--max-sessions",
    "--log-level",
    "--help",
    "--version",
];

/// Checks a command-line failure: exit 2, one `poplar: ` line on stderr mentioning every needle.
fn usage_error(args: &[&str], needles: &[&str]) {
    let (code, out, err) = run(args);
    assert_eq!(code, 2, "{args:?}: stderr {err:?}");
    assert!(out.is_empty(), "{args:?}: stdout {out:?}");
    let first = err.lines().next().unwrap_or("");
    assert!(first.starts_with("poplar: "), "{args:?}: stderr {err:?}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err:?}");
    }
}

#[test]
fn help() {
    for flag in ["--help", "-h"] {
        let (code, out, err) = run(&[flag]);
        assert_eq!(code, 0, "{flag}");
        assert!(err.is_empty(), "{flag}: stderr {err:?}");
        assert!(out.to_lowercase().contains("usage"), "{flag}: {out}");
        for opt in OPTIONS {
            assert!(out.contains(opt), "{flag}: {opt} not documented in {out}");
        }
    }
}

#[test]
fn version() {
    for flag in ["--version", "-V"] {
        let (code, out, _) = run(&[flag]);
        assert_eq!(code, 0, "{flag}");
        assert_eq!(out, "poplar 0.1.0\n", "{flag}");
    }
}

#[test]
fn unknown_option() {
    usage_error(&["--bogus"], &["--bogus"]);
}

#[test]
fn bad_option_values() {
    let fx = standard();
    let p = fx.passwd().to_str().unwrap();
    usage_error(&["--passwd", p, "--timeout", "abc"], &["--timeout"]);
    usage_error(
        &["--passwd", p, "--max-sessions", "many"],
        &["--max-sessions"],
    );
    usage_error(&["--passwd", p, "--listen", "nowhere"], &["--listen"]);
    usage_error(&["--passwd", p, "--log-level", "loud"], &["--log-level"]);
    usage_error(&["--passwd", p, "--timeout"], &["--timeout"]);
}

#[test]
fn passwd_is_required() {
    usage_error(&["--listen", "127.0.0.1:0"], &["passwd"]);
}

#[test]
fn config_file_bad_key() {
    let fx = standard();
    let cfg = fx.root().join("poplar.conf");
    let text = format!(
        "# settings\npasswd = {}\n\nbogus-key = 1\n",
        fx.passwd().display()
    );
    fs::write(&cfg, text).unwrap();
    let c = cfg.to_str().unwrap();
    usage_error(&["--config", c], &[&format!("{c}:4: bogus-key")]);
}

#[test]
fn config_file_bad_values() {
    let fx = standard();
    let cfg = fx.root().join("poplar.conf");
    for (line, key) in [
        ("timeout = abc", "timeout"),
        ("apop = maybe", "apop"),
        ("listen = :::", "listen"),
    ] {
        fs::write(
            &cfg,
            format!("passwd = {}\n{line}\n", fx.passwd().display()),
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        usage_error(&["--config", c], &[&format!("{c}:2: {key}")]);
    }
}

#[test]
fn check_config_reports_on_the_terminal_for_an_inetd_configuration() {
    let fx = standard();
    let cfg = fx.root().join("poplar.conf");
    let c = cfg.to_str().unwrap();
    let text = format!("inetd = yes\npasswd = {}\n", fx.passwd().display());
    fs::write(&cfg, format!("{text}timeout = soon\n")).unwrap();
    usage_error(&["--check-config", "-c", c], &[&format!("{c}:3: timeout")]);
    usage_error(
        &["--check-config", "--inetd", "--timeout", "soon"],
        &["--timeout"],
    );
}

#[test]
fn missing_config_file() {
    let (code, _, err) = run(&["--config", "/nonexistent/poplar.conf"]);
    assert_ne!(code, 0);
    assert!(
        err.starts_with("poplar: ") && err.contains("/nonexistent/poplar.conf"),
        "{err}"
    );
}

#[test]
fn missing_passwd_file() {
    let fx = Fixture::new();
    let missing = fx.root().join("no-such-passwd");
    let m = missing.to_str().unwrap();
    let (code, _, err) = run(&["--passwd", m, "--listen", "127.0.0.1:0"]);
    assert_ne!(code, 0);
    assert!(err.contains("poplar: ") && err.contains(m), "{err}");
}

#[test]
fn cannot_bind_exits_1() {
    let fx = standard();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run(&["--passwd", fx.passwd().to_str().unwrap(), "--listen", &addr]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("poplar: ") && err.contains(&addr), "{err}");
}

#[test]
fn an_address_that_cannot_be_bound_is_named_where_it_was_given() {
    let fx = standard();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cfg = fx.root().join("poplar.conf");
    let c = cfg.to_str().unwrap();
    let in_use = "Address already in use (os error 98)";
    fs::write(
        &cfg,
        format!(
            "passwd = {}\nlisten = 127.0.0.1:0\nlisten = {addr}\n",
            fx.passwd().display()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["-c", c]);
    assert_eq!(
        (code, err),
        (1, format!("poplar: {c}:3: listen: {addr}: {in_use}\n"))
    );
    // Given on the command line, the address replaces the file's and is named as an option.
    let (code, _, err) = run(&["-c", c, "-l", "127.0.0.1:0", "--listen", &addr]);
    assert_eq!(
        (code, err),
        (1, format!("poplar: --listen: {addr}: {in_use}\n"))
    );
}

#[test]
fn config_file_settings_and_command_line_override() {
    let fx = standard();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = fx.root().join("poplar.conf");
    let text = format!(
        "passwd = {}\nlisten = {}\napop = yes\nhostname = conf.example\ntimeout = 30\n",
        fx.passwd().display(),
        taken.local_addr().unwrap()
    );
    fs::write(&cfg, text).unwrap();
    // The file's listen address is taken; the command line's replaces it.
    let mut args: Vec<String> = ["--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(common::root_account_args());
    let srv = Server::spawn(&args);
    let g = srv.connect().greeting();
    assert!(
        g.contains("@conf.example>"),
        "apop and hostname from the file: {g}"
    );
    let listening: Vec<String> = srv
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("listening on"))
        .collect();
    assert_eq!(listening.len(), 1, "{listening:?}");
}

#[test]
fn sigterm_exits_0() {
    let fx = standard();
    let mut srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert_eq!(srv.terminate(Duration::from_secs(5)), Some(0));
}

#[test]
fn sigterm_lets_running_session_finish() {
    let fx = standard();
    let mut srv = Server::start(&fx, &[]);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("DELE 1").starts_with("+OK "));
    let st = std::process::Command::new("kill")
        .args(["-TERM", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(200));
    // The session still works and its QUIT still applies the deletion.
    assert!(c.cmd("STAT").starts_with("+OK 4 "));
    assert!(c.cmd("QUIT").starts_with("+OK "));
    assert_eq!(srv.terminate(Duration::from_secs(5)), Some(0));
    assert_eq!(fx.files("alice").len(), 4);
}

#[test]
fn low_timeout_is_accepted_with_a_warning() {
    let fx = standard();
    let srv = Server::start(&fx, &["--timeout", "1"]);
    let warn = srv.wait_log(&["WARN", "timeout"], Duration::from_secs(5));
    assert!(warn.is_some(), "{:?}", srv.stderr_lines());
}

#[test]
fn short_options() {
    let fx = standard();
    let cfg = fx.root().join("short.conf");
    fs::write(&cfg, format!("passwd = {}\n", fx.passwd().display())).unwrap();
    let mut args: Vec<String> = ["-c", cfg.to_str().unwrap(), "-l", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(common::root_account_args());
    let srv = Server::spawn(&args);
    let mut c = srv.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
}

/// The example configuration shipped in man/examples (installed in share/doc/poplar) passes
/// --check-config as it is, with only its passwd-file pointed at one that exists: every setting in it
/// is a real option with a valid value.
#[test]
fn the_example_configuration_checks_out() {
    let fx = standard();
    let example = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/man/examples/poplar.conf"
    ))
    .unwrap();
    assert!(example.contains("passwd = /etc/poplar/passwd\n"));
    let conf = fx.root().join("poplar.conf");
    let passwd = format!("passwd = {}\n", fx.passwd().display());
    fs::write(
        &conf,
        example.replace("passwd = /etc/poplar/passwd\n", &passwd),
    )
    .unwrap();
    let (code, out, err) = run(&["--check-config", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.contains("max-per-ip = 10") && out.contains("ipv6-prefix = 64"),
        "{out}"
    );
}

/// `--check-config --passwd FILE ARGS` on a passwd-file of `text`, which must pass: the file's path and
/// the "cannot log in" and "can log in only" warnings printed.
fn account_warnings(dir: &tempfile::TempDir, text: &str, args: &[&str]) -> (String, Vec<String>) {
    let passwd = dir.path().join("passwd");
    fs::write(&passwd, text).unwrap();
    let p = passwd.to_str().unwrap();
    let (code, out, err) = run(&[&["--check-config", "--passwd", p][..], args].concat());
    assert_eq!(code, 0, "stderr: {err}");
    let warnings = out
        .lines()
        .filter(|l| l.contains("cannot log in") || l.contains("can log in only"))
        .map(str::to_string)
        .collect();
    (p.to_string(), warnings)
}

/// --check-config names the accounts that can never log in as configured, by file and line, and still
/// passes: the mail location does not expand for them, or (as root without --user) they have no ids.
#[test]
fn check_config_warns_of_accounts_that_cannot_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let text = "alice@example.org:{PLAIN}a:1000:1000::::\n\
                bob:{PLAIN}b:1000:1000::::\n\
                carol@example.org:{PLAIN}c:1000:1000::::userdb_mail=maildir:%h/Maildir\n\
                dave@example.org:{PLAIN}d::::::\n\
                .erin@example.org:{PLAIN}e:1000:1000::::\n\
                frank smith@example.org:{PLAIN}f:1000:1000::::\n";
    let long = format!("{}@example.org", "g".repeat(240));
    let text = &format!("{text}{long}:{{PLAIN}}g:1000:1000::::\n");
    let vmail = ["--mail", "maildir:/srv/vmail/%d/%n"];
    let (p, warnings) = account_warnings(&dir, text, &vmail);
    let mut want = vec![
        format!(
            "# warning: {p}:2: user bob cannot log in: its mail location maildir:/srv/vmail/%d/%n does \
             not fit: user name has no domain after '@' (needed for %d)"
        ),
        format!(
            "# warning: {p}:3: user carol@example.org cannot log in: its mail location \
             maildir:%h/Maildir does not fit: the account has no home directory (needed for %h)"
        ),
    ];
    if nix::unistd::geteuid().is_root() {
        want.push(format!(
            "# warning: {p}:4: user dave@example.org cannot log in: no uid and gid, which a server \
             started as root without --user needs"
        ));
    }
    // A name no template takes is not blamed on the template.
    want.push(format!(
        "# warning: {p}:5: user .erin@example.org cannot log in: no mail location takes its name: \
         user name starts with '.'"
    ));
    want.push(format!(
        "# warning: {p}:6: user frank smith@example.org can log in only by AUTH: USER and APOP end \
         a name at its first space"
    ));
    want.push(format!(
        "# warning: {p}:7: user {long} can log in only by AUTH: its name does not fit USER's \
         255-octet command line"
    ));
    assert_eq!(warnings, want);
    // With --user, accounts without ids are served as that account.
    let (_, warnings) = account_warnings(&dir, text, &[&vmail[..], &["--user", "nobody"]].concat());
    assert!(!warnings.iter().any(|w| w.contains("dave")), "{warnings:?}");
}

/// With --lowercase-users, a passwd-file name with capitals can never be reached: --check-config says so.
#[test]
fn check_config_warns_of_capitals_under_lowercase_users() {
    let dir = tempfile::tempdir().unwrap();
    let text = "alice:{PLAIN}a:1000:1000::/home/alice::\nBob:{PLAIN}b:1000:1000::/home/bob::\n";
    let (p, warnings) = account_warnings(&dir, text, &["--lowercase-users"]);
    assert_eq!(
        warnings,
        [format!(
            "# warning: {p}:2: user Bob cannot log in: its name has capitals, and lowercase-users looks \
             every name up in lowercase"
        )]
    );
    assert_eq!(account_warnings(&dir, text, &[]).1, Vec::<String>::new());
}

/// A standalone server serves TCP clients only, each with an address, so an account that allow_nets
/// lets in only as `local` can never log in there: --check-config says so, but not for --inetd.
#[test]
fn check_config_warns_of_local_only_accounts_in_standalone_mode() {
    let dir = tempfile::tempdir().unwrap();
    let text = "alice:{PLAIN}a:1000:1000::/home/alice::allow_nets=local,192.0.2.0/24\n\
                frank:{PLAIN}f:1000:1000::/home/frank::allow_nets=local\n";
    let (p, warnings) = account_warnings(&dir, text, &[]);
    assert_eq!(
        warnings,
        [format!(
            "# warning: {p}:2: user frank cannot log in: allow_nets admits only local sessions, which \
             only --inetd serves"
        )]
    );
    assert_eq!(
        account_warnings(&dir, text, &["--inetd"]).1,
        Vec::<String>::new()
    );
}

/// `first-valid-uid` and `first-valid-gid` take 0 to 4294967294 ((uid_t)-1 is no id), as flags and
/// file keys, and `--check-config` shows them (1 and 1 by default).
#[test]
fn first_valid_ids_are_parsed_and_shown() {
    let fx = standard();
    let p = fx.passwd().to_str().unwrap().to_string();
    let (code, out, err) = run(&["--check-config", "--passwd", &p]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\nfirst-valid-uid = 1\nfirst-valid-gid = 1\n"),
        "{out}"
    );
    let (code, out, err) = run(&[
        "--check-config",
        "--passwd",
        &p,
        "--first-valid-uid",
        "4294967294",
        "--first-valid-gid",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\nfirst-valid-uid = 4294967294\nfirst-valid-gid = 0\n"),
        "{out}"
    );
    for flag in ["--first-valid-uid", "--first-valid-gid"] {
        for (value, problem) in [
            ("4294967295", "4294967295 is out of range (0..=4294967294)"),
            ("-1", "-1 is out of range (0..=4294967294)"),
            ("root", "not a number: \"root\""),
        ] {
            usage_error(
                &["--check-config", "--passwd", &p, flag, value],
                &[flag, problem],
            );
        }
    }
    usage_error(
        &["--check-config", "--first-valid-uid"],
        &["--first-valid-uid"],
    );
    let cfg = fx.root().join("poplar.conf");
    fs::write(&cfg, format!("passwd = {p}\nfirst-valid-gid = 100\n")).unwrap();
    let c = cfg.to_str().unwrap();
    let (code, out, err) = run(&["--check-config", "-c", c]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\nfirst-valid-gid = 100\n"), "{out}");
    fs::write(
        &cfg,
        format!("passwd = {p}\nfirst-valid-gid = 4294967295\n"),
    )
    .unwrap();
    usage_error(
        &["--check-config", "-c", c],
        &[&format!("{c}:2: first-valid-gid")],
    );
}

/// As root, where sessions change identities, --check-config names the passwd-file accounts whose uid
/// or gid is below first-valid-uid or first-valid-gid (root's by default); not under standalone
/// --user, where no session changes identity, nor when not root.
#[test]
fn check_config_warns_of_accounts_below_the_first_valid_ids() {
    let dir = tempfile::tempdir().unwrap();
    let text = "root:{PLAIN}r:0:0::/root::\n\
                daemon:{PLAIN}d:1:1::/usr/sbin::\n\
                alice:{PLAIN}a:1000:1000::/home/alice::\n\
                wheel:{PLAIN}w:1000:0::/home/wheel::\n";
    let (p, warnings) = account_warnings(&dir, text, &[]);
    if !nix::unistd::geteuid().is_root() {
        assert_eq!(warnings, Vec::<String>::new());
        return;
    }
    let warning = |line: u32, user: &str, why: &str| {
        format!(
            "# warning: {p}:{line}: user {user} cannot log in: {why} (a session with it could read \
             files the account does not own)"
        )
    };
    assert_eq!(
        warnings,
        [
            warning(1, "root", "uid 0 is below first-valid-uid 1"),
            warning(4, "wheel", "gid 0 is below first-valid-gid 1"),
        ]
    );
    let limits = ["--first-valid-uid", "500", "--first-valid-gid", "100"];
    for args in [&limits[..], &[&limits[..], &["--inetd"]].concat()] {
        assert_eq!(
            account_warnings(&dir, text, args).1,
            [
                warning(1, "root", "uid 0 is below first-valid-uid 500"),
                warning(2, "daemon", "uid 1 is below first-valid-uid 500"),
                warning(4, "wheel", "gid 0 is below first-valid-gid 100"),
            ]
        );
    }
    let lowered = ["--first-valid-uid", "0", "--first-valid-gid", "0"];
    assert_eq!(
        account_warnings(&dir, text, &lowered).1,
        Vec::<String>::new()
    );
    assert_eq!(
        account_warnings(&dir, text, &["--user", "nobody"]).1,
        Vec::<String>::new()
    );
    // Under inetd, `--user root` would serve the accounts without ids as root.
    let p = dir.path().join("passwd");
    fs::write(&p, "dave:{PLAIN}d::::/home/dave::\n").unwrap();
    let p = p.to_str().unwrap();
    let root = ["--check-config", "--passwd", p, "--inetd", "--user", "root"];
    let (code, out, err) = run(&root);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "\n# warning: user root: accounts without uid and gid, served as it, cannot log in: \
             uid 0 is below first-valid-uid 1 ("
        ),
        "{out}"
    );
    let (code, out, err) = run(&[&root[..], &lowered[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("cannot log in"), "{out}");
}

/// Root: the standalone server with `--user` runs every session as that account, so one below the
/// limits (`--user root`) is refused at start-up and by `--check-config`, naming the option; with the
/// limits at 0 the check passes.
#[test]
fn standalone_user_below_the_first_valid_ids_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("standalone_user_below_the_first_valid_ids_is_refused: needs root, skipped");
        return;
    }
    let fx = standard();
    let p = fx.passwd().to_str().unwrap().to_string();
    let want = "--user: uid 0 is below first-valid-uid 1";
    let (code, _, err) = run(&["--check-config", "--passwd", &p, "--user", "root"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(want), "{err}");
    let (code, _, err) = run(&["--passwd", &p, "--user", "root", "--listen", "127.0.0.1:0"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("uid 0 is below first-valid-uid 1"), "{err}");
    let (code, _, err) = run(&[
        "--check-config",
        "--passwd",
        &p,
        "--user",
        "root",
        "--first-valid-uid",
        "0",
        "--first-valid-gid",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
}

/// Standalone with --user as root, a passwd-file (or certificate, key, salt key) that account cannot
/// read loads at start-up, read as root, and never again: --check-config and the server's start say
/// so, naming the file and what follows. From a black-box trial: a root-owned mode 0600 file with
/// `--user nobody` kept serving a changed password and a removed user, with no word at start-up.
#[test]
fn files_the_user_account_cannot_read_are_named() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to switch to nobody");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    fs::write(&passwd, "alice:{PLAIN}a:65534:65534::/nonexistent::\n").unwrap();
    let p = passwd.to_str().unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&passwd, fs::Permissions::from_mode(0o600)).unwrap();
    let check = |args: &[&str]| {
        let (code, out, err) = run(&[&["--check-config", "--passwd", p][..], args].concat());
        assert_eq!(code, 0, "{err}");
        out
    };
    let warning = format!(
        "# warning: --user nobody cannot read passwd {p} (Permission denied (os error 13)): changes to \
         it (new or changed passwords, locked or removed users) take effect only at a restart; make it \
         readable by nobody"
    );
    let out = check(&["--user", "nobody"]);
    assert!(out.lines().any(|l| l == warning), "{out}");
    // Readable by the account (or no --user: the server reads it as root): no warning.
    assert!(!check(&[]).contains("cannot read"));
    fs::set_permissions(&passwd, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(!check(&["--user", "nobody"]).contains("cannot read"));
    fs::set_permissions(&passwd, fs::Permissions::from_mode(0o600)).unwrap();
    // The server's start says it too.
    let log = dir.path().join("log");
    let mut server = std::process::Command::new(common::BIN)
        .args(["--passwd", p, "--user", "nobody", "--listen", "127.0.0.1:0"])
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while std::time::Instant::now() < deadline && !text.contains("listening on") {
        std::thread::sleep(Duration::from_millis(50));
        text = fs::read_to_string(&log).unwrap();
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let logged = warning.strip_prefix("# warning: ").unwrap();
    assert!(
        text.contains(&format!("WARN  poplar::server] {logged}")),
        "{text}"
    );
}
