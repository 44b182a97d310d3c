//! Tests for the passwd-file: parsing each field and scheme, errors naming the line, reloading, APOP and
//! SCRAM lookups.

use super::*;
use crate::auth::scheme::DUMMY_HASH;

const SHA256_HELLO: &str = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
const RFC_TIMESTAMP: &[u8] = b"<1896.697170952@dbc.mtview.ca.us>";
const RFC_DIGEST: &[u8] = b"c4c9334bac560ecc979e58001b3e22fb";

fn fixture(text: &str) -> (tempfile::TempDir, PathBuf, PasswdFile) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    fs::write(&path, text).unwrap();
    let db = PasswdFile::open(&path).unwrap();
    (dir, path, db)
}

#[test]
fn a_wrong_plaintext_password_pays_the_hash_an_unknown_user_pays() {
    assert!(needs_hash_work(&Stored::Plain(b"secret".to_vec())));
    assert!(!needs_hash_work(&Stored::Crypt(DUMMY_HASH.to_string())));
    let ssha = Stored::parse("{SSHA}41pj1YuAaMGRt8/Xdwun6lA+gXrJTCgL").unwrap();
    assert!(ssha.verify(b"secret"));
    assert!(needs_hash_work(&ssha), "a digest is as fast as a plaintext");
}

fn login(db: &PasswdFile, user: &str, password: &str) -> Option<Account> {
    db.login(user.as_bytes(), &Secret::new(password.as_bytes()))
        .ok()
}

fn account(name: &str, uid: Option<u32>, gid: Option<u32>, home: Option<&str>) -> Account {
    Account {
        name: name.to_string(),
        uid,
        gid,
        home: home.map(PathBuf::from),
        policy: Default::default(),
    }
}

#[test]
fn parses_fields() {
    let text = "# comment\n\n  \nalice:{PLAIN}a:1000:100:Alice A.:/home/alice:/bin/sh:userdb_quota=1G:x\r\n\
                bob:{PLAIN}b\nnoids:{PLAIN}c:::gecos:/srv/c\nlocked:!{PLAIN}d:5:6\nempty:";
    let users = parse_table(text.as_bytes()).unwrap();
    let cases = [
        (
            "alice",
            account("alice", Some(1000), Some(100), Some("/home/alice")),
        ),
        ("bob", account("bob", None, None, None)),
        ("noids", account("noids", None, None, Some("/srv/c"))),
        ("locked", account("locked", Some(5), Some(6), None)),
        ("empty", account("empty", None, None, None)),
    ];
    assert_eq!(users.len(), cases.len());
    for (name, want) in cases {
        assert_eq!(users[name].account, want, "{name}");
    }
    assert_eq!(users["alice"].stored, Stored::Plain(b"a".to_vec()));
    assert_eq!(users["locked"].stored, Stored::Locked);
    assert_eq!(users["empty"].stored, Stored::Locked);
}

