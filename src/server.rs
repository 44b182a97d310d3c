//! The standalone front end: listeners built with socket2, an accept loop that gives each connection its
//! own OS thread, the session cap, and orderly shutdown on SIGTERM/SIGINT. Also the start-up pieces both
//! front ends share (the user database, the APOP timestamp).

use std::fmt;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

use crate::admission::{PerIp, Ticket};
use crate::auth::Authenticator;
use crate::auth::chain::Chain;
use crate::auth::passwd_file::PasswdFile;
use crate::auth::system::{self, SystemUsers};
use crate::config::{Config, DEFAULT_PORT};
use crate::conn;
use crate::privs::Privileges;
use crate::session::Services;
use crate::stream::{Stream, Transport};

/// Stack of a session thread. Sessions run no deep recursion; the largest frames are the password
/// hashes and the log formatter. Only touched pages cost memory.
pub const SESSION_STACK: usize = 128 * 1024;

/// Kernel accept queue: the classic SOMAXCONN, enough for bursts of fetchmail cron jobs.
const BACKLOG: i32 = 1024;

/// TCP keepalive: a vanished client (no FIN, no RST) is found within about two minutes, so it does not
/// hold its maildrop lock until the autologout timer expires.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 6;

/// A start-up failure: the message for `poplar: ...` and the exit status.
#[derive(Debug)]
pub struct StartError {
    pub status: u8,
    pub message: String,
}

impl StartError {
    pub fn config(message: impl Into<String>) -> StartError {
        StartError { status: 2, message: message.into() }
    }
    pub fn runtime(message: impl Into<String>) -> StartError {
        StartError { status: 1, message: message.into() }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the front ends need besides the session services.
pub struct Frontend {
    pub services: Services,
    pub timeout: Duration,
    /// Host name for the APOP timestamp, when APOP is offered.
    pub apop_host: Option<String>,
}

/// Builds the shared session services from the configuration. The identity change is the front end's
/// to set (see `privs`): it depends on the mode and must come after the listeners are bound.
pub fn frontend(config: &Config) -> Result<Frontend, StartError> {
    let mut services = Services::new(user_databases(config)?, config.mail.clone());
    services.auth_failure_delay = config.auth_failure_delay;
    services.max_auth_attempts = config.max_auth_attempts;
    // AUTHORIZATION is never allowed longer than an idle logged-in session.
    services.login_timeout = config.login_timeout.min(config.timeout);
    services.timeout = config.timeout;
    let apop_host = config.apop.then(|| config.hostname.clone().unwrap_or_else(system_hostname));
    Ok(Frontend { services, timeout: config.timeout, apop_host })
}

/// The passwd-file, the system accounts, or both: then the passwd-file is asked first, and a name it
/// has is decided by it alone (see `auth::chain`).
fn user_databases(config: &Config) -> Result<Arc<dyn Authenticator>, StartError> {
    let mut sources: Vec<Arc<dyn Authenticator>> = Vec::new();
    if let Some(path) = &config.passwd {
        let passwd = PasswdFile::open(path).map_err(|e| StartError::config(e.to_string()))?;
        log::debug!("{}: {} users", path.display(), passwd.user_count());
        sources.push(Arc::new(passwd));
    }
    if config.system_users {
        if config.run_as.is_some() && !config.inetd {
            // Each system account owns its maildrop; a process that is one user for all cannot open them.
            return Err(StartError::config("--system-users and --user exclude each other in standalone mode"));
        }
        let (passwd, shadow) = (Path::new(system::PASSWD), Path::new(system::SHADOW));
        let users = SystemUsers::open(passwd, shadow).map_err(StartError::config)?;
        log::debug!("system accounts: {} may log in", users.user_count());
        sources.push(Arc::new(users));
    }
    match sources.len() {
        0 => Err(StartError::config("no user database: set --passwd FILE or --system-users")),
        1 => Ok(sources.remove(0)),
        _ => Ok(Arc::new(Chain::new(sources))),
    }
}

fn system_hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".to_string())
}

/// RFC 1939 section 7: the timestamp "MUST be different each time the POP3 server issues a banner
/// greeting". Process id, a per-process counter, the time and random bytes make it unique even for two
/// connections in the same second, and unpredictable.
pub fn apop_timestamp(host: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let random = getrandom::u64().unwrap_or(now ^ counter.rotate_left(32));
    crate::auth::apop::timestamp(std::process::id(), counter, now, random, host)
}

/// Signals whose default action would kill every session for one session's trouble are ignored, so the
/// failing system call returns an error to that session instead: SIGPIPE (a client gone mid-write gives
/// EPIPE) and SIGXFSZ (a file size limit, `ulimit -f`, gives EFBIG during an mbox UPDATE, which rolls back).
pub fn ignore_fatal_signals() {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGPIPE, Signal::SIGXFSZ] {
        // SAFETY: SIG_IGN installs no code.
        if let Err(e) = unsafe { sigaction(signal, &ignore) } {
            log::warn!("cannot ignore {signal}: {e}");
        }
    }
}

