//! `maildir-uidl = dovecot`: the UIDL Dovecot's POP3 server announced, read from a hand-written
//! `dovecot-uidlist`, through the real binary; the option on the command line, in a file, on SIGHUP and
//! in `--check-config`; and `dovecot-uidl-format`, Dovecot's `pop3_uidl_format`.

mod common;

use common::{Fixture, Server, listing, run};
use nix::sys::signal::Signal;
use std::fs;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// The header's UIDVALIDITY (Dovecot's `%08Xv` prints it in lower-case hex).
const VALIDITY: u32 = 1_700_000_000;

/// A Maildir of five messages and a uidlist naming four of them, one on a malformed line.
fn fixture() -> Fixture {
    let mut fx = Fixture::new();
    fx.user("dana", "pw");
    fx.msg(
        "dana",
        "cur",
        "1700000001.M1P1.host,S=8:2,S",
        b"S: 1\n\na\n",
    );
    fx.msg(
        "dana",
        "cur",
        "1700000002.M2P1.host,S=8:2,S",
        b"S: 2\n\nb\n",
    );
    fx.msg("dana", "cur", "1700000003.M3P1.host:2,", b"S: 3\n\nc\n");
    fx.msg("dana", "new", "1700000004.M4P1.host", b"S: 4\n\nd\n");
    fx.msg("dana", "new", "1700000005.M5P1.host", b"S: 5\n\ne\n");
    // Filenames as Dovecot writes them (base names; an old line may carry flags). Message 4 is not
    // listed: delivered after Dovecot last looked.
    let uidlist = format!(
        "3 V{VALIDITY} N300 G3085f01b7f11094c501100008c4a11c1\n\
         17 G0123456789abcdef0123456789abcdef W8 :1700000001.M1P1.host,S=8\n\
         18 P0000004865f1dc1a W8 :1700000002.M2P1.host,S=8:2,S\n\
         19 P :1700000003.M3P1.host\n\
         2x0 :1700000005.M5P1.host\n"
    );
    fs::write(fx.maildir("dana").join("dovecot-uidlist"), uidlist).unwrap();
    fx
}

fn uids(srv: &Server) -> Vec<String> {
    let mut c = srv.login("dana", "pw");
    let got = listing(&c.multi("UIDL"))
        .into_iter()
        .map(|(_, u)| u)
        .collect();
    assert!(c.cmd("QUIT").starts_with("+OK"));
    got
}

#[test]
fn dovecot_uidlist_gives_dovecots_uidls() {
    let fx = fixture();
    let names = [
        "1700000001.M1P1.host,S=8",
        "1700000002.M2P1.host,S=8",
        "1700000003.M3P1.host",
        "1700000004.M4P1.host",
        "1700000005.M5P1.host",
    ];
    let srv = Server::start(&fx, &[]);
    assert_eq!(uids(&srv), names, "the default is the base name");
    drop(srv);
    let srv = Server::start(&fx, &["--maildir-uidl", "dovecot"]);
    let want = [
        format!("{:08x}{VALIDITY:08x}", 17),
        "0000004865f1dc1a".to_string(),
        names[2].to_string(),
        names[3].to_string(),
        names[4].to_string(),
    ];
    assert_eq!(uids(&srv), want);
    assert!(
        srv.wait_log(
            &["dovecot-uidlist: 1 malformed line(s), the first line 5"],
            WAIT
        )
        .is_some(),
        "{:?}",
        srv.stderr_lines()
    );
    // A second login (sizes from the cache) gives the same, and UIDL n agrees with the listing.
    let mut c = srv.login("dana", "pw");
    assert_eq!(c.cmd("UIDL 1"), format!("+OK 1 {}", want[0]));
    assert_eq!(c.cmd("UIDL 2"), "+OK 2 0000004865f1dc1a");
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn maildir_uidl_in_a_file_on_reload_and_in_check_config() {
    let fx = fixture();
    let conf = fx.config("maildir-uidl = name\n");
    let srv = Server::with_config(&conf);
    assert_eq!(uids(&srv)[0], "1700000001.M1P1.host,S=8");
    fx.config("maildir-uidl = dovecot\n");
    srv.signal(Signal::SIGHUP);
    assert!(
        srv.wait_log(&["reload: configuration and passwd-file re-read"], WAIT)
            .is_some()
    );
    assert_eq!(uids(&srv)[0], format!("{:08x}{VALIDITY:08x}", 17));

    let (status, out, err) = run(&["--check-config", "-c", conf.to_str().unwrap()]);
    assert_eq!((status, err.as_str()), (0, ""), "{out}");
    assert!(out.lines().any(|l| l == "maildir-uidl = dovecot"), "{out}");
    let (status, _, err) = run(&[
        "--check-config",
        "--maildir-uidl",
        "courier",
        "--passwd",
        fx.passwd().to_str().unwrap(),
    ]);
    assert!(
        status != 0 && err.contains("maildir-uidl"),
        "{status} {err}"
    );
}

/// Courier's style, `%v.%u`: the header's UIDVALIDITY and the record's UID in decimal. A saved `P`
/// UIDL still wins, and messages the file does not list (or lists on a malformed line) keep their
/// base names, as with the default format.
#[test]
fn another_pop3_uidl_format() {
    let fx = fixture();
    let srv = Server::start(
        &fx,
        &[
            "--maildir-uidl",
            "dovecot",
            "--dovecot-uidl-format",
            "%v.%u",
        ],
    );
    let want = [
        format!("{VALIDITY}.17"),
        "0000004865f1dc1a".to_string(),
        "1700000003.M3P1.host".to_string(),
        "1700000004.M4P1.host".to_string(),
        "1700000005.M5P1.host".to_string(),
    ];
    assert_eq!(uids(&srv), want);
    let mut c = srv.login("dana", "pw");
    assert_eq!(c.cmd("UIDL 1"), format!("+OK 1 {VALIDITY}.17"));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    drop(srv);

    // In a file, the GUID: the record's G field.
    let conf = fx.config("maildir-uidl = dovecot\ndovecot-uidl-format = %g\n");
    let srv = Server::with_config(&conf);
    assert_eq!(uids(&srv)[0], "0123456789abcdef0123456789abcdef");
    let (status, out, err) = run(&["--check-config", "-c", conf.to_str().unwrap()]);
    assert_eq!((status, err.as_str()), (0, ""), "{out}");
    assert!(
        out.lines().any(|l| l == "dovecot-uidl-format = %g"),
        "{out}"
    );
}

/// `%m`, the header's MD5, would mean reading every message at every login: refused at start-up, on
/// the command line and in a file, with the usual exit status of a bad setting.
#[test]
fn a_header_md5_format_is_refused_at_start_up() {
    let fx = fixture();
    let passwd = fx.passwd().to_str().unwrap().to_string();
    let problem =
        "%m (the header's MD5) would mean reading every message at every login; not supported";
    let (status, _, err) = run(&[
        "--passwd",
        &passwd,
        "--maildir-uidl",
        "dovecot",
        "--dovecot-uidl-format",
        "%08Xm",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(status, 2, "{err}");
    assert_eq!(err, format!("poplar: --dovecot-uidl-format: {problem}\n"));
    let conf = fx.config("maildir-uidl = dovecot\ndovecot-uidl-format = %m\n");
    let (status, _, err) = run(&["--check-config", "-c", conf.to_str().unwrap()]);
    assert_eq!(status, 2, "{err}");
    assert!(
        err.contains(&format!(":5: dovecot-uidl-format: {problem}")),
        "{err}"
    );
}
