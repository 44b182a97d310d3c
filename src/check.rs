//! `--check-config`, as `nginx -t` or `doveconf -n`: checks what the server would need at start-up (the
//! passwd-file loads, certificate files are readable, the run-as account exists, settings that only make
//! sense together are together) and renders the effective settings as a configuration file. It starts no
//! listener and changes nothing.

use std::fmt::Write as _;
use std::path::Path;

use crate::auth::passwd_file::PasswdFile;
use crate::cli::Origins;
use crate::config::{Config, ConfigError, DEFAULT_PORT, Origin};
use crate::proto::reply::Tally;

/// Checks `config`; on success returns the text to print: the effective settings as `key = value` lines,
/// with notes and warnings as `#` comments, so the output is itself a valid configuration file. The first
/// problem is returned as `file:line: option: problem` (or `--option: problem`).
pub fn run(config: &Config, origins: &Origins) -> Result<String, ConfigError> {
    let mut notes = validate(config, origins)?;
    notes.extend(
        config
            .warnings()
            .into_iter()
            .chain(crate::startup::unreadable_by_run_as(config))
            .map(|w| format!("warning: {w}")),
    );
    notes.extend(ignored_settings(config));
    let mut out = String::from("# poplar --check-config: the configuration is valid\n");
    for note in notes {
        let _ = writeln!(out, "# {note}");
    }
    for (name, value) in effective(config) {
        let _ = writeln!(out, "{name} = {value}");
    }
    Ok(out)
}

/// The checks alone: what the server needs at start-up. Also run when the server failed to start or
/// to reload, to name the file, line and option of the cause. Returns notes for the output.
pub fn validate(config: &Config, origins: &Origins) -> Result<Vec<String>, ConfigError> {
    let mut notes = Vec::new();
    check_passwd(config, origins, &mut notes)?;
    check_scram_salt_key(config, origins)?;
    check_tls(config, origins)?;
    check_user(config, origins)?;
    notes.extend(fallback_below_first_valid(config));
    check_mail_group(config, origins, crate::privs::is_root(), &mut notes)?;
    Ok(notes)
}

/// Settings given that do nothing as configured. Said here only, not at start-up: under inetd a
/// configuration file shared with a standalone server sets them (the shipped one does), and each
/// connection would log it.
fn ignored_settings(config: &Config) -> Vec<String> {
    let default = Config::default();
    let mut notes = Vec::new();
    if config.inetd {
        let standalone_only: Vec<&str> = [
            ("max-sessions", config.max_sessions != default.max_sessions),
            ("max-per-ip", config.max_per_ip != default.max_per_ip),
            ("ipv6-prefix", config.ipv6_prefix != default.ipv6_prefix),
            (
                "shutdown-grace",
                config.shutdown_grace != default.shutdown_grace,
            ),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if !standalone_only.is_empty() {
            notes.push(format!(
                "note: {} apply to the standalone server only; under inetd the launcher's limits do",
                standalone_only.join(", ")
            ));
        }
    }
    if config.hostname.is_some() && !config.apop {
        notes.push("note: hostname is used only by apop, which is off".to_string());
    }
    notes
}

fn problem(origins: &Origins, option: &str, problem: String) -> ConfigError {
    ConfigError {
        origin: origins.of(option),
        option: option.to_string(),
        problem,
    }
}

/// The passwd-file must load as the server would load it. A bad line is reported at its own `file:line`.
fn check_passwd(
    config: &Config,
    origins: &Origins,
    notes: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Some(path) = &config.passwd else {
        if config.system_users {
            return Ok(());
        }
        return Err(problem(
            origins,
            "passwd",
            "no user database: set passwd = FILE".to_string(),
        ));
    };
    match PasswdFile::open(path) {
        Ok(users) => {
            notes.push(format!(
                "{}: {}",
                path.display(),
                Tally(users.user_count() as u64, "user")
            ));
            notes.push(scram_offer(config, &users).to_string());
            notes.extend(nobody_logs_in(config, &users).map(|w| format!("warning: {w}")));
            notes.extend(salts_per_connection(config, &users));
            notes.extend(unusable_accounts(config, path, &users));
            notes.extend(names_only_auth_takes(path, &users));
            notes.extend(
                users
                    .faulty_hash_warnings()
                    .into_iter()
                    .map(|w| format!("warning: {w}")),
            );
            Ok(())
        }
        Err(e) => Err(match e.line {
            Some(line) => ConfigError {
                origin: Origin::File { path: e.path, line },
                option: "passwd".to_string(),
                problem: e.problem,
            },
            None => problem(
                origins,
                "passwd",
                format!("{}: {}", e.path.display(), e.problem),
            ),
        }),
    }
}

/// The SCRAM salt key file must load as the server would load it (length, permissions).
fn check_scram_salt_key(config: &Config, origins: &Origins) -> Result<(), ConfigError> {
    let Some(path) = &config.scram_salt_key else {
        return Ok(());
    };
    crate::auth::SaltKey::load(path, crate::startup::run_as_uid(config))
        .map(drop)
        .map_err(|e| problem(origins, "scram-salt-key", e.to_string()))
}

/// Whether AUTH SCRAM-SHA-256 will be offered, and if not why: an admin who wants it must know what keeps
/// it away (the rule is `Authenticator::scram_for_every_user`'s).
fn scram_offer(config: &Config, users: &PasswdFile) -> &'static str {
    use crate::auth::Authenticator;
    if config.system_users {
        "AUTH SCRAM-SHA-256 not offered: system-users is on, and system accounts cannot use it"
    } else if users.scram_for_every_user() {
        "AUTH SCRAM-SHA-256 offered: every user who can log in has a {PLAIN} or {SCRAM-SHA-256} password"
    } else {
        "AUTH SCRAM-SHA-256 not offered: a user who can log in has a hashed password, or no user can log in"
    }
}

