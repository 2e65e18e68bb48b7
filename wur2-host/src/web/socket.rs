//! A WebSocket client as one more [`Transport`] of the connection task: the task reads and
//! writes bytes as it does for TCP and TLS, and this type turns them into frames and back
//! (tungstenite does the framing). It owns no chat state and decides nothing about the
//! chat; it only refuses frames the line protocol cannot carry, with a close code.
//!
//! | client sends | the engine reads |
//! |---|---|
//! | a text frame (one line; one trailing line break allowed) | the line and `\n` |
//! | binary frames after a `/send <user> <name> <size>` frame | exactly those `<size>` raw bytes |
//! | ping | nothing (tungstenite answers pong) |
//! | close | end of stream |
//!
//! Every line the engine writes leaves as one text frame, without its `\n`: the driver
//! frames each output once for all WebSocket recipients, and this type writes the frames
//! as they are ([`frames`]).
//!
//! Refusals close the connection with a code (RFC 6455, 7.4.1) and a reason, never a
//! reply: 1009 for a frame over the line limit, 1003 for a binary frame where no upload
//! is expected, 1007 for a text frame that is not UTF-8, 1008 for a text frame with a line
//! break inside, text where upload bytes are expected, or more upload bytes than
//! announced, and 1002 for a broken frame.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::Stream;
use futures_sink::Sink;
use tracing::debug;
use wur2_engine::{Command, Mode, parse_command};

use crate::runtime::Transport;
use crate::web::frames;
use crate::web::io::TransportIo;

/// Bytes one binary frame of an upload may carry at most (a browser sends a file in slices
/// of this size or less).
pub const UPLOAD_FRAME_MAX: usize = 64 * 1024;

/// Read buffer tungstenite keeps per connection: small, since lines are small and idle
/// connections are many.
const READ_BUFFER: usize = 4 * 1024;
/// Output tungstenite gathers before it writes to the socket on its own (a flush writes
/// everything at once anyway).
const WRITE_BUFFER: usize = 16 * 1024;

/// What the connection is doing.
#[derive(Debug)]
enum State {
    /// Frames flow both ways.
    Open,
    /// A frame was refused: this close frame goes out, then reads end.
    Refusing(Option<CloseFrame>),
    /// The client closed, or a refusal's close frame left: reads end, writes are dropped.
    Closed,
    /// Closed by [`poll_close`](Transport::poll_close), our side of the stream shut: reads
    /// return the raw bytes the client still sends, for the connection task's linger to
    /// drop (unread input would make the kernel reset the connection and destroy the
    /// close frame before the client reads it).
    Lingering,
}

/// A client's WebSocket over the stream `S` (plain TCP or TLS), handshake done, speaking
/// the line protocol in frames (see the module's table).
#[derive(Debug)]
pub struct WebSocket<S: Transport> {
    socket: WebSocketStream<TransportIo<S>>,
    /// What the last frame brought that the connection task has not read yet.
    input: Bytes,
    /// Bytes of an announced upload that are still to come in binary frames.
    upload_left: u64,
    /// The engine's bytes the frames written since [`Transport::engine_bytes`] last
    /// asked stand for.
    lines_written: usize,
    /// The engine's line limit ([`Config::max_line_bytes`](wur2_engine::Config)).
    max_line_bytes: usize,
    state: State,
}

impl<S: Transport> WebSocket<S> {
    /// Speaks WebSocket (server side) on `stream`, whose handshake is done; `read_ahead`
    /// is what the client sent after its handshake request, `max_line_bytes` the engine's
    /// line limit, over which a text frame closes the connection with 1009.
    pub async fn new(stream: S, read_ahead: Vec<u8>, max_line_bytes: usize) -> WebSocket<S> {
        let frame_max = max_line_bytes.saturating_add(2).max(UPLOAD_FRAME_MAX);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(Some(frame_max))
            .max_frame_size(Some(frame_max));
        let socket = WebSocketStream::from_partially_read(
            TransportIo::new(stream),
            read_ahead,
            Role::Server,
            Some(config),
        )
        .await;
        WebSocket {
            socket,
            input: Bytes::new(),
            upload_left: 0,
            lines_written: 0,
            max_line_bytes,
            state: State::Open,
        }
    }

