//! Privilege changes: the one place poplar calls setuid, setgid, setgroups and their file-system-only
//! Linux cousins. Owns the privilege model (chosen once at start-up) and the [`Identity`] it gives the
//! session; who the account is, is `auth`'s business, and when to switch is the session's.
//!
//! The model, also in poplar(8) SECURITY:
//!
//! - inetd, started as root: the process reads and parses only what authentication needs as root. After
//!   a successful login, before the maildrop is opened, it switches for good to the account's uid, gid
//!   and supplementary groups (setgroups, setgid, setuid), then checks that `setuid(0)` fails. An account
//!   without a uid and gid is served as the `--user` account if one is given, and refused otherwise:
//!   mail is never opened as root by accident.
//! - standalone with `--user NAME`: the whole process becomes NAME (and its groups) right after binding
//!   the listeners, before accepting anyone: the virtual-mail set-up, where one account owns every maildrop.
//! - standalone, still root: each session thread, after login, takes on the account's file-system
//!   identity only (Linux `setfsuid`/`setfsgid` and the raw `setgroups` system call, which act on the
//!   calling thread; the libc wrappers of setuid/setgroups change every thread of the process at once).
//!   The kernel then checks every open, create and rename against that user, so no session can touch
//!   another user's files. Accounts without a uid and gid are refused.
//! - not root: nothing changes; the process can open only what its own uid can, whatever uid an account
//!   names, so refusing such accounts would protect nothing.
//!
//! Running as root in either mode, the process keeps only the capabilities switching needs
//! (`capabilities`): CAP_SETUID, CAP_SETGID and CAP_DAC_READ_SEARCH.
//!
//! Wherever identities change (inetd and standalone as root, not `--user` standalone, where the process
//! is one account from the start), an account whose uid or gid is below `first-valid-uid` or
//! `first-valid-gid` ([`FirstValid`], 1 and 1 by default, as Dovecot's `first_valid_uid`) is refused
//! before anything is switched or opened. A uid 0 account (a passwd-file line with uid 0,
//! `userdb_uid=0`, or `--user root` as the inetd fallback: `--system-users` never lets root log in)
//! would otherwise be served as root: owner rights on root's files and CAP_DAC_READ_SEARCH, so a
//! symlinked `cur/` or mbox path could read any file. With the limits lowered to 0 it is served as
//! root, with a warning on every login.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::libc;
use nix::unistd::{self, Gid, Uid};

use crate::auth::Account;
use crate::auth::unix_files;
use crate::session::Identity;

/// Where user and group names are looked up (injectable for tests).
pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// A uid, a primary gid and the supplementary groups, as initgroups(3) would set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// `first-valid-uid` and `first-valid-gid`: the lowest ids a session may take on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstValid {
    pub uid: u32,
    pub gid: u32,
}

impl FirstValid {
    /// The limits `config` sets.
    pub fn of(config: &crate::config::Config) -> FirstValid {
        FirstValid {
            uid: config.first_valid_uid,
            gid: config.first_valid_gid,
        }
    }

    /// Why `uid` and `gid` may not be taken on, `None` if they may.
    pub fn refuses(&self, uid: u32, gid: u32) -> Option<String> {
        let why = |what: &str, id: u32, limit: u32| {
            format!(
                "{what} {id} is below first-valid-{what} {limit} \
                 (a session with it could read files the account does not own)"
            )
        };
        if uid < self.uid {
            Some(why("uid", uid, self.uid))
        } else if gid < self.gid {
            Some(why("gid", gid, self.gid))
        } else {
            None
        }
    }
}

/// How sessions take on their account's identity; chosen once at start-up.
#[derive(Debug)]
pub enum Privileges {
    /// Not root (or already dropped to `--user`): nothing to do.
    Unchanged,
    /// inetd as root: switch the whole process, for good. `fallback` serves accounts without ids.
    Process {
        fallback: Option<Ids>,
        group_file: PathBuf,
        /// `mail-group`: added to every account's groups.
        mail_group: Option<u32>,
        first_valid: FirstValid,
    },
    /// Standalone as root: the session thread's file-system identity only. `base` is the identity the
    /// threads start with, which a thread takes back before it serves another session.
    Thread {
        group_file: PathBuf,
        base: Ids,
        mail_group: Option<u32>,
        first_valid: FirstValid,
    },
}

