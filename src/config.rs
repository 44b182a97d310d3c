//! The typed `Config`, its defaults and limits, and the one setter shared by command-line flags and
//! `key = value` configuration files. Pure: reading the file is the caller's job.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;

use crate::maildrop::location::Location;

/// RFC 1939 section 3: "the autologout timer MUST be of at least 10 minutes' duration." Lower values are
/// accepted with a warning because operators (and tests) sometimes need them.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// Concurrent sessions in standalone mode. Each idle session costs a thread with a small stack and a few
/// KiB of buffers, so a small host can afford this many; raise it on bigger ones.
pub const DEFAULT_MAX_SESSIONS: usize = 100;

/// Delay before answering a failed login, as Dovecot's `auth_failure_delay`: slows password guessing and
/// hides which of user name or password was wrong behind identical timing.
pub const DEFAULT_AUTH_FAILURE_DELAY_SECS: u64 = 2;

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
    pub hostname: Option<String>,
    pub apop: bool,
    pub timeout: Duration,
    pub max_sessions: usize,
    pub auth_failure_delay: Duration,
    pub log_level: LevelFilter,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            inetd: false,
            listen: Vec::new(),
            passwd: None,
            mail: DEFAULT_MAIL.parse().expect("default mail location parses"),
            hostname: None,
            apop: false,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            max_sessions: DEFAULT_MAX_SESSIONS,
            auth_failure_delay: Duration::from_secs(DEFAULT_AUTH_FAILURE_DELAY_SECS),
            log_level: LevelFilter::Info,
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
    ("hostname", Arity::Value, "NAME"),
    ("apop", Arity::Flag, ""),
    ("timeout", Arity::Value, "SECS"),
    ("max-sessions", Arity::Value, "N"),
    ("auth-failure-delay", Arity::Value, "SECS"),
    ("log-level", Arity::Value, "LEVEL"),
];

/// Looks a setting up by name.
pub fn arity(name: &str) -> Option<Arity> {
    SETTINGS.iter().find(|(n, _, _)| *n == name).map(|(_, a, _)| *a)
}

impl Config {
    /// The one setter: `value` is `None` for a bare flag on the command line. Errors are the problem only;
    /// the caller adds where the setting came from.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
        match name {
            "inetd" => self.inetd = boolean(value)?,
            "apop" => self.apop = boolean(value)?,
            "listen" => self.listen.push(parse_listen(required(value)?)?),
            "passwd" => self.passwd = Some(PathBuf::from(nonempty(required(value)?)?)),
            "mail" => self.mail = required(value)?.parse()?,
            "hostname" => self.hostname = Some(parse_hostname(required(value)?)?),
            "timeout" => self.timeout = Duration::from_secs(number(required(value)?, 1, 86_400)?),
            "max-sessions" => self.max_sessions = number(required(value)?, 1, 1_000_000)? as usize,
            "auth-failure-delay" => {
                self.auth_failure_delay = Duration::from_secs(number(required(value)?, 0, 60)?)
            }
            "log-level" => self.log_level = parse_level(required(value)?)?,
            _ => return Err("unknown option".to_string()),
        }
        Ok(())
    }

    /// Warnings about legal but unwise settings, for the log at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
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
    if value.is_empty() { Err("empty value".to_string()) } else { Ok(value) }
}

fn boolean(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("yes" | "true" | "on" | "1") => Ok(true),
        Some("no" | "false" | "off" | "0") => Ok(false),
        Some(other) => Err(format!("expected yes or no, not \"{other}\"")),
    }
}

fn number(value: &str, min: u64, max: u64) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("{value} is out of range ({min}..={max})")),
        Err(_) => Err(format!("not a number: \"{value}\"")),
    }
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        format!("\"{value}\" is not ADDR:PORT (e.g. 0.0.0.0:110, [::]:110, 127.0.0.1:1110)")
    })
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
        _ => Err(format!("\"{value}\" is not one of error, warn, info, debug, trace")),
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
        match &self.origin {
            Origin::CommandLine if self.option.is_empty() => f.write_str(&self.problem),
            Origin::CommandLine => write!(f, "--{}: {}", self.option, self.problem),
            Origin::File { path, line } => {
                write!(f, "{}:{}: {}: {}", path.display(), line, self.option, self.problem)
            }
        }
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
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let error = |option: &str, problem: &str| ConfigError {
            origin: Origin::File { path: path.to_path_buf(), line },
            option: option.to_string(),
            problem: problem.to_string(),
        };
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(error(trimmed, "expected `option = value`"));
        };
        let (name, value) = (name.trim(), value.trim());
        if arity(name).is_none() {
            return Err(error(name, "unknown option"));
        }
        settings.push(FileSetting { line, name: name.to_string(), value: value.to_string() });
    }
    Ok(settings)
}

/// Applies parsed file settings to `config`, naming the file and line of the first bad one.
pub fn apply_file(config: &mut Config, path: &Path, settings: &[FileSetting]) -> Result<(), ConfigError> {
    for s in settings {
        config.set(&s.name, Some(&s.value)).map_err(|problem| ConfigError {
            origin: Origin::File { path: path.to_path_buf(), line: s.line },
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
    fn setter_accepts_and_rejects() {
        let mut c = Config::default();
        assert!(c.set("timeout", Some("30")).is_ok());
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.set("timeout", Some("abc")).unwrap_err(), "not a number: \"abc\"");
        assert!(c.set("timeout", Some("0")).is_err());
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
        assert_eq!(c.set("frobnicate", Some("1")).unwrap_err(), "unknown option");
    }

    #[test]
    fn file_errors_name_file_line_and_option() {
        let path = Path::new("/etc/poplar.conf");
        let text = "# comment\n\nlisten = 127.0.0.1:110\ntimeout = soon\n";
        let settings = parse_file_text(path, text).unwrap();
        assert_eq!(settings.len(), 2);
        let mut c = Config::default();
        let e = apply_file(&mut c, path, &settings).unwrap_err();
        assert_eq!(e.to_string(), "/etc/poplar.conf:4: timeout: not a number: \"soon\"");
        let e = parse_file_text(path, "listen 1\n").unwrap_err();
        assert_eq!(e.to_string(), "/etc/poplar.conf:1: listen 1: expected `option = value`");
        let e = parse_file_text(path, "\nbogus = 1\n").unwrap_err();
        assert_eq!(e.to_string(), "/etc/poplar.conf:2: bogus: unknown option");
    }

    #[test]
    fn low_timeout_warns() {
        let mut c = Config::default();
        assert!(c.warnings().is_empty());
        c.set("timeout", Some("5")).unwrap();
        assert_eq!(c.warnings().len(), 1);
    }
}
