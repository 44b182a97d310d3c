//! AUTH SCRAM-SHA-256 against the real binary, the client written in Python from RFC 5802 with hashlib
//! and hmac (an implementation independent of the server's): {PLAIN} and {SCRAM-SHA-256} users, a wrong
//! password, unknown users whose server-first message must look like a real user's. Fails if python3
//! is missing (CI installs it).

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Client, Inetd, Server, standard};
use std::process::Command;
use std::time::Duration;

/// `hash PASSWORD SALT_B64`: prints the `{SCRAM-SHA-256}` passwd-file value, as doveadm pw writes it.
/// `login HOST PORT USER PASSWORD`: one SCRAM-SHA-256 login, then STAT and QUIT; prints what it saw.
const CLIENT: &str = r#"
import base64, hashlib, hmac, os, socket, sys
b64 = lambda b: base64.b64encode(b).decode()
def keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return salted, client_key, hashlib.sha256(client_key).digest(), hmac.new(salted, b"Server Key", "sha256").digest()
if sys.argv[1] == "hash":
    salt = base64.b64decode(sys.argv[3])
    _, _, stored_key, server_key = keys(sys.argv[2], salt, 4096)
    print("{SCRAM-SHA-256}4096,%s,%s,%s" % (b64(salt), b64(stored_key), b64(server_key)))
    sys.exit(0)
host, port, user, password = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rb")
def line():
    l = f.readline(4096)
    if not l.endswith(b"\r\n"):
        sys.exit("no line: %r" % l)
    return l[:-2].decode()
def send(text):
    s.sendall(text.encode() + b"\r\n")
line()
client_nonce = b64(os.urandom(18))
bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), client_nonce)
send("AUTH SCRAM-SHA-256 " + b64(("n,," + bare).encode()))
reply = line()
if not reply.startswith("+ "):
    print("first", reply)
    sys.exit(0)
first = base64.b64decode(reply[2:]).decode()
attrs = dict(a.split("=", 1) for a in first.split(","))
assert attrs["r"].startswith(client_nonce) and len(attrs["r"]) > len(client_nonce), first
print("server-first", "r=<client nonce>%s,s=%s,i=%s" % (attrs["r"][len(client_nonce):], attrs["s"], attrs["i"]))
salted, client_key, stored_key, server_key = keys(password, base64.b64decode(attrs["s"]), int(attrs["i"]))
without_proof = "c=biws,r=" + attrs["r"]
auth = ",".join([bare, first, without_proof]).encode()
signature = hmac.new(stored_key, auth, "sha256").digest()
proof = bytes(a ^ b for a, b in zip(client_key, signature))
send(b64((without_proof + ",p=" + b64(proof)).encode()))
reply = line()
if not reply.startswith("+ "):
    print("final", reply)
    sys.exit(0)
expected = "v=" + b64(hmac.new(server_key, auth, "sha256").digest())
print("server-final", "ok" if base64.b64decode(reply[2:]).decode() == expected else "WRONG " + reply)
send("")
print("login", line())
send("STAT")
print("stat", line())
send("QUIT")
print("quit", line())
"#;

/// Runs the Python client with `args`, within 30 s; returns its output lines.
fn python(args: &[&str]) -> Vec<String> {
    let (code, out, err) = common::run_tool(
        Command::new("python3").args(["-c", CLIENT]).args(args),
        Duration::from_secs(30),
    );
    let stdout = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "python3 {args:?}: {stdout}{err}");
    stdout.lines().map(str::to_string).collect()
}

fn scram_login(srv: &Server, user: &str, password: &str) -> Vec<String> {
    let port = srv.addr.port().to_string();
    python(&["login", "127.0.0.1", &port, user, password])
}

/// The `s=` and `i=` of a printed server-first line, and the length of the server's nonce.
fn shape(server_first: &str) -> (usize, String, String) {
    let rest = server_first
        .strip_prefix("server-first r=<client nonce>")
        .unwrap_or_else(|| panic!("{server_first}"));
    let fields: Vec<&str> = rest.split(',').collect();
    assert_eq!(fields.len(), 3, "{server_first}");
    (fields[0].len(), fields[1].into(), fields[2].into())
}

const KNOWN_SALT: &[u8] = b"sixteen octets!!";

