//! A runtime for unit tests that only needs to type-check or to be polled by hand.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::runtime::{Runtime, Transport};

/// A stream of the size the runtime crates' streams may have at most (their tests
/// check theirs against [`STREAM_BUDGET`](crate::STREAM_BUDGET)).
pub(crate) struct FakeStream(#[allow(dead_code)] [u64; crate::STREAM_BUDGET / 8]);

impl Transport for FakeStream {
    fn poll_read(&mut self, _: &mut Context<'_>, _: &mut [u8]) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
    fn poll_write_vectored(
        &mut self,
        _: &mut Context<'_>,
        _: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Pending
    }
    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn engine_bytes(&mut self, written: usize) -> usize {
        written
    }
}

impl From<()> for FakeStream {
    fn from((): ()) -> Self {
        FakeStream([0; crate::STREAM_BUDGET / 8])
    }
}

/// A runtime that is only a set of types: nothing spawned is ever run, every accept fails
/// at once, and [`Runtime::yield_now`] gives the caller's turn back once, as a real
/// runtime's does.
pub(crate) struct Types;

impl Runtime for Types {
    type TcpListener = ();
    type TcpStream = ();
    type Stream = FakeStream;
    fn spawn(_: impl Future<Output = ()> + Send + 'static) {}
    fn spawn_blocking(_: impl FnOnce() + Send + 'static) {}
    fn sleep_until(_: Instant) -> impl Future<Output = ()> + Send + 'static {
        std::future::pending()
    }
    fn yield_now() -> impl Future<Output = ()> + Send {
        let mut yielded = false;
        std::future::poll_fn(move |cx| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }
    fn local_addr(_: &()) -> io::Result<SocketAddr> {
        Err(io::ErrorKind::Unsupported.into())
    }
    async fn accept(_: &()) -> io::Result<((), SocketAddr)> {
        Err(io::ErrorKind::Unsupported.into())
    }
    async fn tls_accept(_: Arc<rustls::ServerConfig>, (): ()) -> io::Result<FakeStream> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn web_socket(_: crate::WebSocket<FakeStream>) -> FakeStream {
        FakeStream::from(())
    }
}
