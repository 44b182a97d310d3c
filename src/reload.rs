//! What a SIGHUP changes in the standalone server: the settings new sessions start with. Running
//! sessions keep the `Frontend` they started with (they hold an `Arc` of it) and are never dropped; a new
//! `Frontend`, with a freshly read passwd-file, serves the sessions accepted after the reload. Settings
//! fixed when the server started (the sockets it bound, the account it runs as) are reported as needing
//! a restart. Reading the files is the caller's job; this file only swaps what was read.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::session::UpdateGate;
use crate::startup::Frontend;

/// The settings the accept loop reads for every new connection.
pub struct Live {
    pub frontend: Arc<Frontend>,
    pub max_sessions: usize,
    pub shutdown_grace: Duration,
}

impl Live {
    pub fn new(config: &Config, frontend: Arc<Frontend>) -> Live {
        Live {
            frontend,
            max_sessions: config.max_sessions,
            shutdown_grace: config.shutdown_grace,
        }
    }

    /// Puts a reloaded configuration into effect for new sessions. `started` is the configuration the
    /// server started with, which fixed its listeners.
    pub fn replace(&mut self, started: &Config, new: &Config, frontend: Frontend) {
        for setting in restart_only_changes(started, new) {
            log::warn!("reload: {setting} changed; ignored until a restart");
        }
        log::set_max_level(new.log_level);
        self.frontend = Arc::new(frontend);
        self.max_sessions = new.max_sessions;
        self.shutdown_grace = new.shutdown_grace;
        log::info!("reload: configuration and passwd-file re-read; new sessions use them");
    }

    /// The UPDATE gate every configuration's sessions share (see `UpdateGate`).
    pub fn updates(&self) -> &UpdateGate {
        &self.frontend.services.updates
    }
}

/// The settings that differ but only take effect at start-up: the sockets are bound, and privileges are
/// dropped, once.
pub fn restart_only_changes(started: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    // A standalone server stays one; `inetd` (and `tls`, which only inetd mode reads) would take effect
    // at the next start, in another mode.
    if started.inetd != new.inetd {
        changed.push("inetd");
    }
    if started.tls != new.tls {
        changed.push("tls");
    }
    if started.listen != new.listen {
        changed.push("listen");
    }
    if started.listen_tls != new.listen_tls {
        changed.push("listen-tls");
    }
    if started.run_as != new.run_as {
        changed.push("user");
    }
    if started.mail_group != new.mail_group {
        changed.push("mail-group");
    }
    if started.first_valid_uid != new.first_valid_uid {
        changed.push("first-valid-uid");
    }
    if started.first_valid_gid != new.first_valid_gid {
        changed.push("first-valid-gid");
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_start_up_settings_need_a_restart() {
        let started = Config::default();
        let table: &[(&str, &str, &[&str])] = &[
            ("timeout", "900", &[]),
            ("max-sessions", "5", &[]),
            ("mail", "mbox:/var/mail/%u", &[]),
            ("maildir-uidl", "dovecot", &[]),
            ("dovecot-uidl-format", "%v.%u", &[]),
            ("listen", "127.0.0.1:1110", &["listen"]),
            ("listen-tls", "127.0.0.1:1995", &["listen-tls"]),
            ("user", "nobody", &["user"]),
            ("mail-group", "mail", &["mail-group"]),
            ("first-valid-uid", "0", &["first-valid-uid"]),
            ("first-valid-gid", "0", &["first-valid-gid"]),
            ("inetd", "yes", &["inetd"]),
            ("tls", "yes", &["tls"]),
        ];
        for (name, value, want) in table {
            let mut new = Config::default();
            new.set(name, Some(value)).unwrap();
            assert_eq!(restart_only_changes(&started, &new), *want, "{name}");
        }
    }

    /// poplar(8)'s SIGHUP entry lists every setting a reload leaves for a restart.
    #[test]
    fn the_manual_lists_the_settings_that_need_a_restart() {
        let man = include_str!("../man/poplar.8");
        let sighup = man
            .split_once(".It Dv SIGHUP\n")
            .and_then(|(_, rest)| rest.split_once("\n.It ").or(rest.split_once("\n.El")))
            .expect("a SIGHUP entry")
            .0;
        let mut new = Config::default();
        for (name, value) in [
            ("inetd", "yes"),
            ("tls", "yes"),
            ("listen", "127.0.0.1:1110"),
            ("listen-tls", "127.0.0.1:1995"),
            ("user", "nobody"),
            ("mail-group", "mail"),
            ("first-valid-uid", "0"),
            ("first-valid-gid", "0"),
        ] {
            new.set(name, Some(value)).unwrap();
        }
        let restart_only = restart_only_changes(&Config::default(), &new);
        assert_eq!(restart_only.len(), 8);
        for name in restart_only {
            assert!(
                sighup
                    .lines()
                    .any(|l| l.starts_with(&format!(".Cm {name}"))),
                "{name} missing from the SIGHUP entry:\n{sighup}"
            );
        }
    }
}
