//! Unique-ids (RFC 1939 section 7) for mbox messages, computed from what the scanner found, without
//! writing anything into the mailbox. Pure, except that the caller supplies a digest of a message's
//! `From ` line and header when one is needed (rarely), since only the caller can read the file.
//!
//! - `UidlSource::Popa3d` (the default): popa3d's ids, so that its users switch without their clients
//!   downloading everything again. popa3d prints the first 8 octets of its MD5 (see `scan`) as hex, each
//!   4-octet half in reverse octet order (it formats two little-endian 32-bit words).
//! - `UidlSource::XUidl`: a valid `X-UIDL:` header (written by qpopper and others) is the id; messages
//!   without one get the popa3d id.
//!
//! RFC 1939 wants ids unique in the maildrop, and they must not change while the message stays. popa3d
//! gives the same id to two messages whose hashed headers are equal; we keep popa3d's id for the first and
//! give later ones `ID-XXXXXXXX`, where XXXXXXXX comes from the MD5 of that message's own `From ` line
//! and header (the `From ` line holds the delivery time), then `-2`, `-3`, ... if even those are equal.
//! A message with none of popa3d's headers (popa3d would give it the id of empty input, shared by all
//! such messages) always gets the suffixed form, so its id depends on nothing but its own bytes.
//! What is left: two messages whose hashed headers are equal (the same first `Received:` line, i.e.
//! the same delivery) lose their first-come order when the first one is deleted; in practice they are
//! copies of one message.

use std::collections::{HashMap, HashSet};

use super::scan::ScannedMessage;
use crate::maildrop::{MAX_UID, is_valid_uid};

/// Where unique-ids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UidlSource {
    /// popa3d's header hash.
    #[default]
    Popa3d,
    /// `X-UIDL:` headers where valid, else popa3d's.
    XUidl,
}

impl UidlSource {
    /// The setting's value (`mbox-uidl`) for this source.
    pub fn name(self) -> &'static str {
        match self {
            UidlSource::Popa3d => "popa3d",
            UidlSource::XUidl => "x-uidl",
        }
    }
}

/// popa3d's unique-id for a message with this header MD5.
pub fn popa3d_id(md5: &[u8; 16]) -> String {
    hex_id(popa3d_number(md5)).into()
}

/// The number popa3d's id spells in hex: the MD5's first two little-endian 32-bit words, high word first.
fn popa3d_number(md5: &[u8; 16]) -> u64 {
    u64::from_be_bytes([
        md5[3], md5[2], md5[1], md5[0], md5[7], md5[6], md5[5], md5[4],
    ])
}

/// `n` as 16 lowercase hex digits: popa3d's form. One allocation: this runs for every message at
/// every login.
fn hex_id(n: u64) -> Box<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits: [u8; 16] = core::array::from_fn(|i| HEX[((n >> (60 - 4 * i)) & 0xf) as usize]);
    std::str::from_utf8(&digits).expect("hex digits").into()
}

/// The number a 16-digit lowercase hex id spells; `None` for any other id. One-to-one on those ids,
/// so a set of numbers can stand for a set of them.
fn hex_number(id: &str) -> Option<u64> {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if id.len() != 16 || !id.as_bytes().iter().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(id, 16).ok()
}

/// The ids handed out so far. Those in popa3d's form, nearly all of them, are kept as the numbers they
/// spell: no allocation per message (100,000 small strings cost more to free than to scan for).
struct Taken {
    hex: HashSet<u64>,
    other: HashSet<Box<str>>,
}

impl Taken {
    fn with_capacity(n: usize) -> Taken {
        Taken {
            hex: HashSet::with_capacity(n),
            other: HashSet::new(),
        }
    }

    fn contains(&self, id: &str) -> bool {
        match hex_number(id) {
            Some(n) => self.hex.contains(&n),
            None => self.other.contains(id),
        }
    }

    fn insert(&mut self, id: &str) {
        match hex_number(id) {
            Some(n) => self.hex.insert(n),
            None => self.other.insert(id.into()),
        };
    }
}

