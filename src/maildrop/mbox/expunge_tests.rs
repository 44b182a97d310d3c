//! Tests for the crash-safe expunge: results byte for byte, metadata kept, the check run alongside
//! step 1, and a simulated crash at every step followed by recovery (with and without mail delivered
//! after the crash), for recovery files of version 4 and of the older versions.

use super::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::panic;
use std::thread;

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

/// All the steps with a check that passes, writing a recovery file of `version`.
fn run(fx: &Fixture, ranges: &[(u64, u64)], chunk: usize, version: Version) -> io::Result<()> {
    prepare_with(
        &fx.path,
        &fx.file,
        ranges,
        || Ok::<(), io::Error>(()),
        &mut || {},
        chunk,
        version,
    )
    .map_err(|e| match e {
        Refused::Check(e) | Refused::Io(e) => e,
    })?
    .commit(&mut || {})?
    .finish()
}

/// A fresh mbox of `all` and an expunge of `ranges` in it that crashes at its `n`-th crash point
/// (or ends, when it has fewer), writing a recovery file of `version`.
fn crashed_at(
    all: &[u8],
    ranges: &[(u64, u64)],
    n: usize,
    version: Version,
) -> (Fixture, io::Result<()>) {
    let fx = fixture(all);
    crash::arm(Some(n));
    let result = run(&fx, ranges, 7, version);
    crash::arm(None);
    (fx, result)
}

/// O - N: the octets the expunge removes.
fn removed(ranges: &[(u64, u64)]) -> usize {
    ranges.iter().map(|(a, b)| (b - a) as usize).sum()
}

