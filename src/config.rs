//! The typed `Config`, its defaults and limits, and the one setter shared by command-line flags and
//! `key = value` configuration files. Pure: reading the file is the caller's job.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;

use crate::maildrop::location::Location;
use crate::maildrop::maildir_uidl::MaildirUidl;
use crate::maildrop::mbox::UidlSource;
use crate::maildrop::uidl_format::UidlFormat;

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
    pub max_per_ip: usize,
    pub ipv6_prefix: u8,
    pub login_timeout: Duration,
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
            max_per_ip: DEFAULT_MAX_PER_IP,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            login_timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
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
            "passwd" => self.passwd = Some(PathBuf::from(nonempty(required(value)?)?)),
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
            "user" => self.run_as = Some(nonempty(required(value)?)?.to_string()),
            "mail-group" => self.mail_group = Some(nonempty(required(value)?)?.to_string()),
            "system-users" => self.system_users = boolean(value)?,
            "max-per-ip" => self.max_per_ip = number(required(value)?, 1, 1_000_000)? as usize,
            "ipv6-prefix" => self.ipv6_prefix = number(required(value)?, 1, 128)? as u8,
            "login-timeout" => {
                self.login_timeout = Duration::from_secs(number(required(value)?, 1, 86_400)?)
            }
            "max-auth-attempts" => {
                self.max_auth_attempts = number(required(value)?, 1, 100)? as u32
            }
            "tls-cert" => self.tls_cert = Some(PathBuf::from(nonempty(required(value)?)?)),
            "tls-key" => self.tls_key = Some(PathBuf::from(nonempty(required(value)?)?)),
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
        self.login_timeout.min(self.timeout)
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
            // AUTH SCRAM-SHA-256 still works in the clear, for users with a {PLAIN} or
            // {SCRAM-SHA-256} password.
            warnings.push(if self.apop {
                "no-plaintext without tls-cert: no TLS, so only APOP and AUTH SCRAM-SHA-256 can log in"
                    .to_string()
            } else {
                "no-plaintext without tls-cert: no TLS, so only AUTH SCRAM-SHA-256 can log in"
                    .to_string()
            });
        }
        if self.maildir_uidl != MaildirUidl::Dovecot && !self.dovecot_uidl_format.is_default() {
            warnings.push(
                "dovecot-uidl-format has no effect without maildir-uidl = dovecot".to_string(),
            );
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

fn required(value: Option<&str>) -> Result<&str, String> {
    value.ok_or_else(|| "missing value".to_string())
}

fn nonempty(value: &str) -> Result<&str, String> {
    if value.is_empty() {
        Err("empty value".to_string())
    } else {
        Ok(value)
    }
}

/// Whether `value` turns a yes/no setting on (`yes`, `true`, `on`, `1`, in any case).
pub fn is_yes(value: &str) -> bool {
    boolean(Some(value)) == Ok(true)
}

/// Whether `value` turns a yes/no setting off (`no`, `false`, `off`, `0`, in any case).
pub fn is_no(value: &str) -> bool {
    boolean(Some(value)) == Ok(false)
}

fn boolean(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("yes" | "true" | "on" | "1") => Ok(true),
        Some("no" | "false" | "off" | "0") => Ok(false),
        Some(other) => Err(format!("expected yes or no, not \"{other}\"")),
    }
}

fn number(value: &str, min: u64, max: u64) -> Result<u64, String> {
    // A negative or overlong integer is a number all the same: it is out of range, not "not a number".
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Err(_) if !integer => Err(format!("not a number: \"{value}\"")),
        _ => Err(format!("{value} is out of range ({min}..={max})")),
    }
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("\"{value}\" is not ADDR:PORT (e.g. 0.0.0.0:110, [::]:110, 127.0.0.1:1110)")
    })
}

