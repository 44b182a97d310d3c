//! Tests for the crash-safe expunge: results byte for byte, metadata kept, and a simulated crash at
//! every step followed by recovery (with and without mail delivered after the crash).

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

const MSGS: [&str; 4] = [
    "From a Thu Jan  1 00:00:00 2026\nSubject: one\n\nfirst body\n\n",
    "From b Thu Jan  1 00:00:01 2026\nSubject: two\n\nsecond body, a little longer\n\n",
    "From c Thu Jan  1 00:00:02 2026\nSubject: three\n\nthird\n\n",
    "From d Thu Jan  1 00:00:03 2026\nSubject: four\n\nfourth body\n",
];
const LATE: &str =
    "\nFrom late Thu Jan  1 00:01:00 2026\nSubject: delivered after the crash\n\nlate\n";

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    file: File,
}

fn fixture(content: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user");
    fs::write(&path, content).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    Fixture {
        _dir: dir,
        path,
        file,
    }
}

/// The mbox made of MSGS, the byte ranges of `gone` in it, and the expected result.
fn case(gone: &[usize], appended: &str) -> (Vec<u8>, Vec<(u64, u64)>, Vec<u8>) {
    let (mut all, mut ranges, mut kept) = (Vec::new(), Vec::new(), Vec::new());
    for (i, m) in MSGS.iter().enumerate() {
        let start = all.len() as u64;
        all.extend_from_slice(m.as_bytes());
        if gone.contains(&i) {
            ranges.push((start, all.len() as u64));
        } else {
            kept.extend_from_slice(m.as_bytes());
        }
    }
    all.extend_from_slice(appended.as_bytes());
    kept.extend_from_slice(appended.as_bytes());
    (all, ranges, kept)
}

const DELETIONS: &[&[usize]] = &[&[0], &[1], &[3], &[0, 1, 2, 3], &[1, 2], &[0, 2], &[1, 3]];

#[test]
fn removes_exactly_the_deleted_messages() {
    for appended in [
        "",
        "From e Thu Jan  1 00:00:09 2026\nSubject: during the session\n\nnew\n",
    ] {
        for gone in DELETIONS {
            let (all, ranges, expected) = case(gone, appended);
            let fx = fixture(&all);
            let before = fs::metadata(&fx.path).unwrap();
            crash::arm(None);
            expunge_with(&fx.path, &fx.file, &ranges, &mut || {}, 5).unwrap();
            assert_eq!(fs::read(&fx.path).unwrap(), expected, "deleted {gone:?}");
            let after = fs::metadata(&fx.path).unwrap();
            assert_eq!(
                (after.ino(), after.mode(), after.uid(), after.gid()),
                (before.ino(), before.mode(), before.uid(), before.gid())
            );
            assert!(!recovery_path(&fx.path).exists());
        }
    }
}

#[test]
fn nothing_to_delete_changes_nothing() {
    let (all, _, _) = case(&[], "");
    let fx = fixture(&all);
    expunge(&fx.path, &fx.file, &[], &mut || {}).unwrap();
    assert_eq!(fs::read(&fx.path).unwrap(), all);
}

/// Crashes at the n-th crash point of an expunge, for every n, then recovers, optionally after a
/// delivery; the result is the old or the new mailbox exactly, plus the late delivery.
#[test]
fn recovers_from_a_crash_at_every_step() {
    let mut seen = std::collections::HashSet::new();
    for gone in DELETIONS {
        for late in ["", LATE] {
            let (all, ranges, expected) = case(gone, "");
            let mut finished = false;
            for n in 0.. {
                let fx = fixture(&all);
                crash::arm(Some(n));
                let result = expunge_with(&fx.path, &fx.file, &ranges, &mut || {}, 7);
                crash::arm(None);
                if result.is_ok() {
                    assert_eq!(fs::read(&fx.path).unwrap(), expected);
                    finished = true;
                    break;
                }
                OpenOptions::new()
                    .append(true)
                    .open(&fx.path)
                    .unwrap()
                    .write_all(late.as_bytes())
                    .unwrap();
                let outcome = recover(&fx.path, &fx.file).unwrap();
                seen.insert(outcome);
                let base = match outcome {
                    Recovery::Completed => &expected,
                    Recovery::RolledBack | Recovery::DiscardedIncomplete => &all,
                    Recovery::Clean => {
                        assert!(
                            n > 0,
                            "a crash before anything leaves no recovery file only at the very end"
                        );
                        &expected
                    }
                };
                let want = [base.as_slice(), late.as_bytes()].concat();
                assert_eq!(
                    fs::read(&fx.path).unwrap(),
                    want,
                    "gone {gone:?} crash at {n}: {outcome:?}"
                );
                assert!(!recovery_path(&fx.path).exists());
            }
            assert!(finished);
        }
    }
    let all_kinds = [
        Recovery::Clean,
        Recovery::DiscardedIncomplete,
        Recovery::RolledBack,
        Recovery::Completed,
    ];
    assert_eq!(
        seen,
        all_kinds.into_iter().collect(),
        "every recovery path was exercised"
    );
}

