//! TLS and SASL with the real binary: STLS (RFC 2595), implicit TLS (RFC 8314) standalone and under inetd,
//! AUTH PLAIN/LOGIN (RFC 5034), the no-plaintext policy, certificate reload on SIGHUP, start-up errors,
//! and real clients (curl, Python's poplib, openssl s_client). Certificates are made with `openssl` in a
//! temporary folder for each test.
#![cfg(feature = "tls")]

mod common;
mod tls_support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, Server, run, standard};
use tls_support::{Certs, TlsClient, implicit, plain_line, stls, tcp, tls_addr};

/// A standard fixture and a server with a certificate and a `--listen-tls` listener, plus `extra`.
fn tls_server(extra: &[&str]) -> (Fixture, Certs, Server) {
    let fx = standard();
    let certs = Certs::new(fx.root(), "a");
    let mut args = certs.args();
    args.extend([
        "--listen-tls".to_string(),
        "127.0.0.1:0".to_string(),
        "--auth-failure-delay".into(),
        "1".into(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Server::start(&fx, &args);
    (fx, certs, srv)
}

fn capa(c: &mut TlsClient<impl std::io::Read + Write>) -> Vec<String> {
    c.multi("CAPA")
}

const REFUSED: &str =
    "-ERR [AUTH] plaintext authentication disallowed on non-secure connections, use STLS first";

#[test]
fn capa_before_and_after_stls() {
    let (_fx, certs, srv) = tls_server(&[]);
    let mut c = srv.connect();
    c.greeting();
    let before = String::from_utf8(c.multi("CAPA")).unwrap();
    assert!(before.contains("\r\nSTLS\r\n"), "{before}");
    // A certificate makes --no-plaintext the default: no USER, no PLAIN or LOGIN before TLS; SCRAM,
    // which sends no password, stays.
    assert!(
        !before.contains("USER") && before.contains("\r\nSASL SCRAM-SHA-256\r\n"),
        "{before}"
    );
    let mut t = stls(srv.addr, &certs.ca);
    let after = capa(&mut t);
    assert!(
        after.contains(&"USER".to_string())
            && after.contains(&"SASL PLAIN LOGIN SCRAM-SHA-256".to_string()),
        "{after:?}"
    );
    assert!(!after.contains(&"STLS".to_string()), "{after:?}");
    // After login CAPA announces what it did before (RFC 2449 section 5): still no STLS over TLS.
    t.cmd("USER alice");
    assert!(t.cmd("PASS secret").starts_with("+OK "));
    assert_eq!(capa(&mut t), after);
}

#[test]
fn plaintext_injection_after_stls_is_discarded() {
    let (_fx, certs, srv) = tls_server(&[]);
    let mut sock = tcp(srv.addr);
    assert!(plain_line(&mut sock).starts_with("+OK "));
    // One write, as an attacker on the path would append commands to the client's STLS.
    sock.write_all(b"STLS\r\nCAPA\r\nUSER alice\r\n").unwrap();
    assert_eq!(plain_line(&mut sock), "+OK begin TLS negotiation");
    let mut t = TlsClient::handshake(sock, &certs.ca).expect("handshake");
    // The first reply inside TLS answers our NOOP: neither CAPA nor USER was carried across.
    assert_eq!(t.cmd("NOOP"), "-ERR NOOP is not valid before login");
    assert_eq!(t.cmd("PASS secret"), "-ERR send USER first");
}

/// A client that sends its TLS handshake with STLS, before the reply, cannot complete it (what came
/// with STLS is discarded): it is closed at once, not left waiting for the login timer (a review's
/// finding: it waited the default 600 s).
#[test]
fn a_handshake_sent_with_stls_is_closed_at_once() {
    let (_fx, _certs, srv) = tls_server(&[]);
    let mut sock = tcp(srv.addr);
    assert!(plain_line(&mut sock).starts_with("+OK "));
    let started = std::time::Instant::now();
    // A TLS handshake record's header and the start of a ClientHello.
    sock.write_all(b"STLS\r\n\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x03\x03")
        .unwrap();
    assert_eq!(plain_line(&mut sock), "+OK begin TLS negotiation");
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    srv.wait_log(&["TLS handshake sent with STLS"], Duration::from_secs(5))
        .expect("logged");
}

#[test]
fn stls_twice_or_after_login_is_refused() {
    let (_fx, certs, srv) = tls_server(&[]);
    let mut t = stls(srv.addr, &certs.ca);
    assert_eq!(t.cmd("STLS"), "-ERR command not permitted when TLS active");
    let mut t = implicit(tls_addr(&srv), &certs.ca);
    assert_eq!(t.cmd("STLS"), "-ERR command not permitted when TLS active");
    // A plaintext server (no certificate): STLS is not offered, and after login it is a wrong-state command.
    let fx = standard();
    let plain = Server::start(&fx, &[]);
    let mut c = plain.login("alice", "secret");
    assert_eq!(c.cmd("STLS"), "-ERR STLS is not valid after login");
}

#[test]
fn no_plaintext_refuses_passwords_before_tls() {
    let (_fx, certs, srv) = tls_server(&[]);
    let mut c = srv.connect();
    c.greeting();
    for line in [
        "USER alice",
        "PASS secret",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
        "AUTH LOGIN",
    ] {
        assert_eq!(c.cmd(line), REFUSED, "{line}");
    }
    let mut t = stls(srv.addr, &certs.ca);
    t.cmd("USER alice");
    assert!(
        t.cmd("PASS secret")
            .starts_with("+OK alice's maildrop has 5 messages")
    );
}

#[test]
fn no_plaintext_can_be_turned_off_in_the_config_file() {
    let fx = standard();
    let certs = Certs::new(fx.root(), "a");
    let conf = fx.root().join("poplar.conf");
    std::fs::write(&conf, "no-plaintext = no\n").unwrap();
    let mut args = certs.args();
    args.extend(["-c".to_string(), conf.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let srv = Server::start(&fx, &args);
    let mut c = srv.connect();
    c.greeting();
    let capa = String::from_utf8(c.multi("CAPA")).unwrap();
    assert!(
        capa.contains("USER\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\nSTLS\r\n"),
        "{capa}"
    );
    c.login("alice", "secret");
}

#[test]
fn auth_plain_and_login_over_tls() {
    let (_fx, certs, srv) = tls_server(&[]);
    let addr = tls_addr(&srv);
    let cases: &[(&[&str], &str)] = &[
        (
            &["AUTH PLAIN AGFsaWNlAHNlY3JldA=="],
            "+OK alice's maildrop has 5 messages",
        ),
        (
            &["AUTH PLAIN", "AGFsaWNlAHNlY3JldA=="],
            "+OK alice's maildrop has 5 messages",
        ),
        (
            &["AUTH LOGIN", "YWxpY2U=", "c2VjcmV0"],
            "+OK alice's maildrop has 5 messages",
        ),
        (
            &["AUTH PLAIN AGFsaWNlAHdyb25n"],
            "-ERR [AUTH] invalid user name or password",
        ),
        (
            &["AUTH LOGIN", "YWxpY2U=", "d3Jvbmc="],
            "-ERR [AUTH] invalid user name or password",
        ),
        (&["AUTH LOGIN", "*"], "-ERR authentication cancelled"),
        (
            &["AUTH PLAIN", "%%%"],
            "-ERR invalid base64 in SASL response",
        ),
        (
            &["AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA=="],
            "-ERR [AUTH] authorization identity must be empty or the user name",
        ),
    ];
    for (lines, expected) in cases {
        let mut t = implicit(addr, &certs.ca);
        let mut last = String::new();
        for line in *lines {
            last = t.cmd(line);
        }
        assert!(last.starts_with(expected), "{lines:?} -> {last}");
    }
    let mut t = implicit(addr, &certs.ca);
    assert_eq!(t.multi("AUTH"), ["PLAIN", "LOGIN", "SCRAM-SHA-256"]);
    // A failed AUTH costs the failure delay, like a failed PASS.
    let started = Instant::now();
    assert!(
        t.cmd("AUTH PLAIN AGFsaWNlAHdyb25n")
            .starts_with("-ERR [AUTH]")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn sasl_responses_longer_than_a_command_line() {
    let mut fx = Fixture::new();
    let password = "p".repeat(250);
    fx.user("alice", &password);
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    assert_eq!(c.cmd("AUTH PLAIN"), "+ ");
    let message = format!("\0alice\0{password}");
    let response = base64(message.as_bytes());
    assert!(response.len() > 255);
    assert!(
        c.cmd(&response)
            .starts_with("+OK alice's maildrop has 0 messages")
    );
}

/// Standard base64, for building test responses without another dependency.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let (fx, certs, srv) = tls_server(&[]);
    let addr = tls_addr(&srv);
    let mut old = implicit(addr, &certs.ca);
    old.cmd("USER alice");
    assert!(old.cmd("PASS secret").starts_with("+OK "));
    let first = old.peer_cert();
    // New files in place (a renewal), then SIGHUP.
    let renewed = Certs::new(fx.root(), "b");
    std::fs::copy(&renewed.chain, &certs.chain).unwrap();
    std::fs::copy(&renewed.key, &certs.key).unwrap();
    hup(&srv);
    assert!(
        srv.wait_log(
            &["reload: configuration and passwd-file re-read"],
            Duration::from_secs(10)
        )
        .is_some()
    );
    let new = implicit(addr, &renewed.ca);
    assert_ne!(new.peer_cert(), first);
    // The session that started before the reload goes on.
    assert!(old.cmd("STAT").starts_with("+OK 5 "));
    // A broken key: the reload fails, is logged, and the current certificate stays.
    std::fs::write(&certs.key, "not a key\n").unwrap();
    hup(&srv);
    let logged = srv
        .wait_log(
            &["reload:", "keeping the running configuration"],
            Duration::from_secs(10),
        )
        .expect("log line");
    assert!(
        logged.contains(&certs.key.display().to_string()),
        "{logged}"
    );
    let mut still = implicit(addr, &renewed.ca);
    assert_eq!(still.cmd("QUIT"), "+OK poplar signing off");
}

/// A reload whose configuration no longer has a certificate cannot unbind the port 995 socket (that
/// waits for a restart): its connections are closed, never served in clear.
#[test]
fn a_reload_without_the_certificate_closes_the_implicit_tls_port() {
    let fx = standard();
    let certs = Certs::new(fx.root(), "a");
    let conf = fx.root().join("poplar.conf");
    let with_tls = format!(
        "tls-cert = {}\ntls-key = {}\nlisten-tls = 127.0.0.1:0\n",
        certs.chain.display(),
        certs.key.display()
    );
    std::fs::write(&conf, with_tls).unwrap();
    let srv = Server::start(&fx, &["-c", conf.to_str().unwrap()]);
    let addr = tls_addr(&srv);
    implicit(addr, &certs.ca);
    std::fs::write(&conf, "# no TLS any more\n").unwrap();
    hup(&srv);
    srv.wait_log(
        &["reload: configuration and passwd-file re-read"],
        Duration::from_secs(10),
    )
    .expect("reloaded");
    let mut sock = tcp(addr);
    let mut got = Vec::new();
    sock.read_to_end(&mut got).expect("closed, not timed out");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert!(
        srv.wait_log(
            &["implicit TLS listener without a certificate"],
            Duration::from_secs(5)
        )
        .is_some()
    );
}

fn hup(srv: &Server) {
    let st = Command::new("kill")
        .args(["-HUP", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn inetd_with_implicit_tls_over_a_socket_pair() {
    let fx = standard();
    let certs = Certs::new(fx.root(), "a");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new(common::BIN)
        .args(["--inetd", "--tls", "--passwd"])
        .arg(fx.passwd())
        .args(certs.args())
        .args(common::root_account_args())
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.try_clone().unwrap(),
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ours.set_read_timeout(Some(tls_support::TIMEOUT)).unwrap();
    let mut t = TlsClient::handshake(ours, &certs.ca).expect("handshake over the socket pair");
    assert!(t.line().starts_with("+OK poplar ready"));
    assert!(!capa(&mut t).contains(&"STLS".to_string()));
    t.cmd("USER alice");
    assert!(
        t.cmd("PASS secret")
            .starts_with("+OK alice's maildrop has 5 messages")
    );
    assert!(t.cmd("STAT").starts_with("+OK 5 "));
    assert!(t.cmd("QUIT").starts_with("+OK "));
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "inetd session did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn bad_certificate_or_key_stops_start_up() {
    let fx = standard();
    let certs = Certs::new(fx.root(), "a");
    let other = Certs::new(fx.root(), "b");
    let empty = fx.root().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = fx.root().join("missing.pem");
    // The same key under a passphrase, as `openssl pkey -aes256` writes it with `form` (PKCS#8, or
    // the older form with its `Proc-Type: 4,ENCRYPTED` header).
    let encrypt = |name: &str, form: &[&str]| {
        let out = fx.root().join(name);
        let made = std::process::Command::new("openssl")
            .arg("pkey")
            .args(form)
            .args(["-aes256", "-passout", "pass:secret", "-in"])
            .arg(&certs.key)
            .arg("-out")
            .arg(&out)
            .status()
            .unwrap();
        assert!(made.success());
        out
    };
    let encrypted = encrypt("encrypted.pem", &[]);
    let traditional = encrypt("traditional.pem", &["-traditional"]);
    let text = std::fs::read_to_string(&traditional).unwrap();
    assert!(text.contains("Proc-Type: 4,ENCRYPTED"), "{text}");
    let s = |p: &std::path::Path| p.display().to_string();
    let passwd = s(fx.passwd());
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![s(&missing), s(&certs.key)],
            format!("--tls-cert: {}: No such file or directory", s(&missing)),
        ),
        (
            vec![s(&empty), s(&certs.key)],
            format!("--tls-cert: {}: no certificate found", s(&empty)),
        ),
        (
            vec![s(&certs.chain), s(&empty)],
            format!("--tls-key: {}: no private key found", s(&empty)),
        ),
        // The key named by its own option, not the certificate's (a black-box trial's finding).
        (
            vec![s(&certs.chain), s(&missing)],
            format!("--tls-key: {}: No such file or directory", s(&missing)),
        ),
        (
            vec![s(&certs.chain), s(fx.passwd())],
            format!("--tls-key: {}: no private key found", s(fx.passwd())),
        ),
        (
            vec![s(&certs.chain), s(&certs.chain)],
            format!("--tls-key: {}: no private key found", s(&certs.chain)),
        ),
        (
            vec![s(&certs.chain), s(&other.key)],
            format!(
                "--tls-key: {}: private key does not match the certificate in {} (the server's \
                 own certificate must come first in it)",
                s(&other.key),
                s(&certs.chain)
            ),
        ),
        (
            vec![s(&certs.chain), s(&encrypted)],
            format!(
                "--tls-key: {}: the private key is encrypted, and the server cannot be given its \
                 passphrase",
                s(&encrypted)
            ),
        ),
        (
            vec![s(&certs.chain), s(&traditional)],
            format!(
                "--tls-key: {}: the private key is encrypted, and the server cannot be given its \
                 passphrase",
                s(&traditional)
            ),
        ),
    ];
    for (files, expected) in cases {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--passwd",
            &passwd,
            "--tls-cert",
            &files[0],
            "--tls-key",
            &files[1],
        ];
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("poplar: ") && stderr.contains(&expected),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let (code, _, stderr) = run(&["--listen-tls", "127.0.0.1:0", "--passwd", &passwd]);
    assert_eq!(
        (code, stderr.trim()),
        (2, "poplar: --listen-tls: needs tls-cert and tls-key")
    );
    let (code, _, stderr) = run(&["--tls-cert", &s(&certs.chain), "--passwd", &passwd]);
    assert_eq!(
        (code, stderr.trim()),
        (2, "poplar: --tls-cert: set without tls-key")
    );
}

#[test]
fn tls_below_1_2_is_refused() {
    let (_fx, _certs, srv) = tls_server(&[]);
    let addr = tls_addr(&srv).to_string();
    for (version, accepted) in [("-tls1_1", false), ("-tls1_2", true), ("-tls1_3", true)] {
        let out = Command::new("openssl")
            .args(["s_client", version, "-connect", &addr])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // A completed handshake prints the server's certificate; a refused one prints none.
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.contains("-----BEGIN CERTIFICATE-----"),
            accepted,
            "{version}: {text}"
        );
    }
}

// Real clients.

fn curl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl (apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_stls_pop3s_and_sasl() {
    let (_fx, certs, srv) = tls_server(&[]);
    let ca = certs.ca.display().to_string();
    let plain = format!("pop3://localhost:{}/1", srv.addr.port());
    let tls_port = tls_addr(&srv).port();
    let pop3s = format!("pop3s://localhost:{tls_port}/");
    let (ok, out, err) = curl(&["--ssl-reqd", "--cacert", &ca, "-u", "alice:secret", &plain]);
    assert!(
        ok && out.contains("Subject: one") && out.contains("World"),
        "{out} {err}"
    );
    let (ok, out, err) = curl(&["--cacert", &ca, "-u", "alice:secret", &pop3s]);
    assert!(ok && out.starts_with("1 "), "{out} {err}");
    for mech in ["AUTH=PLAIN", "AUTH=LOGIN", "AUTH=+APOP"] {
        let (ok, out, err) = curl(&[
            "--cacert",
            &ca,
            "--login-options",
            mech,
            "-u",
            "alice:secret",
            &pop3s,
        ]);
        assert_eq!(ok, mech != "AUTH=+APOP", "{mech}: {out} {err}");
    }
    let (ok, _, _) = curl(&[
        "--cacert",
        &ca,
        "--login-options",
        "AUTH=PLAIN",
        "-u",
        "alice:wrong",
        &pop3s,
    ]);
    assert!(!ok);
    // Without STLS, curl's USER is refused by the no-plaintext default.
    let (ok, _, _) = curl(&["-u", "alice:secret", &plain]);
    assert!(!ok);
}

#[test]
fn poplib_stls_and_pop3_ssl() {
    let (_fx, certs, srv) = tls_server(&[]);
    let script = r#"
import poplib, ssl, sys
ca, port, tls_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
p = poplib.POP3("localhost", port, timeout=10)
assert "STLS" in p.capa() and "USER" not in p.capa()
p.stls(context=ctx)
caps = p.capa()
assert "STLS" not in caps and caps["SASL"] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"], caps
p.user("alice"); p.pass_("secret")
print("stls", p.stat())
p.quit()
p = poplib.POP3_SSL("localhost", tls_port, context=ctx, timeout=10)
p.user("alice"); p.pass_("secret")
print("pop3_ssl", p.stat(), p.retr(1)[1][1])
p.quit()
p = poplib.POP3_SSL("localhost", tls_port, context=ctx, timeout=10)
print("auth", p._shortcmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==").decode())
p.quit()
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            &certs.ca.display().to_string(),
            &srv.addr.port().to_string(),
        ])
        .arg(tls_addr(&srv).port().to_string())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stls (5, "), "{stdout}");
    assert!(
        stdout.contains("pop3_ssl (5, ") && stdout.contains("b'Subject: one'"),
        "{stdout}"
    );
    assert!(
        stdout.contains("auth +OK alice's maildrop has 5 messages"),
        "{stdout}"
    );
    // The login lines say how each login authenticated, and that TLS protected it.
    let logins: Vec<String> = srv
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("login user=alice"))
        .collect();
    let methods: Vec<&str> = logins
        .iter()
        .map(|l| &l[l.find(" method=").expect("method field") + 1..])
        .collect();
    assert_eq!(
        methods,
        [
            "method=USER tls=yes",
            "method=USER tls=yes",
            "method=AUTH-PLAIN tls=yes"
        ],
        "{logins:?}"
    );
}

#[test]
fn openssl_s_client_starttls_pop3() {
    let (_fx, certs, srv) = tls_server(&[]);
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-starttls",
            "pop3",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&certs.ca)
        .args([
            "-connect",
            &srv.addr.to_string(),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    let mut stdin = child.stdin.take().unwrap();
    // s_client sends its input only after the handshake; QUIT makes the server close, ending s_client.
    stdin
        .write_all(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl s_client did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("+OK 5 ") && text.contains("+OK poplar signing off"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_silent_client_cannot_hold_a_handshake_open() {
    let (_fx, _certs, srv) = tls_server(&["--timeout", "1"]);
    let mut sock = tcp(tls_addr(&srv));
    let started = Instant::now();
    let mut buf = [0u8; 64];
    // Nothing sent: the server's handshake read times out and the connection closes, with no plaintext.
    let n = std::io::Read::read(&mut sock, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A client that sends its TLS records a byte at a time, each byte well within the timeout, still
/// meets the login deadline: during the handshake on the TLS port, after STLS, and while sending a
/// command inside TLS (a record of a `USER` line, trickled).
#[test]
fn a_trickling_client_cannot_stretch_the_login_deadline() {
    let (_fx, certs, srv) = tls_server(&["--login-timeout", "2"]);
    // The start of a ClientHello record: handshake type, version, a length of 512 octets to come.
    let hello: Vec<u8> = [0x16, 0x03, 0x01, 0x02, 0x00]
        .into_iter()
        .chain(std::iter::repeat_n(0x01, 512))
        .collect();
    let trickle = |mut sock: std::net::TcpStream, bytes: &[u8]| {
        let started = Instant::now();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 1];
        for &b in bytes.iter().take(40) {
            if sock.write_all(&[b]).is_err() {
                break;
            }
            // Closed by the server: a read returns 0 or fails other than by our own timeout.
            match sock.read(&mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                _ => {}
            }
        }
        started.elapsed()
    };
    let on_tls_port = trickle(tcp(tls_addr(&srv)), &hello);
    assert!(on_tls_port < Duration::from_secs(5), "{on_tls_port:?}");
    let mut sock = tcp(srv.addr);
    assert!(plain_line(&mut sock).starts_with("+OK"));
    sock.write_all(b"STLS\r\n").unwrap();
    assert!(plain_line(&mut sock).starts_with("+OK"));
    let after_stls = trickle(sock, &hello);
    assert!(after_stls < Duration::from_secs(5), "{after_stls:?}");
    // Inside TLS, before login: an application-data record promising 512 octets, trickled.
    let mut t = stls(srv.addr, &certs.ca);
    assert!(!capa(&mut t).is_empty());
    let record: Vec<u8> = [0x17, 0x03, 0x03, 0x02, 0x00]
        .into_iter()
        .chain(std::iter::repeat_n(0x01, 512))
        .collect();
    let inside = trickle(t.socket().try_clone().unwrap(), &record);
    assert!(inside < Duration::from_secs(5), "{inside:?}");
}

/// Reads what is left of a TLS session: true when it ended with the server's close_notify (a clean
/// end), false when the connection just closed under it (a truncation attack looks the same).
fn ends_with_close_notify(c: &mut TlsClient<std::net::TcpStream>) -> bool {
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).is_ok()
}

/// Every end the server chooses is announced with a close_notify, not only QUIT's: the session closed
/// after the failed logins allowed, by the login timer, and after the client's own close_notify.
#[test]
fn the_server_closes_every_tls_session_with_close_notify() {
    let (_fx, certs, srv) = tls_server(&["--max-auth-attempts", "1", "--login-timeout", "1"]);
    let addr = tls_addr(&srv);
    let mut c = implicit(addr, &certs.ca);
    assert_eq!(c.cmd("USER alice"), "+OK send PASS");
    assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    assert!(
        ends_with_close_notify(&mut c),
        "after the last failed login"
    );
    let mut c = implicit(addr, &certs.ca);
    assert_eq!(c.line(), "-ERR login timer expired, closing");
    assert!(ends_with_close_notify(&mut c), "after the login timer");
    let mut c = implicit(addr, &certs.ca);
    c.close_notify();
    assert!(
        ends_with_close_notify(&mut c),
        "after the client's close_notify"
    );
    let mut c = implicit(addr, &certs.ca);
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(ends_with_close_notify(&mut c), "after QUIT");
}

/// QUIT with more commands behind it, more than the server reads before it answers: the server reads
/// them through TLS after its close_notify, and the client gets the reply and a clean end.
#[test]
fn quit_with_input_behind_it_ends_with_close_notify() {
    let (_fx, certs, srv) = tls_server(&[]);
    let mut c = implicit(tls_addr(&srv), &certs.ca);
    c.send(format!("QUIT\r\n{}", "NOOP\r\n".repeat(5000)).as_bytes());
    // The reply, and the server's close, reach us before we read anything.
    std::thread::sleep(Duration::from_millis(300));
    let mut rest = Vec::new();
    let ended = c.read_to_end(&mut rest);
    assert_eq!(String::from_utf8_lossy(&rest), "+OK poplar signing off\r\n");
    assert!(ended.is_ok(), "{ended:?}");
}

/// A failed handshake is logged at info, with the client's address and rustls's reason, whether on the
/// TLS port or after STLS: it is what an admin needs when a client cannot connect.
#[test]
fn a_failed_handshake_is_logged_at_info_with_its_reason() {
    let (fx, _certs, srv) = tls_server(&[]);
    let logged = |sock: &std::net::TcpStream, reason: &str| {
        let peer = format!("peer={}: ", sock.local_addr().unwrap());
        srv.wait_log(
            &[&peer, "TLS handshake failed: ", reason],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no {peer}{reason} line: {:?}", srv.stderr_lines()))
    };
    // A plaintext client on the TLS port.
    let mut plain = tcp(tls_addr(&srv));
    plain.write_all(b"CAPA\r\n").unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    let line = logged(&plain, "received corrupt message");
    assert!(line.contains(" INFO  poplar::conn] peer="), "{line}");
    // A client that does not trust the certificate, after STLS.
    let mut sock = tcp(srv.addr);
    assert!(plain_line(&mut sock).starts_with("+OK "));
    sock.write_all(b"STLS\r\n").unwrap();
    assert_eq!(plain_line(&mut sock), "+OK begin TLS negotiation");
    let probe = sock.try_clone().unwrap();
    let other = Certs::new(fx.root(), "other");
    assert!(TlsClient::handshake(sock, &other.ca).is_err());
    let line = logged(&probe, "UnknownCA");
    assert!(line.contains(" INFO  poplar::conn] peer="), "{line}");
}

/// At debug level too, a failed handshake is logged once: the session's end does not repeat it.
#[test]
fn a_failed_handshake_is_logged_once_at_debug_level() {
    let (_fx, _certs, srv) = tls_server(&["--log-level", "debug"]);
    let mut plain = tcp(tls_addr(&srv));
    plain.write_all(b"CAPA\r\n").unwrap();
    let _ = plain.read_to_end(&mut Vec::new());
    let peer = format!("peer={} ", plain.local_addr().unwrap());
    // The session's end line comes after anything the session logged.
    srv.wait_log(&[&peer, "result=error"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no session end: {:?}", srv.stderr_lines()));
    let failures = srv
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("TLS handshake failed"))
        .collect::<Vec<_>>();
    assert_eq!(failures.len(), 1, "{failures:#?}");
}

/// Every way a session can end gives back its places under `--max-sessions` and `--max-per-ip`: closed
/// at once, QUIT, a failed TLS handshake on either port, a bad or missing PROXY header, the login
/// deadline, a reset after login. Afterwards the two places of each cap are free again.
#[test]
fn every_session_end_gives_back_its_admission_places() {
    use std::net::{SocketAddr, TcpStream};
    let (_fx, _certs, srv) = tls_server(&[
        "--max-sessions",
        "2",
        "--max-per-ip",
        "2",
        "--login-timeout",
        "1",
        "--no-plaintext=no",
        "--proxy-from",
        "127.0.0.2",
    ]);
    let (plain, tls) = (srv.addr, tls_addr(&srv));
    // From 127.0.0.2, the load balancer of --proxy-from (all of 127/8 is loopback on Linux).
    let from_balancer = || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
        s.bind(&local.into()).unwrap();
        s.connect_timeout(&plain.into(), Duration::from_secs(5))
            .unwrap();
        let s = TcpStream::from(s);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    // Reads until the server closes (or the read timeout), ignoring what it says.
    let drain = |mut s: TcpStream| {
        let _ = s.read_to_end(&mut Vec::new());
    };
    // A session that ended a moment ago may still hold its place, so a greeting can be a refusal here;
    // the steps after the greeting are skipped then.
    let greeted = || {
        let mut s = tcp(plain);
        plain_line(&mut s).starts_with("+OK").then_some(s)
    };
    for _ in 0..3 {
        drop(tcp(plain));
        if let Some(mut s) = greeted() {
            let _ = s.write_all(b"QUIT\r\n");
            drain(s);
        }
        let mut s = tcp(tls);
        let _ = s.write_all(b"not a TLS record\r\n");
        drain(s);
        drop(tcp(tls));
        if let Some(mut s) = greeted() {
            let _ = s.write_all(b"STLS\r\n");
            plain_line(&mut s);
            let _ = s.write_all(b"\x16\x03\x01\x00\x05xxxxx");
            drain(s);
        }
        let mut s = from_balancer();
        let _ = s.write_all(b"PROXY NONSENSE\r\n");
        drain(s);
        drain(from_balancer()); // no header: the deadline ends it
        drain(tcp(plain)); // no login: the deadline ends it
        if let Some(mut s) = greeted() {
            let _ = s.write_all(b"USER alice\r\nPASS secret\r\n");
            plain_line(&mut s);
            plain_line(&mut s);
            // SO_LINGER 0: the close is a reset.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }
    // The last ends may take a moment to reach the accounting; a leak never frees the places.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (mut a, mut b) = (tcp(plain), tcp(plain));
        let both = plain_line(&mut a).starts_with("+OK") && plain_line(&mut b).starts_with("+OK");
        if both {
            break;
        }
        assert!(Instant::now() < deadline, "admission places leaked");
        std::thread::sleep(Duration::from_millis(100));
    }
}
