//! PROXY protocol v1 and v2 from a load balancer in `--proxy-from`: the logs show the client it names; a
//! header from anywhere else, or a malformed one, closes the connection.

mod common;

use common::{Client, Server, standard};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn v2_inet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12 + 7]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    // A TLV (PP2_TYPE_AUTHORITY "mail.ex") that the server must skip.
    h.extend_from_slice(&[0x02, 0, 4, b'm', b'a', b'i', b'l']);
    h
}

/// Sends `header`, then runs a session as alice and returns its session-end log line, which must name a
/// peer starting with `peer`.
fn session_behind(server: &Server, header: &[u8], peer: &str) -> String {
    let ends = || {
        server
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("session end"))
            .collect::<Vec<_>>()
    };
    let before = ends().len();
    let mut c = Client::connect(server.addr);
    c.send(header);
    c.greeting();
    c.login("alice", "secret");
    assert!(c.cmd("QUIT").starts_with("+OK"));
    let deadline = std::time::Instant::now() + WAIT;
    while ends().len() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = ends().pop().expect("no session end line");
    assert!(
        line.contains(&format!("session end user=alice peer={peer}")),
        "{line}"
    );
    line
}

#[test]
fn v1_and_v2_headers_name_the_client_in_the_logs() {
    let fx = standard();
    let server = Server::start(
        &fx,
        &["--proxy-from", "127.0.0.1", "--auth-failure-delay", "0"],
    );
    session_behind(
        &server,
        b"PROXY TCP4 192.0.2.7 127.0.0.1 50522 110\r\n",
        "192.0.2.7:50522 ",
    );
    session_behind(
        &server,
        b"PROXY TCP6 2001:db8::9 ::1 4000 110\r\n",
        "[2001:db8::9]:4000 ",
    );
    session_behind(
        &server,
        &v2_inet([198, 51, 100, 9], 40000, [127, 0, 0, 1], 110),
        "198.51.100.9:40000 ",
    );
    assert!(
        server
            .wait_log(&["login user=alice peer=198.51.100.9:40000"], WAIT)
            .is_some()
    );
    // A failed login is logged with the real client too.
    let mut c = Client::connect(server.addr);
    c.send(b"PROXY TCP4 203.0.113.5 127.0.0.1 1234 110\r\n");
    c.greeting();
    c.cmd("USER alice");
    assert!(c.cmd("PASS wrong").starts_with("-ERR"));
    assert!(
        server
            .wait_log(&["login failed user=alice peer=203.0.113.5:1234"], WAIT)
            .is_some()
    );
}

#[test]
fn local_and_unknown_headers_keep_the_connection_address() {
    let fx = standard();
    let server = Server::start(
        &fx,
        &["--proxy-from", "127.0.0.0/8", "--auth-failure-delay", "0"],
    );
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    for header in [&local[..], b"PROXY UNKNOWN\r\n"] {
        let line = session_behind(&server, header, "127.0.0.1:");
        assert!(line.contains("result=quit"), "{line}");
    }
}

#[test]
fn a_header_from_an_untrusted_address_closes_the_connection() {
    let fx = standard();
    for extra in [&[][..], &["--proxy-from", "192.0.2.0/24"][..]] {
        let server = Server::start(&fx, extra);
        for header in [
            &b"PROXY TCP4 192.0.2.7 127.0.0.1 50522 110\r\n"[..],
            &v2_inet([192, 0, 2, 7], 1, [127, 0, 0, 1], 110),
        ] {
            let mut c = Client::connect(server.addr);
            c.greeting();
            c.send(header);
            c.send(b"USER alice\r\n");
            let rest = c.read_to_close(WAIT);
            assert!(
                rest.is_empty(),
                "answered a spoofing peer: {}",
                common::show(&rest)
            );
        }
        assert!(
            server
                .wait_log(
                    &["PROXY protocol header from an address not in proxy-from; closing"],
                    WAIT
                )
                .is_some()
        );
        assert!(
            !server
                .stderr_lines()
                .iter()
                .any(|l| l.contains("192.0.2.7")),
            "the claimed address was believed"
        );
    }
}

