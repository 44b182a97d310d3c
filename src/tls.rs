//! The TLS server configuration: the certificate chain and key from `--tls-cert`/`--tls-key` (PEM), loaded
//! with errors that name the file. The handshake and the encrypted stream are `stream.rs`'s; when STLS is
//! offered is the session's. SIGHUP reloads by building a new `Frontend`, and with it a new [`Acceptor`]
//! (`server.rs`, `reload.rs`): running sessions keep the one they started with, and a certificate that
//! does not load leaves the old one in use.
//!
//! Built without the cargo feature `tls`, [`Acceptor`] cannot be made and every TLS option is refused at
//! start-up with [`TlsError::NotBuilt`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a certificate or key could not be used. `Display` is one line that names the file.
#[derive(Debug)]
pub enum TlsError {
    /// Missing or unreadable (the OS error says which).
    Read {
        path: PathBuf,
        source: io::Error,
    },
    /// Not PEM, or PEM with a damaged block.
    Pem {
        path: PathBuf,
        problem: String,
    },
    NoCertificate {
        path: PathBuf,
    },
    NoKey {
        path: PathBuf,
    },
    /// A PKCS#8 key under a passphrase, which the server has no way to be given.
    EncryptedKey {
        path: PathBuf,
    },
    /// The key is not one rustls can sign with (unsupported algorithm or a damaged encoding).
    BadKey {
        path: PathBuf,
        problem: String,
    },
    /// The key does not belong to the first certificate of the chain.
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Any other refusal from the TLS library.
    Config(String),
    /// The binary was built without the cargo feature `tls`.
    NotBuilt,
}

impl TlsError {
    /// The option whose file is at fault, for a `FILE:LINE: option: problem` message: `tls-key` for
    /// a missing, unusable or mismatched key, `tls-cert` otherwise (a file given as both is read as
    /// the certificate first).
    pub fn option(&self, cert: &Path, key: &Path) -> &'static str {
        match self {
            TlsError::NoKey { .. }
            | TlsError::EncryptedKey { .. }
            | TlsError::BadKey { .. }
            | TlsError::KeyMismatch { .. } => "tls-key",
            TlsError::Read { path, .. } | TlsError::Pem { path, .. }
                if path == key && path != cert =>
            {
                "tls-key"
            }
            _ => "tls-cert",
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            TlsError::Pem { path, problem } => {
                write!(f, "{}: not a valid PEM file: {problem}", path.display())
            }
            TlsError::NoCertificate { path } => {
                write!(
                    f,
                    "{}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" blocks)",
                    path.display()
                )
            }
            TlsError::NoKey { path } => {
                write!(
                    f,
                    "{}: no private key found (expected a PEM PKCS#8, RSA or EC private key)",
                    path.display()
                )
            }
            TlsError::EncryptedKey { path } => write!(
                f,
                "{}: the private key is encrypted, and the server cannot be given its passphrase \
                 (openssl pkey -in FILE -out NEW writes it decrypted)",
                path.display()
            ),
            TlsError::BadKey { path, problem } => {
                write!(f, "{}: unusable private key: {problem}", path.display())
            }
            TlsError::KeyMismatch { cert, key } => {
                write!(
                    f,
                    "{}: private key does not match the certificate in {} (the server's own \
                     certificate must come first in it)",
                    key.display(),
                    cert.display()
                )
            }
            TlsError::Config(problem) => write!(f, "TLS set-up: {problem}"),
            TlsError::NotBuilt => f.write_str(
                "TLS options given, but poplar was built without TLS support (cargo feature `tls`)",
            ),
        }
    }
}

impl std::error::Error for TlsError {}

#[cfg(feature = "tls")]
pub use enabled::Acceptor;

#[cfg(not(feature = "tls"))]
pub use disabled::Acceptor;

#[cfg(feature = "tls")]
mod enabled {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use rustls::ServerConfig;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::{self, PemObject};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::sign::CertifiedKey;

    use super::TlsError;

    /// The server configuration every handshake of one `Frontend` uses.
    #[derive(Debug)]
    pub struct Acceptor {
        cert: PathBuf,
        config: Arc<ServerConfig>,
    }

