//! The standalone server's listening sockets: bound with socket2 from `--listen` and `--listen-tls`
//! (port 110 on IPv6 and IPv4 when neither is given), or handed over by systemd socket activation.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

use crate::config::{Config, DEFAULT_PORT};
use crate::startup::StartError;

/// Kernel accept queue: the classic SOMAXCONN, enough for bursts of fetchmail cron jobs.
const BACKLOG: i32 = 1024;

/// A listening socket; `implicit_tls` ones (`--listen-tls`, RFC 8314) start every connection with a
/// TLS handshake.
pub struct Listener {
    pub socket: TcpListener,
    pub implicit_tls: bool,
}

/// The `--listen` sockets, then the `--listen-tls` ones. The port 110 default applies only when neither is
/// given, so a TLS-only server is `--listen-tls [::]:995` alone.
pub fn listeners(config: &Config) -> Result<Vec<Listener>, StartError> {
    let mut listeners = Vec::new();
    if !config.listen.is_empty() || config.listen_tls.is_empty() {
        listeners.extend(
            bind_all(&config.listen)?
                .into_iter()
                .map(|socket| Listener {
                    socket,
                    implicit_tls: false,
                }),
        );
    }
    for (i, a) in config.listen_tls.iter().enumerate() {
        let socket = bind(*a).map_err(|e| StartError::bind("listen-tls", i, *a, e))?;
        listeners.push(Listener {
            socket,
            implicit_tls: true,
        });
    }
    Ok(listeners)
}

/// Sockets handed over by systemd socket activation, used in place of the listen settings. A passed
/// socket bound where a `--listen-tls` address says (the same port, and the same address or either
/// one a wildcard) starts every connection with a TLS handshake, as that listener would; the others
/// speak POP3 in the clear (with STLS when a certificate is set). Served in the clear, a port 995
/// socket meant for TLS would answer a TLS client with a plaintext greeting it cannot read.
pub fn adopted(sockets: Vec<TcpListener>, config: &Config) -> Vec<Listener> {
    if !config.listen.is_empty() {
        log::warn!(
            "socket activation: using the {} passed sockets, not the listen settings",
            sockets.len()
        );
    }
    sockets
        .into_iter()
        .map(|socket| {
            let local = socket.local_addr().ok();
            let implicit_tls =
                local.is_some_and(|local| config.listen_tls.iter().any(|&a| same_place(a, local)));
            match local {
                Some(local) if implicit_tls => {
                    log::info!("socket activation: {local} is a listen-tls address: implicit TLS")
                }
                Some(local) if local.port() == IMPLICIT_TLS_PORT => log::warn!(
                    "socket activation: {local} served in the clear; name it in listen-tls for \
                     implicit TLS"
                ),
                _ => {}
            }
            Listener {
                socket,
                implicit_tls,
            }
        })
        .collect()
}

/// POP3 over implicit TLS (RFC 8314 section 7.3).
const IMPLICIT_TLS_PORT: u16 = 995;

/// Whether a socket bound at `bound` is the one a listen setting of `wanted` would have bound.
fn same_place(wanted: SocketAddr, bound: SocketAddr) -> bool {
    wanted.port() == bound.port()
        && (wanted.ip() == bound.ip()
            || wanted.ip().is_unspecified()
            || bound.ip().is_unspecified())
}

/// Binds the configured addresses, or port 110 on all IPv6 and IPv4 addresses by default.
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, StartError> {
    if !addrs.is_empty() {
        return addrs
            .iter()
            .enumerate()
            .map(|(i, a)| bind(*a).map_err(|e| StartError::bind("listen", i, *a, e)))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_tls_address_matches_the_socket_bound_there() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let cases = [
            ("127.0.0.1:995", "127.0.0.1:995", true),
            ("0.0.0.0:995", "127.0.0.1:995", true),
            ("[::]:995", "0.0.0.0:995", true),
            ("127.0.0.1:995", "[::]:995", true),
            ("127.0.0.1:995", "127.0.0.2:995", false),
            ("127.0.0.1:995", "127.0.0.1:110", false),
            ("[::]:995", "[::]:110", false),
        ];
        for (wanted, bound, same) in cases {
            assert_eq!(same_place(at(wanted), at(bound)), same, "{wanted} {bound}");
        }
    }
}
