//! Dovecot's passwd-file: `user:{SCHEME}secret:uid:gid:gecos:home:shell:extra`, re-read when it changes.
//! This file owns the format, the user table and its reloading; password schemes live in `scheme`.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::hint::black_box;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use super::scheme::Stored;
use super::scram::{self, Keys};
use super::secret::constant_time_eq;
use super::{Account, AuthError, Authenticator, Nets, Policy, ScramLookup, Secret, apop};

/// What an unknown or locked user is checked against, so that they cost what a wrong password costs:
/// a SHA512-CRYPT hash with the default 5000 rounds, as `doveadm pw -s SHA512-CRYPT` and `mkpasswd`
/// make them (`openssl passwd -6 -salt Ab3/xY.z tanstaaf`).
pub(super) const DUMMY_HASH: &str = "$6$Ab3/xY.z$dXR7mqLom2U1mzG59z.yPwH.N0SqTMr61ZLZijJT91xGXcWy5oA.jrTV6.PjRBA/LrVFbk8O8DSFcAQUjIOEO1";

/// The secret an APOP digest is computed with when the user has no plaintext one.
const DUMMY_APOP_SECRET: &[u8] = b"no such secret";

/// A problem in the passwd-file, naming `file:line`.
#[derive(Debug)]
pub struct PasswdError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub problem: String,
}

impl fmt::Display for PasswdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A user name or field quoted from the file may hold control characters: shown escaped, so the
        // message stays one line in the log.
        let problem = crate::config::OneLine(&self.problem);
        match self.line {
            Some(line) => write!(f, "{}:{}: {problem}", self.path.display(), line),
            None => write!(f, "{}: {problem}", self.path.display()),
        }
    }
}

impl std::error::Error for PasswdError {}

/// The passwd-file user database.
pub struct PasswdFile {
    path: PathBuf,
    /// Session threads share one `PasswdFile`; a reload swaps the table under the write lock.
    table: RwLock<Table>,
    dummy: Stored,
}

/// One loaded version of the file.
struct Table {
    users: HashMap<String, Entry>,
    /// The file as last read (or last failed to read), to notice when it changes.
    stamp: Stamp,
    /// Every user who can log in has a `{PLAIN}` or `{SCRAM-SHA-256}` password, and so could use
    /// SCRAM-SHA-256 (and there is one).
    scram_for_every_user: bool,
}

struct Entry {
    account: Account,
    stored: Stored,
    line: usize,
}

/// Identifies a version of the file cheaply: an edit in place changes the size or mtime, an atomic
/// rename changes the inode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    pub(super) fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

impl PasswdFile {
    /// Reads and checks the whole file; any bad line is an error naming its line.
    pub fn open(path: &Path) -> Result<PasswdFile, PasswdError> {
        let (table, text) = load(path)?;
        super::scram::key_salts_with(&text);
        Ok(PasswdFile {
            path: path.to_path_buf(),
            table: RwLock::new(table),
            dummy: Stored::Crypt(DUMMY_HASH.to_string()),
        })
    }

    /// Number of users, for `--check-config` and start-up logs.
    pub fn user_count(&self) -> usize {
        self.read().users.len()
    }

    /// Every account with its line number, in file order, for `--check-config`.
    pub fn accounts(&self) -> Vec<(usize, Account)> {
        let mut accounts: Vec<_> = self
            .read()
            .users
            .values()
            .map(|e| (e.line, e.account.clone()))
            .collect();
        accounts.sort_by_key(|(line, _)| *line);
        accounts
    }

