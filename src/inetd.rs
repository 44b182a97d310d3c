//! The inetd front end: one session on fd 0/1, for inetd, xinetd and systemd `Accept=yes`. Those hand the
//! client socket over as fd 0, 1 and 2, so nothing but protocol bytes may be written to stdout or stderr:
//! logs go to syslog, and fd 2, when it is the client's, is pointed at /dev/null before anything could
//! print there. With `--tls` the connection starts with a TLS handshake (RFC 8314 implicit TLS, port 995).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{SockaddrStorage, getpeername, getsockname};
use socket2::SockRef;

use std::sync::Arc;

use crate::config::Config;
use crate::conn;
use crate::privs::{FirstValid, Privileges};
use crate::signals;
use crate::startup::{self, StartError};
use crate::stream::{Stream, Transport};

/// Serves the one connection on stdin/stdout. `private_stderr`: what [`stderr_is_private`] said before
/// anything was printed.
pub fn run(config: &Config, private_stderr: bool) -> Result<(), StartError> {
    if !private_stderr {
        silence_stderr();
    }
    signals::ignore_fatal_signals();
    // SIGHUP reloads a standalone server; a one-session process has nothing to reload, and the default
    // action would end its session, in UPDATE too, whenever `pkill -HUP poplar` meant the standalone one.
    signals::ignore_signals(&[nix::sys::signal::Signal::SIGHUP]);
    let frontend = match startup::frontend(config).and_then(|mut frontend| {
        // As root: switch to the account after login (see `privs`); nothing is parsed as root but logins.
        let privileges = Privileges::inetd(
            config.run_as.as_deref(),
            config.mail_group.as_deref(),
            FirstValid::of(config),
        )
        .map_err(StartError::config)?;
        frontend.services.identity = Arc::new(privileges);
        Ok(frontend)
    }) {
        Ok(frontend) => frontend,
        Err(e) => {
            // Logged once, by the caller, with the file, line and option when the checks name them.
            refuse_client(config.tls);
            return Err(e);
        }
    };
    let (mut input, output) =
        stdio().map_err(|e| StartError::runtime(format!("stdin/stdout: {e}")))?;
    let (peer, ip) = match peer_addr(input.as_fd()) {
        // Behind a load balancer in --proxy-from, the client is the one its PROXY header names.
        Some(addr) => match startup::client_address(&mut input, addr, &frontend) {
            Some(client) => (client.to_string(), Some(client.ip())),
            None => return Ok(()),
        },
        None => (
            peer_name(input.as_fd()),
            unknown_peer_ip(is_inet(input.as_fd())),
        ),
    };
    if is_socket(input.as_fd()) {
        // Only when fd 0 is a socket; a pipe (a test harness) has neither option.
        let sock = SockRef::from(&input);
        let _ = sock.set_tcp_nodelay(true);
        let _ = startup::keepalive(&sock);
    }
    let timestamp = frontend.apop_host.as_deref().map(startup::apop_timestamp);
    // Until login the read deadline is the login timer; conn switches to the autologout timer after it.
    let stream = Stream::new(
        Transport::Stdio { input, output },
        frontend.services.login_timeout,
        frontend.timeout,
    );
    let tls = frontend.tls.as_ref().map(|acceptor| conn::Tls {
        acceptor,
        implicit: config.tls,
    });
    let client = conn::Client { peer: &peer, ip };
    // One process per connection: its launcher counts it until it exits.
    let (stats, elapsed) = conn::serve_tls(
        stream,
        &frontend.services,
        client,
        timestamp,
        tls,
        &mut |_| {},
    );
    conn::log_session_end(&peer, &stats, elapsed);
    Ok(())
}

/// What the client is told when the server cannot start: the only thing it may see is a protocol line
/// (RFC 3206 SYS/PERM: a server problem that needs the administrator, not a retry). A TLS client
/// (`tls`) expects a handshake and would read the line as a broken one, so it is for plaintext only.
pub fn refuse_client(tls: bool) {
    if !tls {
        let mut out = std::io::stdout().lock();
        let _ = out
            .write_all(b"-ERR [SYS/PERM] server misconfigured\r\n")
            .and_then(|()| out.flush());
    }
}