/// The unique-ids of `messages`, in order. `header_md5(m)` is the MD5 of `m`'s bytes from its `From `
/// line to the end of its header (`from_offset..header_end`); it is called only when ids collide.
pub fn assign<E>(
    messages: &[ScannedMessage],
    source: UidlSource,
    mut header_md5: impl FnMut(&ScannedMessage) -> Result<[u8; 16], E>,
) -> Result<Vec<Box<str>>, E> {
    let mut taken = Taken::with_capacity(messages.len());
    // For each suffixed stem, the next counter to try: copies of one message cost O(1) each, not O(n).
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut ids = Vec::with_capacity(messages.len());
    for m in messages {
        let number = popa3d_number(&m.popa3d_md5);
        let id: Box<str> = match (source, m.x_uidl.as_deref()) {
            (UidlSource::XUidl, Some(x)) if is_valid_uid(x.as_bytes()) && !taken.contains(x) => {
                x.into()
            }
            (UidlSource::XUidl, Some(x)) if is_valid_uid(x.as_bytes()) => {
                suffixed(&taken, &mut next, x, number, header_md5(m)?)
            }
            // The common case: one lookup, and the id's form known without looking at it.
            _ if m.popa3d_hashed && taken.hex.insert(number) => {
                ids.push(hex_id(number));
                continue;
            }
            _ => suffixed(&taken, &mut next, &hex_id(number), number, header_md5(m)?),
        };
        taken.insert(&id);
        ids.push(id);
    }
    Ok(ids)
}

/// `base-XXXXXXXX` (XXXXXXXX from the message's own header MD5), or with `-2`, `-3`, ... if taken.
fn suffixed(
    taken: &Taken,
    next: &mut HashMap<String, u64>,
    base: &str,
    popa3d: u64,
    digest: [u8; 16],
) -> Box<str> {
    let suffix: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    // "-XXXXXXXX" plus room for a counter must fit in MAX_UID; a long X-UIDL falls back to popa3d's id.
    let stem = if base.len() + 9 + 8 <= MAX_UID {
        base.to_string()
    } else {
        hex_id(popa3d).into()
    };
    first_free(taken, next, format!("{stem}-{suffix}"))
}