#[test]
fn plain_and_stored_users_log_in_and_others_fail_alike() {
    let mut fx = standard();
    let salt = STANDARD.encode(KNOWN_SALT);
    let stored = python(&["hash", "carol's pw", &salt]);
    fx.user_with("carol", &stored[0]);
    let srv = Server::start(&fx, &["--apop", "--auth-failure-delay", "0"]);

    // A {PLAIN} user: the salt is derived, 16 octets, and 4096 iterations.
    let alice = scram_login(&srv, "alice", "secret");
    let (nonce_len, alice_salt, iterations) = shape(&alice[0]);
    assert!(nonce_len >= 24, "{alice:?}");
    assert_eq!(STANDARD.decode(&alice_salt[2..]).unwrap().len(), 16);
    assert_eq!(iterations, "i=4096");
    assert_eq!(alice[1], "server-final ok");
    assert!(alice[2].starts_with("login +OK alice's maildrop has 5 messages"));
    assert!(alice[3].starts_with("stat +OK 5 "), "{alice:?}");
    assert!(alice[4].starts_with("quit +OK"), "{alice:?}");
    // The same salt the next time: it is not drawn per attempt.
    assert_eq!(
        shape(&scram_login(&srv, "alice", "secret")[0]).1,
        alice_salt
    );

    // A {SCRAM-SHA-256} user: the stored salt; and USER/PASS work for it, APOP does not.
    let carol = scram_login(&srv, "carol", "carol's pw");
    assert_eq!(
        shape(&carol[0]),
        (nonce_len, format!("s={salt}"), iterations.clone())
    );
    assert_eq!(carol[1], "server-final ok");
    assert!(carol[2].starts_with("login +OK carol's maildrop has 0 messages"));
    let mut c = srv.login("carol", "carol's pw");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let mut c = srv.connect();
    let greeting = c.greeting();
    let timestamp = &greeting[greeting.find('<').unwrap()..];
    let digest = common::md5_hex(format!("{timestamp}carol's pw").as_bytes());
    assert!(
        c.cmd(&format!("APOP carol {digest}"))
            .starts_with("-ERR [AUTH]")
    );

    // A wrong password fails after the client-final, like a wrong PASS.
    let wrong = scram_login(&srv, "alice", "wrong");
    assert_eq!(shape(&wrong[0]).1, alice_salt);
    assert_eq!(wrong[1], "final -ERR [AUTH] invalid user name or password");

    // Unknown users: a server-first message of the same shape, its salt stable across attempts.
    let nobody = scram_login(&srv, "nobody", "secret");
    let (len, nobody_salt, i) = shape(&nobody[0]);
    assert_eq!(
        (len, nobody_salt.len(), i),
        (nonce_len, alice_salt.len(), iterations)
    );
    assert_ne!(nobody_salt, alice_salt);
    assert_eq!(nobody[1], "final -ERR [AUTH] invalid user name or password");
    assert_eq!(shape(&scram_login(&srv, "nobody", "x")[0]).1, nobody_salt);

    let within = Duration::from_secs(10);
    for needles in [
        &["login user=alice", "method=AUTH-SCRAM-SHA-256"][..],
        &["login user=carol", "method=AUTH-SCRAM-SHA-256"],
        &["login failed user=alice peer=127.0.0.1:", "attempt=1"],
        &["login failed user=nobody peer=127.0.0.1:", "attempt=1"],
    ] {
        assert!(
            srv.wait_log(needles, within).is_some(),
            "{needles:?}: {:?}",
            srv.stderr_lines()
        );
    }
}

/// Writes a `scram-salt-key` file of `contents`, mode 600, in the fixture's root.
fn salt_key_file(fx: &common::Fixture, name: &str, contents: &[u8]) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = fx.root().join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.display().to_string()
}

/// The `s=` of the server-first message `c` gets for `user` (the exchange is left there).
fn salt_sent(c: &mut Client, user: &str) -> String {
    let reply = c.cmd(&format!(
        "AUTH SCRAM-SHA-256 {}",
        STANDARD.encode(format!("n,,n={user},r=abcdefgh"))
    ));
    let first = STANDARD
        .decode(
            reply
                .strip_prefix("+ ")
                .unwrap_or_else(|| panic!("{reply}")),
        )
        .unwrap();
    let first = String::from_utf8(first).unwrap();
    let salt = first.split(',').find(|f| f.starts_with("s="));
    salt.unwrap_or_else(|| panic!("{first}")).to_string()
}

/// The salts of alice and nobody from one `--inetd` process run with `extra`.
fn inetd_salts(fx: &common::Fixture, extra: &[&str]) -> [String; 2] {
    let (_inetd, mut c) = Inetd::start(fx, extra);
    c.greeting();
    let alice = salt_sent(&mut c, "alice");
    assert!(c.cmd("*").starts_with("-ERR"));
    [alice, salt_sent(&mut c, "nobody")]
}

