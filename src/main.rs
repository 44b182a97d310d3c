//! argv → `Config` → front end. Prints `poplar: <error>` once and exits non-zero; nothing else.

use std::ffi::OsString;
use std::process::ExitCode;

use poplar::cli::{self, Invocation, Origins};
use poplar::config::{Config, ConfigError};
use poplar::startup::StartError;
use poplar::{check, inetd, logging, server};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    // --check-config is run from a terminal: its errors go there, for an inetd configuration too.
    let inetd_mode = cli::asks_for_inetd(&args) && !args.iter().any(|a| a == "--check-config");
    // Looked at before inetd mode may point fd 2 at /dev/null.
    let private_stderr = inetd_mode && inetd::stderr_is_private();
    let (config, origins) = match cli::parse(args.clone()) {
        Ok(Invocation::Run(config, origins)) => (config, origins),
        Ok(Invocation::CheckConfig(config, origins)) => return check_config(&config, &origins),
        Ok(Invocation::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::Version) => {
            println!("poplar {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => return refuse_command_line(&e, &args, inetd_mode, private_stderr),
    };
    match start(&config, &args, private_stderr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report_start_error(&config, &origins, e, private_stderr),
    }
}

/// `--check-config`: the effective settings on stdout, or the first problem on stderr with status 2.
fn check_config(config: &Config, origins: &Origins) -> ExitCode {
    match check::run(config, origins) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("poplar: {e}");
            ExitCode::from(2)
        }
    }
}

/// A command line that does not parse: status 2, and under inetd a refusal the client can read.
fn refuse_command_line(
    e: &ConfigError,
    args: &[OsString],
    inetd_mode: bool,
    private_stderr: bool,
) -> ExitCode {
    if inetd_mode {
        // Under inetd stderr is the client's socket: syslog always, stderr only when private.
        logging::init_syslog(log::LevelFilter::Error);
        logging::syslog_fatal(&e.to_string());
        inetd::refuse_client(cli::asks_for_tls(args));
    }
    if !inetd_mode || private_stderr {
        eprintln!("poplar: {e}");
    }
    ExitCode::from(2)
}

/// The front end the configuration asks for, its logging set up first; returns when it ends.
fn start(config: &Config, args: &[OsString], private_stderr: bool) -> Result<(), StartError> {
    if config.inetd {
        logging::init_syslog(config.log_level);
        logging::install_panic_reporter(true);
        warn_about(config);
        inetd::run(config, private_stderr)
    } else {
        logging::init_stderr(config.log_level);
        logging::install_panic_reporter(false);
        warn_about(config);
        // SIGHUP parses the same command line again, re-reading the configuration file it names.
        let reload = || match cli::parse(args.to_vec()) {
            Ok(Invocation::Run(config, origins)) => Ok((*config, origins)),
            Ok(_) => Err("the command line no longer asks to run".to_string()),
            Err(e) => Err(e.to_string()),
        };
        server::serve(config, &reload)
    }
}

/// A start-up failure the checks of --check-config explain is a configuration problem: reported as
/// they report it, naming the file, line and option, with status 2. Under inetd it is logged (once:
/// with that explanation when there is one; at any `log-level`), since stderr is the client's socket.
fn report_start_error(
    config: &Config,
    origins: &Origins,
    e: StartError,
    private_stderr: bool,
) -> ExitCode {
    let (explained, status) = match (check::validate(config, origins), e.listener) {
        (Err(problem), _) => (Some(problem.to_string()), 2),
        // An address that cannot be bound is a runtime failure, named where it was given.
        (Ok(_), Some((option, index))) => {
            let named = ConfigError {
                origin: origins.nth(option, index),
                option: option.to_string(),
                problem: e.message.clone(),
            };
            (Some(named.to_string()), e.status)
        }
        (Ok(_), None) => (None, e.status),
    };
    if config.inetd {
        logging::syslog_fatal(explained.as_deref().unwrap_or(&e.message));
    }
    if !config.inetd || private_stderr {
        eprintln!("poplar: {}", explained.unwrap_or(e.message));
    }
    ExitCode::from(status)
}

fn warn_about(config: &Config) {
    for warning in config.warnings() {
        log::warn!("{warning}");
    }
}
