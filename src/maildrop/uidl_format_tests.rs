//! Tests for Dovecot's pop3_uidl_format: parsing, refusals, and expansions checked against Dovecot's
//! own output.

use super::*;

const NAME: &str = "1700000001.M1P1.host,S=8";
const GUID: &str = "0123456789abcdef0123456789abcdef";

fn expand(format: &str, guid: &str) -> String {
    let vars = Vars {
        uid: 26,
        validity: 1_700_000_000,
        filename: NAME.as_bytes(),
        guid: guid.as_bytes(),
    };
    let format = UidlFormat::parse(format).unwrap_or_else(|e| panic!("{format}: {e}"));
    String::from_utf8(format.expand(&vars)).unwrap()
}

/// Each expected id is what Debian's dovecot 2.3.19.1 (`/usr/lib/dovecot/pop3`) answered to UIDL
/// for a record `26 G0123...cdef :1700000001.M1P1.host,S=8` under `V1700000000`, one run per
/// format, and agrees with `var_expand_with_funcs` and `m_str_hex` in `src/lib/var-expand.c` and
/// `pop3_get_uid` in `src/pop3/pop3-commands.c`.
#[test]
fn expands_as_dovecot_does() {
    let table = [
        // The default: X prints lower-case hex (`%llx`), zero-padded to 8.
        ("%08Xu%08Xv", "0000001a6553f100"),
        // Courier's and Cyrus's style; literal text between the variables.
        ("%v.%u", "1700000000.26"),
        ("%v-%u", "1700000000-26"),
        // The file name up to the first `:`; the GUID from the record's G field.
        ("%f", NAME),
        ("%g", GUID),
        // Modifiers apply in order: X then U gives upper case, U then X lower.
        ("%08XUu%08XUv", "0000001A6553F100"),
        ("%UXu", "1a"),
        // X of a value that is not a decimal number is 0.
        ("%Xf", "0"),
        (
            "%Lg%Uf",
            "0123456789abcdef0123456789abcdef1700000001.M1P1.HOST,S=8",
        ),
        // Without a zero, a width cuts; a sign without `.` is dropped.
        ("%8u|%3f|%-5u", "26|170|26"),
        // offset.width: from the start, from the end (negative), and a negative width.
        ("%3.2f", "00"),
        ("%-2.1g", "e"),
        ("%05.3f", "000"),
        ("%.-3f", "1700000001.M1P1.host,"),
        ("%0.-3f", "1700000001.M1P1.host,"),
        // `%%` is a `%`; a lone `%` at the end is dropped; ten modifiers at most.
        ("%%u%u", "%u26"),
        ("%u%", "26"),
        ("%10LLLLLLLLLLu", "26"),
    ];
    for (format, want) in table {
        assert_eq!(expand(format, GUID), want, "{format}");
    }
}

/// Dovecot's settings check and `parse_uidl_keymask` (`src/pop3/pop3-client.c`) find variables
/// their own way: past each `%` they skip one character only, so a field that ends in `%` after a
/// width or modifier (`%-%`, `%5%`, `%X%`) has its closing `%` read as the start of another. A
/// `%u`, `%f` or `%g` that scan misses is empty in Dovecot's ids; a letter it takes for a variable
/// makes Dovecot refuse the format. Expected ids are Debian's dovecot 2.3.19.1 answers.
#[test]
fn variables_as_dovecots_scan_finds_them() {
    for (format, want) in [
        ("%-%%v.%u", "%1700000000.26".to_string()),
        ("%-%%f.%u", "%.26".to_string()),
        ("%-%%g.%u", "%.26".to_string()),
        ("%5%%u.%g", format!("%.{GUID}")),
        // A variable the scan finds anywhere is set everywhere.
        ("%X%%u.%u", "026.26".to_string()),
        ("%u.%0%", "26.%".to_string()),
    ] {
        assert_eq!(expand(format, GUID), want, "{format}");
    }
    for (format, want) in [
        ("%-%%u.%v", FormatError::NoMessageVariable),
        ("%.%%f", FormatError::NoMessageVariable),
        ("uu06%7%a%u", FormatError::Unknown('a')),
        ("L%7fU-%0%7", FormatError::Unfinished),
        ("%5%m%u", FormatError::Md5),
        ("%5%{uid}%u", FormatError::LongName),
    ] {
        assert_eq!(UidlFormat::parse(format), Err(want), "{format:?}");
    }
}

/// `maildir_mail_get_special`: without a G field the GUID is the base file name.
#[test]
fn guid_falls_back_to_the_base_name() {
    assert_eq!(expand("%g", ""), NAME);
    assert_eq!(expand("%g.%u", ""), format!("{NAME}.26"));
}

/// `src/lib/test-var-expand.c`'s `test_var_expand_ranges`, on a file name of `value1234`.
#[test]
fn dovecots_own_range_examples() {
    let vars = Vars {
        uid: 1,
        validity: 1,
        filename: b"value1234",
        guid: b"",
    };
    for (format, want) in [
        ("%f", "value1234"),
        ("%3f", "val"),
        ("%3.2f", "ue"),
        ("%3.-2f", "ue12"),
        ("%-3.2f", "23"),
        ("%0.-1f", "value123"),
        ("%-4.-1f", "123"),
    ] {
        let got = UidlFormat::parse(format).unwrap().expand(&vars);
        assert_eq!(String::from_utf8(got).unwrap(), want, "{format}");
    }
}

#[test]
fn refuses_what_dovecot_or_poplar_cannot_use() {
    let table = [
        ("%m", FormatError::Md5),
        ("%08Xm%u", FormatError::Md5),
        ("%{uid}", FormatError::LongName),
        ("%u%{filename}", FormatError::LongName),
        ("%u%x", FormatError::Unknown('x')),
        ("%u%é", FormatError::Unknown('é')),
        ("%u%08", FormatError::Unfinished),
        ("%u%X", FormatError::Unfinished),
        ("%Hu", FormatError::Modifier('H')),
        ("%Mu", FormatError::Modifier('M')),
        ("%11LLLLLLLLLLLu", FormatError::Unknown('L')),
        ("%080u", FormatError::Padding(80)),
        // Past Dovecot's `int`: 2.3.19.1 cuts %4294967297f to one character.
        ("%4294967297f", FormatError::Number),
        ("%u%.2147483648f", FormatError::Number),
        ("%-99999999999999999999.3f%u", FormatError::Number),
        ("%v", FormatError::NoMessageVariable),
        ("abc", FormatError::NoMessageVariable),
        ("%%", FormatError::NoMessageVariable),
        ("", FormatError::NoMessageVariable),
        ("\"%v.%u\"", FormatError::Quoted),
        ("'%08Xu%08Xv'", FormatError::Quoted),
        ("%u %v", FormatError::NotPrintable),
        ("%u\t", FormatError::NotPrintable),
    ];
    for (format, want) in table {
        assert_eq!(UidlFormat::parse(format), Err(want), "{format:?}");
    }
    // UTF-8 in the literal text: said as what it is, not as a space or a control character.
    assert_eq!(
        UidlFormat::parse("%u·%v").unwrap_err().to_string(),
        "a space, control or non-ASCII character: unique-ids are printable ASCII (RFC 1939)"
    );
    assert_eq!(
        FormatError::Md5.to_string(),
        "%m (the header's MD5) would mean reading every message at every login; not supported"
    );
}

#[test]
fn the_default() {
    let format = UidlFormat::default();
    assert!(format.is_default());
    assert_eq!(format.to_string(), DEFAULT);
    assert!(!UidlFormat::parse("%v.%u").unwrap().is_default());
}
