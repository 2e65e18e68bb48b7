//! The engine's lines as WebSocket text frames, written straight from its bytes.
//!
//! A server's frames are not masked (RFC 6455, 5.1), so a line's frame is a header of two
//! to ten bytes and the line itself: one vectored write carries the headers and the
//! engine's own (shared) bytes, with no copy and no allocation per line, as a TCP write
//! carries the lines. Only what a write leaves half-written is copied, to go out first
//! next time ([`TransportIo`]), and the rare line that needs a copy anyway: one split
//! between two of the engine's buffers, or one that is not UTF-8 (shown as well as it can
//! be, since a text frame must be UTF-8).

use std::io::{self, IoSlice};
use std::task::{Context, Poll, ready};

use crate::runtime::Transport;
use crate::web::io::TransportIo;

/// Lines framed and handed to the stream in one vectored write at most (two slices each).
const LINES_PER_WRITE: usize = 128;
/// Bytes of a server frame's header at most: FIN and opcode, a length byte, and a 64-bit
/// length.
const MAX_HEADER: usize = 10;

/// Writes the header of a final, unmasked text frame of `len` bytes into `header`;
/// returns its length.
fn text_header(len: usize, header: &mut [u8; MAX_HEADER]) -> usize {
    header[0] = 0x81;
    if len < 126 {
        header[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// `line` without the `\r` of a `\r\n` ending.
fn without_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Writes the complete lines of `bufs` to `io` as text frames, one per line, without their
/// line breaks; an incomplete last line is kept in `partial` until its end comes.
/// `Ready` with the input bytes taken (a prefix of `bufs`, line breaks included): a
/// frame is taken whole once any of it is written. tungstenite's own output must be
/// flushed before (the caller's job), so that frames never interleave.
pub(crate) fn poll_write_lines<S: Transport>(
    io: &mut TransportIo<S>,
    partial: &mut Vec<u8>,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    ready!(io.poll_unsent(cx))?;
    let mut taken = 0;
    // The lines of this write: their text and the input each takes.
    let mut lines: [(&[u8], usize); LINES_PER_WRITE] = [(&[], 0); LINES_PER_WRITE];
    let mut count = 0;
    // The start of a line that ends in a later buffer, once lines are gathered before it.
    let mut tail: &[u8] = &[];
    'bufs: for buf in bufs {
        let mut rest: &[u8] = buf;
        while !rest.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                if count == 0 {
                    partial.extend_from_slice(rest);
                    taken += rest.len();
                    break;
                }
                tail = rest;
                break 'bufs;
            };
            let line = without_cr(&rest[..end]);
            let copied = !partial.is_empty() || std::str::from_utf8(line).is_err();
            if copied {
                // Framed into the unsent bytes, which must not pass the lines gathered
                // before it: those go first, and this line in the next call.
                if count > 0 {
                    break 'bufs;
                }
                partial.extend_from_slice(&rest[..end]);
                let whole = std::mem::take(partial);
                let text = String::from_utf8_lossy(without_cr(&whole));
                keep_frame(io, &text);
                taken += end + 1;
                rest = &rest[end + 1..];
                match io.poll_unsent(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => return Poll::Ready(Ok(taken)),
                }
            }
            if count == LINES_PER_WRITE {
                break 'bufs;
            }
            lines[count] = (line, end + 1);
            count += 1;
            rest = &rest[end + 1..];
        }
    }
    if count == 0 {
        return Poll::Ready(Ok(taken));
    }

    let mut headers = [[0u8; MAX_HEADER]; LINES_PER_WRITE];
    let mut header_lens = [0usize; LINES_PER_WRITE];
    for ((text, _), (header, len)) in lines[..count]
        .iter()
        .zip(headers.iter_mut().zip(header_lens.iter_mut()))
    {
        *len = text_header(text.len(), header);
    }
    let mut slices = [IoSlice::new(&[]); 2 * LINES_PER_WRITE];
    for (i, (text, _)) in lines[..count].iter().enumerate() {
        slices[2 * i] = IoSlice::new(&headers[i][..header_lens[i]]);
        slices[2 * i + 1] = IoSlice::new(text);
    }
    let mut written = match io.stream.poll_write_vectored(cx, &slices[..2 * count]) {
        Poll::Ready(Ok(written)) => written,
        // What was framed into the unsent bytes above is taken; the error or the wait
        // comes again at the next write.
        Poll::Ready(Err(_)) | Poll::Pending if taken > 0 => return Poll::Ready(Ok(taken)),
        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
        Poll::Pending => return Poll::Pending,
    };
    for (i, (text, input)) in lines[..count].iter().enumerate() {
        let header = &headers[i][..header_lens[i]];
        if written >= header.len() + text.len() {
            written -= header.len() + text.len();
            taken += input;
            continue;
        }
        if written > 0 {
            // Half-written: the rest goes out before anything else.
            if written < header.len() {
                io.keep_unsent(&header[written..]);
                io.keep_unsent(text);
            } else {
                io.keep_unsent(&text[written - header.len()..]);
            }
            taken += input;
        }
        return Poll::Ready(Ok(taken));
    }
    partial.extend_from_slice(tail);
    taken += tail.len();
    Poll::Ready(Ok(taken))
}

