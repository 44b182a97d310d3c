//! The typed `Config`, its defaults and limits, and the one setter shared by command-line flags and
//! `key = value` configuration files. Pure: reading the file is the caller's job. The parsers of single
//! values are in `values`; the file's `key = value` lines and the errors naming their origin in `file`.

mod file;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use crate::maildrop::location::Location;
use crate::maildrop::maildir_uidl::MaildirUidl;
use crate::maildrop::mbox::UidlSource;
use crate::maildrop::uidl_format::UidlFormat;
use values::{
    boolean, nonempty, number, parse_hostname, parse_level, parse_listen, parse_maildir_uidl,
    parse_mbox_uidl, required, verbatim,
};

// Callers keep naming these `crate::config::...`: the split into files is this module's own business.
pub(crate) use file::OneLine;
pub use file::{ConfigError, FileSetting, Origin, apply_file, parse_file_text};
pub(crate) use values::parse_cidrs;
pub use values::{in_networks, is_no, is_yes};

/// RFC 1939 section 3: "the autologout timer MUST be of at least 10 minutes' duration." Lower values are
/// accepted with a warning because operators (and tests) sometimes need them.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Concurrent sessions in standalone mode. Each idle session costs a thread with a small stack and a few
/// KiB of buffers, so a small host can afford this many; raise it on bigger ones.
pub const DEFAULT_MAX_SESSIONS: usize = 100;

/// Delay before answering a failed login, as Dovecot's `auth_failure_delay`: slows password guessing and
/// hides which of user name or password was wrong behind identical timing.
pub const DEFAULT_AUTH_FAILURE_DELAY_SECS: u64 = 2;

/// Sessions from one client address: enough for a household behind one NAT address polling several
/// accounts, few enough that one host cannot take every session slot.
pub const DEFAULT_MAX_PER_IP: usize = 10;

/// The IPv6 network `--max-per-ip` counts as one client: a /64 is what one subscriber or LAN is given
/// (RFC 6177 recommends more), so counting each address would let one client take every session slot.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// Failed logins allowed on one connection before it is closed (as popa3d's AUTH_FAILED_LIMIT idea):
/// a real user mistypes once or twice; a guesser must reconnect and pay the connection cost again.
pub const DEFAULT_MAX_AUTH_ATTEMPTS: u32 = 3;

/// After SIGTERM, how long running sessions may go on before the process exits. Exiting mid-session loses
/// nothing (only QUIT deletes), and a session inside UPDATE is always waited for.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;

/// The lowest uid and gid a session may take on when the server changes identities, as Dovecot's
/// `first_valid_uid` and `first_valid_gid`. A session served as root (a passwd-file line with uid 0,
/// `userdb_uid=0`, or `--user root` under inetd) keeps CAP_DAC_READ_SEARCH and owner rights on root's
/// files, so a symlinked `cur/` or mbox path would read any file on the host: refused unless lowered.
pub const DEFAULT_FIRST_VALID_UID: u32 = 1;
pub const DEFAULT_FIRST_VALID_GID: u32 = 1;

/// The largest uid and gid the limits can be: (uid_t)-1 is "no change" to setresuid(2), never an id.
pub const MAX_ID: u64 = 4_294_967_294;

/// The default maildrop: a Maildir in the user's home, as Dovecot and qmail-pop3d set-ups use.
pub const DEFAULT_MAIL: &str = "maildir:%h/Maildir";

/// POP3's well-known port (RFC 1939 section 3).
pub const DEFAULT_PORT: u16 = 110;

