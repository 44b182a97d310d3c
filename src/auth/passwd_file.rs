//! Dovecot's passwd-file: `user:{SCHEME}secret:uid:gid:gecos:home:shell:extra`, re-read when it changes.
//! This file owns the format, the user table and its reloading; password schemes live in `scheme`.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::hint::black_box;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use super::scheme::Stored;
use super::scheme::pick_dummy;
use super::scram::{self, Keys};
use super::secret::constant_time_eq;
use super::{Account, AuthError, Authenticator, Nets, Policy, SaltKey, ScramLookup, Secret, apop};

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
    /// Session threads share one `PasswdFile`; a reload swaps the table under the write lock. Each
    /// use takes its own reference to the table and lets go of the lock at once: a check holding the
    /// lock while it waited for a hashing permit and hashed kept a reload waiting to write, and std's
    /// lock queues every new reader behind a waiting writer, so one edit of the file held every login
    /// (a {PLAIN} one included) for as long as the queued hashes took (a review: 4-11 s).
    table: RwLock<Arc<Table>>,
}

/// One loaded version of the file.
struct Table {
    users: HashMap<String, Entry>,
    /// The file as last read (or last failed to read), to notice when it changes.
    stamp: Stamp,
    /// Every user who can log in has a `{PLAIN}` or `{SCRAM-SHA-256}` password, and so could use
    /// SCRAM-SHA-256 (and there is one).
    scram_for_every_user: bool,
    /// What unknown and locked users, and wrong `{PLAIN}` passwords, are checked against: a hash of
    /// the kind most users of the file have (`scheme::pick_dummy`), so that they cost what its users'
    /// wrong passwords cost.
    dummy: Stored,
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
        let table = load(path)?;
        warn_of_faulty_hashes(path, &table);
        Ok(PasswdFile {
            path: path.to_path_buf(),
            table: RwLock::new(Arc::new(table)),
        })
    }

    /// Number of users, for `--check-config` and start-up logs.
    pub fn user_count(&self) -> usize {
        self.read().users.len()
    }

    /// What each load says of the users whose hash is faulty (see `scheme::crypt_fault`), in file
    /// order, for `--check-config` too: they can never log in.
    pub fn faulty_hash_warnings(&self) -> Vec<String> {
        faulty_hash_warnings(&self.path, &self.read())
    }

    /// Whether some user who can log in has a `{PLAIN}` password, which APOP needs.
    pub fn any_plaintext(&self) -> bool {
        self.read()
            .users
            .values()
            .any(|e| e.stored.plaintext().is_some())
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
    /// once per change and the previous table kept for the users whose lines did not change: a typo
    /// while editing must not lock everyone out, nor keep in a user the same edit locked or removed.
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
        if table.stamp == stamp {
            return;
        }
        // One that could not be read is tried again at the next login.
        let file = match read_file(&self.path) {
            Ok(file) => file,
            Err(err) => return log::warn!("{err}; keeping the previous user table"),
        };
        if file.half_written() {
            // Not stored as seen: the next login looks again.
            return log::debug!(
                "{}: being written; the previous user table meanwhile",
                self.path.display()
            );
        }
        match table_of(&self.path, &file.text, file.stamp) {
            Ok(new) => {
                log::info!(
                    "{}: re-read, {}",
                    self.path.display(),
                    crate::proto::reply::Tally(new.users.len() as u64, "user")
                );
                warn_of_faulty_hashes(&self.path, &new);
                *table = Arc::new(new);
            }
            // Not read again until it changes (and logged once).
            Err(err) => {
                let (users, locked) = restricted(&table.users, &file.text);
                log::warn!(
                    "{err}; keeping the previous user table, {locked} of its users locked until the \
                     file loads (their lines changed, went or are in error)"
                );
                *table = Arc::new(Table {
                    scram_for_every_user: scram_for_every_user(&users),
                    users,
                    stamp: file.stamp,
                    dummy: table.dummy.clone(),
                });
            }
        }
    }

    /// The table in force, the lock already let go. It is replaced whole, never left half-updated, so
    /// a poisoned lock still guards a consistent value.
    fn read(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// `FILE:LINE: user NAME cannot log in: FAULT` for each user of `table` whose hash is faulty, in file
/// order.
fn faulty_hash_warnings(path: &Path, table: &Table) -> Vec<String> {
    let mut found: Vec<_> = table
        .users
        .values()
        .filter_map(|e| Some((e.line, &e.account.name, e.stored.fault()?)))
        .collect();
    found.sort_by_key(|(line, _, _)| *line);
    found
        .into_iter()
        .map(|(line, name, fault)| {
            let name = crate::config::OneLine(name);
            format!(
                "{}:{line}: user {name} cannot log in: {fault}",
                path.display()
            )
        })
        .collect()
}

/// A faulty hash loads (its shape is checked only this far: see `scheme::crypt_fault`) and locks its
/// user; each load says so, or the user would only find their password refused.
fn warn_of_faulty_hashes(path: &Path, table: &Table) {
    for warning in faulty_hash_warnings(path, table) {
        log::warn!("{warning}");
    }
}

/// Whether a failed check of `stored` must also pay for the dummy hash: a plaintext secret or a digest
/// (`{SSHA512}`, ...) is checked in microseconds while an unknown user costs a SHA-512 crypt, which with `--auth-failure-delay 0`
/// would tell existing names from unknown ones. Hashed secrets pay their own hash.
fn needs_hash_work(stored: &Stored) -> bool {
    stored.is_fast()
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
                    black_box(table.dummy.verify(password.expose()));
                }
            }
            // Unknown and locked users do the work of a wrong password, so timing reveals nothing.
            _ => {
                black_box(table.dummy.verify(password.expose()));
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

    /// A {PLAIN} user's keys are computed now, under the salt derived with `salts`; a {SCRAM-SHA-256}
    /// user's are stored, and the stand-in keys are computed too so that both cost one PBKDF2. Everyone
    /// else (unknown, locked, crypt hashes, digests, PBKDF2) gets the stand-in keys and no account.
    fn scram(&self, user: &[u8], salts: &SaltKey) -> ScramLookup {
        self.refresh();
        let table = self.read();
        let Some(entry) = lookup(&table, user) else {
            return ScramLookup::unusable(user, salts);
        };
        let keys = match &entry.stored {
            Stored::Plain(password) => {
                Keys::from_password(password, &salts.salt(user), scram::ITERATIONS)
            }
            Stored::Scram(keys) => {
                black_box(Keys::stand_in(user, salts));
                keys.clone()
            }
            Stored::Crypt(_) | Stored::Digest(_) | Stored::Pbkdf2(_) | Stored::Locked => {
                return ScramLookup::unusable(user, salts);
            }
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

/// Reads the file and makes its table.
fn load(path: &Path) -> Result<Table, PasswdError> {
    let file = read_file(path)?;
    table_of(path, &file.text, file.stamp)
}

/// The file's bytes and its stamp, from one open descriptor, so the stamp describes what was read.
struct FileRead {
    text: Vec<u8>,
    stamp: Stamp,
    /// The stamp changed while the file was read.
    changed: bool,
    modified: std::time::SystemTime,
}

/// How recent a change must be for a file cut short to be taken for one still being written.
const WRITING: std::time::Duration = std::time::Duration::from_secs(2);

impl FileRead {
    /// An editor or script rewriting the file in place (truncate, then write: nano, a shell `>`)
    /// shows a part of it for a moment, and a part can be a valid file: a user's last line without
    /// its `nologin` or `allow_nets`, a `userdb_uid=1000` cut to `userdb_uid=1`, a password cut
    /// short, or no users at all. So a file that changed during the reading, or that was changed in
    /// the last moments and is empty or does not end its last line, is not taken; once older, it is
    /// (a finished file may lack its last newline).
    fn half_written(&self) -> bool {
        // A time in the future (a clock set back, `touch -d`) is not a write in progress: taken as
        // old, or such a file would not be read again until the clock caught up.
        let recent = self.modified.elapsed().is_ok_and(|age| age < WRITING);
        self.changed || (recent && !self.text.ends_with(b"\n"))
    }
}

fn read_file(path: &Path) -> Result<FileRead, PasswdError> {
    let error = |e: std::io::Error| PasswdError {
        path: path.to_path_buf(),
        line: None,
        problem: e.to_string(),
    };
    let mut file = File::open(path).map_err(error)?;
    let meta = file.metadata().map_err(error)?;
    let stamp = Stamp::of(&meta);
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(error)?;
    let after = Stamp::of(&file.metadata().map_err(error)?);
    Ok(FileRead {
        text,
        stamp,
        changed: after != stamp,
        modified: meta.modified().map_err(error)?,
    })
}

/// The table of passwd-file `text`, read from `path` as it was at `stamp`.
fn table_of(path: &Path, text: &[u8], stamp: Stamp) -> Result<Table, PasswdError> {
    let error = |line, problem| PasswdError {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let users = parse_table(text).map_err(|(line, problem)| error(Some(line), problem))?;
    let dummy = pick_dummy(users.values().map(|e| &e.stored));
    Ok(Table {
        scram_for_every_user: scram_for_every_user(&users),
        users,
        stamp,
        dummy,
    })
}

/// Every user who can log in has a `{PLAIN}` or `{SCRAM-SHA-256}` password (and there is one).
fn scram_for_every_user(users: &HashMap<String, Entry>) -> bool {
    let mut can_log_in = users
        .values()
        .filter(|e| !matches!(e.stored, Stored::Locked))
        .peekable();
    can_log_in.peek().is_some() && can_log_in.all(|e| e.stored.has_scram_keys())
}

/// After an edit that does not load (`text`, a line in error): the previous `users`, of whom only
/// those whose line is still there, parses and says the same (and is not repeated) keep their
/// credentials; the others are locked until the file loads. A user the same edit locked, barred or
/// removed is then kept out, while the rest log in as before. A name the edit added is locked too,
/// not unknown: an unknown name would fall through to the next user database (`--system-users`),
/// which the edit may have meant to bar. Returns the table and how many users it locked.
fn restricted(users: &HashMap<String, Entry>, text: &[u8]) -> (HashMap<String, Entry>, usize) {
    // Each name's line in the new text: what it parses to, or `None` when it does not parse or the
    // name has more than one line.
    let mut lines: HashMap<&[u8], Option<Entry>> = HashMap::new();
    for (line_no, raw) in file_lines(text) {
        let line = std::str::from_utf8(raw);
        if line.is_ok_and(is_skipped) {
            continue;
        }
        let name = raw.split(|&b| b == b':').next().unwrap_or_default();
        let parsed = line.ok().and_then(|line| parse_line(line, line_no).ok());
        lines
            .entry(name)
            .and_modify(|seen| *seen = None)
            .or_insert(parsed);
    }
    let mut locked = 0;
    let mut table: HashMap<String, Entry> = users
        .iter()
        .map(|(name, entry)| {
            let unchanged = lines.get(name.as_bytes()).is_some_and(|line| {
                line.as_ref()
                    .is_some_and(|new| new.account == entry.account && new.stored == entry.stored)
            });
            let stored = if unchanged || matches!(entry.stored, Stored::Locked) {
                entry.stored.clone()
            } else {
                locked += 1;
                Stored::Locked
            };
            let entry = Entry {
                account: entry.account.clone(),
                stored,
                line: entry.line,
            };
            (name.clone(), entry)
        })
        .collect();
    let added = lines
        .keys()
        .filter_map(|name| std::str::from_utf8(name).ok());
    for name in added.filter(|name| !name.is_empty()) {
        table.entry(name.to_string()).or_insert_with(|| {
            locked += 1;
            Entry {
                account: Account {
                    name: name.to_string(),
                    uid: None,
                    gid: None,
                    home: None,
                    policy: Default::default(),
                },
                stored: Stored::Locked,
                line: 0,
            }
        });
    }
    (table, locked)
}

/// The lines of passwd-file `text` with their 1-based numbers, a CR before the LF dropped.
fn file_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .map(|(index, raw)| (index + 1, raw.strip_suffix(b"\r").unwrap_or(raw)))
}

/// Blank lines and comments hold no user.
fn is_skipped(line: &str) -> bool {
    line.trim().is_empty() || line.starts_with('#')
}

/// Parses the whole file; the error carries the 1-based line number. Pure: no I/O.
fn parse_table(text: &[u8]) -> Result<HashMap<String, Entry>, (usize, String)> {
    let mut users: HashMap<String, Entry> = HashMap::new();
    for (line_no, raw) in file_lines(text) {
        let line =
            std::str::from_utf8(raw).map_err(|_| (line_no, "not valid UTF-8".to_string()))?;
        if is_skipped(line) {
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
/// `userdb_gid`, which override the line's own; `fail`, with which Dovecot fails the lookup, and
/// `noauthenticate`, with which the line never authenticates by itself, lock the line's password.
/// `nopassword` (Dovecot: any password) is not honoured: the line's password decides, which keeps out
/// no one Dovecot lets in with that password, and an empty one locks the line. Refused, since ignoring them would let a login in that Dovecot would have kept
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
            // With `noauthenticate` the line only adds fields to a login another passdb accepted;
            // there is no other passdb after a passwd-file that knows the name here.
            "fail" | "noauthenticate" => *stored = Stored::Locked,
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
            "userdb_system_groups_user" => {
                account.policy.system_groups_user =
                    Some(value.to_string()).filter(|v| !v.is_empty())
            }
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
#[path = "passwd_file_tests.rs"]
mod tests;