/// no-plaintext without a certificate leaves APOP (for `{PLAIN}` users) and AUTH SCRAM-SHA-256;
/// without either, no one can log in, which the server would only show as refused logins. Said by
/// `--check-config` and at start-up.
pub fn nobody_logs_in(config: &Config, users: &PasswdFile) -> Option<&'static str> {
    use crate::auth::Authenticator;
    let plaintext_refused = config.no_plaintext == Some(true) && config.tls_cert.is_none();
    let scram = !config.system_users && users.scram_for_every_user();
    let apop = config.apop && users.any_plaintext();
    (plaintext_refused && !apop && !scram).then_some(
        "no user can log in: no-plaintext without tls-cert leaves only AUTH SCRAM-SHA-256, which is \
         not offered, and APOP, which is off or has no {PLAIN} user",
    )
}

/// Under inetd each connection is a new process, and without `scram-salt-key` each draws its own
/// random salt key: a name's SCRAM salt then changes from one connection to the next, except for a
/// user whose keys are stored ({SCRAM-SHA-256}), whose salt is stored too. Two AUTH attempts tell
/// such users from everyone else. Warned here rather than at each connection's start.
fn salts_per_connection(config: &Config, users: &PasswdFile) -> Option<String> {
    use crate::auth::Authenticator;
    let offered = !config.system_users && users.scram_for_every_user();
    (offered && config.inetd && config.scram_salt_key.is_none()).then(|| {
        "warning: scram-salt-key: not set under inetd: each connection draws its own salt key, \
         so SCRAM salts change per connection, except stored {SCRAM-SHA-256} users'"
            .to_string()
    })
}

/// Shown at most, so that a file of thousands of users with the same mistake stays readable.
const MAX_ACCOUNT_WARNINGS: usize = 10;

