//! USER/PASS and APOP over the wire, and users from the passwd-file: every password scheme, locked accounts, refused user names, the uniform
//! failure delay, APOP limited to `{PLAIN}`, and re-reading the file when it changes.

mod common;

use common::{Fixture, Server, apop_timestamp, md5_hex, standard};
use std::fs;
use std::time::{Duration, Instant, SystemTime};

/// `openssl passwd -6 -salt saltsalt secret` and `openssl passwd -5 -salt saltsalt secret`.
const SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
const SHA256: &str = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";
/// `doveadm pw -s SCHEME -p secret` (Dovecot 2.3): its Argon2 and digest schemes, as a Dovecot passwd-file
/// holds them.
const DOVEADM_HASHES: [(&str, &str); 9] = [
    (
        "argon2id",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$l05p99rnPAY+eoic18nZ9Q$4xlWI1BVadp1KtlSyTWht42E7a5/eA6OIUg/FSP1UKo",
    ),
    (
        "argon2i",
        "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$OF3I0fxId4IvFFolCWywJg$VSxY9qkM+JkqVeOwWwYoAsTG7FrFEu47IOD+UPr91uQ",
    ),
    (
        "ssha512",
        "{SSHA512}SgZl8rwff2N+RkiU2+x+Cb9NqwPDT/TWDYSmzgS+8n894PGA7nBEU5M+XfqW7AT2mkHsoHpcvbEYG/yY5L2Jtk+y2Bw=",
    ),
    ("ssha", "{SSHA}41pj1YuAaMGRt8/Xdwun6lA+gXrJTCgL"),
    (
        "sha256",
        "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
    ),
    (
        "sha256hex",
        "{SHA256.HEX}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
    ),
    ("plainmd5", "{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69"),
    ("smd5", "{SMD5}Lo0PHUrRxXo9Uf1JrG9jP7Vz1pg="),
    (
        "pbkdf2",
        "{PBKDF2}$1$12HHPVyP7PzKSLa4$5000$4b4d17ab9febd7c8c3fa6b5d97d16a1dd0bab172",
    ),
];

/// For tests where failed logins are incidental: no failure delay (`failures_are_delayed` keeps the
/// default), and no cap of 10 sessions per address: `try_logins` opens a round of connections right
/// after another, and the server may not yet have seen the last round's clients go.
const QUICK: [&str; 4] = ["--auth-failure-delay", "0", "--max-per-ip", "100"];