/// `10.0.0.0/8,::1` → networks; a bare address is a single host. An empty item (`a,,b`, a trailing
/// comma) is refused like any other empty value: it is a network left out, not a list to shorten.
pub(crate) fn parse_cidrs(value: &str) -> Result<Vec<(std::net::IpAddr, u8)>, String> {
    value
        .split(',')
        .map(str::trim)
        .map(|part| {
            if part.is_empty() {
                return Err(format!("empty network in \"{value}\""));
            }
            let (addr, prefix) = part
                .split_once('/')
                .map_or((part, None), |(a, p)| (a, Some(p)));
            let addr: std::net::IpAddr = addr
                .parse()
                .map_err(|_| format!("\"{part}\" is not an address or CIDR"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("bad prefix length in \"{part}\""))?,
            };
            // Peers are compared as IPv4 when they are IPv4-mapped (see `in_networks`), so a mapped
            // network is kept as the IPv4 one it names, or it would never match.
            match addr {
                std::net::IpAddr::V6(v6) if prefix >= 96 => Ok(v6
                    .to_ipv4_mapped()
                    .map_or((addr, prefix), |v4| (std::net::IpAddr::V4(v4), prefix - 96))),
                _ => Ok((addr, prefix)),
            }
        })
        .collect()
}

/// Whether `addr` falls in one of `networks` (as parsed from `proxy-from`).
pub fn in_networks(addr: std::net::IpAddr, networks: &[(std::net::IpAddr, u8)]) -> bool {
    let addr = match addr {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
        v4 => v4,
    };
    networks.iter().any(|&(net, prefix)| match (addr, net) {
        (std::net::IpAddr::V4(a), std::net::IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (std::net::IpAddr::V6(a), std::net::IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    })
}

/// `popa3d`: popa3d's ids, so its users switch without downloading everything again; `x-uidl`: reuse the
/// `X-UIDL:` headers qpopper and others wrote into the mbox, popa3d's ids for messages without one.
fn parse_mbox_uidl(value: &str) -> Result<UidlSource, String> {
    match value.to_ascii_lowercase().as_str() {
        "popa3d" => Ok(UidlSource::Popa3d),
        "x-uidl" => Ok(UidlSource::XUidl),
        _ => Err(format!("\"{value}\" is not popa3d or x-uidl")),
    }
}

/// `name`: the file's base name, as Courier and Dovecot's `%f` give; `dovecot`: the ids Dovecot's POP3
/// server announced (its default `%08Xu%08Xv`, or a saved one), read from `dovecot-uidlist`.
fn parse_maildir_uidl(value: &str) -> Result<MaildirUidl, String> {
    match value.to_ascii_lowercase().as_str() {
        "name" => Ok(MaildirUidl::Name),
        "dovecot" => Ok(MaildirUidl::Dovecot),
        _ => Err(format!("\"{value}\" is not name or dovecot")),
    }
}

fn parse_hostname(value: &str) -> Result<String, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if !value.is_empty() && value.len() <= 253 && value.chars().all(valid) {
        Ok(value.to_string())
    } else {
        Err(format!("\"{value}\" is not a host name"))
    }
}

fn parse_level(value: &str) -> Result<LevelFilter, String> {
    match value.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" | "warning" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err(format!(
            "\"{value}\" is not one of off, error, warn, info, debug, trace"
        )),
    }
}

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    File { path: PathBuf, line: usize },
}

/// A bad setting: `FILE:LINE: option: problem` or `--option: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    pub option: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (option, problem) = (OneLine(&self.option), OneLine(&self.problem));
        match &self.origin {
            Origin::CommandLine if self.option.is_empty() => write!(f, "{problem}"),
            Origin::CommandLine => write!(f, "--{option}: {problem}"),
            Origin::File { path, line } => {
                let path = path.display().to_string();
                let path = OneLine(&path);
                if self.option.is_empty() {
                    write!(f, "{path}:{line}: {problem}")
                } else {
                    write!(f, "{path}:{line}: {option}: {problem}")
                }
            }
        }
    }
}

/// Text quoted from a file or the command line (a name, a value, a path) shown with its control
/// characters escaped: a stray CR in a configuration line must not break the one-line error message
/// into two, on a terminal or in the log.
pub(crate) struct OneLine<'a>(pub(crate) &'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// One `key = value` line of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSetting {
    pub line: usize,
    pub name: String,
    pub value: String,
}