#[test]
fn applies_dovecot_extra_fields() {
    let text = "a:{PLAIN}x::::::allow_nets=192.0.2.0/24,2001:db8::/32,local\n\
                b:{PLAIN}x::::::nologin reason=Moved_to_IMAP\n\
                c:{PLAIN}x::::::nologin=y\n\
                d:{PLAIN}x:1:2::/h/d::userdb_mail=mbox:/var/mail/%u userdb_home=/h/dd userdb_uid=3 userdb_gid=4 userdb_system_groups_user=vmail\n\
                e:{PLAIN}x::::::userdb_quota_rule=*:storage=1G nodelay  nopassword\n";
    let users = parse_table(text.as_bytes()).unwrap();
    let nets = users["a"].account.policy.allow_nets.clone().unwrap();
    assert!(nets.local);
    assert_eq!(nets.networks.len(), 2);
    assert!(nets.allows(Some("192.0.2.7".parse().unwrap())));
    assert!(nets.allows(Some("::ffff:192.0.2.7".parse().unwrap())));
    assert!(nets.allows(Some("2001:db8::1".parse().unwrap())));
    assert!(!nets.allows(Some("198.51.100.1".parse().unwrap())));
    assert!(nets.allows(None));
    assert_eq!(
        users["b"].account.policy.nologin.as_deref(),
        Some("Moved_to_IMAP")
    );
    assert_eq!(users["c"].account.policy.nologin.as_deref(), Some(""));
    let d = &users["d"].account;
    assert_eq!(
        d.policy.mail.as_ref().map(ToString::to_string).as_deref(),
        Some("mbox:/var/mail/%u")
    );
    assert_eq!((d.uid, d.gid), (Some(3), Some(4)));
    assert_eq!(d.home.as_deref(), Some(Path::new("/h/dd")));
    assert_eq!(d.policy.system_groups_user.as_deref(), Some("vmail"));
    assert_eq!(users["a"].account.policy.system_groups_user, None);
    // Fields that mean nothing to a POP3 server leave the account as the line has it.
    assert_eq!(users["e"].account, account("e", None, None, None));
    // Dovecot's `fail` fails the passdb lookup, whatever the password: the line is locked.
    let failing = parse_table(b"g:{PLAIN}x::::::nodelay fail\nh:{PLAIN}x::::::fail=y").unwrap();
    assert_eq!(failing["g"].stored, Stored::Locked);
    assert_eq!(failing["h"].stored, Stored::Locked);
    // `noauthenticate`: the line adds fields to another passdb's login and never authenticates itself.
    let only_fields = parse_table(b"n:{PLAIN}x::::::noauthenticate userdb_uid=7").unwrap();
    assert_eq!(only_fields["n"].stored, Stored::Locked);
    // `nopassword` is not honoured: the password still decides.
    assert_eq!(users["e"].stored, Stored::Plain(b"x".to_vec()));
    let only_local = parse_table(b"f:{PLAIN}x::::::allow_nets=local").unwrap();
    let nets = only_local["f"].account.policy.allow_nets.clone().unwrap();
    assert!(nets.allows(None) && !nets.allows(Some("127.0.0.1".parse().unwrap())));
}

#[test]
fn refuses_extra_fields_it_cannot_honour() {
    let cases: &[(&str, &str)] = &[
        (
            "proxy host=10.0.0.2",
            "user a: extra field proxy is not supported",
        ),
        (
            "proxy_maybe",
            "user a: extra field proxy_maybe is not supported",
        ),
        ("host=10.0.0.2", "user a: extra field host is not supported"),
        ("user=b", "user a: extra field user is not supported"),
        (
            "userdb_user=b",
            "user a: extra field userdb_user is not supported",
        ),
        (
            "userdb_chroot=/srv/jail",
            "user a: extra field userdb_chroot is not supported",
        ),
        (
            "allow_real_nets=10.0.0.0/8",
            "user a: extra field allow_real_nets is not supported",
        ),
        (
            "allow_nets=10.0.0.0/33",
            "user a: allow_nets: bad prefix length in \"10.0.0.0/33\"",
        ),
        ("allow_nets=", "user a: allow_nets: empty network in \"\""),
        (
            "allow_nets=nowhere",
            "user a: allow_nets: \"nowhere\" is not an address or CIDR",
        ),
        (
            "userdb_mail=imap:/x",
            "user a: userdb_mail: unknown mailbox format \"imap\" (expected maildir: or mbox:)",
        ),
        ("userdb_uid=x", "user a: bad userdb_uid \"x\": not a number"),
    ];
    for (extra, want) in cases {
        let line = format!("a:{{PLAIN}}x::::::{extra}");
        assert_eq!(
            parse_table(line.as_bytes()).err(),
            Some((1, want.to_string())),
            "{extra}"
        );
    }
}

