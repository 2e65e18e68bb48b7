//! Bytes to lines: the line framer of one connection.
//!
//! It owns the unprocessed input of a connection. Lines are split off lazily, when the
//! engine is ready for the next one, so the bytes after a line may instead be taken raw
//! (a file upload that follows its `/send` line). A line longer than the limit is discarded
//! up to its end and reported once as [`Frame::TooLong`], in its place among the other
//! lines. It never interprets text.
//!
//! Consumed bytes are overwritten with zeros, so a password line does not linger in it.

/// One unit of input, in the order the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete line; its bytes (without `\n` or `\r\n`) were copied to the caller's buffer.
    Line,
    /// A line longer than the limit, discarded.
    TooLong,
}

/// Splits a byte stream into lines ending in `\n` (a `\r` before it is dropped), or hands
/// out raw bytes.
///
/// Any split of the same bytes across [`LineFramer::push`] calls gives the same frames.
#[derive(Debug)]
pub struct LineFramer {
    max_line_bytes: usize,
    /// Unconsumed input starts at `start`.
    buf: Vec<u8>,
    start: usize,
    /// `\n` bytes in the unconsumed input: the complete lines waiting.
    newlines: usize,
    /// Inside an over-long line: drop bytes up to the next `\n`.
    discarding: bool,
}

impl LineFramer {
    /// A framer that reports lines longer than `max_line_bytes` as [`Frame::TooLong`].
    pub fn new(max_line_bytes: usize) -> Self {
        LineFramer {
            max_line_bytes,
            buf: Vec::new(),
            start: 0,
            newlines: 0,
            discarding: false,
        }
    }

    /// Takes bytes as they arrived from the peer.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.discarding {
            match data.iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    self.discarding = false;
                    data = &data[newline + 1..];
                }
                None => return,
            }
        }
        self.newlines += count_newlines(data);
        self.buf.extend_from_slice(data);
    }

    /// Complete lines waiting to be taken.
    pub fn pending_frames(&self) -> usize {
        self.newlines
    }

    /// Complete lines waiting, counting up to and including the first for which `stop`
    /// holds (what follows it may not be lines at all, e.g. an upload's raw bytes).
    pub fn lines_until(&self, mut stop: impl FnMut(&[u8]) -> bool) -> usize {
        let mut count = 0;
        let mut rest = &self.buf[self.start..];
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            count += 1;
            let line = &rest[..newline];
            if stop(line.strip_suffix(b"\r").unwrap_or(line)) {
                break;
            }
            rest = &rest[newline + 1..];
        }
        count
    }

    /// Unconsumed bytes held, complete and partial lines together.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the next frame; for [`Frame::Line`] its bytes replace the contents of `line`.
    /// `None` while no complete line is held.
    pub fn next_frame(&mut self, line: &mut Vec<u8>) -> Option<Frame> {
        line.clear();
        let pending = &self.buf[self.start..];
        let frame = match pending.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                let content = &pending[..newline];
                let content = content.strip_suffix(b"\r").unwrap_or(content);
                let frame = if content.len() > self.max_line_bytes {
                    Frame::TooLong
                } else {
                    line.extend_from_slice(content);
                    Frame::Line
                };
                self.newlines -= 1;
                self.consume(newline + 1);
                frame
            }
            // One byte of slack for a `\r` that may still be followed by `\n`.
            None if pending.len() > self.max_line_bytes + 1 => {
                self.discarding = true;
                self.consume(pending.len());
                Frame::TooLong
            }
            None => return None,
        };
        Some(frame)
    }

    /// The first `max` unconsumed bytes, without consuming them.
    pub fn peek(&self, max: usize) -> &[u8] {
        let end = self.buf.len().min(self.start.saturating_add(max));
        &self.buf[self.start..end]
    }

    /// Drops up to `max` raw bytes (read first with [`LineFramer::peek`]: an upload's bytes
    /// are sent on from there, or dropped when the upload was refused); returns how many.
    pub fn skip(&mut self, max: usize) -> usize {
        let len = self.peek(max).len();
        self.newlines -= count_newlines(self.peek(max));
        self.consume(len);
        len
    }

    /// Wipes and drops `len` bytes from the front; gives memory back when nothing is held.
    fn consume(&mut self, len: usize) {
        let end = self.start + len;
        self.buf[self.start..end].fill(0);
        self.start = end;
        if self.start == self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        } else if self.start >= 4096 && self.start * 2 >= self.buf.len() {
            let old_len = self.buf.len();
            self.buf.copy_within(self.start.., 0);
            let kept = old_len - self.start;
            self.buf[kept..].fill(0);
            self.buf.truncate(kept);
            self.start = 0;
        }
    }
}

