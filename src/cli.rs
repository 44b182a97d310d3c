//! The command line: argv → `Invocation`. Flags share `Config::set` with configuration files; options on
//! the command line override the file named by `-c/--config`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{self, Arity, Config, ConfigError, Origin};

/// What the user asked for.
#[derive(Debug)]
pub enum Invocation {
    /// Serve, with where each setting came from (to explain a failure to start).
    Run(Box<Config>, Origins),
    /// `--check-config`: validate, print the effective settings, exit.
    CheckConfig(Box<Config>, Origins),
    Help,
    Version,
}

pub const USAGE: &str = "\
usage: poplar [options]

  -i, --inetd               serve one session on stdin/stdout (inetd, xinetd, systemd Accept=yes)
  -l, --listen ADDR:PORT    listen address, repeatable (default: port 110 on all IPv6 and IPv4 addresses)
  -c, --config FILE         read `option = value` settings from FILE; the command line overrides them
      --passwd FILE         passwd-file of users (user:{SCHEME}secret:uid:gid:gecos:home:shell)
      --scram-salt-key FILE secret (32+ octets, mode 600) keying the SCRAM salts of {PLAIN} and unknown
                            users; needed for salts that stay the same under inetd
      --mail LOCATION       maildrop template (default maildir:%h/Maildir; %u user, %n and %d its
                            parts before and after '@', %h home, %% percent)
      --mbox-uidl SOURCE    mbox unique-ids: popa3d (default, as popa3d gives) or x-uidl (X-UIDL: headers)
      --maildir-uidl SOURCE Maildir unique-ids: name (default, the file name) or dovecot (dovecot-uidlist)
      --dovecot-uidl-format FORMAT  Dovecot's pop3_uidl_format, for --maildir-uidl dovecot
                            (default %08Xu%08Xv; %u UID, %v UIDVALIDITY, %f file name, %g GUID)
      --hostname NAME       host name for the APOP timestamp (default: the system's)
      --apop                offer APOP (needs {PLAIN} secrets)
      --lowercase-users     look user names up in lowercase (Alice@Example.org logs in as alice@example.org)
      --timeout SECS        autologout timer (default 600, RFC 1939's minimum)
      --max-sessions N      concurrent sessions in standalone mode (default 100)
      --auth-failure-delay SECS   delay before answering a failed login (default 2)
      --max-auth-attempts N failed logins per connection before it is closed (default 3)
      --max-per-ip N        concurrent sessions from one client address, standalone (default 10)
      --ipv6-prefix LEN     an IPv6 client's address for --max-per-ip: its /LEN network (default 64)
      --login-timeout SECS  deadline from the greeting to a login (default 600, at most --timeout)
      --user NAME           standalone: become NAME after binding; inetd as root: the account for users without ids
      --mail-group GROUP    as root: a group every session also gets (mail, for Debian's /var/mail)
      --first-valid-uid N   as root: the lowest uid a session may take on (default 1)
      --first-valid-gid N   as root: the lowest primary gid a session may take on (default 1)
      --system-users        also accept the host's accounts (/etc/passwd, /etc/shadow)
      --log-level LEVEL     off, error, warn, info (default), debug or trace
      --shutdown-grace SECS after SIGTERM, how long sessions may go on (default 30)
      --tls-cert FILE       certificate chain (PEM, server certificate first): enables STLS
      --tls-key FILE        its private key (PEM); both are reloaded on SIGHUP
      --listen-tls ADDR:PORT  implicit TLS listener, repeatable (usually port 995)
      --tls                 with --inetd: start with a TLS handshake (port 995)
      --no-plaintext        refuse USER/PASS, AUTH PLAIN/LOGIN before TLS (default: on with a certificate)
      --proxy-from CIDR[,CIDR...]  load balancers whose PROXY protocol v1/v2 header names the client
      --check-config        check the settings, passwd-file and certificates; print the effective settings
  -h, --help                this text
  -V, --version             the version

See poplar(8) for details.
";

/// Where each setting got its effective value (the last one given), for `--check-config`'s messages.
#[derive(Debug, Default, Clone)]
pub struct Origins(Vec<(String, Origin)>);

impl Origins {
    /// Where `option` was set; the command line if it never was (a default).
    pub fn of(&self, option: &str) -> Origin {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == option)
            .map_or(Origin::CommandLine, |(_, o)| o.clone())
    }

    /// Where the `index`th value of a repeatable option (`listen`, `listen-tls`) was given.
    pub fn nth(&self, option: &str, index: usize) -> Origin {
        self.0
            .iter()
            .filter(|(name, _)| name == option)
            .nth(index)
            .map_or(Origin::CommandLine, |(_, o)| o.clone())
    }
}

/// Whether `args` ask for inetd mode, by `-i`/`--inetd` (or `--inetd=VALUE`, which anything but a
/// plain no counts as, and which overrides the file as the run does) or by the last `inetd` line of the
/// file that `-c`/`--config` names saying yes: looked for line by line, even in a file with errors, so
/// that an error in it is reported as inetd mode reports errors (to syslog, not to the client's socket).
pub fn asks_for_inetd(args: &[OsString]) -> bool {
    asks_for(args, "inetd")
}

/// Whether `args` ask for `--tls`, found as [`asks_for_inetd`] finds inetd mode: when the settings do
/// not parse, whether the client on fd 0 expects a TLS handshake rather than a POP3 line.
pub fn asks_for_tls(args: &[OsString]) -> bool {
    asks_for(args, "tls")
}

/// Whether the yes/no setting `flag` is on, by a quick look that survives errors elsewhere in `args`
/// or the configuration file.
fn asks_for(args: &[OsString], flag: &str) -> bool {
    let mut on_command_line = None;
    let mut set_in_file = false;
    let mut args = args.iter().filter_map(|a| a.to_str());
    while let Some(arg) = args.next() {
        let long = match arg {
            "-i" => Some("inetd"),
            other => other.strip_prefix("--"),
        };
        if long == Some(flag) {
            on_command_line = Some(true);
            continue;
        }
        let value = long
            .and_then(|l| l.strip_prefix(flag))
            .and_then(|l| l.strip_prefix('='));
        if let Some(value) = value {
            on_command_line = Some(!config::is_no(value));
            continue;
        }
        let file = match arg {
            "-c" | "--config" => args.next(),
            other => other.strip_prefix("--config="),
        };
        let text = file.and_then(|f| read_config(f).ok()).unwrap_or_default();
        // Of several lines the last counts, as it does for the run.
        let last = String::from_utf8_lossy(&text)
            .lines()
            .rev()
            .find_map(|line| {
                let (name, value) = line.trim().split_once('=')?;
                (name.trim() == flag).then(|| config::is_yes(value.trim()))
            });
        set_in_file = last.unwrap_or(set_in_file);
    }
    on_command_line.unwrap_or(set_in_file)
}

/// Parses argv (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, ConfigError> {
    let argv = match read_argv(args)? {
        Argv::Help => return Ok(Invocation::Help),
        Argv::Version => return Ok(Invocation::Version),
        Argv::Settings(argv) => argv,
    };
    let mut config = Config::default();
    let mut origins = Origins::default();
    if let Some(path) = &argv.config_file {
        load_file(&mut config, path, &mut origins)?;
    }
    drop_file_listeners(&mut config, &mut origins, &argv.settings);
    for (name, value) in &argv.settings {
        config
            .set(name, value.as_deref())
            .map_err(|problem| cli_error(name, problem))?;
        origins.0.push((name.clone(), Origin::CommandLine));
    }
    config
        .conflicts()
        .map_err(|(option, problem)| ConfigError {
            origin: origins.of(option),
            option: option.to_string(),
            problem,
        })?;
    Ok(if argv.check {
        Invocation::CheckConfig(Box::new(config), origins)
    } else {
        Invocation::Run(Box::new(config), origins)
    })
}

/// What the command line asks for, before any file is read.
enum Argv {
    Help,
    Version,
    Settings(CommandLine),
}

/// The command line's own settings, in order, and the file it names.
struct CommandLine {
    settings: Vec<(String, Option<String>)>,
    config_file: Option<PathBuf>,
    check: bool,
}

/// Reads argv into settings, checking each option's name and arity; the first `--help` or
/// `--version` wins over everything after it.
fn read_argv(args: impl IntoIterator<Item = OsString>) -> Result<Argv, ConfigError> {
    let mut settings: Vec<(String, Option<String>)> = Vec::new();
    let mut config_file: Option<PathBuf> = None;
    let mut check = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| cli_error("", format!("argument {a:?} is not UTF-8")))?;
        let (name, inline) = split_option(&arg)?;
        if inline.is_some() && ["help", "version", "check-config"].contains(&name.as_str()) {
            // `--check-config=no` would otherwise check all the same, and not start the server.
            return Err(cli_error(&name, "takes no value".to_string()));
        }
        match name.as_str() {
            "help" => return Ok(Argv::Help),
            "version" => return Ok(Argv::Version),
            "check-config" => check = true,
            "config" if config_file.is_some() => {
                return Err(cli_error(
                    &name,
                    "given twice; one file is read".to_string(),
                ));
            }
            "config" => config_file = Some(PathBuf::from(value_of(&name, inline, &mut args)?)),
            _ => match config::arity(&name) {
                None => return Err(cli_error(&name, "unknown option (see --help)".to_string())),
                // `--apop` is `--apop=yes`; `--apop=no` turns off what a file turned on.
                Some(Arity::Flag) => settings.push((name, inline)),
                Some(Arity::Value) => {
                    let value = value_of(&name, inline, &mut args)?;
                    settings.push((name, Some(value)));
                }
            },
        }
    }
    Ok(Argv::Settings(CommandLine {
        settings,
        config_file,
        check,
    }))
}

