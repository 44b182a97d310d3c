//! Log output: env_logger on stderr in standalone mode; syslog (facility mail) under inetd, where
//! stderr is the client's socket and must carry nothing but protocol bytes.

use std::borrow::Cow;
use std::ffi::CStr;
use std::fmt::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::syslog::{Facility, LogFlags, Priority, Severity};

/// Standalone: human-readable lines on stderr. The logger itself passes everything and `log`'s global
/// maximum does the filtering, so that a SIGHUP can raise the level as well as lower it.
pub fn init_stderr(level: LevelFilter) {
    let logger = env_logger::Builder::new()
        .filter_level(LevelFilter::Trace)
        .target(env_logger::Target::Stderr)
        .format_timestamp_secs()
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
    use super::escape_controls;

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
