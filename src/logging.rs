//! Log output: env_logger on stderr in standalone mode; syslog (facility mail) under inetd, where
//! stderr is the client's socket and must carry nothing but protocol bytes.

use std::ffi::CStr;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::syslog::{Facility, LogFlags, Priority, Severity};

/// Standalone: human-readable lines on stderr. The logger itself passes everything and `log`'s global
/// maximum does the filtering, so that a SIGHUP can raise the level as well as lower it.
pub fn init_stderr(level: LevelFilter) {
    env_logger::Builder::new()
        .filter_level(LevelFilter::Trace)
        .target(env_logger::Target::Stderr)
        .format_timestamp_secs()
        .init();
    log::set_max_level(level);
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
        // A message with a NUL cannot pass through syslog(3); replace rather than drop it.
        let text = record.args().to_string().replace('\0', "\\0");
        let _ = nix::syslog::syslog(Priority::new(severity, Facility::LOG_MAIL), text.as_str());
    }

    fn flush(&self) {}
}
