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

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
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
                let (mut read, mut write) = stream.into_split();
                let leftover = websocket_handshake(addr, &mut read, &mut write).await?;
                Ok((
                    Box::new(FrameReader {
                        socket: read,
                        raw: leftover,
                        lines: Vec::new(),
                        served: 0,
                        closed: false,
                    }),
                    Box::new(FrameWriter {
                        socket: write,
                        out: Vec::new(),
                        sent: 0,
                        partial: Vec::new(),
                    }),
                ))
            }
        }
    }
}

/// The client side of the WebSocket upgrade on `/ws`; returns what the server sent after
/// its answer (the first frames, maybe).
async fn websocket_handshake(
    addr: SocketAddr,
    read: &mut OwnedReadHalf,
    write: &mut OwnedWriteHalf,
) -> io::Result<Vec<u8>> {
    // The key only has to be 16 bytes in base64; the server answers any.
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: d3VyMi1iZW5jaC1jbGllbnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    write.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = read.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&head, b"\r\n\r\n") {
            if !head.starts_with(b"HTTP/1.1 101 ") {
                let status = String::from_utf8_lossy(&head[..head.len().min(80)]).into_owned();
                return Err(io::Error::other(format!("WebSocket refused: {status}")));
            }
            return Ok(head.split_off(end + 4));
        }
    }
}

/// The reading half of a WebSocket as a byte stream: each text frame is one line. The
/// load generator decodes the server's frames itself (unmasked, never fragmented by
/// WUR2): 1 000 clients' frames through a general WebSocket library cost the load
/// generator's core more than the server's framing costs the server, and the benchmark
/// measures the server.
struct FrameReader {
    socket: OwnedReadHalf,
    /// Bytes read and not decoded yet.
    raw: Vec<u8>,
    /// Decoded lines, each with its `\n`, from `served` on.
    lines: Vec<u8>,
    served: usize,
    closed: bool,
}

impl FrameReader {
    /// Moves every complete frame of `raw` to `lines`.
    fn decode(&mut self) -> io::Result<()> {
        let mut at = 0;
        while let Some((opcode, payload, len)) = frame(&self.raw[at..])? {
            match opcode {
                1 => {
                    self.lines.extend_from_slice(payload);
                    self.lines.push(b'\n');
                }
                8 => self.closed = true,
                _ => {}
            }
            at += len;
        }
        self.raw.drain(..at);
        Ok(())
    }
}

/// The first complete frame of `bytes`: its opcode, payload and whole length.
fn frame(bytes: &[u8]) -> io::Result<Option<(u8, &[u8], usize)>> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err(io::Error::other("a masked frame from the server"));
    }
    let (len, header) = match second & 0x7f {
        126 if bytes.len() >= 4 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
        127 if bytes.len() >= 10 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(len), 10)
        }
        126 | 127 => return Ok(None),
        len => (u64::from(len), 2),
    };
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(header))
        .ok_or_else(|| io::Error::other("a frame too large"))?;
    if bytes.len() < end {
        return Ok(None);
    }
    Ok(Some((first & 0x0f, &bytes[header..end], end)))
}

impl AsyncRead for FrameReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.served < this.lines.len() {
                let n = (this.lines.len() - this.served).min(buf.remaining());
                buf.put_slice(&this.lines[this.served..this.served + n]);
                this.served += n;
                if this.served == this.lines.len() {
                    this.lines.clear();
                    this.served = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            this.decode()?;
            if !this.lines.is_empty() || this.closed {
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.socket).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.closed = true;
                continue;
            }
            this.raw.extend_from_slice(read.filled());
        }
    }
}

/// The writing half of a WebSocket as a byte stream: each line leaves as one masked text
/// frame, pushed to the socket by the same write (the load generator never flushes: plain
/// TCP needs no flush).
struct FrameWriter {
    socket: OwnedWriteHalf,
    /// Encoded frames, written from `sent` on.
    out: Vec<u8>,
    sent: usize,
    /// The start of a line whose end has not been written yet.
    partial: Vec<u8>,
}

/// The mask of every client frame (RFC 6455 wants one; a load generator on loopback needs
/// no unpredictable one).
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x88];

impl FrameWriter {
    fn encode(&mut self, line: &[u8]) {
        self.out.push(0x81);
        match line.len() {
            len @ 0..=125 => self.out.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&MASK);
        self.out
            .extend(line.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    }

    /// Writes what is encoded; ready once all of it is out.
    fn poll_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.socket).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for FrameWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_out(cx))?;
        let mut rest = buf;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let mut line = std::mem::take(&mut this.partial);
            line.extend_from_slice(&rest[..end]);
            this.encode(&line);
            rest = &rest[end + 1..];
        }
        this.partial.extend_from_slice(rest);
        // What the socket does not take now goes out first at the next write.
        if let Poll::Ready(Err(error)) = this.poll_out(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_out(cx))?;
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_out(cx))?;
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}