/// Every setting poplar has. Built by [`Config::set`] from flags and files.
#[derive(Debug, Clone)]
pub struct Config {
    pub inetd: bool,
    /// Empty means the default: port 110 on all IPv6 and IPv4 addresses.
    pub listen: Vec<SocketAddr>,
    pub passwd: Option<PathBuf>,
    /// The file whose contents key the derived SCRAM salts; without it, a key drawn per process.
    pub scram_salt_key: Option<PathBuf>,
    pub mail: Location,
    /// mbox unique-ids: popa3d's (default) or `X-UIDL:` headers where present.
    pub mbox_uidl: UidlSource,
    /// Maildir unique-ids: base names (default) or Dovecot's, from `dovecot-uidlist`.
    pub maildir_uidl: MaildirUidl,
    /// With `maildir_uidl` Dovecot: the `pop3_uidl_format` Dovecot's POP3 server used.
    pub dovecot_uidl_format: UidlFormat,
    pub hostname: Option<String>,
    pub apop: bool,
    /// User names are looked up in ASCII lowercase, whatever case the client sent.
    pub lowercase_users: bool,
    pub timeout: Duration,
    pub max_sessions: usize,
    pub auth_failure_delay: Duration,
    pub log_level: LevelFilter,
    // Security (privileges, system accounts, limits).
    /// Standalone: the account to switch to after binding the listeners.
    pub run_as: Option<String>,
    /// A group every session also gets when the server changes identities as root (an mbox spool such
    /// as Debian's /var/mail is writable by group mail only, and the dotlocks are created there).
    pub mail_group: Option<String>,
    pub system_users: bool,
    /// When the server changes identities: accounts with a lower uid (gid) are refused.
    pub first_valid_uid: u32,
    pub first_valid_gid: u32,
    pub max_per_ip: usize,
    pub ipv6_prefix: u8,
    /// Given, or None: the default, 10 minutes (see `effective_login_timeout`).
    pub login_timeout: Option<Duration>,
    pub max_auth_attempts: u32,
    // TLS (RFC 2595 STLS, RFC 8314 implicit TLS).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub listen_tls: Vec<SocketAddr>,
    /// inetd: the connection starts with a TLS handshake (port 995).
    pub tls: bool,
    /// Refuse plaintext passwords before TLS. `None`: the default, which is "yes" when a certificate is set.
    pub no_plaintext: Option<bool>,
    // Operations.
    /// Addresses allowed to send a PROXY protocol header, as (network, prefix length).
    pub proxy_from: Vec<(std::net::IpAddr, u8)>,
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            inetd: false,
            listen: Vec::new(),
            passwd: None,
            scram_salt_key: None,
            mail: DEFAULT_MAIL.parse().expect("default mail location parses"),
            mbox_uidl: UidlSource::default(),
            maildir_uidl: MaildirUidl::default(),
            dovecot_uidl_format: UidlFormat::default(),
            hostname: None,
            apop: false,
            lowercase_users: false,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            max_sessions: DEFAULT_MAX_SESSIONS,
            auth_failure_delay: Duration::from_secs(DEFAULT_AUTH_FAILURE_DELAY_SECS),
            log_level: LevelFilter::Info,
            run_as: None,
            mail_group: None,
            system_users: false,
            first_valid_uid: DEFAULT_FIRST_VALID_UID,
            first_valid_gid: DEFAULT_FIRST_VALID_GID,
            max_per_ip: DEFAULT_MAX_PER_IP,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            login_timeout: None,
            max_auth_attempts: DEFAULT_MAX_AUTH_ATTEMPTS,
            tls_cert: None,
            tls_key: None,
            listen_tls: Vec::new(),
            tls: false,
            no_plaintext: None,
            proxy_from: Vec::new(),
            shutdown_grace: Duration::from_secs(DEFAULT_SHUTDOWN_GRACE_SECS),
        }
    }
}

/// Whether an option takes a value, for both the command line and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Flag,
    Value,
}

