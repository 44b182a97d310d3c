//! Tests for the mbox backend on real files: listing, reading, locking, expunge with checks.

use super::read::{BOUNDARY_SEARCH, SPLIT_MIN, boundary_after, scan_file};
use super::stamp::testing::{rewrite_keeping_times, settle};
use super::*;
use md5::{Digest, Md5};
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;

const MBOX: &str = "From a@example.org Thu Jan  1 00:00:00 2026\n\
Received: by mx id 1\n\
Subject: one\n\
\n\
first\n\
>From quoted\n\
\n\
From b@example.org Thu Jan  1 00:00:01 2026\n\
Received: by mx id 2\n\
X-UIDL: qpop-2\n\
Subject: two\n\
\n\
second\r\n\
\n\
From c@example.org Thu Jan  1 00:00:02 2026\n\
Received: by mx id 3\n\
\n\
third";

const BODIES: [&str; 3] = [
    "Received: by mx id 1\nSubject: one\n\nfirst\n>From quoted\n",
    "Received: by mx id 2\nX-UIDL: qpop-2\nSubject: two\n\nsecond\r\n",
    "Received: by mx id 3\n\nthird",
];

/// A message a delivery agent appends during or after a session.
const LATE: &str = "\n\nFrom d@example.org Thu Jan  1 00:00:09 2026\nSubject: late\n\nlate\n";

fn mbox_in(dir: &tempfile::TempDir, content: &str) -> PathBuf {
    let path = dir.path().join("user");
    fs::write(&path, content).unwrap();
    path
}

fn read_all(mbox: &mut Mbox, i: usize) -> Result<Vec<u8>, MaildropError> {
    let mut out = Vec::new();
    mbox.open_message(i)?.read_to_end(&mut out).unwrap();
    Ok(out)
}

#[test]
fn lists_and_serves_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let mut mbox = Mbox::open(&path).unwrap();
    let octets: Vec<u64> = mbox.messages().iter().map(|m| m.octets).collect();
    // LF counted as CRLF; the last line gets its CRLF added.
    assert_eq!(octets, [54 + 5, 58 + 4, 27 + 2 + 2]);
    for (i, body) in BODIES.iter().enumerate() {
        assert_eq!(read_all(&mut mbox, i).unwrap(), body.as_bytes());
    }
    assert!(mbox.open_message(3).is_err());
    let uid = popa3d_uid("Received: by mx id 2\n");
    assert_eq!(&*mbox.messages()[1].uid, uid.as_str());
    drop(mbox);
    let with_x = Mbox::open_with(&path, UidlSource::XUidl).unwrap();
    assert_eq!(&*with_x.messages()[1].uid, "qpop-2");
    assert_eq!(
        &*with_x.messages()[0].uid,
        popa3d_uid("Received: by mx id 1\n")
    );
}

fn popa3d_uid(hashed: &str) -> String {
    uidl::popa3d_id(&Md5::digest(hashed.as_bytes()).into())
}

#[test]
fn missing_or_empty_mbox_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    for path in [
        dir.path().join("absent"),
        dir.path().join("no-dir/user"),
        mbox_in(&dir, ""),
    ] {
        let mbox = Mbox::open(&path).unwrap();
        assert!(mbox.messages().is_empty(), "{path:?}");
        drop(Box::new(mbox).expunge(&[]).unwrap());
    }
}

/// A session holding `mail-group` opens only an mbox of its own uid with no other name: a hard link
/// to another user's spool (or a file of another uid) is refused before anything is read, and the
/// file is left as it was.
#[test]
fn with_an_owner_only_that_owner_s_singly_named_mbox_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let ours = fs::metadata(&path).unwrap().uid();
    let mbox = Mbox::open_owned(&path, UidlSource::default(), Some(ours)).unwrap();
    assert_eq!(mbox.messages().len(), 3);
    drop(mbox);
    let refused = |owner| {
        let e = Mbox::open_owned(&path, UidlSource::default(), Some(owner))
            .err()
            .expect("refused");
        assert!(
            matches!(e, MaildropError::Io { ref source, .. } if source.kind() == io::ErrorKind::PermissionDenied),
            "{e}"
        );
    };
    refused(ours.wrapping_add(1));
    let link = dir.path().join("linked");
    fs::hard_link(&path, &link).unwrap();
    refused(ours);
    assert_eq!(fs::read(&path).unwrap(), MBOX.as_bytes());
    // Without the group, the kernel's checks alone decide, as before.
    assert!(Mbox::open_with(&path, UidlSource::default()).is_ok());
}

#[test]
fn refuses_what_is_not_an_mbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, "Subject: no From line\n\nbody\n");
    let e = Mbox::open(&path).err().expect("not an mbox");
    assert!(
        matches!(e, MaildropError::Io { ref source, .. } if source.kind() == io::ErrorKind::InvalidData),
        "{e}"
    );
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    assert!(Mbox::open(&path).is_err());
}

#[test]
fn second_session_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let first = Mbox::open(&path).unwrap();
    let e = Mbox::open(&path).err().expect("in use");
    assert!(matches!(e, MaildropError::InUse { .. }));
    assert_eq!(e.resp_code(), crate::proto::reply::RespCode::InUse);
    drop(first);
    Mbox::open(&path).unwrap();
}

