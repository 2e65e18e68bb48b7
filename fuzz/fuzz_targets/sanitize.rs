//! `sanitize_text` on arbitrary text: idempotent, and no terminal control survives it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wur2_fuzz::sanitize::check(data));