    /// Refuses what the client sent: `code` and `reason` go out in a close frame.
    fn refuse(&mut self, code: CloseCode, reason: String) {
        debug!(?code, %reason, "WebSocket frame refused; closing");
        self.input = Bytes::new();
        self.state = State::Refusing(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        }));
    }

    /// A text frame: one line for the engine, unless it breaks a rule.
    fn take_text(&mut self, text: &str) {
        let line = text
            .strip_suffix('\n')
            .map(|line| line.strip_suffix('\r').unwrap_or(line))
            .unwrap_or(text);
        if line.len() > self.max_line_bytes {
            return self.refuse(
                CloseCode::Size,
                format!("line too long (max {} bytes)", self.max_line_bytes),
            );
        }
        if line.contains(['\n', '\r']) {
            return self.refuse(CloseCode::Policy, "one line per text frame".to_owned());
        }
        if self.upload_left > 0 {
            return self.refuse(
                CloseCode::Policy,
                format!(
                    "{} bytes of an upload were expected in binary frames",
                    self.upload_left
                ),
            );
        }
        let line = match parse_command(line) {
            Ok(Command::SendUpload { size, .. }) => {
                self.upload_left = size;
                line
            }
            // WebSocket clients speak JSON lines only: text mode's raw file chunks cannot
            // travel in text frames. The engine answers that the mode is JSON.
            Ok(Command::Mode(Mode::Text)) => "/mode json",
            _ => line,
        };
        let mut input = BytesMut::with_capacity(line.len() + 1);
        input.extend_from_slice(line.as_bytes());
        input.extend_from_slice(b"\n");
        self.input = input.freeze();
    }

    /// A binary frame: bytes of the announced upload, or a refusal.
    fn take_binary(&mut self, data: Bytes) {
        if self.upload_left == 0 {
            return self.refuse(
                CloseCode::Unsupported,
                "binary frames carry only the bytes of an upload (/send <user> <name> <size>)"
                    .to_owned(),
            );
        }
        let len = data.len() as u64;
        if len > self.upload_left {
            return self.refuse(
                CloseCode::Policy,
                format!(
                    "{len} bytes in a binary frame, {} left in the upload",
                    self.upload_left
                ),
            );
        }
        self.upload_left -= len;
        self.input = data;
    }

    /// Sends the refusal's close frame; ready once it left (or cannot leave).
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut socket = Pin::new(&mut self.socket);
        if let State::Refusing(frame) = &mut self.state
            && frame.is_some()
        {
            match ready!(socket.as_mut().poll_ready(cx)) {
                Ok(()) => {
                    let frame = frame.take();
                    if socket.as_mut().start_send(Message::Close(frame)).is_err() {
                        self.state = State::Closed;
                        return Poll::Ready(());
                    }
                }
                Err(_) => {
                    self.state = State::Closed;
                    return Poll::Ready(());
                }
            }
        }
        let _ = ready!(socket.poll_flush(cx));
        self.state = State::Closed;
        Poll::Ready(())
    }
}

/// Where a tungstenite error leaves the reader: a refusal to send, the end, or an I/O
/// error of the socket.
enum ReadError {
    Refuse(CloseCode, String),
    End,
    Io(io::Error),
}