#[test]
fn expunge_keeps_mail_delivered_during_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let mbox = Mbox::open(&path).unwrap();
    let late = LATE;
    append_to(&path, late);
    drop(Box::new(mbox).expunge(&[0, 2]).unwrap());
    let second = MBOX.find("From b@").unwrap();
    let third = MBOX.find("From c@").unwrap();
    // The empty lines the agent wrote before its From line went with the deleted last message.
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}{}", &MBOX[second..third], &late[2..])
    );
    let mut mbox = Mbox::open(&path).unwrap();
    assert_eq!(mbox.messages().len(), 2);
    assert_eq!(read_all(&mut mbox, 0).unwrap(), BODIES[1].as_bytes());
    assert!(!dir.path().join("user.lock").exists());
}

#[test]
fn deleting_the_last_message_takes_the_empty_lines_before_mail_appended_after_it() {
    // An agent appends an LF first when the mbox's last line has none (dovecot-lda does), or an empty
    // line: whatever the scan ended with, the kept messages keep their bytes, and the file still
    // begins with a From line when everything before the new mail goes.
    let new_mail = "From d@example.org Thu Jan  1 00:00:09 2026\nSubject: late\n\nlate\n";
    let one = "From a@example.org Thu Jan  1 00:00:00 2026\nSubject: one\n\none\n\n";
    let last = "From b@example.org Thu Jan  1 00:00:01 2026\nSubject: two\n\ntwo";
    for (before, separator) in [
        ("", "\n"),
        ("", "\n\n"),
        (one, "\n"),
        (one, "\n\n\n"),
        (one, ""),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = mbox_in(&dir, &format!("{before}{last}"));
        let mut mbox = Mbox::open(&path).unwrap();
        let kept: Vec<Vec<u8>> = (0..mbox.messages().len() - 1)
            .map(|i| read_all(&mut mbox, i).unwrap())
            .collect();
        append_to(&path, &format!("{separator}{new_mail}"));
        let last_index = mbox.messages().len() - 1;
        drop(Box::new(mbox).expunge(&[last_index]).unwrap());
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{before}{new_mail}"),
            "{separator:?}"
        );
        let mut again = Mbox::open(&path).unwrap();
        for (i, body) in kept.iter().enumerate() {
            assert_eq!(&read_all(&mut again, i).unwrap(), body, "{separator:?}");
        }
    }
    // Appended bytes that do not begin a message: nothing is deleted.
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{one}{last}");
    let path = mbox_in(&dir, &text);
    let mbox = Mbox::open(&path).unwrap();
    append_to(&path, " more text\n");
    let e = Box::new(mbox).expunge(&[1]).expect_err("refused");
    assert!(matches!(e, MaildropError::Changed { .. }), "{e}");
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{text} more text\n")
    );
}

/// Sets `path`'s access and modification times to these many seconds ago.
fn set_times_ago(path: &Path, atime_ago: i64, mtime_ago: i64) {
    use nix::sys::time::TimeSpec;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let at = |ago: i64| TimeSpec::new(now - ago, 0);
    let file = fs::File::open(path).unwrap();
    nix::sys::stat::futimens(&file, &at(atime_ago), &at(mtime_ago)).unwrap();
}

fn shows_new_mail(path: &Path) -> bool {
    let meta = fs::metadata(path).unwrap();
    (meta.mtime(), meta.mtime_nsec()) > (meta.atime(), meta.atime_nsec())
}

/// Mail delivered during the session is new to the user, even after a RETR (under relatime) moved
/// the access time past it.
#[test]
fn update_leaves_mail_delivered_during_the_session_new() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let mbox = Mbox::open(&path).unwrap();
    append_to(&path, LATE);
    set_times_ago(&path, 50, 100);
    drop(Box::new(mbox).expunge(&[0]).unwrap());
    assert!(shows_new_mail(&path));
    assert_eq!(view(&path, UidlSource::Popa3d).2.len(), 3);
}

#[test]
fn update_leaves_an_mbox_that_showed_no_new_mail_showing_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    // Read 50 s after its last change: no new mail, and recent enough that reading it keeps the times.
    set_times_ago(&path, 50, 100);
    drop(Box::new(Mbox::open(&path).unwrap()).expunge(&[1]).unwrap());
    assert!(!shows_new_mail(&path));
    assert_eq!(view(&path, UidlSource::Popa3d).2.len(), 2);
}

/// Not through a whole UPDATE: on a file system mounted relatime (not noatime), UPDATE's own reads
/// of an mbox showing new mail move its access time on.
#[test]
fn a_rewritten_mbox_that_showed_new_mail_still_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    set_times_ago(&path, 100, 50);
    let file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    let before = file.metadata().unwrap();
    (&file).write_all(LATE.as_bytes()).unwrap();
    keep_new_mail_state(&path, &file, &before, false);
    assert!(shows_new_mail(&path));
    set_times_ago(&path, 50, 100);
    let before = file.metadata().unwrap();
    (&file).write_all(LATE.as_bytes()).unwrap();
    keep_new_mail_state(&path, &file, &before, false);
    assert!(!shows_new_mail(&path));
    // Mail delivered during the session, the access time moved up to the rewrite's (relatime after a
    // change of the inode): new mail again.
    let before = file.metadata().unwrap();
    (&file).write_all(LATE.as_bytes()).unwrap();
    set_times_ago(&path, 0, 0);
    keep_new_mail_state(&path, &file, &before, true);
    assert!(shows_new_mail(&path));
}

#[test]
fn an_mbox_that_shrank_is_not_expunged() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let mbox = Mbox::open(&path).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(5)
        .unwrap();
    let e = Box::new(mbox).expunge(&[0, 1, 2]).expect_err("refused");
    assert!(matches!(e, MaildropError::Changed { .. }), "{e}");
    assert_eq!(fs::read_to_string(&path).unwrap(), &MBOX[..5]);
    assert!(!expunge::recovery_path(&path).exists());
}