/// Listeners on the command line replace the file's of the same kind, as any other setting does.
fn drop_file_listeners(
    config: &mut Config,
    origins: &mut Origins,
    settings: &[(String, Option<String>)],
) {
    for (option, addrs) in [
        ("listen", &mut config.listen),
        ("listen-tls", &mut config.listen_tls),
    ] {
        if settings.iter().any(|(name, _)| name == option) {
            addrs.clear();
            // So that the origins of the option's values stay one for one with its addresses.
            origins.0.retain(|(name, _)| name != option);
        }
    }
}

fn load_file(
    config: &mut Config,
    path: &std::path::Path,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    let bytes = read_config(path).map_err(|e| ConfigError {
        origin: Origin::CommandLine,
        option: "config".to_string(),
        problem: format!("{}: {}", path.display(), e),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // The option of the line, when its name is still readable before the bad octets.
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let option = std::str::from_utf8(&valid[line_start..])
            .ok()
            .filter(|head| !head.trim_start().starts_with('#'))
            .and_then(|head| head.split_once('='))
            .map(|(name, _)| name.trim().to_string())
            .unwrap_or_default();
        ConfigError {
            origin: Origin::File {
                path: path.to_path_buf(),
                line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
            },
            option,
            problem: "not UTF-8 text".to_string(),
        }
    })?;
    let settings = config::parse_file_text(path, &text)?;
    for s in &settings {
        origins.0.push((
            s.name.clone(),
            Origin::File {
                path: path.to_path_buf(),
                line: s.line,
            },
        ));
    }
    config::apply_file(config, path, &settings)
}