fn read_error(error: WsError, max_line_bytes: usize) -> ReadError {
    match error {
        WsError::Capacity(_) => ReadError::Refuse(
            CloseCode::Size,
            format!("line too long (max {max_line_bytes} bytes)"),
        ),
        WsError::Utf8(_) => ReadError::Refuse(CloseCode::Invalid, "invalid UTF-8".to_owned()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => ReadError::End,
        WsError::Io(error) => ReadError::Io(error),
        other => ReadError::Refuse(CloseCode::Protocol, other.to_string()),
    }
}

/// A tungstenite error on the write side, as the connection task sees errors.
fn io_error(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}

impl<S: Transport> Transport for WebSocket<S> {
    /// Fills `buf` with as many frames as have arrived (a TCP read returns every line
    /// that arrived too, and flood control counts lines held back per read).
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut filled = 0;
        loop {
            if !self.input.is_empty() {
                let n = self.input.len().min(buf.len() - filled);
                buf[filled..filled + n].copy_from_slice(&self.input[..n]);
                self.input.advance(n);
                filled += n;
                if filled == buf.len() {
                    return Poll::Ready(Ok(filled));
                }
                continue;
            }
            match self.state {
                State::Open => {}
                State::Refusing(_) if filled > 0 => return Poll::Ready(Ok(filled)),
                State::Refusing(_) => {
                    ready!(self.poll_refusal(cx));
                    return Poll::Ready(Ok(0));
                }
                State::Closed => return Poll::Ready(Ok(filled)),
                State::Lingering if filled > 0 => return Poll::Ready(Ok(filled)),
                State::Lingering => return self.socket.get_mut().stream.poll_read(cx, buf),
            }
            let message = match Pin::new(&mut self.socket).poll_next(cx) {
                Poll::Pending if filled > 0 => return Poll::Ready(Ok(filled)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(message))) => message,
                Poll::Ready(Some(Err(error))) => match read_error(error, self.max_line_bytes) {
                    ReadError::Refuse(code, reason) => {
                        self.refuse(code, reason);
                        continue;
                    }
                    ReadError::End => {
                        self.state = State::Closed;
                        continue;
                    }
                    ReadError::Io(error) if filled == 0 => return Poll::Ready(Err(error)),
                    // What arrived before the error goes to the engine first; the next
                    // read meets the end.
                    ReadError::Io(_) => {
                        self.state = State::Closed;
                        continue;
                    }
                },
                Poll::Ready(None) => {
                    self.state = State::Closed;
                    continue;
                }
            };
            match message {
                Message::Text(text) => self.take_text(&text),
                Message::Binary(data) => self.take_binary(data),
                // tungstenite queued the pong (or the reply to a close): push it out now,
                // as the connection task flushes only after its own writes.
                Message::Ping(_) => {
                    let _ = Pin::new(&mut self.socket).poll_flush(cx);
                }
                Message::Close(_) => {
                    let _ = Pin::new(&mut self.socket).poll_flush(cx);
                    self.state = State::Closed;
                }
                Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Writes frames as they are: the driver framed the engine's lines once for all
    /// WebSocket recipients (see the `frames` module).
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !matches!(self.state, State::Open) {
            // The client is gone or being refused: what the engine still says is dropped.
            let dropped = bufs.iter().map(|buf| buf.len()).sum();
            self.lines_written += dropped;
            return Poll::Ready(Ok(dropped));
        }
        // tungstenite's own frames (a pong) go out first, so that frames never interleave.
        ready!(Pin::new(&mut self.socket).poll_flush(cx)).map_err(io_error)?;
        let written = ready!(frames::poll_write_frames(self.socket.get_mut(), cx, bufs))?;
        self.lines_written += written.lines;
        Poll::Ready(Ok(written.taken))
    }

    fn engine_bytes(&mut self, _written: usize) -> usize {
        std::mem::take(&mut self.lines_written)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.state {
            State::Open => Pin::new(&mut self.socket).poll_flush(cx).map_err(io_error),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Closes with 1000 (normal) unless a refusal sent its own code: the engine closed the
    /// connection and said why in a line before (a goodbye, a kick, a timeout). Then shuts
    /// our side of the stream, so the client sees the end right after the close frame.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let State::Open = self.state {
            self.state = State::Refusing(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: Utf8Bytes::default(),
            }));
        }
        if let State::Refusing(_) = self.state {
            ready!(self.poll_refusal(cx));
        }
        if let State::Closed = self.state {
            match ready!(Pin::new(&mut self.socket).poll_close(cx)) {
                Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                Err(error) => return Poll::Ready(Err(io_error(error))),
            }
            self.state = State::Lingering;
        }
        futures_lite::io::AsyncWrite::poll_close(Pin::new(self.socket.get_mut()), cx)
    }
}
