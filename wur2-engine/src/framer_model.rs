//! The line framer's contract written plainly, as a reference model, and a check that
//! drives a [`LineFramer`] and the model side by side (feature `framer-model`). The
//! engine's property tests and the `framer` fuzz target both run [`check`], so there is
//! one model of what framing means.
//!
//! The check feeds one input in chunks, taking lines and raw bytes (an upload's contents)
//! between pushes, and panics at the first disagreement: frames, raw takes,
//! `pending_frames`, `lines_until` and `buffered_bytes` match the model at every step; when
//! only lines are taken, the frames are those of splitting the whole input at `\n`, however
//! it was chunked; no line is over the limit; at most limit + 1 bytes stay held once drained.

use std::collections::VecDeque;

use crate::framer::{Frame, LineFramer};

/// One input, its line limit, and how to cut it into pushes.
#[derive(Debug, Clone)]
pub struct Chunked<'a> {
    /// The line limit (small, so that over-long lines are common).
    pub max_line_bytes: usize,
    /// Lengths of the successive pushes; what remains is pushed last.
    pub cuts: Vec<usize>,
    /// What to do after each push (one per cut): see [`Step`].
    pub steps: Vec<Step>,
    /// The bytes, as a client would send them.
    pub input: &'a [u8],
}

/// What the caller takes from the framer after a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing (lines pile up).
    Nothing,
    /// Every frame there is.
    AllFrames,
    /// One frame.
    OneFrame,
    /// Up to this many raw bytes, as for an upload.
    Raw(usize),
}

/// One frame (or raw take) as the caller sees it.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Seen {
    Line(Vec<u8>),
    TooLong,
    Raw(Vec<u8>),
}

/// The framer's contract written plainly: a queue of unconsumed bytes, lines split off when
/// asked for, a partial line over the limit (plus one byte for a `\r`) dropped up to its end.
struct Reference {
    max: usize,
    bytes: VecDeque<u8>,
    /// `\n` bytes in `bytes`, kept up to date rather than counted at every step.
    newlines: usize,
    discarding: bool,
}

impl Reference {
    fn push(&mut self, mut data: &[u8]) {
        if self.discarding {
            match data.iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    self.discarding = false;
                    data = &data[newline + 1..];
                }
                None => return,
            }
        }
        self.newlines += data.iter().filter(|&&b| b == b'\n').count();
        self.bytes.extend(data);
    }

    fn next_frame(&mut self) -> Option<Seen> {
        match self.bytes.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                let mut line: Vec<u8> = self.bytes.drain(..=newline).collect();
                self.newlines -= 1;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                Some(if line.len() > self.max {
                    Seen::TooLong
                } else {
                    Seen::Line(line)
                })
            }
            None if self.bytes.len() > self.max + 1 => {
                self.bytes.clear();
                self.discarding = true;
                Some(Seen::TooLong)
            }
            None => None,
        }
    }

    fn take_raw(&mut self, max: usize) -> Seen {
        let n = max.min(self.bytes.len());
        let taken: Vec<u8> = self.bytes.drain(..n).collect();
        self.newlines -= taken.iter().filter(|&&b| b == b'\n').count();
        Seen::Raw(taken)
    }

    /// Complete lines up to and including the first that starts an upload.
    fn lines_until_upload(&mut self) -> usize {
        let mut lines = self.bytes.make_contiguous().split(|&b| b == b'\n');
        lines.next_back();
        let mut count = 0;
        for line in lines {
            count += 1;
            if starts_upload(line.strip_suffix(b"\r").unwrap_or(line)) {
                break;
            }
        }
        count
    }
}

fn starts_upload(line: &[u8]) -> bool {
    line.starts_with(b"/send ")
}

/// The framer and the reference side by side.
struct Pair {
    framer: LineFramer,
    reference: Reference,
    seen: Vec<Seen>,
}