/// A configuration file holds a few dozen lines; this many octets is surely some other file.
const MAX_CONFIG_SIZE: u64 = 1024 * 1024;

/// The file's bytes, refusing one larger than `MAX_CONFIG_SIZE`: a `-c` naming a log, a mailbox or
/// /dev/zero by mistake would otherwise be read whole into memory before the first line is judged.
fn read_config(path: impl AsRef<std::path::Path>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_CONFIG_SIZE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_SIZE {
        let problem = format!("larger than {MAX_CONFIG_SIZE} octets, not a configuration file");
        return Err(std::io::Error::other(problem));
    }
    Ok(bytes)
}

/// `-l X`, `--listen X`, `--listen=X` → ("listen", inline value if any).
fn split_option(arg: &str) -> Result<(String, Option<String>), ConfigError> {
    if let Some(long) = arg
        .strip_prefix("--")
        .filter(|l| !l.is_empty() && !l.starts_with('='))
    {
        return Ok(match long.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (long.to_string(), None),
        });
    }
    let long = match arg {
        "-i" => "inetd",
        "-l" => "listen",
        "-c" => "config",
        "-h" => "help",
        "-V" => "version",
        _ => {
            return Err(cli_error(
                "",
                format!("unknown argument \"{arg}\" (see --help)"),
            ));
        }
    };
    Ok((long.to_string(), None))
}

fn value_of(
    name: &str,
    inline: Option<String>,
    args: &mut impl Iterator<Item = OsString>,
) -> Result<String, ConfigError> {
    match inline {
        Some(value) => Ok(value),
        None => match args.next() {
            Some(value) => value
                .into_string()
                .map_err(|v| cli_error(name, format!("value {v:?} is not UTF-8"))),
            None => Err(cli_error(name, "missing value".to_string())),
        },
    }
}

