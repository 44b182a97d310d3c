//! `--system-users`: the host's own accounts, from `/etc/passwd` and `/etc/shadow` read directly (no PAM,
//! no NSS: the binary stays static). Owns who may log in (locked, expired and root accounts may not), the
//! equal-cost failure path, and re-reading the files when they change. The file formats are
//! `unix_files`'; the hash formats `scheme`'s.

use std::collections::HashMap;
use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Policy;
use super::passwd_file::Stamp;
use super::scheme::{CRYPT_PREFIXES, Stored, pick_dummy};
use super::unix_files::{self, PasswdEntry, ShadowEntry};
use super::{Account, AuthError, Authenticator, Secret, apop};

/// The files the command line's `--system-users` reads.
pub const PASSWD: &str = "/etc/passwd";
pub const SHADOW: &str = "/etc/shadow";

/// The host's accounts, shared by every session thread.
pub struct SystemUsers {
    passwd: PathBuf,
    shadow: PathBuf,
    table: RwLock<Arc<Table>>,
}

#[derive(Clone)]
struct Table {
    /// Shared with the table a failed reload leaves (its stamps new, its accounts the same).
    users: Arc<HashMap<String, User>>,
    /// What unknown and locked users are checked against; see [`pick_dummy`].
    dummy: Stored,
    /// Both files as last read, to notice when either changes.
    stamps: (Option<Stamp>, Option<Stamp>),
}

struct User {
    account: Account,
    stored: Stored,
    shadow: Option<ShadowEntry>,
}

impl SystemUsers {
    /// Reads both files. `shadow` may be absent (a host without shadow passwords); unreadable is an error,
    /// since it almost always means poplar is not running as root.
    pub fn open(passwd: &Path, shadow: &Path) -> Result<SystemUsers, String> {
        let table = load(passwd, shadow)?;
        Ok(SystemUsers {
            passwd: passwd.to_path_buf(),
            shadow: shadow.to_path_buf(),
            table: RwLock::new(Arc::new(table)),
        })
    }

    /// Number of accounts that can log in at all, for start-up logs.
    pub fn user_count(&self) -> usize {
        self.read()
            .users
            .values()
            .filter(|u| !matches!(u.stored, Stored::Locked))
            .count()
    }

    /// The table in force, the lock already let go: a check never holds it while it hashes (see
    /// `PasswdFile`'s table: a waiting reload would hold every login).
    fn read(&self) -> Arc<Table> {
        Arc::clone(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads both files when either changed; a failed read keeps the previous table (logged once).
    fn refresh(&self) {
        let stamps = (stamp(&self.passwd), stamp(&self.shadow));
        if self.read().stamps == stamps {
            return;
        }
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        if table.stamps == stamps {
            return;
        }
        match load(&self.passwd, &self.shadow) {
            Ok(new) => {
                log::info!(
                    "{}: re-read, {}",
                    self.passwd.display(),
                    crate::proto::reply::Tally(new.users.len() as u64, "account")
                );
                *table = Arc::new(new);
            }
            Err(e) => {
                log::warn!("{e}; keeping the previous system accounts");
                *table = Arc::new(Table {
                    stamps,
                    ..Table::clone(&table)
                });
            }
        }
    }
}

impl Authenticator for SystemUsers {
    fn login(&self, user: &[u8], password: &Secret<&[u8]>) -> Result<Account, AuthError> {
        self.refresh();
        let table = self.read();
        let found = std::str::from_utf8(user)
            .ok()
            .and_then(|name| table.users.get(name));
        let Some(found) = found.filter(|u| !matches!(u.stored, Stored::Locked)) else {
            // Unknown and locked users do the work of a wrong password, so timing reveals nothing.
            black_box(table.dummy.verify(password.expose()));
            return Err(AuthError::BadCredentials);
        };
        if !found.stored.verify(password.expose()) {
            // A malformed hash (an account set up by hand) fails in microseconds: it pays the
            // stand-in's work too, or timing would tell its name from an unknown one.
            if found.stored.is_fast() {
                black_box(table.dummy.verify(password.expose()));
            }
            return Err(AuthError::BadCredentials);
        }
        if let Some(reason) = found
            .shadow
            .as_ref()
            .and_then(|s| unix_files::expired(s, today()))
        {
            // Only the right password learns this, and only in the log: the client sees a failed login.
            log::info!("login refused user={}: {reason}", found.account.name);
            return Err(AuthError::BadCredentials);
        }
        Ok(found.account.clone())
    }

    /// APOP needs a plaintext secret, which system accounts never have: always a failure, after the work
    /// a passwd-file user's APOP costs.
    fn apop(&self, _user: &[u8], timestamp: &[u8], digest: &[u8]) -> Result<Account, AuthError> {
        black_box((apop::digest(timestamp, b"no such secret"), digest));
        Err(AuthError::BadCredentials)
    }

    fn knows(&self, user: &[u8]) -> bool {
        self.refresh();
        std::str::from_utf8(user).is_ok_and(|name| self.read().users.contains_key(name))
    }
}

/// Days since 1970-01-01, as shadow(5) counts them.
fn today() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp::of(&m))
}

