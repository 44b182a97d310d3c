//! The standalone front end: an accept loop over the listening sockets (`listen`) that gives each
//! connection its own OS thread, the session cap and the descriptors it needs, reloading on SIGHUP (the
//! configuration, the passwd-file and the TLS certificate), and orderly shutdown on SIGTERM/SIGINT
//! (`signals`). What it shares with the inetd front end is in `startup`.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use socket2::SockRef;

use crate::admission::{PerIp, Ticket};
use crate::check;
use crate::cli::Origins;
use crate::config::Config;
use crate::conn;
use crate::listen::{self, Listener};
use crate::notify::{Notifier, State, notify};
use crate::privs::{FirstValid, Privileges};
use crate::proto::reply::Tally;
use crate::reload::Live;
use crate::signals::{self, SignalPipe};
use crate::startup::{Frontend, StartError, apop_timestamp, client_address, frontend, keepalive};
use crate::stream::{Stream, Transport};
use crate::workers;

/// Stack of a session thread. Sessions run no deep recursion; the largest frames are the password
/// hashes and the log formatter. Only touched pages cost memory: measured (RSS of the stack mappings in
/// /proc/PID/smaps) at 12 KiB after a plain login and 16 KiB at most after {BLF-CRYPT} and
/// {SHA512-CRYPT} logins, LIST, UIDL, TOP, RETR and an overlong line at debug log level. A smaller
/// stack would save no memory, only address space, so the reserve stays 8 times the high-water mark
/// (TLS handshakes run on this stack too).
pub const SESSION_STACK: usize = 128 * 1024;

/// Re-reads the configuration (the same files and command line as at start-up), for SIGHUP, with where
/// each setting came from.
pub type Reload<'a> = &'a dyn Fn() -> Result<(Config, Origins), String>;

/// Runs the standalone server until SIGTERM or SIGINT; SIGHUP re-reads only the passwd-file.
pub fn run(config: &Config) -> Result<(), StartError> {
    let same = || Ok((config.clone(), Origins::default()));
    serve(config, &same)
}

/// Runs the standalone server until SIGTERM or SIGINT; SIGHUP calls `reload` and puts the result into
/// effect for new sessions.
pub fn serve(config: &Config, reload: Reload<'_>) -> Result<(), StartError> {
    signals::ignore_fatal_signals();
    let activated = crate::activation::listeners().map_err(StartError::runtime)?;
    let notifier = Notifier::from_env();
    let mut frontend = frontend(config)?;
    let listeners = match activated {
        Some(sockets) => listen::adopted(sockets, config),
        None => listen::listeners(config)?,
    };
    ensure_descriptors(config.max_sessions);
    for warning in crate::startup::unreadable_by_run_as(config) {
        log::warn!("{warning}");
    }
    // After binding (port 110 needs root), before the first accept: see `privs` for the model.
    let privileges = Privileges::standalone(
        config.run_as.as_deref(),
        config.mail_group.as_deref(),
        FirstValid::of(config),
    )
    .map_err(StartError::runtime)?;
    log::debug!("privileges: {privileges:?}");
    frontend.services.identity = Arc::new(privileges);
    let frontend = Arc::new(frontend);
    // One table for the life of the server: a reload must not forget who is connected.
    let per_ip = PerIp::new(config.max_per_ip, config.ipv6_prefix);
    let signals =
        SignalPipe::install().map_err(|e| StartError::runtime(format!("signal set-up: {e}")))?;
    log::info!(
        "poplar {} started, pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    for l in &listeners {
        let addr = l
            .socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if l.implicit_tls {
            log::info!("listening on {addr} (TLS)");
        } else {
            log::info!("listening on {addr}");
        }
    }
    let active = Arc::new(AtomicUsize::new(0));
    let mut live = Live::new(config, frontend);
    let mut reserve = Reserve::open();
    notify(notifier.as_ref(), State::Ready);
    let signal = loop {
        match accept_loop(&listeners, &signals, &live, &active, &per_ip, &mut reserve)? {
            Event::Reload => {
                notify(notifier.as_ref(), State::Reloading);
                reload_into(&mut live, &per_ip, config, reload);
                notify(notifier.as_ref(), State::Ready);
            }
            Event::Stop(signal) => break signal,
        }
    };
    // Closed before the line says so: a client that reads it and connects must find no listener.
    drop(listeners);
    log::info!("{signal}: shutting down, no new sessions");
    notify(notifier.as_ref(), State::Stopping);
    wait_for_sessions(&live, &active);
    Ok(())
}