/// Frames `text` whole into `io`'s unsent bytes.
fn keep_frame<S: Transport>(io: &mut TransportIo<S>, text: &str) {
    let mut header = [0u8; MAX_HEADER];
    let len = text_header(text.len(), &mut header);
    io.keep_unsent(&header[..len]);
    io.keep_unsent(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::io::Cursor;

    use async_tungstenite::tungstenite::error::ProtocolError;
    use async_tungstenite::tungstenite::protocol::{Role, WebSocket};
    use async_tungstenite::tungstenite::{Error as WsError, Message};
    use bytes::{Buf, Bytes};
    use proptest::prelude::*;

    use super::*;

    /// A stream that takes at most the next of `room`'s sizes per write (0: not now).
    struct Narrow {
        written: Vec<u8>,
        room: VecDeque<usize>,
    }

    impl Transport for Narrow {
        fn poll_read(&mut self, _: &mut Context<'_>, _: &mut [u8]) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_write_vectored(
            &mut self,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut room = self.room.pop_front().unwrap_or(usize::MAX);
            if room == 0 {
                return Poll::Pending;
            }
            let before = self.written.len();
            for buf in bufs {
                let n = buf.len().min(room);
                self.written.extend_from_slice(&buf[..n]);
                room -= n;
            }
            Poll::Ready(Ok(self.written.len() - before))
        }
        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Writes `chunks` as the connection task would (many buffers per call, what was
    /// taken leaves the queue) through a stream with `room`; returns the bytes on the wire.
    fn write_through(chunks: Vec<Vec<u8>>, room: Vec<usize>) -> Vec<u8> {
        let mut io = TransportIo::new(Narrow {
            written: Vec::new(),
            room: room.into(),
        });
        let mut partial = Vec::new();
        let mut queue: VecDeque<Bytes> = chunks.into_iter().map(Bytes::from).collect();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = queue.iter().map(|b| IoSlice::new(b)).collect();
            match poll_write_lines(&mut io, &mut partial, &mut cx, &slices) {
                Poll::Ready(Ok(mut taken)) => {
                    assert!(taken > 0, "a write that takes nothing is an error");
                    while taken > 0 {
                        let front = queue.front_mut().expect("took no more than queued");
                        let n = taken.min(front.len());
                        front.advance(n);
                        taken -= n;
                        if front.is_empty() {
                            queue.pop_front();
                        }
                    }
                }
                Poll::Ready(Err(error)) => panic!("{error}"),
                Poll::Pending => {}
            }
        }
        while io.poll_unsent(&mut cx).is_pending() {}
        assert!(partial.is_empty(), "every line ended");
        io.stream.written
    }

    /// The text messages a client reads from `wire`.
    fn read_as_client(wire: Vec<u8>) -> Vec<String> {
        let mut client = WebSocket::from_raw_socket(Cursor::new(wire), Role::Client, None);
        let mut messages = Vec::new();
        loop {
            match client.read() {
                Ok(Message::Text(text)) => messages.push(text.to_string()),
                Ok(other) => panic!("not a text frame: {other:?}"),
                // The end of the bytes, without a close frame.
                Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                    return messages;
                }
                Err(error) => panic!("{error}"),
            }
        }
    }

    #[test]
    fn frame_headers_use_the_shortest_length_encoding() {
        let mut header = [0; MAX_HEADER];
        assert_eq!(text_header(125, &mut header), 2);
        assert_eq!(header[..2], [0x81, 125]);
        assert_eq!(text_header(126, &mut header), 4);
        assert_eq!(header[..4], [0x81, 126, 0, 126]);
        assert_eq!(text_header(65_536, &mut header), 10);
        assert_eq!(header[..10], [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn a_line_split_between_buffers_and_a_line_that_is_not_utf8_are_each_one_frame() {
        let wire = write_through(
            vec![
                b"{\"a\":1}\n{\"b\"".to_vec(),
                b":2}\r\n".to_vec(),
                b"bad \xff byte\n".to_vec(),
                b"last\n".to_vec(),
            ],
            vec![3, 0, 1, 0, 5],
        );
        assert_eq!(
            read_as_client(wire),
            ["{\"a\":1}", "{\"b\":2}", "bad \u{fffd} byte", "last"]
        );
    }

    proptest! {
        /// However the engine's bytes are cut into buffers and however little the socket
        /// takes per write, a client reads exactly the lines, in order, one frame each.
        #[test]
        fn every_line_arrives_as_one_frame_whatever_the_cuts_and_short_writes(
            lines in prop::collection::vec(
                prop_oneof![
                    "[ -~]{0,40}",
                    "[ -~é]{120,140}",
                    Just("x".repeat(70_000)),
                ],
                1..40,
            ),
            cuts in prop::collection::vec(1usize..200, 0..30),
            room in prop::collection::vec(0usize..300, 0..200),
        ) {
            let mut input: Vec<u8> = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                input.extend_from_slice(line.as_bytes());
                input.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
            }
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            for cut in cuts {
                if rest.is_empty() {
                    break;
                }
                let (chunk, after) = rest.split_at(cut.min(rest.len()));
                chunks.push(chunk.to_vec());
                rest = after;
            }
            if !rest.is_empty() {
                chunks.push(rest.to_vec());
            }
            prop_assert_eq!(read_as_client(write_through(chunks, room)), lines);
        }
    }
}