/// Warnings for the accounts that can never log in as configured: their mail location does not expand
/// for them (`%d` for a name without a domain, `%h` without a home, a name no path may hold), their
/// name has capitals under `lowercase-users`, allow_nets lets them in only as `local` in standalone
/// mode, or, as root, they lack the uid and gid a session switches to (`privs::cannot_switch_to`) or
/// theirs are below `first-valid-uid` or `first-valid-gid` (`privs::below_first_valid`).
fn unusable_accounts(config: &Config, path: &Path, users: &PasswdFile) -> Vec<String> {
    // As root, sessions take on their accounts' ids, except in standalone mode with --user (the whole
    // server is that account); under inetd, --user is the account for those without ids.
    let switches = crate::privs::is_root() && (config.inetd || config.run_as.is_none());
    let has_fallback = config.inetd && config.run_as.is_some();
    account_warnings(
        path,
        users,
        "cannot log in",
        "who cannot log in",
        |account| {
            let location = account.policy.mail_location(&config.mail);
            let why = match location.expand(&account.name, account.home.as_deref()) {
                // Refused under any template, this one's escapes aside.
                Err(why) if crate::maildrop::location::check_user(&account.name).is_err() => {
                    format!("no mail location takes its name: {why}")
                }
                Err(why) => format!("its mail location {location} does not fit: {why}"),
                Ok(_)
                    if config.lowercase_users
                        && account.name.bytes().any(|b| b.is_ascii_uppercase()) =>
                {
                    "its name has capitals, and lowercase-users looks every name up in lowercase"
                        .to_string()
                }
                // Standalone sessions are TCP, and even a PROXY LOCAL header keeps an address.
                Ok(_)
                    if !config.inetd
                        && account
                            .policy
                            .allow_nets
                            .as_ref()
                            .is_some_and(|nets| nets.networks.is_empty()) =>
                {
                    "allow_nets admits only local sessions, which only --inetd serves".to_string()
                }
                Ok(_) if switches && crate::privs::cannot_switch_to(account, has_fallback) => {
                    if has_fallback {
                        "only one of uid and gid, which a server started as root refuses"
                    } else {
                        "no uid and gid, which a server started as root without --user needs"
                    }
                    .to_string()
                }
                Ok(_) if switches => {
                    crate::privs::below_first_valid(account, crate::privs::FirstValid::of(config))?
                }
                Ok(_) => return None,
            };
            Some(why)
        },
    )
}

/// `warning: FILE:LINE: user NAME {verdict}: WHY` for each account `why` has something to say of, in
/// file order; past [`MAX_ACCOUNT_WARNINGS`] of them, one line counts the rest, as "and N more users
/// {rest}".
fn account_warnings(
    path: &Path,
    users: &PasswdFile,
    verdict: &str,
    rest: &str,
    mut why: impl FnMut(&crate::auth::Account) -> Option<String>,
) -> Vec<String> {
    let mut warnings: Vec<String> = users
        .accounts()
        .into_iter()
        .filter_map(|(line, account)| {
            let why = why(&account)?;
            Some(format!(
                "warning: {}:{line}: user {} {verdict}: {why}",
                path.display(),
                crate::config::OneLine(&account.name)
            ))
        })
        .collect();
    if warnings.len() > MAX_ACCOUNT_WARNINGS {
        let more = warnings.len() - MAX_ACCOUNT_WARNINGS;
        warnings.truncate(MAX_ACCOUNT_WARNINGS);
        warnings.push(format!("warning: and {more} more users {rest}"));
    }
    warnings
}

/// Accounts only AUTH can name: USER and APOP end a name at a space (RFC 1939 arguments are separated
/// by spaces), and a name past 248 octets does not fit USER's 255-octet command line (RFC 2449
/// section 4) with its CRLF.
fn names_only_auth_takes(path: &Path, users: &PasswdFile) -> Vec<String> {
    const LONGEST_FOR_USER: usize = crate::proto::line::MAX_COMMAND_LINE - "USER \r\n".len();
    let why = |account: &crate::auth::Account| {
        if account.name.contains(' ') {
            Some("USER and APOP end a name at its first space".to_string())
        } else if account.name.len() > LONGEST_FOR_USER {
            Some("its name does not fit USER's 255-octet command line".to_string())
        } else {
            None
        }
    };
    account_warnings(
        path,
        users,
        "can log in only by AUTH",
        "only AUTH can log in",
        why,
    )
}

