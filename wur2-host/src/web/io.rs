//! A [`Transport`] seen through the `futures` I/O traits, which tungstenite's async side
//! reads and writes: the WebSocket transport layers over any client stream the runtime
//! gives (plain TCP or TLS), with no runtime of its own.
//!
//! Two writers share the stream: tungstenite (its pongs and close frames) and the
//! WebSocket transport's own text frames, written straight from the engine's bytes. The
//! rest of a frame a write left half-written waits here, and goes out before anything
//! either of them writes next, so frames never interleave.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use futures_lite::io::{AsyncRead, AsyncWrite};

use crate::runtime::Transport;

/// A client stream as `futures` I/O.
#[derive(Debug)]
pub(crate) struct TransportIo<S> {
    /// The client's stream.
    pub stream: S,
    /// The rest of a half-written frame, which goes out first.
    unsent: BytesMut,
}

impl<S: Transport> TransportIo<S> {
    /// `stream`, nothing unsent.
    pub fn new(stream: S) -> TransportIo<S> {
        TransportIo {
            stream,
            unsent: BytesMut::new(),
        }
    }

    /// Keeps `rest`, the unwritten end of a frame, to go out before anything else.
    pub fn keep_unsent(&mut self, rest: &[u8]) {
        self.unsent.extend_from_slice(rest);
    }

    /// Writes what a half-written frame left; ready once nothing is left.
    pub fn poll_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.unsent.is_empty() {
            let written = ready!(
                self.stream
                    .poll_write_vectored(cx, &[IoSlice::new(&self.unsent)])
            )?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent.advance(written);
            if self.unsent.is_empty() {
                // An idle connection holds no write buffer.
                self.unsent = BytesMut::new();
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Transport> AsyncRead for TransportIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream.poll_read(cx, buf)
    }
}

impl<S: Transport> AsyncWrite for TransportIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let io = self.get_mut();
        ready!(io.poll_unsent(cx))?;
        io.stream.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = self.get_mut();
        ready!(io.poll_unsent(cx))?;
        io.stream.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let io = self.get_mut();
        ready!(io.poll_unsent(cx))?;
        io.stream.poll_close(cx)
    }
}
