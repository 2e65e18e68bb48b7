//! The line framer fed one input in arbitrary chunks, checked against the engine's
//! reference model (`wur2_engine::framer_model`, shared with the engine's property tests).

use wur2_engine::framer_model::{self, Chunked, Step};

/// Reads a case laid out for the fuzzer (the input stays contiguous, so its mutations act
/// on lines directly): the line limit, the number of cuts (up to 15), one length byte per
/// cut, one step byte per cut (low two bits: nothing, all frames, one frame, raw bytes; the
/// other six bits times 8: how many raw bytes), then the input.
pub fn chunked(data: &[u8]) -> Chunked<'_> {
    let (&max, rest) = data.split_first().unwrap_or((&0, &[]));
    let (&count, rest) = rest.split_first().unwrap_or((&0, &[]));
    let count = usize::from(count % 16);
    let (cuts, rest) = rest.split_at(count.min(rest.len()));
    let (steps, input) = rest.split_at(count.min(rest.len()));
    let steps = steps
        .iter()
        .map(|&b| match b & 3 {
            0 => Step::Nothing,
            1 => Step::AllFrames,
            2 => Step::OneFrame,
            _ => Step::Raw(usize::from(b >> 2) * 8),
        })
        .collect();
    Chunked {
        max_line_bytes: usize::from(max),
        cuts: cuts.iter().map(|&c| usize::from(c) * 4).collect(),
        steps,
        input,
    }
}

/// Checks one fuzzer input; panics at the first broken promise.
pub fn check(data: &[u8]) {
    framer_model::check(&chunked(data));
}