/// A crash during recovery is recovered by the next recovery.
#[test]
fn recovery_survives_its_own_crash() {
    let (all, ranges, _) = case(&[0, 2], "");
    // Crash points while writing the recovery file: the header, each 7-octet chunk of the tail, the end.
    let writing = 2 + (all.len() as u64 - ranges[0].0).div_ceil(7) as usize;
    // Crash the expunge in the middle of its rewrite: the recovery file is complete, the mbox half done.
    for expunge_crash in [writing + 1, writing + 4, writing + 8] {
        for n in 0.. {
            let fx = fixture(&all);
            crash::arm(Some(expunge_crash));
            assert!(expunge_with(&fx.path, &fx.file, &ranges, &mut || {}, 7).is_err());
            crash::arm(Some(n));
            let first = recover(&fx.path, &fx.file);
            crash::arm(None);
            let done = first.is_ok();
            if !done {
                assert_eq!(recover(&fx.path, &fx.file).unwrap(), Recovery::RolledBack);
            }
            assert_eq!(
                fs::read(&fx.path).unwrap(),
                all,
                "expunge crash {expunge_crash}, recovery crash {n}"
            );
            if done {
                break;
            }
        }
    }
}

#[test]
fn corrupt_or_short_recovery_file_is_discarded() {
    let (all, ranges, _) = case(&[1], "");
    let variants: [fn(&mut Vec<u8>); 4] = [
        |r| r.truncate(r.len() - 1),
        |r| r.truncate(10),
        |r| r[60] ^= 1,
        |r| r[16] ^= 1,
    ];
    for damage in variants {
        let fx = fixture(&all);
        crash::arm(Some(2)); // after the header, the tail and the fsync: the file is complete
        assert!(expunge_with(&fx.path, &fx.file, &ranges, &mut || {}, 1 << 20).is_err());
        crash::arm(None);
        assert_eq!(
            fs::read(&fx.path).unwrap(),
            all,
            "the mbox is untouched before the rewrite"
        );
        let rpath = recovery_path(&fx.path);
        let mut saved = fs::read(&rpath).unwrap();
        damage(&mut saved);
        fs::write(&rpath, &saved).unwrap();
        assert_eq!(
            recover(&fx.path, &fx.file).unwrap(),
            Recovery::DiscardedIncomplete
        );
        assert_eq!(fs::read(&fx.path).unwrap(), all);
        assert!(!rpath.exists());
    }
}

#[test]
fn plan_lists_kept_ranges() {
    let plan = Plan {
        size: 100,
        offset: 10,
        new_size: 70,
        deleted: vec![(10, 20), (50, 60), (90, 100)],
    };
    assert_eq!(plan.kept(), vec![(20, 50), (60, 90)]);
}

#[test]
fn refuses_to_overwrite_an_existing_recovery_file() {
    let (all, ranges, _) = case(&[1], "");
    let fx = fixture(&all);
    fs::write(recovery_path(&fx.path), b"someone else's").unwrap();
    crash::arm(None);
    let e = expunge(&fx.path, &fx.file, &ranges, &mut || {}).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&fx.path).unwrap(), all);
}

/// A recovery file of version 1 (MD5), as an older poplar left it, is still applied after an upgrade.
#[test]
fn recovers_from_a_version_1_recovery_file() {
    use md5::{Digest, Md5};
    let (all, ranges, expected) = case(&[0, 2], "");
    let mut seen = std::collections::HashSet::new();
    for n in 0.. {
        let fx = fixture(&all);
        crash::arm(Some(n));
        let result = expunge_with(&fx.path, &fx.file, &ranges, &mut || {}, 7);
        crash::arm(None);
        if result.is_ok() {
            break;
        }
        let rpath = recovery_path(&fx.path);
        let Ok(mut saved) = fs::read(&rpath) else {
            continue;
        };
        if saved.len() < 16 + 16 || &saved[..16] != super::super::sum::MAGIC_V2 {
            continue;
        }
        saved[..16].copy_from_slice(super::super::sum::MAGIC_V1);
        let body = saved.len() - 16;
        let digest: [u8; 16] = Md5::digest(&saved[..body]).into();
        saved[body..].copy_from_slice(&digest);
        fs::write(&rpath, &saved).unwrap();
        let outcome = recover(&fx.path, &fx.file).unwrap();
        let want = if outcome == Recovery::Completed {
            &expected
        } else {
            &all
        };
        assert_eq!(
            &fs::read(&fx.path).unwrap(),
            want,
            "crash at {n}: {outcome:?}"
        );
        seen.insert(outcome);
    }
    assert!(
        seen.contains(&Recovery::RolledBack) && seen.contains(&Recovery::Completed),
        "{seen:?}"
    );
}