/// Whether the process runs with root's effective uid.
pub fn is_root() -> bool {
    unistd::geteuid().is_root()
}

impl Privileges {
    /// inetd mode: switch per login when started as root; `--user` names the account for accounts
    /// without ids. `mail_group` (a name or a gid) is added to every account's groups; accounts with
    /// ids below `first_valid` are refused.
    pub fn inetd(
        run_as: Option<&str>,
        mail_group: Option<&str>,
        first_valid: FirstValid,
    ) -> Result<Privileges, String> {
        if !is_root() {
            not_root(mail_group);
            return Ok(Privileges::Unchanged);
        }
        crate::capabilities::keep_only_needed()?;
        let mail_group = mail_group.map(group_id).transpose()?;
        let fallback = run_as
            .map(|name| lookup(name, Path::new(PASSWD), Path::new(GROUP)))
            .transpose()?
            .map(|ids| ids.with_group(mail_group));
        Ok(Privileges::Process {
            fallback,
            group_file: PathBuf::from(GROUP),
            mail_group,
            first_valid,
        })
    }

    /// Standalone mode, called after the listeners are bound and before the first accept: with `--user`
    /// the process drops to that account now; as root without it, sessions switch per thread.
    pub fn standalone(
        run_as: Option<&str>,
        mail_group: Option<&str>,
        first_valid: FirstValid,
    ) -> Result<Privileges, String> {
        let root = is_root();
        if !root {
            not_root(mail_group);
        }
        let mail_group = mail_group.filter(|_| root).map(group_id).transpose()?;
        match (run_as, root) {
            (Some(name), true) => {
                let ids = lookup(name, Path::new(PASSWD), Path::new(GROUP))?.with_group(mail_group);
                // Every session runs as this account: below the limits, every maildrop would be
                // opened as root (or its group).
                if let Some(why) = first_valid.refuses(ids.uid, ids.gid) {
                    return Err(format!("--user {name}: {why}"));
                }
                switch_process(&ids).map_err(|e| format!("--user {name}: {e}"))?;
                log::info!(
                    "running as {name} (uid {}, gid {}, groups {:?})",
                    ids.uid,
                    ids.gid,
                    ids.groups
                );
                Ok(Privileges::Unchanged)
            }
            (Some(name), false) => {
                let ids = lookup(name, Path::new(PASSWD), Path::new(GROUP))?;
                if ids.uid != unistd::geteuid().as_raw() {
                    return Err(format!("--user {name}: switching users needs root"));
                }
                Ok(Privileges::Unchanged)
            }
            (None, true) => {
                crate::capabilities::keep_only_needed()?;
                Ok(Privileges::Thread {
                    group_file: PathBuf::from(GROUP),
                    base: Ids {
                        uid: unistd::geteuid().as_raw(),
                        gid: unistd::getegid().as_raw(),
                        groups: thread_groups().map_err(|e| format!("getgroups: {e}"))?,
                    },
                    mail_group,
                    first_valid,
                })
            }
            (None, false) => Ok(Privileges::Unchanged),
        }
    }

    /// What `assume` switches to, `None` when nothing changes; or why the account cannot be served,
    /// decided before any switch (apart from it, so tests can ask without switching the test process).
    fn switch_for(&self, account: &Account, mbox: bool) -> Result<Option<Switch>, String> {
        let (ids, per_thread, mail_group, first_valid) = match self {
            Privileges::Unchanged => return Ok(None),
            Privileges::Process {
                fallback,
                group_file,
                mail_group,
                first_valid,
            } => (
                self.ids_for(account, group_file, fallback.as_ref(), *mail_group, mbox)?,
                false,
                *mail_group,
                first_valid,
            ),
            Privileges::Thread {
                group_file,
                mail_group,
                first_valid,
                ..
            } => (
                self.ids_for(account, group_file, None, *mail_group, mbox)?,
                true,
                *mail_group,
                first_valid,
            ),
        };
        // The fallback account too: `--user root` under inetd would serve every id-less account as root.
        if let Some(why) = first_valid.refuses(ids.uid, ids.gid) {
            return Err(why);
        }
        // Supplementary groups below the limit (a `root:x:0:alice` line in /etc/group) go, as Dovecot
        // drops them; `mail-group` stays, the operator's explicit choice.
        let mut ids = ids;
        ids.groups
            .retain(|&g| g >= first_valid.gid || Some(g) == mail_group || g == ids.gid);
        Ok(Some(Switch {
            ids,
            per_thread,
            mail_group,
        }))
    }

