//! Mail-location templates: `maildir:%h/Maildir`, `mbox:/var/mail/%u`, `maildir:/var/vmail/%d/%n`. Pure:
//! no file-system access.
//! Owns parsing a template and expanding it for one user; opening what it names is the backends' job.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The storage format named by the template's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Maildir,
    Mbox,
}

/// A parsed `FORMAT:PATH` template; `%u` user name, `%n` and `%d` its parts before and after the first
/// `@` (as Dovecot splits `user@domain`), `%h` home, `%%` a percent sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub format: Format,
    template: String,
}

impl Location {
    /// The template as configured (for `--check-config` output).
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The maildrop path of one user. Rejects user names that could escape the template (`/`, `..`,
    /// control characters, over [`MAX_USER_NAME`] octets) before any file-system access, `%h` when
    /// the account has no home, and `%n` or `%d` when that part of the name is empty or hidden: the
    /// path would then name the directory above, or another domain's.
    pub fn expand(&self, user: &str, home: Option<&Path>) -> Result<PathBuf, String> {
        check_user(user)?;
        let mut out = Vec::with_capacity(self.template.len() + user.len() + 32);
        let mut rest = self.template.as_bytes();
        // `from_str` accepted only `%u`, `%n`, `%d`, `%h` and `%%`, so every `%` here is followed by one.
        while let Some(i) = memchr::memchr(b'%', rest) {
            out.extend_from_slice(&rest[..i]);
            match rest.get(i + 1) {
                Some(b'u') => out.extend_from_slice(user.as_bytes()),
                Some(b'n') => out.extend_from_slice(local_part(user)?.as_bytes()),
                Some(b'd') => out.extend_from_slice(domain(user)?.as_bytes()),
                Some(b'h') => out.extend_from_slice(checked_home(home)?.as_os_str().as_bytes()),
                _ => out.push(b'%'),
            }
            rest = rest.get(i + 2..).unwrap_or_default();
        }
        out.extend_from_slice(rest);
        let path = PathBuf::from(OsString::from_vec(out));
        check_name_lengths(&path, self.format)?;
        Ok(path)
    }
}

/// Linux's NAME_MAX: the longest name of one directory entry.
const NAME_MAX: usize = 255;

/// Room kept after an mbox's own name for the files poplar keeps beside it: the longest,
/// `.poplar-recovery-compacted`, takes 26 octets, a dotlock's temporary link name (`.lock.PID.N`)
/// about as many.
const MBOX_SIDE_FILE_ROOM: usize = 32;

/// Every name in the path must fit NAME_MAX, an mbox's with room for its side files: a long user
/// name would otherwise fail at the first file made (as a temporary error, and with no warning from
/// `--check-config`).
fn check_name_lengths(path: &Path, format: Format) -> Result<(), String> {
    let mut names = path.iter().map(|name| name.len());
    let last = names.next_back().unwrap_or(0);
    // Every name but an mbox's own is a directory's.
    let (last_is_mbox, mbox_max) = (format == Format::Mbox, NAME_MAX - MBOX_SIDE_FILE_ROOM);
    if names.any(|len| len > NAME_MAX) || (!last_is_mbox && last > NAME_MAX) {
        return Err(format!("a directory name longer than {NAME_MAX} octets"));
    }
    if last_is_mbox && last > mbox_max {
        return Err(format!(
            "an mbox file name longer than {mbox_max} octets (room is kept for its lock and \
             recovery files)"
        ));
    }
    Ok(())
}

/// Longest user name accepted in a path: the longest mail address (RFC 5321's 256-octet path less its
/// angle brackets; RFC 3696 errata), for virtual users named `user@domain`, and within one path
/// component (NAME_MAX, 255) when `%u` is one.
pub const MAX_USER_NAME: usize = 254;

impl FromStr for Location {
    type Err = String;
    fn from_str(s: &str) -> Result<Location, String> {
        let (prefix, template) = s.split_once(':').unwrap_or((s, ""));
        let format = if prefix.eq_ignore_ascii_case("maildir") {
            Format::Maildir
        } else if prefix.eq_ignore_ascii_case("mbox") {
            Format::Mbox
        } else {
            return Err(format!(
                "unknown mailbox format \"{prefix}\" (expected maildir: or mbox:)"
            ));
        };
        if template.is_empty() {
            return Err("empty path".to_string());
        }
        check_escapes(template)?;
        // A relative path would depend on the server's working directory, which nobody configures.
        if !template.starts_with('/') && !template.starts_with("%h") {
            return Err("path must be absolute or start with %h".to_string());
        }
        Ok(Location {
            format,
            template: template.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.format {
            Format::Maildir => "maildir",
            Format::Mbox => "mbox",
        };
        write!(f, "{prefix}:{}", self.template)
    }
}

/// Every `%` must start `%u`, `%n`, `%d`, `%h` or `%%`: an unknown escape is a typo better caught at
/// start-up.
fn check_escapes(template: &str) -> Result<(), String> {
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        match chars.next() {
            Some('u' | 'n' | 'd' | 'h' | '%') => {}
            Some(other) => return Err(format!("unknown escape %{other} (use {ESCAPES})")),
            None => return Err(format!("unknown escape % at the end (use {ESCAPES})")),
        }
    }
    Ok(())
}

/// A user name must name one path component, never a parent, a hidden file or something a terminal or
/// a log would misread. Checked even when the template has no `%u`: such a name is refused everywhere.
pub fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".to_string());
    }
    if user.len() > MAX_USER_NAME {
        return Err(format!("user name longer than {MAX_USER_NAME} octets"));
    }
    if user.contains('/') {
        return Err("user name contains '/'".to_string());
    }
    if user.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("user name contains a control character".to_string());
    }
    // Covers "." and "..", and hidden names such as ".lock" that could collide with the maildrop's own files.
    if user.starts_with('.') {
        return Err("user name starts with '.'".to_string());
    }
    Ok(())
}

