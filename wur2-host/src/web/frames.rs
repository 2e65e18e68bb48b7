//! The engine's lines as WebSocket text frames, framed once and written as they are.
//!
//! A server's frames are not masked (RFC 6455, 5.1), so a line's frame is the same bytes
//! for every recipient: the driver frames each of the engine's outputs once, when it
//! stages it ([`frame_lines`], from [`Connections`](crate::Connections)), and every
//! WebSocket recipient gets the shared frames, as TCP recipients get the shared lines.
//! The transport then writes them as they are ([`poll_write_frames`]); it only finds
//! where frames end, so that a frame a write left half-written is finished before
//! anything else goes out (tungstenite's pongs and close frame come between frames,
//! never inside one), and so that the engine hears of its own bytes written, not of
//! frame bytes.

use std::io::{self, IoSlice};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, BytesMut};

use crate::runtime::Transport;
use crate::web::io::TransportIo;

/// Bytes of a server frame's header at most: FIN and opcode, a length byte, and a 64-bit
/// length.
const MAX_HEADER: usize = 10;

/// Appends the header of a final, unmasked text frame of `len` bytes to `out`.
fn put_text_header(len: usize, out: &mut BytesMut) {
    out.put_u8(0x81);
    if len < 126 {
        out.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.put_u8(126);
        out.put_u16(len);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Appends `data`'s lines to `out` as text frames, one per line, without the line break;
/// a last line without one is a frame too (the engine's JSON outputs are whole lines).
/// A line that is not UTF-8 (a text frame must be) is framed as well as it can be shown,
/// never shorter than it was.
pub(crate) fn frame_lines(data: &[u8], out: &mut BytesMut) {
    // Headers take at most one byte more than the line breaks they replace, unless a
    // line is over 125 bytes.
    out.reserve(data.len() + data.len() / 64 + MAX_HEADER);
    let mut rest = data;
    while !rest.is_empty() {
        let (line, after) = match memchr::memchr(b'\n', rest) {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &[][..]),
        };
        match std::str::from_utf8(line) {
            Ok(_) => {
                put_text_header(line.len(), out);
                out.extend_from_slice(line);
            }
            Err(_) => {
                let shown = String::from_utf8_lossy(line);
                put_text_header(shown.len(), out);
                out.extend_from_slice(shown.as_bytes());
            }
        }
        rest = after;
    }
}

/// Reads the buffers of one write as one run of bytes, at positions that only grow.
struct Run<'a, 'b> {
    bufs: &'a [IoSlice<'b>],
    /// The buffer the last position was in, and where it starts in the run.
    index: usize,
    start: usize,
}

impl Run<'_, '_> {
    /// The byte at `pos` (`None`: past the end).
    fn at(&mut self, pos: usize) -> Option<u8> {
        while pos >= self.start + self.bufs.get(self.index)?.len() {
            self.start += self.bufs[self.index].len();
            self.index += 1;
        }
        Some(self.bufs[self.index][pos - self.start])
    }

    /// The header length and payload length of the frame at `pos` (`None`: the header
    /// runs past the end).
    fn frame_at(&mut self, pos: usize) -> Option<(usize, usize)> {
        let len = self.at(pos + 1)? & 0x7f;
        let (header, payload) = match len {
            126 => (
                4,
                u64::from(self.at(pos + 2)?) << 8 | u64::from(self.at(pos + 3)?),
            ),
            127 => {
                let mut payload = 0u64;
                for i in 2..10 {
                    payload = payload << 8 | u64::from(self.at(pos + i)?);
                }
                (10, payload)
            }
            short => (2, u64::from(short)),
        };
        Some((header, usize::try_from(payload).unwrap_or(usize::MAX)))
    }

    /// Copies bytes `from..to` (as far as there are any) to the end of `out`.
    fn copy(&mut self, from: usize, to: usize, out: &mut TransportIo<impl Transport>) {
        let mut pos = from;
        while pos < to && self.at(pos).is_some() {
            let buf = &self.bufs[self.index];
            let end = (to - self.start).min(buf.len());
            out.keep_unsent(&buf[pos - self.start..end]);
            pos = self.start + end;
        }
    }
}

