//! Where the scenarios' clients connect, and how: a [`Target`] is the server's address and
//! whether its listener speaks TLS. TLS targets use one self-signed certificate for the
//! whole test process ([`certificate`]), which the drivers' TLS listeners serve.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use wur2_host::{Runtime, ServerHandle, TlsAcceptor};

use crate::scenarios::STEP;

/// Where the suite's clients reach `server`: its plain listener or, given `tls_listener`,
/// a TLS listener added to it that serves [`certificate`].
pub fn target<R: Runtime>(
    server: &mut ServerHandle<R>,
    tls_listener: Option<R::TcpListener>,
) -> Target {
    let Some(listener) = tls_listener else {
        return Target::plain(server.local_addr());
    };
    let certificate = certificate();
    let acceptor = TlsAcceptor::from_pem_files(&certificate.cert_path, &certificate.key_path)
        .expect("the test certificate");
    Target::tls(server.serve_tls(listener, acceptor).expect("serve TLS"))
}

/// A server the scenarios connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its listener.
    pub addr: SocketAddr,
    /// Whether the listener speaks TLS with [`certificate`].
    pub tls: bool,
}

impl Target {
    /// A plain TCP listener.
    pub fn plain(addr: SocketAddr) -> Target {
        Target { addr, tls: false }
    }

    /// A TLS listener serving [`certificate`].
    pub fn tls(addr: SocketAddr) -> Target {
        Target { addr, tls: true }
    }

    /// Connects from 127.0.0.1, with the TLS handshake done for a TLS target; both halves
    /// boxed.
    pub(crate) async fn connect(&self) -> (Box<dyn Read>, Box<dyn Write>) {
        self.connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Like [`Target::connect`], from the local address `source` (any of 127.0.0.0/8 on
    /// loopback: another address, as the server sees it).
    pub(crate) async fn connect_from(&self, source: IpAddr) -> (Box<dyn Read>, Box<dyn Write>) {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .expect("a socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
        let stream = tokio::time::timeout(STEP, socket.connect(self.addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        if !self.tls {
            let (read, write) = stream.into_split();
            return (Box::new(read), Box::new(write));
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&certificate().client));
        let name = ServerName::try_from("localhost").expect("a server name");
        let tls = tokio::time::timeout(STEP, connector.connect(name, stream))
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake failed");
        let (read, write) = tokio::io::split(tls);
        (Box::new(read), Box::new(write))
    }
}

/// The reading half of a client's stream.
pub(crate) trait Read: AsyncRead + Send + Unpin {}
impl<T: AsyncRead + Send + Unpin> Read for T {}
/// The writing half of a client's stream.
pub(crate) trait Write: AsyncWrite + Send + Unpin {}
impl<T: AsyncWrite + Send + Unpin> Write for T {}

/// The test process's TLS certificate for `localhost`: PEM files for a server, and a
/// client configuration that trusts it.
pub struct Certificate {
    /// The certificate, PEM.
    pub cert_path: PathBuf,
    /// Its private key, PEM.
    pub key_path: PathBuf,
    client: Arc<ClientConfig>,
    _dir: tempfile::TempDir,
}

/// The one certificate of this test process, made on first use.
pub fn certificate() -> &'static Certificate {
    static CERTIFICATE: OnceLock<Certificate> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let dir = tempfile::tempdir().expect("a directory for the certificate");
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, generated.cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, generated.key_pair.serialize_pem()).expect("write the key");
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(generated.cert.der().to_vec()))
            .expect("trust the certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Certificate {
            cert_path,
            key_path,
            client: Arc::new(client),
            _dir: dir,
        }
    })
}
