//! Tests for the mbox scanner: table of tricky inputs, every chunk size, and a line-by-line reference
//! implementation of the same rules run on generated mailboxes.

use super::*;

/// Feeds `input` `k` bytes at a time, the way the backend's read loop does.
fn scan_chunked(input: &[u8], k: usize, want_x_uidl: bool) -> Result<Vec<ScannedMessage>, NotMbox> {
    let mut scanner = Scanner::new(want_x_uidl);
    let (mut buf, mut fed) = (Vec::new(), 0);
    loop {
        let eof = fed == input.len();
        let used = scanner.feed(&buf, eof)?;
        buf.drain(..used);
        if eof {
            assert!(buf.is_empty(), "feed at eof must consume everything");
            return Ok(scanner.finish());
        }
        let next = (fed + k).min(input.len());
        buf.extend_from_slice(&input[fed..next]);
        fed = next;
    }
}

/// What RETR sends for `data`, counted by the encoder's own counter.
fn reference_octets(data: &[u8]) -> u64 {
    let mut counter = crate::proto::body::OctetCounter::new();
    counter.update(data);
    counter.finish()
}

fn bodies(input: &[u8], msgs: &[ScannedMessage]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            String::from_utf8_lossy(&input[m.data_offset as usize..m.data_end as usize])
                .into_owned()
        })
        .collect()
}

const CASES: &[(&str, &[&str])] = &[
    ("", &[]),
    ("From a\n", &[""]),
    ("From a", &[""]),
    ("From a\nSubject: x\n\nbody\n", &["Subject: x\n\nbody\n"]),
    (
        "From a\nS: 1\n\nb1\n\nFrom b\nS: 2\n\nb2\n",
        &["S: 1\n\nb1\n", "S: 2\n\nb2\n"],
    ),
    ("From a\nS: 1\n\nb1\n\n", &["S: 1\n\nb1\n"]),
    // No body: the empty line before `From ` ends the header and is kept.
    ("From a\nS: 1\n\nFrom b\nS: 2\n", &["S: 1\n\n", "S: 2\n"]),
    // `From ` not after an empty line, and `>From `, are text.
    (
        "From a\nS: 1\n\nline\nFrom me\n",
        &["S: 1\n\nline\nFrom me\n"],
    ),
    (
        "From a\nS\n\n>From x\n\n>>From y\n",
        &["S\n\n>From x\n\n>>From y\n"],
    ),
    ("From a\nFrom b\n", &["From b\n"]),
    ("From a\nS\n\nb\n\n\nFrom b\nT\n", &["S\n\nb\n\n", "T\n"]),
    ("From a\nS\n\nb", &["S\n\nb"]),
    ("From a\n\nFrom b\nX\n", &["\n", "X\n"]),
    ("From a\n\n\nFrom b\n", &["\n", ""]),
    ("From a\n\n\n", &["\n"]),
    (
        "From a\nS\n\n\nFrom b\n\nFrom c\n\n\n\n",
        &["S\n\n", "\n", "\n\n"],
    ),
    // CRLF lines are not empty lines: no header end, no separator.
    (
        "From a\r\nS\r\n\r\nb\r\n\r\nFrom b\r\n",
        &["S\r\n\r\nb\r\n\r\nFrom b\r\n"],
    ),
    (
        "From a\nS\r\n\nb\r\n\nFrom b\nT\r",
        &["S\r\n\nb\r\n", "T\r"],
    ),
    ("From a\nS\n\nb\n\nFrom", &["S\n\nb\n\nFrom"]),
    ("From a\nS\n\nb\n\nFrom \n", &["S\n\nb\n", ""]),
];

#[test]
fn splits_like_popa3d() {
    for (input, expected) in CASES {
        let msgs = scan_all(input.as_bytes(), false).unwrap();
        assert_eq!(
            bodies(input.as_bytes(), &msgs),
            *expected,
            "input {input:?}"
        );
        for (i, m) in msgs.iter().enumerate() {
            let data = &input.as_bytes()[m.data_offset as usize..m.data_end as usize];
            assert_eq!(
                m.octets,
                reference_octets(data),
                "input {input:?} message {i}"
            );
            let next = msgs
                .get(i + 1)
                .map_or(input.len() as u64, |n| n.from_offset);
            assert_eq!(m.end, next, "input {input:?}: messages tile the file");
            assert!(
                m.data_offset <= m.header_end && m.header_end <= m.data_end && m.data_end <= m.end
            );
        }
    }
}