/// With `scram-salt-key`, the derived salts are the key file's: a restart (under inetd, every
/// connection is a new process) gives the same ones, for known and unknown names alike, so they stay as
/// stable as a stored salt; they do not follow the passwd-file, and another key gives other ones.
#[test]
fn derived_salts_outlive_the_process_with_a_salt_key_file() {
    let mut fx = standard();
    let key = salt_key_file(&fx, "scram.key", &[0x5a; 32]);
    let salts = |fx: &common::Fixture, key: &str| {
        let mut srv = Server::start(fx, &["--auth-failure-delay", "0", "--scram-salt-key", key]);
        let salts = ["alice", "nobody"].map(|user| shape(&scram_login(&srv, user, "x")[0]).1);
        assert_eq!(srv.terminate(Duration::from_secs(10)), Some(0));
        salts
    };
    let first = salts(&fx, &key);
    assert_eq!(salts(&fx, &key), first, "after a restart");
    let args = ["--auth-failure-delay", "0", "--scram-salt-key", &key];
    assert_eq!(inetd_salts(&fx, &args), first, "in an inetd process");
    assert_eq!(inetd_salts(&fx, &args), first, "in another inetd process");
    fx.user("frank", "frank pw");
    assert_eq!(salts(&fx, &key), first, "after the passwd-file changed");
    let other = salt_key_file(&fx, "other.key", &[0x5b; 32]);
    let changed = salts(&fx, &other);
    assert_ne!(changed[0], first[0], "under another key");
    assert_ne!(changed[1], first[1], "under another key");
    // The file is read again on SIGHUP, as the passwd-file is.
    let srv = Server::start(
        &fx,
        &["--auth-failure-delay", "0", "--scram-salt-key", &key],
    );
    assert_eq!(shape(&scram_login(&srv, "alice", "x")[0]).1, first[0]);
    salt_key_file(&fx, "scram.key", &[0x5b; 32]);
    srv.signal(nix::sys::signal::Signal::SIGHUP);
    let reloaded = srv.wait_log(
        &["reload: configuration and passwd-file re-read"],
        Duration::from_secs(10),
    );
    assert!(reloaded.is_some(), "{:?}", srv.stderr_lines());
    assert_eq!(shape(&scram_login(&srv, "alice", "x")[0]).1, changed[0]);
    // A key file others could read is refused at start-up, by name.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
    let passwd = fx.passwd().display().to_string();
    let (code, _, err) = common::run(&[
        "--listen",
        "127.0.0.1:0",
        "--passwd",
        &passwd,
        "--scram-salt-key",
        &other,
    ]);
    assert_eq!(
        (code, err.trim_end()),
        (
            2,
            format!(
                "poplar: --scram-salt-key: {other}: readable or writable by group or others \
                 (mode 0644); chmod 600 it"
            )
            .as_str()
        )
    );
}

/// The salts sent before any proof cannot be computed from the passwd-file's contents, which a client
/// can guess (one `{PLAIN}` line is a name and a password): they were once keyed with them, so that each
/// guess cost two HMACs offline. Without `scram-salt-key` the key is drawn per process, so under inetd
/// they differ from one connection to the next.
#[test]
fn derived_salts_cannot_be_computed_from_the_passwd_file() {
    use poplar::auth::scram::hmac;
    let fx = standard();
    let srv = Server::start(&fx, &["--auth-failure-delay", "0"]);
    let contents = std::fs::read(fx.passwd()).unwrap();
    let guessed_key = hmac(b"poplar SCRAM-SHA-256 salt key", &contents);
    for user in ["alice", "nobody"] {
        let mut c = srv.connect();
        c.greeting();
        let sent = salt_sent(&mut c, user);
        let guessed = format!(
            "s={}",
            STANDARD.encode(&hmac(&guessed_key, user.as_bytes())[..16])
        );
        assert_ne!(sent, guessed, "{user}'s salt follows from the passwd-file");
    }
    let args = ["--auth-failure-delay", "0"];
    let (one, two) = (inetd_salts(&fx, &args), inetd_salts(&fx, &args));
    assert_ne!(one[0], two[0]);
    assert_ne!(one[1], two[1]);
}

/// The `secs=` of a session-end line.
fn session_secs(line: &str) -> f64 {
    let secs = line.split(' ').find_map(|f| f.strip_prefix("secs="));
    secs.unwrap_or_else(|| panic!("{line}")).parse().unwrap()
}

/// A client that sends its client-first and then closes the connection, or stays silent until the
/// login timer ends it, had a key derivation made for the name: that is a failed login, logged for
/// fail2ban as any other, and its delay holds the session (and its place) before it ends.
#[test]
fn a_connection_ended_after_the_server_first_is_a_failed_login() {
    let fx = standard();
    let srv = Server::start(&fx, &["--auth-failure-delay", "1", "--login-timeout", "2"]);
    let within = Duration::from_secs(10);
    // The user, how the session ends, and when it ends at the earliest: after the delay (1 s for a
    // first failure), counted from the close or from the login timer (2 s).
    let cases = [
        ("alice", "result=closed", 1.0),
        ("nobody", "result=timeout", 3.0),
    ];
    for (user, result, least) in cases {
        let mut c = srv.connect();
        c.greeting();
        salt_sent(&mut c, user);
        if result == "result=closed" {
            drop(c);
        } else {
            // Silent until the login timer: its -ERR, then the end.
            assert!(c.closed_within(Duration::from_secs(10)), "{user}");
        }
        let failed = format!("login failed user={user} peer=127.0.0.1:");
        let end = srv.wait_log(&["session end user=- ", result], within);
        let lines = srv.stderr_lines();
        let (Some(end), Some(failed_at)) = (end, lines.iter().position(|l| l.contains(&failed)))
        else {
            panic!("{user}: {lines:?}");
        };
        assert!(lines[failed_at].ends_with(" attempt=1"), "{lines:?}");
        let end_at = lines.iter().position(|l| *l == end).unwrap();
        assert!(failed_at < end_at, "{lines:?}");
        assert!(session_secs(&end) >= least, "{end}");
    }
}