#[test]
fn uids_survive_deleting_other_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let before: Vec<_> = Mbox::open(&path).unwrap().messages().to_vec();
    drop(Box::new(Mbox::open(&path).unwrap()).expunge(&[1]).unwrap());
    let after: Vec<_> = Mbox::open(&path).unwrap().messages().to_vec();
    assert_eq!(after, [before[0].clone(), before[2].clone()]);
}

#[test]
fn refuses_to_expunge_a_rewritten_mbox() {
    let rewrites: [fn(&str) -> String; 3] = [
        // Same size: caught by the header hash. (Same-size edits of unhashed bytes are not looked for: the
        // message boundaries, which deletion relies on, are then unchanged.)
        |m| m.replacen("mx id 1", "mx id 9", 1),
        |m| m.replacen("Subject: one\n", "Status: RO\nSubject: one\n", 1),
        |m| m[..m.len() - 3].to_string(),
    ];
    for rewrite in rewrites {
        let dir = tempfile::tempdir().unwrap();
        let path = mbox_in(&dir, MBOX);
        let mut mbox = Mbox::open(&path).unwrap();
        let changed = rewrite(MBOX);
        fs::write(&path, &changed).unwrap();
        if changed.len() != MBOX.len() {
            assert!(matches!(
                mbox.open_message(1),
                Err(MaildropError::Changed { .. })
            ));
        }
        expunge_is_refused(mbox, &path, &changed);
    }
}

/// Expunging message 1 of `mbox` is refused as a change, and the file at `path` is still `now`.
fn expunge_is_refused(mbox: Mbox, path: &Path, now: &str) {
    let e = Box::new(mbox).expunge(&[0]).unwrap_err();
    assert!(matches!(e, MaildropError::Changed { .. }), "{e}");
    assert_eq!(fs::read_to_string(path).unwrap(), now, "nothing deleted");
}

#[test]
fn open_finishes_an_interrupted_expunge() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let mbox = Mbox::open(&path).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let ranges = deleted_ranges(&mbox.scanned, &[1]).unwrap();
    drop(mbox);
    // Crash in the middle of the rewrite: the mbox holds half-moved bytes.
    expunge::crash::arm(Some(4));
    assert!(expunge::expunge(&path, &file, &ranges, &mut || {}).is_err());
    expunge::crash::arm(None);
    assert!(expunge::recovery_path(&path).exists());
    let mbox = Mbox::open(&path).unwrap();
    assert_eq!(mbox.messages().len(), 3);
    assert_eq!(fs::read_to_string(&path).unwrap(), MBOX);
    assert!(!expunge::recovery_path(&path).exists());
}

#[test]
fn deletion_ranges_merge_neighbours() {
    let scanned = scan::scan_all(MBOX.as_bytes(), false).unwrap();
    let end = MBOX.len() as u64;
    let b = MBOX.find("From b@").unwrap() as u64;
    assert_eq!(deleted_ranges(&scanned, &[0, 1, 2]), Some(vec![(0, end)]));
    assert_eq!(deleted_ranges(&scanned, &[1, 2]), Some(vec![(b, end)]));
    assert_eq!(deleted_ranges(&scanned, &[1, 1]), None);
    assert_eq!(deleted_ranges(&scanned, &[3]), None);
}

#[test]
fn stale_dotlock_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let dotlock = crate::lock::dotlock_path(&path);
    let stale = fs::File::create(&dotlock).unwrap();
    stale
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    assert_eq!(Mbox::open(&path).unwrap().messages().len(), 3);
    assert!(!dotlock.exists());
}

#[test]
fn file_read_loop_handles_every_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let content = format!(
        "{MBOX}\n\nFrom d\nX-UIDL: {}\nReceived: {}\n\nd\n",
        "u".repeat(300),
        "r".repeat(600)
    );
    let path = mbox_in(&dir, &content);
    let file = File::options().read(true).write(true).open(&path).unwrap();
    let lock = DeliveryLock::acquire(&path, &file, DELIVERY_LOCK_WAIT).unwrap();
    let whole = scan::scan_all(content.as_bytes(), true).unwrap();
    for chunk in (1..=64).chain([255, 256, 257, 1000]) {
        let (got, size) = scan_file(&path, &file, None, true, &lock, chunk).unwrap();
        assert_eq!(
            (got, size),
            (whole.clone(), content.len() as u64),
            "chunk {chunk}"
        );
        let limit = MBOX.len() as u64;
        let (prefix, size) = scan_file(&path, &file, Some(limit), true, &lock, chunk).unwrap();
        assert_eq!(
            (prefix, size),
            (scan::scan_all(MBOX.as_bytes(), true).unwrap(), limit),
            "chunk {chunk}"
        );
    }
}

/// An mbox over `SPLIT_MIN`, of messages of many sizes and awkward lines, so that the cut near its
/// middle can fall anywhere.
fn large_mbox(messages: usize) -> String {
    let mut out = String::new();
    for i in 0..messages {
        out.push_str(&format!("From sender{i} Thu Jan  1 00:00:00 2026\n"));
        out.push_str(&format!("Subject: {i}\nMessage-ID: <{i}@x>\n\n"));
        for line in 0..(i * 7919 % 40) {
            match (line + 1) % 5 {
                0 => out.push_str("From inside a body, not after an empty line\n"),
                1 => out.push_str(">From quoted\n\n"),
                2 => out.push_str("crlf line\r\n"),
                _ => out.push_str(&"x".repeat(i % 97 + 1)),
            }
            out.push('\n');
        }
        // The empty line that separates messages, and sometimes one more that belongs to the body.
        out.push('\n');
        if i % 3 == 0 {
            out.push('\n');
        }
    }
    out
}

