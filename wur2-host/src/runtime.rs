//! What the driver needs from an async runtime, and from a client's byte stream: the two
//! small traits the one driver ([`serve_with`](crate::serve_with)) is written against.
//!
//! A runtime crate (`wur2-tokio`, `wur2-async-std`) implements [`Runtime`] for a unit type
//! and [`Transport`] for its stream type (plain TCP, or TLS over it), and nothing else of
//! the server: the accept loops, the engine's loop and the connection task live here once.
//! (quinn's `runtime` module serves Tokio and smol the same way.)

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::web::WebSocket;

/// Tasks, timers and sockets of one async runtime.
///
/// Every method is an associated function: a runtime is chosen by type, and the server's
/// tasks run on whichever runtime is current where [`serve_with`](crate::serve_with) was
/// called.
pub trait Runtime: Send + Sync + 'static {
    /// A bound TCP listening socket.
    type TcpListener: Send + Sync + 'static;
    /// An accepted TCP connection, before any TLS.
    type TcpStream: Send + 'static;
    /// What a connection task reads and writes: plain TCP, or TLS over it.
    type Stream: Transport + From<Self::TcpStream>;

    /// Runs `task` in the background until it finishes.
    fn spawn(task: impl Future<Output = ()> + Send + 'static);

    /// Runs blocking `job` (file I/O) on a thread where blocking is allowed.
    fn spawn_blocking(job: impl FnOnce() + Send + 'static);

    /// Resolves at `deadline` (at once if it has passed).
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> + Send + 'static;

    /// Lets the runtime's other ready tasks run before this one continues.
    fn yield_now() -> impl Future<Output = ()> + Send;

    /// The address `listener` is bound to.
    fn local_addr(listener: &Self::TcpListener) -> io::Result<SocketAddr>;

    /// The next client of `listener`, with Nagle's algorithm off (chat lines are small and
    /// must not wait).
    fn accept(
        listener: &Self::TcpListener,
    ) -> impl Future<Output = io::Result<(Self::TcpStream, SocketAddr)>> + Send + '_;

    /// Runs the server side of a TLS handshake on `stream` with `config`.
    fn tls_accept(
        config: Arc<rustls::ServerConfig>,
        stream: Self::TcpStream,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send + 'static;

    /// A client's WebSocket (upgrade done, over its plain or TLS stream) as the stream its
    /// connection task drives: one more variant of the runtime's stream type, boxed (a
    /// WebSocket's state is large, and plain connections should not carry its size).
    fn web_socket(socket: WebSocket<Self::Stream>) -> Self::Stream;
}

/// A client's byte stream as the connection task drives it: non-blocking reads and
/// vectored writes in its own poll, a flush for transports that buffer (TLS records),
/// and closing the write side.
///
/// Plain TCP implements it with the socket's readiness directly (no buffer of the
/// transport's own); TLS with its stream's `AsyncRead`/`AsyncWrite`.
pub trait Transport: Send + Unpin + 'static {
    /// Reads into `buf`; `Ready(Ok(0))` at end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;

    /// Writes from `bufs` in order; returns how many bytes were taken.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Pushes bytes the transport buffered (TLS records) to the socket.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Flushes, then closes the write side (the peer reads end of stream).
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// The engine's bytes that the writes since the last call stand for, `written` being
    /// the bytes of the queue they took: `written` for a stream that writes the engine's
    /// bytes as they are; a WebSocket writes frames of them, and says how many of the
    /// engine's bytes those were.
    fn engine_bytes(&mut self, written: usize) -> usize;
}

/// Resolves at `deadline`, or never when there is none (a disabled branch of a select).
pub(crate) async fn sleep_until_opt<R: Runtime>(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => R::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
