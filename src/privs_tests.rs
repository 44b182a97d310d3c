//! Tests for `privs`: the ids an account is served with, the identity decisions made before any
//! switch, and (as root) the per-thread switch itself.

use super::*;

/// Limits that let every id through, for the tests that are about something else.
const NO_LIMIT: FirstValid = FirstValid { uid: 0, gid: 0 };

#[test]
fn thread_groups_agree_with_nix() {
    let mut ours = thread_groups().unwrap();
    let mut theirs: Vec<u32> = unistd::getgroups()
        .unwrap()
        .iter()
        .map(|g| g.as_raw())
        .collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
}

/// A system account's, with its `/etc/group` memberships.
fn account(uid: Option<u32>, gid: Option<u32>) -> Account {
    Account {
        name: "alice".into(),
        uid,
        gid,
        home: None,
        policy: crate::auth::Policy {
            system_groups_user: Some("alice".into()),
            ..Default::default()
        },
    }
}

#[test]
fn lookup_reads_passwd_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let (p, g) = (dir.path().join("passwd"), dir.path().join("group"));
    std::fs::write(
        &p,
        "root:x:0:0::/root:/bin/sh\nvmail:x:5000:5001::/srv/mail:/usr/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(&g, "vmail:x:5001:\nmail:x:8:vmail\nother:x:9:root\n").unwrap();
    assert_eq!(
        lookup("vmail", &p, &g),
        Ok(Ids {
            uid: 5000,
            gid: 5001,
            groups: vec![5001, 8]
        })
    );
    assert_eq!(
        lookup("nobody", &p, &g),
        Err(format!("no user nobody in {}", p.display()))
    );
    assert!(lookup("vmail", &dir.path().join("none"), &g).is_err());
}

/// An mbox session given `mail-group` must open its own mbox only; other sessions are not asked.
#[test]
fn the_mail_group_requires_the_account_s_own_mbox() {
    let with = Ids {
        uid: 1000,
        gid: 1000,
        groups: vec![1000, 8],
    };
    assert_eq!(required_owner(&with, Some(8)), Some(1000));
    let without = Ids {
        groups: vec![1000],
        ..with.clone()
    };
    assert_eq!(required_owner(&without, Some(8)), None, "a Maildir session");
    assert_eq!(required_owner(&with, None), None, "no mail-group");
}

/// An inetd-style switcher (`Privileges::Process`, no fallback) with mail group 8 and `first_valid`,
/// reading a group file of `text`: the directory holding it, its path, the switcher.
fn process_with_groups(
    text: &str,
    first_valid: FirstValid,
) -> (tempfile::TempDir, std::path::PathBuf, Privileges) {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("group");
    std::fs::write(&g, text).unwrap();
    let p = Privileges::Process {
        fallback: None,
        group_file: g.clone(),
        mail_group: Some(8),
        first_valid,
    };
    (dir, g, p)
}

/// A passwd-file account is not the system user of the same name: it gets its gid alone (and
/// `mail-group` for an mbox), not that user's `/etc/group` memberships, unless its line names a
/// system user with `userdb_system_groups_user=` (Dovecot's field). A passwd-file user called
/// `postgres` got group ssl-cert, which may read TLS private keys.
#[test]
fn a_passwd_file_account_gets_no_system_groups_by_name() {
    let (_dir, g, p) = process_with_groups("ssl-cert:x:103:postgres\nstaff:x:50:alice\n", NO_LIMIT);
    let mut acc = account(Some(1000), Some(1000));
    acc.name = "postgres".to_string();
    acc.policy.system_groups_user = None;
    assert_eq!(
        p.ids_for(&acc, &g, None, Some(8), false).unwrap().groups,
        [1000]
    );
    assert_eq!(
        p.ids_for(&acc, &g, None, Some(8), true).unwrap().groups,
        [1000, 8]
    );
    acc.policy.system_groups_user = Some("alice".to_string());
    assert_eq!(
        p.ids_for(&acc, &g, None, Some(8), false).unwrap().groups,
        [1000, 50]
    );
}

