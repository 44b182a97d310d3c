use super::*;
use crate::maildrop::mbox::scan::scan_all;

const MBOX: &[u8] = b"From a Thu Jan  1 00:00:00 2026\nReceived: r1\nX-UIDL: abc\n\none\n\n\
From b Thu Jan  1 00:00:01 2026\nSubject: s\n\ntwo\n.dot\n\nFrom c\n\n";

fn key(messages: &[ScannedMessage]) -> Key {
    let covered = messages.last().map_or(0, |m| m.end);
    Key {
        dev: 1,
        ino: 2,
        covered,
        size: covered + 5,
        mtime: -3,
        mtime_nsec: 4,
        ctime: Some((-5, 6)),
        want_x_uidl: true,
    }
}

#[test]
fn round_trips() {
    let messages = scan_all(MBOX, true).unwrap();
    assert_eq!(messages.len(), 3);
    assert!(messages[0].x_uidl.is_some() && messages[1].x_uidl.is_none());
    let bytes = encode(&key(&messages), &messages);
    assert_eq!(decode(&bytes), Some((key(&messages), messages)));
}

#[test]
fn any_damage_is_refused() {
    let messages = scan_all(MBOX, true).unwrap();
    let bytes = encode(&key(&messages), &messages);
    // Every single-octet change and every truncation fails the checks (mostly the checksum).
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x20;
        assert_eq!(decode(&bad), None, "octet {at} changed");
        assert_eq!(decode(&bytes[..at]), None, "cut at {at}");
    }
    let mut longer = bytes.clone();
    longer.insert(bytes.len() - 8, 0);
    assert_eq!(decode(&longer), None);
}

#[test]
fn badly_formed_lists_are_refused_even_with_a_right_checksum() {
    let messages = scan_all(MBOX, true).unwrap();
    let mut gap = messages.clone();
    gap[1].from_offset += 1;
    let mut inverted = messages.clone();
    inverted[2].data_offset = inverted[2].from_offset;
    let mut short = key(&messages);
    short.covered -= 1;
    let cases: [(Key, &[ScannedMessage]); 4] = [
        (key(&messages), &gap),
        (key(&messages), &inverted),
        (short, &messages),
        (key(&[]), &[]),
    ];
    for (k, m) in cases {
        assert_eq!(decode(&encode(&k, m)), None, "{m:?}");
    }
}

#[test]
fn samples_cover_the_spread_and_the_last() {
    let cases: &[(usize, usize)] = &[
        (0, 0),
        (1, 2),
        (5, 6),
        (SAMPLES, SAMPLES + 1),
        (100_000, SAMPLES + 1),
    ];
    for &(count, expected) in cases {
        let got: Vec<usize> = sample_indexes(count).collect();
        assert_eq!(got.len(), expected, "{count}");
        assert!(got.iter().all(|&i| i < count));
        assert_eq!(got.last().copied(), count.checked_sub(1));
    }
}

#[test]
fn saved_and_loaded_beside_the_mbox() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("inbox");
    fs::write(&mbox, MBOX).unwrap();
    let messages = scan_all(MBOX, false).unwrap();
    let k = Key {
        want_x_uidl: false,
        ..key(&messages)
    };
    assert_eq!(load(&mbox, 0), None);
    save(&mbox, &k, &messages).unwrap();
    let mode = fs::metadata(index_path(&mbox)).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(load(&mbox, 0), Some((k, messages.clone())));
    // A left-over temporary file does not stop the next save.
    fs::write(temp_path(&mbox), b"junk").unwrap();
    save(&mbox, &k, &messages).unwrap();
    assert!(!temp_path(&mbox).exists());
    // Writable by others: not trusted.
    fs::set_permissions(
        index_path(&mbox),
        std::os::unix::fs::PermissionsExt::from_mode(0o622),
    )
    .unwrap();
    assert_eq!(load(&mbox, 0), None);
    remove(&mbox);
    assert!(!index_path(&mbox).exists());
}

/// The pseudo-message flag is kept (the first message is then not listed), and an index of the
/// version before, which set it for any `X-IMAP:` field, is refused: its mbox is scanned anew.
#[test]
fn the_imap_state_flag_round_trips_and_a_version_4_index_is_refused() {
    let pseudo = [
        b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\nX-IMAP: 1 2\n\
          Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n\nstate\n\n"
            .as_slice(),
        MBOX,
    ]
    .concat();
    let messages = scan_all(&pseudo, true).unwrap();
    let flags: Vec<bool> = messages.iter().map(|m| m.imap_state).collect();
    assert_eq!(flags, [true, false, false, false]);
    let bytes = encode(&key(&messages), &messages);
    assert_eq!(decode(&bytes), Some((key(&messages), messages.clone())));
    // The same file under the old magic, with a right checksum.
    let mut old = bytes[..bytes.len() - 8].to_vec();
    old[..MAGIC.len()].copy_from_slice(b"poplar-mbox-index 4\n");
    let sum = checksum(&old);
    old.extend_from_slice(&sum.to_le_bytes());
    assert_eq!(decode(&old), None);
}
