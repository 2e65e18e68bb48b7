//! How the load generator's clients reach the server: plain TCP, TLS over TCP with the
//! server's certificate checked against a CA file (a self-signed bench certificate), or a
//! WebSocket to WUR2's web listener (one line per text frame). All give a reading half and
//! a writing half of a byte stream, so the load generator never knows which it has.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use bytes::{Buf, Bytes};
use futures_core::Stream;
use futures_sink::Sink;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    /// A WebSocket to WUR2's web listener (`/ws`), over plain TCP.
    WebSocket,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connector::Plain => f.write_str("Plain"),
            Connector::Tls(_, name) => write!(f, "Tls({name:?})"),
            Connector::WebSocket => f.write_str("WebSocket"),
        }
    }
}

impl Connector {
    /// A connector for `tls`: plain TCP when `None`; with `websocket`, a WebSocket over
    /// plain TCP. Fails, with a sentence, when the CA file cannot be read or holds no
    /// certificate, the server name is not a name, or both TLS and a WebSocket are asked
    /// for.
    pub fn new(tls: Option<&TlsClient>, websocket: bool) -> Result<Connector, String> {
        let Some(tls) = tls else {
            return Ok(match websocket {
                true => Connector::WebSocket,
                false => Connector::Plain,
            });
        };
        if websocket {
            return Err("a WebSocket over TLS is not supported by the load generator".into());
        }
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
            Connector::WebSocket => {
                let url = format!("ws://{addr}/ws");
                let (socket, _) = async_tungstenite::tokio::client_async(url, stream)
                    .await
                    .map_err(io::Error::other)?;
                let (sender, receiver) = socket.split();
                Ok((
                    Box::new(FrameReader {
                        receiver,
                        input: Bytes::new(),
                        newline: false,
                    }),
                    Box::new(FrameWriter {
                        sender,
                        partial: Vec::new(),
                        unflushed: false,
                    }),
                ))
            }
        }
    }
}

/// The reading half of a WebSocket as a byte stream: each text frame is one line.
struct FrameReader {
    receiver: WebSocketReceiver<TokioAdapter<TcpStream>>,
    /// What is left of the last frame.
    input: Bytes,
    /// The line break after `input` is still to be read.
    newline: bool,
}

impl AsyncRead for FrameReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.input.is_empty() {
                let n = this.input.len().min(buf.remaining());
                buf.put_slice(&this.input[..n]);
                this.input.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.newline {
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                buf.put_slice(b"\n");
                this.newline = false;
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.receiver).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => {
                    this.input = Bytes::from(text);
                    this.newline = true;
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Poll::Ready(Err(ws_error(error))),
            }
        }
    }
}

/// The writing half of a WebSocket as a byte stream: each line leaves as one text frame,
/// pushed to the socket by the same write (the load generator never flushes: plain TCP
/// needs no flush).
struct FrameWriter {
    sender: WebSocketSender<TokioAdapter<TcpStream>>,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
    /// Frames of an earlier write that the socket did not take yet.
    unflushed: bool,
}

impl AsyncWrite for FrameWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.unflushed {
            ready!(Pin::new(&mut this.sender).poll_flush(cx)).map_err(ws_error)?;
            this.unflushed = false;
        }
        let mut taken = 0;
        let mut rest = buf;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            match Pin::new(&mut this.sender).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(ws_error(error))),
                Poll::Pending if taken > 0 => return Poll::Ready(Ok(taken)),
                Poll::Pending => return Poll::Pending,
            }
            let mut line = std::mem::take(&mut this.partial);
            line.extend_from_slice(&rest[..end]);
            let text = String::from_utf8(line).map_err(io::Error::other)?;
            Pin::new(&mut this.sender)
                .start_send(Message::text(text))
                .map_err(ws_error)?;
            taken += end + 1;
            rest = &rest[end + 1..];
        }
        this.partial.extend_from_slice(rest);
        match Pin::new(&mut this.sender).poll_flush(cx) {
            Poll::Ready(result) => result.map_err(ws_error)?,
            // The socket is full: the next write pushes these frames first.
            Poll::Pending => this.unflushed = true,
        }
        Poll::Ready(Ok(taken + rest.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sender).poll_flush(cx).map_err(ws_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sender).poll_close(cx).map_err(ws_error)
    }
}

fn ws_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        other => io::Error::other(other),
    }
}