/// Tries every (user, password) pair on its own connection, concurrently (each failure costs the server's
/// failure delay); returns the PASS replies in order.
fn try_logins(srv: &Server, pairs: &[(&str, &str)]) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|&(u, p)| s.spawn(move || try_login(srv, u, p)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// USER/PASS, returning the PASS reply.
fn try_login(srv: &Server, user: &str, pass: &str) -> String {
    let mut c = srv.connect();
    c.greeting();
    c.cmd(&format!("USER {user}"));
    c.cmd(&format!("PASS {pass}"))
}

#[test]
fn password_schemes() {
    let mut fx = Fixture::new();
    let bcrypt = bcrypt::hash("secret", 4).unwrap();
    fx.user_with("s512", &format!("{{SHA512-CRYPT}}{SHA512}"))
        .user_with("s256", &format!("{{SHA256-CRYPT}}{SHA256}"))
        .user_with("blf", &format!("{{BLF-CRYPT}}{bcrypt}"))
        .user_with("bare6", SHA512)
        .user_with("bare5", SHA256)
        .user_with("bare2b", &bcrypt);
    for (user, field) in DOVEADM_HASHES {
        fx.user_with(user, field);
    }
    let srv = Server::start(&fx, &QUICK);
    // libxcrypt's crypt(3) with salts the RustCrypto verifier does not take: '_', and none.
    fx.user_with(
        "odd6",
        "{SHA512-CRYPT}$6$a_b$U7WYaekE9n9fcvcAwBw87x0UmRQTlbEGT0yySre2p/BX2PzstHtfdq5VkUFjKxWXO7Os6csrg6Kk8ldycC0Zo0",
    )
    .user_with("odd5", "$5$$o1w7HPzHt8gHmL5zUzDkRqt6Az.BjDfkvuDNNLWnXx5");
    let mut users = vec![
        "s512", "s256", "blf", "bare6", "bare5", "bare2b", "odd6", "odd5",
    ];
    users.extend(DOVEADM_HASHES.map(|(user, _)| user));
    let good: Vec<(&str, &str)> = users.iter().map(|&u| (u, "secret")).collect();
    for (r, user) in try_logins(&srv, &good).iter().zip(&users) {
        assert!(r.starts_with("+OK "), "{user} good password -> {r}");
    }
    let bad: Vec<(&str, &str)> = users.iter().map(|&u| (u, "Secret")).collect();
    for (r, user) in try_logins(&srv, &bad).iter().zip(&users) {
        assert!(r.starts_with("-ERR [AUTH] "), "{user} bad password -> {r}");
    }
}

#[test]
fn locked_accounts() {
    let mut fx = Fixture::new();
    fx.user_with("bang", "!{PLAIN}secret")
        .user_with("star", "*")
        .user_with("empty", "");
    let srv = Server::start(&fx, &QUICK);
    let pairs = [
        ("bang", "secret"),
        ("bang", "!{PLAIN}secret"),
        ("star", "*"),
        ("empty", ""),
    ];
    for (r, (user, _)) in try_logins(&srv, &pairs).iter().zip(pairs) {
        assert!(r.starts_with("-ERR "), "locked {user} -> {r}");
    }
}

#[test]
fn unsafe_user_names_are_refused() {
    let mut fx = Fixture::new();
    fx.user("alice", "secret").user(".dot", "secret");
    let long = "u".repeat(65);
    fx.user(&long, "secret");
    let srv = Server::start(&fx, &QUICK);
    let users = [".dot", "../alice", "alice/..", "ali\x01ce"];
    let pairs: Vec<(&str, &str)> = users.iter().map(|&u| (u, "secret")).collect();
    for (r, user) in try_logins(&srv, &pairs).iter().zip(users) {
        assert!(r.starts_with("-ERR "), "user {user:?} -> {r}");
    }
    assert!(try_login(&srv, "alice", "secret").starts_with("+OK "));
    // Past 64 octets, as long as a mail address may be: a user (past 254 is refused, see
    // tests/security.rs).
    assert!(try_login(&srv, &long, "secret").starts_with("+OK "));
}

#[test]
fn failures_are_delayed_alike() {
    let mut fx = Fixture::new();
    fx.user("alice", "secret");
    let srv = Server::start(&fx, &[]);
    let time = |user: &str| {
        let mut c = srv.connect();
        c.greeting();
        c.cmd(&format!("USER {user}"));
        let start = Instant::now();
        let r = c.cmd("PASS wrong");
        assert!(r.starts_with("-ERR [AUTH] "), "{r}");
        start.elapsed()
    };
    let (wrong, unknown) = std::thread::scope(|s| {
        let a = s.spawn(|| time("alice"));
        let b = s.spawn(|| time("nobody"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        wrong >= Duration::from_millis(1500),
        "wrong password answered after {wrong:?}"
    );
    assert!(
        unknown >= Duration::from_millis(1500),
        "unknown user answered after {unknown:?}"
    );
    let diff = wrong.abs_diff(unknown);
    // The delay runs from when PASS was read, so the dummy hash of the unknown user is hidden inside it;
    // the margin covers scheduling noise while the suite runs many servers on two cores.
    assert!(
        diff < Duration::from_millis(500),
        "{wrong:?} vs {unknown:?}"
    );
    let log = srv.wait_log(
        &["login failed", "user=nobody", "peer=127.0.0.1:"],
        Duration::from_secs(5),
    );
    assert!(log.is_some(), "{:?}", srv.stderr_lines());
}

#[test]
fn apop_only_for_plain_users() {
    let mut fx = Fixture::new();
    fx.user("plain", "secret")
        .user_with("hashed", &format!("{{SHA512-CRYPT}}{SHA512}"));
    let srv = Server::start(&fx, &[&["--apop"][..], &QUICK].concat());
    for (user, expect_ok) in [("plain", true), ("hashed", false)] {
        let mut c = srv.connect();
        let g = c.greeting();
        let ts = &g[g.find('<').unwrap()..=g.rfind('>').unwrap()];
        let r = c.cmd(&format!(
            "APOP {user} {}",
            md5_hex(format!("{ts}secret").as_bytes())
        ));
        assert_eq!(r.starts_with("+OK "), expect_ok, "APOP {user} -> {r}");
        if !expect_ok {
            assert!(r.starts_with("-ERR [AUTH] "), "{r}");
            // USER/PASS still works for that user.
            c.login(user, "secret");
        }
    }
}

#[test]
fn passwd_file_is_reread_when_it_changes() {
    let mut fx = Fixture::new();
    fx.user("alice", "secret");
    let srv = Server::start(&fx, &QUICK);
    assert!(try_login(&srv, "alice", "secret").starts_with("+OK "));
    assert!(try_login(&srv, "newbie", "fresh").starts_with("-ERR [AUTH] "));
    fx.user("newbie", "fresh");
    let text = fs::read_to_string(fx.passwd())
        .unwrap()
        .replace("{PLAIN}secret", "{PLAIN}changed-secret");
    fs::write(fx.passwd(), text).unwrap();
    // A later mtime, so that a check at one-second granularity also sees the change.
    let f = fs::File::options().write(true).open(fx.passwd()).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert!(
        try_login(&srv, "newbie", "fresh").starts_with("+OK "),
        "added user"
    );
    assert!(
        try_login(&srv, "alice", "changed-secret").starts_with("+OK "),
        "changed password"
    );
    assert!(
        try_login(&srv, "alice", "secret").starts_with("-ERR [AUTH] "),
        "old password"
    );
}

/// A crypt hash cut short loads and locks its user (only its prefix is checked at load): each load
/// of the file says so in the log, naming the line, at start-up and when a change is read. So does a
/// hash too slow to check (bcrypt cost 31 would take days), whose user is answered at once.
#[test]
fn a_faulty_hash_is_named_at_each_load() {
    let mut fx = Fixture::new();
    fx.user("alice", "secret")
        .user_with("bob", "{SHA512-CRYPT}$6$cut")
        .user_with(
            "dave",
            "{BLF-CRYPT}$2b$31$YYicO/sIB3d98f.fEMf7X.MU/McUht8yOW1hNKmMeQYSiEQ5wwW4a",
        );
    let srv = Server::start(&fx, &QUICK);
    let passwd = fx.passwd().display().to_string();
    let path = fx.passwd().to_path_buf();
    let named = |user: &str, fault: &str| {
        let text = fs::read_to_string(&path).unwrap();
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with(&format!("{user}:")))
            .unwrap();
        srv.wait_log(
            &[&format!(
                "{passwd}:{line}: user {user} cannot log in: {fault}"
            )],
            Duration::from_secs(5),
        )
        .is_some()
    };
    let malformed = "a malformed crypt hash";
    assert!(named("bob", malformed), "{:?}", srv.stderr_lines());
    assert!(named(
        "dave",
        "a password hash too slow to check (see PASSWD-FILE in poplar(8))"
    ));
    assert!(try_login(&srv, "bob", "anything").starts_with("-ERR [AUTH] "));
    assert!(try_login(&srv, "dave", "anything").starts_with("-ERR [AUTH] "));
    fx.user_with("carol", &format!("{{SHA256-CRYPT}}{}", &SHA256[..20]));
    let f = fs::File::options().write(true).open(fx.passwd()).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert!(try_login(&srv, "alice", "secret").starts_with("+OK "));
    assert!(named("carol", malformed), "{:?}", srv.stderr_lines());
}

fn ok(s: &str) -> bool {
    s.starts_with("+OK ")
}

fn err(s: &str) -> bool {
    s.starts_with("-ERR ")
}

#[test]
fn greeting_with_apop_has_unique_timestamps() {
    let fx = standard();
    let srv = Server::start(&fx, &["--apop"]);
    let g1 = srv.connect().greeting();
    let g2 = srv.connect().greeting();
    for g in [&g1, &g2] {
        let ts = apop_timestamp(g);
        assert!(ts.ends_with("@test.example>"), "timestamp {ts}");
        assert!(ts.len() > "<@test.example>".len() + 2, "timestamp {ts}");
    }
    assert_ne!(apop_timestamp(&g1), apop_timestamp(&g2));
}

#[test]
fn user_pass_good_and_bad() {
    let fx = standard();
    let srv = Server::start(&fx, &QUICK);
    let mut c = srv.connect();
    c.greeting();
    let known = c.cmd("USER alice");
    assert!(ok(&known), "{known}");
    let wrong_pass = c.cmd("PASS nope");
    assert!(wrong_pass.starts_with("-ERR [AUTH] "), "{wrong_pass}");
    let unknown = c.cmd("USER mallory");
    assert_eq!(
        unknown,
        known.replace("alice", "mallory"),
        "USER must not reveal unknown users"
    );
    let unknown_pass = c.cmd("PASS nope");
    assert_eq!(
        unknown_pass, wrong_pass,
        "unknown user and wrong password must look alike"
    );
    // Still in AUTHORIZATION: a good login works, and USER twice is allowed (the second replaces).
    assert!(ok(&c.cmd("USER bob")));
    c.login("alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    assert!(
        srv.wait_log(&["login failed", "user=mallory"], Duration::from_secs(5))
            .is_some(),
        "no login-failed log line: {:?}",
        srv.stderr_lines()
    );
    assert!(
        srv.stderr_lines().iter().all(|l| !l.contains("nope")),
        "password logged"
    );
}

#[test]
fn pass_without_user() {
    let fx = standard();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    assert!(err(&c.cmd("PASS secret")));
    c.login("alice", "secret");
}

#[test]
fn apop_good() {
    let fx = standard();
    let srv = Server::start(&fx, &["--apop"]);
    let mut c = srv.connect();
    let g = c.greeting();
    let digest = md5_hex(format!("{}secret", apop_timestamp(&g)).as_bytes());
    let r = c.cmd(&format!("APOP alice {digest}"));
    assert!(ok(&r), "{r}");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    let login = srv.wait_log(&["login user=alice"], Duration::from_secs(10));
    assert!(
        login
            .as_deref()
            .is_some_and(|l| l.ends_with(" method=APOP tls=no")),
        "{login:?}"
    );
}

#[test]
fn apop_bad() {
    let fx = standard();
    let srv = Server::start(&fx, &[&["--apop"][..], &QUICK].concat());
    let mut c = srv.connect();
    let g = c.greeting();
    let digest = md5_hex(format!("{}wrong", apop_timestamp(&g)).as_bytes());
    let r = c.cmd(&format!("APOP alice {digest}"));
    assert!(r.starts_with("-ERR [AUTH] "), "{r}");
    assert!(err(&c.cmd("STAT")), "still in AUTHORIZATION");
    // A digest over another connection's timestamp is refused too.
    let other = srv.connect().greeting();
    let replay = md5_hex(format!("{}secret", apop_timestamp(&other)).as_bytes());
    assert!(
        c.cmd(&format!("APOP alice {replay}"))
            .starts_with("-ERR [AUTH] ")
    );
}

#[test]
fn apop_refused_without_option() {
    let fx = standard();
    let srv = Server::start(&fx, &[]);
    let mut c = srv.connect();
    c.greeting();
    let r = c.cmd(&format!("APOP alice {}", md5_hex(b"x")));
    assert!(err(&r), "{r}");
}

#[test]
fn apop_timestamps_unique_over_many_connections() {
    let fx = standard();
    // Thirty connections in quick succession: the sessions of those already closed may not have ended
    // on the server yet, and would count against the default cap of 10 per address.
    let srv = Server::start(&fx, &["--apop", "--max-per-ip", "100"]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        let g = srv.connect().greeting();
        assert!(
            seen.insert(apop_timestamp(&g).to_string()),
            "repeated timestamp in {g}"
        );
    }
}

/// Dovecot's `allow_nets=` extra field: the login is refused, like a wrong password, from an address
/// outside the networks, here the client's address from a PROXY header.
#[test]
fn allow_nets_admits_only_its_networks() {
    let mut fx = Fixture::new();
    fx.user("alice", "secret").user("bob", "bobpw");
    fx.extra("alice", "allow_nets=192.0.2.0/24,2001:db8::/32")
        .extra("bob", "userdb_quota_rule=*:storage=1G allow_nets=127.0.0.1");
    let srv = Server::start(
        &fx,
        &["--proxy-from", "127.0.0.1", "--auth-failure-delay", "0"],
    );
    let pass = |header: &str, user: &str, password: &str| {
        let mut c = common::Client::connect(srv.addr);
        c.send(header.as_bytes());
        c.greeting();
        assert!(c.cmd(&format!("USER {user}")).starts_with("+OK"));
        c.cmd(&format!("PASS {password}"))
    };
    let inside = "PROXY TCP4 192.0.2.7 127.0.0.1 50522 110\r\n";
    let outside = "PROXY TCP4 198.51.100.1 127.0.0.1 50523 110\r\n";
    let keeps_loopback = "PROXY UNKNOWN\r\n";
    assert!(pass(inside, "alice", "secret").starts_with("+OK"));
    assert!(pass("PROXY TCP6 2001:db8::5 ::1 4000 110\r\n", "alice", "secret").starts_with("+OK"));
    assert_eq!(
        pass(outside, "alice", "secret"),
        "-ERR [AUTH] invalid user name or password"
    );
    assert_eq!(
        pass(keeps_loopback, "alice", "secret"),
        "-ERR [AUTH] invalid user name or password"
    );
    assert!(pass(keeps_loopback, "bob", "bobpw").starts_with("+OK"));
    assert!(pass(inside, "bob", "bobpw").starts_with("-ERR [AUTH]"));
    let why = srv.wait_log(
        &["user=alice peer=198.51.100.1:50523: login from outside the user's allow_nets"],
        Duration::from_secs(10),
    );
    assert!(why.is_some(), "{:?}", srv.stderr_lines());
    assert!(
        srv.wait_log(
            &["login failed user=alice peer=198.51.100.1:50523 attempt=1"],
            Duration::from_secs(10)
        )
        .is_some()
    );
}

/// `allow_nets=local` under inetd: a session on a socket pair has no IP address.
#[test]
fn allow_nets_local_is_a_session_without_an_address() {
    let mut fx = Fixture::new();
    fx.user("frank", "pw").user("gina", "pw");
    fx.extra("frank", "allow_nets=local")
        .extra("gina", "allow_nets=127.0.0.0/8");
    let (_inetd, mut c) = common::Inetd::start(&fx, &QUICK);
    c.greeting();
    assert!(c.cmd("USER gina").starts_with("+OK"));
    assert_eq!(
        c.cmd("PASS pw"),
        "-ERR [AUTH] invalid user name or password"
    );
    c.login("frank", "pw");
}

/// `nologin`: the right password is refused, with `reason=` as the text; a wrong one does not learn it.
#[test]
fn nologin_refuses_the_right_password_with_its_reason() {
    let mut fx = Fixture::new();
    fx.user("carol", "pw").user("dave", "pw");
    fx.extra("carol", "nologin reason=Moved_to_IMAP")
        .extra("dave", "nologin");
    let srv = Server::start(&fx, &QUICK);
    let replies = try_logins(&srv, &[("carol", "pw"), ("carol", "wrong"), ("dave", "pw")]);
    assert_eq!(
        replies,
        [
            "-ERR [AUTH] Moved_to_IMAP",
            "-ERR [AUTH] invalid user name or password",
            "-ERR [AUTH] login disabled for this account",
        ]
    );
}

/// `userdb_mail=`: one user's maildrop somewhere else than `--mail` says.
#[test]
fn userdb_mail_gives_a_user_a_location_of_its_own() {
    let mut fx = Fixture::new();
    fx.user("erin", "pw");
    fx.msg("erin", "new", "1.a.host", b"Subject: usual place\n\nx\n");
    let elsewhere = fx.root().join("elsewhere").join("erin");
    for sub in ["new", "cur", "tmp"] {
        fs::create_dir_all(elsewhere.join(sub)).unwrap();
    }
    fs::write(
        elsewhere.join("new").join("2.b.host"),
        b"Subject: elsewhere\n\ny\n",
    )
    .unwrap();
    let field = format!("userdb_mail=maildir:{}/elsewhere/%u", fx.root().display());
    fx.extra("erin", &field);
    let srv = Server::start(&fx, &QUICK);
    let mut c = srv.login("erin", "pw");
    assert_eq!(
        c.multi("RETR 1"),
        common::wire(b"Subject: elsewhere\n\ny\n")
    );
}

/// `--lowercase-users`: a name typed with capitals finds its lowercase entry by every way of logging
/// in, and the session goes on under the database's spelling; without the option it does not.
#[test]
fn lowercase_users_finds_a_name_typed_with_capitals() {
    let fx = standard();
    let srv = Server::start(
        &fx,
        &[&["--lowercase-users", "--apop"][..], &QUICK].concat(),
    );
    let mut c = srv.connect();
    c.greeting();
    c.login("Alice", "secret");
    assert!(c.cmd("STAT").starts_with("+OK 5 "));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(
        srv.wait_log(&["login user=alice peer="], Duration::from_secs(10))
            .is_some_and(|l| l.contains("method=USER"))
    );
    let mut c = srv.connect();
    let greeting = c.greeting();
    let digest = md5_hex(format!("{}secret", apop_timestamp(&greeting)).as_bytes());
    let r = c.cmd(&format!("APOP ALICE {digest}"));
    assert!(ok(&r), "{r}");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    // AUTH PLAIN with "\0ALICE\0secret", and with "alice\0ALICE\0secret": the authorization
    // identity names the same user, a case apart.
    for message in ["AEFMSUNFAHNlY3JldA==", "YWxpY2UAQUxJQ0UAc2VjcmV0"] {
        let mut c = srv.connect();
        c.greeting();
        let r = c.cmd(&format!("AUTH PLAIN {message}"));
        assert!(ok(&r), "{message}: {r}");
        assert!(c.cmd("QUIT").starts_with("+OK"));
    }
    // Passwords keep their case.
    let mut c = srv.connect();
    c.greeting();
    assert!(ok(&c.cmd("USER Alice")));
    assert!(c.cmd("PASS SECRET").starts_with("-ERR [AUTH]"));

    let plain = Server::start(&fx, &QUICK);
    let mut c = plain.connect();
    c.greeting();
    assert!(ok(&c.cmd("USER Alice")));
    assert!(c.cmd("PASS secret").starts_with("-ERR [AUTH]"));
}