    /// Re-reads the file if it changed since it was loaded. A file that no longer loads is reported
    /// once per change and the previous table kept: a typo while editing must not lock everyone out.
    fn refresh(&self) {
        let stamp = match fs::metadata(&self.path) {
            Ok(meta) => Stamp::of(&meta),
            Err(err) => {
                log::warn!(
                    "{}: {err}; keeping the previous user table",
                    self.path.display()
                );
                return;
            }
        };
        if self.read().stamp == stamp {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.stamp != stamp {
            match load(&self.path) {
                // The SCRAM salt key stays the first load's until the server restarts.
                Ok((new, _)) => {
                    log::info!(
                        "{}: re-read, {} users",
                        self.path.display(),
                        new.users.len()
                    );
                    *table = new;
                }
                // A file that does not parse is not read again until it changes (and logged once);
                // one that could not be read is tried again at the next login.
                Err(err) => {
                    log::warn!("{err}; keeping the previous user table");
                    if err.line.is_some() {
                        table.stamp = stamp;
                    }
                }
            }
        }
    }

    /// The table is replaced whole, never left half-updated, so a poisoned lock still guards a
    /// consistent value.
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a failed check of `stored` must also pay for the dummy hash: a plaintext secret is compared
/// in microseconds while an unknown user costs a SHA-512 crypt, which with `--auth-failure-delay 0`
/// would tell existing names from unknown ones. Hashed secrets pay their own hash.
fn needs_hash_work(stored: &Stored) -> bool {
    stored.plaintext().is_some()
}

impl Authenticator for PasswdFile {
    fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
        self.refresh();
        let table = self.read();
        match lookup(&table, user) {
            Some(entry) if !matches!(entry.stored, Stored::Locked) => {
                if entry.stored.verify(password.expose()) {
                    return Ok(entry.account.clone());
                }
                if needs_hash_work(&entry.stored) {
                    black_box(self.dummy.verify(password.expose()));
                }
            }
            // Unknown and locked users do the work of a wrong password, so timing reveals nothing.
            _ => {
                black_box(self.dummy.verify(password.expose()));
            }
        }
        Err(AuthError::BadCredentials)
    }

    fn apop(&self, user: &[u8], timestamp: &[u8], digest: &[u8]) -> Result<Account, AuthError> {
        self.refresh();
        let table = self.read();
        // APOP needs the plaintext secret; users with hashed or no secrets fail after the same work.
        let found = lookup(&table, user).and_then(|e| e.stored.plaintext().map(|s| (e, s)));
        let expected = apop::digest(timestamp, found.map_or(DUMMY_APOP_SECRET, |(_, s)| s));
        // RFC 1939 does not fix the case of the client's hex; compare a lowercased fixed-size copy.
        let mut given = [0u8; 32];
        let n = digest.len().min(given.len());
        given[..n].copy_from_slice(&digest[..n]);
        given.make_ascii_lowercase();
        let matches = constant_time_eq(&expected, &given) & (digest.len() == given.len());
        match found {
            Some((entry, _)) if matches => Ok(entry.account.clone()),
            _ => Err(AuthError::BadCredentials),
        }
    }

    fn knows(&self, user: &[u8]) -> bool {
        self.refresh();
        lookup(&self.read(), user).is_some()
    }

    fn scram_for_every_user(&self) -> bool {
        self.refresh();
        self.read().scram_for_every_user
    }

    /// A {PLAIN} user's keys are computed now, under the derived salt; a {SCRAM-SHA-256} user's are
    /// stored, and the stand-in keys are computed too so that both cost one PBKDF2. Everyone else
    /// (unknown, locked, crypt hashes) gets the stand-in keys and no account.
    fn scram(&self, user: &[u8]) -> ScramLookup {
        self.refresh();
        let table = self.read();
        let Some(entry) = lookup(&table, user) else {
            return ScramLookup::unusable(user);
        };
        let keys = match &entry.stored {
            Stored::Plain(password) => {
                Keys::from_password(password, &scram::derived_salt(user), scram::ITERATIONS)
            }
            Stored::Scram(keys) => {
                black_box(Keys::stand_in(user));
                keys.clone()
            }
            Stored::Crypt(_) | Stored::Locked => return ScramLookup::unusable(user),
        };
        ScramLookup {
            keys,
            account: Ok(entry.account.clone()),
        }
    }
}

/// Parses passwd-file text into its accounts, in file order; the error carries the 1-based line number.
/// Pure: for `--check-config`-style tools and the fuzz target.
pub fn parse(text: &[u8]) -> Result<Vec<Account>, (usize, String)> {
    let mut entries: Vec<Entry> = parse_table(text)?.into_values().collect();
    entries.sort_by_key(|e| e.line);
    Ok(entries.into_iter().map(|e| e.account).collect())
}

/// User names match byte for byte, case-sensitively, as Dovecot does by default.
fn lookup<'t>(table: &'t Table, user: &[u8]) -> Option<&'t Entry> {
    std::str::from_utf8(user)
        .ok()
        .and_then(|name| table.users.get(name))
}