    impl Acceptor {
        pub fn load(cert: &Path, key: &Path) -> Result<Acceptor, TlsError> {
            Ok(Acceptor {
                cert: cert.to_path_buf(),
                config: server_config(cert, key)?,
            })
        }

        /// The configuration for a new handshake.
        pub fn server_config(&self) -> Arc<ServerConfig> {
            Arc::clone(&self.config)
        }

        pub fn cert_path(&self) -> &Path {
            &self.cert
        }
    }

    /// TLS 1.2 and 1.3 only (rustls has nothing older), with ring's cipher suites; no client certificates.
    fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
        let certs = read_certs(cert_path)?;
        let key = read_key(key_path)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = certified_key(certs, key, &provider, cert_path, key_path)?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        Ok(Arc::new(config))
    }

    /// Loads the key and checks it against the end-entity certificate's public key, so a mismatch is a
    /// start-up error naming both files rather than a handshake failure every client reports differently.
    fn certified_key(
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: &CryptoProvider,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<CertifiedKey, TlsError> {
        let signing_key =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::BadKey {
                    path: key_path.to_path_buf(),
                    problem: e.to_string(),
                })?;
        let certified = CertifiedKey::new(certs, signing_key);
        match certified.keys_match() {
            Ok(()) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(TlsError::KeyMismatch {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                })
            }
            // The key type cannot tell its public key: rustls's own loader accepts this too.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(e) => Err(TlsError::Pem {
                path: cert_path.to_path_buf(),
                problem: e.to_string(),
            }),
        }
    }

    fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The whole chain, end-entity certificate first, as the file lists it.
    fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let text = read(path)?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, pem::Error>>()
            .map_err(|e| TlsError::Pem {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: path.to_path_buf(),
            });
        }
        Ok(certs)
    }

    /// The first private key in the file (PKCS#8, PKCS#1 RSA or SEC1 EC).
    fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
        let text = read(path)?;
        PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
            // PKCS#8 under a passphrase, or the older form's header (`openssl rsa -aes256
            // -traditional`, `openssl ec -aes256`), which reads as a damaged block.
            _ if memchr::memmem::find(&text, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
                .is_some()
                || memchr::memmem::find(&text, b"Proc-Type: 4,ENCRYPTED").is_some() =>
            {
                TlsError::EncryptedKey {
                    path: path.to_path_buf(),
                }
            }
            pem::Error::NoItemsFound => TlsError::NoKey {
                path: path.to_path_buf(),
            },
            e => TlsError::Pem {
                path: path.to_path_buf(),
                problem: e.to_string(),
            },
        })
    }
}

#[cfg(not(feature = "tls"))]
mod disabled {
    use std::convert::Infallible;
    use std::path::Path;

    use super::TlsError;

    /// Cannot be built without the `tls` feature: code that holds one is unreachable.
    #[derive(Debug)]
    pub struct Acceptor {
        pub(crate) never: Infallible,
    }

    impl Acceptor {
        pub fn load(_cert: &Path, _key: &Path) -> Result<Acceptor, TlsError> {
            Err(TlsError::NotBuilt)
        }

        pub fn cert_path(&self) -> &Path {
            match self.never {}
        }
    }
}

/// Loads the configured certificate, if any. Both files or neither; `--listen-tls` and `--tls` need them.
pub fn from_config(config: &crate::config::Config) -> Result<Option<Acceptor>, TlsError> {
    let requested = config.tls_cert.is_some()
        || config.tls_key.is_some()
        || !config.listen_tls.is_empty()
        || config.tls;
    if requested && !cfg!(feature = "tls") {
        return Err(TlsError::NotBuilt);
    }
    let acceptor = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Acceptor::load(cert, key)?),
        (None, None) => None,
        (Some(_), None) => return Err(TlsError::Config("--tls-cert needs --tls-key".to_string())),
        (None, Some(_)) => return Err(TlsError::Config("--tls-key needs --tls-cert".to_string())),
    };
    if acceptor.is_none() && (!config.listen_tls.is_empty() || config.tls) {
        let option = if config.tls { "--tls" } else { "--listen-tls" };
        return Err(TlsError::Config(format!(
            "{option} needs --tls-cert and --tls-key"
        )));
    }
    Ok(acceptor)
}