/// SIGHUP: a configuration or passwd-file that does not load is logged and the running one kept, so a
/// typo cannot take the server down.
fn reload_into(live: &mut Live, per_ip: &PerIp, started: &Config, reload: Reload<'_>) {
    // As at start-up, a failure that --check-config's checks explain is reported as they word it.
    let loaded = reload().and_then(|(new, origins)| match frontend(&new) {
        Ok(f) => Ok((new, f)),
        Err(e) => {
            Err(check::validate(&new, &origins).map_or_else(|p| p.to_string(), |_| e.message))
        }
    });
    match loaded {
        Ok((new, mut frontend)) => {
            ensure_descriptors(new.max_sessions);
            // The privileges were settled at start-up and stay: a reload must not lose the per-thread switch.
            frontend.services.identity = Arc::clone(&live.frontend.services.identity);
            // One UPDATE gate for all: shutdown must see the sessions of every configuration.
            frontend.services.updates = Arc::clone(&live.frontend.services.updates);
            per_ip.set_limits(new.max_per_ip, new.ipv6_prefix);
            live.replace(started, &new, frontend);
            // As at start-up: a reload can bring the same unwise settings in.
            for warning in new.warnings() {
                log::warn!("reload: {warning}");
            }
        }
        Err(e) => {
            // After --user the process reads as that account, not as root as it did at start-up.
            let account = started.run_as.as_deref().map_or(String::new(), |user| {
                format!(" (files are read as {user} since start-up)")
            });
            log::error!("reload: {e}{account}; keeping the running configuration")
        }
    }
}

/// Descriptors one session may hold at once, counted from the code and rounded up: its connection,
/// the maildrop's session lock, the maildrop (an mbox, or a Maildir's `new/` and `cur/`), a message,
/// and during an mbox UPDATE the delivery locks, the recovery file and a directory to sync. Traced with
/// strace at the peak of an mbox UPDATE (1,000 of 2,000 messages deleted): 7, the connection, the
/// session lock, the mbox and a duplicate of it, the dotlock's temporary file, the recovery file and the
/// directory.
const DESCRIPTORS_PER_SESSION: u64 = 8;
/// Descriptors beside the sessions': listeners, the signal pipe, the log, files read at login.
const DESCRIPTORS_SPARE: u64 = 64;

/// Raises the soft limit on open files (RLIMIT_NOFILE) to what `max_sessions` sessions may need, as far
/// as the hard limit allows, and warns when it does not allow enough. The usual soft limit, 1024, is
/// enough for the default 100 sessions, not for 1,000.
fn ensure_descriptors(max_sessions: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // Sessions lingering after their close hold their connection outside --max-sessions.
    let need = u64::try_from(max_sessions)
        .unwrap_or(u64::MAX)
        .saturating_mul(DESCRIPTORS_PER_SESSION)
        .saturating_add(DESCRIPTORS_SPARE)
        .saturating_add(conn::MAX_LINGERING as u64);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!("cannot read the limit on open files: {e}");
            return;
        }
    };
    if soft >= need {
        return;
    }
    let raised = need.min(hard);
    if raised > soft {
        match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
            Ok(()) => log::info!(
                "limit on open files raised from {soft} to {raised} for max-sessions {max_sessions}"
            ),
            Err(e) => log::warn!("cannot raise the limit on open files from {soft}: {e}"),
        }
    }
    if raised < need {
        log::warn!(
            "max-sessions {max_sessions} may need {need} open files, above the hard limit of {hard}: \
             raise it (LimitNOFILE= under systemd, ulimit -n) or lower max-sessions"
        );
    }
}

