//! The binary under test: standalone on an ephemeral loopback port with stderr drained and kept, in
//! `--inetd` mode over a socket pair, or run once to completion for command-line checks.

use super::{BIN, Client, Fixture, root_account_args};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for the server to report its listening address.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// Lines the server wrote on stderr, shared with the thread that drains the pipe.
type Lines = Arc<Mutex<Vec<String>>>;

/// The real binary in standalone mode on 127.0.0.1 with an ephemeral port. Killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    lines: Lines,
    /// Set when the drain thread has read stderr to its end.
    drained: Arc<AtomicBool>,
}

impl Server {
    /// Starts `poplar --listen 127.0.0.1:0 --passwd <fixture>` plus `extra` arguments.
    pub fn start(fx: &Fixture, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into()];
        args.push("--passwd".into());
        args.push(fx.passwd().display().to_string());
        if !extra.contains(&"--hostname") {
            args.extend(["--hostname".into(), "test.example".into()]);
        }
        if !extra.contains(&"--mail") {
            args.extend(fx.mail_args().iter().map(|s| s.to_string()));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(root_account_args());
        Server::spawn(&args)
    }

    /// Like `start`, with the server's file size limit (`ulimit -f`, RLIMIT_FSIZE) set to `kib` KiB.
    pub fn start_with_file_limit(fx: &Fixture, extra: &[&str], kib: u64) -> Server {
        Server::start_with_ulimits(fx, extra, &[&format!("-f {kib}")])
    }

    /// Like `start`, under `ulimit` settings, each the arguments of one `ulimit` ("-f 64", "-Sn 256").
    pub fn start_with_ulimits(fx: &Fixture, extra: &[&str], ulimits: &[&str]) -> Server {
        let script: String = ulimits
            .iter()
            .map(|u| format!("ulimit {u} && "))
            .chain(["exec \"$@\"".to_string()])
            .collect();
        Server::spawn_command(Server::in_shell(&script, fx, extra))
    }

    /// Like `start`, as systemd starts a service with `StandardError=journal`: `JOURNAL_STREAM` names
    /// the device and inode of its stderr (here the pipe the test reads).
    pub fn start_in_journal(fx: &Fixture, extra: &[&str]) -> Server {
        let script = r#"JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && exec "$@""#;
        Server::spawn_command(Server::in_shell(script, fx, extra))
    }

    /// Like `start`, with `vars` added to the environment (systemd's `NOTIFY_SOCKET`, say).
    pub fn start_with_env(fx: &Fixture, extra: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(Server::plain_args(fx, extra))
            .envs(vars.iter().copied());
        Server::spawn_command(cmd)
    }

    /// `--listen 127.0.0.1:0 --passwd <fixture>`, the fixture's mail location and `extra`: the
    /// arguments of the variants of `start` that prepare the process (no default `--hostname`).
    fn plain_args(fx: &Fixture, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> =
            vec!["--listen".into(), "127.0.0.1:0".into(), "--passwd".into()];
        args.push(fx.passwd().display().to_string());
        args.extend(fx.mail_args().iter().chain(extra).map(|s| s.to_string()));
        args.extend(root_account_args());
        args
    }

    /// The binary with `plain_args`, run by bash's `script`, which ends with `exec "$@"`.
    fn in_shell(script: &str, fx: &Fixture, extra: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", script, "bash", BIN])
            .args(Server::plain_args(fx, extra));
        cmd
    }

    /// Starts the binary with `-c conf` and nothing else (see `Fixture::config`).
    pub fn with_config(conf: &Path) -> Server {
        let mut args = vec!["-c".to_string(), conf.display().to_string()];
        args.extend(root_account_args());
        Server::spawn(&args)
    }

    /// Starts the binary with exactly `args`, waiting for its `listening on ADDR` line.
    pub fn spawn(args: &[String]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Server::spawn_command(cmd)
    }