    /// The ids an account is served with, or why it cannot be served; `mail_group` among them only
    /// for an `mbox`.
    fn ids_for(
        &self,
        account: &Account,
        group_file: &Path,
        fallback: Option<&Ids>,
        mail_group: Option<u32>,
        mbox: bool,
    ) -> Result<Ids, String> {
        match ids_source(account, fallback) {
            Some(IdsSource::Own { uid, gid }) => {
                let groups = match &account.policy.system_groups_user {
                    // Bytes: a group line that is not UTF-8 is skipped, not a reason to refuse every
                    // login.
                    Some(name) => std::fs::read(group_file)
                        .map(|text| unix_files::groups_of(&text, name, gid))
                        .map_err(|e| format!("{}: {e}", group_file.display()))?,
                    None => vec![gid],
                };
                Ok(Ids { uid, gid, groups }.with_group(mail_group.filter(|_| mbox)))
            }
            // The fallback was given the group when it was looked up: taken back for a Maildir (and
            // with it the same group if /etc/group gave it too: less, never more).
            Some(IdsSource::Fallback(ids)) if !mbox => Ok(ids.without_group(mail_group)),
            Some(IdsSource::Fallback(ids)) => Ok(ids.clone()),
            None => Err(
                "the account has no uid and gid, and its maildrop is never opened as root \
                      (give them in the passwd-file, or --user for virtual accounts under inetd)"
                    .to_string(),
            ),
        }
    }
}

/// A switch `assume` is to make: to `ids`, of the thread or of the whole process.
#[derive(Debug, PartialEq, Eq)]
struct Switch {
    ids: Ids,
    per_thread: bool,
    mail_group: Option<u32>,
}

/// Where a session switching to `account` gets its uid and gid.
enum IdsSource<'a, T> {
    /// Both given by the user database.
    Own { uid: u32, gid: u32 },
    /// Neither given: the fallback account's (`--user` under inetd).
    Fallback(&'a T),
}

/// The rule of [`Privileges::ids_for`], with `T` anything standing for the fallback account: its own
/// uid and gid, both; or neither and the fallback's; `None` if the account cannot be served.
fn ids_source<'a, T>(account: &Account, fallback: Option<&'a T>) -> Option<IdsSource<'a, T>> {
    match (account.uid, account.gid, fallback) {
        (Some(uid), Some(gid), _) => Some(IdsSource::Own { uid, gid }),
        (None, None, Some(ids)) => Some(IdsSource::Fallback(ids)),
        _ => None,
    }
}

/// Whether a server that switches identities (started as root, sessions as their accounts) can never
/// serve `account`, with or without a fallback account: `--check-config`'s question, by the same rule.
pub fn cannot_switch_to(account: &Account, has_fallback: bool) -> bool {
    ids_source(account, has_fallback.then_some(&())).is_none()
}

/// Why a server that switches identities refuses `account`'s own uid and gid (`first-valid-uid`,
/// `first-valid-gid`), `None` if it does not or the account has none: `--check-config`'s question, by
/// the rule `assume` follows.
pub fn below_first_valid(account: &Account, first_valid: FirstValid) -> Option<String> {
    match ids_source::<()>(account, None)? {
        IdsSource::Own { uid, gid } => first_valid.refuses(uid, gid),
        IdsSource::Fallback(()) => None,
    }
}

