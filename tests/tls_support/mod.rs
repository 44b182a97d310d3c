//! TLS helpers for the integration tests: certificates made at test time with `openssl` (a CA and a leaf
//! for `localhost`/127.0.0.1, written as a full-chain PEM), and a line-oriented POP3 client over rustls
//! that trusts only that CA. Every read is bounded by the socket's timeout.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A CA and a leaf certificate signed by it, in `dir`.
pub struct Certs {
    /// The CA certificate, for clients (`--cacert`, `cafile=`).
    pub ca: PathBuf,
    /// Leaf then CA: what `--tls-cert` takes.
    pub chain: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// Makes `<name>-ca.pem`, `<name>-chain.pem` and `<name>-key.pem` in `dir` (P-256 keys: fast to make).
    pub fn new(dir: &Path, name: &str) -> Certs {
        let f = |suffix: &str| format!("{name}-{suffix}");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let ca_subject = format!("/CN=poplar test CA {name}");
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    &f("ca.key"),
                    "-out",
                    &f("ca.pem"),
                    "-days",
                    "2",
                    "-subj",
                    &ca_subject,
                ],
            ]
            .concat(),
            dir,
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    &f("key.pem"),
                    "-out",
                    &f("leaf.csr"),
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
            dir,
        );
        std::fs::write(
            dir.join(f("ext.cnf")),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &f("leaf.csr"),
                "-CA",
                &f("ca.pem"),
                "-CAkey",
                &f("ca.key"),
                "-CAcreateserial",
                "-out",
                &f("leaf.pem"),
                "-days",
                "2",
                "-extfile",
                &f("ext.cnf"),
            ],
            dir,
        );
        let leaf = std::fs::read(dir.join(f("leaf.pem"))).unwrap();
        let ca = std::fs::read(dir.join(f("ca.pem"))).unwrap();
        std::fs::write(dir.join(f("chain.pem")), [leaf, ca].concat()).unwrap();
        Certs {
            ca: dir.join(f("ca.pem")),
            chain: dir.join(f("chain.pem")),
            key: dir.join(f("key.pem")),
        }
    }

    /// `--tls-cert CHAIN --tls-key KEY` as strings for `Server::start`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.chain.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

/// A rustls client configuration trusting only `ca`.
pub fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A POP3 client over TLS on any byte stream (TCP, or a Unix socket for inetd mode).
pub struct TlsClient<S: Read + Write> {
    reader: BufReader<rustls::StreamOwned<rustls::ClientConnection, S>>,
}

impl<S: Read + Write> TlsClient<S> {
    /// Does the handshake over `sock` (already past any STLS exchange), verifying against `ca`.
    pub fn handshake(sock: S, ca: &Path) -> Result<TlsClient<S>, std::io::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(client_config(ca), name).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient {
            reader: BufReader::new(stream),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let s = self.reader.get_mut();
        s.write_all(bytes).expect("TLS write");
        s.flush().expect("TLS flush");
    }

    /// One line without CRLF; panics on timeout or close.
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut buf)
            .expect("TLS read line (timeout?)");
        assert!(
            n > 0 && buf.ends_with(b"\r\n"),
            "bad or missing line: {:?}",
            String::from_utf8_lossy(&buf)
        );
        String::from_utf8_lossy(&buf[..buf.len() - 2]).into_owned()
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// Sends `line`, expects `+OK`, returns the lines of the multi-line body without the final ".".
    pub fn multi(&mut self, line: &str) -> Vec<String> {
        let status = self.cmd(line);
        assert!(status.starts_with("+OK"), "{line} -> {status}");
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            if l == "." {
                return lines;
            }
            lines.push(l);
        }
    }

    /// Reads to the end of the session: `Ok` only when it ended with the server's close_notify.
    pub fn read_to_end(&mut self, rest: &mut Vec<u8>) -> std::io::Result<usize> {
        self.reader.read_to_end(rest)
    }

    /// Sends a close_notify: the client is done writing.
    pub fn close_notify(&mut self) {
        let s = self.reader.get_mut();
        s.conn.send_close_notify();
        s.flush().expect("TLS flush");
    }

    /// The socket under the TLS layer, to write raw bytes past it.
    pub fn socket(&mut self) -> &mut S {
        &mut self.reader.get_mut().sock
    }

    /// The peer certificate's DER, to tell two certificates apart.
    pub fn peer_cert(&self) -> Vec<u8> {
        self.reader.get_ref().conn.peer_certificates().unwrap()[0].to_vec()
    }
}

/// Connects over TCP with timeouts set.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Reads one CRLF line from a plain socket, byte by byte, so nothing after it is consumed (the TLS
/// handshake that follows STLS must find its bytes still in the socket).
pub fn plain_line(sock: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = sock.read(&mut byte).expect("read (timeout?)");
        assert!(n == 1, "closed after {:?}", String::from_utf8_lossy(&line));
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line[..line.len() - 2]).into_owned()
}

/// Connects to a `--listen` address, issues STLS and completes the handshake.
pub fn stls(addr: SocketAddr, ca: &Path) -> TlsClient<TcpStream> {
    let mut sock = tcp(addr);
    assert!(plain_line(&mut sock).starts_with("+OK "));
    sock.write_all(b"STLS\r\n").unwrap();
    assert_eq!(plain_line(&mut sock), "+OK begin TLS negotiation");
    TlsClient::handshake(sock, ca).expect("handshake after STLS")
}

/// Connects to a `--listen-tls` address and reads the greeting.
pub fn implicit(addr: SocketAddr, ca: &Path) -> TlsClient<TcpStream> {
    let mut c = TlsClient::handshake(tcp(addr), ca).expect("implicit TLS handshake");
    assert!(c.line().starts_with("+OK "));
    c
}

/// The address of the server's `listening on ADDR (TLS)` line (logged just after the plain listeners).
pub fn tls_addr(srv: &crate::common::Server) -> SocketAddr {
    let line = srv
        .wait_log(&["listening on", "(TLS)"], TIMEOUT)
        .expect("a TLS listener");
    let addr = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    addr.parse().unwrap()
}
