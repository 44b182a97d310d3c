//! poplar under the launchers administrators use, on loopback ports: xinetd (one process per connection,
//! `--inetd`), `systemd-socket-activate --accept --inetd` (the same as systemd's `Accept=yes`), and the standalone
//! server handed its listening socket by `systemd-socket-activate` (LISTEN_FDS, as `Accept=no`), and the
//! standalone server reporting to systemd under `Type=notify` (NOTIFY_SOCKET, the test as the manager).
//! Needs the Debian packages xinetd and systemd; xinetd wants root to run a service as a `user` (CI is root).

mod common;
#[cfg(feature = "tls")]
mod tls_support;

use common::{BIN, Client, Fixture, MESSAGES, standard};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A launcher process, killed (with whatever it started in its process group) on drop.
struct Launcher {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Launcher {
    fn start(program: &str, args: &[String]) -> Launcher {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {program}: {e} (Debian: apt-get install xinetd systemd)")
            });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Launcher { child, stderr }
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // The whole process group: the launcher and any poplar it started.
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago: bind port 0, note the port, release it.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits (bounded) until something accepts connections on `addr`.
fn wait_listening(addr: SocketAddr, launcher: &Launcher) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "nothing listening on {addr}; launcher stderr: {:?}",
        launcher.stderr()
    );
}

fn socket_activate() -> &'static str {
    [
        "/usr/bin/systemd-socket-activate",
        "/lib/systemd/systemd-socket-activate",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("systemd-socket-activate not found (Debian: apt-get install systemd)")
}

fn poplar_args(fx: &Fixture) -> Vec<String> {
    [
        "--passwd",
        fx.passwd().to_str().unwrap(),
        "--hostname",
        "test.example",
        "--auth-failure-delay",
        "0",
    ]
    .map(String::from)
    .into_iter()
    .chain(common::root_account_args())
    .collect()
}

/// A whole session as a client sees it: greeting, login, STAT, RETR 1, QUIT.
fn fetch_first(addr: SocketAddr) {
    let mut c = Client::connect(addr);
    c.greeting();
    c.login("alice", "secret");
    let total: usize = MESSAGES.iter().map(|(_, _, m)| common::crlf(m).len()).sum();
    assert_eq!(c.cmd("STAT"), format!("+OK {} {total}", MESSAGES.len()));
    assert_eq!(c.multi("RETR 1"), common::wire(MESSAGES[0].2));
    assert!(c.cmd("QUIT").starts_with("+OK"));
    assert!(c.closed_within(Duration::from_secs(5)));
}

#[test]
fn xinetd_runs_one_inetd_session_per_connection() {
    let fx = standard();
    let addr = free_port();
    let conf: PathBuf = fx.root().join("xinetd.conf");
    let user = if nix::unistd::getuid().is_root() {
        "\tuser        = root\n"
    } else {
        ""
    };
    let text = format!(
        "defaults\n{{\n}}\nservice poplar-test\n{{\n\ttype        = UNLISTED\n\tsocket_type = stream\n\
         \tprotocol    = tcp\n\twait        = no\n{user}\tbind        = 127.0.0.1\n\tport        = {port}\n\
         \tserver      = {BIN}\n\tserver_args = --inetd {args}\n\tdisable     = no\n}}\n",
        port = addr.port(),
        args = poplar_args(&fx).join(" "),
    );
    std::fs::write(&conf, text).unwrap();
    let xinetd = Launcher::start(
        "xinetd",
        &["-dontfork".into(), "-f".into(), conf.display().to_string()],
    );
    wait_listening(addr, &xinetd);
    // Two sessions in a row: each connection gets its own poplar.
    fetch_first(addr);
    fetch_first(addr);
}

#[test]
fn systemd_socket_activate_inetd_mode() {
    let fx = standard();
    let addr = free_port();
    let mut args = vec![
        "--accept".to_string(),
        "--inetd".into(),
        "-l".into(),
        addr.to_string(),
        BIN.into(),
        "--inetd".into(),
    ];
    args.extend(poplar_args(&fx));
    let launcher = Launcher::start(socket_activate(), &args);
    wait_listening(addr, &launcher);
    fetch_first(addr);
    fetch_first(addr);
}