/// The settings that can appear in a file or as `--name`: (name, arity, what the value is).
pub const SETTINGS: &[(&str, Arity, &str)] = &[
    ("inetd", Arity::Flag, ""),
    ("listen", Arity::Value, "ADDR:PORT"),
    ("passwd", Arity::Value, "FILE"),
    ("scram-salt-key", Arity::Value, "FILE"),
    ("mail", Arity::Value, "LOCATION"),
    ("mbox-uidl", Arity::Value, "popa3d|x-uidl"),
    ("maildir-uidl", Arity::Value, "name|dovecot"),
    ("dovecot-uidl-format", Arity::Value, "FORMAT"),
    ("hostname", Arity::Value, "NAME"),
    ("apop", Arity::Flag, ""),
    ("lowercase-users", Arity::Flag, ""),
    ("timeout", Arity::Value, "SECS"),
    ("max-sessions", Arity::Value, "N"),
    ("auth-failure-delay", Arity::Value, "SECS"),
    ("log-level", Arity::Value, "LEVEL"),
    ("user", Arity::Value, "NAME"),
    ("mail-group", Arity::Value, "GROUP"),
    ("system-users", Arity::Flag, ""),
    ("first-valid-uid", Arity::Value, "N"),
    ("first-valid-gid", Arity::Value, "N"),
    ("max-per-ip", Arity::Value, "N"),
    ("ipv6-prefix", Arity::Value, "LEN"),
    ("login-timeout", Arity::Value, "SECS"),
    ("max-auth-attempts", Arity::Value, "N"),
    ("tls-cert", Arity::Value, "FILE"),
    ("tls-key", Arity::Value, "FILE"),
    ("listen-tls", Arity::Value, "ADDR:PORT"),
    ("tls", Arity::Flag, ""),
    ("no-plaintext", Arity::Flag, ""),
    ("proxy-from", Arity::Value, "CIDR[,CIDR...]"),
    ("shutdown-grace", Arity::Value, "SECS"),
];

/// Looks a setting up by name.
pub fn arity(name: &str) -> Option<Arity> {
    SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, a, _)| *a)
}