#[test]
fn refuses_what_is_not_an_mbox() {
    for input in [
        "Hello\n",
        "Fro",
        "\nFrom a\n",
        " From a\n",
        "from a\n",
        "From",
    ] {
        assert_eq!(scan_all(input.as_bytes(), false), Err(NotMbox), "{input:?}");
        for k in 1..=input.len() {
            assert_eq!(
                scan_chunked(input.as_bytes(), k, false),
                Err(NotMbox),
                "{input:?} k={k}"
            );
        }
    }
}

#[test]
fn every_chunk_size_gives_the_same_result() {
    let long_header = format!(
        "From a\nX-UIDL: {}\nReceived: {}\n\n",
        "u".repeat(300),
        "r".repeat(700)
    );
    let mut inputs: Vec<String> = CASES.iter().map(|(i, _)| i.to_string()).collect();
    inputs.push(long_header);
    inputs.push(HASHED.to_string());
    for input in &inputs {
        let whole = scan_all(input.as_bytes(), true).unwrap();
        for k in 1..=input.len() + 1 {
            assert_eq!(
                scan_chunked(input.as_bytes(), k, true).unwrap(),
                whole,
                "input {input:?} k={k}"
            );
        }
    }
}

const HASHED: &str = "From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n\
Return-Path: <a@b>\n\
X-Original-To: u\n\
Delivered-To: u@example.org\n\
Received: by mx (Postfix, from userid 0)\n\
\tid 4F; Thu,  1 Jan 2026 00:00:00 +0000 (UTC)\n\
Received: from elsewhere\n\
Date: Thu, 1 Jan 2026 00:00:00 +0000\n\
Message-ID: <1@b>\n\
x-delivery-id: lower-case x is not hashed\n\
X-Delivery-ID: 42\n\
X-UIDL:  abc123  \n\
X-UIDL: second\n\
Subject: hi\n\
\n\
Received: in the body, not hashed\n";

#[test]
fn hashes_popa3d_header_lines() {
    let msgs = scan_all(HASHED.as_bytes(), true).unwrap();
    let mut md5 = Md5::new();
    md5.update(b"Delivered-To: u@example.org\n");
    md5.update(b"Received: by mx (Postfix, from userid 0)\n\tid 4F; Thu,  1 Jan 2026 00:00:00 +0000 (UTC)\n");
    md5.update(b"X-Delivery-ID: 42\n");
    assert_eq!(msgs[0].popa3d_md5, <[u8; 16]>::from(md5.finalize()));
    assert!(msgs[0].popa3d_hashed);
    assert_eq!(msgs[0].x_uidl.as_deref(), Some("abc123"));
    let from_line = HASHED.split_inclusive('\n').next().unwrap();
    assert_eq!(msgs[0].from_digest, from_line_digest(from_line.as_bytes()));
    assert_eq!(scan_all(HASHED.as_bytes(), false).unwrap()[0].x_uidl, None);
}

#[test]
fn date_and_message_id_count_only_before_received() {
    let table: &[(&str, &[&str])] = &[
        (
            "Date: d\nMessage-ID: <m>\nSubject: s\n",
            &["Date: d\n", "Message-ID: <m>\n"],
        ),
        (
            "DATE: d\n  folded\nReceived: r\nDate: e\nReceived: q\n",
            &["DATE: d\n  folded\n", "Received: r\n"],
        ),
        ("Subject: s\n", &[]),
        ("Reply-To: x\nReceived: r\n", &["Received: r\n"]),
    ];
    for (headers, hashed) in table {
        let input = format!("From a\n{headers}\nbody\n");
        let m = &scan_all(input.as_bytes(), false).unwrap()[0];
        let mut md5 = Md5::new();
        hashed.iter().for_each(|l| md5.update(l.as_bytes()));
        assert_eq!(
            m.popa3d_md5,
            <[u8; 16]>::from(md5.finalize()),
            "{headers:?}"
        );
        assert_eq!(m.popa3d_hashed, !hashed.is_empty());
    }
}