/// `stem`, or `stem-2`, `stem-3`, ... whichever is not taken yet.
fn first_free(taken: &Taken, next: &mut HashMap<String, u64>, stem: String) -> Box<str> {
    if !taken.contains(&stem) {
        return stem.into();
    }
    let id = format!("{stem}-");
    let n = next.entry(stem).or_insert(2);
    loop {
        let candidate = format!("{id}{n}");
        *n += 1;
        if !taken.contains(&candidate) {
            return candidate.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildrop::mbox::scan::scan_all;
    use md5::{Digest, Md5};

    fn ids(mbox: &str, source: UidlSource) -> Vec<String> {
        let msgs = scan_all(mbox.as_bytes(), true).unwrap();
        let got = assign(&msgs, source, |m| {
            Ok::<_, ()>(
                Md5::digest(&mbox.as_bytes()[m.from_offset as usize..m.header_end as usize]).into(),
            )
        });
        got.unwrap().into_iter().map(String::from).collect()
    }

    #[test]
    fn popa3d_prints_two_reversed_words() {
        let md5: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(popa3d_id(&md5), "0302010007060504");
    }

    #[test]
    fn ids_are_unique_valid_and_deterministic() {
        let one = "From a Thu Jan  1 00:00:00 2026\nReceived: r1\n\nx\n\n";
        let same_received = "From b Thu Jan  1 00:00:01 2026\nReceived: r1\n\ny\n\n";
        let no_headers = "From c Thu Jan  1 00:00:02 2026\nSubject: s\n\nz\n\n";
        let mbox = [one, same_received, no_headers, no_headers, one].concat();
        let got = ids(&mbox, UidlSource::Popa3d);
        let h1 = popa3d_id(&Md5::digest(b"Received: r1\n").into());
        assert_eq!(got[0], h1);
        assert!(
            got[1].starts_with(&format!("{h1}-")) && got[1].len() == 16 + 9,
            "{got:?}"
        );
        assert!(got[2].starts_with(&popa3d_id(&Md5::digest(b"").into())));
        assert_eq!(got[3], format!("{}-2", got[2]));
        assert!(
            got[4].starts_with(&format!("{h1}-")) && got[4].len() == 16 + 9 && got[4] != got[1]
        );
        let set: HashSet<_> = got.iter().collect();
        assert_eq!(set.len(), got.len());
        assert!(got.iter().all(|id| is_valid_uid(id.as_bytes())));
        assert_eq!(got, ids(&mbox, UidlSource::Popa3d));
    }

    #[test]
    fn deleting_a_message_keeps_the_others_ids() {
        let msgs: Vec<String> = (0..5)
            .map(|i| {
                format!(
                    "From u Thu Jan  1 00:00:0{i} 2026\nReceived: r{}\n\nbody\n\n",
                    i % 3
                )
            })
            .collect();
        let all = ids(&msgs.concat(), UidlSource::Popa3d);
        // Messages 3 and 4 repeat the hashed headers of 0 and 1 (see the module doc for deleting 0 or 1).
        for gone in [2, 3, 4] {
            let rest: Vec<&str> = (0..5)
                .filter(|&i| i != gone)
                .map(|i| msgs[i].as_str())
                .collect();
            let expected: Vec<&String> = (0..5).filter(|&i| i != gone).map(|i| &all[i]).collect();
            let got = ids(&rest.concat(), UidlSource::Popa3d);
            assert_eq!(got.iter().collect::<Vec<_>>(), expected, "deleted {gone}");
        }
    }

    #[test]
    fn hex_numbers_stand_for_lowercase_16_digit_ids_only() {
        for n in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(hex_number(&hex_id(n)), Some(n));
            assert_eq!(*hex_id(n), format!("{n:016x}"));
        }
        for id in [
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "+123456789abcdef",
        ] {
            assert_eq!(hex_number(id), None, "{id}");
        }
    }

    #[test]
    fn an_x_uidl_equal_to_an_earlier_popa3d_id_is_suffixed() {
        let first = "From a\nReceived: r\n\nx\n\n";
        let popa3d = ids(first, UidlSource::XUidl)[0].clone();
        for (x, same) in [(popa3d.clone(), true), (popa3d.to_uppercase(), false)] {
            let mbox = format!("{first}From b\nReceived: s\nX-UIDL: {x}\n\ny\n");
            let got = ids(&mbox, UidlSource::XUidl);
            assert_eq!(got[0], popa3d);
            if same {
                assert!(got[1].starts_with(&format!("{x}-")), "{got:?}");
            } else {
                assert_eq!(got[1], x);
            }
        }
    }

    #[test]
    fn x_uidl_used_when_valid() {
        let table: &[(&str, Option<&str>)] = &[
            ("X-UIDL: abc\n", Some("abc")),
            ("x-uidl:\tq-1 \n", Some("q-1")),
            ("X-UIDL: has space\n", None),
            ("X-UIDL:\n", None),
            ("Subject: s\n", None),
        ];
        for (header, expected) in table {
            let mbox = format!("From a\nReceived: r\n{header}\nbody\n");
            let with = ids(&mbox, UidlSource::XUidl);
            let without = ids(&mbox, UidlSource::Popa3d);
            assert_eq!(
                with[0],
                expected.map_or(without[0].clone(), String::from),
                "{header:?}"
            );
        }
        let twice = "From a\nX-UIDL: same\n\nx\n\nFrom b\nX-UIDL: same\n\ny\n";
        let got = ids(twice, UidlSource::XUidl);
        assert_eq!(got[0], "same");
        assert!(got[1].starts_with("same-") && got[1] != got[0]);
    }
}