    fn spawn_command(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn poplar");
        let stderr = child.stderr.take().expect("stderr pipe");
        let lines: Lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&lines);
        let drained = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&drained);
        thread::spawn(move || {
            drain(stderr, sink, tx);
            done.store(true, Ordering::SeqCst);
        });
        let addr = match rx.recv_timeout(START_DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not report `listening on`; stderr: {:?}",
                    lines.lock().unwrap()
                );
            }
        };
        Server {
            child,
            addr,
            lines,
            drained,
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Connects, checks the greeting, logs in with USER/PASS.
    pub fn login(&self, user: &str, pass: &str) -> Client {
        let mut c = self.connect();
        c.greeting();
        c.login(user, pass);
        c
    }

    /// Connects until a client is greeted with `+OK`, once a place that ran out (a session cap, threads,
    /// descriptors) has come back; panics saying `what` if none has within `within`. Returns the client
    /// and its greeting.
    pub fn greeted_again(&self, within: Duration, what: &str) -> (Client, String) {
        let deadline = Instant::now() + within;
        loop {
            let mut c = self.connect();
            let greeting = c.read_line();
            if greeting.starts_with("+OK") {
                return (c, greeting);
            }
            assert!(Instant::now() < deadline, "{what}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every line written on stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a stderr line containing every one of `needles`.
    pub fn wait_log(&self, needles: &[&str], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .stderr_lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)));
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the process (SIGHUP to reload, SIGTERM or SIGINT to stop).
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("kill");
    }

    /// Waits (bounded) for the process to exit on its own; returns the exit code, None if still running.
    /// After an exit, `stderr_lines` has every line the process wrote.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let code = wait_for_exit(&mut self.child, within);
        if code.is_some() {
            self.wait_drained(within);
        }
        code
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit code, None if still running.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -TERM failed");
        self.wait_exit(within)
    }

    /// Waits (bounded) until the drain thread has read stderr to its end: the process may have
    /// exited before the thread read its last lines.
    fn wait_drained(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.drained.load(Ordering::SeqCst) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stderr line by line until EOF; reports the first `listening on ADDR` on `tx`.
fn drain(stderr: impl Read, lines: Lines, tx: mpsc::Sender<SocketAddr>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    let mut reported = false;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end().to_string();
        let addr = if reported {
            None
        } else {
            listening_addr(&line)
        };
        // Keep the line before reporting, so a test that starts once the address is known sees it.
        lines.lock().unwrap().push(line);
        if let Some(addr) = addr {
            reported = true;
            let _ = tx.send(addr);
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let token = rest.split_whitespace().next()?;
    token.trim_end_matches([',', ';', ')']).parse().ok()
}

/// The binary in `--inetd` mode with stdin/stdout one end of a socket pair and stderr discarded.
pub struct Inetd {
    pub child: Child,
}

impl Inetd {
    /// Spawns `poplar --inetd --passwd <fixture>` plus `extra`; returns the process and a client on the other end.
    pub fn start(fx: &Fixture, extra: &[&str]) -> (Inetd, Client) {
        Inetd::spawn(fx, extra, false)
    }

    /// Like `start`, but with stderr on the socket too, as inetd hands it over (fd 0, 1 and 2).
    pub fn start_all_fds(fx: &Fixture, extra: &[&str]) -> (Inetd, Client) {
        Inetd::spawn(fx, extra, true)
    }

    fn spawn(fx: &Fixture, extra: &[&str], stderr_on_socket: bool) -> (Inetd, Client) {
        let mut args: Vec<OsString> = vec!["--passwd".into(), fx.passwd().into()];
        args.extend(["--hostname".into(), "test.example".into()]);
        if !extra.contains(&"--mail") {
            args.extend(fx.mail_args().iter().map(OsString::from));
        }
        args.extend(extra.iter().map(OsString::from));
        args.extend(root_account_args().into_iter().map(OsString::from));
        let stderr = if stderr_on_socket {
            None
        } else {
            Some(Stdio::null())
        };
        Inetd::spawn_args(&args, stderr)
    }

    /// Spawns `poplar --inetd <args>` and nothing more, with stdin and stdout one end of a socket pair
    /// and stderr `stderr` (`None`: the socket too); returns the process and a client on the other end.
    pub fn spawn_args(args: &[impl AsRef<OsStr>], stderr: Option<Stdio>) -> (Inetd, Client) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let stdin: OwnedFd = theirs.try_clone().expect("clone").into();
        let stderr = stderr
            .unwrap_or_else(|| Stdio::from(OwnedFd::from(theirs.try_clone().expect("clone"))));
        let stdout: OwnedFd = theirs.into();
        let child = Command::new(BIN)
            .arg("--inetd")
            .args(args)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(stderr)
            .spawn()
            .expect("spawn poplar --inetd");
        (Inetd { child }, Client::from_unix(ours))
    }

    /// Waits (bounded) for the process to exit; returns its exit code, or None if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        wait_for_exit(&mut self.child, within)
    }
}

impl Drop for Inetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) for `child` to exit; returns its exit code, or None if it is still running.
fn wait_for_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st.code().unwrap_or(-1));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Runs the binary with `args` and no stdin; returns (exit code, stdout, stderr). Bounded by a deadline.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let (code, out, err) = run_tool(Command::new(BIN).args(args), Duration::from_secs(10));
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

/// Runs `cmd` with no stdin, within `within`; returns (exit code, stdout, stderr). Both outputs are
/// read while it runs, so a tool that writes much cannot block on a full pipe. Panics if the tool is
/// missing or does not finish in time.
pub fn run_tool(cmd: &mut Command, within: Duration) -> (i32, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it installed?): {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipe.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {within:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = out.join().unwrap();
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    (status.code().unwrap_or(-1), out, err)
}