/// The same rules, line by line, written the slow obvious way.
fn reference_scan(input: &[u8]) -> Vec<(u64, u64, u64, u64, u64)> {
    let mut out = Vec::new();
    let mut cur: Option<(u64, u64, Option<u64>)> = None; // from, data, header_end
    let (mut offset, mut blank, mut in_header) = (0u64, false, false);
    let close =
        |cur: Option<(u64, u64, Option<u64>)>, end: u64, last_blank: bool, out: &mut Vec<_>| {
            if let Some((from, data, header_end)) = cur {
                let strip = last_blank && header_end.is_some_and(|h: u64| end > h);
                let data_end = end - strip as u64;
                let octets = reference_octets(&input[data as usize..data_end as usize]);
                out.push((from, data, data_end, end, octets));
            }
        };
    for line in input.split_inclusive(|&b| b == b'\n') {
        if (offset == 0 || blank) && line.starts_with(b"From ") {
            close(cur.take(), offset, offset > 0, &mut out);
            cur = Some((offset, offset + line.len() as u64, None));
            (blank, in_header) = (false, true);
        } else {
            blank = line == b"\n";
            let c = cur.as_mut().unwrap();
            if in_header && blank {
                in_header = false;
                c.2 = Some(offset + 1);
            }
        }
        offset += line.len() as u64;
    }
    close(cur, offset, blank, &mut out);
    out
}

/// A deterministic generator of awkward mailboxes.
fn generated_mbox(seed: u64, lines: usize) -> Vec<u8> {
    const PIECES: &[&str] = &[
        "From x@y Thu Jan  1 00:00:00 2026\n",
        "\n",
        "\n",
        ">From q\n",
        "From body\n",
        "Received: r\n",
        " cont\n",
        "Date: d\n",
        "Subject: s\n",
        "text line\n",
        "crlf\r\n",
        "\r\n",
        "\r",
        "x",
        "From ",
        "X-UIDL: u1\n",
        "Delivered-To: d\n",
    ];
    let mut state = seed | 1;
    let mut out = b"From first\n".to_vec();
    for _ in 0..lines {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(PIECES[(state % PIECES.len() as u64) as usize].as_bytes());
    }
    out
}

#[test]
fn agrees_with_the_line_by_line_reference() {
    for seed in 1..200 {
        let input = generated_mbox(seed, 60);
        let got: Vec<_> = scan_all(&input, true)
            .unwrap()
            .iter()
            .map(|m| (m.from_offset, m.data_offset, m.data_end, m.end, m.octets))
            .collect();
        assert_eq!(
            got,
            reference_scan(&input),
            "seed {seed}: {:?}",
            String::from_utf8_lossy(&input)
        );
        let whole = scan_all(&input, true).unwrap();
        for k in [1, 2, 3, 5, 7, 8, 13, 64] {
            assert_eq!(
                scan_chunked(&input, k, true).unwrap(),
                whole,
                "seed {seed} k={k}"
            );
        }
    }
}

#[test]
fn counts_line_ends_across_windows() {
    let table: &[(&[u8], u8, (u64, u64))] = &[
        (b"", 0, (0, 0)),
        (b"\n", b'\r', (1, 1)),
        (b"\n", b'x', (1, 0)),
        (b"a\r\nb\nc\r\r\n", 0, (3, 2)),
    ];
    for (bytes, prev, expected) in table {
        assert_eq!(count_line_ends(bytes, *prev), *expected, "{bytes:?}");
    }
}

