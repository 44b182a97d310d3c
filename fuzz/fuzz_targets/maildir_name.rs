//! Maildir file names → UIDL and `,W=` size: never panics, and the UIDL is always valid for RFC 1939
//! section 7 (1 to 70 characters in 0x21..=0x7E), whatever the name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::maildrop::maildir::name_info;

fuzz_target!(|name: &[u8]| {
    let (uid, _size) = name_info(name);
    assert!((1..=70).contains(&uid.len()), "{uid:?}");
    assert!(uid.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{uid:?}");
    // Everything after ':' (the flags) must not change the UIDL.
    let mut flagged = name.to_vec();
    if !flagged.contains(&b':') {
        flagged.extend_from_slice(b":2,S");
        assert_eq!(name_info(&flagged).0, uid);
    }
});
