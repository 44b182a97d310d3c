//! Where Maildir unique-ids come from (`maildir-uidl`): the file's base name (the default, as Courier
//! and Dovecot's `%f` give), or the ids Dovecot's POP3 server announced, read from the Maildir's
//! `dovecot-uidlist`, so that clients that leave mail on the server do not download it all again after
//! a move from Dovecot. Owns the setting, the file's parser (pure), reading the file, and keeping the
//! ids unique; `maildir/mod.rs` decides when to ask.
//!
//! The file, as Dovecot's `maildir-uidlist.c` reads it: a header line, then one line per message.
//!
//! - version 3 (Dovecot 1.1 and later): `3 V<uidvalidity> N<nextuid> G<guid> ...`, fields in any order;
//!   records `<uid> [<key><value> ...] :<filename>`, keys `A`..`Z`. `P<uidl>` is a UIDL Dovecot saved
//!   (`pop3_save_uidl`, migrations); a bare `P` means "the base file name".
//! - version 1 (older Dovecot, Courier's `courierimapuiddb`): `1 <uidvalidity> <nextuid>`, records
//!   `<uid> <filename>`.
//!
//! A record matches the message whose base name (the file name before `:`) is its filename's. Its id
//! is `pop3_uidl_format` (`dovecot-uidl-format`, see `uidl_format.rs`) expanded with the record's UID,
//! the header's UIDVALIDITY, the base name and the record's `G` field; Dovecot's default
//! `%08Xu%08Xv` is the UID and the UIDVALIDITY as 8 lower-case hex digits each (var-expand.c's `X`
//! prints with `%llx`). A `P` value, where valid, is used instead, as Dovecot does.
//!
//! The file is only read, never written or locked: Dovecot replaces it by a rename (under its
//! `dovecot-uidlist.lock` dotlock), so one read sees one whole version. It is read at every login in
//! this mode, so a file Dovecot changed is always seen; nothing of it is cached.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use super::MessageInfo;
use super::uidl_format::{UidlFormat, Vars};

/// Where Maildir unique-ids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaildirUidl {
    /// The file's base name (its MD5 when that is not a valid id).
    #[default]
    Name,
    /// `dovecot-uidlist`'s ids where it lists the message, else the base name.
    Dovecot,
}

impl MaildirUidl {
    /// The setting's value (`maildir-uidl`) for this source.
    pub fn name(self) -> &'static str {
        match self {
            MaildirUidl::Name => "name",
            MaildirUidl::Dovecot => "dovecot",
        }
    }
}

/// In the Maildir's top directory (Dovecot's default control directory).
pub const UIDLIST_FILE: &str = "dovecot-uidlist";
/// A larger file is not read. Records take 60 to 120 octets, so this is over half a million messages;
/// it bounds what a damaged or hostile file costs a login.
const MAX_UIDLIST_BYTES: u64 = 64 * 1024 * 1024;

/// What a `dovecot-uidlist` says: base name → the UIDL Dovecot announced for it.
#[derive(Debug, Default)]
pub struct Uidlist {
    ids: HashMap<Box<[u8]>, Box<str>>,
    /// Line numbers (1-based) of records that could not be read; their messages keep base-name ids.
    pub malformed: Vec<usize>,
    /// Records whose id from the format is not a valid unique-id; their messages keep base-name ids.
    pub invalid: usize,
}

/// A header that cannot be read: nothing in the file can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    Empty,
    /// Not a version digit and a space, or a version other than 1 and 3.
    Version,
    /// No UIDVALIDITY or next UID, zero, or not a decimal number.
    Fields,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderError::Empty => "empty file",
            HeaderError::Version => "not a version 1 or 3 header",
            HeaderError::Fields => "header without a valid UIDVALIDITY and next UID",
        })
    }
}

impl Uidlist {
    /// The UIDL Dovecot announced for the message with this base name, if the file lists it.
    pub fn get(&self, base: &[u8]) -> Option<&str> {
        self.ids.get(base).map(|id| &**id)
    }

    /// Every (base name, UIDL) the file gives, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &str)> {
        self.ids.iter().map(|(base, id)| (&**base, &**id))
    }
}