/// Why the accept loop returned.
enum Event {
    /// SIGHUP: re-read the configuration, then accept again.
    Reload,
    /// SIGTERM or SIGINT.
    Stop(Signal),
}

fn accept_loop(
    listeners: &[Listener],
    signals: &SignalPipe,
    live: &Live,
    active: &Arc<AtomicUsize>,
    per_ip: &Arc<PerIp>,
    reserve: &mut Reserve,
) -> Result<Event, StartError> {
    loop {
        let mut fds: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|l| PollFd::new(l.socket.as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(signals.read.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(StartError::runtime(format!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
        drop(fds);
        if ready[listeners.len()] {
            match signals.take() {
                Some(Signal::SIGHUP) => return Ok(Event::Reload),
                Some(signal) => return Ok(Event::Stop(signal)),
                None => {}
            }
        }
        for (listener, _) in listeners.iter().zip(&ready).filter(|(_, r)| **r) {
            accept_one(
                listener,
                &live.frontend,
                active,
                live.max_sessions,
                per_ip,
                reserve,
            );
        }
    }
}

fn accept_one(
    listener: &Listener,
    frontend: &Arc<Frontend>,
    active: &Arc<AtomicUsize>,
    max_sessions: usize,
    per_ip: &Arc<PerIp>,
    reserve: &mut Reserve,
) {
    let implicit_tls = listener.implicit_tls;
    let (mut stream, peer) = match listener.socket.accept() {
        Ok(accepted) => accepted,
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            return;
        }
        Err(e) if reserve.refuse_one(listener, &e) => return,
        Err(e) => {
            // EMFILE with no reserve, ENOBUFS and friends: back off briefly instead of spinning.
            log::error!("accept: {e}");
            thread::sleep(Duration::from_millis(100));
            return;
        }
    };
    // An address over --max-per-ip is refused here, before it takes a place under --max-sessions:
    // counted only on its session thread, a client connecting and closing fast from one address
    // kept enough places taken to have clients from other addresses refused. The client behind a
    // trusted proxy is known only from the PROXY header, which the session thread reads.
    let ticket = if crate::config::in_networks(peer.ip(), &frontend.proxy_from) {
        None
    } else {
        match admit_address(&mut stream, peer, per_ip, implicit_tls) {
            Some(ticket) => Some(ticket),
            None => return,
        }
    };
    if active.load(Ordering::SeqCst) >= max_sessions {
        log::warn!("peer={peer}: refused, {max_sessions} sessions already running");
        refuse(
            &mut stream,
            implicit_tls,
            b"-ERR [SYS/TEMP] too many sessions, try again later\r\n",
        );
        return;
    }
    if let Err(e) = prepare(&stream) {
        log::debug!("peer={peer}: {e}");
        return;
    }
    active.fetch_add(1, Ordering::SeqCst);
    let job = Box::new(SessionJob {
        active: ActiveGuard(Arc::clone(active)),
        stream,
        peer,
        frontend: Arc::clone(frontend),
        implicit_tls,
        per_ip: Arc::clone(per_ip),
        ticket,
    });
    if let Err(e) = workers::run(job, "session", SESSION_STACK) {
        log::error!("peer={peer}: cannot start a session thread: {e}");
    }
}

/// An accepted connection waiting for its session thread.
struct SessionJob {
    /// Holds the connection's place under --max-sessions until the session gives it up after its close
    /// (see `conn::serve_tls`), or the job is done or dropped: it bounds the session threads, a
    /// session's last replies and close included. The shutdown waits for it, and then for the
    /// sessions still lingering after their close (see [`Draining`]).
    active: ActiveGuard,
    stream: TcpStream,
    peer: SocketAddr,
    frontend: Arc<Frontend>,
    implicit_tls: bool,
    per_ip: Arc<PerIp>,
    /// The place under --max-per-ip, taken at accept unless the client is behind a trusted proxy.
    ticket: Option<Ticket>,
}

impl workers::Work for SessionJob {
    fn serve(self: Box<Self>) -> bool {
        let job = *self;
        let mut active = Some(job.active);
        session(
            job.stream,
            job.peer,
            &job.frontend,
            job.implicit_tls,
            &job.per_ip,
            job.ticket,
            &mut active,
        );
        drop(active);
        // The thread serves another session only with its start-up identity back.
        match job.frontend.services.identity.restore() {
            Ok(()) => true,
            Err(e) => {
                log::warn!("session thread ends, its identity not restored: {e}");
                false
            }
        }
    }

    /// No thread for it (out of memory, or the user's process limit): the client is told, as when the
    /// server is full, instead of seeing the connection close unanswered.
    fn refuse(mut self: Box<Self>) {
        refuse(&mut self.stream, self.implicit_tls, BUSY);
    }
}

/// What a client refused for want of descriptors or threads is told.
const BUSY: &[u8] = b"-ERR [SYS/TEMP] server busy, try again later\r\n";

/// Tells a client refused before its session began why (the caller closes the connection).
/// Not on an implicit-TLS listener: its client would take a plaintext line for a broken handshake, and
/// just sees the close.
fn refuse(stream: &mut TcpStream, implicit_tls: bool, line: &[u8]) {
    if !implicit_tls {
        let _ = stream.write_all(line);
    }
}

/// One descriptor kept open for the moment the table is full (EMFILE, or ENFILE system-wide): closing it
/// makes room to accept the next client and tell it so, where it would otherwise wait unanswered in the
/// kernel's queue until it gave up, and the accept loop would retry it ten times a second.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn open() -> Reserve {
        Reserve(std::fs::File::open("/dev/null").ok())
    }

    /// After `accept` failed with `error`: when the descriptors ran out, accepts one client with the
    /// reserve's descriptor, refuses it with `[SYS/TEMP]` and takes the reserve back. False when `error`
    /// is another, or no reserve could be had (a session took the descriptor it freed last time).
    fn refuse_one(&mut self, listener: &Listener, error: &io::Error) -> bool {
        if !matches!(
            error.raw_os_error(),
            Some(nix::libc::EMFILE | nix::libc::ENFILE)
        ) {
            return false;
        }
        if self.0.take().or_else(|| Reserve::open().0).is_none() {
            return false;
        }
        if let Ok((mut stream, peer)) = listener.socket.accept() {
            log::warn!("peer={peer}: refused, {error}");
            refuse(&mut stream, listener.implicit_tls, BUSY);
        }
        *self = Reserve::open();
        true
    }
}

/// Accepted sockets: blocking (the stream bounds each wait with the socket's timeouts), no Nagle (it turns
/// a pipelined exchange into delayed-ACK stalls), keepalive for vanished peers.
pub fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    keepalive(&SockRef::from(stream))
}

