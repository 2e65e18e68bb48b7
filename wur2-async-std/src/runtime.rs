//! async-std as a [`Runtime`] of the one driver in `wur2-host`, and its client streams as
//! [`Transport`]s: plain TCP and TLS (through `futures-rustls`), both through the
//! `futures` I/O traits (async-std has no readiness API of its own).

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_std::net::{TcpListener, TcpStream};
use futures::io::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use tracing::debug;
use wur2_host::{Runtime, Transport, WebSocket};

/// async-std's global executor.
#[derive(Debug, Clone, Copy)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    type TcpListener = TcpListener;
    type TcpStream = TcpStream;
    type Stream = AsyncStdStream;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        async_std::task::spawn(task);
    }

    fn spawn_blocking(job: impl FnOnce() + Send + 'static) {
        async_std::task::spawn_blocking(job);
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send + 'static {
        async_std::task::sleep(deadline.saturating_duration_since(Instant::now()))
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        async_std::task::yield_now()
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
        config: Arc<futures_rustls::rustls::ServerConfig>,
        stream: TcpStream,
    ) -> io::Result<AsyncStdStream> {
        let tls = futures_rustls::TlsAcceptor::from(config)
            .accept(stream)
            .await?;
        Ok(AsyncStdStream::Tls(Box::new(tls)))
    }

    fn web_socket(socket: WebSocket<AsyncStdStream>) -> AsyncStdStream {
        AsyncStdStream::Web(Box::new(socket))
    }
}

/// A client's stream on async-std. TLS state is boxed: it is large, and a plain
/// connection's task should not carry its size.
#[derive(Debug)]
pub enum AsyncStdStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<TlsStream<TcpStream>>),
    /// A WebSocket (JSON lines in text frames) over plain TCP or TLS, upgrade done.
    Web(Box<WebSocket<AsyncStdStream>>),
}

impl From<TcpStream> for AsyncStdStream {
    fn from(stream: TcpStream) -> Self {
        AsyncStdStream::Plain(stream)
    }
}

impl Transport for AsyncStdStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            AsyncStdStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            AsyncStdStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            AsyncStdStream::Web(socket) => socket.poll_read(cx, buf),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            // One buffer (most writes: one message) goes by send(2), which skips writev's
            // file layer (its iovec copy, checks and notifications).
            AsyncStdStream::Plain(stream) => match bufs {
                [one] => Pin::new(stream).poll_write(cx, one),
                _ => Pin::new(stream).poll_write_vectored(cx, bufs),
            },
            AsyncStdStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
            AsyncStdStream::Web(socket) => socket.poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            AsyncStdStream::Plain(_) => Poll::Ready(Ok(())),
            AsyncStdStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            AsyncStdStream::Web(socket) => socket.poll_flush(cx),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            AsyncStdStream::Plain(stream) => Pin::new(stream).poll_close(cx),
            AsyncStdStream::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
            AsyncStdStream::Web(socket) => socket.poll_close(cx),
        }
    }

    fn engine_bytes(&mut self, written: usize) -> usize {
        match self {
            AsyncStdStream::Web(socket) => socket.engine_bytes(written),
            _ => written,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_stream_fits_the_idle_task_budget() {
        assert!(std::mem::size_of::<super::AsyncStdStream>() <= wur2_host::STREAM_BUDGET);
    }
}