/// `mail-group` joins every account's groups once, whatever else they have; it is named or numbered.
#[test]
fn the_mail_group_joins_every_account() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("group");
    std::fs::write(&g, "mail:x:8:bob\nstaff:x:50:alice,bob\n").unwrap();
    assert_eq!(group_id_in("mail", &g), Ok(8));
    assert_eq!(group_id_in("12", &g), Ok(12));
    assert!(
        group_id_in("wheel", &g)
            .unwrap_err()
            .contains("no group \"wheel\"")
    );
    let p = Privileges::Process {
        fallback: None,
        group_file: g.clone(),
        mail_group: Some(8),
        first_valid: NO_LIMIT,
    };
    let groups = |name: &str, gid: u32| {
        let mut acc = account(Some(1000), Some(gid));
        acc.name = name.to_string();
        acc.policy.system_groups_user = Some(name.to_string());
        p.ids_for(&acc, &g, None, Some(8), true).unwrap().groups
    };
    assert_eq!(groups("alice", 1000), [1000, 50, 8]);
    assert_eq!(groups("bob", 1000), [1000, 8, 50], "a member already: once");
    assert_eq!(groups("carol", 8), [8], "the primary group: once");
    let fallback = Ids {
        uid: 7,
        gid: 7,
        groups: vec![7],
    }
    .with_group(Some(8));
    assert_eq!(fallback.groups, [7, 8]);
    // Not for a Maildir: its directories are followed through the owner's symlinks, and the
    // group could reach every spool in /var/mail. The fallback gives it back too.
    let mut acc = account(Some(1000), Some(1000));
    acc.name = "alice".to_string();
    acc.policy.system_groups_user = Some("alice".to_string());
    assert_eq!(
        p.ids_for(&acc, &g, None, Some(8), false).unwrap().groups,
        [1000, 50]
    );
    let unknown = account(None, None);
    assert_eq!(
        p.ids_for(&unknown, &g, Some(&fallback), Some(8), false)
            .unwrap()
            .groups,
        [7]
    );
    assert_eq!(
        p.ids_for(&unknown, &g, Some(&fallback), Some(8), true)
            .unwrap()
            .groups,
        [7, 8]
    );
}

/// A per-process switcher reading the group file `group` (written in `dir`), and the fallback
/// account the tests hand to `ids_for`.
fn process_switch(dir: &tempfile::TempDir, group: &str) -> (Privileges, PathBuf, Ids) {
    let g = dir.path().join("group");
    std::fs::write(&g, group).unwrap();
    let p = Privileges::Process {
        fallback: None,
        group_file: g.clone(),
        mail_group: None,
        first_valid: NO_LIMIT,
    };
    let fallback = Ids {
        uid: 7,
        gid: 8,
        groups: vec![8],
    };
    (p, g, fallback)
}

#[test]
fn check_config_asks_the_rule_ids_for_follows() {
    let dir = tempfile::tempdir().unwrap();
    let (p, g, fallback) = process_switch(&dir, "");
    for (uid, gid) in [
        (None, None),
        (Some(1), None),
        (None, Some(1)),
        (Some(1), Some(2)),
    ] {
        for fb in [None, Some(&fallback)] {
            let acc = account(uid, gid);
            assert_eq!(
                cannot_switch_to(&acc, fb.is_some()),
                p.ids_for(&acc, &g, fb, None, true).is_err(),
                "{acc:?} {fb:?}"
            );
        }
    }
}

#[test]
fn accounts_without_ids_need_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (p, g, fallback) = process_switch(&dir, "staff:x:50:alice\n");
    let cases = [
        (
            account(Some(1), Some(2)),
            None,
            Ok(Ids {
                uid: 1,
                gid: 2,
                groups: vec![2, 50],
            }),
        ),
        (
            account(Some(1), Some(50)),
            None,
            Ok(Ids {
                uid: 1,
                gid: 50,
                groups: vec![50],
            }),
        ),
        (account(None, None), Some(&fallback), Ok(fallback.clone())),
        (
            account(Some(1), Some(2)),
            Some(&fallback),
            Ok(Ids {
                uid: 1,
                gid: 2,
                groups: vec![2, 50],
            }),
        ),
    ];
    for (acc, fb, want) in cases {
        assert_eq!(p.ids_for(&acc, &g, fb, None, true), want, "{acc:?}");
    }
    for acc in [
        account(None, None),
        account(Some(1), None),
        account(None, Some(1)),
    ] {
        let err = p.ids_for(&acc, &g, None, None, true).unwrap_err();
        assert!(err.contains("never opened as root"), "{err}");
    }
    assert!(
        p.ids_for(
            &account(Some(1), Some(2)),
            &dir.path().join("none"),
            None,
            None,
            true
        )
        .is_err()
    );
    // A group name that is not UTF-8 (Latin-1, from an old host) used to fail every login.
    std::fs::write(&g, b"\xe9quipe:x:60:alice\nstaff:x:50:alice\n").unwrap();
    assert_eq!(
        p.ids_for(&account(Some(1), Some(2)), &g, None, None, true),
        Ok(Ids {
            uid: 1,
            gid: 2,
            groups: vec![2, 60, 50],
        })
    );
}