/// Mail of exactly `len` octets, as an agent would append it (cut short if `len` is tiny).
fn mail_of(len: usize) -> Vec<u8> {
    let mut m = b"\nFrom late Thu Jan  1 00:01:00 2026\nSubject: late\n\n".to_vec();
    m.resize(len.max(m.len()), b'x');
    m.truncate(len);
    m
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
            run(&fx, &ranges, 5, Version::V4).unwrap();
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

/// Crashes at the n-th crash point of an expunge, for every n, then recovers, after a delivery of
/// nothing, of short mail, of mail of exactly O - N octets (after the truncation it fills `N..O`
/// exactly) and of longer mail; the result is the old or the new mailbox exactly, plus the delivery.
fn recovers_from_a_crash_at_every_step(version: Version) {
    let mut seen = std::collections::HashSet::new();
    for gone in DELETIONS {
        let (all, ranges, expected) = case(gone, "");
        let exact = mail_of(removed(&ranges));
        let longer = mail_of(removed(&ranges) + 100);
        for late in [&b""[..], LATE.as_bytes(), &exact, &longer] {
            let mut finished = false;
            for n in 0.. {
                let (fx, result) = crashed_at(&all, &ranges, n, version);
                if result.is_ok() {
                    assert_eq!(fs::read(&fx.path).unwrap(), expected);
                    finished = true;
                    break;
                }
                let truncated = fs::metadata(&fx.path).unwrap().len() < all.len() as u64;
                OpenOptions::new()
                    .append(true)
                    .open(&fx.path)
                    .unwrap()
                    .write_all(late)
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
                assert_eq!(
                    truncated,
                    matches!(outcome, Recovery::Completed | Recovery::Clean),
                    "gone {gone:?} crash at {n}: {outcome:?}"
                );
                let want = [base.as_slice(), late].concat();
                assert_eq!(
                    fs::read(&fx.path).unwrap(),
                    want,
                    "gone {gone:?} crash at {n}, {} octets late: {outcome:?}",
                    late.len()
                );
                assert!(!recovery_path(&fx.path).exists());
                assert!(!compacted_mark_path(&fx.path).exists());
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

#[test]
fn recovers_from_a_crash_at_every_step_version_4() {
    recovers_from_a_crash_at_every_step(Version::V4);
}

#[test]
fn recovers_from_a_crash_at_every_step_version_3() {
    recovers_from_a_crash_at_every_step(Version::V3);
}

/// Files of version 2, as the previous poplar wrote them, are still applied as they were.
#[test]
fn recovers_from_a_crash_at_every_step_version_2() {
    recovers_from_a_crash_at_every_step(Version::V2);
}

/// A file of version 2 or 3 comes from a poplar that made no mark: one left by a crash after its
/// truncation (the reply sent, the recovery file not yet removed) has no mark beside it, and mail
/// may have been delivered since. Recovery must then complete, not roll back over the new mbox; the
/// mark's absence proves nothing for such a file. For version 4 it does, and such a state cannot arise.
#[test]
fn a_file_of_an_older_version_without_a_mark_after_the_truncation_completes() {
    for version in [Version::V2, Version::V3] {
        for gone in DELETIONS {
            let (all, ranges, expected) = case(gone, "");
            let mut truncated_seen = false;
            for n in 0.. {
                let (fx, result) = crashed_at(&all, &ranges, n, version);
                if result.is_ok() {
                    break;
                }
                if fs::metadata(&fx.path).unwrap().len() == all.len() as u64 {
                    assert!(recover(&fx.path, &fx.file).is_ok());
                    continue;
                }
                // Truncated: as the older poplar would have left it, with no mark; then a delivery.
                truncated_seen = true;
                let _ = fs::remove_file(compacted_mark_path(&fx.path));
                OpenOptions::new()
                    .append(true)
                    .open(&fx.path)
                    .unwrap()
                    .write_all(LATE.as_bytes())
                    .unwrap();
                let outcome = recover(&fx.path, &fx.file).unwrap();
                assert_eq!(
                    fs::read(&fx.path).unwrap(),
                    [expected.as_slice(), LATE.as_bytes()].concat(),
                    "{version:?} gone {gone:?} crash at {n}: {outcome:?}"
                );
                assert!(!recovery_path(&fx.path).exists());
            }
            assert!(
                truncated_seen,
                "{version:?} gone {gone:?}: no crash after the truncation"
            );
        }
    }
}

/// A crash during recovery is recovered by the next recovery.
#[test]
fn recovery_survives_its_own_crash() {
    let (all, ranges, _) = case(&[0, 2], "");
    // Crash points while writing the recovery file: the header, each 7-octet chunk of the saved bytes
    // (`offset..N` in versions 3 and 4, `offset..O` before), the end.
    let new_size = (all.len() - removed(&ranges)) as u64;
    for (version, saved_end) in [(Version::V4, new_size), (Version::V2, all.len() as u64)] {
        let writing = 2 + (saved_end - ranges[0].0).div_ceil(7) as usize;
        // Crash the expunge in the middle of its rewrite: the recovery file is complete, the mbox half
        // done.
        for expunge_crash in [writing + 1, writing + 4, writing + 8] {
            recovery_crashes(&all, &ranges, version, expunge_crash);
        }
    }
}

/// Crashes the expunge at `expunge_crash` (in its rewrite), then its recovery at every point.
fn recovery_crashes(all: &[u8], ranges: &[(u64, u64)], version: Version, expunge_crash: usize) {
    for n in 0.. {
        let fx = fixture(all);
        crash::arm(Some(expunge_crash));
        assert!(run(&fx, ranges, 7, version).is_err());
        assert_ne!(fs::read(&fx.path).unwrap(), all, "the rewrite had begun");
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

#[test]
fn corrupt_or_short_recovery_file_is_discarded() {
    let (all, ranges, _) = case(&[1], "");
    let variants: [fn(&mut Vec<u8>); 6] = [
        |r| r.truncate(r.len() - 1),
        |r| r.truncate(10),
        |r| r[60] ^= 1,
        |r| r[16] ^= 1,
        |r| r[3] ^= 1,
        // The keys and hash (versions 3 and 4).
        |r| {
            let n = r.len();
            r[n - 40] ^= 1;
        },
    ];
    for damage in variants {
        let fx = fixture(&all);
        crash::arm(Some(2)); // after the header, the saved bytes and the fsync: the file is complete
        assert!(run(&fx, &ranges, 1 << 20, Version::V4).is_err());
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
    assert_eq!(
        fs::read(recovery_path(&fx.path)).unwrap(),
        b"someone else's"
    );
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
        let result = run(&fx, &ranges, 7, Version::V2);
        crash::arm(None);
        if result.is_ok() {
            break;
        }
        let rpath = recovery_path(&fx.path);
        let Ok(mut saved) = fs::read(&rpath) else {
            continue;
        };
        if saved.len() < 16 + 16 || &saved[..16] != crate::maildrop::mbox::sum::MAGIC_V2 {
            continue;
        }
        saved[..16].copy_from_slice(crate::maildrop::mbox::sum::MAGIC_V1);
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

/// The check runs in another thread while the recovery file is written; when it fails, the recovery
/// file goes and the mbox is untouched.
#[test]
fn a_failed_check_leaves_the_mbox_untouched() {
    let (all, ranges, _) = case(&[0, 2], "");
    let fx = fixture(&all);
    let caller = thread::current().id();
    crash::arm(None);
    let refused = prepare(
        &fx.path,
        &fx.file,
        &ranges,
        || {
            assert_ne!(thread::current().id(), caller);
            Err("changed")
        },
        &mut || {},
    );
    assert!(matches!(refused, Err(Refused::Check("changed"))));
    assert_eq!(fs::read(&fx.path).unwrap(), all);
    assert!(!recovery_path(&fx.path).exists());
}

/// A crash anywhere in step 1 of an expunge whose check fails leaves at most an incomplete recovery
/// file: the checksum that makes it valid is written only after the check passed.
#[test]
fn a_crash_while_the_check_fails_leaves_no_valid_recovery_file() {
    let (all, ranges, _) = case(&[0, 2], "");
    for n in 0.. {
        let fx = fixture(&all);
        crash::arm(Some(n));
        let refused = prepare_with(
            &fx.path,
            &fx.file,
            &ranges,
            || Err("changed"),
            &mut || {},
            7,
            Version::V4,
        );
        crash::arm(None);
        if matches!(refused, Err(Refused::Check("changed"))) {
            assert!(!recovery_path(&fx.path).exists());
            assert!(n > 0);
            break;
        }
        assert!(matches!(refused, Err(Refused::Io(_))));
        assert_eq!(
            recover(&fx.path, &fx.file).unwrap(),
            Recovery::DiscardedIncomplete,
            "crash at {n}"
        );
        assert_eq!(fs::read(&fx.path).unwrap(), all);
    }
}

#[test]
fn a_panicking_check_leaves_the_mbox_untouched() {
    let (all, ranges, _) = case(&[1], "");
    let fx = fixture(&all);
    crash::arm(None);
    let outcome = panic::catch_unwind(|| {
        let _ = prepare(
            &fx.path,
            &fx.file,
            &ranges,
            || -> Result<(), ()> { panic!("check failed badly") },
            &mut || {},
        );
    });
    assert!(outcome.is_err());
    assert_eq!(fs::read(&fx.path).unwrap(), all);
    assert!(!recovery_path(&fx.path).exists());
}

/// Version 4 (as 3) saves `offset..N` and a hash of `N..O`, not `N..O` itself; and the mbox's inode.
#[test]
fn version_4_saves_only_what_the_compaction_overwrites() {
    let (all, ranges, _) = case(&[1], "");
    let fx = fixture(&all);
    crash::arm(Some(2)); // the recovery file is complete
    assert!(run(&fx, &ranges, 1 << 20, Version::V4).is_err());
    crash::arm(None);
    let saved = fs::read(recovery_path(&fx.path)).unwrap();
    let new_size = (all.len() - removed(&ranges)) as u64;
    let header = 16 + 4 * 8 + 16 * ranges.len() as u64;
    let mode = fs::metadata(recovery_path(&fx.path)).unwrap().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Header, `offset..N`, keys and hash (64), the mbox's inode (8), the checksum (16).
    assert_eq!(
        saved.len() as u64,
        header + (new_size - ranges[0].0) + 64 + 8 + 16
    );
    assert_eq!(
        saved[header as usize..(header + new_size - ranges[0].0) as usize],
        all[ranges[0].0 as usize..new_size as usize]
    );
    let inode = &saved[saved.len() - 16 - 8..saved.len() - 16];
    assert_eq!(inode, fx.file.metadata().unwrap().ino().to_le_bytes());
    let tail = &all[new_size as usize..];
    assert!(
        !saved.windows(tail.len()).any(|w| w == tail),
        "N..O is not copied"
    );
}

/// The mark cannot be made (as on a full disk, where even an empty file needs a directory entry): the
/// expunge fails before the truncation and is rolled back at once, the mbox as it was.
#[test]
fn a_mark_that_cannot_be_made_leaves_the_old_mbox() {
    let (all, ranges, _) = case(&[0, 2], "");
    let fx = fixture(&all);
    crash::arm(None);
    let prepared = prepare_with(
        &fx.path,
        &fx.file,
        &ranges,
        || Ok::<(), io::Error>(()),
        &mut || {},
        7,
        Version::V4,
    )
    .map_err(|e| match e {
        Refused::Check(e) | Refused::Io(e) => e,
    })
    .unwrap();
    fs::create_dir(compacted_mark_path(&fx.path)).unwrap();
    assert!(prepared.commit(&mut || {}).is_err());
    assert_eq!(fs::read(&fx.path).unwrap(), all);
    assert!(!recovery_path(&fx.path).exists());
}

/// The mboxes an expunge of `ranges` from `all` (version 4) leaves when cut short at each crash point
/// before its mark is made, in order, each with the crash point's number.
fn crashes_before_the_mark(all: &[u8], ranges: &[(u64, u64)]) -> Vec<(usize, Fixture)> {
    let mut crashed = Vec::new();
    for n in 0.. {
        let fx = fixture(all);
        crash::arm(Some(n));
        let result = run(&fx, ranges, 7, Version::V4);
        crash::arm(None);
        if result.is_ok() || compacted_mark_path(&fx.path).exists() {
            return crashed;
        }
        crashed.push((n, fx));
    }
    unreachable!("the crash points are counted up from 0 until the expunge completes")
}

/// After a crash before the truncation, another program rewrites a byte of the old tail in place (a
/// mail reader's flag update) before the next login: the expunge is still rolled back, to the old mbox
/// with that change, never taken for complete (which kept the half-compacted file).
#[test]
fn a_tail_changed_after_a_crash_before_the_truncation_is_rolled_back() {
    let (all, ranges, _) = case(&[0, 2], "");
    let new_size = all.len() - removed(&ranges);
    let mut rolled_back = 0;
    for (n, fx) in crashes_before_the_mark(&all, &ranges) {
        // A same-size change at the end of the file, inside `N..O`.
        let at = all.len() - 2;
        assert!(at >= new_size);
        let mut changed = all.clone();
        changed[at] = b'!';
        fx.file.write_all_at(b"!", at as u64).unwrap();
        let outcome = recover(&fx.path, &fx.file).unwrap();
        assert_ne!(outcome, Recovery::Completed, "crash at {n}");
        rolled_back += usize::from(outcome == Recovery::RolledBack);
        assert_eq!(
            fs::read(&fx.path).unwrap(),
            changed,
            "crash at {n}: {outcome:?}"
        );
    }
    assert!(rolled_back > 0, "no crash point fell inside the compaction");
    // Shortened by another program instead: the recovery file stays for the administrator.
    for n in 0.. {
        let fx = fixture(&all);
        crash::arm(Some(n));
        let result = run(&fx, &ranges, 7, Version::V4);
        crash::arm(None);
        assert!(result.is_err(), "no crash inside the compaction found");
        let compacting =
            fs::read(&fx.path).unwrap() != all && !compacted_mark_path(&fx.path).exists();
        if !compacting {
            continue;
        }
        fx.file.set_len(new_size as u64 - 1).unwrap();
        assert!(recover(&fx.path, &fx.file).is_err());
        assert!(recovery_path(&fx.path).exists());
        break;
    }
}

/// After a crash inside the compaction (no mark), a mail reader rewrites the half-compacted file in
/// place with a header inserted, so it grows and its old tail moves: rolling back would write the
/// saved `offset..N` over the reader's layout (a reviewer's case: 11 octets of junk in a message). It
/// is left, with the recovery file, for the administrator, and the file stays as the reader wrote it.
#[test]
fn a_file_rewritten_after_a_crash_in_the_compaction_is_left_alone() {
    let (all, ranges, _) = case(&[0, 2], "");
    let mut seen = 0;
    for (n, fx) in crashes_before_the_mark(&all, &ranges) {
        let now = fs::read(&fx.path).unwrap();
        if now == all {
            continue; // the crash came before the compaction wrote anything
        }
        // The reader's save: a header line inserted after the first line, the rest moved along.
        let first_line = now.iter().position(|&b| b == b'\n').unwrap() + 1;
        let rewritten = [&now[..first_line], b"Status: RO\n", &now[first_line..]].concat();
        fx.file.write_all_at(&rewritten, 0).unwrap();
        let err = recover(&fx.path, &fx.file).unwrap_err();
        assert!(err.to_string().contains("rewritten"), "crash at {n}: {err}");
        assert_eq!(fs::read(&fx.path).unwrap(), rewritten, "crash at {n}");
        assert!(recovery_path(&fx.path).exists(), "crash at {n}");
        seen += 1;
    }
    assert!(seen > 0, "no crash point fell inside the compaction");
}

/// Mail appended after the truncation that repeats the old `N..O` octet for octet cannot be told from
/// it: the rollback then gives back the old mbox, of which that mail is a copy.
#[test]
fn appended_copy_of_the_old_tail_rolls_back_to_the_old_mbox() {
    let (all, ranges, expected) = case(&[0, 2], "");
    let new_size = all.len() - removed(&ranges);
    for n in 0.. {
        let fx = fixture(&all);
        crash::arm(Some(n));
        let result = run(&fx, &ranges, 1 << 20, Version::V4);
        crash::arm(None);
        assert!(result.is_err(), "no crash point after the truncation");
        if fs::read(&fx.path).unwrap() != expected {
            assert!(recover(&fx.path, &fx.file).is_ok());
            continue;
        }
        // Truncated: append the old tail, then something more.
        let late = [&all[new_size..], LATE.as_bytes()].concat();
        OpenOptions::new()
            .append(true)
            .open(&fx.path)
            .unwrap()
            .write_all(&late)
            .unwrap();
        assert_eq!(recover(&fx.path, &fx.file).unwrap(), Recovery::RolledBack);
        assert_eq!(
            fs::read(&fx.path).unwrap(),
            [all.as_slice(), LATE.as_bytes()].concat()
        );
        break;
    }
}

/// Step 1's copy to the recovery file keeps the caller's locks alive chunk by chunk: with the stamp
/// there is no rescan to do it, and the copy of a large tail can outlast the dotlock's stale age.
#[test]
fn the_copy_to_the_recovery_file_keeps_the_locks_alive() {
    let (all, ranges, _) = case(&[0, 2], "");
    let fx = fixture(&all);
    crash::arm(None);
    let mut calls = 0;
    let chunk = 7;
    let prepared = prepare_with(
        &fx.path,
        &fx.file,
        &ranges,
        || Ok::<(), io::Error>(()),
        &mut || calls += 1,
        chunk,
        Version::V4,
    )
    .map_err(|e| match e {
        Refused::Check(e) | Refused::Io(e) => e,
    })
    .unwrap();
    let copied = all.len() - removed(&ranges) - ranges[0].0 as usize;
    assert!(calls >= copied / chunk, "{calls} calls for {copied} octets");
    prepared.commit(&mut || {}).unwrap().finish().unwrap();
}

/// Whether, in `notes`, every removal of the recovery file reached the disk (a directory fsync) before
/// the mark was removed: otherwise the mark's removal may reach the disk alone.
fn recovery_file_gone_before_mark(notes: &[&str]) -> bool {
    let mut unsynced = false;
    for &note in notes {
        match note {
            "recovery file removed" => unsynced = true,
            "directory synced" => unsynced = false,
            "mark removed" if unsynced => return false,
            _ => {}
        }
    }
    true
}

/// Step 4 and a recovery that completes remove the recovery file, then the mark. Unlinks in one
/// directory may reach the disk in any order until it is fsynced: if the mark's did and the recovery
/// file's did not, the next login would find the recovery file of a truncated mbox without its mark,
/// and "roll back" the saved bytes over the new mbox.
#[test]
fn the_recovery_file_is_gone_on_disk_before_the_mark() {
    let (all, ranges, _) = case(&[1], "");
    for n in 0.. {
        let fx = fixture(&all);
        crash::notes();
        crash::arm(Some(n));
        let result = run(&fx, &ranges, 7, Version::V4);
        crash::arm(None);
        if result.is_err() {
            recover(&fx.path, &fx.file).unwrap();
        }
        let notes = crash::notes();
        assert!(
            recovery_file_gone_before_mark(&notes),
            "crash at {n}: {notes:?}"
        );
        if result.is_ok() {
            break;
        }
    }
}

/// The recovery file of a truncated mbox without its mark (what an unsynced order of the two removals
/// could leave): rolling back would write the old bytes into the new mbox and mix the two. The mbox,
/// no longer the old size, is taken for one another program rewrote, and left alone.
#[test]
fn a_recovery_file_without_its_mark_after_the_truncation_is_left_alone() {
    let (all, ranges, expected) = case(&[1], "");
    // Crash right after step 3: the recovery file and the mark are there, the mbox is the new one.
    for n in 0.. {
        let (fx, result) = crashed_at(&all, &ranges, n, Version::V4);
        assert!(result.is_err(), "no crash point after the truncation");
        if fs::read(&fx.path).unwrap() != expected || !recovery_path(&fx.path).exists() {
            assert!(recover(&fx.path, &fx.file).is_ok());
            continue;
        }
        // The mark's removal reached the disk, the recovery file's did not.
        fs::remove_file(compacted_mark_path(&fx.path)).unwrap();
        assert!(recover(&fx.path, &fx.file).is_err());
        assert_eq!(
            fs::read(&fx.path).unwrap(),
            expected,
            "the new mbox, untouched"
        );
        assert!(recovery_path(&fx.path).exists());
        break;
    }
}

/// The mbox of messages a to d with a and c deleted, after a crash in the middle of the compaction:
/// its recovery file complete and valid, no mark yet.
fn half_compacted() -> Fixture {
    let (all, ranges, _) = case(&[0, 2], "");
    let new_size = (all.len() - removed(&ranges)) as u64;
    let writing = 2 + (new_size - ranges[0].0).div_ceil(7) as usize;
    let (fx, result) = crashed_at(&all, &ranges, writing + 4, Version::V4);
    assert!(result.is_err());
    assert_ne!(fs::read(&fx.path).unwrap(), all, "the compaction had begun");
    assert!(!compacted_mark_path(&fx.path).exists());
    fx
}

/// The recovery file is applied only if it is one a session of this mbox wrote: a regular file, not
/// a symlink (which anyone who may create files in a shared spool could plant, pointing anywhere), of
/// the mbox's owner or ours, writable by nobody else. Anything else is left for the administrator,
/// and the mbox is not touched.
#[test]
fn a_recovery_file_that_is_not_ours_is_not_applied() {
    for planted in ["symlink", "group-writable"] {
        let fx = half_compacted();
        let half_done = fs::read(&fx.path).unwrap();
        let rpath = recovery_path(&fx.path);
        match planted {
            "symlink" => {
                let elsewhere = fx.path.with_extension("elsewhere");
                fs::rename(&rpath, &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &rpath).unwrap();
            }
            _ => fs::set_permissions(&rpath, fs::Permissions::from_mode(0o620)).unwrap(),
        }
        assert!(recover(&fx.path, &fx.file).is_err(), "{planted}");
        assert_eq!(fs::read(&fx.path).unwrap(), half_done, "{planted}");
        assert!(
            fs::symlink_metadata(&rpath).is_ok(),
            "{planted}: left alone"
        );
    }
}

/// A mark that no session of the mbox made (planted in a spool where others may create files) is not
/// taken as one: with it, an expunge cut short in its compaction whose tail another program changed
/// would be called complete. Recovery leaves everything for the administrator instead.
#[test]
fn a_mark_that_is_not_ours_is_not_taken() {
    for planted in ["symlink", "group-writable"] {
        let fx = half_compacted();
        let mark = compacted_mark_path(&fx.path);
        match planted {
            "symlink" => {
                let elsewhere = fx.path.with_extension("elsewhere");
                fs::write(&elsewhere, b"").unwrap();
                std::os::unix::fs::symlink(&elsewhere, &mark).unwrap();
            }
            _ => {
                fs::write(&mark, b"").unwrap();
                fs::set_permissions(&mark, fs::Permissions::from_mode(0o620)).unwrap();
            }
        }
        // Another program changes the old tail in place: with the mark believed, "complete".
        let len = fx.file.metadata().unwrap().len();
        fx.file.write_all_at(b"!", len - 2).unwrap();
        let changed = fs::read(&fx.path).unwrap();
        assert!(recover(&fx.path, &fx.file).is_err(), "{planted}");
        assert_eq!(fs::read(&fx.path).unwrap(), changed, "{planted}");
        assert!(recovery_path(&fx.path).exists(), "{planted}: left alone");
    }
}

/// After a crash in the compaction, a program that rewrites mailboxes into a new file and renames it
/// over puts another file in the mbox's place: the saved bytes are not written into it (they would
/// land at offsets of the old layout), and the recovery file stays for the administrator.
#[test]
fn a_recovery_file_is_not_applied_to_a_file_put_in_the_mbox_s_place() {
    let fx = half_compacted();
    let rewritten = [fs::read(&fx.path).unwrap(), LATE.as_bytes().to_vec()].concat();
    let temp = fx.path.with_extension("new");
    fs::write(&temp, &rewritten).unwrap();
    fs::rename(&temp, &fx.path).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fx.path)
        .unwrap();
    assert!(recover(&fx.path, &file).is_err());
    assert_eq!(fs::read(&fx.path).unwrap(), rewritten);
    assert!(recovery_path(&fx.path).exists());
    // The one it was made for is still recovered: rolled back to the old mbox.
    let fx = half_compacted();
    assert_eq!(recover(&fx.path, &fx.file).unwrap(), Recovery::RolledBack);
}

/// A FIFO at the recovery file's name must not block recovery, which holds the delivery locks.
#[test]
fn a_fifo_for_a_recovery_file_does_not_hang_recovery() {
    let (all, _, _) = case(&[0], "");
    let fx = fixture(&all);
    nix::unistd::mkfifo(
        &recovery_path(&fx.path),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fx.path.clone();
    let file = fx.file.try_clone().unwrap();
    thread::spawn(move || tx.send(recover(&path, &file).is_err()).unwrap());
    let refused = rx.recv_timeout(std::time::Duration::from_secs(5));
    if refused.is_err() {
        // Unblock the thread stuck in open(2) so the test process can end.
        let _ = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(recovery_path(&fx.path));
    }
    assert_eq!(refused, Ok(true), "recovery hung on a FIFO or applied it");
    assert_eq!(fs::read(&fx.path).unwrap(), all);
}