/// Whether fd 2 is somewhere a person or a log collector reads rather than the client's connection, so
/// that start-up errors may go there as well as to syslog. inetd and xinetd make fd 2 the client's
/// socket, and systemd's `Accept=yes` makes it a socket too; a launcher that hands over pipes may give
/// fd 2 the same pipe as fd 1. A terminal is private even when fd 0 and 1 are the same terminal: that is
/// someone trying `poplar --inetd` by hand.
pub fn stderr_is_private() -> bool {
    use nix::sys::stat::{SFlag, fstat};
    use std::io::IsTerminal;
    let stderr = std::io::stderr();
    if stderr.is_terminal() {
        return true;
    }
    let Ok(err) = fstat(stderr.as_fd()) else {
        return false; // closed: nowhere to print
    };
    let socket = SFlag::from_bits_truncate(err.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK;
    let same = |fd: BorrowedFd<'_>| {
        fstat(fd).is_ok_and(|s| (s.st_dev, s.st_ino) == (err.st_dev, err.st_ino))
    };
    !socket && !same(std::io::stdin().as_fd()) && !same(std::io::stdout().as_fd())
}

/// Points fd 2 at /dev/null: a panic message or a stray `eprintln!` must never reach the client.
fn silence_stderr() {
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        let mut stderr_fd = unsafe_stderr();
        let _ = nix::unistd::dup2(null.as_fd(), &mut stderr_fd);
        std::mem::forget(stderr_fd);
    }
}

/// fd 2 as an `OwnedFd` for `dup2`; the caller forgets it so it is never closed.
fn unsafe_stderr() -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: fd 2 exists for the whole process; the OwnedFd is forgotten, never dropped.
    unsafe { OwnedFd::from_raw_fd(2) }
}

/// Private duplicates of fd 0 and 1, so the session owns its descriptors like any other stream, in
/// blocking mode: a launcher may hand over a non-blocking socket (systemd clears O_NONBLOCK, others need
/// not), and the stream's reads and writes rely on blocking (a socket's SO_SNDTIMEO bounds a blocked
/// send; on a non-blocking one the first full send buffer would read as the send timer expiring).
fn stdio() -> std::io::Result<(File, File)> {
    let input = std::io::stdin().as_fd().try_clone_to_owned()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned()?;
    set_blocking(input.as_fd())?;
    set_blocking(output.as_fd())?;
    Ok((File::from(input), File::from(output)))
}

/// Clears O_NONBLOCK, which belongs to the open file description: the launcher's copy has been handed
/// over to this process, as systemd does before it starts an `Accept=yes` service.
fn set_blocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    if flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

fn is_socket(fd: BorrowedFd<'_>) -> bool {
    getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd)).is_ok()
}

/// The client's IP address and port, when fd 0 is a TCP socket.
fn peer_addr(fd: BorrowedFd<'_>) -> Option<std::net::SocketAddr> {
    let addr = getpeername::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd)).ok()?;
    match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
        (Some(v4), _) => Some(std::net::SocketAddr::V4((*v4).into())),
        (_, Some(v6)) => Some(std::net::SocketAddr::V6((*v6).into())),
        _ => None,
    }
}

/// Whether fd 0 is an IPv4 or IPv6 socket (whether or not its peer can still be named).
fn is_inet(fd: BorrowedFd<'_>) -> bool {
    getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .is_ok_and(|addr| addr.as_sockaddr_in().is_some() || addr.as_sockaddr_in6().is_some())
}

/// The IP address `allow_nets` sees when the client's cannot be read. A pipe or a Unix socket has
/// none: that is `allow_nets=local`. A TCP socket whose peer is gone (reset before poplar asked) is
/// not local, so it gets the unspecified address, which only a network of everything (`0.0.0.0/0`)
/// admits.
fn unknown_peer_ip(inet_socket: bool) -> Option<std::net::IpAddr> {
    inet_socket.then_some(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The client's address for the logs, or a placeholder when fd 0 is not a socket.
fn peer_name(fd: BorrowedFd<'_>) -> String {
    match getpeername::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd)) {
        Ok(addr) => addr
            .as_sockaddr_in()
            .map(|a| a.to_string())
            .or_else(|| addr.as_sockaddr_in6().map(|a| a.to_string()))
            .unwrap_or_else(|| "local".to_string()),
        Err(_) => "stdin".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_session_without_a_peer_is_not_local() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        let (pipe, _write) = nix::unistd::pipe().unwrap();
        assert!(is_inet(tcp.as_fd()));
        assert!(!is_inet(unix.as_fd()) && !is_inet(pipe.as_fd()));
        // allow_nets=local admits only the sessions that have no address at all.
        assert_eq!(unknown_peer_ip(false), None);
        let unknown = unknown_peer_ip(true).expect("an address for a TCP session");
        let local_only = crate::auth::Nets {
            networks: vec![],
            local: true,
        };
        assert!(!local_only.allows(Some(unknown)));
        assert!(local_only.allows(unknown_peer_ip(false)));
    }
}