/// A certificate needs its key and the other way round; TLS listeners and implicit TLS need both; both
/// files must be readable by the user the server starts as.
fn check_tls(config: &Config, origins: &Origins) -> Result<(), ConfigError> {
    // Said first in a build without TLS: the files are beside the point when they cannot be used.
    if !cfg!(feature = "tls") {
        let given = [
            ("tls-cert", config.tls_cert.is_some()),
            ("tls-key", config.tls_key.is_some()),
            ("listen-tls", !config.listen_tls.is_empty()),
            ("tls", config.tls),
        ];
        if let Some((option, _)) = given.iter().find(|(_, set)| *set) {
            return Err(problem(
                origins,
                option,
                crate::tls::TlsError::NotBuilt.to_string(),
            ));
        }
    }
    let needs_cert = if !config.listen_tls.is_empty() {
        Some("listen-tls")
    } else if config.tls {
        Some("tls")
    } else {
        None
    };
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            readable(cert, origins, "tls-cert")?;
            readable(key, origins, "tls-key")?;
            // The full load the server does: PEM contents, a usable key, the key matching the certificate.
            crate::tls::from_config(config)
                .map(drop)
                .map_err(|e| problem(origins, e.option(cert, key), e.to_string()))
        }
        (Some(_), None) => Err(problem(
            origins,
            "tls-cert",
            "set without tls-key".to_string(),
        )),
        (None, Some(_)) => Err(problem(
            origins,
            "tls-key",
            "set without tls-cert".to_string(),
        )),
        (None, None) => match needs_cert {
            Some(option) => Err(problem(
                origins,
                option,
                "needs tls-cert and tls-key".to_string(),
            )),
            None => Ok(()),
        },
    }
}

fn readable(path: &Path, origins: &Origins, option: &str) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| problem(origins, option, format!("{}: {e}", path.display())))
}

fn check_user(config: &Config, origins: &Origins) -> Result<(), ConfigError> {
    let Some(name) = &config.run_as else {
        return Ok(());
    };
    match nix::unistd::User::from_name(name) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(problem(
                origins,
                "user",
                format!("no such account \"{name}\""),
            ));
        }
        Err(e) => {
            return Err(problem(
                origins,
                "user",
                format!("looking up \"{name}\": {e}"),
            ));
        }
    }
    // The standalone server started as root becomes the account, and refuses to below the limits.
    match user_below_first_valid(config).filter(|_| !config.inetd) {
        Some(why) => Err(problem(origins, "user", why)),
        None => Ok(()),
    }
}

/// Under inetd as root, `--user` serves the accounts without uid and gid: below `first-valid-uid` or
/// `first-valid-gid` (`--user root`), none of them can log in (`privs` refuses it as it would them).
fn fallback_below_first_valid(config: &Config) -> Option<String> {
    let name = config.run_as.as_ref().filter(|_| config.inetd)?;
    let why = user_below_first_valid(config)?;
    Some(format!(
        "warning: user {name}: accounts without uid and gid, served as it, cannot log in: {why}"
    ))
}

/// Why the `--user` account is below `first-valid-uid` or `first-valid-gid`, started as root (where
/// identities change); looked up as the server looks it up (`privs::lookup`).
fn user_below_first_valid(config: &Config) -> Option<String> {
    let name = config
        .run_as
        .as_deref()
        .filter(|_| crate::privs::is_root())?;
    let passwd = Path::new(crate::privs::PASSWD);
    let ids = crate::privs::lookup(name, passwd, Path::new(crate::privs::GROUP)).ok()?;
    crate::privs::FirstValid::of(config).refuses(ids.uid, ids.gid)
}

/// The group must exist; started other than as root (`root` false) the server ignores it, which the
/// check says as the start would.
fn check_mail_group(
    config: &Config,
    origins: &Origins,
    root: bool,
    notes: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let Some(name) = &config.mail_group else {
        return Ok(());
    };
    crate::privs::group_id(name).map_err(|e| problem(origins, "mail-group", e))?;
    if !root {
        notes.push(format!(
            "warning: {} (this check runs as uid {})",
            crate::privs::mail_group_ignored(name),
            nix::unistd::geteuid()
        ));
    }
    Ok(())
}

