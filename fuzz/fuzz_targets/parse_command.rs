//! `parse_command` on arbitrary bytes: never panics; what parses re-parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wur2_fuzz::parse_command::check(data));