#[test]
fn errors_name_the_line() {
    let cases: &[(&[u8], usize, &str)] = &[
        (b":{PLAIN}x", 1, "empty user name"),
        (b"a:{PLAIN}x\n\n# c\n:{PLAIN}y", 4, "empty user name"),
        (b"a", 1, "user a: missing password field"),
        (b"a:{PLAIN}x:1x", 1, "user a: bad uid \"1x\": not a number"),
        (b"a:{PLAIN}x:+1", 1, "user a: bad uid \"+1\": not a number"),
        (
            b"a:{PLAIN}x:1:-1",
            1,
            "user a: bad gid \"-1\": not a number",
        ),
        (
            b"a:{PLAIN}x::99999999999",
            1,
            "user a: bad gid \"99999999999\": not a number",
        ),
        (
            b"a:{PLAIN}x\nb:{PLAIN}y\na:{PLAIN}z",
            3,
            "duplicate user a (first on line 1)",
        ),
        (
            b"a:{PLAIN}x\nb:{CRAM-MD5}y",
            2,
            "user b: unsupported password scheme CRAM-MD5",
        ),
        (b"a:{PLAIN}x\n\xff:{PLAIN}y", 2, "not valid UTF-8"),
    ];
    for &(text, line, problem) in cases {
        let got = parse_table(text).err();
        assert_eq!(
            got,
            Some((line, problem.to_string())),
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn open_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("passwd");
    fs::write(&path, "a:{PLAIN}x\n# c\nb:{NTLM}y\n").unwrap();
    let err = PasswdFile::open(&path).err().unwrap();
    assert_eq!(err.line, Some(3));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: user b: unsupported password scheme NTLM",
            path.display()
        )
    );
    // A control character in a quoted user name is shown escaped: the message stays one line.
    fs::write(&path, "a\rb\x02\n").unwrap();
    let err = PasswdFile::open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1: user a\\rb\\u{{2}}: missing password field",
            path.display()
        )
    );
    fs::write(
        &path,
        "a:{PLAIN}x\nb:{SCRAM-SHA-256}4096,c2FsdA==,a2V5,a2V5\n",
    )
    .unwrap();
    let err = PasswdFile::open(&path).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2: user b: bad SCRAM-SHA-256 value: StoredKey must be 32 octets in base64",
            path.display()
        )
    );
    let missing = PasswdFile::open(&dir.path().join("nope")).err().unwrap();
    assert_eq!(missing.line, None);
    assert!(
        missing
            .to_string()
            .starts_with(&format!("{}: ", dir.path().join("nope").display()))
    );
}

#[test]
fn login_with_each_scheme() {
    let blf = bcrypt::hash_with_salt("blf pw", 4, [3; 16]).unwrap();
    let text = format!(
        "plain:{{PLAIN}}tanstaaf:1:2::/home/plain\nsha512:{{SHA512-CRYPT}}{DUMMY_HASH}\n\
         sha256:{{SHA256-CRYPT}}{SHA256_HELLO}\nblf:{{BLF-CRYPT}}{}\nbare:{DUMMY_HASH}\n\
         locked:!{{PLAIN}}open\nstar:*\nempty:{{PLAIN}}\n",
        blf.format_for_version(bcrypt::Version::TwoY)
    );
    let (_dir, _path, db) = fixture(&text);
    assert_eq!(db.user_count(), 8);
    let cases = [
        ("plain", "tanstaaf", true),
        ("sha512", "tanstaaf", true),
        ("sha256", "Hello world!", true),
        ("blf", "blf pw", true),
        ("bare", "tanstaaf", true),
        ("plain", "tanstaa", false),
        ("sha512", "Tanstaaf", false),
        ("sha256", "Hello world", false),
        ("blf", "blf pw ", false),
        ("Plain", "tanstaaf", false),
        ("nobody", "tanstaaf", false),
        ("", "", false),
        ("locked", "open", false),
        ("locked", "!{PLAIN}open", false),
        ("star", "*", false),
        ("empty", "", false),
    ];
    for (user, password, ok) in cases {
        assert_eq!(
            login(&db, user, password).is_some(),
            ok,
            "{user} / {password}"
        );
    }
    assert_eq!(
        login(&db, "plain", "tanstaaf"),
        Some(account("plain", Some(1), Some(2), Some("/home/plain")))
    );
    let bad = db.login(b"\xff", &Secret::new(&b"x"[..]));
    assert!(matches!(bad, Err(AuthError::BadCredentials)));
}

