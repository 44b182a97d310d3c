//! `dovecot-uidlist` text → UIDLs, in a `dovecot-uidl-format` the first byte picks: never panics; every
//! UIDL is valid for RFC 1939 section 7 (1 to 70 characters in 0x21..=0x7E); the final line end does not
//! matter; and the UIDLs given to a maildrop of the listed messages plus one more per listed UIDL (a file
//! named as that UIDL) are unique.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use poplar::maildrop::MessageInfo;
use poplar::maildrop::maildir::{name_info, unique_ids};
use poplar::maildrop::maildir_uidl::{apply, parse};
use poplar::maildrop::uidl_format::UidlFormat;

/// The default, Courier's, the GUID, and offsets, widths and modifiers on the file name.
const FORMATS: &[&str] = &["%08Xu%08Xv", "%v.%u", "%g", "%f-%3.-2Lg", "%05.3Xf%u", "%-4.2Uf%u"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let format = UidlFormat::parse(FORMATS[usize::from(pick) % FORMATS.len()]).expect("parses");
    let Ok(list) = parse(text, &format) else {
        return;
    };
    let valid =
        |id: &str| (1..=70).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b));
    let mut bases: Vec<Vec<u8>> = Vec::new();
    for (base, id) in list.iter() {
        assert!(valid(id), "{id:?}");
        assert!(!base.contains(&b':') && !base.contains(&b'/'), "{base:?}");
        bases.push(base.to_vec());
        // A file named as the UIDL, where it can be a base name (a `:` would end it).
        if !id.contains(':') {
            bases.push(id.as_bytes().to_vec());
        }
    }
    if !text.ends_with(b"\n") {
        let mut ended = text.to_vec();
        ended.push(b'\n');
        let again = parse(&ended, &format).expect("same header");
        let mut a: Vec<_> = list.iter().collect();
        let mut b: Vec<_> = again.iter().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
    // Base names are unique in a maildrop.
    bases.sort();
    bases.dedup();
    let mut messages: Vec<MessageInfo> = bases
        .iter()
        .map(|b| MessageInfo {
            octets: 0,
            uid: name_info(b).0,
        })
        .collect();
    let refs: Vec<&[u8]> = bases.iter().map(|b| b.as_slice()).collect();
    // As a listing does: base-name ids made unique, then Dovecot's given where they stay so.
    unique_ids(&mut messages, refs.iter().copied());
    apply(&list, &mut messages, &refs);
    let ids: HashSet<&str> = messages.iter().map(|m| &*m.uid).collect();
    assert_eq!(ids.len(), messages.len());
    assert!(ids.iter().all(|id| valid(id)));
});
