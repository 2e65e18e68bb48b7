//! Bytes to lines: the line framer of one connection.
//!
//! It owns the unprocessed input of a connection, bounded: complete lines wait here until
//! the engine is ready for them, and the partial line at the end is never longer than the
//! line limit (a longer line is discarded up to its end and reported once as
//! [`Frame::TooLong`], in its place among the other lines). It never interprets text.
//!
//! Consumed bytes are overwritten with zeros, so a password line does not linger in it.

use std::collections::VecDeque;

/// One unit of input, in the order the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete line; its bytes (without `\n` or `\r\n`) were copied to the caller's buffer.
    Line,
    /// A line longer than the limit, discarded.
    TooLong,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Line(usize),
    TooLong,
}

/// Splits a byte stream into lines ending in `\n` (a `\r` before it is dropped).
///
/// Any split of the same bytes across [`LineFramer::push`] calls gives the same frames.
#[derive(Debug)]
pub struct LineFramer {
    max_line_bytes: usize,
    /// Contents of complete lines (line endings removed), then the partial line.
    buf: Vec<u8>,
    /// Start of the first unconsumed complete line in `buf`.
    start: usize,
    /// Length of the partial line at the end of `buf`.
    partial: usize,
    /// Complete lines waiting, in order.
    entries: VecDeque<Entry>,
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
            partial: 0,
            entries: VecDeque::new(),
            discarding: false,
        }
    }

    /// Takes bytes as they arrived from the peer.
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    self.end_line(&data[..newline]);
                    data = &data[newline + 1..];
                }
                None => {
                    self.extend_partial(data);
                    data = &[];
                }
            }
        }
    }

    /// Complete lines (and over-long markers) waiting to be taken.
    pub fn pending_frames(&self) -> usize {
        self.entries.len()
    }

    /// Bytes held, complete and partial lines together.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the next frame; for [`Frame::Line`] its bytes replace the contents of `line`.
    pub fn next_frame(&mut self, line: &mut Vec<u8>) -> Option<Frame> {
        let entry = self.entries.pop_front()?;
        line.clear();
        let frame = match entry {
            Entry::TooLong => Frame::TooLong,
            Entry::Line(len) => {
                let range = self.start..self.start + len;
                line.extend_from_slice(&self.buf[range.clone()]);
                self.buf[range].fill(0);
                self.start += len;
                Frame::Line
            }
        };
        if self.entries.is_empty() {
            self.compact();
        }
        Some(frame)
    }

    fn end_line(&mut self, tail: &[u8]) {
        if self.discarding {
            self.discarding = false;
            return;
        }
        let tail = match tail.strip_suffix(b"\r") {
            Some(stripped) => stripped,
            None => {
                if tail.is_empty() && self.partial > 0 && self.buf.last() == Some(&b'\r') {
                    // The `\r` arrived in an earlier push, at the end of the partial line.
                    self.buf.pop();
                    self.partial -= 1;
                }
                tail
            }
        };
        let len = self.partial + tail.len();
        if len > self.max_line_bytes {
            self.drop_partial();
            self.entries.push_back(Entry::TooLong);
            return;
        }
        self.buf.extend_from_slice(tail);
        self.partial = 0;
        self.entries.push_back(Entry::Line(len));
    }

    fn extend_partial(&mut self, data: &[u8]) {
        if self.discarding {
            return;
        }
        // One byte of slack for a `\r` that may still be followed by `\n`.
        if self.partial + data.len() > self.max_line_bytes + 1 {
            self.drop_partial();
            self.discarding = true;
            self.entries.push_back(Entry::TooLong);
            return;
        }
        self.buf.extend_from_slice(data);
        self.partial += data.len();
    }

    fn drop_partial(&mut self) {
        let keep = self.buf.len() - self.partial;
        self.buf[keep..].fill(0);
        self.buf.truncate(keep);
        self.partial = 0;
    }

    /// All complete lines are consumed: move the partial line to the front, wiping what it
    /// leaves behind, and give memory back when nothing is held.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.partial == 0 {
            self.buf = Vec::new();
        } else {
            let old_len = self.buf.len();
            self.buf.copy_within(self.start.., 0);
            self.buf[self.partial..old_len].fill(0);
            self.buf.truncate(self.partial);
        }
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// The specification the framer must match: split the whole input at once.
    fn reference_frames(max: usize, input: &[u8]) -> Vec<Seen> {
        let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        let last = parts.pop().unwrap_or_default();
        let mut out: Vec<Seen> = parts
            .into_iter()
            .map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() > max {
                    Seen::TooLong
                } else {
                    Seen::Line(line.to_vec())
                }
            })
            .collect();
        // An unfinished line already longer than the limit is reported when it is known.
        if last.len() > max + 1 {
            out.push(Seen::TooLong);
        }
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
    }

    #[test]
    fn consumed_lines_are_wiped_from_the_buffer() {
        let mut framer = LineFramer::new(64);
        framer.push(b"secret-password\nrest");
        let mut line = Vec::new();
        framer.next_frame(&mut line);
        assert_eq!(line, b"secret-password");
        assert!(!framer.buf.windows(6).any(|w| w == b"secret"));
        assert_eq!(&framer.buf[..], b"rest");
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_frames_as_the_whole_input(
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..12),
            max in 0usize..24,
            drain_between in any::<bool>(),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for cut in cuts {
                chunks.push(&input[from..cut]);
                from = cut;
            }
            chunks.push(&input[from..]);
            let split = frames_of_chunks(max, &chunks, drain_between);
            let whole = frames_of_chunks(max, &[&input], false);
            prop_assert_eq!(&split, &whole);
            prop_assert_eq!(whole, reference_frames(max, &input));
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
