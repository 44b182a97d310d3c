//! `SystemUsers` against fake `/etc/passwd` and `/etc/shadow` files in a temporary folder, with hashes
//! made by `mkpasswd` and `openssl passwd` (the exact commands beside each constant).

use std::fs;
use std::time::{Duration, Instant};

use super::*;
use crate::auth::scheme::{DUMMY_HASH, cost_class};

/// `mkpasswd -m yescrypt tanstaaf` (Debian's default parameters).
const YESCRYPT: &str = "$y$j9T$Sj62rNd2JPNUzt3dfLgZ61$enJeEpSSQpfJtFwEypfxsnSlUpV2PTuTZuwofkqOtl3";
/// `mkpasswd -m yescrypt other`
const YESCRYPT_OTHER: &str =
    "$y$j9T$pc/fLPZ/1tQZu9AZZmwb10$W4L2C2iWSYd9Y.6VPvlME9.xRC6.Dyxu85C7FR/RRm8";
/// `openssl passwd -6 -salt abcdefgh tanstaaf`
const SHA512: &str = "$6$abcdefgh$Do.voiaiW61EmXmNVa79i4/Xls.8Y.t8XppJLhkeseHYWz.PAgFtRVSSnnGt8seBbSxBol8XOP1w44Mjj1vzV/";
/// `openssl passwd -5 -salt abcdefgh tanstaaf`
const SHA256: &str = "$5$abcdefgh$cI06Pyvwx075Y5xjhv0IPRQc2W4UqZAJXasieKyV393";
/// `mkpasswd -m bcrypt -R 5 tanstaaf`
const BCRYPT: &str = "$2b$05$YYicO/sIB3d98f.fEMf7X.MU/McUht8yOW1hNKmMeQYSiEQ5wwW4a";
/// `openssl passwd -1 -salt ab tanstaaf`
const MD5: &str = "$1$ab$iRUW81gpsWMyPO7yHCnGY.";
/// `openssl passwd -crypt`-style DES: not supported, so the account cannot log in.
const DES: &str = "abJnggxhB/yWI";

struct Files {
    _dir: tempfile::TempDir,
    passwd: PathBuf,
    shadow: PathBuf,
}

fn files(passwd: &str, shadow: &str) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (dir.path().join("passwd"), dir.path().join("shadow"));
    fs::write(&p, passwd).unwrap();
    fs::write(&s, shadow).unwrap();
    Files {
        _dir: dir,
        passwd: p,
        shadow: s,
    }
}

fn ok(db: &SystemUsers, user: &str, password: &str) -> bool {
    db.login(user.as_bytes(), &Secret::new(password.as_bytes()))
        .is_ok()
}

fn fixture() -> (Files, SystemUsers) {
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/bash\n");
    let mut shadow = format!("root:{SHA512}:19000:0:99999:7:::\n");
    let users = [
        ("yes", YESCRYPT.to_string(), ""),
        ("sha512", SHA512.to_string(), ""),
        ("sha256", SHA256.to_string(), ""),
        ("bcrypt", BCRYPT.to_string(), ""),
        ("md5", MD5.to_string(), ""),
        ("des", DES.to_string(), ""),
        ("bang", "!".to_string(), ""),
        ("bangbang", "!!".to_string(), ""),
        ("star", "*".to_string(), ""),
        ("lockedhash", format!("!{SHA512}"), ""),
        ("empty", String::new(), ""),
        ("expired", SHA512.to_string(), "1"),
    ];
    for (i, (name, hash, expire)) in users.iter().enumerate() {
        passwd.push_str(&format!(
            "{name}:x:{}:{}:{name}:/home/{name}:/bin/sh\n",
            1000 + i,
            100 + i
        ));
        shadow.push_str(&format!("{name}:{hash}:19000:0:99999:7::{expire}:\n"));
    }
    // Password ages: changed on day 1 with a 1-day maximum; and "must change at next login".
    passwd.push_str(
        "aged:x:2000:2000::/home/aged:/bin/sh\nforced:x:2001:2001::/home/forced:/bin/sh\n",
    );
    shadow.push_str(&format!(
        "aged:{SHA512}:1:0:1:7:::\nforced:{SHA512}:0:0:99999:7:::\n"
    ));
    // A hash in /etc/passwd itself (no shadow line), and a shadow line without a passwd line.
    passwd.push_str(&format!("inline:{SHA256}:3000:3000::/srv/inline:/bin/sh\n"));
    shadow.push_str(&format!("ghost:{SHA512}:19000:0:99999:7:::\n"));
    let f = files(&passwd, &shadow);
    let db = SystemUsers::open(&f.passwd, &f.shadow).unwrap();
    (f, db)
}

