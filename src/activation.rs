//! systemd socket activation for the standalone server, the `sd_listen_fds(3)` protocol: the service
//! manager binds the listening sockets and passes them as descriptors 3, 4, ... with `LISTEN_FDS` saying
//! how many and `LISTEN_PID` naming the process they are meant for. This file owns taking them over;
//! binding our own sockets is `server`'s job.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use socket2::{Domain, Socket, Type};

/// `SD_LISTEN_FDS_START`: the first passed descriptor.
const FIRST_FD: RawFd = 3;

/// More would be a confused environment, not a real unit: refuse rather than adopt random descriptors.
const MAX_FDS: usize = 64;

/// Takes the listening sockets passed by systemd (or `systemd-socket-activate`), if any were passed to
/// this process. The variables are removed so that nothing this process starts believes the descriptors
/// are its own, and the descriptors are marked close-on-exec, as `sd_listen_fds(1)` does.
pub fn listeners() -> Result<Option<Vec<TcpListener>>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let count = passed_fds(pid.as_deref(), fds.as_deref(), std::process::id())?;
    if pid.is_some() || fds.is_some() {
        // SAFETY: called from the main thread at start-up, before any other thread exists, so nothing
        // reads the environment concurrently.
        unsafe {
            std::env::remove_var("LISTEN_PID");
            std::env::remove_var("LISTEN_FDS");
            std::env::remove_var("LISTEN_FDNAMES");
        }
    }
    let Some(count) = count else { return Ok(None) };
    (FIRST_FD..FIRST_FD + count as RawFd)
        .map(adopt)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// How many descriptors were passed to the process `me`: `None` when the variables are absent or meant
/// for another process (a parent that was activated and did not clear them).
pub fn passed_fds(pid: Option<&str>, fds: Option<&str>, me: u32) -> Result<Option<usize>, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    if pid.parse::<u32>().ok() != Some(me) {
        return Ok(None);
    }
    match fds.parse::<usize>() {
        Ok(0) => Err("LISTEN_FDS=0: socket activation passed no sockets".to_string()),
        Ok(n) if n <= MAX_FDS => Ok(Some(n)),
        _ => Err(format!(
            "LISTEN_FDS={fds:?} is not a number of sockets (1..={MAX_FDS})"
        )),
    }
}

/// One passed descriptor as a listener: it must be a listening stream socket (`ListenStream=`).
fn adopt(fd: RawFd) -> Result<TcpListener, String> {
    let problem = |what: &str| format!("socket activation: descriptor {fd} {what}");
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF on a closed descriptor.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return Err(problem("is not open"));
    }
    // SAFETY: the sd_listen_fds protocol hands descriptors 3..3+LISTEN_FDS to this process, which has
    // opened nothing there itself yet (this runs first at start-up), and F_GETFD just proved it open.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    fcntl(&owned, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(|e| problem(&e.to_string()))?;
    let socket = Socket::from(owned);
    match (socket.r#type(), socket.is_listener()) {
        (Ok(Type::STREAM), Ok(true)) => {}
        _ => {
            return Err(problem(
                "is not a listening stream socket (use ListenStream=)",
            ));
        }
    }
    // A Unix socket (ListenStream=/path) would fail every accept as a TCP listener.
    if !matches!(socket.domain(), Ok(Domain::IPV4 | Domain::IPV6)) {
        return Err(problem(
            "is not a TCP socket (use ListenStream=ADDRESS:PORT or a port)",
        ));
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| problem(&e.to_string()))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_tcp_sockets_are_adopted() {
        use std::os::fd::IntoRawFd;
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let e = adopt(unix.into_raw_fd()).unwrap_err();
        assert!(e.contains("is not a TCP socket"), "{e}");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(adopt(tcp.into_raw_fd()).is_ok());
    }

    #[test]
    fn listen_pid_and_fds() {
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Result<Option<usize>, ()>);
        let table: &[Case<'_>] = &[
            (None, None, Ok(None)),
            (Some("42"), None, Ok(None)),
            (None, Some("1"), Ok(None)),
            (Some("41"), Some("1"), Ok(None)),
            (Some("x"), Some("1"), Ok(None)),
            (Some("42"), Some("1"), Ok(Some(1))),
            (Some("42"), Some("3"), Ok(Some(3))),
            (Some("42"), Some("0"), Err(())),
            (Some("42"), Some("-1"), Err(())),
            (Some("42"), Some("65"), Err(())),
            (Some("42"), Some("two"), Err(())),
        ];
        for (pid, fds, want) in table {
            assert_eq!(
                passed_fds(*pid, *fds, 42).map_err(|_| ()),
                *want,
                "{pid:?} {fds:?}"
            );
        }
    }
}