/// Runs the standalone server until SIGTERM or SIGINT.
pub fn run(config: &Config) -> Result<(), StartError> {
    ignore_fatal_signals();
    let mut frontend = frontend(config)?;
    let listeners = bind_all(&config.listen)?;
    // After binding (port 110 needs root), before the first accept: see `privs` for the model.
    let privileges = Privileges::standalone(config.run_as.as_deref()).map_err(StartError::runtime)?;
    log::debug!("privileges: {privileges:?}");
    frontend.services.identity = Arc::new(privileges);
    let frontend = Arc::new(frontend);
    let signals = SignalPipe::install().map_err(|e| StartError::runtime(format!("signal set-up: {e}")))?;
    for l in &listeners {
        log::info!("listening on {}", l.local_addr().map(|a| a.to_string()).unwrap_or_default());
    }
    let active = Arc::new(AtomicUsize::new(0));
    let limits = Limits { max_sessions: config.max_sessions, per_ip: PerIp::new(config.max_per_ip) };
    accept_loop(&listeners, &signals, &frontend, &active, &limits)?;
    drop(listeners);
    wait_for_sessions(&frontend, &active, config.shutdown_grace);
    Ok(())
}

/// Binds the configured addresses, or port 110 on all IPv6 and IPv4 addresses by default.
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, StartError> {
    if !addrs.is_empty() {
        return addrs.iter().map(|a| bind(*a).map_err(|e| StartError::runtime(format!("listen {a}: {e}")))).collect();
    }
    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT));
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, DEFAULT_PORT));
    let mut listeners = Vec::new();
    match bind(v6) {
        Ok(l) => listeners.push(l),
        // A host without IPv6 still serves IPv4.
        Err(e) => log::warn!("listen {v6}: {e}; serving IPv4 only"),
    }
    listeners.push(bind(v4).map_err(|e| StartError::runtime(format!("listen {v4}: {e}")))?);
    Ok(listeners)
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // IPv4 gets its own listener, so the IPv6 one must not claim v4-mapped addresses too.
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn accept_loop(
    listeners: &[TcpListener],
    signals: &SignalPipe,
    frontend: &Arc<Frontend>,
    active: &Arc<AtomicUsize>,
    limits: &Limits,
) -> Result<(), StartError> {
    loop {
        let mut fds: Vec<PollFd<'_>> = listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)).collect();
        fds.push(PollFd::new(signals.read.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(StartError::runtime(format!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[listeners.len()] {
            if let Some(signal) = signals.take() {
                log::info!("{signal}: shutting down, no new sessions");
                return Ok(());
            }
        }
        for (listener, _) in listeners.iter().zip(&ready).filter(|(_, r)| **r) {
            accept_one(listener, frontend, active, limits);
        }
    }
}

/// The session caps: in total (`--max-sessions`) and per client address (`--max-per-ip`).
struct Limits {
    max_sessions: usize,
    per_ip: Arc<PerIp>,
}

fn accept_one(listener: &TcpListener, frontend: &Arc<Frontend>, active: &Arc<AtomicUsize>, limits: &Limits) {
    let (mut stream, peer) = match listener.accept() {
        Ok(accepted) => accepted,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => return,
        Err(e) => {
            // EMFILE and friends: back off briefly instead of spinning on a full descriptor table.
            log::error!("accept: {e}");
            thread::sleep(Duration::from_millis(100));
            return;
        }
    };
    let Some(ticket) = admit(&mut stream, peer, active, limits) else {
        return;
    };
    if let Err(e) = prepare(&stream) {
        log::debug!("peer={peer}: {e}");
        return;
    }
    active.fetch_add(1, Ordering::SeqCst);
    let guard = ActiveGuard(Arc::clone(active));
    let frontend = Arc::clone(frontend);
    let spawned = thread::Builder::new().name("session".into()).stack_size(SESSION_STACK).spawn(move || {
        let _guard = (guard, ticket);
        session(stream, peer, &frontend);
    });
    if let Err(e) = spawned {
        log::error!("peer={peer}: cannot start a session thread: {e}");
    }
}

/// Applies the session caps; a refused client gets one `[SYS/TEMP]` line (RFC 3206: "the problem is
/// temporary") and the connection is closed.
fn admit(stream: &mut TcpStream, peer: SocketAddr, active: &AtomicUsize, limits: &Limits) -> Option<Ticket> {
    let max = limits.max_sessions;
    if active.load(Ordering::SeqCst) >= max {
        log::warn!("peer={peer}: refused, {max} sessions already running");
        let _ = stream.write_all(b"-ERR [SYS/TEMP] too many sessions, try again later\r\n");
        return None;
    }
    let ticket = limits.per_ip.enter(peer.ip());
    if ticket.is_none() {
        log::warn!("peer={peer}: refused, {} sessions from this address already running", limits.per_ip.max());
        let _ = stream.write_all(b"-ERR [SYS/TEMP] too many sessions from your address, try again later\r\n");
    }
    ticket
}

/// Accepted sockets: blocking (the stream polls for its timeouts), no Nagle (it turns a pipelined exchange
/// into delayed-ACK stalls), keepalive for vanished peers.
pub fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    keepalive(&SockRef::from(stream))
}

pub fn keepalive(socket: &SockRef<'_>) -> io::Result<()> {
    let params = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket.set_tcp_keepalive(&params)
}

fn session(stream: TcpStream, peer: SocketAddr, frontend: &Frontend) {
    let peer = peer.to_string();
    let timestamp = frontend.apop_host.as_deref().map(apop_timestamp);
    // Until login the read deadline is the login timer; conn switches to the autologout timer after it.
    let stream = Stream::new(Transport::Tcp(stream), frontend.services.login_timeout, frontend.timeout);
    let (stats, elapsed) = conn::serve(stream, &frontend.services, &peer, timestamp);
    conn::log_session_end(&peer, &stats, elapsed);
}

/// Decrements the session count when a session thread ends, even by panic.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Exiting mid-session loses nothing (only QUIT deletes); a session inside UPDATE is always waited for.
fn wait_for_sessions(frontend: &Frontend, active: &AtomicUsize, grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let sessions = active.load(Ordering::SeqCst);
        let updating = frontend.services.updates_in_progress.load(Ordering::SeqCst);
        if sessions == 0 || (Instant::now() >= deadline && updating == 0) {
            log::info!("shutdown ({sessions} sessions cut off)");
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The self-pipe trick: signal handlers only write a byte, which wakes the accept loop's `poll`.
struct SignalPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: nix::libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; the fd stays open for the life of the process.
        unsafe { nix::libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

impl SignalPipe {
    fn install() -> nix::Result<SignalPipe> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        SIGNAL_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            // SAFETY: the handler only calls write(2) on a descriptor it loads atomically.
            unsafe { sigaction(signal, &action) }?;
        }
        Ok(SignalPipe { read, _write: write })
    }

    /// The signal that arrived, if any.
    fn take(&self) -> Option<Signal> {
        let mut byte = [0u8; 1];
        match nix::unistd::read(&self.read, &mut byte) {
            Ok(1) => Signal::try_from(i32::from(byte[0])).ok(),
            _ => None,
        }
    }
}