/// `ticket`: the session's place under --max-per-ip, taken at accept unless the client is behind a
/// trusted proxy, else here; `active`, its place under --max-sessions. The session gives them up as
/// its end nears (see `conn::serve_tls`).
fn session(
    mut stream: TcpStream,
    peer: SocketAddr,
    frontend: &Frontend,
    implicit_tls: bool,
    per_ip: &Arc<PerIp>,
    ticket: Option<Ticket>,
    active: &mut Option<ActiveGuard>,
) {
    // The PROXY protocol header comes before the TLS handshake: the load balancer writes it in the clear.
    let Some(peer) = client_address(&mut stream, peer, frontend) else {
        return;
    };
    // Behind a proxy, counted by the real client's address, so applied after the PROXY header, here.
    let Some(ticket) = ticket.or_else(|| admit_address(&mut stream, peer, per_ip, implicit_tls))
    else {
        return;
    };
    let mut ticket = Some(ticket);
    let ip = peer.ip();
    let peer = peer.to_string();
    let timestamp = frontend.apop_host.as_deref().map(apop_timestamp);
    // Until login the read deadline is the login timer; conn switches to the autologout timer after it.
    let stream = Stream::new(
        Transport::Tcp(stream),
        frontend.services.login_timeout,
        frontend.timeout,
    );
    // After its close, until its last log line: see `Draining`.
    let mut draining: Option<Draining> = None;
    let tls = frontend.tls.as_ref().map(|acceptor| conn::Tls {
        acceptor,
        implicit: implicit_tls,
    });
    if implicit_tls && tls.is_none() {
        // A reload dropped the certificate while the port 995 socket stays bound until a restart: a
        // client there expects TLS and must never be served, let alone asked for a password, in clear.
        log::error!(
            "peer={peer}: implicit TLS listener without a certificate since a reload; closed"
        );
        return;
    }
    let client = conn::Client {
        peer: &peer,
        ip: Some(ip),
    };
    let (stats, elapsed) = conn::serve_tls(
        stream,
        &frontend.services,
        client,
        timestamp,
        tls,
        &mut |place| {
            drop(ticket.take());
            if place == conn::Place::Session
                && let Some(active) = active.take()
            {
                draining = Some(active.drain());
            }
        },
    );
    conn::log_session_end(&peer, &stats, elapsed);
    drop(draining);
}