/// Parses a whole `dovecot-uidlist`, giving each record its id in `format`. Pure. A bad header spoils
/// the file; a bad record only its line.
pub fn parse(text: &[u8], format: &UidlFormat) -> Result<Uidlist, HeaderError> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() {
        return Err(HeaderError::Empty);
    }
    let mut lines = text.split(|&b| b == b'\n');
    let (version, validity) = header(lines.next().unwrap_or_default())?;
    let mut list = Uidlist::default();
    // One record a line: sized once, not regrown (and rehashed) some 17 times for 100,000 messages.
    list.ids.reserve(memchr::memchr_iter(b'\n', text).count());
    // Dovecot requires strictly increasing UIDs, and reads a line out of order as damage.
    let mut prev_uid = 0;
    for (i, line) in lines.enumerate() {
        match record(line, version) {
            Some(rec) if rec.uid > prev_uid => {
                prev_uid = rec.uid;
                let base = super::maildir::base_of(rec.filename);
                match rec.pop3 {
                    // "Use the base file name": what the `name` source gives anyway.
                    Some([]) => {
                        list.ids.remove(base);
                    }
                    // A later record of the same file replaces an earlier one, as in Dovecot.
                    pop3 => match dovecot_id(pop3, &rec, base, validity, format) {
                        Some(id) => {
                            list.ids.insert(base.into(), id);
                        }
                        None => {
                            list.invalid += 1;
                            list.ids.remove(base);
                        }
                    },
                }
            }
            _ => list.malformed.push(i + 2),
        }
    }
    Ok(list)
}

/// The version and the UIDVALIDITY of a header line.
fn header(line: &[u8]) -> Result<(u8, u32), HeaderError> {
    let (version, rest) = match line {
        [v @ (b'1' | b'3'), b' ', rest @ ..] => (v - b'0', rest),
        _ => return Err(HeaderError::Version),
    };
    let mut fields = rest.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (mut validity, mut next_uid) = (None, None);
    if version == 1 {
        validity = fields.next().and_then(number);
        next_uid = fields.next().and_then(number);
    } else {
        for field in fields {
            match field {
                [b'V', value @ ..] => validity = number(value),
                [b'N', value @ ..] => next_uid = number(value),
                _ => {}
            }
        }
    }
    match (validity, next_uid) {
        (Some(v), Some(n)) if v != 0 && n != 0 => Ok((version, v)),
        _ => Err(HeaderError::Fields),
    }
}

/// One record line, as read.
struct Record<'a> {
    uid: u32,
    /// The `P` field's value, if the line has one.
    pop3: Option<&'a [u8]>,
    /// The `G` field's value (the message's GUID), empty if the line has none.
    guid: &'a [u8],
    filename: &'a [u8],
}

fn record(line: &[u8], version: u8) -> Option<Record<'_>> {
    let digits = line.iter().take_while(|b| b.is_ascii_digit()).count();
    let uid = number(&line[..digits]).filter(|&u| u != 0 && u != u32::MAX)?;
    let mut rest = line[digits..].strip_prefix(b" ")?.trim_ascii_start();
    let (mut pop3, mut guid) = (None, None);
    if version == 3 {
        // Extension fields up to the `:` that starts the file name.
        while let Some(&key) = rest.first().filter(|&&b| b != b':') {
            let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
            match key {
                b'P' if pop3.is_none() => pop3 = Some(&rest[1..end]),
                b'G' if guid.is_none() => guid = Some(&rest[1..end]),
                _ => {}
            }
            rest = rest[end..].trim_ascii_start();
        }
        rest = rest.strip_prefix(b":").unwrap_or(rest);
    }
    let filename = rest;
    if filename.is_empty() || filename.contains(&b'/') {
        return None;
    }
    Some(Record {
        uid,
        pop3,
        guid: guid.unwrap_or_default(),
        filename,
    })
}