#[test]
fn who_may_log_in() {
    let (_f, db) = fixture();
    let cases = [
        ("yes", "tanstaaf", true),
        ("sha512", "tanstaaf", true),
        ("sha256", "tanstaaf", true),
        ("bcrypt", "tanstaaf", true),
        ("md5", "tanstaaf", true),
        ("inline", "tanstaaf", true),
        ("yes", "tanstaaF", false),
        ("sha512", "", false),
        ("bcrypt", "tanstaaf ", false),
        ("md5", "tanstaa", false),
        ("des", "tanstaaf", false),
        ("bang", "", false),
        ("bangbang", "!!", false),
        ("star", "*", false),
        ("lockedhash", "tanstaaf", false),
        ("empty", "", false),
        ("expired", "tanstaaf", false),
        ("aged", "tanstaaf", false),
        ("forced", "tanstaaf", false),
        ("root", "tanstaaf", false),
        ("ghost", "tanstaaf", false),
        ("nobody", "tanstaaf", false),
        ("Yes", "tanstaaf", false),
    ];
    for (user, password, want) in cases {
        assert_eq!(ok(&db, user, password), want, "{user} / {password}");
    }
    assert!(
        db.apop(b"sha512", b"<1@h>", &apop::digest(b"<1@h>", b"tanstaaf"))
            .is_err()
    );
}

#[test]
fn account_fields() {
    let (_f, db) = fixture();
    let account = db.login(b"sha256", &Secret::new(&b"tanstaaf"[..])).unwrap();
    let want = Account {
        name: "sha256".into(),
        uid: Some(1002),
        gid: Some(102),
        home: Some("/home/sha256".into()),
        policy: crate::auth::Policy {
            system_groups_user: Some("sha256".into()),
            ..Default::default()
        },
    };
    assert_eq!(account, want);
    assert!(db.knows(b"star") && db.knows(b"root") && !db.knows(b"ghost") && !db.knows(b"nobody"));
    // yes, sha512, sha256, bcrypt, md5, expired, aged, forced, inline.
    assert_eq!(db.user_count(), 9);
}

#[test]
fn rereads_when_either_file_changes() {
    let f = files(
        "a:x:1000:1000::/home/a:/bin/sh\n",
        &format!("a:{SHA512}:19000:0:99999:7:::\n"),
    );
    let db = SystemUsers::open(&f.passwd, &f.shadow).unwrap();
    assert!(ok(&db, "a", "tanstaaf"));
    fs::write(&f.shadow, format!("a:!{SHA512}:19000:0:99999:7:::\n")).unwrap();
    assert!(!ok(&db, "a", "tanstaaf"), "passwd -l takes effect");
    fs::write(&f.shadow, format!("a:{SHA256}:19000:0:99999:7:::\n")).unwrap();
    assert!(ok(&db, "a", "tanstaaf"));
    fs::write(&f.passwd, "b:x:1001:1001::/home/b:/bin/sh\n").unwrap();
    assert!(!ok(&db, "a", "tanstaaf"), "removed from passwd");
    assert!(!db.knows(b"a"));
}