/// `--max-per-ip`: a ticket for one more session from this client address, or a `[SYS/TEMP]` line (RFC
/// 3206: "the problem is temporary") and `None`, and the caller closes the connection.
fn admit_address(
    stream: &mut TcpStream,
    peer: SocketAddr,
    per_ip: &Arc<PerIp>,
    implicit_tls: bool,
) -> Option<Ticket> {
    let ticket = per_ip.enter(peer.ip());
    if let Err(from) = &ticket {
        log::warn!(
            "peer={peer}: refused, {} sessions from {from} already running",
            per_ip.max()
        );
        refuse(
            stream,
            implicit_tls,
            b"-ERR [SYS/TEMP] too many sessions from your address, try again later\r\n",
        );
    }
    ticket.ok()
}

/// Decrements the session count when a session thread ends, even by panic.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    /// The place given up, the session counted as draining instead (counted first, so that the
    /// shutdown never sees it in neither count).
    fn drain(self) -> Draining {
        DRAINING.fetch_add(1, Ordering::SeqCst);
        Draining
    }
}

/// Sessions past their close (after QUIT) that have given up their place under --max-sessions but
/// are still reading what the client sent behind QUIT, or writing their last log line. The
/// shutdown waits for them too (at most the 200 ms linger): an exit meanwhile would reset the
/// connection, and a client could lose the end of its last replies to a QUIT already carried out
/// (a review: 2,048 of 288,127 octets, the message deleted), and the log its session-end lines.
static DRAINING: AtomicUsize = AtomicUsize::new(0);

/// One session counted in [`DRAINING`] until dropped.
struct Draining;

impl Drop for Draining {
    fn drop(&mut self) {
        DRAINING.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Exiting mid-session loses nothing (only QUIT deletes); a session inside UPDATE is always waited for.
fn wait_for_sessions(live: &Live, active: &AtomicUsize) {
    let deadline = Instant::now() + live.shutdown_grace;
    loop {
        let sessions = active.load(Ordering::SeqCst);
        let draining = DRAINING.load(Ordering::SeqCst);
        // Past the grace period the gate closes as soon as no UPDATE is running: a QUIT after that is
        // refused, never begun and cut off by the exit.
        if (sessions == 0 && draining == 0)
            || (Instant::now() >= deadline && live.updates().close_if_idle())
        {
            let cut_off = (sessions + draining) as u64;
            log::info!("shutdown ({} cut off)", Tally(cut_off, "session"));
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
