//! `dovecot-uidl-format` strings: parsing never panics; a format that parses prints as given, names a
//! per-message variable, and expands any record's values without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poplar::maildrop::uidl_format::{UidlFormat, Vars};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The format, then the file name and the GUID the record gives, split at NULs.
    let mut parts = text.split('\0');
    let Ok(format) = UidlFormat::parse(parts.next().unwrap_or_default()) else {
        return;
    };
    assert_eq!(format.to_string(), text.split('\0').next().unwrap_or_default());
    let filename = parts.next().unwrap_or("1700000001.M1P1.host");
    let guid = parts.next().unwrap_or("");
    let vars = Vars {
        uid: u32::try_from(data.len()).unwrap_or(u32::MAX).wrapping_mul(2_654_435_761),
        validity: 1_700_000_000,
        filename: filename.as_bytes(),
        guid: guid.as_bytes(),
    };
    let id = format.expand(&vars);
    // Zero padding is at most 70 a field; a cut never makes a value longer.
    assert!(id.len() <= text.len() * (70 + filename.len() + guid.len() + 20));
});
