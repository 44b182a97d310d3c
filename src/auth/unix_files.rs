//! The formats of `/etc/passwd`, `/etc/shadow` and `/etc/group` (passwd(5), shadow(5), group(5)), read
//! directly rather than through getpwnam(3): the static musl binary has no NSS, and PAM is not wanted.
//! Pure: text in, records out. Reading the files and deciding who may log in is `system`'s job; the
//! supplementary groups are `privs`'s. The text is bytes, not UTF-8: these files are older than UTF-8,
//! and a Latin-1 gecos or group name must cost at most its own line, never the whole file.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One `/etc/passwd` line: `name:password:uid:gid:gecos:home:shell`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    /// `x` when the real one is in `/etc/shadow`.
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// One `/etc/shadow` line: `name:password:lastchg:min:max:warn:inactive:expire:reserved`, the dates in
/// days since 1970-01-01. An empty numeric field is `None` ("the feature is disabled", shadow(5)).
#[derive(Clone, PartialEq, Eq)]
pub struct ShadowEntry {
    pub name: String,
    pub password: String,
    pub last_change: Option<i64>,
    pub max_days: Option<i64>,
    pub inactive_days: Option<i64>,
    pub expire: Option<i64>,
}

impl std::fmt::Debug for ShadowEntry {
    // The hash stays out of every log line and assertion message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShadowEntry({}, ..)", self.name)
    }
}

/// Lines that could not be parsed, by 1-based number: system files may hold NIS `+` entries or a
/// hand-edited typo, which must not lock every other user out.
pub type BadLines = Vec<usize>;

/// Parses `/etc/passwd` text; malformed lines are skipped and reported. The gecos and shell fields are
/// not used, so any bytes may be in them; the name and password must be UTF-8.
pub fn parse_passwd(text: &[u8]) -> (Vec<PasswdEntry>, BadLines) {
    parse_lines(text, |f| {
        if f.len() < 7 || f[0].is_empty() {
            return None;
        }
        Some(PasswdEntry {
            name: utf8(f[0])?,
            password: utf8(f[1])?,
            uid: id(f[2])?,
            gid: id(f[3])?,
            home: PathBuf::from(OsStr::from_bytes(f[5])),
        })
    })
}

/// Parses `/etc/shadow` text; malformed lines are skipped and reported.
pub fn parse_shadow(text: &[u8]) -> (Vec<ShadowEntry>, BadLines) {
    parse_lines(text, |f| {
        if f.len() < 8 || f[0].is_empty() {
            return None;
        }
        Some(ShadowEntry {
            name: utf8(f[0])?,
            password: utf8(f[1])?,
            last_change: days(f[2])?,
            max_days: days(f[4])?,
            inactive_days: days(f[6])?,
            expire: days(f[7])?,
        })
    })
}

/// The gid of the group `name` in `/etc/group` text: the first line that names it, as getgrnam(3) finds.
pub fn gid_of(group_text: &[u8], name: &str) -> Option<u32> {
    lines(group_text).find_map(|line| {
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        (f.len() >= 4 && f[0] == name.as_bytes())
            .then(|| id(f[2]))
            .flatten()
    })
}

/// The supplementary groups of `user` as initgroups(3) sets them: the primary group first, then every
/// group of `/etc/group` text that lists `user` as a member, each once.
pub fn groups_of(group_text: &[u8], user: &str, primary: u32) -> Vec<u32> {
    let mut groups = vec![primary];
    for line in lines(group_text) {
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        if f.len() < 4 || matches!(line.first(), Some(b'#' | b'+' | b'-')) {
            continue;
        }
        let Some(gid) = id(f[2]) else { continue };
        let mut members = f[3].split(|&b| b == b',');
        if members.any(|member| member == user.as_bytes()) && !groups.contains(&gid) {
            groups.push(gid);
        }
    }
    groups
}

