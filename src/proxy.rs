//! The PROXY protocol header, versions 1 (text) and 2 (binary), as HAProxy's `proxy-protocol.txt`
//! defines it: a load balancer prepends it to the connection so that the server learns the real client.
//! Pure: [`parse`] looks at the bytes received so far and says how many more to read, or what the header
//! says. Reading them (exactly, never past the header) and deciding whom to believe is `conn`'s job.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// "PROXY" followed by exactly one space starts a version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// proxy-protocol.txt 2.1: "a receiver may reject an incoming connection showing a header longer than
/// 107 characters": the longest valid line (`PROXY UNKNOWN` with two full IPv6 addresses), CRLF included.
pub const V1_MAX: usize = 107;

/// The shortest version 1 header, `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;

/// proxy-protocol.txt 2.2: the twelve bytes that open a version 2 header; chosen so that they cannot
/// start any sane text protocol (a blank line, a NUL, then "QUIT").
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Signature, version and command, family and transport, and the 16-bit length of what follows.
pub const V2_FIXED: usize = 16;

/// The address block sizes for AF_INET and AF_INET6 (two addresses, two ports).
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The proxy relays a client: `source` is the client, `destination` the address it connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// v2 LOCAL (the proxy's own health check), v1 UNKNOWN, or a family without an IP address (AF_UNSPEC,
    /// AF_UNIX): the spec says to use the connection's real endpoints.
    Local,
}

/// The result of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Read at least this many more bytes (and at most this many, so nothing past the header is consumed).
    Incomplete(usize),
    /// A whole header, `len` bytes long.
    Complete { header: Header, len: usize },
}

/// Why a header is refused. Any of these closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The bytes start neither `PROXY ` nor the v2 signature.
    NotAHeader,
    /// A v1 line without CRLF within 107 bytes.
    V1TooLong,
    /// A v1 line that is not `PROXY TCP4|TCP6 src dst sport dport` or `PROXY UNKNOWN ...`.
    V1Syntax,
    /// A v2 version nibble other than 2, or a command other than LOCAL and PROXY.
    V2Version,
    /// A v2 family or transport outside the spec's table.
    V2Family,
    /// A v2 length too short for its address family, or a TLV running past the end.
    V2Length,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyError::NotAHeader => "no PROXY protocol header",
            ProxyError::V1TooLong => "PROXY v1 line longer than 107 bytes",
            ProxyError::V1Syntax => "malformed PROXY v1 line",
            ProxyError::V2Version => "unsupported PROXY v2 version or command",
            ProxyError::V2Family => "unsupported PROXY v2 address family or transport",
            ProxyError::V2Length => "PROXY v2 length does not fit its addresses or TLVs",
        })
    }
}

impl std::error::Error for ProxyError {}

/// Looks at the first bytes of a connection.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if starts_like(buf, V1_PREFIX) {
        parse_v1(buf)
    } else if starts_like(buf, &V2_SIGNATURE) {
        parse_v2(buf)
    } else {
        Err(ProxyError::NotAHeader)
    }
}

/// Whether the bytes seen so far begin a PROXY header: `PROXY ` whole, or the v2 signature's first
/// five octets (two empty lines, then a NUL, which no text line holds). `conn` uses it to refuse a
/// header from an address that may not send one. Anything shorter goes to the command parser, which
/// answers it: a client whose first packet is `PROX`, or two empty lines, gets `-ERR`, not a closed
/// connection, and a header cut that short is refused as an unknown command all the same.
pub fn looks_like_header(buf: &[u8]) -> bool {
    buf.starts_with(V1_PREFIX) || buf.starts_with(&V2_SIGNATURE[..5])
}