const ESCAPES: &str = "%u, %n, %d, %h or %%";

/// `%n`: the user name before its first `@`, or all of it. Never empty (`@example.org` is refused);
/// `check_user` already refused a name that begins with a dot.
fn local_part(user: &str) -> Result<&str, String> {
    match user.split_once('@') {
        Some(("", _)) => Err("user name has nothing before '@' (needed for %n)".to_string()),
        Some((local, _)) => Ok(local),
        None => Ok(user),
    }
}

/// `%d`: the user name after its first `@`. Required, non-empty and not hidden, so that `/%d/%n`
/// cannot name a path outside the domain's directory (`bob@..`) or one domain's directory as another
/// user's maildrop (`example.org` with no `@`).
fn domain(user: &str) -> Result<&str, String> {
    match user.split_once('@') {
        None | Some((_, "")) => {
            Err("user name has no domain after '@' (needed for %d)".to_string())
        }
        Some((_, domain)) if domain.starts_with('.') => {
            Err("domain of the user name starts with '.'".to_string())
        }
        Some((_, domain)) => Ok(domain),
    }
}

/// The home for `%h`: it must exist and be absolute, or the path would be relative to the working directory.
fn checked_home(home: Option<&Path>) -> Result<&Path, String> {
    match home {
        None => Err("the account has no home directory (needed for %h)".to_string()),
        Some(h) if !h.is_absolute() => Err(format!(
            "home directory \"{}\" is not absolute",
            h.display()
        )),
        Some(h) => Ok(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_templates() {
        let cases = [
            ("maildir:%h/Maildir", Format::Maildir, "%h/Maildir"),
            ("MAILDIR:/srv/mail/%u", Format::Maildir, "/srv/mail/%u"),
            ("mbox:/var/mail/%u", Format::Mbox, "/var/mail/%u"),
            (
                "Mbox:/var/mail/100%%/%u",
                Format::Mbox,
                "/var/mail/100%%/%u",
            ),
            ("maildir:/a:b", Format::Maildir, "/a:b"),
        ];
        for (input, format, template) in cases {
            let loc: Location = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(loc.format, format, "{input}");
            assert_eq!(loc.template(), template, "{input}");
        }
    }

    #[test]
    fn rejects_bad_templates() {
        let cases = [
            (
                "x:/a",
                "unknown mailbox format \"x\" (expected maildir: or mbox:)",
            ),
            (
                "/var/mail/%u",
                "unknown mailbox format \"/var/mail/%u\" (expected maildir: or mbox:)",
            ),
            (
                ":/a",
                "unknown mailbox format \"\" (expected maildir: or mbox:)",
            ),
            ("maildir:", "empty path"),
            ("mbox", "empty path"),
            (
                "mbox:/var/mail/%x",
                "unknown escape %x (use %u, %n, %d, %h or %%)",
            ),
            (
                "mbox:/var/mail/%",
                "unknown escape % at the end (use %u, %n, %d, %h or %%)",
            ),
            ("maildir:Maildir", "path must be absolute or start with %h"),
            (
                "maildir:%u/Maildir",
                "path must be absolute or start with %h",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Location>(), Err(want.to_string()), "{input}");
        }
    }

    #[test]
    fn display_round_trips() {
        for input in ["maildir:%h/Maildir", "mbox:/var/mail/%u", "mbox:/x/%%"] {
            let loc: Location = input.parse().unwrap();
            assert_eq!(loc.to_string(), input);
            assert_eq!(loc.to_string().parse::<Location>(), Ok(loc));
        }
    }

    #[test]
    fn expands() {
        let home = Some(Path::new("/home/bob"));
        let cases = [
            ("maildir:%h/Maildir", "bob", home, "/home/bob/Maildir"),
            ("mbox:/var/mail/%u", "bob", None, "/var/mail/bob"),
            ("mbox:/var/mail/%u%%", "bob", None, "/var/mail/bob%"),
            (
                "maildir:%h/%u/%u",
                "b.o-b@x",
                home,
                "/home/bob/b.o-b@x/b.o-b@x",
            ),
            ("maildir:/m/%%u", "bob", None, "/m/%u"),
            ("maildir:/m/plain", "bob", None, "/m/plain"),
            (
                "maildir:/v/%d/%n",
                "bob@example.org",
                None,
                "/v/example.org/bob",
            ),
            ("maildir:/v/%d/%n/%u", "b@x@y", None, "/v/x@y/b/b@x@y"),
            ("mbox:/var/mail/%n", "bob", None, "/var/mail/bob"),
            ("mbox:/var/mail/%n", "bob@x", None, "/var/mail/bob"),
        ];
        for (template, user, home, want) in cases {
            let loc: Location = template.parse().unwrap();
            assert_eq!(
                loc.expand(user, home),
                Ok(PathBuf::from(want)),
                "{template} {user}"
            );
        }
    }

    #[test]
    fn refuses_unsafe_users_and_homes() {
        let long = "a".repeat(MAX_USER_NAME + 1);
        let cases: [(&str, Option<&Path>, &str); 11] = [
            ("", None, "empty user name"),
            (&long, None, "user name longer than 254 octets"),
            ("a/b", None, "user name contains '/'"),
            ("a\0b", None, "user name contains a control character"),
            ("a\nb", None, "user name contains a control character"),
            ("a\x7fb", None, "user name contains a control character"),
            (".", None, "user name starts with '.'"),
            ("..", None, "user name starts with '.'"),
            (".bob", None, "user name starts with '.'"),
            (
                "bob",
                None,
                "the account has no home directory (needed for %h)",
            ),
            (
                "bob",
                Some(Path::new("home/bob")),
                "home directory \"home/bob\" is not absolute",
            ),
        ];
        let loc: Location = "maildir:%h/%u".parse().unwrap();
        for (user, home, want) in cases {
            assert_eq!(
                loc.expand(user, home),
                Err(want.to_string()),
                "{user:?} {home:?}"
            );
        }
    }

    #[test]
    fn refuses_users_whose_parts_would_leave_the_domain_directory() {
        let cases = [
            (
                "maildir:/v/%d/%n",
                "example.org",
                "user name has no domain after '@' (needed for %d)",
            ),
            (
                "maildir:/v/%d/%n",
                "bob@",
                "user name has no domain after '@' (needed for %d)",
            ),
            (
                "maildir:/v/%d/%n",
                "bob@..",
                "domain of the user name starts with '.'",
            ),
            (
                "maildir:/v/%d/%n",
                "bob@.x",
                "domain of the user name starts with '.'",
            ),
            (
                "maildir:/v/%d/%n",
                "@example.org",
                "user name has nothing before '@' (needed for %n)",
            ),
            (
                "maildir:/v/%n",
                "@example.org",
                "user name has nothing before '@' (needed for %n)",
            ),
            ("maildir:/v/%d", "bob@a/b", "user name contains '/'"),
        ];
        for (template, user, want) in cases {
            let loc: Location = template.parse().unwrap();
            assert_eq!(
                loc.expand(user, None),
                Err(want.to_string()),
                "{template} {user}"
            );
        }
    }

    /// Each name in the expanded path fits NAME_MAX, an mbox's with room for the files beside it (a
    /// review: names of 230 to 254 octets passed and failed at the recovery file's name).
    #[test]
    fn expanded_names_fit_name_max() {
        let mbox: Location = "mbox:/var/mail/%u".parse().unwrap();
        let maildir: Location = "maildir:/vmail/%u/Maildir".parse().unwrap();
        let fits = "a".repeat(223);
        let too_long = "a".repeat(224);
        assert!(mbox.expand(&fits, None).is_ok());
        assert_eq!(
            mbox.expand(&too_long, None),
            Err(
                "an mbox file name longer than 223 octets (room is kept for its lock and recovery \
                 files)"
                    .to_string()
            )
        );
        assert!(maildir.expand(&"a".repeat(MAX_USER_NAME), None).is_ok());
        let dotted: Location = "maildir:/vmail/%u.dd".parse().unwrap();
        let name = "a".repeat(254);
        assert_eq!(
            dotted.expand(&name, None),
            Err("a directory name longer than 255 octets".to_string())
        );
        let home = format!("/home/{}", "h".repeat(256));
        let in_home: Location = "maildir:%h/Maildir".parse().unwrap();
        assert_eq!(
            in_home.expand("bob", Some(Path::new(&home))),
            Err("a directory name longer than 255 octets".to_string())
        );
    }

    #[test]
    fn longest_user_name_is_accepted() {
        let user = "a".repeat(MAX_USER_NAME);
        let loc: Location = "maildir:/var/vmail/%u".parse().unwrap();
        assert_eq!(
            loc.expand(&user, None),
            Ok(PathBuf::from(format!("/var/vmail/{user}")))
        );
        // A virtual user's address longer than an RFC 5321 local part (a black-box trial's case:
        // 80 octets were refused at 64).
        let address = format!("john.smith@mail.{}.example.co.uk", "a".repeat(50));
        let loc: Location = "maildir:/vmail/%d/%n".parse().unwrap();
        assert_eq!(
            loc.expand(&address, None),
            Ok(PathBuf::from(format!(
                "/vmail/mail.{}.example.co.uk/john.smith",
                "a".repeat(50)
            )))
        );
    }

    #[test]
    fn home_is_not_needed_without_percent_h() {
        let loc: Location = "mbox:/var/mail/%u".parse().unwrap();
        assert_eq!(
            loc.expand("bob", Some(Path::new("relative"))),
            Ok(PathBuf::from("/var/mail/bob"))
        );
    }
}