fn cli_error(option: &str, problem: String) -> ConfigError {
    ConfigError {
        origin: Origin::CommandLine,
        option: option.to_string(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().map(OsString::from)) {
            Ok(Invocation::Run(c, _)) => Ok(*c),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn flags_and_values() {
        let c = run(&[
            "-i",
            "--apop",
            "-l",
            "127.0.0.1:1",
            "--listen=[::1]:2",
            "--timeout",
            "7",
        ])
        .unwrap();
        assert!(c.inetd && c.apop);
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.timeout, Duration::from_secs(7));
    }

    #[test]
    fn errors_name_the_option() {
        assert_eq!(
            run(&["--timeout", "abc"]).unwrap_err(),
            "--timeout: not a number: \"abc\""
        );
        assert_eq!(run(&["--timeout"]).unwrap_err(), "--timeout: missing value");
        // Built at run time so that the name never reads as one of poplar's options.
        let unknown = format!("--{}", "no-such-option");
        assert_eq!(
            run(&[&unknown]).unwrap_err(),
            format!("{unknown}: unknown option (see --help)")
        );
        assert_eq!(
            run(&["-x"]).unwrap_err(),
            "unknown argument \"-x\" (see --help)"
        );
        assert_eq!(
            run(&["--apop=maybe"]).unwrap_err(),
            "--apop: expected yes or no, not \"maybe\""
        );
        // An argument with no option name is named whole.
        for arg in ["--", "--=9"] {
            let e = run(&[arg]).unwrap_err();
            assert_eq!(e, format!("unknown argument \"{arg}\" (see --help)"));
        }
    }

    #[test]
    fn options_without_values_refuse_one() {
        for arg in ["--check-config=no", "--help=no", "--version=yes"] {
            let e = parse([OsString::from(arg)]).unwrap_err().to_string();
            let name = arg.split_once('=').unwrap().0;
            assert_eq!(e, format!("{name}: takes no value"));
        }
    }

    #[test]
    fn settings_that_cannot_go_together_are_refused_where_they_were_set() {
        let refused = [
            (
                &["--tls", "--passwd", "/p"][..],
                "--tls: applies only with --inetd",
            ),
            (
                &["-l", "127.0.0.1:1", "--listen-tls", "127.0.0.1:1"],
                "--listen-tls: 127.0.0.1:1 is given twice",
            ),
            (
                &["-l", "127.0.0.1:1", "-l", "127.0.0.1:1"],
                "--listen: 127.0.0.1:1 is given twice",
            ),
        ];
        for (args, expected) in refused {
            let e = run(args).unwrap_err();
            assert!(e.starts_with(expected), "{args:?}: {e}");
        }
        assert!(run(&["--tls", "--inetd"]).is_ok());
        assert_eq!(
            run(&["-c", "/a", "-c", "/b"]).unwrap_err(),
            "--config: given twice; one file is read"
        );
        assert!(run(&["-l", "127.0.0.1:0", "--listen-tls", "127.0.0.1:0"]).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poplar.conf");
        std::fs::write(&path, "system-users = yes\nuser = nobody\n").unwrap();
        let p = path.to_str().unwrap();
        let e = run(&["-c", p]).unwrap_err();
        assert!(e.starts_with(&format!("{p}:2: user: ")), "{e}");
        // --check-config refuses what the run refuses.
        let checked = parse(["--check-config", "-c", p].map(OsString::from));
        assert_eq!(checked.unwrap_err().to_string(), e);
        assert!(run(&["-c", p, "--inetd"]).is_ok());
    }

    #[test]
    fn a_value_that_is_not_utf8_is_named_as_such() {
        use std::os::unix::ffi::OsStringExt;
        let args = [
            OsString::from("--passwd"),
            OsString::from_vec(b"/etc/p\xe4sswd".to_vec()),
        ];
        let e = parse(args).unwrap_err().to_string();
        assert_eq!(e, "--passwd: value \"/etc/p\\xE4sswd\" is not UTF-8");
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(
            parse([OsString::from("-h")]),
            Ok(Invocation::Help)
        ));
        assert!(matches!(
            parse([OsString::from("--version")]),
            Ok(Invocation::Version)
        ));
    }

    #[test]
    fn check_config_keeps_the_origin_of_each_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poplar.conf");
        std::fs::write(&path, "# x\ntimeout = 9\npasswd = /a\n").unwrap();
        let p = path.to_str().unwrap();
        let Ok(Invocation::CheckConfig(c, origins)) =
            parse(["--check-config", "-c", p, "--passwd", "/b"].map(OsString::from))
        else {
            panic!("not a check")
        };
        assert_eq!(c.timeout, Duration::from_secs(9));
        assert_eq!(
            origins.of("timeout"),
            Origin::File {
                path: path.clone(),
                line: 2
            }
        );
        assert_eq!(origins.of("passwd"), Origin::CommandLine);
        assert_eq!(origins.of("mail"), Origin::CommandLine);
    }

    #[test]
    fn file_encoding_problems_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poplar.conf");
        let p = path.to_str().unwrap();
        std::fs::write(&path, b"timeout = 9\n# note: timeout = 5 for caf\xe9\n").unwrap();
        assert_eq!(
            run(&["-c", p]).unwrap_err(),
            format!("{p}:2: not UTF-8 text")
        );
        std::fs::write(&path, b"timeout = 9\nmail = maildir:/caf\xe9\n").unwrap();
        assert_eq!(
            run(&["-c", p]).unwrap_err(),
            format!("{p}:2: mail: not UTF-8 text")
        );
        let e = run(&["-c", "/dev/zero"]).unwrap_err();
        assert_eq!(
            e,
            "--config: /dev/zero: larger than 1048576 octets, not a configuration file"
        );
        std::fs::write(&path, "\u{feff}timeout = 9\r\napop = yes\r\n").unwrap();
        let c = run(&["-c", p]).unwrap();
        assert_eq!((c.timeout, c.apop), (Duration::from_secs(9), true));
    }

    #[test]
    fn inetd_mode_is_seen_on_the_command_line_or_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poplar.conf");
        let p = path.to_str().unwrap();
        let asks =
            |args: &[&str]| asks_for_inetd(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert!(asks(&["-i"]) && asks(&["--inetd", "--timeout", "soon"]));
        // Even when the file has an error after the line.
        std::fs::write(&path, "inetd = yes\ntimeout = soon\n").unwrap();
        assert!(asks(&["-c", p]) && asks(&[&format!("--config={p}")]));
        std::fs::write(&path, "inetd = no\n").unwrap();
        assert!(!asks(&["-c", p]) && !asks(&["--timeout", "9"]));
        // The last line counts, as it does for the run: this file asks for standalone mode.
        std::fs::write(&path, "inetd = yes\ninetd = no\ntimeout = soon\n").unwrap();
        assert!(!asks(&["-c", p]));
        std::fs::write(&path, "inetd = no\ninetd = on\n").unwrap();
        assert!(asks(&["-c", p]));
        // `--inetd=yes` is `--inetd`; a value that is not a plain no errs on the side of syslog.
        assert!(asks(&["--inetd=yes", "--timeout", "soon"]) && asks(&["--inetd=maybe"]));
        assert!(!asks(&["--inetd=no"]) && !asks(&["-i", "--inetd=off"]));
        // The command line overrides the file, as it does for the run.
        std::fs::write(&path, "inetd = yes\n").unwrap();
        assert!(!asks(&["-c", p, "--inetd=no"]) && !asks(&["--inetd=0", "-c", p]));
    }

    #[test]
    fn tls_is_seen_on_the_command_line_or_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poplar.conf");
        let p = path.to_str().unwrap();
        let asks =
            |args: &[&str]| asks_for_tls(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert!(asks(&["-i", "--tls", "--timeout", "soon"]) && asks(&["--tls=yes"]));
        // Neither -i nor the options that only start with "tls" are --tls.
        assert!(!asks(&["-i", "--tls-cert", "c.pem", "--tls-key=k.pem"]));
        assert!(!asks(&["--tls=no"]));
        std::fs::write(&path, "inetd = yes\ntls = yes\ntimeout = soon\n").unwrap();
        assert!(asks(&["-c", p]) && !asks(&["-c", p, "--tls=off"]));
        std::fs::write(&path, "tls-cert = c.pem\n").unwrap();
        assert!(!asks(&["-c", p]));
    }

    #[test]
    fn command_line_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poplar.conf");
        std::fs::write(
            &path,
            "listen = 127.0.0.1:10\nlisten = 127.0.0.1:11\ntimeout = 9\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = run(&["-c", p]).unwrap();
        assert_eq!(c.listen.len(), 2);
        let c = run(&["-c", p, "--listen", "127.0.0.1:12", "--timeout", "8"]).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:12".parse().unwrap()]);
        assert_eq!(c.timeout, Duration::from_secs(8));
        std::fs::write(&path, "listen-tls = 127.0.0.1:10\napop = yes\n").unwrap();
        let c = run(&["-c", p, "--listen-tls", "127.0.0.1:12", "--apop=no"]).unwrap();
        assert_eq!(c.listen_tls, vec!["127.0.0.1:12".parse().unwrap()]);
        assert!(!c.apop);
        std::fs::write(&path, "timeout = never\n").unwrap();
        assert_eq!(
            run(&["-c", p]).unwrap_err(),
            format!("{p}:1: timeout: not a number: \"never\"")
        );
    }
}
