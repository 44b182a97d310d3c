//! Log output: env_logger on stderr in standalone mode; syslog (facility mail) under inetd, where
//! stderr is the client's socket and must carry nothing but protocol bytes.

use std::borrow::Cow;
use std::ffi::CStr;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::syslog::{Facility, LogFlags, Priority, Severity};

/// Standalone: human-readable lines on stderr, `[TIME LEVEL MODULE] MESSAGE`. The logger itself passes
/// everything and `log`'s global maximum does the filtering, so that a SIGHUP can raise the level as
/// well as lower it.
///
/// TIME (UTC, to the second) is left out when stderr is the journal, which dates each line itself; a log
/// file or a terminal needs it, and so does fail2ban reading such a file.
pub fn init_stderr(level: LevelFilter) {
    let dated = !stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    let logger = env_logger::Builder::new()
        .filter_level(LevelFilter::Trace)
        .target(env_logger::Target::Stderr)
        .format(move |out, record| {
            if dated {
                write!(out, "[{} ", Utc(SystemTime::now()))?;
            } else {
                out.write_all(b"[")?;
            }
            let module = record.module_path().unwrap_or_default();
            writeln!(out, "{:<5} {module}] {}", record.level(), record.args())
        })
        .build();
    if log::set_boxed_logger(Box::new(Stderr(logger))).is_ok() {
        log::set_max_level(level);
    }
}

/// env_logger, given each message with its control characters escaped.
struct Stderr(env_logger::Logger);

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let text = escape_controls(&text);
        self.0.log(
            &Record::builder()
                .args(format_args!("{text}"))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush()
    }
}

/// Whether stderr is the systemd journal: systemd sets `JOURNAL_STREAM` to `DEVICE:INODE` of the
/// stream it connects to the journal, and a process whose stderr is that stream may leave the dating to
/// it (systemd.exec(5)). The variable alone is not enough: a child may inherit it with stderr redirected.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (
        dev.parse::<nix::libc::dev_t>(),
        ino.parse::<nix::libc::ino_t>(),
    ) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// A time as RFC 3339 in UTC to the second, `2026-11-27T10:09:00Z`.
struct Utc(SystemTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (year, month, day) = civil_from_days(secs / 86_400);
        let time = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            time / 3600,
            time / 60 % 60,
            time % 60
        )
    }
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`, for days
/// since the epoch, which are never negative here).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // day of the era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of the era, 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1st, 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
}

/// A message with its control characters (CR, LF, ESC, NUL, DEL, the C1 range) written as `\xNN` or
/// `\u{NN}`. Messages carry file names and other text from outside the server: a line break there
/// would forge a log line of its own, an escape sequence would drive the terminal of whoever reads it.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if c.is_ascii_control() => {
                let _ = write!(escaped, "\\x{:02x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
            }
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

/// inetd: syslog with the program name and pid, facility mail (the facility mail servers log to).
pub fn init_syslog(level: LevelFilter) {
    const IDENT: &CStr = c"poplar";
    // openlog only records the arguments; failures surface (and are ignored) at each syslog call.
    let _ = nix::syslog::openlog(
        Some(IDENT),
        LogFlags::LOG_PID | LogFlags::LOG_NDELAY,
        Facility::LOG_MAIL,
    );
    if log::set_boxed_logger(Box::new(Syslog { level })).is_ok() {
        log::set_max_level(level);
    }
}

/// inetd: a failure that stops the server from serving, written to syslog whatever `log-level` says
/// (`off` included): under inetd nothing else can tell the administrator why every connection is
/// refused, stderr being the client's socket. `init_syslog` must have run.
pub fn syslog_fatal(message: &str) {
    let text = escape_controls(message);
    let _ = nix::syslog::syslog(
        Priority::new(Severity::LOG_ERR, Facility::LOG_MAIL),
        text.as_ref(),
    );
}

/// Reports a panic (a bug: it ends one session thread, or under inetd one connection) to the log; at
/// `log-level off`, where nothing else is logged, still to syslog (inetd) or stderr (standalone): an
/// internal error must not pass unseen.
pub fn install_panic_reporter(inetd: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let message = format!("internal error: {info}");
        match panic_sink(log::log_enabled!(Level::Error), inetd) {
            PanicSink::Log => log::error!("{message}"),
            PanicSink::Syslog => syslog_fatal(&message),
            PanicSink::Stderr => {
                let _ = writeln!(std::io::stderr(), "poplar: {}", escape_controls(&message));
            }
        }
    }));
}

#[derive(Debug, PartialEq, Eq)]
enum PanicSink {
    Log,
    Syslog,
    Stderr,
}

/// Where a panic is reported: the log when it takes errors, else where the log would go.
fn panic_sink(errors_logged: bool, inetd: bool) -> PanicSink {
    match (errors_logged, inetd) {
        (true, _) => PanicSink::Log,
        (false, true) => PanicSink::Syslog,
        (false, false) => PanicSink::Stderr,
    }
}

struct Syslog {
    level: LevelFilter,
}

impl Log for Syslog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let severity = match record.level() {
            Level::Error => Severity::LOG_ERR,
            Level::Warn => Severity::LOG_WARNING,
            Level::Info => Severity::LOG_INFO,
            Level::Debug | Level::Trace => Severity::LOG_DEBUG,
        };
        // Escaped, a NUL too: a message with one cannot pass through syslog(3).
        let text = record.args().to_string();
        let text = escape_controls(&text);
        let _ = nix::syslog::syslog(Priority::new(severity, Facility::LOG_MAIL), text.as_ref());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::{PanicSink, Utc, escape_controls, panic_sink, stderr_is_journal};
    use std::time::{Duration, UNIX_EPOCH};

    /// At `log-level off` a panic still reaches syslog under inetd (stderr is the client's socket)
    /// and stderr standalone.
    #[test]
    fn panics_are_reported_at_every_level() {
        assert_eq!(panic_sink(true, true), PanicSink::Log);
        assert_eq!(panic_sink(true, false), PanicSink::Log);
        assert_eq!(panic_sink(false, true), PanicSink::Syslog);
        assert_eq!(panic_sink(false, false), PanicSink::Stderr);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let table = [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_798_368_540, "2026-12-27T10:49:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ];
        for (secs, want) in table {
            let time = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(Utc(time).to_string(), want, "{secs}");
        }
    }

    #[test]
    fn only_a_journal_stream_naming_stderr_is_the_journal() {
        let st = nix::sys::stat::fstat(std::io::stderr()).unwrap();
        let ours = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(stderr_is_journal(Some(&ours)));
        let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
        for value in [None, Some(""), Some("8:"), Some("x:y"), Some(&other[..])] {
            assert!(!stderr_is_journal(value), "{value:?}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let table = [
            (
                "login user=alice peer=192.0.2.7:110",
                "login user=alice peer=192.0.2.7:110",
            ),
            ("a\nb\r\tc", "a\\x0ab\\x0d\\x09c"),
            ("\u{1b}[2J\0\u{7f}", "\\x1b[2J\\x00\\x7f"),
            ("\u{9b}31m caf\u{e9}", "\\u{9b}31m caf\u{e9}"),
        ];
        for (text, want) in table {
            assert_eq!(escape_controls(text), want, "{text:?}");
        }
    }
}