impl Identity for Privileges {
    /// `mail-group` only for an mbox: the group may write to every file and directory it owns in the
    /// spool (`/var/mail`), and a Maildir's `new/` and `cur/` are followed through symlinks the
    /// maildrop's owner makes, so a Maildir session holding it could list, read and unlink other
    /// users' spools.
    /// With the group, the uid the mbox must belong to is returned (see `Identity::assume`).
    fn assume(&self, account: &Account, mbox: bool) -> Result<Option<u32>, String> {
        let Some(switch) = self.switch_for(account, mbox)? else {
            return Ok(None);
        };
        let ids = &switch.ids;
        if ids.uid == 0 {
            log::warn!(
                "user={}: uid 0 and first-valid-uid 0: serving this maildrop as root",
                account.name
            );
        }
        if switch.per_thread {
            switch_thread(ids)?;
        } else {
            switch_process(ids)?;
        }
        Ok(required_owner(ids, switch.mail_group))
    }

    fn restore(&self) -> Result<(), String> {
        match self {
            Privileges::Unchanged => Ok(()),
            Privileges::Thread { base, .. } => switch_thread(base),
            // inetd's switch is for good, and its one session ends the process.
            Privileges::Process { .. } => Err("the process switched for good".to_string()),
        }
    }
}

/// The uid an mbox must belong to when the session holds `mail_group`, `None` when it does not: the
/// ids the session took on, which have the group only for an mbox (see `ids_for`).
fn required_owner(ids: &Ids, mail_group: Option<u32>) -> Option<u32> {
    mail_group
        .filter(|g| ids.groups.contains(g))
        .map(|_| ids.uid)
}

impl Ids {
    /// Without `group` among the supplementary groups.
    fn without_group(&self, group: Option<u32>) -> Ids {
        let mut ids = self.clone();
        ids.groups.retain(|&g| Some(g) != group);
        ids
    }

    /// With `group` among the supplementary groups too (once).
    fn with_group(mut self, group: Option<u32>) -> Ids {
        if let Some(group) = group.filter(|g| !self.groups.contains(g)) {
            self.groups.push(group);
        }
        self
    }
}

/// `mail-group`'s gid: a group name from the group file, or a number.
pub fn group_id(name: &str) -> Result<u32, String> {
    group_id_in(name, Path::new(GROUP))
}

fn group_id_in(name: &str, group_file: &Path) -> Result<u32, String> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name
            .parse()
            .map_err(|_| format!("group id {name} out of range"));
    }
    let text = std::fs::read(group_file).map_err(|e| format!("{}: {e}", group_file.display()))?;
    unix_files::gid_of(&text, name)
        .ok_or_else(|| format!("no group \"{name}\" in {}", group_file.display()))
}

/// Not root, the process's own groups are all a session has: `mail-group` cannot add one.
fn not_root(mail_group: Option<&str>) {
    if let Some(group) = mail_group {
        log::warn!("{}", mail_group_ignored(group));
    }
}

/// What the start logs, and `--check-config` notes, when mail-group is set but the server is not root.
pub fn mail_group_ignored(group: &str) -> String {
    format!("mail-group {group} ignored: only root can give sessions a group")
}

/// `name`'s ids from the passwd and group files, as initgroups(3) would set them.
pub fn lookup(name: &str, passwd: &Path, group: &Path) -> Result<Ids, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let (entries, _) = unix_files::parse_passwd(&read(passwd)?);
    let entry = entries
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| format!("no user {name} in {}", passwd.display()))?;
    let groups = unix_files::groups_of(&read(group)?, name, entry.gid);
    Ok(Ids {
        uid: entry.uid,
        gid: entry.gid,
        groups,
    })
}

/// The whole process becomes `ids`, for good: groups, then gid, then uid (after setuid the others are
/// no longer allowed), then proof that root cannot be regained.
pub fn switch_process(ids: &Ids) -> Result<(), String> {
    // Emptied while root may (CAP_SETPCAP; a process that kept only what it needs has done so).
    crate::capabilities::empty_bounding_set();
    let groups: Vec<Gid> = ids.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
    unistd::setgid(Gid::from_raw(ids.gid)).map_err(|e| format!("setgid({}): {e}", ids.gid))?;
    unistd::setuid(Uid::from_raw(ids.uid)).map_err(|e| format!("setuid({}): {e}", ids.uid))?;
    let (uid, gid) = (Uid::from_raw(ids.uid), Gid::from_raw(ids.gid));
    // setuid as root sets the real, effective and saved uids; check all three took.
    let now = unistd::getresuid().map_err(|e| format!("getresuid: {e}"))?;
    let now_g = unistd::getresgid().map_err(|e| format!("getresgid: {e}"))?;
    if [now.real, now.effective, now.saved] != [uid; 3]
        || [now_g.real, now_g.effective, now_g.saved] != [gid; 3]
    {
        return Err(format!("ids after the switch are {now:?} {now_g:?}"));
    }
    if ids.uid != 0 && unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err("setuid(0) still succeeds after the switch".to_string());
    }
    Ok(())
}