impl Config {
    /// The one setter: `value` is `None` for a bare flag on the command line. Errors are the problem only;
    /// the caller adds where the setting came from.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
        match name {
            "inetd" => self.inetd = boolean(value)?,
            "apop" => self.apop = boolean(value)?,
            "lowercase-users" => self.lowercase_users = boolean(value)?,
            "listen" => self.listen.push(parse_listen(required(value)?)?),
            "passwd" => self.passwd = Some(PathBuf::from(verbatim(required(value)?)?)),
            "scram-salt-key" => {
                self.scram_salt_key = Some(PathBuf::from(verbatim(required(value)?)?))
            }
            "mail" => self.mail = required(value)?.parse()?,
            "mbox-uidl" => self.mbox_uidl = parse_mbox_uidl(required(value)?)?,
            "maildir-uidl" => self.maildir_uidl = parse_maildir_uidl(required(value)?)?,
            "dovecot-uidl-format" => {
                self.dovecot_uidl_format =
                    UidlFormat::parse(nonempty(required(value)?)?).map_err(|e| e.to_string())?
            }
            "hostname" => self.hostname = Some(parse_hostname(required(value)?)?),
            "timeout" => self.timeout = Duration::from_secs(number(required(value)?, 1, 86_400)?),
            "max-sessions" => self.max_sessions = number(required(value)?, 1, 1_000_000)? as usize,
            "auth-failure-delay" => {
                self.auth_failure_delay = Duration::from_secs(number(required(value)?, 0, 60)?)
            }
            "log-level" => self.log_level = parse_level(required(value)?)?,
            "user" => self.run_as = Some(verbatim(required(value)?)?.to_string()),
            "mail-group" => self.mail_group = Some(verbatim(required(value)?)?.to_string()),
            "system-users" => self.system_users = boolean(value)?,
            "first-valid-uid" => self.first_valid_uid = number(required(value)?, 0, MAX_ID)? as u32,
            "first-valid-gid" => self.first_valid_gid = number(required(value)?, 0, MAX_ID)? as u32,
            "max-per-ip" => self.max_per_ip = number(required(value)?, 1, 1_000_000)? as usize,
            "ipv6-prefix" => self.ipv6_prefix = number(required(value)?, 1, 128)? as u8,
            "login-timeout" => {
                self.login_timeout = Some(Duration::from_secs(number(required(value)?, 1, 86_400)?))
            }
            "max-auth-attempts" => {
                self.max_auth_attempts = number(required(value)?, 1, 100)? as u32
            }
            "tls-cert" => self.tls_cert = Some(PathBuf::from(verbatim(required(value)?)?)),
            "tls-key" => self.tls_key = Some(PathBuf::from(verbatim(required(value)?)?)),
            "listen-tls" => self.listen_tls.push(parse_listen(required(value)?)?),
            "tls" => self.tls = boolean(value)?,
            "no-plaintext" => self.no_plaintext = Some(boolean(value)?),
            "proxy-from" => self.proxy_from = parse_cidrs(nonempty(required(value)?)?)?,
            "shutdown-grace" => {
                self.shutdown_grace = Duration::from_secs(number(required(value)?, 0, 86_400)?)
            }
            _ => return Err("unknown option".to_string()),
        }
        Ok(())
    }

    /// The login deadline in force: AUTHORIZATION is never allowed longer than an idle logged-in session.
    pub fn effective_login_timeout(&self) -> Duration {
        self.login_timeout
            .unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_SECS))
            .min(self.timeout)
    }

    /// Settings that cannot go together, as (the option to blame, the problem): checked once every
    /// setting is in, by the run, the reload and `--check-config` alike.
    pub fn conflicts(&self) -> Result<(), (&'static str, String)> {
        if self.system_users && self.run_as.is_some() && !self.inetd {
            // Each system account owns its maildrop; a process that is one user for all cannot open them.
            let problem = "--system-users and --user exclude each other in standalone mode";
            return Err(("user", problem.to_string()));
        }
        if self.tls && !self.inetd {
            // Standalone, it would listen in plaintext where the administrator asked for TLS.
            let problem = "applies only with --inetd; a standalone server takes listen-tls";
            return Err(("tls", problem.to_string()));
        }
        let listeners: Vec<(&'static str, &SocketAddr)> =
            (self.listen.iter().map(|a| ("listen", a)))
                .chain(self.listen_tls.iter().map(|a| ("listen-tls", a)))
                .collect();
        for (i, (option, addr)) in listeners.iter().enumerate() {
            // Port 0 asks for any free port: each such listener gets its own.
            if addr.port() != 0 && listeners[..i].iter().any(|(_, earlier)| earlier == addr) {
                return Err((option, format!("{addr} is given twice")));
            }
        }
        Ok(())
    }

    /// Warnings about legal but unwise settings, for the log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.inetd && !(self.listen.is_empty() && self.listen_tls.is_empty()) {
            warnings.push("listen and listen-tls have no effect with inetd".to_string());
        }
        if self.no_plaintext == Some(true) && self.tls_cert.is_none() {
            // AUTH SCRAM-SHA-256 still works in the clear, for passwd-file users with a {PLAIN} or
            // {SCRAM-SHA-256} password; never with system users, who have neither it nor APOP.
            let left = if !self.system_users && self.apop {
                "only APOP and AUTH SCRAM-SHA-256 can log in"
            } else if !self.system_users {
                "only AUTH SCRAM-SHA-256 can log in"
            } else if self.apop && self.passwd.is_some() {
                "only APOP can log in (SCRAM is not offered with system-users)"
            } else {
                "no user can log in (system users have neither SCRAM nor APOP, and SCRAM is not \
                 offered with system-users)"
            };
            warnings.push(format!("no-plaintext without tls-cert: no TLS, so {left}"));
        }
        if self.maildir_uidl != MaildirUidl::Dovecot && !self.dovecot_uidl_format.is_default() {
            warnings.push(
                "dovecot-uidl-format has no effect without maildir-uidl = dovecot".to_string(),
            );
        }
        // The default follows --timeout without a word; a value given that it cuts is said.
        if let Some(login_timeout) = self.login_timeout.filter(|&t| t > self.timeout) {
            warnings.push(format!(
                "login-timeout {}s is longer than timeout {}s, which is used instead",
                login_timeout.as_secs(),
                self.timeout.as_secs()
            ));
        }
        if self.timeout.as_secs() < DEFAULT_TIMEOUT_SECS {
            warnings.push(format!(
                "timeout {}s is below RFC 1939's 10-minute minimum for the autologout timer",
                self.timeout.as_secs()
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn setter_accepts_and_rejects() {
        let mut c = Config::default();
        assert!(c.set("timeout", Some("30")).is_ok());
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(
            c.set("timeout", Some("abc")).unwrap_err(),
            "not a number: \"abc\""
        );
        assert!(c.set("timeout", Some("0")).is_err());
        for value in ["-1", "99999999999999999999999", "+86401"] {
            assert_eq!(
                c.set("timeout", Some(value)).unwrap_err(),
                format!("{value} is out of range (1..=86400)")
            );
        }
        for value in ["", "-", "30s", "1e3", " 5"] {
            assert_eq!(
                c.set("timeout", Some(value)).unwrap_err(),
                format!("not a number: \"{value}\"")
            );
        }
        assert!(c.set("apop", None).is_ok() && c.apop);
        assert!(c.set("apop", Some("off")).is_ok() && !c.apop);
        assert!(c.set("apop", Some("maybe")).is_err());
        assert!(c.set("listen", Some("[::1]:1110")).is_ok());
        assert!(c.set("listen", Some("localhost")).is_err());
        assert!(c.set("mail", Some("maildir:/var/mail/%u")).is_ok());
        assert!(c.set("mail", Some("imap:/x")).is_err());
        assert!(c.set("hostname", Some("mail.example.org")).is_ok());
        assert!(c.set("hostname", Some("bad host")).is_err());
        assert!(c.set("log-level", Some("DEBUG")).is_ok());
        assert_eq!(
            c.set("frobnicate", Some("1")).unwrap_err(),
            "unknown option"
        );
    }

    #[test]
    fn first_valid_ids_take_any_id_but_minus_one() {
        let mut c = Config::default();
        assert_eq!((c.first_valid_uid, c.first_valid_gid), (1, 1));
        c.set("first-valid-uid", Some("0")).unwrap();
        c.set("first-valid-gid", Some("4294967294")).unwrap();
        assert_eq!((c.first_valid_uid, c.first_valid_gid), (0, 4_294_967_294));
        for name in ["first-valid-uid", "first-valid-gid"] {
            assert_eq!(
                c.set(name, Some("4294967295")).unwrap_err(),
                "4294967295 is out of range (0..=4294967294)"
            );
            assert!(c.set(name, Some("-1")).is_err());
            assert!(c.set(name, None).is_err());
        }
    }

    /// What `--check-config` prints must read back the same: the file format trims values and ends
    /// them at a line's end, so such paths and names are refused where they are given.
    #[test]
    fn values_a_file_cannot_hold_are_refused() {
        let mut c = Config::default();
        for bad in ["/etc/pw ", " /etc/pw", "/etc/d\nx/pw", "/etc/\rpw"] {
            let e = c.set("passwd", Some(bad)).unwrap_err();
            assert!(
                e.contains("not a value a configuration file can hold"),
                "{bad:?}: {e}"
            );
        }
        c.set("passwd", Some("/etc/my passwd")).unwrap();
        c.set("passwd", Some("/etc/\tpw")).unwrap();
        assert!(c.set("user", Some("mail ")).is_err());
        // Printed back normalised, not as given: a tab in the list is fine.
        c.set("proxy-from", Some("10.0.0.1,\t10.0.0.2")).unwrap();
    }

    #[test]
    fn dovecot_uidl_format_values() {
        let mut c = Config::default();
        assert_eq!(c.dovecot_uidl_format.to_string(), "%08Xu%08Xv");
        c.set("dovecot-uidl-format", Some("%v.%u")).unwrap();
        assert_eq!(c.dovecot_uidl_format.to_string(), "%v.%u");
        assert_eq!(
            c.set("dovecot-uidl-format", Some("%08Xm")).unwrap_err(),
            "%m (the header's MD5) would mean reading every message at every login; not supported"
        );
        assert_eq!(
            c.set("dovecot-uidl-format", Some("")).unwrap_err(),
            "empty value"
        );
        // As copied from dovecot.conf, whose parser drops the quotes: not quotes in every id.
        assert!(c.set("dovecot-uidl-format", Some("\"%v.%u\"")).is_err());
        assert_eq!(c.dovecot_uidl_format.to_string(), "%v.%u");
        let path = Path::new("/etc/poplar.conf");
        let settings = parse_file_text(path, "dovecot-uidl-format = %u%y\n").unwrap();
        let e = apply_file(&mut Config::default(), path, &settings).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar.conf:1: dovecot-uidl-format: unknown variable %y (expected u, v, f, g or %)"
        );
        // Set without Dovecot's ids, it changes nothing: said once at start-up.
        assert_eq!(
            c.warnings(),
            ["dovecot-uidl-format has no effect without maildir-uidl = dovecot"]
        );
        c.set("maildir-uidl", Some("dovecot")).unwrap();
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn low_timeout_warns() {
        let mut c = Config::default();
        assert!(c.warnings().is_empty());
        c.set("timeout", Some("5")).unwrap();
        assert_eq!(c.warnings().len(), 1);
    }

    /// A login-timeout longer than timeout is cut to it: said, when it was given (from a black-box
    /// trial: 900 was printed back as 600 with no word).
    #[test]
    fn login_timeout_past_timeout_warns() {
        let mut c = Config::default();
        c.set("timeout", Some("700")).unwrap();
        assert!(c.warnings().is_empty());
        c.set("login-timeout", Some("900")).unwrap();
        assert_eq!(
            c.warnings(),
            ["login-timeout 900s is longer than timeout 700s, which is used instead"]
        );
        c.set("login-timeout", Some("700")).unwrap();
        assert!(c.warnings().is_empty());
        // The default's value given outright is cut as well (it was taken for the default, unsaid).
        c.set("timeout", Some("300")).unwrap();
        c.set("login-timeout", Some("600")).unwrap();
        assert_eq!(
            c.warnings(),
            [
                "login-timeout 600s is longer than timeout 300s, which is used instead",
                "timeout 300s is below RFC 1939's 10-minute minimum for the autologout timer"
            ]
        );
    }

    #[test]
    fn no_plaintext_without_a_certificate_warns() {
        let mut c = Config::default();
        c.set("no-plaintext", None).unwrap();
        assert_eq!(
            c.warnings(),
            ["no-plaintext without tls-cert: no TLS, so only AUTH SCRAM-SHA-256 can log in"]
        );
        c.set("apop", None).unwrap();
        assert_eq!(
            c.warnings(),
            [
                "no-plaintext without tls-cert: no TLS, so only APOP and AUTH SCRAM-SHA-256 can log in"
            ]
        );
        c.set("tls-cert", Some("/etc/ssl/pop3.pem")).unwrap();
        assert!(c.warnings().is_empty());
        // System users: no SCRAM, and APOP only for a passwd-file's users (a review: "only AUTH
        // SCRAM-SHA-256 can log in" was said where nobody could).
        let mut c = Config::default();
        c.set("no-plaintext", None).unwrap();
        c.set("system-users", None).unwrap();
        assert_eq!(
            c.warnings(),
            [
                "no-plaintext without tls-cert: no TLS, so no user can log in (system users have \
                 neither SCRAM nor APOP, and SCRAM is not offered with system-users)"
            ]
        );
        c.set("apop", None).unwrap();
        c.set("passwd", Some("/etc/poplar/passwd")).unwrap();
        assert_eq!(
            c.warnings(),
            [
                "no-plaintext without tls-cert: no TLS, so only APOP can log in (SCRAM is not \
                 offered with system-users)"
            ]
        );
    }

    #[test]
    fn listeners_under_inetd_warn() {
        let mut c = Config::default();
        c.set("listen", Some("127.0.0.1:110")).unwrap();
        assert!(c.warnings().is_empty());
        c.set("inetd", None).unwrap();
        assert_eq!(
            c.warnings(),
            ["listen and listen-tls have no effect with inetd"]
        );
    }
}