/// A decimal number that fits 32 bits, digits only.
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The `P` value when it is a valid unique-id, else the format's id for the record; `None` when that
/// is not a valid unique-id (too long, or a file name or GUID with characters ids may not have).
fn dovecot_id(
    pop3: Option<&[u8]>,
    rec: &Record<'_>,
    base: &[u8],
    validity: u32,
    format: &UidlFormat,
) -> Option<Box<str>> {
    if let Some(id) = pop3
        .filter(|id| super::is_valid_uid(id))
        .and_then(|id| std::str::from_utf8(id).ok())
    {
        return Some(id.into());
    }
    if format.is_default() {
        return Some(hex_id(rec.uid, validity));
    }
    let vars = Vars {
        uid: rec.uid,
        validity,
        filename: base,
        guid: rec.guid,
    };
    let id = format.expand(&vars);
    if !super::is_valid_uid(&id) {
        return None;
    }
    String::from_utf8(id).ok().map(String::into_boxed_str)
}

/// `%08x%08x`, without the formatting machinery: this runs for nearly every message at every login.
/// Lower case: Dovecot's `X` modifier (`m_str_hex` in `src/lib/var-expand.c`) prints with `%llx`, and
/// clients compare unique-ids octet by octet.
fn hex_id(uid: u32, validity: u32) -> Box<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = (u64::from(uid) << 32) | u64::from(validity);
    let digits: [u8; 16] = core::array::from_fn(|i| HEX[((n >> (60 - 4 * i)) & 0xf) as usize]);
    std::str::from_utf8(&digits).expect("hex digits").into()
}

/// Reads and parses `root/dovecot-uidlist`. Any problem is one warning naming the file, and the
/// messages it spoils keep their base-name ids: the client never sees an error for it.
pub fn load(root: &Path, format: &UidlFormat) -> Option<Uidlist> {
    let path = root.join(UIDLIST_FILE);
    let warn = |problem: &dyn fmt::Display| {
        log::warn!(
            "{}: {problem}; unique-ids from file names instead",
            path.display()
        );
    };
    let (file, meta) = match super::open_kept_file(&path) {
        Ok(Some(opened)) => opened,
        // Normal for a user whose mail Dovecot never served (an account made after the migration):
        // not worth a warning at every login.
        Ok(None) => {
            log::debug!("{}: missing; unique-ids from file names", path.display());
            return None;
        }
        Err(e) => {
            warn(&e);
            return None;
        }
    };
    // Anyone could have written a world-writable file; it is not Dovecot's word.
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o002 != 0 {
        warn(&"writable by anyone");
        return None;
    }
    if meta.len() > MAX_UIDLIST_BYTES {
        warn(&format_args!("larger than {MAX_UIDLIST_BYTES} octets"));
        return None;
    }
    let mut text = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    if let Err(e) = file.take(MAX_UIDLIST_BYTES).read_to_end(&mut text) {
        warn(&e);
        return None;
    }
    match parse(&text, format) {
        Ok(list) => {
            if let Some(first) = list.malformed.first() {
                log::warn!(
                    "{}: {} malformed line(s), the first line {first}; unique-ids from file names for those messages",
                    path.display(),
                    list.malformed.len()
                );
            }
            if list.invalid > 0 {
                log::warn!(
                    "{}: dovecot-uidl-format {format} gives {} record(s) an id that is not a valid unique-id; unique-ids from file names for those messages",
                    path.display(),
                    list.invalid
                );
            }
            Some(list)
        }
        Err(e) => {
            warn(&e);
            None
        }
    }
}