#[test]
fn a_large_mbox_scanned_in_two_halves_gives_one_scan() {
    let dir = tempfile::tempdir().unwrap();
    let content = large_mbox(20_000);
    assert!(
        content.len() as u64 >= SPLIT_MIN,
        "{} octets",
        content.len()
    );
    let path = mbox_in(&dir, &content);
    let file = File::options().read(true).write(true).open(&path).unwrap();
    let lock = DeliveryLock::acquire(&path, &file, DELIVERY_LOCK_WAIT).unwrap();
    let len = content.len() as u64;
    let split = boundary_after(&file, len / 2, len).unwrap();
    assert!(
        split.is_some(),
        "no message boundary found after the middle"
    );
    let whole = scan::scan_all(content.as_bytes(), true).unwrap();
    assert_eq!(whole.len(), 20_000);
    // Other tests may join halves meanwhile, but none can make the count go down.
    let joined = read::JOINED_HALVES.load(Ordering::Relaxed);
    let (got, size) = scan_file(&path, &file, None, true, &lock, read::READ_CHUNK).unwrap();
    assert_eq!(size, len);
    assert!(got == whole, "the halves differ from one scan");
    assert!(
        read::JOINED_HALVES.load(Ordering::Relaxed) > joined,
        "the scan was not shared with a helper thread"
    );
    // With a limit (a prefix), as an index's rescan asks.
    let limit = split.unwrap() + 1000;
    let (prefix, size) = scan_file(&path, &file, Some(limit), true, &lock, 4096).unwrap();
    assert_eq!(size, limit);
    assert!(prefix == scan::scan_all(&content.as_bytes()[..limit as usize], true).unwrap());
}

#[test]
fn a_large_mbox_with_no_boundary_near_its_middle_is_scanned_whole() {
    let dir = tempfile::tempdir().unwrap();
    let body = "y".repeat(79) + "\n";
    let big = body.repeat((3 * BOUNDARY_SEARCH as usize) / body.len());
    let content = format!("{MBOX}\nFrom big\nSubject: big\n\n{big}\nFrom last\nS: 1\n\nz\n");
    assert!(content.len() as u64 >= SPLIT_MIN);
    let path = mbox_in(&dir, &content);
    let file = File::options().read(true).write(true).open(&path).unwrap();
    let lock = DeliveryLock::acquire(&path, &file, DELIVERY_LOCK_WAIT).unwrap();
    let len = content.len() as u64;
    assert_eq!(boundary_after(&file, len / 2, len).unwrap(), None);
    let (got, size) = scan_file(&path, &file, None, true, &lock, read::READ_CHUNK).unwrap();
    assert_eq!(
        (got, size),
        (scan::scan_all(content.as_bytes(), true).unwrap(), len)
    );
}

/// The boundary search reads in windows: a `\n\nFrom ` across two of them, or with its empty line just
/// before where the search starts, is found all the same; one that begins too early is not.
#[test]
fn boundary_search_finds_separators_across_its_windows() {
    let dir = tempfile::tempdir().unwrap();
    const WINDOW: usize = 64 * 1024;
    for sep_at in [
        0,
        1,
        2,
        3,
        WINDOW - 8,
        WINDOW - 7,
        WINDOW - 4,
        WINDOW - 2,
        WINDOW - 1,
        WINDOW,
        3 * WINDOW - 5,
    ] {
        for from in [3usize, 4, 5, 10] {
            let mut bytes = vec![b'a'; from + sep_at + 20];
            let at = from - 2 + sep_at;
            bytes[at..at + SEPARATOR_LEN].copy_from_slice(b"\n\nFrom ");
            let path = dir.path().join("b");
            fs::write(&path, &bytes).unwrap();
            let file = File::open(&path).unwrap();
            let found = boundary_after(&file, from as u64, bytes.len() as u64).unwrap();
            assert_eq!(found, Some(at as u64 + 2), "separator at {at}, from {from}");
            // Ending the search before the `From ` line finds nothing.
            let found = boundary_after(&file, from as u64, at as u64 + 2).unwrap();
            assert_eq!(found, None, "separator at {at}, from {from}, cut short");
        }
    }
    let path = dir.path().join("early");
    fs::write(&path, b"\n\nFrom x\naaaaaaaaaa").unwrap();
    let file = File::open(&path).unwrap();
    assert_eq!(
        boundary_after(&file, 3, 19).unwrap(),
        None,
        "begins before `from`"
    );
    assert_eq!(boundary_after(&file, 2, 19).unwrap(), Some(2));
}

const SEPARATOR_LEN: usize = 7;

