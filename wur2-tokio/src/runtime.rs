//! Tokio as a [`Runtime`] of the one driver in `wur2-host`, and its client streams as
//! [`Transport`]s: plain TCP through the socket's readiness (no buffer of its own), TLS
//! through `tokio-rustls`.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tracing::debug;
use wur2_host::{Runtime, Transport, WebSocket};

/// The Tokio runtime current where the server was started.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

impl Runtime for Tokio {
    type TcpListener = TcpListener;
    type TcpStream = TcpStream;
    type Stream = TokioStream;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn spawn_blocking(job: impl FnOnce() + Send + 'static) {
        tokio::task::spawn_blocking(job);
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(deadline.into())
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        // Tokio's yield also lets the runtime poll for I/O first: measured better for
        // latency than a plain self-wake, and the same for transfers.
        tokio::task::yield_now()
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        if let Err(error) = stream.set_nodelay(true) {
            debug!(%peer, %error, "could not set TCP_NODELAY");
        }
        Ok((stream, peer))
    }

    async fn tls_accept(
        config: Arc<tokio_rustls::rustls::ServerConfig>,
        stream: TcpStream,
    ) -> io::Result<TokioStream> {
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await?;
        Ok(TokioStream::Tls(Box::new(tls)))
    }

    fn web_socket(socket: WebSocket<TokioStream>) -> TokioStream {
        TokioStream::Web(Box::new(socket))
    }
}

/// A client's stream on Tokio. TLS state is boxed: it is large, and a plain connection's
/// task should not carry its size.
#[derive(Debug)]
pub enum TokioStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<TlsStream<TcpStream>>),
    /// A WebSocket (JSON lines in text frames) over plain TCP or TLS, upgrade done.
    Web(Box<WebSocket<TokioStream>>),
}

impl From<TcpStream> for TokioStream {
    fn from(stream: TcpStream) -> Self {
        TokioStream::Plain(stream)
    }
}

/// One [`AsyncRead::poll_read`] into `buf`; how many bytes it filled.
fn poll_read_into(
    stream: Pin<&mut impl AsyncRead>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    let mut buf = ReadBuf::new(buf);
    ready!(stream.poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(buf.filled().len()))
}

impl Transport for TokioStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            // Tokio's own read: a read that leaves room in `buf` drained the socket, so it
            // waits for readiness again without another read to learn `WouldBlock`.
            TokioStream::Plain(stream) => poll_read_into(Pin::new(stream), cx, buf),
            TokioStream::Web(socket) => socket.poll_read(cx, buf),
            TokioStream::Tls(stream) => poll_read_into(Pin::new(stream.as_mut()), cx, buf),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            TokioStream::Plain(stream) => loop {
                ready!(stream.poll_write_ready(cx))?;
                // One buffer (most writes: one message) goes by send(2), which skips
                // writev's file layer (its iovec copy, checks and notifications).
                let written = match bufs {
                    [one] => stream.try_write(one),
                    _ => stream.try_write_vectored(bufs),
                };
                match written {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    result => return Poll::Ready(result),
                }
            },
            TokioStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
            TokioStream::Web(socket) => socket.poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            TokioStream::Plain(_) => Poll::Ready(Ok(())),
            TokioStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            TokioStream::Web(socket) => socket.poll_flush(cx),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            TokioStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            TokioStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            TokioStream::Web(socket) => socket.poll_close(cx),
        }
    }

    fn engine_bytes(&mut self, written: usize) -> usize {
        match self {
            TokioStream::Web(socket) => socket.engine_bytes(written),
            _ => written,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_stream_fits_the_idle_task_budget() {
        assert!(std::mem::size_of::<super::TokioStream>() <= wur2_host::STREAM_BUDGET);
    }
}