/// A name on two lines of /etc/shadow: the first decides, as getspnam(3) reads it, whatever follows.
#[test]
fn the_first_shadow_line_of_a_name_wins() {
    let f = files(
        "a:x:1000:1000::/home/a:/bin/sh\nb:x:1001:1001::/home/b:/bin/sh\n",
        &format!(
            "a:!{SHA512}:19000:0:99999:7:::\na:{SHA512}:19000:0:99999:7:::\n\
             b:{SHA256}:19000:0:99999:7:::\nb:{MD5}:19000:0:99999:7::1:\n"
        ),
    );
    let db = SystemUsers::open(&f.passwd, &f.shadow).unwrap();
    assert!(!ok(&db, "a", "tanstaaf"), "the first line locks a");
    assert!(
        ok(&db, "b", "tanstaaf"),
        "the first line's hash and dates for b"
    );
}

/// One line that is not UTF-8 (a Latin-1 gecos, as old hosts have) costs nothing; it used to make the
/// whole of /etc/passwd unreadable, so that poplar refused to start.
#[test]
fn a_latin1_gecos_is_no_reason_to_refuse_the_file() {
    let f = files("", &format!("a:{SHA512}:19000:0:99999:7:::\n"));
    fs::write(&f.passwd, b"a:x:1000:1000:Ren\xe9:/home/a:/bin/sh\n").unwrap();
    let db = SystemUsers::open(&f.passwd, &f.shadow).unwrap();
    assert!(ok(&db, "a", "tanstaaf"));
}

#[test]
fn shadow_may_be_missing_but_passwd_may_not() {
    let f = files(
        &format!("a:{MD5}:1000:1000::/home/a:/bin/sh\nb:x:1:1::/:/bin/sh\n"),
        "",
    );
    fs::remove_file(&f.shadow).unwrap();
    let db = SystemUsers::open(&f.passwd, &f.shadow).unwrap();
    assert!(ok(&db, "a", "tanstaaf"));
    assert!(!ok(&db, "b", ""));
    fs::remove_file(&f.passwd).unwrap();
    assert!(ok(&db, "a", "tanstaaf"), "a vanished file keeps the table");
    let err = SystemUsers::open(&f.passwd, &f.shadow).err().unwrap();
    assert!(err.ends_with("passwd: no such file"), "{err}");
}

#[test]
fn dummy_is_the_most_common_kind() {
    let stored = [
        YESCRYPT,
        SHA512,
        YESCRYPT_OTHER,
        BCRYPT,
        "$6$rounds=9999$s$h",
    ]
    .map(|h| Stored::Crypt(h.into()));
    assert_eq!(pick_dummy(stored.iter()), Stored::Crypt(YESCRYPT.into()));
    assert_eq!(
        pick_dummy([Stored::Locked].iter()),
        Stored::Crypt(DUMMY_HASH.into())
    );
    let classes = [
        (YESCRYPT, "$y$j9T"),
        (SHA512, "$6"),
        ("$6$rounds=9999$s$h", "$6$rounds=9999"),
        (BCRYPT, "$2b$05"),
        (MD5, "$1"),
    ];
    for (hash, want) in classes {
        assert_eq!(cost_class(hash), want, "{hash}");
    }
}

/// An unknown user costs what a wrong password costs: the fastest of a few tries each (the least
/// disturbed by a busy machine), within a factor that a skipped hash (~100x faster) would break.
#[test]
fn unknown_user_costs_a_hash() {
    let f = files(
        "a:x:1000:1000::/home/a:/bin/sh\nb:x:1001:1001::/home/b:/bin/sh\n",
        &format!("a:{YESCRYPT}:19000:0:99999:7:::\nb:{YESCRYPT_OTHER}:19000:0:99999:7:::\n"),
    );
    let db = SystemUsers::open(&f.passwd, &f.shadow).unwrap();
    let time = |user: &str| {
        let t = Instant::now();
        assert!(!ok(&db, user, "wrong"));
        t.elapsed()
    };
    // The two users take turns, so that a change in the machine's load between them weighs on both:
    // five of one user and then five of the other once measured 1.07 s against 0.11 s under load.
    let (mut known, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        known = known.min(time("a"));
        unknown = unknown.min(time("nobody"));
    }
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "wrong password {known:?}, unknown user {unknown:?}"
    );
}