#[test]
fn apop_rfc1939_example() {
    let text =
        format!("mrose:{{PLAIN}}tanstaaf:7\nhashed:{DUMMY_HASH}\nlocked:!{{PLAIN}}tanstaaf\n");
    let (_dir, _path, db) = fixture(&text);
    let upper = RFC_DIGEST.to_ascii_uppercase();
    let long = [RFC_DIGEST, b"0"].concat();
    let cases: &[(&[u8], &[u8], bool)] = &[
        (b"mrose", RFC_DIGEST, true),
        (b"mrose", &upper, true),
        (b"mrose", &RFC_DIGEST[..31], false),
        (b"mrose", &long, false),
        (b"mrose", b"", false),
        (b"mrose", b"c4c9334bac560ecc979e58001b3e22fc", false),
        (b"MROSE", RFC_DIGEST, false),
        (b"hashed", RFC_DIGEST, false),
        (b"locked", RFC_DIGEST, false),
        (b"nobody", RFC_DIGEST, false),
    ];
    for &(user, digest, ok) in cases {
        let got = db.apop(user, RFC_TIMESTAMP, digest);
        assert_eq!(
            got.is_ok(),
            ok,
            "{:?} {:?}",
            String::from_utf8_lossy(user),
            String::from_utf8_lossy(digest)
        );
    }
    assert_eq!(
        db.apop(b"mrose", RFC_TIMESTAMP, RFC_DIGEST).unwrap(),
        account("mrose", Some(7), None, None)
    );
    assert!(db.apop(b"mrose", b"<other@host>", RFC_DIGEST).is_err());
}

/// The RFC 7677 example user, password "pencil", as `doveadm pw -s SCRAM-SHA-256` would write it.
const SCRAM_PENCIL: &str = "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

#[test]
fn scram_lookups() {
    let text = format!(
        "plain:{{PLAIN}}pencil:7\nstored:{SCRAM_PENCIL}:8\nhashed:{DUMMY_HASH}\n\
         locked:{{PLAIN}}pencil::::::fail\n"
    );
    let (_dir, _path, db) = fixture(&text);
    assert!(!db.scram_for_every_user(), "a crypt hash among them");
    let salts = SaltKey::from_contents(&[5; 32]);
    let plain = db.scram(b"plain", &salts);
    let salt = salts.salt(b"plain");
    assert_eq!(plain.keys, Keys::from_password(b"pencil", &salt, 4096));
    assert_eq!(plain.account.unwrap().uid, Some(7));
    let stored = db.scram(b"stored", &salts);
    assert_eq!(stored.keys, Keys::parse(&SCRAM_PENCIL[15..]).unwrap());
    assert_eq!(stored.account.unwrap().uid, Some(8));
    // Users who cannot do SCRAM get keys like a {PLAIN} user's, the same on every attempt.
    for user in [&b"hashed"[..], b"locked", b"nobody", b"\xff"] {
        let lookup = db.scram(user, &salts);
        assert!(matches!(lookup.account, Err(AuthError::BadCredentials)));
        assert_eq!(lookup.keys, Keys::stand_in(user, &salts));
        assert_eq!((lookup.keys.iterations, lookup.keys.salt.len()), (4096, 16));
    }
    // A {SCRAM-SHA-256} user logs in with the password too, but has no plaintext for APOP.
    assert_eq!(login(&db, "stored", "pencil").unwrap().uid, Some(8));
    assert!(login(&db, "stored", "pencil ").is_none());
    let digest = apop::digest(RFC_TIMESTAMP, b"pencil");
    assert!(db.apop(b"stored", RFC_TIMESTAMP, &digest).is_err());
    assert!(db.apop(b"plain", RFC_TIMESTAMP, &digest).is_ok());
    // Crypt hashes and locked users only: nobody could use SCRAM.
    let (_dir, _path, db) = fixture(&format!(
        "hashed:{DUMMY_HASH}\nlocked:{{PLAIN}}pencil::::::fail\nbang:!\n"
    ));
    assert!(!db.scram_for_every_user());
    // Every user who can log in could (the locked ones do not count); none at all is not enough.
    let (_dir, _path, db) = fixture(&format!(
        "plain:{{PLAIN}}pencil\nstored:{SCRAM_PENCIL}\nlocked:{DUMMY_HASH}::::::fail\nbang:!\n"
    ));
    assert!(db.scram_for_every_user());
    let (_dir, _path, db) = fixture("bang:!\n");
    assert!(!db.scram_for_every_user());
}