#[test]
fn mbox_renamed_over_during_the_session_is_not_expunged() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    for replace_with in [Some(MBOX), None] {
        fs::write(&path, MBOX).unwrap();
        let mbox = Mbox::open(&path).unwrap();
        // A mail program writes a new file (here with the same bytes) and renames it over the mbox.
        let new = dir.path().join("new");
        if let Some(content) = replace_with {
            fs::write(&new, content).unwrap();
            fs::rename(&new, &path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
        let e = Box::new(mbox)
            .expunge(&[1])
            .expect_err("a replaced mbox is not expunged");
        assert!(matches!(e, MaildropError::Changed { .. }), "{e}");
        assert_eq!(
            fs::read_to_string(&path).ok().as_deref(),
            replace_with,
            "untouched"
        );
    }
}

/// What a session sees: the scan, the listing and every message's bytes.
fn view(path: &Path, uidl: UidlSource) -> (Vec<ScannedMessage>, Vec<MessageInfo>, Vec<Vec<u8>>) {
    let mut mbox = Mbox::open_with(path, uidl).unwrap();
    let bodies = (0..mbox.messages().len())
        .map(|i| read_all(&mut mbox, i).unwrap())
        .collect();
    (mbox.scanned.clone(), mbox.messages.clone(), bodies)
}

/// The view without the index: a full scan.
fn scanned_view(
    path: &Path,
    uidl: UidlSource,
) -> (Vec<ScannedMessage>, Vec<MessageInfo>, Vec<Vec<u8>>) {
    index::remove(path);
    view(path, uidl)
}

fn append_to(path: &Path, text: &str) {
    write_with(path, fs::OpenOptions::new().append(true), text);
}

/// Writes `text` over the start of the file at `path`, in place (no truncation).
fn write_over(path: &Path, text: &str) {
    write_with(path, fs::OpenOptions::new().write(true), text);
}

fn write_with(path: &Path, how: &fs::OpenOptions, text: &str) {
    how.open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

#[test]
fn the_index_gives_what_a_full_scan_gives() {
    type Change = fn(&Path);
    let changes: [(&str, Change); 7] = [
        ("nothing", |_| {}),
        ("a delivery", |p| {
            append_to(
                p,
                "\n\nFrom d Thu Jan  1 00:00:03 2026\nReceived: by mx id 4\n\nfourth\n",
            )
        }),
        ("text with no separator", |p| {
            append_to(p, "\nFrom not a separator\nmore\n")
        }),
        ("an edit before the last message", |p| {
            let text = fs::read_to_string(p)
                .unwrap()
                .replace("Subject: one", "Subject: one!");
            write_over(p, &text);
        }),
        ("a same-size edit", |p| {
            let text = fs::read_to_string(p).unwrap().replace("id 1", "id 9");
            write_over(p, &text);
        }),
        ("a truncation", |p| {
            fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(100)
                .unwrap()
        }),
        ("a new file renamed over it", |p| {
            let new = p.with_extension("new");
            fs::write(&new, MBOX.replace("first", "other")).unwrap();
            fs::rename(&new, p).unwrap();
        }),
    ];
    for uidl in [UidlSource::Popa3d, UidlSource::XUidl] {
        for (what, change) in changes {
            let dir = tempfile::tempdir().unwrap();
            let path = mbox_in(&dir, MBOX);
            let first = view(&path, uidl);
            assert!(index::index_path(&path).exists(), "{what}: index written");
            assert_eq!(
                view(&path, uidl),
                first,
                "{what}: unchanged, from the index"
            );
            // mtime granularity: a same-size edit must not look untouched.
            std::thread::sleep(std::time::Duration::from_millis(10));
            change(&path);
            let indexed = view(&path, uidl);
            assert_eq!(indexed, scanned_view(&path, uidl), "{what} ({uidl:?})");
        }
    }
}

#[test]
fn the_index_follows_an_expunge() {
    for deleted in [&[0][..], &[1], &[2], &[0, 2], &[1, 2]] {
        let dir = tempfile::tempdir().unwrap();
        let path = mbox_in(
            &dir,
            &format!("{MBOX}\n\nFrom d\nReceived: by mx id 4\n\nfourth\n"),
        );
        let mbox = Mbox::open(&path).unwrap();
        // Mail delivered during the session lies past the index and is scanned at the next login.
        append_to(&path, "\nFrom e\n\nfifth\n");
        drop(Box::new(mbox).expunge(deleted).unwrap());
        assert!(index::index_path(&path).exists());
        let indexed = view(&path, UidlSource::Popa3d);
        assert_eq!(indexed.1.len(), 5 - deleted.len(), "{deleted:?}");
        assert_eq!(
            indexed,
            scanned_view(&path, UidlSource::Popa3d),
            "{deleted:?}"
        );
    }
    // Everything deleted: no index of nothing.
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    drop(
        Box::new(Mbox::open(&path).unwrap())
            .expunge(&[0, 1, 2])
            .unwrap(),
    );
    assert!(!index::index_path(&path).exists());
}

#[test]
fn the_index_of_a_scan_is_written_when_the_session_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let index = index::index_path(&path);
    // Not before the listing...
    let mbox = Mbox::open(&path).unwrap();
    assert!(!index.exists());
    drop(mbox);
    // ...but when the session ends, under its lock; the next login reads it.
    assert!(index.exists());
    assert_eq!(
        index::load(&path, fs::metadata(&path).unwrap().uid()).map(|(_, m)| m.len()),
        Some(3)
    );
    // QUIT without deletions: after the reply, with the session lock.
    index::remove(&path);
    let tidy = Box::new(Mbox::open(&path).unwrap()).expunge(&[]).unwrap();
    assert!(!index.exists());
    assert!(matches!(
        Mbox::open(&path),
        Err(MaildropError::InUse { .. })
    ));
    drop(tidy);
    assert!(index.exists());
    // A session that found the mbox changed under it writes none.
    index::remove(&path);
    let mut mbox = Mbox::open(&path).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10)
        .unwrap();
    assert!(read_all(&mut mbox, 2).is_err());
    drop(mbox);
    assert!(!index.exists());
}

#[test]
fn after_update_the_tidying_waits_for_the_reply_and_keeps_the_session_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let recovery = expunge::recovery_path(&path);
    let index = index::index_path(&path);
    let mbox = Mbox::open(&path).unwrap();
    let tidy = Box::new(mbox).expunge(&[0]).unwrap();
    // The removal is on disk and the delivery locks are free before the reply...
    let second = MBOX.find("From b@").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), &MBOX[second..]);
    assert!(!dir.path().join("user.lock").exists());
    // ...but the recovery file, the index and the session lock wait for the tidying.
    assert!(recovery.exists());
    assert!(!index.exists());
    assert!(matches!(
        Mbox::open(&path),
        Err(MaildropError::InUse { .. })
    ));
    drop(tidy);
    assert!(!recovery.exists());
    assert!(index.exists());
    let mbox = Mbox::open(&path).unwrap();
    assert_eq!(mbox.messages().len(), 2);
    assert_eq!(mbox.scanned_size, (MBOX.len() - second) as u64);
}

