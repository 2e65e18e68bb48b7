//! The whole engine over a fuzzer-chosen sequence of events on several connections, with
//! its invariants checked after every event (see `src/engine.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wur2_fuzz::engine::{Scenario, run};

fuzz_target!(|scenario: Scenario| run(&scenario));