/// Splits configuration text into settings. `#` starts a comment line; blank lines are skipped; a value
/// runs to the end of the line (trimmed), so paths may contain spaces.
pub fn parse_file_text(path: &Path, text: &str) -> Result<Vec<FileSetting>, ConfigError> {
    let mut settings = Vec::new();
    // A byte-order mark (some Windows editors write one) is not part of the first option's name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains('\r') && !text.contains('\n') && text.trim_end_matches('\r').contains('\r') {
        // Old Mac line ends: the whole file would read as one line, its values run together.
        return Err(ConfigError {
            origin: Origin::File {
                path: path.to_path_buf(),
                line: 1,
            },
            option: String::new(),
            problem: "lines end in CR alone; use LF (or CRLF)".to_string(),
        });
    }
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let error = |option: &str, problem: &str| ConfigError {
            origin: Origin::File {
                path: path.to_path_buf(),
                line,
            },
            option: option.to_string(),
            problem: problem.to_string(),
        };
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(error(trimmed, "expected `option = value`"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(error("", "no option name before `=`"));
        }
        if arity(name).is_none() {
            return Err(error(name, "unknown option"));
        }
        settings.push(FileSetting {
            line,
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    Ok(settings)
}

/// Applies parsed file settings to `config`, naming the file and line of the first bad one.
pub fn apply_file(
    config: &mut Config,
    path: &Path,
    settings: &[FileSetting],
) -> Result<(), ConfigError> {
    for s in settings {
        config
            .set(&s.name, Some(&s.value))
            .map_err(|problem| ConfigError {
                origin: Origin::File {
                    path: path.to_path_buf(),
                    line: s.line,
                },
                option: s.name.clone(),
                problem,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_on_one_line() {
        let path = Path::new("/etc/poplar/poplar.conf");
        let e = parse_file_text(path, "(\r(\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar/poplar.conf:1: (\\r(: expected `option = value`"
        );
        let settings = parse_file_text(path, "timeout = 1\r2\n").unwrap();
        let e = apply_file(&mut Config::default(), path, &settings).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar/poplar.conf:1: timeout: not a number: \"1\\r2\""
        );
    }

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
    fn file_errors_name_file_line_and_option() {
        let path = Path::new("/etc/poplar.conf");
        let text = "# comment\n\nlisten = 127.0.0.1:110\ntimeout = soon\n";
        let settings = parse_file_text(path, text).unwrap();
        assert_eq!(settings.len(), 2);
        let mut c = Config::default();
        let e = apply_file(&mut c, path, &settings).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar.conf:4: timeout: not a number: \"soon\""
        );
        let e = parse_file_text(path, "listen 1\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar.conf:1: listen 1: expected `option = value`"
        );
        let e = parse_file_text(path, "\nbogus = 1\n").unwrap_err();
        assert_eq!(e.to_string(), "/etc/poplar.conf:2: bogus: unknown option");
        let e = parse_file_text(path, "timeout = 700\n = 600\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar.conf:2: no option name before `=`"
        );
    }

    #[test]
    fn cidrs() {
        let nets = parse_cidrs("10.0.0.0/8, 192.168.1.5,::1,fd00::/8").unwrap();
        let ip = |s: &str| s.parse().unwrap();
        assert!(in_networks(ip("10.1.2.3"), &nets));
        assert!(in_networks(ip("::ffff:10.1.2.3"), &nets));
        assert!(in_networks(ip("192.168.1.5"), &nets));
        assert!(!in_networks(ip("192.168.1.6"), &nets));
        assert!(in_networks(ip("::1"), &nets));
        assert!(in_networks(ip("fd12::1"), &nets));
        assert!(!in_networks(ip("fe80::1"), &nets));
        assert!(parse_cidrs("10.0.0.0/33").is_err());
        // Written IPv4-mapped, as some configurations of dual-stack hosts do.
        let mapped = parse_cidrs("::ffff:10.0.0.5, ::ffff:192.168.0.0/112").unwrap();
        assert!(in_networks(ip("10.0.0.5"), &mapped));
        assert!(in_networks(ip("::ffff:10.0.0.5"), &mapped));
        assert!(in_networks(ip("192.168.7.1"), &mapped));
        assert!(!in_networks(ip("10.0.0.6"), &mapped));
        assert!(parse_cidrs("example.org").is_err());
        assert_eq!(
            parse_cidrs("10.0.0.1,,::1").unwrap_err(),
            "empty network in \"10.0.0.1,,::1\""
        );
        assert!(parse_cidrs("10.0.0.1,").is_err());
    }

    /// Like every other option, `proxy-from` with nothing after the `=` is a mistake, not an empty list:
    /// no option treats an empty value as "unset".
    #[test]
    fn empty_proxy_from_is_an_error() {
        let path = Path::new("/etc/poplar.conf");
        let settings = parse_file_text(path, "proxy-from =\n").unwrap();
        let e = apply_file(&mut Config::default(), path, &settings).unwrap_err();
        assert_eq!(e.to_string(), "/etc/poplar.conf:1: proxy-from: empty value");
        assert_eq!(
            Config::default().set("proxy-from", Some(",")).unwrap_err(),
            "empty network in \",\""
        );
    }

    /// A `key` that takes one of a few words: the default, each value of `table` (`None`: refused), a
    /// missing value, and `key = file_value` in a file giving `from_file`.
    fn check_choice<T: PartialEq + std::fmt::Debug + Copy>(
        key: &str,
        get: fn(&Config) -> T,
        default: T,
        table: &[(&str, Option<T>)],
        (file_value, from_file): (&str, T),
    ) {
        for (value, expected) in table {
            let mut c = Config::default();
            assert_eq!(get(&c), default, "the default");
            match expected {
                Some(choice) => {
                    c.set(key, Some(value)).unwrap();
                    assert_eq!(get(&c), *choice, "{value:?}");
                }
                None => assert!(c.set(key, Some(value)).is_err(), "{value:?}"),
            }
        }
        assert_eq!(
            Config::default().set(key, None).unwrap_err(),
            "missing value"
        );
        let path = Path::new("/etc/poplar.conf");
        let mut c = Config::default();
        let text = format!("{key} = {file_value}\n");
        apply_file(&mut c, path, &parse_file_text(path, &text).unwrap()).unwrap();
        assert_eq!(get(&c), from_file);
    }

    #[test]
    fn mbox_uidl_values() {
        check_choice(
            "mbox-uidl",
            |c| c.mbox_uidl,
            UidlSource::Popa3d,
            &[
                ("popa3d", Some(UidlSource::Popa3d)),
                ("x-uidl", Some(UidlSource::XUidl)),
                ("X-UIDL", Some(UidlSource::XUidl)),
                ("xuidl", None),
                ("", None),
            ],
            ("x-uidl", UidlSource::XUidl),
        );
    }

    #[test]
    fn maildir_uidl_values() {
        check_choice(
            "maildir-uidl",
            |c| c.maildir_uidl,
            MaildirUidl::Name,
            &[
                ("name", Some(MaildirUidl::Name)),
                ("dovecot", Some(MaildirUidl::Dovecot)),
                ("Dovecot", Some(MaildirUidl::Dovecot)),
                ("courier", None),
                ("", None),
            ],
            ("dovecot", MaildirUidl::Dovecot),
        );
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

    #[test]
    fn cr_only_line_ends_are_named() {
        let path = Path::new("mac.conf");
        let e = parse_file_text(path, "passwd = p\rtimeout = 700\r").unwrap_err();
        assert_eq!(
            e.to_string(),
            "mac.conf:1: lines end in CR alone; use LF (or CRLF)"
        );
        assert!(parse_file_text(path, "passwd = p\r\ntimeout = 700\r\n").is_ok());
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
