//! The checks behind the cargo-fuzz targets of `wur2-engine`, one module per target.
//!
//! Each `fuzz_targets/<name>.rs` is a thin `fuzz_target!` over a function here, so the
//! same checks can replay a corpus file in an ordinary test (`cargo test` in this
//! directory) on a stable toolchain. A failed check panics: that is the fuzzer's crash
//! signal, and the message says which invariant broke.

#![forbid(unsafe_code)]

pub mod engine;
pub mod framer;
pub mod parse_command;
pub mod sanitize;