#[test]
fn an_update_that_never_tidies_leaves_no_index_of_the_mbox_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    drop(Mbox::open(&path).unwrap());
    let index = index::index_path(&path);
    assert!(index.exists());
    let tidy = Box::new(Mbox::open(&path).unwrap()).expunge(&[0]).unwrap();
    // The process dies after the removal, before the tidying writes the index of what is left.
    assert!(!index.exists());
    std::mem::forget(tidy);
}

#[test]
fn a_recovery_file_left_by_an_untidied_update_is_cleaned_up() {
    // The process died after UPDATE's reply, before the tidying: the next session finds a recovery
    // file of a complete expunge, and mail delivered since, and keeps everything.
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let tidy = Box::new(Mbox::open(&path).unwrap()).expunge(&[0]).unwrap();
    std::mem::forget(tidy);
    let late = LATE.repeat(4);
    append_to(&path, &late);
    // The forgotten tidying still holds the session lock (as a dead process no longer would).
    fs::remove_file(session_lock_path(&path)).unwrap();
    let mbox = Mbox::open(&path).unwrap();
    assert!(!expunge::recovery_path(&path).exists());
    let second = MBOX.find("From b@").unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}{late}", &MBOX[second..])
    );
    assert_eq!(mbox.messages().len(), 6);
}

#[test]
fn a_login_right_after_update_waits_for_the_tidying() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let tidy = Box::new(Mbox::open(&path).unwrap()).expunge(&[0]).unwrap();
    let tidied = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(tidy);
    });
    let mbox = Mbox::open(&path).expect("the session lock is waited for");
    assert_eq!(mbox.messages().len(), 2);
    assert!(!expunge::recovery_path(&path).exists());
    tidied.join().unwrap();
}

#[test]
fn mail_delivered_while_the_update_tidies_up_is_kept_and_listed() {
    // The delivery locks are free once the removal is on disk: an agent may append before the index
    // of the kept messages is written, and the next session must still see that mail.
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let tidy = Box::new(Mbox::open(&path).unwrap()).expunge(&[1]).unwrap();
    append_to(&path, LATE);
    drop(tidy);
    let second = MBOX.find("From b@").unwrap();
    let third = MBOX.find("From c@").unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}{}{LATE}", &MBOX[..second], &MBOX[third..])
    );
    let mut mbox = Mbox::open(&path).unwrap();
    assert_eq!(mbox.messages().len(), 3);
    assert_eq!(read_all(&mut mbox, 2).unwrap(), b"Subject: late\n\nlate\n");
}

/// An mbox of `MBOX` in `dir`, settled and opened: its whole scan is stamped.
fn stamped_mbox(dir: &tempfile::TempDir) -> (PathBuf, Mbox) {
    let path = mbox_in(dir, MBOX);
    settle(&path);
    let mbox = Mbox::open(&path).unwrap();
    assert!(
        mbox.stamp.is_some(),
        "a whole scan of a settled mbox is stamped"
    );
    (path, mbox)
}

#[test]
fn an_mbox_untouched_since_its_scan_is_expunged_on_its_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mbox) = stamped_mbox(&dir);
    drop(Box::new(mbox).expunge(&[1]).unwrap());
    let (_, _, bodies) = view(&path, UidlSource::default());
    assert_eq!(bodies, [BODIES[0].as_bytes(), BODIES[2].as_bytes()]);
    // Messages from the index are not stamped: UPDATE scans again.
    settle(&path);
    assert!(Mbox::open(&path).unwrap().stamp.is_none());
}

#[test]
fn a_stamped_mbox_rewritten_with_its_mtime_set_back_is_not_expunged() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mbox) = stamped_mbox(&dir);
    // What a mail reader does: rewrite in place (same size), then set the times back.
    let changed = MBOX.replacen("mx id 1", "mx id 9", 1);
    rewrite_keeping_times(&path, 0, changed.as_bytes());
    expunge_is_refused(mbox, &path, &changed);
}

#[test]
fn mail_delivered_to_a_stamped_mbox_during_the_session_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mbox) = stamped_mbox(&dir);
    append_to(&path, LATE);
    drop(Box::new(mbox).expunge(&[0]).unwrap());
    let second = MBOX.find("From b@").unwrap();
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("{}{LATE}", &MBOX[second..])
    );
    assert_eq!(Mbox::open(&path).unwrap().messages().len(), 3);
}

#[test]
fn a_stamped_update_crashed_at_any_step_loses_nothing() {
    // Through Mbox::expunge, whose check the stamp passes without scanning again; mail is delivered
    // after each crash, before the next login recovers.
    let b = MBOX.find("From b@").unwrap();
    let c = MBOX.find("From c@").unwrap();
    let old = format!("{MBOX}{LATE}");
    let new = format!("{}{}{LATE}", &MBOX[..b], &MBOX[c..]);
    let (mut crashed, mut finished) = (0, 0);
    for n in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let (path, mbox) = stamped_mbox(&dir);
        expunge::crash::arm(Some(n));
        // The tidying after the reply runs with the crash still armed.
        let result = Box::new(mbox).expunge(&[1]).map(drop);
        expunge::crash::arm(None);
        append_to(&path, LATE);
        let reopened = Mbox::open(&path).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        if result.is_ok() {
            finished += 1;
            assert_eq!(text, new, "crash at {n} after the reply");
        } else {
            crashed += 1;
            assert!(text == old || text == new, "crash at {n}: {text:?}");
        }
        let count = if text == new { 3 } else { 4 };
        assert_eq!(reopened.messages().len(), count, "crash at {n}");
        assert!(!expunge::recovery_path(&path).exists(), "crash at {n}");
    }
    assert!(
        crashed > 0 && finished > 0,
        "{crashed} crashed, {finished} finished"
    );
}

