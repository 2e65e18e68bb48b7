//! `LineFramer` fed one input in arbitrary chunks, checked against the engine's reference
//! model (`wur2_engine::framer_model`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wur2_fuzz::framer::check;

fuzz_target!(|data: &[u8]| check(data));
