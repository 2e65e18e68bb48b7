//! How the load generator's clients reach the server: plain TCP, or TLS over TCP with the
//! server's certificate checked against a CA file (a self-signed bench certificate). Both
//! give a reading half and a writing half, so the load generator never knows which it has.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The reading half of a client connection, plain or TLS.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a client connection, plain or TLS.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// TLS settings of the load generator's clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClient {
    /// PEM file of the CA certificates to trust (and only those), for example the
    /// server's self-signed certificate.
    pub ca: PathBuf,
    /// The name the server's certificate must carry.
    pub server_name: String,
}

/// Opens client connections: TCP with `TCP_NODELAY`, then the TLS handshake when asked for.
#[derive(Clone)]
pub enum Connector {
    /// Plain TCP.
    Plain,
    /// TLS over TCP.
    Tls(TlsConnector, ServerName<'static>),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connector::Plain => f.write_str("Plain"),
            Connector::Tls(_, name) => write!(f, "Tls({name:?})"),
        }
    }
}

impl Connector {
    /// A connector for `tls`: plain TCP when `None`. Fails, with a sentence, when the CA
    /// file cannot be read or holds no certificate, or the server name is not a name.
    pub fn new(tls: Option<&TlsClient>) -> Result<Connector, String> {
        let Some(tls) = tls else {
            return Ok(Connector::Plain);
        };
        let path = tls.ca.display();
        let pem = std::fs::read(&tls.ca).map_err(|e| format!("TLS CA {path}: {e}"))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("TLS CA {path}: broken PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("TLS CA {path}: not a CA certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("TLS CA {path}: no CERTIFICATE block"));
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(tls.server_name.clone())
            .map_err(|e| format!("TLS server name {:?}: {e}", tls.server_name))?;
        Ok(Connector::Tls(TlsConnector::from(Arc::new(config)), name))
    }

    /// Connects to `addr`; for TLS, completes the handshake too.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<(ReadHalf, WriteHalf)> {
        self.connect_from(addr, None).await
    }

    /// Connects to `addr` from the local address `source` (any port), or from the one the
    /// system picks when `None`: many clients spread over 127.0.0.2, 127.0.0.3, … so that
    /// each source address has its own range of ephemeral ports.
    pub async fn connect_from(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> std::io::Result<(ReadHalf, WriteHalf)> {
        let stream = match source {
            None => TcpStream::connect(addr).await?,
            Some(ip) => {
                let socket = if ip.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
        };
        let _ = stream.set_nodelay(true);
        match self {
            Connector::Plain => {
                let (read, write) = stream.into_split();
                Ok((Box::new(read), Box::new(write)))
            }
            Connector::Tls(connector, name) => {
                let stream = connector.connect(name.clone(), stream).await?;
                let (read, write) = tokio::io::split(stream);
                Ok((Box::new(read), Box::new(write)))
            }
        }
    }
}