#[test]
fn standalone_server_takes_its_listener_from_socket_activation() {
    let fx = standard();
    let addr = free_port();
    // No --listen: the only socket poplar can serve is the one passed as fd 3.
    let mut args = vec!["-l".to_string(), addr.to_string(), BIN.into()];
    args.extend(poplar_args(&fx));
    let launcher = Launcher::start(socket_activate(), &args);
    wait_listening(addr, &launcher);
    fetch_first(addr);
    // Concurrent sessions are served by the one activated process (Accept=no).
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    a.greeting();
    b.greeting();
    a.login("alice", "secret");
    b.login("bob", "bobpw");
    assert!(a.cmd("QUIT").starts_with("+OK") && b.cmd("QUIT").starts_with("+OK"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !launcher
        .stderr()
        .iter()
        .any(|l| l.contains(&format!("listening on {addr}")))
    {
        assert!(
            Instant::now() < deadline,
            "no `listening on {addr}` line: {:?}",
            launcher.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !launcher
            .stderr()
            .iter()
            .any(|l| l.contains("listening on 0.0.0.0") || l.contains("[::]"))
    );
}

/// Of two passed sockets, the one at a `--listen-tls` address starts with a TLS handshake (port 995's
/// way), the other greets in the clear.
#[cfg(feature = "tls")]
#[test]
fn a_passed_socket_at_a_listen_tls_address_speaks_tls() {
    let fx = standard();
    let certs = tls_support::Certs::new(fx.root(), "activated");
    let (plain, tls) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "-l".into(),
        plain.to_string(),
        "-l".into(),
        tls.to_string(),
        BIN.into(),
    ];
    args.extend(poplar_args(&fx));
    args.extend(["--listen-tls".into(), tls.to_string()]);
    args.extend(certs.args());
    let launcher = Launcher::start(socket_activate(), &args);
    wait_listening(plain, &launcher);
    let mut c = Client::connect(plain);
    assert!(c.greeting().starts_with("+OK"), "in the clear on {plain}");
    let sock = TcpStream::connect(tls).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut t = tls_support::TlsClient::handshake(sock, &certs.ca)
        .unwrap_or_else(|e| panic!("no TLS on {tls}: {e}; {:?}", launcher.stderr()));
    assert!(t.line().starts_with("+OK"));
    assert_eq!(t.cmd("USER alice"), "+OK send PASS");
    assert!(t.cmd("PASS secret").starts_with("+OK"));
    assert!(t.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn socket_activation_meant_for_another_process_is_ignored() {
    let fx = standard();
    // LISTEN_PID names some other process: poplar must bind its own --listen address.
    let mut args = vec!["--listen".to_string(), "127.0.0.1:0".into()];
    args.extend(poplar_args(&fx));
    let mut child = Command::new(BIN)
        .args(&args)
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The start-up lines come first, then the listeners; stderr closes only if poplar exits.
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take(2)
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("listening on 127.0.0.1:")),
        "{lines:?}"
    );
}

/// `Type=notify`: the standalone server tells the service manager (here the test, on the socket
/// `NOTIFY_SOCKET` names, a path or an abstract `@name`) when it listens, reloads and stops.
#[test]
fn standalone_server_reports_ready_reloading_and_stopping() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let fx = standard();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let abstract_name = format!("poplar-test-notify-{}", std::process::id());
    let managers = [
        (
            UnixDatagram::bind(&path).unwrap(),
            path.display().to_string(),
        ),
        (
            UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(&abstract_name).unwrap())
                .unwrap(),
            format!("@{abstract_name}"),
        ),
    ];
    for (manager, value) in managers {
        manager
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let next = || {
            let mut buf = [0; 256];
            let n = manager.recv(&mut buf).expect("a notification within 10 s");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        let mut srv = common::Server::start_with_env(&fx, &[], &[("NOTIFY_SOCKET", &value)]);
        assert_eq!(next(), "READY=1", "{value}");
        // Ready means listening: a client is served at once.
        srv.login("alice", "secret");
        srv.signal(nix::sys::signal::Signal::SIGHUP);
        let reloading = next();
        assert!(
            reloading
                .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
                .is_some_and(|usec| usec.parse::<u64>().is_ok_and(|usec| usec > 0)),
            "{value}: {reloading:?}"
        );
        assert_eq!(next(), "READY=1", "{value}");
        assert_eq!(srv.terminate(Duration::from_secs(10)), Some(0));
        assert_eq!(next(), "STOPPING=1", "{value}");
    }
}