/// Reads the file and its stamp from the same open descriptor, so the stamp describes what was read.
/// Returns the text too, which keys the SCRAM salts at the first load.
fn load(path: &Path) -> Result<(Table, Vec<u8>), PasswdError> {
    let error = |line, problem| PasswdError {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut file = File::open(path).map_err(|e| error(None, e.to_string()))?;
    let stamp = Stamp::of(&file.metadata().map_err(|e| error(None, e.to_string()))?);
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| error(None, e.to_string()))?;
    let users = parse_table(&text).map_err(|(line, problem)| error(Some(line), problem))?;
    let mut can_log_in = users
        .values()
        .filter(|e| !matches!(e.stored, Stored::Locked))
        .peekable();
    let scram_for_every_user =
        can_log_in.peek().is_some() && can_log_in.all(|e| e.stored.has_scram_keys());
    let table = Table {
        users,
        stamp,
        scram_for_every_user,
    };
    Ok((table, text))
}

/// Parses the whole file; the error carries the 1-based line number. Pure: no I/O.
fn parse_table(text: &[u8]) -> Result<HashMap<String, Entry>, (usize, String)> {
    let mut users: HashMap<String, Entry> = HashMap::new();
    for (index, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line =
            std::str::from_utf8(raw).map_err(|_| (line_no, "not valid UTF-8".to_string()))?;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = parse_line(line, line_no).map_err(|problem| (line_no, problem))?;
        if let Some(first) = users.get(&entry.account.name) {
            let problem = format!(
                "duplicate user {} (first on line {})",
                entry.account.name, first.line
            );
            return Err((line_no, problem));
        }
        users.insert(entry.account.name.clone(), entry);
    }
    Ok(users)
}

/// `user:password:uid:gid:gecos:home:shell:extra_fields`; fields after the password may be missing,
/// and empty uid, gid or home mean none. Gecos and shell are not used by a POP3 server; of the extra
/// fields, see [`parse_extra`].
fn parse_line(line: &str, line_no: usize) -> Result<Entry, String> {
    let mut fields = line.splitn(8, ':');
    let name = fields.next().unwrap_or_default();
    if name.is_empty() {
        return Err("empty user name".to_string());
    }
    let password = fields
        .next()
        .ok_or_else(|| format!("user {name}: missing password field"))?;
    let mut stored = Stored::parse(password).map_err(|e| format!("user {name}: {e}"))?;
    let uid = parse_id(fields.next(), "uid", name)?;
    let gid = parse_id(fields.next(), "gid", name)?;
    let _gecos = fields.next();
    let home = fields.next().filter(|h| !h.is_empty()).map(PathBuf::from);
    let _shell = fields.next();
    let mut account = Account {
        name: name.to_string(),
        uid,
        gid,
        home,
        policy: Policy::default(),
    };
    if let Some(extra) = fields.next() {
        parse_extra(extra, &mut account, &mut stored).map_err(|e| format!("user {name}: {e}"))?;
    }
    Ok(Entry {
        account,
        stored,
        line: line_no,
    })
}