/// After a good proof, the same checks as any login, made before the server-final is sent (which
/// would tell the client its password was right): `allow_nets` refuses it exactly as a wrong password
/// is refused, `nologin` with its reason, and `lowercase-users` finds the name.
#[test]
fn policy_and_lowercase_users_apply_after_the_proof() {
    let mut fx = standard();
    fx.user("dave", "dave pw").user("erin", "erin pw");
    fx.extra("dave", "allow_nets=192.0.2.0/24")
        .extra("erin", "nologin reason=Moved_to_IMAP");
    let srv = Server::start(&fx, &["--lowercase-users", "--auth-failure-delay", "0"]);
    let refused = "final -ERR [AUTH] invalid user name or password";
    let cases = [
        ("dave", "dave pw", refused),
        ("dave", "wrong", refused),
        ("erin", "erin pw", "final -ERR [AUTH] Moved_to_IMAP"),
        ("Alice", "secret", "server-final ok"),
    ];
    for (user, password, want) in cases {
        let lines = scram_login(&srv, user, password);
        assert_eq!(lines[1], want, "{user}: {lines:?}");
    }
    let alice = scram_login(&srv, "ALICE", "secret");
    assert!(
        alice[2].starts_with("login +OK alice's maildrop has 5 messages"),
        "{alice:?}"
    );
    assert!(
        srv.wait_log(
            &["user=dave", "outside the user's allow_nets"],
            Duration::from_secs(10)
        )
        .is_some(),
        "{:?}",
        srv.stderr_lines()
    );
}

/// A passwd-file user with a crypt hash, as `openssl passwd -6 -salt abcdefgh secret` prints it.
const CRYPT_SECRET: &str = "{SHA512-CRYPT}$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.";

/// SCRAM-SHA-256 is offered only while every user who can log in could do so with it: clients that pick
/// the strongest mechanism listed (mpop does) would otherwise fail, where PLAIN works, for a user whose
/// password is a crypt hash. The offer follows the passwd-file when it is re-read.
#[test]
fn scram_is_offered_only_when_every_user_can_use_it() {
    let mut fx = common::Fixture::new();
    fx.user_with("frank", CRYPT_SECRET);
    let offer = |srv: &Server| {
        let mut c = srv.connect();
        c.greeting();
        let capa = String::from_utf8(c.multi("CAPA")).unwrap();
        let sasl = capa
            .lines()
            .find(|l| l.starts_with("SASL"))
            .map(str::to_string);
        let list = String::from_utf8(c.multi("AUTH")).unwrap();
        let auth = c.cmd("AUTH SCRAM-SHA-256");
        (sasl, list, auth)
    };
    // Without TLS and with passwords refused in the clear, no mechanism is left: no SASL line.
    let strict = Server::start(&fx, &["--no-plaintext"]);
    assert_eq!(
        offer(&strict),
        (
            None,
            ".\r\n".to_string(),
            "-ERR unsupported SASL mechanism".to_string()
        )
    );
    let srv = Server::start(&fx, &["--auth-failure-delay", "0"]);
    assert_eq!(
        offer(&srv),
        (
            Some("SASL PLAIN LOGIN".to_string()),
            "PLAIN\r\nLOGIN\r\n.\r\n".to_string(),
            "-ERR unsupported SASL mechanism".to_string()
        )
    );
    let mut c = srv.login("frank", "secret");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    // A {PLAIN} user beside the crypt hash: still not offered, or frank's mpop would pick it and fail.
    fx.user("alice", "secret");
    assert_eq!(
        offer(&srv).0,
        Some("SASL PLAIN LOGIN".to_string()),
        "offered with a crypt hash in the file"
    );
    // Once every user who can log in could use it (frank locked), it is.
    fx.extra("frank", "fail");
    assert_eq!(
        offer(&srv),
        (
            Some("SASL PLAIN LOGIN SCRAM-SHA-256".to_string()),
            "PLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n.\r\n".to_string(),
            "+ ".to_string()
        )
    );
}