/// The backend may scan a large mbox in two pieces cut where a `\n\nFrom ` line begins (see
/// `read::Scan::range`): the first piece ends there as if the file did, the second starts there. Every
/// such cut must give exactly what one scan gives.
#[test]
fn a_scan_cut_at_any_message_boundary_joins_up() {
    let finder = memmem::Finder::new(SEPARATOR);
    let mut cuts_tried = 0;
    for seed in 1..300 {
        let input = generated_mbox(seed, 200);
        let whole = scan_all(&input, true).unwrap();
        for at in finder.find_iter(&input) {
            let split = at + 2;
            let mut joined = scan_all(&input[..split], true).unwrap();
            let mut tail = Scanner::starting_at(split as u64, true);
            assert_eq!(tail.feed(&input[split..], true), Ok(input.len() - split));
            joined.extend(tail.finish());
            assert_eq!(joined, whole, "seed {seed}, cut at {split}");
            cuts_tried += 1;
        }
    }
    assert!(cuts_tried > 500, "only {cuts_tried} cuts tried");
}

/// The pseudo-message's shape marks a message (UW-IMAP's and Dovecot's folder state): `X-IMAP:` in
/// its header, any case, at the start of a line, with two numbers, and the pseudo-message's subject;
/// `X-IMAPbase:`, a continuation line, the body, a value without its numbers or another subject do
/// not, nor does a message over `MAX_PSEUDO_MESSAGE` octets.
#[test]
fn an_x_imap_header_field_is_flagged() {
    let long = "x".repeat(2 * MIN_FRAGMENT);
    let subject = "Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA";
    let large = "y".repeat(MAX_PSEUDO_MESSAGE as usize);
    let blanks = " ".repeat(300);
    let cases: [(String, bool); 15] = [
        // Lines past `MIN_FRAGMENT` are judged by their first `MIN_FRAGMENT` octets alone, the same
        // whatever the windows: a padded subject is not the subject, numbers past it are not seen.
        (format!("From a\n{subject}{blanks}\nX-IMAP: 1 2\n\n"), false),
        (format!("From a\n{subject}\nX-IMAP: 1{blanks} 2\n\n"), false),
        (
            format!("From a\n{subject}\nX-IMAP: 1 2{blanks}{long}\n\n"),
            true,
        ),
        (
            format!("From a\n{subject}\nX-IMAP: 1767225600 0000000003\n\nbody\n"),
            true,
        ),
        (format!("From a\nx-imap: 1 2\n{subject}\r\n\n"), true),
        (
            format!("From a\nReceived: {long}\nX-Imap: 1 2 {long}\n{subject}\n\n"),
            true,
        ),
        ("From a\nSubject: s\nX-IMAP: 1 2\n\nbody\n".into(), false),
        (format!("From a\n{subject}\nX-IMAP: 1\n\nbody\n"), false),
        (format!("From a\n{subject}\nX-IMAP: one 2\n\nbody\n"), false),
        (
            format!("From a\n{subject}\nX-IMAPbase: 1767225600 0000000003\n\nbody\n"),
            false,
        ),
        (format!("From a\n{subject}\n X-IMAP: 1 2\n\nbody\n"), false),
        (format!("From a\n{subject}\n\nX-IMAP: 1 2\n"), false),
        (
            format!("From a\n{subject}\nX-IMAP 1 2\nX-IMAPS: 1 2\n\n"),
            false,
        ),
        (
            format!("From a\n{subject}\nX-IMAP: 1 2\n\n{large}\n"),
            false,
        ),
        (
            format!("From a\n{subject}\nX-IMAP: 1 2\n\n{}\n", &large[..60_000]),
            true,
        ),
    ];
    for (input, flagged) in &cases {
        let whole = scan_all(input.as_bytes(), false).unwrap();
        assert_eq!(whole.len(), 1, "{input:.80?}");
        assert_eq!(whole[0].imap_state, *flagged, "{input:.80?}");
        // The same at every window size, but for the 64 KiB cases (a scan per size).
        if input.len() > 16 * MIN_FRAGMENT {
            continue;
        }
        for k in 1..=input.len() + 1 {
            assert_eq!(
                scan_chunked(input.as_bytes(), k, false).unwrap(),
                whole,
                "{input:?} k={k}"
            );
        }
    }
    // Each message its own: the flag does not carry over to the next.
    let two = scan_all(
        b"From a\nX-IMAP: 1 2\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n\n\n\
          From b\nSubject: s\n\n",
        false,
    )
    .unwrap();
    assert_eq!(
        two.iter().map(|m| m.imap_state).collect::<Vec<_>>(),
        [true, false]
    );
}