/// Why a shadow entry does not allow a login now, if it does not; `today` is days since 1970-01-01.
///
/// The rules are shadow-utils' `isexpired()`: the account expiry date; a password older than its
/// maximum age plus the inactivity period; a password past its maximum age (a login program would
/// force a change, which POP3 cannot); and `lastchg` 0, "the user should change the password at next login".
pub fn expired(entry: &ShadowEntry, today: i64) -> Option<&'static str> {
    if entry.expire.is_some_and(|e| e > 0 && today >= e) {
        return Some("account expired");
    }
    let (Some(last), Some(max)) = (entry.last_change, entry.max_days) else {
        return (entry.last_change == Some(0)).then_some("password must be changed");
    };
    if last == 0 {
        return Some("password must be changed");
    }
    if let Some(inactive) = entry.inactive_days.filter(|i| *i >= 0) {
        if max >= 0 && today >= last.saturating_add(max).saturating_add(inactive) {
            return Some("account inactive since its password expired");
        }
    }
    // shadow-utils treats a maximum age of 10000 days or more as "never" (99999 is the usual value).
    if (0..10_000).contains(&max) && today >= last.saturating_add(max) {
        return Some("password expired");
    }
    None
}

/// Whether a shadow(5) or passwd(5) password field can never match: `!` or `*` anywhere at the start
/// (`!`, `!!`, `*`, `*LK*`, `!$6$...` for `passwd -l`), or empty ("no password": refused, since POP3
/// would then hand the mail to anyone who knows the user name).
pub fn locked(password: &str) -> bool {
    password.is_empty() || password.starts_with(['!', '*'])
}

fn parse_lines<T>(text: &[u8], parse: impl Fn(&[&[u8]]) -> Option<T>) -> (Vec<T>, BadLines) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (index, line) in lines(text).enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"#") {
            continue;
        }
        let fields: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        match parse(&fields) {
            Some(entry) => entries.push(entry),
            None => bad.push(index + 1),
        }
    }
    (entries, bad)
}

/// The lines of `text`, split at LF, a CR before it removed. The empty line after a final LF is skipped
/// as blank by every caller.
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// A field poplar uses as text; `None` (a malformed line) when it is not UTF-8.
fn utf8(field: &[u8]) -> Option<String> {
    std::str::from_utf8(field).ok().map(str::to_string)
}