/// Dovecot's extra fields, space-separated `key=value` (or a bare `key`). Applied: `allow_nets`,
/// `nologin` with `reason`, and the userdb fields `userdb_mail`, `userdb_home`, `userdb_uid` and
/// `userdb_gid`, which override the line's own; `fail`, with which Dovecot fails the lookup, locks
/// the line's password. Refused, since ignoring them would let a login in that Dovecot would have kept
/// out or sent elsewhere: `allow_real_nets`, `proxy`, `proxy_maybe`, `host`, `user` or its userdb
/// form `userdb_user` (with which Dovecot goes on as another user, that user's mail included), and
/// `userdb_chroot` (Dovecot's mail paths are then inside it). Anything else (`userdb_quota_rule`,
/// `nodelay`, ...) means nothing to a POP3 server that never writes mail, and is ignored.
fn parse_extra(extra: &str, account: &mut Account, stored: &mut Stored) -> Result<(), String> {
    let mut reason = None;
    let mut nologin = false;
    for field in extra.split_whitespace() {
        let (key, value) = field.split_once('=').unwrap_or((field, ""));
        match key {
            "allow_nets" => account.policy.allow_nets = Some(parse_nets(value)?),
            "nologin" => nologin = true,
            "fail" => *stored = Stored::Locked,
            "reason" => reason = Some(value.to_string()),
            "userdb_mail" => {
                let location = value.parse().map_err(|e| format!("userdb_mail: {e}"))?;
                account.policy.mail = Some(location);
            }
            "userdb_home" => {
                account.home = Some(PathBuf::from(value)).filter(|_| !value.is_empty())
            }
            "userdb_uid" => account.uid = id(value, "userdb_uid")?,
            "userdb_gid" => account.gid = id(value, "userdb_gid")?,
            "allow_real_nets" | "proxy" | "proxy_maybe" | "host" | "user" | "userdb_user"
            | "userdb_chroot" => {
                return Err(format!("extra field {key} is not supported"));
            }
            _ => {}
        }
    }
    if nologin {
        account.policy.nologin = Some(reason.unwrap_or_default());
    }
    Ok(())
}

/// `allow_nets=`: comma-separated addresses or CIDR networks, and `local`.
fn parse_nets(value: &str) -> Result<Nets, String> {
    let mut nets = Nets::default();
    for item in value.split(',') {
        if item == "local" {
            nets.local = true;
        } else {
            let parsed =
                crate::config::parse_cidrs(item).map_err(|e| format!("allow_nets: {e}"))?;
            nets.networks.extend(parsed);
        }
    }
    Ok(nets)
}

fn parse_id(field: Option<&str>, what: &str, name: &str) -> Result<Option<u32>, String> {
    id(field.unwrap_or_default(), what).map_err(|e| format!("user {name}: {e}"))
}