/// Reads a file and its stamp from one descriptor; `Ok(None)` when it does not exist.
fn read(path: &Path) -> Result<Option<(Vec<u8>, Stamp)>, String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let stamp = file
        .metadata()
        .map(|m| Stamp::of(&m))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Bytes, not a String: one line that is not UTF-8 must not make the whole file unreadable.
    let mut text = Vec::new();
    file.read_to_end(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some((text, stamp)))
}

fn load(passwd_path: &Path, shadow_path: &Path) -> Result<Table, String> {
    let (passwd, passwd_stamp) =
        read(passwd_path)?.ok_or_else(|| format!("{}: no such file", passwd_path.display()))?;
    let (shadow, shadow_stamp) =
        read(shadow_path)?.map_or((Vec::new(), None), |(t, s)| (t, Some(s)));
    let (accounts, bad) = unix_files::parse_passwd(&passwd);
    warn_bad(passwd_path, &bad);
    let (shadows, bad) = unix_files::parse_shadow(&shadow);
    warn_bad(shadow_path, &bad);
    // The first line for a name wins here too, as getspnam(3) finds it: collecting into the map would
    // keep the last, so a locked first line followed by an old hash would let the old password in.
    let mut shadows = shadows.into_iter().fold(HashMap::new(), |mut map, s| {
        map.entry(s.name.clone()).or_insert(s);
        map
    });
    let mut users = HashMap::new();
    for entry in accounts {
        // The first line for a name wins, as getpwnam(3) finds it.
        if users.contains_key(&entry.name) {
            continue;
        }
        let shadow = shadows.remove(&entry.name);
        let user = user(entry, shadow);
        users.insert(user.account.name.clone(), user);
    }
    let dummy = pick_dummy(users.values().map(|u| &u.stored));
    Ok(Table {
        users: Arc::new(users),
        dummy,
        stamps: (Some(passwd_stamp), shadow_stamp),
    })
}

fn warn_bad(path: &Path, lines: &[usize]) {
    if !lines.is_empty() {
        log::warn!("{}: skipped malformed lines {lines:?}", path.display());
    }
}

/// The credential of one account: shadow's hash when passwd says `x`, passwd's own field otherwise.
/// Root (uid 0) never logs in over POP3: its password would cross the network for a mailbox nobody reads.
fn user(entry: PasswdEntry, shadow: Option<ShadowEntry>) -> User {
    let field = match (&shadow, entry.password.as_str()) {
        (Some(s), "x") => s.password.as_str(),
        (None, "x") => "",
        (_, own) => own,
    };
    let verifiable = CRYPT_PREFIXES.iter().any(|p| field.starts_with(p));
    let stored = if entry.uid == 0 || unix_files::locked(field) || !verifiable {
        Stored::Locked
    } else {
        Stored::Crypt(field.to_string())
    };
    let account = Account {
        policy: Policy {
            system_groups_user: Some(entry.name.clone()),
            ..Default::default()
        },
        name: entry.name,
        uid: Some(entry.uid),
        gid: Some(entry.gid),
        home: Some(entry.home),
    };
    User {
        account,
        stored,
        shadow,
    }
}

#[cfg(test)]
mod tests;