/// Supplementary groups below `first-valid-gid` are dropped (a `root:x:0:alice` line would give a
/// session group 0), `mail-group` kept whatever its number.
#[test]
fn groups_below_the_first_valid_gid_are_dropped() {
    let limits = FirstValid { uid: 1, gid: 10 };
    let (_dir, _, p) =
        process_with_groups("root:x:0:alice\nmail:x:8:alice\nstaff:x:50:alice\n", limits);
    let switch = p
        .switch_for(&account(Some(1000), Some(1000)), true)
        .unwrap();
    assert_eq!(switch.unwrap().ids.groups, [1000, 8, 50]);
}

/// Standalone `--user` below the limits is refused at start-up, before the switch: every session
/// would run as that account. Needs root (as another user, `--user root` is refused for needing it).
#[test]
fn standalone_user_below_the_limits_is_refused() {
    if !is_root() {
        eprintln!("standalone_user_below_the_limits_is_refused: needs root, skipped");
        return;
    }
    let err =
        Privileges::standalone(Some("root"), None, FirstValid { uid: 1, gid: 1 }).unwrap_err();
    assert!(
        err.contains("--user root: uid 0 is below first-valid-uid 1"),
        "{err}"
    );
}

/// An account below `first-valid-uid` or `first-valid-gid` (uid 0: root) is refused before any
/// switch, by both switchers and for the inetd fallback; at 0 the limits let root through. Asks
/// `switch_for`, the decision `assume` acts on, so nothing here switches the test process.
#[test]
fn accounts_below_the_first_valid_ids_are_refused_before_any_switch() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("group");
    std::fs::write(&g, "").unwrap();
    let defaults = FirstValid { uid: 1, gid: 1 };
    let process = |first_valid, fallback| Privileges::Process {
        fallback,
        group_file: g.clone(),
        mail_group: None,
        first_valid,
    };
    let thread = |first_valid| Privileges::Thread {
        group_file: g.clone(),
        base: Ids {
            uid: 0,
            gid: 0,
            groups: vec![0],
        },
        mail_group: None,
        first_valid,
    };
    let root = account(Some(0), Some(0));
    let uid_0 = "uid 0 is below first-valid-uid 1 \
                     (a session with it could read files the account does not own)";
    for p in [process(defaults, None), thread(defaults)] {
        assert_eq!(p.switch_for(&root, false), Err(uid_0.to_string()), "{p:?}");
        assert_eq!(p.switch_for(&root, true), Err(uid_0.to_string()), "{p:?}");
    }
    let limits = FirstValid {
        uid: 1000,
        gid: 100,
    };
    assert_eq!(
        process(limits, None).switch_for(&account(Some(1000), Some(99)), false),
        Err("gid 99 is below first-valid-gid 100 \
                 (a session with it could read files the account does not own)"
            .to_string())
    );
    assert!(
        thread(limits)
            .switch_for(&account(Some(999), Some(100)), false)
            .unwrap_err()
            .starts_with("uid 999 is below first-valid-uid 1000 ")
    );
    let at_limits = thread(limits).switch_for(&account(Some(1000), Some(100)), false);
    assert_eq!(at_limits.unwrap().unwrap().ids.uid, 1000);
    // `--user root` as the inetd fallback serves id-less accounts as root: refused too.
    let root_ids = Ids {
        uid: 0,
        gid: 0,
        groups: vec![0],
    };
    let p = process(defaults, Some(root_ids.clone()));
    assert_eq!(
        p.switch_for(&account(None, None), false),
        Err(uid_0.to_string())
    );
    // Lowered to 0, root is served (with a warning at every login).
    let p = process(FirstValid { uid: 0, gid: 0 }, Some(root_ids.clone()));
    assert_eq!(
        p.switch_for(&root, false).unwrap().unwrap().ids.uid,
        0,
        "own ids"
    );
    assert_eq!(
        p.switch_for(&account(None, None), false)
            .unwrap()
            .unwrap()
            .ids,
        root_ids
    );
    // --check-config asks the same rule for passwd-file accounts with their own ids.
    assert_eq!(below_first_valid(&root, defaults), Some(uid_0.to_string()));
    assert_eq!(below_first_valid(&account(None, None), defaults), None);
    assert_eq!(
        below_first_valid(&account(Some(5), Some(5)), defaults),
        None
    );
}