/// A uid or gid field; empty for none.
fn id(field: &str, what: &str) -> Result<Option<u32>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    match field.parse() {
        // `str::parse` also takes a leading '+', which no uid in a passwd file has.
        Ok(n) if !field.starts_with('+') => Ok(Some(n)),
        _ => Err(format!("bad {what} {field:?}: not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_HELLO: &str = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5";
    const RFC_TIMESTAMP: &[u8] = b"<1896.697170952@dbc.mtview.ca.us>";
    const RFC_DIGEST: &[u8] = b"c4c9334bac560ecc979e58001b3e22fb";

    fn fixture(text: &str) -> (tempfile::TempDir, PathBuf, PasswdFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(&path, text).unwrap();
        let db = PasswdFile::open(&path).unwrap();
        (dir, path, db)
    }

    #[test]
    fn a_wrong_plaintext_password_pays_the_hash_an_unknown_user_pays() {
        assert!(needs_hash_work(&Stored::Plain(b"secret".to_vec())));
        assert!(!needs_hash_work(&Stored::Crypt(DUMMY_HASH.to_string())));
    }

    fn login(db: &PasswdFile, user: &str, password: &str) -> Option<Account> {
        db.login(user.as_bytes(), &Secret::new(password.as_bytes()))
            .ok()
    }

    fn account(name: &str, uid: Option<u32>, gid: Option<u32>, home: Option<&str>) -> Account {
        Account {
            name: name.to_string(),
            uid,
            gid,
            home: home.map(PathBuf::from),
            policy: Default::default(),
        }
    }

    #[test]
    fn parses_fields() {
        let text = "# comment\n\n  \nalice:{PLAIN}a:1000:100:Alice A.:/home/alice:/bin/sh:userdb_quota=1G:x\r\n\
                    bob:{PLAIN}b\nnoids:{PLAIN}c:::gecos:/srv/c\nlocked:!{PLAIN}d:5:6\nempty:";
        let users = parse_table(text.as_bytes()).unwrap();
        let cases = [
            (
                "alice",
                account("alice", Some(1000), Some(100), Some("/home/alice")),
            ),
            ("bob", account("bob", None, None, None)),
            ("noids", account("noids", None, None, Some("/srv/c"))),
            ("locked", account("locked", Some(5), Some(6), None)),
            ("empty", account("empty", None, None, None)),
        ];
        assert_eq!(users.len(), cases.len());
        for (name, want) in cases {
            assert_eq!(users[name].account, want, "{name}");
        }
        assert_eq!(users["alice"].stored, Stored::Plain(b"a".to_vec()));
        assert_eq!(users["locked"].stored, Stored::Locked);
        assert_eq!(users["empty"].stored, Stored::Locked);
    }

    #[test]
    fn applies_dovecot_extra_fields() {
        let text = "a:{PLAIN}x::::::allow_nets=192.0.2.0/24,2001:db8::/32,local\n\
                    b:{PLAIN}x::::::nologin reason=Moved_to_IMAP\n\
                    c:{PLAIN}x::::::nologin=y\n\
                    d:{PLAIN}x:1:2::/h/d::userdb_mail=mbox:/var/mail/%u userdb_home=/h/dd userdb_uid=3 userdb_gid=4\n\
                    e:{PLAIN}x::::::userdb_quota_rule=*:storage=1G nodelay  nopassword\n";
        let users = parse_table(text.as_bytes()).unwrap();
        let nets = users["a"].account.policy.allow_nets.clone().unwrap();
        assert!(nets.local);
        assert_eq!(nets.networks.len(), 2);
        assert!(nets.allows(Some("192.0.2.7".parse().unwrap())));
        assert!(nets.allows(Some("::ffff:192.0.2.7".parse().unwrap())));
        assert!(nets.allows(Some("2001:db8::1".parse().unwrap())));
        assert!(!nets.allows(Some("198.51.100.1".parse().unwrap())));
        assert!(nets.allows(None));
        assert_eq!(
            users["b"].account.policy.nologin.as_deref(),
            Some("Moved_to_IMAP")
        );
        assert_eq!(users["c"].account.policy.nologin.as_deref(), Some(""));
        let d = &users["d"].account;
        assert_eq!(
            d.policy.mail.as_ref().map(ToString::to_string).as_deref(),
            Some("mbox:/var/mail/%u")
        );
        assert_eq!((d.uid, d.gid), (Some(3), Some(4)));
        assert_eq!(d.home.as_deref(), Some(Path::new("/h/dd")));
        // Fields that mean nothing to a POP3 server leave the account as the line has it.
        assert_eq!(users["e"].account, account("e", None, None, None));
        // Dovecot's `fail` fails the passdb lookup, whatever the password: the line is locked.
        let failing = parse_table(b"g:{PLAIN}x::::::nodelay fail\nh:{PLAIN}x::::::fail=y").unwrap();
        assert_eq!(failing["g"].stored, Stored::Locked);
        assert_eq!(failing["h"].stored, Stored::Locked);
        let only_local = parse_table(b"f:{PLAIN}x::::::allow_nets=local").unwrap();
        let nets = only_local["f"].account.policy.allow_nets.clone().unwrap();
        assert!(nets.allows(None) && !nets.allows(Some("127.0.0.1".parse().unwrap())));
    }

    #[test]
    fn refuses_extra_fields_it_cannot_honour() {
        let cases: &[(&str, &str)] = &[
            (
                "proxy host=10.0.0.2",
                "user a: extra field proxy is not supported",
            ),
            (
                "proxy_maybe",
                "user a: extra field proxy_maybe is not supported",
            ),
            ("host=10.0.0.2", "user a: extra field host is not supported"),
            ("user=b", "user a: extra field user is not supported"),
            (
                "userdb_user=b",
                "user a: extra field userdb_user is not supported",
            ),
            (
                "userdb_chroot=/srv/jail",
                "user a: extra field userdb_chroot is not supported",
            ),
            (
                "allow_real_nets=10.0.0.0/8",
                "user a: extra field allow_real_nets is not supported",
            ),
            (
                "allow_nets=10.0.0.0/33",
                "user a: allow_nets: bad prefix length in \"10.0.0.0/33\"",
            ),
            ("allow_nets=", "user a: allow_nets: empty network in \"\""),
            (
                "allow_nets=nowhere",
                "user a: allow_nets: \"nowhere\" is not an address or CIDR",
            ),
            (
                "userdb_mail=imap:/x",
                "user a: userdb_mail: unknown mailbox format \"imap\" (expected maildir: or mbox:)",
            ),
            ("userdb_uid=x", "user a: bad userdb_uid \"x\": not a number"),
        ];
        for (extra, want) in cases {
            let line = format!("a:{{PLAIN}}x::::::{extra}");
            assert_eq!(
                parse_table(line.as_bytes()).err(),
                Some((1, want.to_string())),
                "{extra}"
            );
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b":{PLAIN}x", 1, "empty user name"),
            (b"a:{PLAIN}x\n\n# c\n:{PLAIN}y", 4, "empty user name"),
            (b"a", 1, "user a: missing password field"),
            (b"a:{PLAIN}x:1x", 1, "user a: bad uid \"1x\": not a number"),
            (b"a:{PLAIN}x:+1", 1, "user a: bad uid \"+1\": not a number"),
            (
                b"a:{PLAIN}x:1:-1",
                1,
                "user a: bad gid \"-1\": not a number",
            ),
            (
                b"a:{PLAIN}x::99999999999",
                1,
                "user a: bad gid \"99999999999\": not a number",
            ),
            (
                b"a:{PLAIN}x\nb:{PLAIN}y\na:{PLAIN}z",
                3,
                "duplicate user a (first on line 1)",
            ),
            (
                b"a:{PLAIN}x\nb:{MD5}y",
                2,
                "user b: unsupported password scheme MD5",
            ),
            (b"a:{PLAIN}x\n\xff:{PLAIN}y", 2, "not valid UTF-8"),
        ];
        for &(text, line, problem) in cases {
            let got = parse_table(text).err();
            assert_eq!(
                got,
                Some((line, problem.to_string())),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn open_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(&path, "a:{PLAIN}x\n# c\nb:{SSHA}y\n").unwrap();
        let err = PasswdFile::open(&path).err().unwrap();
        assert_eq!(err.line, Some(3));
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: user b: unsupported password scheme SSHA",
                path.display()
            )
        );
        // A control character in a quoted user name is shown escaped: the message stays one line.
        fs::write(&path, "a\rb\x02\n").unwrap();
        let err = PasswdFile::open(&path).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:1: user a\\rb\\u{{2}}: missing password field",
                path.display()
            )
        );
        fs::write(
            &path,
            "a:{PLAIN}x\nb:{SCRAM-SHA-256}4096,c2FsdA==,a2V5,a2V5\n",
        )
        .unwrap();
        let err = PasswdFile::open(&path).err().unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: user b: bad SCRAM-SHA-256 value: StoredKey must be 32 octets in base64",
                path.display()
            )
        );
        let missing = PasswdFile::open(&dir.path().join("nope")).err().unwrap();
        assert_eq!(missing.line, None);
        assert!(
            missing
                .to_string()
                .starts_with(&format!("{}: ", dir.path().join("nope").display()))
        );
    }

    #[test]
    fn login_with_each_scheme() {
        let blf = bcrypt::hash_with_salt("blf pw", 4, [3; 16]).unwrap();
        let text = format!(
            "plain:{{PLAIN}}tanstaaf:1:2::/home/plain\nsha512:{{SHA512-CRYPT}}{DUMMY_HASH}\n\
             sha256:{{SHA256-CRYPT}}{SHA256_HELLO}\nblf:{{BLF-CRYPT}}{}\nbare:{DUMMY_HASH}\n\
             locked:!{{PLAIN}}open\nstar:*\nempty:{{PLAIN}}\n",
            blf.format_for_version(bcrypt::Version::TwoY)
        );
        let (_dir, _path, db) = fixture(&text);
        assert_eq!(db.user_count(), 8);
        let cases = [
            ("plain", "tanstaaf", true),
            ("sha512", "tanstaaf", true),
            ("sha256", "Hello world!", true),
            ("blf", "blf pw", true),
            ("bare", "tanstaaf", true),
            ("plain", "tanstaa", false),
            ("sha512", "Tanstaaf", false),
            ("sha256", "Hello world", false),
            ("blf", "blf pw ", false),
            ("Plain", "tanstaaf", false),
            ("nobody", "tanstaaf", false),
            ("", "", false),
            ("locked", "open", false),
            ("locked", "!{PLAIN}open", false),
            ("star", "*", false),
            ("empty", "", false),
        ];
        for (user, password, ok) in cases {
            assert_eq!(
                login(&db, user, password).is_some(),
                ok,
                "{user} / {password}"
            );
        }
        assert_eq!(
            login(&db, "plain", "tanstaaf"),
            Some(account("plain", Some(1), Some(2), Some("/home/plain")))
        );
        let bad = db.login(b"\xff", &Secret::new(&b"x"[..]));
        assert!(matches!(bad, Err(AuthError::BadCredentials)));
    }

    #[test]
    fn apop_rfc1939_example() {
        let text =
            format!("mrose:{{PLAIN}}tanstaaf:7\nhashed:{DUMMY_HASH}\nlocked:!{{PLAIN}}tanstaaf\n");
        let (_dir, _path, db) = fixture(&text);
        let upper = RFC_DIGEST.to_ascii_uppercase();
        let long = [RFC_DIGEST, b"0"].concat();
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"mrose", RFC_DIGEST, true),
            (b"mrose", &upper, true),
            (b"mrose", &RFC_DIGEST[..31], false),
            (b"mrose", &long, false),
            (b"mrose", b"", false),
            (b"mrose", b"c4c9334bac560ecc979e58001b3e22fc", false),
            (b"MROSE", RFC_DIGEST, false),
            (b"hashed", RFC_DIGEST, false),
            (b"locked", RFC_DIGEST, false),
            (b"nobody", RFC_DIGEST, false),
        ];
        for &(user, digest, ok) in cases {
            let got = db.apop(user, RFC_TIMESTAMP, digest);
            assert_eq!(
                got.is_ok(),
                ok,
                "{:?} {:?}",
                String::from_utf8_lossy(user),
                String::from_utf8_lossy(digest)
            );
        }
        assert_eq!(
            db.apop(b"mrose", RFC_TIMESTAMP, RFC_DIGEST).unwrap(),
            account("mrose", Some(7), None, None)
        );
        assert!(db.apop(b"mrose", b"<other@host>", RFC_DIGEST).is_err());
    }

    /// The RFC 7677 example user, password "pencil", as `doveadm pw -s SCRAM-SHA-256` would write it.
    const SCRAM_PENCIL: &str = "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

    #[test]
    fn scram_lookups() {
        let text = format!(
            "plain:{{PLAIN}}pencil:7\nstored:{SCRAM_PENCIL}:8\nhashed:{DUMMY_HASH}\n\
             locked:{{PLAIN}}pencil::::::fail\n"
        );
        let (_dir, _path, db) = fixture(&text);
        assert!(!db.scram_for_every_user(), "a crypt hash among them");
        let plain = db.scram(b"plain");
        let salt = scram::derived_salt(b"plain");
        assert_eq!(plain.keys, Keys::from_password(b"pencil", &salt, 4096));
        assert_eq!(plain.account.unwrap().uid, Some(7));
        let stored = db.scram(b"stored");
        assert_eq!(stored.keys, Keys::parse(&SCRAM_PENCIL[15..]).unwrap());
        assert_eq!(stored.account.unwrap().uid, Some(8));
        // Users who cannot do SCRAM get keys like a {PLAIN} user's, the same on every attempt.
        for user in [&b"hashed"[..], b"locked", b"nobody", b"\xff"] {
            let lookup = db.scram(user);
            assert!(matches!(lookup.account, Err(AuthError::BadCredentials)));
            assert_eq!(lookup.keys, Keys::stand_in(user));
            assert_eq!((lookup.keys.iterations, lookup.keys.salt.len()), (4096, 16));
        }
        // A {SCRAM-SHA-256} user logs in with the password too, but has no plaintext for APOP.
        assert_eq!(login(&db, "stored", "pencil").unwrap().uid, Some(8));
        assert!(login(&db, "stored", "pencil ").is_none());
        let digest = apop::digest(RFC_TIMESTAMP, b"pencil");
        assert!(db.apop(b"stored", RFC_TIMESTAMP, &digest).is_err());
        assert!(db.apop(b"plain", RFC_TIMESTAMP, &digest).is_ok());
        // Crypt hashes and locked users only: nobody could use SCRAM.
        let (_dir, _path, db) = fixture(&format!(
            "hashed:{DUMMY_HASH}\nlocked:{{PLAIN}}pencil::::::fail\nbang:!\n"
        ));
        assert!(!db.scram_for_every_user());
        // Every user who can log in could (the locked ones do not count); none at all is not enough.
        let (_dir, _path, db) = fixture(&format!(
            "plain:{{PLAIN}}pencil\nstored:{SCRAM_PENCIL}\nlocked:{DUMMY_HASH}::::::fail\nbang:!\n"
        ));
        assert!(db.scram_for_every_user());
        let (_dir, _path, db) = fixture("bang:!\n");
        assert!(!db.scram_for_every_user());
    }

    #[test]
    fn reloads_when_the_file_changes() {
        let (_dir, path, db) = fixture("a:{PLAIN}one\n");
        assert!(login(&db, "a", "one").is_some());

        // Edited in place, with a different size.
        fs::write(&path, "a:{PLAIN}two\nb:{PLAIN}three\n").unwrap();
        assert!(login(&db, "a", "one").is_none());
        assert!(login(&db, "a", "two").is_some());
        assert!(login(&db, "b", "three").is_some());
        assert_eq!(db.user_count(), 2);

        // A broken edit keeps the previous table, also for later logins.
        fs::write(&path, "a:{PLAIN}four\n:{PLAIN}oops\n").unwrap();
        assert!(login(&db, "a", "two").is_some());
        assert!(login(&db, "a", "four").is_none());
        assert!(
            db.apop(b"b", b"<t@h>", &apop::digest(b"<t@h>", b"three"))
                .is_ok()
        );

        // Replaced by rename, as editors and config management do.
        let new = path.with_extension("new");
        fs::write(&new, "c:{PLAIN}five\n").unwrap();
        fs::rename(&new, &path).unwrap();
        assert!(login(&db, "a", "two").is_none());
        assert!(login(&db, "c", "five").is_some());
        assert_eq!(db.user_count(), 1);

        // A vanished file keeps the table too.
        fs::remove_file(&path).unwrap();
        assert!(login(&db, "c", "five").is_some());
    }

    #[test]
    fn shared_across_threads() {
        let (_dir, _path, db) = fixture("a:{PLAIN}one\n");
        let db = std::sync::Arc::new(db);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || login(&db, "a", "one").is_some())
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap());
        }
    }
}