/// The derived salts do not depend on the passwd-file: a client that guesses its contents (a file of one
/// `{PLAIN}` line is a name and a password) cannot compute them from the guess, as it could when they were
/// keyed with the contents, and an edit of the file leaves them as they were.
#[test]
fn derived_salts_do_not_depend_on_the_passwd_file() {
    let text = "plain:{PLAIN}pencil\n";
    let (_dir, _path, db) = fixture(text);
    let (_dir2, _path2, edited) = fixture("plain:{PLAIN}pencil\nother:{PLAIN}x\n");
    // The key a client would compute from its guess of the contents.
    let guessed = scram::hmac(b"poplar SCRAM-SHA-256 salt key", text.as_bytes());
    for salts in [SaltKey::per_process(), SaltKey::from_contents(&[5; 32])] {
        for user in [&b"plain"[..], b"nobody"] {
            let salt = db.scram(user, &salts).keys.salt;
            assert_eq!(salt, salts.salt(user));
            assert_eq!(edited.scram(user, &salts).keys.salt, salt);
            assert_ne!(salt, scram::hmac(&guessed, user)[..scram::SALT_LEN]);
        }
    }
}

#[test]
fn reloads_when_the_file_changes() {
    let (_dir, path, db) = fixture("a:{PLAIN}one\n");
    assert!(login(&db, "a", "one").is_some());

    // Edited in place, with a different size.
    fs::write(&path, "a:{PLAIN}two\nb:{PLAIN}three\n").unwrap();
    assert!(login(&db, "a", "one").is_none());
    assert!(login(&db, "a", "two").is_some());
    assert!(login(&db, "b", "three").is_some());
    assert_eq!(db.user_count(), 2);

    // A broken edit keeps the previous table for the users whose lines it left as they were, also
    // for later logins; a user it changed or removed is locked until the file loads.
    fs::write(&path, "a:{PLAIN}two\n:{PLAIN}oops\n").unwrap();
    assert!(login(&db, "a", "two").is_some());
    assert!(login(&db, "a", "two").is_some());
    assert!(login(&db, "b", "three").is_none(), "removed by the edit");
    assert!(
        db.apop(b"b", b"<t@h>", &apop::digest(b"<t@h>", b"three"))
            .is_err()
    );
    fs::write(&path, "a:{PLAIN}four\nb:{PLAIN}three\n:{PLAIN}oops\n").unwrap();
    assert!(login(&db, "a", "two").is_none(), "changed by the edit");
    assert!(login(&db, "a", "four").is_none(), "not loaded");
    // b's line is as it was in the table kept, but b was locked by the edit before: still locked.
    assert!(login(&db, "b", "three").is_none());

    // Replaced by rename, as editors and config management do.
    let new = path.with_extension("new");
    fs::write(&new, "c:{PLAIN}five\n").unwrap();
    fs::rename(&new, &path).unwrap();
    assert!(login(&db, "a", "two").is_none());
    assert!(login(&db, "c", "five").is_some());
    assert_eq!(db.user_count(), 1);

    // A vanished file keeps the table too.
    fs::remove_file(&path).unwrap();
    assert!(login(&db, "c", "five").is_some());
}

/// A file rewritten in place shows a part of itself for a moment: a part cut mid-line (a user's
/// `nologin` lost, a password cut short), or nothing, is not taken while it is recent; the previous
/// table serves meanwhile. Once the file is older, it is taken as it is.
#[test]
fn a_file_being_written_is_not_taken_half_way() {
    let (_dir, path, db) = fixture("alice:{PLAIN}secret::::/home/alice::nologin\n");
    let barred = |db: &PasswdFile| {
        login(db, "alice", "secret")
            .unwrap()
            .policy
            .nologin
            .is_some()
    };
    assert!(barred(&db));
    fs::write(&path, "alice:{PLAIN}sec").unwrap();
    assert!(login(&db, "alice", "sec").is_none());
    fs::write(&path, "alice:{PLAIN}secret::::/home/alice::").unwrap();
    assert!(barred(&db), "nologin lost");
    fs::write(&path, "").unwrap();
    assert_eq!(db.user_count(), 1);
    // Finished, without a final newline: taken once it has not changed for a while.
    fs::write(&path, "alice:{PLAIN}secret::::/home/alice::").unwrap();
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
    let file = fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(past).unwrap();
    assert!(!barred(&db));
}