/// Gives each message listed in `list` Dovecot's id in place of its base-name id (`messages[i].uid`;
/// `bases[i]` is its base name), keeping ids unique (RFC 1939 section 7). A Dovecot id that two
/// messages would share, or that is another message's base-name id, is given to none of them: they
/// keep their base-name ids, which are unique among themselves. The choice depends only on the
/// maildrop's contents, not on the order of the listing.
pub fn apply(list: &Uidlist, messages: &mut [MessageInfo], bases: &[&[u8]]) {
    let wanted: Vec<Option<&str>> = bases.iter().map(|b| list.get(b)).collect();
    // Claims on each Dovecot id: the messages that want it, and a message whose base-name id it is
    // while that message does not take it itself. An id is given only where it has one claim.
    // Keyed by the list's strings, so the messages stay free to be given their ids below.
    let mut claims: HashMap<&str, usize> = HashMap::with_capacity(messages.len());
    for id in wanted.iter().flatten() {
        *claims.entry(id).or_default() += 1;
    }
    for (want, m) in wanted.iter().zip(messages.iter()) {
        if *want != Some(&*m.uid) {
            if let Some(n) = claims.get_mut(&*m.uid) {
                *n += 1;
            }
        }
    }
    for (m, want) in messages.iter_mut().zip(&wanted) {
        let Some(id) = *want else { continue };
        if claims[id] == 1 {
            m.uid = id.into();
        } else {
            log::debug!("dovecot-uidlist: {id} is not unique; {} kept", m.uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ids(text: &str) -> Vec<(String, String)> {
        let list = parse(text.as_bytes(), &UidlFormat::default()).unwrap();
        let mut v: Vec<(String, String)> = list
            .ids
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn version_3_records() {
        let text = "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n\
                    1 :1275660000.M1P2.host,S=10\n\
                    2 W1234 S1200 :1275660001.M2P2.host,S=1200:2,S\n\
                    255 P0123abcd W5 :1275660002.M3P2.host\n\
                    300 P :1275660003.M4P2.host\n\
                    301 Pnot\x01valid :1275660004.M5P2.host\n\
                    302 Pfirst Psecond :1275660005.M6P2.host\n";
        assert_eq!(
            ids(text),
            pairs(&[
                ("1275660000.M1P2.host,S=10", "000000014c0907b0"),
                ("1275660001.M2P2.host,S=1200", "000000024c0907b0"),
                ("1275660002.M3P2.host", "0123abcd"),
                ("1275660004.M5P2.host", "0000012d4c0907b0"),
                ("1275660005.M6P2.host", "first"),
            ])
        );
    }

    #[test]
    fn version_1_records() {
        let text = "1 1275660208 25022\n7 1275660000.M1P2.host:2,RS\n8 x\n";
        assert_eq!(
            ids(text),
            pairs(&[
                ("1275660000.M1P2.host", "000000074c0907b0"),
                ("x", "000000084c0907b0")
            ])
        );
    }

    #[test]
    fn a_malformed_record_spoils_only_its_line() {
        let text = "3 V1 N9\n\
                    1 :a\n\
                    x :b\n\
                    0 :c\n\
                    2 Pid-without-name\n\
                    3 :d/e\n\
                    \n\
                    1 :f\n\
                    4 :g\n\
                    5:h\n\
                    4294967295 :i\n\
                    99999999999 :j\n\
                    6  Pp   :k";
        let list = parse(text.as_bytes(), &UidlFormat::default()).unwrap();
        assert_eq!(list.malformed, [3, 4, 5, 6, 7, 8, 10, 11, 12]);
        assert_eq!(
            ids(text),
            pairs(&[
                ("a", "0000000100000001"),
                ("g", "0000000400000001"),
                ("k", "p")
            ])
        );
    }

    #[test]
    fn a_later_record_of_the_same_file_wins() {
        let text = "3 V16 N9\n1 :a\n2 Pnew :a:2,S\n3 :b\n4 P :b\n";
        assert_eq!(ids(text), pairs(&[("a", "new")]));
    }

    /// Another `pop3_uidl_format`: the record's UID and the header's UIDVALIDITY, the base name, the
    /// record's G field (the base name without one, as `maildir_mail_get_special` falls back), and a
    /// saved `P` UIDL still first, as `pop3_get_uid` looks up `MAIL_FETCH_UIDL_BACKEND` first.
    #[test]
    fn records_in_another_format() {
        let text = "3 V1700000000 N30 G3085f01b7f11094c501100008c4a11c1\n\
                    26 G0123456789abcdef0123456789abcdef :1700000001.M1P1.host,S=8\n\
                    27 W9 :1700000002.M2P1.host:2,S\n\
                    28 Psaved G00 :1700000003.M3P1.host\n\
                    29 G :1700000004.M4P1.host\n";
        let ids = |format: &str| {
            let list = parse(text.as_bytes(), &UidlFormat::parse(format).unwrap()).unwrap();
            let mut v: Vec<(String, String)> = list
                .iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_string()))
                .collect();
            v.sort();
            v.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
        };
        assert_eq!(
            ids("%v.%u"),
            ["1700000000.26", "1700000000.27", "saved", "1700000000.29"]
        );
        assert_eq!(
            ids("%g"),
            [
                "0123456789abcdef0123456789abcdef",
                "1700000002.M2P1.host",
                "saved",
                "1700000004.M4P1.host"
            ]
        );
        assert_eq!(
            ids("%f-%u"),
            [
                "1700000001.M1P1.host,S=8-26",
                "1700000002.M2P1.host-27",
                "saved",
                "1700000004.M4P1.host-29"
            ]
        );
    }

    /// An id over 70 characters is not given: the message keeps its base-name id, and it is counted
    /// for the warning.
    #[test]
    fn an_invalid_id_from_the_format_is_not_given() {
        let long = "x".repeat(70);
        let text = format!("3 V1 N9\n1 :{long}\n2 :short\n3 Pkept :{long}2\n");
        let list = parse(text.as_bytes(), &UidlFormat::parse("%f.%u.%v").unwrap()).unwrap();
        assert_eq!(list.invalid, 1);
        assert_eq!(list.get(long.as_bytes()), None);
        assert_eq!(list.get(b"short"), Some("short.2.1"));
        assert_eq!(list.get(format!("{long}2").as_bytes()), Some("kept"));
    }

    #[test]
    fn bad_headers_spoil_the_file() {
        let table: &[(&str, HeaderError)] = &[
            ("", HeaderError::Empty),
            ("\n", HeaderError::Empty),
            ("2 V1 N2\n1 :a\n", HeaderError::Version),
            ("3V1 N2\n", HeaderError::Version),
            ("31 V1 N2\n", HeaderError::Version),
            ("3 N2\n", HeaderError::Fields),
            ("3 V0 N2\n", HeaderError::Fields),
            ("3 V1\n", HeaderError::Fields),
            ("3 V1x N2\n", HeaderError::Fields),
            ("3 V4294967296 N2\n", HeaderError::Fields),
            ("1 5\n", HeaderError::Fields),
            ("1 a 5\n", HeaderError::Fields),
        ];
        for (text, want) in table {
            assert_eq!(
                parse(text.as_bytes(), &UidlFormat::default()).unwrap_err(),
                *want,
                "{text:?}"
            );
        }
        // Unknown header fields, extra spaces and the order do not matter.
        assert!(parse(b"3  G00 X N2  V4294967295 \n", &UidlFormat::default()).is_ok());
        assert!(parse(b"1 5 6 junk", &UidlFormat::default()).is_ok());
    }

    /// The ids `apply` gives messages with these base names, in the order given.
    fn applied(list: &Uidlist, bases: &[&str]) -> Vec<String> {
        let mut messages: Vec<MessageInfo> = bases
            .iter()
            .map(|b| MessageInfo {
                octets: 1,
                uid: (*b).into(),
            })
            .collect();
        let base_bytes: Vec<&[u8]> = bases.iter().map(|b| b.as_bytes()).collect();
        apply(list, &mut messages, &base_bytes);
        messages.into_iter().map(|m| m.uid.into()).collect()
    }

    #[test]
    fn apply_keeps_ids_unique() {
        let text = "3 V1 N99\n\
                    1 Pdup :a\n\
                    2 Pdup :b\n\
                    3 Pe :c\n\
                    4 Pd2 :d\n\
                    5 Pd :d2\n\
                    6 Pown :own\n\
                    7 :f\n";
        let list = parse(text.as_bytes(), &UidlFormat::default()).unwrap();
        let mut bases = ["a", "b", "c", "e", "d", "d2", "own", "f", "x"];
        let got = applied(&list, &bases);
        // a, b: a shared id; c: `e` is message e's base name; d and d2 want each other's names.
        assert_eq!(
            got,
            [
                "a",
                "b",
                "c",
                "e",
                "d",
                "d2",
                "own",
                "0000000700000001",
                "x"
            ]
        );
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), got.len());
        // The same maildrop listed in another order gives each message the same id.
        bases.reverse();
        let mut back = applied(&list, &bases);
        back.reverse();
        assert_eq!(back, got);
    }
}