/// `buf` and `prefix` agree on their common length.
fn starts_like(buf: &[u8], prefix: &[u8]) -> bool {
    let n = buf.len().min(prefix.len());
    buf[..n] == prefix[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::V1TooLong);
        }
        // Ask for the rest of the shortest header at once, then one byte at a time: never read past the
        // line, the bytes after it are the client's.
        return Ok(Parsed::Incomplete(V1_MIN.saturating_sub(buf.len()).max(1)));
    };
    if lf + 1 > V1_MAX {
        return Err(ProxyError::V1TooLong);
    }
    let line = buf[..lf].strip_suffix(b"\r").ok_or(ProxyError::V1Syntax)?;
    let header = match line.strip_prefix(b"PROXY UNKNOWN") {
        // "the receiver must ignore anything presented before the CRLF is found".
        Some(rest) if rest.is_empty() || rest.starts_with(b" ") => Header::Local,
        _ => v1_fields(std::str::from_utf8(line).map_err(|_| ProxyError::V1Syntax)?)?,
    };
    Ok(Parsed::Complete {
        header,
        len: lf + 1,
    })
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 110`: single spaces, decimal ports without leading zeros.
fn v1_fields(line: &str) -> Result<Header, ProxyError> {
    let mut fields = line.split(' ');
    let _proxy = fields.next();
    let family = fields.next().ok_or(ProxyError::V1Syntax)?;
    let rest: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = rest[..] else {
        return Err(ProxyError::V1Syntax);
    };
    let (source, destination) = match family {
        "TCP4" => (v1_addr::<Ipv4Addr>(src)?, v1_addr::<Ipv4Addr>(dst)?),
        "TCP6" => (v1_addr::<Ipv6Addr>(src)?, v1_addr::<Ipv6Addr>(dst)?),
        _ => return Err(ProxyError::V1Syntax),
    };
    Ok(Header::Proxied {
        source: SocketAddr::new(source, v1_port(sport)?),
        destination: SocketAddr::new(destination, v1_port(dport)?),
    })
}

fn v1_addr<A: std::str::FromStr + Into<IpAddr>>(text: &str) -> Result<IpAddr, ProxyError> {
    text.parse::<A>()
        .map(Into::into)
        .map_err(|_| ProxyError::V1Syntax)
}

fn v1_port(text: &str) -> Result<u16, ProxyError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyError::V1Syntax);
    }
    text.parse().map_err(|_| ProxyError::V1Syntax)
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Incomplete(V2_FIXED - buf.len()));
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 || command > 1 {
        return Err(ProxyError::V2Version);
    }
    // "Other values are unspecified and must not be emitted in version 2 of this protocol and must be
    // rejected as invalid by receivers": UNSPEC (0x00), or one of three families over a stream (1) or
    // datagram (2) transport.
    let (family, transport) = (buf[13] >> 4, buf[13] & 0x0f);
    let valid = buf[13] == 0 || ((1..=3).contains(&family) && (1..=2).contains(&transport));
    if !valid {
        return Err(ProxyError::V2Family);
    }
    let len = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if buf.len() < len {
        return Ok(Parsed::Incomplete(len - buf.len()));
    }
    let body = &buf[V2_FIXED..len];
    let (header, addresses_len) = match (command, family) {
        // LOCAL: "the receiver must accept this connection as valid and must use the real connection
        // endpoints and discard the protocol block including the family"; so must UNSPEC and UNIX.
        (0, _) => (Header::Local, body.len()),
        (_, 0 | 3) => (Header::Local, body.len()),
        (_, 1) => (v2_inet(body)?, V2_INET_LEN),
        _ => (v2_inet6(body)?, V2_INET6_LEN),
    };
    if command == 1 && family != 0 && family != 3 {
        check_tlvs(&body[addresses_len..])?;
    }
    Ok(Parsed::Complete { header, len })
}

fn v2_inet(body: &[u8]) -> Result<Header, ProxyError> {
    let a: &[u8; V2_INET_LEN] = body
        .get(..V2_INET_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(ProxyError::V2Length)?;
    let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    Ok(Header::Proxied {
        source: SocketAddr::new(ip(0), port(8)),
        destination: SocketAddr::new(ip(4), port(10)),
    })
}

fn v2_inet6(body: &[u8]) -> Result<Header, ProxyError> {
    let a: &[u8; V2_INET6_LEN] = body
        .get(..V2_INET6_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(ProxyError::V2Length)?;
    let ip = |i: usize| {
        let octets: [u8; 16] = a[i..i + 16].try_into().unwrap_or([0; 16]);
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    Ok(Header::Proxied {
        source: SocketAddr::new(ip(0), port(32)),
        destination: SocketAddr::new(ip(16), port(34)),
    })
}

/// The TLVs after the addresses (ALPN, authority, SSL details, ...) carry nothing poplar uses; they are
/// skipped, but must be well formed: type, 16-bit length, value, exactly filling the rest.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_kind, hi, lo, ..] = *tlvs else {
            return Err(ProxyError::V2Length);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(ProxyError::V2Length)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(src: &str, dst: &str) -> Header {
        Header::Proxied {
            source: sa(src),
            destination: sa(dst),
        }
    }

    fn complete(buf: &[u8]) -> Result<(Header, usize), ProxyError> {
        match parse(buf)? {
            Parsed::Complete { header, len } => Ok((header, len)),
            Parsed::Incomplete(n) => panic!("incomplete, {n} more wanted"),
        }
    }

    #[test]
    fn v1_spec_examples() {
        let tcp6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        let unknown_max = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(unknown_max.len(), V1_MAX);
        let max6 = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        let cases: &[(&str, Header)] = &[
            (
                "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
                proxied("255.255.255.255:65535", "255.255.255.255:65535"),
            ),
            (
                "PROXY TCP4 192.0.2.7 198.51.100.1 50522 110\r\n",
                proxied("192.0.2.7:50522", "198.51.100.1:110"),
            ),
            (
                "PROXY TCP4 192.0.2.7 198.51.100.1 0 110\r\n",
                proxied("192.0.2.7:0", "198.51.100.1:110"),
            ),
            (tcp6, proxied(max6, max6)),
            (
                "PROXY TCP6 2001:db8::7 2001:db8::1 4000 995\r\n",
                proxied("[2001:db8::7]:4000", "[2001:db8::1]:995"),
            ),
            ("PROXY UNKNOWN\r\n", Header::Local),
            ("PROXY UNKNOWN \u{7f}anything\r\n", Header::Local),
            (unknown_max, Header::Local),
        ];
        for (text, want) in cases {
            assert_eq!(
                complete(text.as_bytes()),
                Ok((*want, text.len())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn v1_rejects() {
        let cases: &[(&[u8], ProxyError)] = &[
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyError::V1Syntax),
            (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", ProxyError::V1Syntax),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
                ProxyError::V1Syntax,
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", ProxyError::V1Syntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", ProxyError::V1Syntax),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                ProxyError::V1Syntax,
            ),
            (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ProxyError::V1Syntax),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ProxyError::V1Syntax),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::V1Syntax),
            (b"PROXY\xff TCP4\r\n", ProxyError::NotAHeader),
            (b"USER alice\r\n", ProxyError::NotAHeader),
            (
                b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
                ProxyError::NotAHeader,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat();
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        let mut line = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 92]].concat();
        line.extend_from_slice(b"\r\n");
        assert_eq!(line.len(), V1_MAX + 1);
        assert_eq!(parse(&line), Err(ProxyError::V1TooLong));
    }

    /// Feeding the header as the reader would: never more than asked, and the end found exactly.
    #[test]
    fn incremental_reads_stop_at_the_end_of_the_header() {
        let mut v2 = v2_header(
            0x21,
            0x11,
            &[127, 0, 0, 9, 127, 0, 0, 1, 0x30, 0x39, 0, 110],
        );
        v2.extend_from_slice(b"USER x\r\n");
        for stream in [
            b"PROXY TCP4 127.0.0.9 127.0.0.1 12345 110\r\nUSER x\r\n".to_vec(),
            v2,
        ] {
            let mut have = 0;
            let len = loop {
                match parse(&stream[..have]).unwrap() {
                    Parsed::Incomplete(n) => have += n,
                    Parsed::Complete { header, len } => {
                        assert_eq!(header, proxied("127.0.0.9:12345", "127.0.0.1:110"));
                        break len;
                    }
                }
                assert!(have <= stream.len() - 8, "asked to read past the header");
            };
            assert_eq!(&stream[len..], b"USER x\r\n");
        }
    }

    fn v2_header(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[ver_cmd, fam]);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v2_spec_cases() {
        // HAProxy's own output for 172.19.0.1:42578 -> 172.19.0.3:80 (PROXY, INET, STREAM).
        let haproxy = [
            0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
            0x00, 0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50,
        ];
        let mut six = Vec::new();
        six.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        six.extend_from_slice(&[0x0f, 0xa0, 0x03, 0xe3]);
        let four = [192, 0, 2, 7, 198, 51, 100, 1, 0xc5, 0x5a, 0, 110];
        // PP2_TYPE_ALPN "pop3", then PP2_TYPE_NOOP with an empty value: both skipped.
        let tlvs = [0x01, 0, 4, b'p', b'o', b'p', b'3', 0x04, 0, 0];
        let with_tlvs = [&four[..], &tlvs].concat();
        let cases: Vec<(Vec<u8>, Header)> = vec![
            (
                haproxy.to_vec(),
                proxied("172.19.0.1:42578", "172.19.0.3:80"),
            ),
            (
                v2_header(0x21, 0x11, &four),
                proxied("192.0.2.7:50522", "198.51.100.1:110"),
            ),
            (
                v2_header(0x21, 0x21, &six),
                proxied("[2001:db8::7]:4000", "[2001:db8::1]:995"),
            ),
            (
                v2_header(0x21, 0x11, &with_tlvs),
                proxied("192.0.2.7:50522", "198.51.100.1:110"),
            ),
            // LOCAL, whatever the family says and with or without an address block.
            (v2_header(0x20, 0x00, &[]), Header::Local),
            (v2_header(0x20, 0x11, &four), Header::Local),
            // PROXY with AF_UNSPEC, or AF_UNIX (216 bytes of paths): the real endpoints stand.
            (v2_header(0x21, 0x00, &[]), Header::Local),
            (v2_header(0x21, 0x31, &[0; 216]), Header::Local),
        ];
        for (bytes, want) in cases {
            assert_eq!(complete(&bytes), Ok((want, bytes.len())), "{bytes:02x?}");
        }
    }

    #[test]
    fn v2_rejects() {
        let four = [192, 0, 2, 7, 198, 51, 100, 1, 0xc5, 0x5a, 0, 110];
        let cases: Vec<(Vec<u8>, ProxyError)> = vec![
            (v2_header(0x11, 0x11, &four), ProxyError::V2Version),
            (v2_header(0x22, 0x11, &four), ProxyError::V2Version),
            (v2_header(0x21, 0x41, &four), ProxyError::V2Family),
            (v2_header(0x21, 0x13, &four), ProxyError::V2Family),
            (v2_header(0x21, 0x10, &four), ProxyError::V2Family),
            (v2_header(0x21, 0x01, &four), ProxyError::V2Family),
            (v2_header(0x20, 0x02, &four), ProxyError::V2Family),
            (v2_header(0x21, 0x11, &four[..11]), ProxyError::V2Length),
            (v2_header(0x21, 0x21, &four), ProxyError::V2Length),
            (
                v2_header(0x21, 0x11, &[&four[..], &[0x01, 0, 5, b'p']].concat()),
                ProxyError::V2Length,
            ),
            (
                v2_header(0x21, 0x11, &[&four[..], &[0x01, 0]].concat()),
                ProxyError::V2Length,
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(&bytes), Err(want), "{bytes:02x?}");
        }
        let mut bad_sig = v2_header(0x21, 0x11, &four);
        bad_sig[11] = b'X';
        assert_eq!(parse(&bad_sig), Err(ProxyError::NotAHeader));
    }

    #[test]
    fn incomplete_asks_for_the_fixed_part_then_the_length() {
        let header = v2_header(0x21, 0x11, &[0; 12]);
        assert_eq!(parse(&header[..5]), Ok(Parsed::Incomplete(11)));
        assert_eq!(parse(&header[..16]), Ok(Parsed::Incomplete(12)));
        assert_eq!(parse(b"PROX"), Ok(Parsed::Incomplete(11)));
        assert_eq!(parse(b"PROXY UNKNOWN\r"), Ok(Parsed::Incomplete(1)));
        assert_eq!(parse(b""), Ok(Parsed::Incomplete(15)));
    }

    #[test]
    fn header_detection() {
        let table: &[(&[u8], bool)] = &[
            (b"PROXY TCP4 ", true),
            (b"PROXY ", true),
            (b"PROXY", false),
            (b"PROX", false),
            (b"\r\n\r\n\0\r\nQUIT\n!", true),
            (b"\r\n\r\n\0", true),
            (b"\r\n\r\n", false),
            (b"PRO", false),
            (b"USER alice\r\n", false),
            (b"\r\nUSER", false),
            (b"QUIT\r\n", false),
        ];
        for (bytes, want) in table {
            assert_eq!(looks_like_header(bytes), *want, "{bytes:?}");
        }
    }
}