impl Pair {
    fn new(max: usize) -> Self {
        Pair {
            framer: LineFramer::new(max),
            reference: Reference {
                max,
                bytes: VecDeque::new(),
                newlines: 0,
                discarding: false,
            },
            seen: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8]) {
        self.framer.push(data);
        self.reference.push(data);
        self.compare_counts();
        self.compare_lines_until();
    }

    /// Takes one frame from both; whether there was one.
    fn one_frame(&mut self) -> bool {
        let max = self.reference.max;
        let mut line = vec![0xAA; 3];
        let got = self.framer.next_frame(&mut line).map(|frame| match frame {
            Frame::Line => {
                assert!(
                    line.len() <= max,
                    "a line of {} bytes came out of a framer limited to {max}",
                    line.len()
                );
                Seen::Line(line)
            }
            Frame::TooLong => Seen::TooLong,
        });
        let expected = self.reference.next_frame();
        assert_eq!(got, expected, "the framer and its reference disagree");
        self.compare_counts();
        match got {
            Some(seen) => {
                self.seen.push(seen);
                true
            }
            None => false,
        }
    }

    fn all_frames(&mut self) {
        while self.one_frame() {}
        assert_eq!(
            self.framer.pending_frames(),
            0,
            "frames left after draining"
        );
        let max = self.reference.max;
        assert!(
            self.framer.buffered_bytes() <= max + 1,
            "{} bytes held after draining, limit {max} + 1 for a trailing \\r",
            self.framer.buffered_bytes()
        );
    }

    fn raw(&mut self, max: usize) {
        let got = Seen::Raw(self.framer.peek(max).to_vec());
        let n = self.framer.skip(max);
        let expected = self.reference.take_raw(max);
        assert_eq!(got, expected, "raw bytes differ from the reference");
        if let Seen::Raw(bytes) = &got {
            assert_eq!(n, bytes.len(), "skip miscounts");
        }
        self.compare_counts();
        self.compare_lines_until();
        self.seen.push(got);
    }

    fn compare_counts(&self) {
        assert_eq!(
            self.framer.buffered_bytes(),
            self.reference.bytes.len(),
            "buffered bytes differ from the reference"
        );
        assert_eq!(
            self.framer.pending_frames(),
            self.reference.newlines,
            "complete lines differ from the reference"
        );
    }

    /// After pushes and raw takes only: both sides scan every held line.
    fn compare_lines_until(&mut self) {
        assert_eq!(
            self.framer.lines_until(starts_upload),
            self.reference.lines_until_upload(),
            "lines up to an upload differ from the reference"
        );
    }
}

/// What splitting the whole input at `\n` gives, written independently of the framer: every
/// complete line (a `\r` before its `\n` dropped), longer ones as `TooLong`, and one
/// `TooLong` for an unfinished line already too long to ever fit.
fn whole_input(max: usize, input: &[u8]) -> Vec<Seen> {
    let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    let unfinished = parts.pop().unwrap_or_default();
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
    if unfinished.len() > max + 1 {
        out.push(Seen::TooLong);
    }
    out
}

/// Runs one chunked input through the framer and the model.
///
/// # Panics
///
/// When the framer breaks its contract: that is the signal a property test or a fuzzer
/// looks for, and the message says what differed.
pub fn check(chunked: &Chunked<'_>) {
    let max = chunked.max_line_bytes;
    let mut pair = Pair::new(max);
    let mut rest = chunked.input;
    for (&cut, &step) in chunked.cuts.iter().zip(&chunked.steps) {
        let (chunk, after) = rest.split_at(cut.min(rest.len()));
        pair.push(chunk);
        rest = after;
        match step {
            Step::Nothing => {}
            Step::AllFrames => pair.all_frames(),
            Step::OneFrame => {
                pair.one_frame();
            }
            Step::Raw(n) => pair.raw(n),
        }
    }
    pair.push(rest);
    pair.all_frames();

    let took_raw = chunked.steps.iter().any(|s| matches!(s, Step::Raw(_)));
    if !took_raw {
        assert_eq!(
            pair.seen,
            whole_input(max, chunked.input),
            "framing differs from splitting the whole input at \\n"
        );
    }
}
