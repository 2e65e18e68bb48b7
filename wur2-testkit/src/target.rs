//! Where the scenarios' clients connect, and how: a [`Target`] is the server's address and
//! whether its listener speaks TLS, or the addresses of a cluster's nodes, which the clients
//! are spread over in turn. TLS targets use one self-signed certificate for the whole test
//! process ([`certificate`]), which the drivers' TLS listeners serve.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpSocket;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use wur2_host::{Runtime, ServerHandle, TlsAcceptor, WebOptions};

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

/// Where the suite's clients reach `server` over WebSocket: a web listener added to it on
/// `listener`, with default [`WebOptions`] (same origin only; the kit's clients send no
/// `Origin`, as programs do not).
pub fn web_target<R: Runtime>(server: &mut ServerHandle<R>, listener: R::TcpListener) -> Target {
    Target::web(
        server
            .serve_web(listener, WebOptions::default())
            .expect("serve the web listener"),
    )
}

/// The most nodes a cluster [`Target`] holds.
pub const MAX_NODES: usize = 4;

thread_local! {
    /// The node the next client of this thread's cluster target connects to. A scenario runs
    /// on its test's thread, so its clients go to nodes 0, 1, 2, 0, … in the order they
    /// connect, whatever tests run beside it; [`Target::cluster`] starts it again at 0.
    static NEXT_NODE: Cell<usize> = const { Cell::new(0) };
}

/// A server the scenarios connect to: one listener, or the listeners of a cluster's nodes.
///
/// It is `Copy`, as scenarios pass it to every client they make; a cluster's turn (which
/// node the next client gets) is kept per thread (see [`Target::cluster`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its listener; in a cluster, the first node's.
    pub addr: SocketAddr,
    /// Whether the listener speaks TLS with [`certificate`].
    pub tls: bool,
    /// Whether the listener is a web listener: clients speak JSON lines over a WebSocket
    /// (one text frame per line, upload bytes in binary frames).
    pub web: bool,
    /// In a cluster, every node's listener (`addr` first), and how many there are.
    nodes: Option<([SocketAddr; MAX_NODES], usize)>,
}

impl Target {
    /// A plain TCP listener.
    pub fn plain(addr: SocketAddr) -> Target {
        Target {
            addr,
            tls: false,
            web: false,
            nodes: None,
        }
    }

    /// A TLS listener serving [`certificate`].
    pub fn tls(addr: SocketAddr) -> Target {
        Target {
            addr,
            tls: true,
            web: false,
            nodes: None,
        }
    }

    /// A web listener: clients connect to its WebSocket (plain `ws://`).
    pub fn web(addr: SocketAddr) -> Target {
        Target {
            addr,
            tls: false,
            web: true,
            nodes: None,
        }
    }

    /// The plain listeners of a cluster's nodes (2 to [`MAX_NODES`]): each client that
    /// connects goes to the next node, round-robin, starting from the first for the clients
    /// this thread makes from now on.
    pub fn cluster(addrs: &[SocketAddr]) -> Target {
        assert!(
            (2..=MAX_NODES).contains(&addrs.len()),
            "a cluster target has 2 to {MAX_NODES} nodes, not {}",
            addrs.len()
        );
        let mut nodes = [addrs[0]; MAX_NODES];
        nodes[..addrs.len()].copy_from_slice(addrs);
        NEXT_NODE.with(|next| next.set(0));
        Target {
            addr: addrs[0],
            tls: false,
            web: false,
            nodes: Some((nodes, addrs.len())),
        }
    }

    /// Whether clients are spread over several nodes, where what one node learns reaches
    /// the others a moment later (presence, over the cluster bus).
    pub fn is_cluster(&self) -> bool {
        self.nodes.is_some()
    }

    /// Only the first node: for scenarios that count per address, whose limits are each
    /// node's own (a cluster target's clients would spread the count over the nodes).
    /// Itself for a single server.
    pub fn first_node(&self) -> Target {
        Target {
            nodes: None,
            ..*self
        }
    }

    /// Where the next client connects: the listener, or in a cluster the node whose turn
    /// it is.
    fn next_addr(&self) -> SocketAddr {
        match self.nodes {
            None => self.addr,
            Some((nodes, count)) => NEXT_NODE.with(|next| {
                let node = next.get() % count;
                next.set(node + 1);
                nodes[node]
            }),
        }
    }

    /// Connects from 127.0.0.1, with the TLS handshake done for a TLS target (the
    /// WebSocket upgrade for a web target); both halves boxed.
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
        let stream = tokio::time::timeout(STEP, socket.connect(self.next_addr()))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        if self.web {
            return crate::web::connect(stream).await;
        }
        if !self.tls {
            let (read, write) = stream.into_split();
            return (Box::new(read), Box::new(write));
        }
        let connector = certificate().connector();
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

impl Certificate {
    /// A TLS connector that trusts this certificate and nothing else.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.client))
    }
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
