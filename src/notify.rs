//! systemd's readiness protocol, `sd_notify(3)`, for the standalone server: with `Type=notify` the
//! service manager considers poplar started once it listens (not when the process exists), shows it
//! reloading during SIGHUP and stopping after SIGTERM. The protocol is one datagram per state change,
//! `READY=1` and so on, to the Unix socket `NOTIFY_SOCKET` names; without it nothing is sent. This
//! file owns the variable and the socket; when to send is `server`'s business.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// How long a notification may wait for room in the manager's queue. systemd reads its queue as it
/// runs; one still full after this is not being read, and a lost `READY=1` then shows as a start that
/// timed out, as it would have anyway.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// The state changes poplar reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Listening, or done reloading.
    Ready,
    /// Re-reading its configuration (SIGHUP).
    Reloading,
    /// Shutting down (SIGTERM or SIGINT): no new sessions.
    Stopping,
}

impl State {
    fn message(self) -> &'static str {
        match self {
            State::Ready => "READY=1",
            State::Reloading => "RELOADING=1",
            State::Stopping => "STOPPING=1",
        }
    }
}

/// Where the service manager listens: a path, or a name in Linux's abstract namespace (`@name`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

/// The service manager's notification socket, when there is one.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: Address,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for, if any. The variable is removed, as `sd_notify` does when
    /// asked to, so that nothing started later reports in this process's name. Call it from the main
    /// thread at start-up, before other threads exist.
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        // SAFETY: called from the main thread at start-up, before any other thread exists, so nothing
        // reads the environment concurrently.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let Some(address) = parse_address(value.as_encoded_bytes()) else {
            log::warn!("NOTIFY_SOCKET {value:?} is not a socket path or @name; not notifying");
            return None;
        };
        match Notifier::new(address) {
            Ok(notifier) => Some(notifier),
            Err(e) => {
                log::warn!("NOTIFY_SOCKET: cannot make a socket: {e}; not notifying");
                None
            }
        }
    }

    /// A socket for `address`. Blocking, as `sd_notify` sends, but only for [`SEND_TIMEOUT`]: the
    /// sends come from the accept loop, which a manager that stopped reading must not stop.
    fn new(address: Address) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        socket.set_write_timeout(Some(SEND_TIMEOUT))?;
        Ok(Notifier { socket, address })
    }

    /// Reports `state`. A failure is logged and otherwise ignored: the server runs the same whether
    /// or not the service manager heard.
    pub fn notify(&self, state: State) {
        let mut message = String::from(state.message());
        if state == State::Reloading {
            // sd_notify(3): RELOADING=1 goes with the CLOCK_MONOTONIC time the reload began, which
            // systemd's Type=notify-reload needs to tell this reload's READY=1 from an earlier one's.
            if let Some(usec) = monotonic_usec() {
                message.push_str(&format!("\nMONOTONIC_USEC={usec}"));
            }
        }
        if let Err(e) = self.send(message.as_bytes()) {
            log::warn!("NOTIFY_SOCKET: cannot send {}: {e}", state.message());
        }
    }

    fn send(&self, message: &[u8]) -> io::Result<usize> {
        match &self.address {
            Address::Path(path) => self.socket.send_to(message, path),
            Address::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(message, &addr)
            }
        }
    }
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC= with.
fn monotonic_usec() -> Option<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let secs = u64::try_from(now.tv_sec()).ok()?;
    let micros = u64::try_from(now.tv_nsec() / 1000).ok()?;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// `NOTIFY_SOCKET`'s value: an absolute path, or `@` and an abstract name (systemd's forms).
fn parse_address(value: &[u8]) -> Option<Address> {
    match value.split_first()? {
        (b'/', _) => {
            use std::os::unix::ffi::OsStrExt;
            Some(Address::Path(PathBuf::from(std::ffi::OsStr::from_bytes(
                value,
            ))))
        }
        (b'@', name) if !name.is_empty() => Some(Address::Abstract(name.to_vec())),
        _ => None,
    }
}

/// Reports `state` if there is a notifier.
pub fn notify(notifier: Option<&Notifier>, state: State) {
    if let Some(notifier) = notifier {
        notifier.notify(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert_eq!(
            parse_address(b"/run/systemd/notify"),
            Some(Address::Path(PathBuf::from("/run/systemd/notify")))
        );
        assert_eq!(
            parse_address(b"@sd-notify"),
            Some(Address::Abstract(b"sd-notify".to_vec()))
        );
        for bad in [&b""[..], b"@", b"relative/path", b"x"] {
            assert_eq!(parse_address(bad), None, "{bad:?}");
        }
    }

    /// A service manager that does not read (its queue full) must not stop the server: the send gives
    /// up, is logged, and the accept loop goes on.
    #[test]
    fn a_manager_that_does_not_read_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let _manager = UnixDatagram::bind(&path).unwrap();
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        let mut queued = 0;
        while filler.send_to(b"X=1", &path).is_ok() {
            queued += 1;
            assert!(queued < 100_000, "the queue never filled");
        }
        let notifier = Notifier::new(Address::Path(path)).unwrap();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            notifier.notify(State::Stopping);
            let _ = done.send(());
        });
        assert!(
            finished
                .recv_timeout(SEND_TIMEOUT + std::time::Duration::from_secs(5))
                .is_ok(),
            "notify still blocked after {queued} queued datagrams"
        );
    }

    #[test]
    fn each_state_is_one_datagram_to_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(Address::Path(path)).unwrap();
        let mut buf = [0; 64];
        for (state, want) in [(State::Ready, "READY=1"), (State::Stopping, "STOPPING=1")] {
            notifier.notify(state);
            let n = manager.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want.as_bytes());
        }
        // RELOADING=1 carries the monotonic time the reload began, taken between `before` and `after`.
        let before = monotonic_usec().unwrap();
        notifier.notify(State::Reloading);
        let after = monotonic_usec().unwrap();
        let n = manager.recv(&mut buf).unwrap();
        let message = std::str::from_utf8(&buf[..n]).unwrap();
        let usec = message
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{message:?}"));
        assert!(before <= usec && usec <= after, "{before} {usec} {after}");
    }
}
