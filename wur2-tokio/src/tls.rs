//! Chat over TLS (rustls with the *ring* provider): the certificate and key, reloadable
//! while the server runs, and the listener that terminates TLS in front of the driver.
//!
//! It owns the TLS handshake and the encryption of each TLS client, nothing of chat: once a
//! handshake completes, the client's plaintext is bridged over a loopback TCP pair to an
//! ordinary connection task, so the engine and its limits (flood, slow readers, per-address
//! counts with the client's real address) treat TLS and plain clients alike. The price is
//! two more sockets and one more copy per TLS client, and the loopback buffers (a few
//! hundred KiB) before a slow TLS reader counts as slow.
//!
//! It never blocks the driver: handshakes run in their own tasks, a bounded number at once,
//! each with a deadline.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tracing::{debug, info, warn};

use crate::connection::Event;
use crate::status::StatusCell;

/// Handshakes in progress at once at most; more clients wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;
/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept`, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    inner: tokio_rustls::TlsAcceptor,
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
            inner: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
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

/// Accepts TLS clients on `listener` and hands each, once its handshake is done, to the
/// driver through `intake` as if it had connected in plain text from its own address.
/// Runs until aborted or until the driver is gone.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    intake: mpsc::WeakSender<Event>,
    status: Arc<StatusCell>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let acceptor = acceptor.inner.clone();
                let intake = intake.clone();
                let status = Arc::clone(&status);
                tokio::spawn(async move {
                    let bridged =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, peer, &acceptor))
                            .await;
                    drop(permit);
                    status.count_tls_handshake(matches!(bridged, Ok(Ok(_))));
                    match bridged {
                        Ok(Ok((tls, inner))) => bridge(tls, inner, peer, intake).await,
                        Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
            Err(error) => {
                warn!(%error, "TLS accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The TLS handshake, then the loopback pair the plaintext will travel through.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
) -> io::Result<(tokio_rustls::server::TlsStream<TcpStream>, Pair)> {
    if let Err(error) = stream.set_nodelay(true) {
        debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let tls = acceptor.accept(stream).await?;
    let pair = Pair::new().await?;
    Ok((tls, pair))
}

/// Two ends of one loopback TCP connection: `ours` carries the TLS client's plaintext,
/// `driver` goes to a connection task.
struct Pair {
    ours: TcpStream,
    driver: TcpStream,
}

impl Pair {
    async fn new() -> io::Result<Pair> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let ours = TcpStream::connect(listener.local_addr()?).await?;
        let expected = ours.local_addr()?;
        // Another local process could connect to this port in the meantime: only the
        // connection from our own socket is taken.
        loop {
            let (driver, from) = listener.accept().await?;
            if from == expected {
                ours.set_nodelay(true)?;
                driver.set_nodelay(true)?;
                return Ok(Pair { ours, driver });
            }
        }
    }
}

/// Hands the driver its end, then copies plaintext both ways until both sides are done.
async fn bridge(
    mut tls: tokio_rustls::server::TlsStream<TcpStream>,
    pair: Pair,
    peer: SocketAddr,
    intake: mpsc::WeakSender<Event>,
) {
    let Pair { mut ours, driver } = pair;
    // No driver (shut down): the client is dropped, as a plain one would be.
    let Some(events) = intake.upgrade() else {
        return;
    };
    if events.send(Event::Accepted(driver, peer)).await.is_err() {
        return;
    }
    drop(events);
    debug!(%peer, "TLS client handed to the driver");
    if let Err(error) = tokio::io::copy_bidirectional(&mut tls, &mut ours).await {
        debug!(%peer, %error, "TLS connection ended");
    }
}
