//! `LineFramer` fed one input in arbitrary chunks: same frames as the whole input at once,
//! no line over the limit, bounded memory once drained.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wur2_fuzz::framer::{Chunked, check};

fuzz_target!(|data: &[u8]| check(&Chunked::from_bytes(data)));
