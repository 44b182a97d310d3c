//! What both front ends (`server`, `inetd`) share: the session services built from the configuration
//! (the user database, the SCRAM salt key, the APOP host name, the TLS certificate), the start-up error,
//! and what every connection goes through before its session (TCP keepalive, the APOP timestamp, the
//! client's address behind a PROXY protocol load balancer).

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{SockRef, TcpKeepalive};

use crate::auth::chain::Chain;
use crate::auth::lowercase::Lowercase;
use crate::auth::passwd_file::PasswdFile;
use crate::auth::system::{self, SystemUsers};
use crate::auth::{Authenticator, SaltKey};
use crate::config::{self, Config};
use crate::conn;
use crate::session::Services;
use crate::tls::{self, Acceptor};

/// A start-up failure: the message for `poplar: ...` and the exit status.
#[derive(Debug)]
pub struct StartError {
    pub status: u8,
    pub message: String,
    /// A listener that could not be bound: its option and its place among that option's addresses, so
    /// that the message can name the file and line that gave the address.
    pub listener: Option<(&'static str, usize)>,
}

impl StartError {
    pub fn config(message: impl Into<String>) -> StartError {
        StartError {
            status: 2,
            message: message.into(),
            listener: None,
        }
    }
    pub fn runtime(message: impl Into<String>) -> StartError {
        StartError {
            status: 1,
            message: message.into(),
            listener: None,
        }
    }