/// What one write of frames did.
pub(crate) struct Written {
    /// Bytes of the buffers taken: whole frames (the rest of a half-written one waits in
    /// the stream's unsent bytes).
    pub taken: usize,
    /// The engine's bytes those frames stand for: each line and its line break.
    pub lines: usize,
}

/// Writes `bufs`, whole frames made by [`frame_lines`], to `io` as they are.
pub(crate) fn poll_write_frames<S: Transport>(
    io: &mut TransportIo<S>,
    cx: &mut Context<'_>,
    bufs: &[IoSlice<'_>],
) -> Poll<io::Result<Written>> {
    ready!(io.poll_unsent(cx))?;
    let written = ready!(io.stream.poll_write_vectored(cx, bufs))?;
    let mut run = Run {
        bufs,
        index: 0,
        start: 0,
    };
    let (mut taken, mut lines) = (0, 0);
    while taken < written {
        let Some((header, payload)) = run.frame_at(taken) else {
            // Not frames of ours: take what was written as it is.
            debug_assert!(
                false,
                "a WebSocket was handed bytes that are not whole frames"
            );
            return Poll::Ready(Ok(Written {
                taken: written,
                lines: lines + written - taken,
            }));
        };
        let end = taken.saturating_add(header).saturating_add(payload);
        if end > written {
            // Half-written: the rest goes out before anything else.
            run.copy(written, end, io);
        }
        taken = end;
        lines += payload + 1;
    }
    Poll::Ready(Ok(Written {
        taken: taken.min(bufs.iter().map(|buf| buf.len()).sum()),
        lines,
    }))
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
        fn engine_bytes(&mut self, written: usize) -> usize {
            written
        }
    }

    /// Frames each of `outputs` once and writes them as a connection task would (many
    /// buffers per call, what was taken leaves the queue) through a stream with `room`;
    /// returns the bytes on the wire and the engine's bytes reported written.
    fn write_through(outputs: &[Vec<u8>], room: Vec<usize>) -> (Vec<u8>, usize) {
        let mut io = TransportIo::new(Narrow {
            written: Vec::new(),
            room: room.into(),
        });
        let mut queue: VecDeque<Bytes> = outputs
            .iter()
            .map(|output| {
                let mut framed = BytesMut::new();
                frame_lines(output, &mut framed);
                framed.freeze()
            })
            .collect();
        let mut reported = 0;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !queue.is_empty() {
            let slices: Vec<IoSlice<'_>> = queue.iter().map(|b| IoSlice::new(b)).collect();
            match poll_write_frames(&mut io, &mut cx, &slices) {
                Poll::Ready(Ok(Written { mut taken, lines })) => {
                    reported += lines;
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
        (io.stream.written, reported)
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
        for (len, header) in [
            (125, &[0x81, 125][..]),
            (126, &[0x81, 126, 0, 126]),
            (65_536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = BytesMut::new();
            put_text_header(len, &mut out);
            assert_eq!(&out[..], header);
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_shown_as_well_as_it_can_be() {
        let (wire, reported) = write_through(&[b"bad \xff byte\nfine\n".to_vec()], vec![3, 0]);
        assert_eq!(read_as_client(wire), ["bad \u{fffd} byte", "fine"]);
        // Never less than the engine's bytes, which it would then think still queued.
        assert!(reported >= 15, "{reported}");
    }

    proptest! {
        /// However little the socket takes per write, a client reads exactly the lines,
        /// in order, one frame each, and the engine hears of exactly its bytes written.
        #[test]
        fn every_line_arrives_as_one_frame_whatever_the_short_writes(
            outputs in prop::collection::vec(
                prop::collection::vec(
                    prop_oneof![
                        "[ -~]{0,40}",
                        "[ -~é]{120,140}",
                        Just("x".repeat(70_000)),
                    ],
                    1..4,
                ),
                1..30,
            ),
            room in prop::collection::vec(0usize..300, 0..200),
        ) {
            let bytes: Vec<Vec<u8>> = outputs
                .iter()
                .map(|lines| lines.iter().flat_map(|line| format!("{line}\n").into_bytes()).collect())
                .collect();
            let (wire, reported) = write_through(&bytes, room);
            prop_assert_eq!(reported, bytes.iter().map(Vec::len).sum::<usize>());
            prop_assert_eq!(read_as_client(wire), outputs.concat());
        }
    }
}