fn count_newlines(data: &[u8]) -> usize {
    data.iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framer_model::{self, Chunked, Step};
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Line(Vec<u8>),
        TooLong,
    }

    fn drain(framer: &mut LineFramer, out: &mut Vec<Seen>) {
        let mut line = Vec::new();
        while let Some(frame) = framer.next_frame(&mut line) {
            out.push(match frame {
                Frame::Line => Seen::Line(line.clone()),
                Frame::TooLong => Seen::TooLong,
            });
        }
    }

    fn frames_of_chunks(max: usize, chunks: &[&[u8]], drain_between: bool) -> Vec<Seen> {
        let mut framer = LineFramer::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            if drain_between {
                drain(&mut framer, &mut out);
            }
        }
        drain(&mut framer, &mut out);
        out
    }

    #[test]
    fn splits_lines_and_drops_carriage_returns() {
        let seen = frames_of_chunks(16, &[b"hello\r\nwor", b"ld\n\npartial"], true);
        assert_eq!(
            seen,
            vec![
                Seen::Line(b"hello".to_vec()),
                Seen::Line(b"world".to_vec()),
                Seen::Line(Vec::new())
            ]
        );
    }

    #[test]
    fn carriage_return_split_from_its_newline_is_still_dropped() {
        let seen = frames_of_chunks(5, &[b"abcde\r", b"\n"], true);
        assert_eq!(seen, vec![Seen::Line(b"abcde".to_vec())]);
    }

    #[test]
    fn overlong_line_is_reported_once_and_the_next_line_survives() {
        let long = vec![b'x'; 100];
        let seen = frames_of_chunks(10, &[&long, &long, b"\nok\n"], true);
        assert_eq!(seen, vec![Seen::TooLong, Seen::Line(b"ok".to_vec())]);
    }

    #[test]
    fn memory_is_released_when_everything_is_consumed() {
        let mut framer = LineFramer::new(64);
        framer.push(b"one\ntwo\n");
        let mut line = Vec::new();
        while framer.next_frame(&mut line).is_some() {}
        assert_eq!(framer.buf.capacity(), 0);
        assert_eq!(framer.buffered_bytes(), 0);
        assert_eq!(framer.pending_frames(), 0);
    }

    #[test]
    fn consumed_lines_are_wiped_from_the_buffer() {
        let mut framer = LineFramer::new(64);
        framer.push(b"secret-password\nrest");
        let mut line = Vec::new();
        framer.next_frame(&mut line);
        assert_eq!(line, b"secret-password");
        assert!(!framer.buf.windows(6).any(|w| w == b"secret"));
        assert_eq!(framer.peek(100), b"rest");
    }

    #[test]
    fn raw_bytes_after_a_line_come_out_exactly_and_lines_resume_after_them() {
        let mut framer = LineFramer::new(8);
        framer.push(b"/send x\nab\r\n\xffcd");
        framer.push(b"-after\n");
        let mut line = Vec::new();
        assert_eq!(framer.next_frame(&mut line), Some(Frame::Line));
        assert_eq!(line, b"/send x");
        assert_eq!(framer.peek(7), b"ab\r\n\xffcd");
        assert_eq!(framer.skip(7), 7);
        assert_eq!(framer.pending_frames(), 1);
        assert_eq!(framer.next_frame(&mut line), Some(Frame::Line));
        assert_eq!(line, b"-after");
    }

    proptest! {
        #[test]
        fn any_chunking_and_any_takes_match_the_reference_model(
            pieces in proptest::collection::vec(
                prop_oneof![
                    Just(b"\n".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(b"/send ".to_vec()),
                    Just(b"abc".to_vec()),
                    any::<u8>().prop_map(|b| vec![b]),
                ],
                0..120),
            pushes in proptest::collection::vec(
                (0usize..48, prop_oneof![
                    Just(Step::Nothing),
                    Just(Step::AllFrames),
                    Just(Step::OneFrame),
                    (0usize..40).prop_map(Step::Raw),
                ]),
                0..12),
            lines_only in any::<bool>(),
            max in 0usize..24,
        ) {
            let input = pieces.concat();
            // Lines only: the frames must also be those of the whole input split at once.
            let (cuts, steps) = pushes
                .into_iter()
                .map(|(cut, step)| match step {
                    Step::Raw(_) if lines_only => (cut, Step::AllFrames),
                    step => (cut, step),
                })
                .unzip();
            framer_model::check(&Chunked { max_line_bytes: max, cuts, steps, input: &input });
        }

        #[test]
        fn held_bytes_stay_bounded_by_complete_lines_plus_one_partial_line(
            input in proptest::collection::vec(any::<u8>(), 0..2000),
            max in 1usize..64,
        ) {
            let mut framer = LineFramer::new(max);
            framer.push(&input);
            let mut line = Vec::new();
            while framer.next_frame(&mut line).is_some() {
                prop_assert!(line.len() <= max);
            }
            prop_assert!(framer.buffered_bytes() <= max + 1);
        }
    }
}