#[test]
fn a_same_size_rewrite_with_the_mtime_set_back_is_not_served_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    settle(&path);
    let first = view(&path, UidlSource::Popa3d);
    // Unchanged: served from the index, which need not be written again.
    let mbox = Mbox::open(&path).unwrap();
    assert!(mbox.unsaved_index.is_none(), "served from the index");
    drop(mbox);
    // What a mail reader may do: rewrite in place, same size, and set the mtime back. Here a line
    // break more in message 1 (one octet more as sent) and another hashed Received: header.
    rewrite_keeping_times(
        &path,
        MBOX.find("Subject: one").unwrap() as u64,
        b"Subject:\none",
    );
    rewrite_keeping_times(&path, MBOX.find("id 1").unwrap() as u64, b"id 9");
    let indexed = view(&path, UidlSource::Popa3d);
    assert_ne!(indexed.1[0], first.1[0]);
    assert_eq!(indexed, scanned_view(&path, UidlSource::Popa3d));
}

#[test]
fn an_edit_that_moved_only_unsampled_messages_is_not_served() {
    // 40 messages: the index checks the From lines of every other one, and the last.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..40 {
        let status = if i == 3 { "RO" } else { "O" };
        text += &format!(
            "From u{i}@example.org Thu Jan  1 00:00:{i:02} 2026\n\
             Received: by mx id {i}\nStatus: {status}\n\nbody {i}\n\n"
        );
    }
    let path = mbox_in(&dir, &text);
    drop(Mbox::open(&path).unwrap());
    assert!(index::index_path(&path).exists());
    // A mail reader marks message 3 read and message 4 unread, in place: message 4's From line (not
    // a sample) moves by one octet, every other stays. Then mail is delivered.
    let edited = text
        .replacen("id 2\nStatus: O\n", "id 2\nStatus: RO\n", 1)
        .replacen("id 3\nStatus: RO\n", "id 3\nStatus: O\n", 1);
    assert_eq!(edited.len(), text.len());
    write_over(&path, &edited);
    append_to(
        &path,
        "From new@example.org Thu Jan  1 00:01:00 2026\n\nnew\n",
    );
    let mut mbox = Mbox::open(&path).unwrap();
    let listed = mbox.messages()[2].octets;
    let fresh = scan::scan_all(edited.as_bytes(), false).unwrap();
    // Served, it must be what LIST counted; else refused, and the index goes.
    match read_all(&mut mbox, 2) {
        Ok(body) => {
            assert_eq!(listed, fresh[2].octets, "LIST");
            let m = &fresh[2];
            assert_eq!(
                body,
                &edited.as_bytes()[m.data_offset as usize..m.data_end as usize]
            );
        }
        Err(e) => {
            assert!(matches!(e, MaildropError::Changed { .. }), "{e}");
            assert!(!index::index_path(&path).exists());
        }
    }
}

/// The pseudo-message UW-IMAP (c-client) writes at the top of an mbox for the folder's IMAP state.
const PSEUDO: &str = "From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n\
Date: Thu, 1 Jan 2026 00:00:00 +0000\n\
From: Mail System Internal Data <MAILER-DAEMON@example.org>\n\
Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n\
Message-ID: <1767225600@example.org>\n\
X-IMAP: 1767225600 0000000003 $Forwarded\n\
Status: RO\n\
\n\
This text is part of the internal format of your mail folder, and is not\n\
a real message.  It is created automatically by the mail system software.\n\
\n";

/// An mbox that begins with an IMAP server's pseudo-message lists what the same mbox without it
/// lists (octets and unique-ids, in both `mbox-uidl` modes), and serves the first real message as
/// message 1; the pseudo-message is not to be had. Dovecot's `X-IMAPbase:` in a real first message
/// keeps it listed, and so does an `X-IMAP:` field in a message other than the first.
#[test]
fn an_imap_pseudo_message_is_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let plain = mbox_in(&dir, MBOX);
    let with = dir.path().join("with-pseudo");
    for uidl in [UidlSource::Popa3d, UidlSource::XUidl] {
        for pseudo in [PSEUDO.to_string(), PSEUDO.replace("X-IMAP:", "x-imap:")] {
            fs::write(&with, format!("{pseudo}{MBOX}")).unwrap();
            index::remove(&with);
            let (_, listed, bodies) = view(&with, uidl);
            assert_eq!(listed, view(&plain, uidl).1, "{uidl:?}");
            assert_eq!(listed.len(), 3);
            assert_eq!(bodies, BODIES.map(|b| b.as_bytes().to_vec()));
            let mut mbox = Mbox::open_with(&with, uidl).unwrap();
            assert!(mbox.open_message(3).is_err());
            assert!(mbox.check_still_listed(3).is_err());
            read_all(&mut mbox, 0).unwrap();
            mbox.check_still_listed(0).unwrap();
        }
    }
    let base = MBOX.replacen(
        "Subject: one\n",
        "Subject: one\nX-IMAPbase: 1767225600 0000000003\n",
        1,
    );
    fs::write(&with, &base).unwrap();
    let mbox = Mbox::open(&with).unwrap();
    assert_eq!(mbox.messages().len(), 3, "X-IMAPbase: listed");
    drop(mbox);
    let second = MBOX.replacen("Subject: two\n", "Subject: two\nX-IMAP: 1 2\n", 1);
    fs::write(&with, &second).unwrap();
    assert_eq!(Mbox::open(&with).unwrap().messages().len(), 3);
}

