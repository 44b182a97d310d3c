//! The `key = value` configuration-file syntax: text split into settings, settings applied through the
//! one setter, and `ConfigError`, which names `FILE:LINE: option: problem` (or `--option: problem`) on one
//! line. Reading the file is the caller's job; what each value means is the setter's.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Config, arity};

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
/// into two, on a terminal or in the log. So are the invisible ones (a byte-order mark in the middle
/// of a file, zero-width spaces, direction marks), which would make `apop` look like a known option.
pub(crate) struct OneLine<'a>(pub(crate) &'a str);

/// Characters that print as nothing: Unicode's format characters that text editors leave in
/// (U+00AD soft hyphen, U+200B-U+200F, U+202A-U+202E, U+2060-U+2064, U+FEFF).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || is_invisible(c) {
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
        // A byte-order mark in the middle of a file: shown, not an invisible part of the name.
        let e = parse_file_text(path, "timeout = 700\n\u{feff}apop = yes\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar.conf:2: \\u{feff}apop: unknown option"
        );
        let e = parse_file_text(path, "timeout = 700\n = 600\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/poplar.conf:2: no option name before `=`"
        );
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
}