/// The standalone `--user` account as the process becomes it (with `mail-group`), when started as
/// root; `None` otherwise, or when the account or group is unknown (start-up says so itself).
pub fn run_as_ids(run_as: Option<&str>, mail_group: Option<&str>) -> Option<Ids> {
    let name = run_as.filter(|_| is_root())?;
    let group = mail_group.map(group_id).transpose().ok()?;
    let ids = lookup(name, Path::new(PASSWD), Path::new(GROUP)).ok()?;
    Some(ids.with_group(group))
}

/// Which of `paths` `ids` cannot open for reading, with why: tried on a thread of its own that takes
/// on their file-system ids (the process keeps its own). Needs root.
pub fn unreadable_as(ids: &Ids, paths: &[&Path]) -> Result<Vec<(PathBuf, std::io::Error)>, String> {
    std::thread::scope(|scope| {
        let tried = scope.spawn(|| {
            switch_thread(ids)?;
            Ok(paths
                .iter()
                .filter_map(|p| std::fs::File::open(p).err().map(|e| (p.to_path_buf(), e)))
                .collect())
        });
        tried
            .join()
            .unwrap_or_else(|_| Err("the reading thread failed".to_string()))
    })
}

/// The calling thread's file-system identity becomes `ids`; other threads keep theirs. Linux only.
pub fn switch_thread(ids: &Ids) -> Result<(), String> {
    let groups: Vec<libc::gid_t> = ids.groups.clone();
    // SAFETY: the pointer and length describe `groups`, alive for the call. The raw system call changes
    // only this thread's credentials (glibc's and musl's setgroups() broadcast to every thread).
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if rc != 0 {
        return Err(format!("setgroups: {}", Errno::last()));
    }
    unistd::setfsgid(Gid::from_raw(ids.gid));
    unistd::setfsuid(Uid::from_raw(ids.uid));
    // setfsuid/setfsgid report no errors; they return the previous value, so setting again tells.
    let fsgid = unistd::setfsgid(Gid::from_raw(ids.gid)).as_raw();
    let fsuid = unistd::setfsuid(Uid::from_raw(ids.uid)).as_raw();
    let now = thread_groups().map_err(|e| format!("getgroups: {e}"))?;
    if fsuid != ids.uid || fsgid != ids.gid || !same_set(&now, &ids.groups) {
        return Err(format!(
            "file-system ids are {fsuid}/{fsgid} groups {now:?}, wanted {ids:?}"
        ));
    }
    Ok(())
}

/// The calling thread's supplementary groups, from getgroups(2) itself: nix's wrapper first asks
/// sysconf for NGROUPS_MAX, which glibc answers by reading /proc/sys/kernel/ngroups_max, three more
/// system calls on every login.
fn thread_groups() -> Result<Vec<u32>, Errno> {
    // SAFETY: a size of 0 asks for the count only, and nothing is written through the null pointer.
    let count = Errno::result(unsafe { libc::getgroups(0, std::ptr::null_mut()) })?;
    let mut groups: Vec<libc::gid_t> = vec![0; usize::try_from(count).unwrap_or(0)];
    // SAFETY: `groups` has room for `count` entries. Only this thread changes its own groups, so the
    // count cannot have grown in between.
    let got = Errno::result(unsafe { libc::getgroups(count, groups.as_mut_ptr()) })?;
    groups.truncate(usize::try_from(got).unwrap_or(0));
    Ok(groups)
}

fn same_set(a: &[u32], b: &[u32]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

#[cfg(test)]
#[path = "privs_tests.rs"]
mod tests;