/// Only a whole `PROXY ` or the v2 signature's first five octets count as a header: a client whose
/// first packet merely starts like one (two empty lines, `PROX`) is answered, not cut off.
#[test]
fn a_first_packet_that_only_starts_like_a_header_is_answered() {
    let fx = standard();
    let server = Server::start(&fx, &[]);
    for (first, rest, replies) in [(&b"\r\n\r\n"[..], &b""[..], 2), (b"PROX", b"Y\r\n", 1)] {
        let mut c = Client::connect(server.addr);
        c.greeting();
        c.send(first);
        std::thread::sleep(Duration::from_millis(50));
        c.send(rest);
        for _ in 0..replies {
            let reply = c.read_line();
            assert!(reply.starts_with("-ERR"), "{reply}");
        }
        c.login("alice", "secret");
        assert!(c.cmd("QUIT").starts_with("+OK"));
    }
}

#[test]
fn a_trusted_peer_must_send_a_valid_header() {
    let fx = standard();
    let server = Server::start(&fx, &["--proxy-from", "127.0.0.1", "--login-timeout", "1"]);
    let cases: [(&[u8], &str); 3] = [
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            "malformed PROXY v1 line",
        ),
        (b"USER alice\r\n", "no PROXY protocol header"),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x0c",
            "unsupported PROXY v2 version",
        ),
    ];
    for (bytes, why) in cases {
        let mut c = Client::connect(server.addr);
        c.send(bytes);
        let got = c.read_to_close(WAIT);
        assert!(
            got.is_empty(),
            "greeted after {why}: {}",
            common::show(&got)
        );
        assert!(
            server
                .wait_log(&["peer=127.0.0.1:", why, "closing"], WAIT)
                .is_some(),
            "{why}"
        );
    }
    // Silence is bounded by the pre-login timer.
    let mut c = Client::connect(server.addr);
    let started = std::time::Instant::now();
    assert!(c.read_to_close(WAIT).is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        server
            .wait_log(
                &[
                    "peer=127.0.0.1:",
                    "reading the PROXY protocol header: timed out"
                ],
                WAIT
            )
            .is_some()
    );
}

/// Connects through the load balancer as `client` (PROXY v1, TCP6) and returns the first line: the
/// greeting, or the refusal of `--max-per-ip`. The connection is kept open in `held`.
fn greeted_as(server: &Server, client: &str, held: &mut Vec<Client>) -> String {
    let mut c = Client::connect(server.addr);
    c.send(format!("PROXY TCP6 {client} 2001:db8::110 40000 110\r\n").as_bytes());
    let line = c.read_line();
    held.push(c);
    line
}

/// `--max-per-ip` counts an IPv6 client by its /64 (`--ipv6-prefix`): other addresses of the same network
/// share its places, another network has its own, and with a prefix of 128 each address counts alone.
#[test]
fn max_per_ip_counts_an_ipv6_client_by_its_network() {
    let fx = standard();
    let refused = "-ERR [SYS/TEMP] too many sessions from your address, try again later";
    for (prefix, second_of_the_64) in [(None, refused), (Some("128"), "+OK")] {
        let mut args = vec!["--proxy-from", "127.0.0.1", "--max-per-ip", "1"];
        args.extend(prefix.iter().flat_map(|p| ["--ipv6-prefix", p]));
        let server = Server::start(&fx, &args);
        let mut held = Vec::new();
        assert!(greeted_as(&server, "2001:db8:0:1::5", &mut held).starts_with("+OK"));
        let second = greeted_as(&server, "2001:db8:0:1:ffff::6", &mut held);
        assert!(
            second.starts_with(second_of_the_64),
            "prefix {prefix:?}: {second}"
        );
        assert!(greeted_as(&server, "2001:db8:0:2::5", &mut held).starts_with("+OK"));
        if prefix.is_none() {
            assert!(
                server
                    .wait_log(&["refused, 1 sessions from 2001:db8:0:1::/64"], WAIT)
                    .is_some(),
                "the log names the network"
            );
        }
    }
}