#[test]
fn unchanged_accepts_everyone() {
    for acc in [
        account(None, None),
        account(Some(0), Some(0)),
        account(Some(12345), Some(1)),
    ] {
        assert_eq!(Privileges::Unchanged.assume(&acc, true), Ok(None));
    }
}

/// A file only root may read (owner root, mode 0600), in a directory kept while the guard lives;
/// `None` when the tests do not run as root (the tests that need it are then skipped).
fn root_only_file() -> Option<(tempfile::TempDir, PathBuf)> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    Some((dir, file))
}

/// Needs root (CI runs as root); skipped otherwise. The switch happens in a scratch thread, so the
/// test process keeps its own identity.
#[test]
fn thread_switch_is_per_thread() {
    let Some((_dir, file)) = root_only_file() else {
        return;
    };
    let ids = Ids {
        uid: 12345,
        gid: 12346,
        groups: vec![12346, 12347],
    };
    let seen = std::thread::spawn(move || {
        switch_thread(&ids).unwrap();
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        (std::fs::read(&file).map_err(|e| e.kind()), status)
    })
    .join()
    .unwrap();
    assert_eq!(seen.0, Err(std::io::ErrorKind::PermissionDenied));
    let line = |key: &str| {
        seen.1
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("Uid:"), "0 0 0 12345");
    assert_eq!(line("Gid:"), "0 0 0 12346");
    assert_eq!(line("Groups:"), "12346 12347");
    // This thread is untouched.
    assert!(
        unistd::getgroups()
            .unwrap()
            .iter()
            .all(|g| g.as_raw() < 12345)
    );
    assert_eq!(unistd::setfsuid(Uid::from_raw(0)).as_raw(), 0);
}

/// A thread that served an account takes back the start-up identity: root-only files are readable
/// again and its groups are the start-up ones. Needs root; skipped otherwise.
#[test]
fn restore_gives_the_thread_back_its_start_up_identity() {
    let Some((_dir, file)) = root_only_file() else {
        return;
    };
    let account = account(Some(12345), Some(12346));
    // In a thread of its own, as the server's main thread: it drops capabilities, and the session
    // thread started after inherits what it kept.
    let (base, seen) = std::thread::spawn(move || {
        let privileges = Privileges::standalone(None, None, NO_LIMIT).unwrap();
        let Privileges::Thread { base, .. } = &privileges else {
            panic!("root without --user serves with per-thread identities");
        };
        let seen = std::thread::scope(|s| {
            s.spawn(|| {
                privileges.assume(&account, true).unwrap();
                let denied = std::fs::read(&file).map_err(|e| e.kind());
                privileges.restore().unwrap();
                let fsuid = unistd::setfsuid(Uid::from_raw(0)).as_raw();
                (
                    denied,
                    std::fs::read(&file).is_ok(),
                    fsuid,
                    thread_groups().unwrap(),
                )
            })
            .join()
            .unwrap()
        });
        (base.clone(), seen)
    })
    .join()
    .unwrap();
    assert_eq!(seen.0, Err(std::io::ErrorKind::PermissionDenied));
    assert!(seen.1, "the root-only file is readable again");
    assert_eq!(seen.2, base.uid);
    assert!(
        same_set(&seen.3, &base.groups),
        "{:?} vs {:?}",
        seen.3,
        base
    );
}
