//! Chat over TLS (rustls with the *ring* provider): the certificate and key, reloadable
//! while the server runs. The handshake itself is the runtime's
//! ([`Runtime::tls_accept`](crate::Runtime::tls_accept)); the TLS listener's loop is in
//! `server.rs`. A TLS client's connection task reads and writes its TLS stream directly, so
//! the engine and its limits (flood, slow readers, per-address counts with the client's
//! real address) treat TLS and plain clients alike, with no extra socket or copy.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::info;

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file as given.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// The file holds no PEM block of the expected kind, or a broken one.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the key or the pair (unsupported key type, key not matching the
    /// certificate).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate chain and key now in use, swapped whole on reload; a handshake takes an
/// `Arc` of the current one, so connections made before a reload keep theirs.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(Arc::clone(&current))
    }
}

/// A TLS server configuration read from PEM files, which [`TlsAcceptor::reload`] reads
/// again (for example on SIGHUP after a renewal) without touching open connections.
/// Clones share the same certificate.
#[derive(Clone)]
pub struct TlsAcceptor {
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<Resolver>,
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Reads the certificate chain (`cert`, PEM, leaf first) and its private key (`key`,
    /// PEM: PKCS#8, PKCS#1 or SEC1) and checks that they belong together.
    pub fn from_pem_files(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<TlsAcceptor, TlsError> {
        let cert_path = cert.into();
        let key_path = key.into();
        let certified = load(&cert_path, &key_path)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(certified)),
        });
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        Ok(TlsAcceptor {
            cert_path,
            key_path,
            resolver,
            config: Arc::new(config),
        })
    }

    /// The rustls configuration every handshake uses (its certificate follows reloads).
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// Reads the same two files again and uses them for every new handshake. On an error
    /// the certificate in use stays, so a bad renewal never takes the listener down.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = load(&self.cert_path, &self.key_path)?;
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(certified);
        info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
        Ok(())
    }
}

/// Reads and checks one certificate chain and key pair.
fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(cert_path, error.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert_path, "no CERTIFICATE block".to_owned()));
    }
    let key_pem = read(key_path)?;
    // The key's text is never part of an error message.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| pem_error(key_path, "no usable PRIVATE KEY block".to_owned()))?;
    let provider = ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)?;
    Ok(certified)
}