/// An edit that locks a user and, in the same go, breaks another line (a scheme poplar does not
/// know, a duplicate user) still keeps the locked user out; users whose lines it left alone go on.
#[test]
fn a_broken_edit_still_locks_what_it_locked() {
    let (_dir, path, db) = fixture("alice:{PLAIN}secret\ncarol:{PLAIN}pw\n");
    assert!(login(&db, "alice", "secret").is_some());
    let text = "alice:{PLAIN}secret::::/h::nologin\ncarol:{PLAIN}pw\nbob:{ARGON2ID}abcd\n";
    fs::write(&path, text).unwrap();
    assert!(login(&db, "alice", "secret").is_none());
    assert!(login(&db, "carol", "pw").is_some());
    fs::write(&path, "alice:!\nalice:{PLAIN}secret\ncarol:{PLAIN}pw\n").unwrap();
    assert!(login(&db, "alice", "secret").is_none(), "a duplicate");
    assert!(login(&db, "carol", "pw").is_some());
    // A name the broken edit adds is known, and locked: not left to the next user database.
    assert!(!db.knows(b"dave"));
    fs::write(&path, "carol:{PLAIN}pw\ndave:!:x::::nologin\n").unwrap();
    assert!(login(&db, "carol", "pw").is_some());
    assert!(db.knows(b"dave"));
    assert!(login(&db, "dave", "").is_none());
}

/// A file dated in the future (a clock set back) is not "being written": it is taken.
#[test]
fn a_file_dated_in_the_future_is_read() {
    let (_dir, path, db) = fixture("alice:{PLAIN}a\nbob:{PLAIN}b\n");
    fs::write(&path, "bob:{PLAIN}b").unwrap();
    let future = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let file = fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(future).unwrap();
    assert!(login(&db, "alice", "a").is_none());
    assert!(login(&db, "bob", "b").is_some());
}

#[test]
fn shared_across_threads() {
    let (_dir, _path, db) = fixture("a:{PLAIN}one\n");
    let db = std::sync::Arc::new(db);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || login(&db, "a", "one").is_some())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

/// Unknown users are checked against a hash of the kind most of the file's users have, not always
/// SHA512-CRYPT: with bcrypt users, a name that exists cost 58 ms and an unknown one 1.3 ms (a
/// review, `--auth-failure-delay 0`). A reload picks again; a file of `{PLAIN}` users keeps the
/// SHA512-CRYPT stand-in.
#[test]
fn the_stand_in_hash_is_of_the_file_s_most_common_kind() {
    let hash = |pw: &str, salt: u8| {
        bcrypt::hash_with_salt(pw, 4, [salt; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoB)
    };
    let text = format!(
        "a:{{BLF-CRYPT}}{}\nb:{{BLF-CRYPT}}{}\nc:{{SHA512-CRYPT}}{DUMMY_HASH}\nd:{{PLAIN}}x\n",
        hash("a", 1),
        hash("b", 2)
    );
    let (_dir, path, db) = fixture(&text);
    let dummy = |db: &PasswdFile| match &db.read().dummy {
        Stored::Crypt(h) => h[..7].to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(dummy(&db), "$2b$04$");
    // A different size: the reload notices the change.
    fs::write(&path, "d:{PLAIN}x\n").unwrap();
    db.refresh();
    assert_eq!(dummy(&db), &DUMMY_HASH[..7]);
}

/// A check that hashes holds no lock on the table: a change to the file while it hashes is re-read,
/// and a {PLAIN} login after it done, before the slow check ends (a review: a reload waited for every
/// queued hash, and every login, {PLAIN} included, waited behind the reload).
#[test]
fn a_reload_waits_for_no_check_in_progress() {
    use std::time::{Duration, Instant};
    let slow = bcrypt::hash("right", 12).unwrap();
    let text = format!("slow:{{CRYPT}}{slow}\nfast:{{PLAIN}}pw\n");
    let (_dir, path, db) = fixture(&text);
    let db = std::sync::Arc::new(db);
    let slow_check = {
        let db = db.clone();
        std::thread::spawn(move || {
            assert!(login(&db, "slow", "wrong").is_none());
            Instant::now()
        })
    };
    // Well inside the hash by now (a bcrypt of cost 12 takes a few hundred milliseconds).
    std::thread::sleep(Duration::from_millis(50));
    fs::write(&path, format!("{text}new:{{PLAIN}}x\n")).unwrap();
    assert!(login(&db, "fast", "pw").is_some());
    let fast_done = Instant::now();
    assert!(db.knows(b"new"), "the change was read");
    let slow_done = slow_check.join().unwrap();
    assert!(
        fast_done < slow_done,
        "the {{PLAIN}} login ended {:?} after the slow check",
        fast_done - slow_done
    );
}