/// Every setting with the value the server would use, in `SETTINGS` order. Defaults are written out
/// (the listen addresses too), unset optional paths are left out. Nothing here is a secret: the
/// passwords live in the passwd-file and the SCRAM salt key in its file, which are named, never printed.
///
/// Long because it is a flat table, one entry per setting, best read whole against `SETTINGS`.
pub fn effective(config: &Config) -> Vec<(&'static str, String)> {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    let secs = |d: std::time::Duration| d.as_secs().to_string();
    let mut out = vec![("inetd", yes_no(config.inetd))];
    // As `listen::listeners`: the port 110 default only when no listener of either kind is given, and
    // not under inetd, where reading them back would warn that they have no effect.
    if config.listen.is_empty() && config.listen_tls.is_empty() && !config.inetd {
        out.push(("listen", format!("[::]:{DEFAULT_PORT}")));
        out.push(("listen", format!("0.0.0.0:{DEFAULT_PORT}")));
    }
    out.extend(config.listen.iter().map(|a| ("listen", a.to_string())));
    out.extend(
        config
            .passwd
            .iter()
            .map(|p| ("passwd", p.display().to_string())),
    );
    out.extend(
        config
            .scram_salt_key
            .iter()
            .map(|p| ("scram-salt-key", p.display().to_string())),
    );
    out.push(("mail", config.mail.to_string()));
    out.push(("mbox-uidl", config.mbox_uidl.name().to_string()));
    out.push(("maildir-uidl", config.maildir_uidl.name().to_string()));
    out.push((
        "dovecot-uidl-format",
        config.dovecot_uidl_format.to_string(),
    ));
    out.extend(config.hostname.iter().map(|h| ("hostname", h.clone())));
    out.push(("apop", yes_no(config.apop)));
    out.push(("lowercase-users", yes_no(config.lowercase_users)));
    out.push(("timeout", secs(config.timeout)));
    out.push(("max-sessions", config.max_sessions.to_string()));
    out.push(("auth-failure-delay", secs(config.auth_failure_delay)));
    out.push((
        "log-level",
        config.log_level.to_string().to_ascii_lowercase(),
    ));
    out.extend(config.run_as.iter().map(|u| ("user", u.clone())));
    out.extend(config.mail_group.iter().map(|g| ("mail-group", g.clone())));
    out.push(("system-users", yes_no(config.system_users)));
    out.push(("first-valid-uid", config.first_valid_uid.to_string()));
    out.push(("first-valid-gid", config.first_valid_gid.to_string()));
    out.push(("max-per-ip", config.max_per_ip.to_string()));
    out.push(("ipv6-prefix", config.ipv6_prefix.to_string()));
    // As `startup::frontend`: AUTHORIZATION never lasts longer than an idle logged-in session.
    out.push(("login-timeout", secs(config.effective_login_timeout())));
    out.push(("max-auth-attempts", config.max_auth_attempts.to_string()));
    out.extend(
        config
            .tls_cert
            .iter()
            .map(|p| ("tls-cert", p.display().to_string())),
    );
    out.extend(
        config
            .tls_key
            .iter()
            .map(|p| ("tls-key", p.display().to_string())),
    );
    out.extend(
        config
            .listen_tls
            .iter()
            .map(|a| ("listen-tls", a.to_string())),
    );
    out.push(("tls", yes_no(config.tls)));
    out.push((
        "no-plaintext",
        yes_no(config.no_plaintext.unwrap_or(config.tls_cert.is_some())),
    ));
    if !config.proxy_from.is_empty() {
        let nets: Vec<String> = config
            .proxy_from
            .iter()
            .map(|(net, prefix)| format!("{net}/{prefix}"))
            .collect();
        out.push(("proxy-from", nets.join(",")));
    }
    out.push(("shutdown-grace", secs(config.shutdown_grace)));
    out
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