/// A uid or gid: decimal digits only.
fn id(field: &[u8]) -> Option<u32> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// An optional day count; `Some(None)` when empty, `None` when malformed. shadow(5) allows -1 for "unset".
fn days(field: &[u8]) -> Option<Option<i64>> {
    if field.is_empty() {
        return Some(None);
    }
    let digits = field.strip_prefix(b"-").unwrap_or(field);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field)
        .ok()?
        .parse()
        .ok()
        .map(|d: i64| if d < 0 { None } else { Some(d) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        let text = "root:x:0:0:root:/root:/bin/bash\n# comment\n\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/sh\n\
                    +@nis::::::\nbad:x:1x:2:g:/h:/s\nshort:x:1:2\n:x:1:2:g:/h:/s\nbob:$6$s$h:1001:100::/home/bob:";
        let (entries, bad) = parse_passwd(text.as_bytes());
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "alice", "bob"]);
        assert_eq!(bad, [5, 6, 7, 8]);
        assert_eq!(
            entries[1],
            PasswdEntry {
                name: "alice".into(),
                password: "x".into(),
                uid: 1000,
                gid: 1000,
                home: PathBuf::from("/home/alice")
            }
        );
        assert_eq!(entries[2].password, "$6$s$h");
    }

    #[test]
    fn shadow_lines() {
        let text = "root:*:19000:0:99999:7:::\nalice:$y$j9T$s$h:19500:0:90:7:14:20000:\nbad:x:abc:0:1:1:::\nshort:x:1\n\
                    neg:!:-1::-1::-1:-1:";
        let (entries, bad) = parse_shadow(text.as_bytes());
        assert_eq!(bad, [3, 4]);
        assert_eq!(entries.len(), 3);
        let alice = &entries[1];
        assert_eq!(
            (
                alice.last_change,
                alice.max_days,
                alice.inactive_days,
                alice.expire
            ),
            (Some(19500), Some(90), Some(14), Some(20000))
        );
        assert_eq!(entries[2].last_change, None);
        assert_eq!(format!("{alice:?}"), "ShadowEntry(alice, ..)");
    }

    #[test]
    fn expiry_rules() {
        let entry = |last, max, inactive, expire| ShadowEntry {
            name: "u".into(),
            password: String::new(),
            last_change: last,
            max_days: max,
            inactive_days: inactive,
            expire,
        };
        let today = 20_000;
        let cases = [
            (entry(Some(19_000), Some(99_999), None, None), None),
            (entry(None, None, None, None), None),
            (entry(Some(19_000), None, None, None), None),
            (
                entry(Some(0), None, None, None),
                Some("password must be changed"),
            ),
            (
                entry(Some(0), Some(90), None, None),
                Some("password must be changed"),
            ),
            (
                entry(Some(19_000), Some(99_999), None, Some(20_000)),
                Some("account expired"),
            ),
            (entry(Some(19_000), Some(99_999), None, Some(20_001)), None),
            (entry(Some(19_000), Some(99_999), None, Some(0)), None),
            (
                entry(Some(19_950), Some(50), None, None),
                Some("password expired"),
            ),
            (entry(Some(19_951), Some(50), None, None), None),
            (
                entry(Some(19_900), Some(50), Some(50), None),
                Some("account inactive since its password expired"),
            ),
            (
                entry(Some(19_900), Some(50), Some(51), None),
                Some("password expired"),
            ),
            (entry(Some(19_000), Some(10_000), None, None), None),
        ];
        for (i, (e, want)) in cases.iter().enumerate() {
            assert_eq!(expired(e, today), *want, "case {i}");
        }
    }

    #[test]
    fn groups_like_initgroups() {
        let text = "root:x:0:\nmail:x:8:alice,bob\nusers:x:100:\nstaff:x:50:bob,alice\n+nis:::\nbad:x:z:alice\n\
                    alicex:x:60:alicex\nsudo:x:27:alice";
        let text = text.as_bytes();
        assert_eq!(groups_of(text, "alice", 1000), [1000, 8, 50, 27]);
        assert_eq!(groups_of(text, "bob", 8), [8, 50]);
        assert_eq!(groups_of(text, "carol", 100), [100]);
        assert_eq!(gid_of(text, "mail"), Some(8));
        assert_eq!(gid_of(text, "sudo"), Some(27));
        assert_eq!(gid_of(text, "bad"), None);
        assert_eq!(gid_of(text, "nobody"), None);
        assert_eq!(
            gid_of(b"mail:x:8:\nmail:x:12:\n", "mail"),
            Some(8),
            "the first wins"
        );
    }

    /// Not UTF-8: a Latin-1 gecos or group name is no reason to skip a line; a name or hash is.
    #[test]
    fn bytes_that_are_not_utf8() {
        let passwd =
            b"ren:x:1000:1000:Ren\xe9:/home/ren:/bin/sh\nj\xf6rg:x:1001:1001::/h:/bin/sh\n\
                       bob:x:1002:1002::/home/b\xf6b:/bin/sh\n";
        let (entries, bad) = parse_passwd(passwd);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!((names, bad), (vec!["ren", "bob"], vec![2]));
        assert_eq!(
            entries[1].home.as_os_str().as_bytes(),
            b"/home/b\xf6b",
            "a home is any bytes"
        );
        let shadow = b"ren:$6$s$h:19000:0:99999:7:::\nj\xf6rg:$6$s$h:19000:0:99999:7:::\nx:$6$\xff:1:0:1:1:::\n";
        let (entries, bad) = parse_shadow(shadow);
        assert_eq!((entries.len(), bad), (1, vec![2, 3]));
        let group = b"\xe9quipe:x:70:ren\nmail:x:8:j\xf6rg,ren\n";
        assert_eq!(groups_of(group, "ren", 1000), [1000, 70, 8]);
    }

    #[test]
    fn locked_fields() {
        for field in ["", "!", "!!", "*", "*LK*", "!$6$s$h"] {
            assert!(locked(field), "{field:?}");
        }
        for field in ["$6$s$h", "$y$j9T$s$h", "x"] {
            assert!(!locked(field), "{field:?}");
        }
    }
}