    /// `index`th address of `option` (`listen`, `listen-tls`) could not be bound; a runtime failure.
    pub(crate) fn bind(
        option: &'static str,
        index: usize,
        addr: SocketAddr,
        e: io::Error,
    ) -> StartError {
        StartError {
            status: 1,
            message: format!("{addr}: {e}"),
            listener: Some((option, index)),
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.listener {
            Some((option, _)) => write!(f, "{option} {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What the front ends need besides the session services.
pub struct Frontend {
    pub services: Services,
    pub timeout: Duration,
    /// Host name for the APOP timestamp, when APOP is offered.
    pub apop_host: Option<String>,
    /// The TLS certificate, when one is configured (STLS, `--listen-tls`, `--inetd --tls`).
    pub tls: Option<Acceptor>,
    /// Load balancers whose PROXY protocol header names the real client (`--proxy-from`).
    pub proxy_from: Vec<(IpAddr, u8)>,
    /// How long such a peer has to send its header: it is due at once, so the pre-login timer bounds it.
    pub proxy_timeout: Duration,
}

/// Builds the shared session services from the configuration. The identity change is the front end's
/// to set (see `privs`): it depends on the mode and must come after the listeners are bound.
pub fn frontend(config: &Config) -> Result<Frontend, StartError> {
    let apop_host = config
        .apop
        .then(|| config.hostname.clone().unwrap_or_else(system_hostname));
    let tls = tls::from_config(config).map_err(|e| StartError::config(e.to_string()))?;
    if let Some(acceptor) = &tls {
        log::debug!("{}: TLS certificate loaded", acceptor.cert_path().display());
    }
    let mut services = Services::new(user_databases(config)?, config.mail.clone());
    services.auth_failure_delay = config.auth_failure_delay;
    services.max_auth_attempts = config.max_auth_attempts;
    services.login_timeout = config.effective_login_timeout();
    services.timeout = config.timeout;
    services.maildrop = crate::maildrop::Options {
        mbox_uidl: config.mbox_uidl,
        maildir_uidl: config.maildir_uidl,
        dovecot_uidl_format: config.dovecot_uidl_format.clone(),
    };
    if let Some(path) = &config.scram_salt_key {
        services.salt_key = SaltKey::load(path, run_as_uid(config))
            .map_err(|e| StartError::config(e.to_string()))?;
    }
    services.stls = tls.is_some();
    services.lowercase_users = config.lowercase_users;
    // Passwords stay off the wire by default as soon as TLS can protect them.
    services.no_plaintext = config.no_plaintext.unwrap_or(tls.is_some());
    Ok(Frontend {
        services,
        timeout: config.timeout,
        apop_host,
        tls,
        proxy_from: config.proxy_from.clone(),
        proxy_timeout: config.effective_login_timeout(),
    })
}

/// Standalone with `--user` as root: the files the server reads again after start-up (the passwd-file
/// when it changes, the certificate, key and salt key at SIGHUP) that the account cannot read, each a
/// warning: start-up read them as root, and every later read would fail, keeping what was read
/// first (a password changed or an account locked in the file would not take effect).
pub fn unreadable_by_run_as(config: &Config) -> Vec<String> {
    if config.inetd {
        return Vec::new();
    }
    let Some(ids) =
        crate::privs::run_as_ids(config.run_as.as_deref(), config.mail_group.as_deref())
    else {
        return Vec::new();
    };
    let name = config.run_as.as_deref().unwrap_or_default();
    let files = [
        (
            "passwd",
            &config.passwd,
            "changes to it (new or changed passwords, locked or removed users) take effect only at a restart",
        ),
        (
            "tls-cert",
            &config.tls_cert,
            "SIGHUP cannot load a renewed one",
        ),
        (
            "tls-key",
            &config.tls_key,
            "SIGHUP cannot load a renewed one",
        ),
        (
            "scram-salt-key",
            &config.scram_salt_key,
            "SIGHUP cannot load it",
        ),
    ];
    let paths: Vec<&Path> = files.iter().filter_map(|(_, p, _)| p.as_deref()).collect();
    let unreadable = match crate::privs::unreadable_as(&ids, &paths) {
        Ok(unreadable) => unreadable,
        Err(e) => return vec![format!("cannot tell what --user {name} can read: {e}")],
    };
    files
        .iter()
        .filter_map(|(option, path, consequence)| {
            let (path, err) = unreadable.iter().find(|(p, _)| Some(p) == path.as_ref())?;
            Some(format!(
                "--user {name} cannot read {option} {} ({err}): {consequence}; make it readable by {name}",
                path.display()
            ))
        })
        .collect()
}

/// The uid of the `--user` account, if one is named and found: the owner a key file may also have.
pub fn run_as_uid(config: &Config) -> Option<u32> {
    let name = config.run_as.as_deref()?;
    let (passwd, group) = (
        Path::new(crate::privs::PASSWD),
        Path::new(crate::privs::GROUP),
    );
    crate::privs::lookup(name, passwd, group)
        .ok()
        .map(|ids| ids.uid)
}

/// The passwd-file, the system accounts, or both: then the passwd-file is asked first, and a name it
/// has is decided by it alone (see `auth::chain`).
fn user_databases(config: &Config) -> Result<Arc<dyn Authenticator>, StartError> {
    let mut sources: Vec<Arc<dyn Authenticator>> = Vec::new();
    if let Some(path) = &config.passwd {
        let passwd = PasswdFile::open(path).map_err(|e| StartError::config(e.to_string()))?;
        log::debug!(
            "{}: {}",
            path.display(),
            crate::proto::reply::Tally(passwd.user_count() as u64, "user")
        );
        if let Some(warning) = crate::check::nobody_logs_in(config, &passwd) {
            log::warn!("{warning}");
        }
        sources.push(Arc::new(passwd));
    }
    if config.system_users {
        // (With --user in standalone mode, refused by `Config::conflicts`.)
        let (passwd, shadow) = (Path::new(system::PASSWD), Path::new(system::SHADOW));
        let users = SystemUsers::open(passwd, shadow).map_err(StartError::config)?;
        log::debug!("system accounts: {} may log in", users.user_count());
        sources.push(Arc::new(users));
    }
    let users: Arc<dyn Authenticator> = match sources.len() {
        0 => {
            return Err(StartError::config(
                "no user database: set --passwd FILE or --system-users",
            ));
        }
        1 => sources.remove(0),
        _ => Arc::new(Chain::new(sources)),
    };
    if config.lowercase_users {
        return Ok(Arc::new(Lowercase(users)));
    }
    Ok(users)
}

fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// RFC 1939 section 7: the timestamp "MUST be different each time the POP3 server issues a banner
/// greeting". Process id, a per-process counter, the time and random bytes make it unique even for two
/// connections in the same second, and unpredictable.
pub fn apop_timestamp(host: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random = getrandom::u64().unwrap_or(now ^ counter.rotate_left(32));
    crate::auth::apop::timestamp(std::process::id(), counter, now, random, host)
}

/// TCP keepalive: a vanished client (no FIN, no RST) is found within about two minutes, so it does not
/// hold its maildrop lock until the autologout timer expires.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 6;

pub fn keepalive(socket: &SockRef<'_>) -> io::Result<()> {
    let params = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket.set_tcp_keepalive(&params)
}

/// The client's address for logs and limits: the connection's peer, or, when that peer is a load balancer
/// in `--proxy-from`, the client named by the PROXY protocol header it must send first. `None`: the
/// header was missing or malformed, and the connection is to be closed (it has been logged).
pub fn client_address<R: Read + AsFd>(
    conn: &mut R,
    peer: SocketAddr,
    frontend: &Frontend,
) -> Option<SocketAddr> {
    if !config::in_networks(peer.ip(), &frontend.proxy_from) {
        return Some(peer);
    }
    match conn::read_proxy_header(conn, peer, frontend.proxy_timeout) {
        Ok(client) => {
            log::debug!("peer={peer}: PROXY protocol header names {client}");
            Some(client)
        }
        Err(e) => {
            log::warn!("peer={peer}: {e}; closing");
            None
        }
    }
}