/// A message a sender wrote with an `X-IMAP:` field, first in an empty mbox (procmail keeps headers
/// as sent): listed, unless it has the whole pseudo-message's shape, and then only up to
/// `MAX_PSEUDO_MESSAGE` octets (a review hid a 100 KB message with `X-IMAP: 1 2`, undeletable).
#[test]
fn a_sent_x_imap_field_does_not_hide_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox");
    let big = "z".repeat(100_000);
    let cases = [
        (
            format!("From evil\nX-IMAP: 1 2\nSubject: hi\n\n{big}\n\n{MBOX}"),
            4,
        ),
        (
            PSEUDO.replace("X-IMAP: 1767225600 0000000003", "X-IMAP: x"),
            4,
        ),
        (format!("{}{big}\n\n{MBOX}", PSEUDO.trim_end()), 4),
        (format!("{PSEUDO}{MBOX}"), 3),
    ];
    for (text, listed) in cases {
        let text = if text.contains(MBOX) {
            text
        } else {
            format!("{text}{MBOX}")
        };
        fs::write(&path, &text).unwrap();
        index::remove(&path);
        let mbox = Mbox::open(&path).unwrap();
        assert_eq!(mbox.messages().len(), listed, "{text:.120}");
    }
}

/// UPDATE leaves the pseudo-message as it was, byte for byte, whatever is deleted, all included and
/// with mail delivered meanwhile: the file is the pseudo-message followed by what the same UPDATE
/// leaves of the mbox without it. A later login, through the index, lists what a full scan lists.
#[test]
fn update_keeps_the_imap_pseudo_message() {
    for deleted in [&[0][..], &[1], &[2], &[0, 2], &[0, 1, 2]] {
        for late in ["", LATE] {
            let dir = tempfile::tempdir().unwrap();
            let plain = mbox_in(&dir, MBOX);
            let with = dir.path().join("with-pseudo");
            fs::write(&with, format!("{PSEUDO}{MBOX}")).unwrap();
            for path in [&plain, &with] {
                let mbox = Mbox::open(path).unwrap();
                append_to(path, late);
                drop(Box::new(mbox).expunge(deleted).unwrap());
            }
            let what = format!("{deleted:?} {late:?}");
            let left = fs::read_to_string(&plain).unwrap();
            assert_eq!(
                fs::read_to_string(&with).unwrap(),
                format!("{PSEUDO}{left}"),
                "{what}"
            );
            assert!(index::index_path(&with).exists(), "{what}");
            let indexed = view(&with, UidlSource::Popa3d);
            assert_eq!(indexed.1, view(&plain, UidlSource::Popa3d).1, "{what}");
            assert_eq!(indexed, scanned_view(&with, UidlSource::Popa3d), "{what}");
        }
    }
}

/// A later login to an mbox with a pseudo-message reads the index (nothing to write again) and
/// lists what the first did.
#[test]
fn a_later_login_to_an_mbox_with_a_pseudo_message_uses_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, &format!("{PSEUDO}{MBOX}"));
    let first = view(&path, UidlSource::Popa3d);
    assert!(index::index_path(&path).exists());
    let mbox = Mbox::open(&path).unwrap();
    assert!(mbox.unsaved_index.is_none(), "served from the index");
    assert_eq!(mbox.messages, first.1);
    drop(mbox);
    // Mail delivered since: the index is extended, the pseudo-message still hidden.
    append_to(&path, LATE);
    let later = view(&path, UidlSource::Popa3d);
    assert_eq!(later.1.len(), 4);
    assert_eq!(later.1[..3], first.1[..]);
    assert_eq!(later, scanned_view(&path, UidlSource::Popa3d));
}

/// A session lock that cannot be made is named as what failed, not as the mbox (from a black-box
/// trial: the mbox was named, and its permissions were fine); a failure that lasts is SYS/PERM.
#[test]
fn a_lock_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // A file where a directory should be: the lock's create fails with ENOTDIR, even as root.
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let path = file.join("mbox");
    let Err(e) = Mbox::open_owned(&path, UidlSource::default(), None) else {
        panic!("opened an mbox under a file");
    };
    assert_eq!(
        e.to_string(),
        format!(
            "{}.poplar.lock: Not a directory (os error 20)",
            path.display()
        )
    );
    assert_eq!(e.resp_code(), crate::proto::reply::RespCode::SysPerm);
}

/// An mbox past `MAX_MBOX` is refused at once, as a permanent error, before any scan (a review: a
/// sparse file of terabytes held the login, a core and the delivery lock for hours); one at the
/// bound's side is not.
#[test]
fn an_mbox_past_the_largest_is_refused_unscanned() {
    let dir = tempfile::tempdir().unwrap();
    let path = mbox_in(&dir, MBOX);
    let started = std::time::Instant::now();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(MAX_MBOX + 1)
        .unwrap();
    let Err(e) = Mbox::open(&path) else {
        panic!("a sparse mbox past the bound was opened");
    };
    assert_eq!(e.resp_code(), crate::proto::reply::RespCode::SysPerm, "{e}");
    assert!(e.to_string().contains("more than the"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0),
    );
    fs::write(&path, MBOX).unwrap();
    assert_eq!(Mbox::open(&path).unwrap().messages().len(), 3);
}
