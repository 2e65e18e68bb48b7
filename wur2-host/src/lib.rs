//! # wur2-host
//!
//! What every driver of [`wur2_engine::Engine`] does that has nothing to do with its async
//! runtime, written once: the server's options and the engine [`Config`] they make, the
//! clocks the engine is given, what a driver needs from its store ([`Storage`]), server-side files opened only inside their directory, and
//! the per-connection bookkeeping of the engine's outputs.
//!
//! It never spawns a task, waits on a socket or names an async runtime: a driver (Tokio,
//! async-std) owns those, and calls in here for everything else.

// One audited `unsafe` call: `malloc_trim` in `memory`.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod clock;
mod connections;
mod engine_host;
mod files;
mod memory;
mod options;
mod storage;

pub use clock::{message_id_origin, wall_clock_now};
pub use connections::{
    Closing, ConnectionEvent, Connections, INPUT_BUDGET, LINGER_DISCARD_LIMIT, LINGER_TIME, Link,
    MAX_IOVECS, READ_AHEAD, READ_CHUNK, consume, input_budget,
};
pub use engine_host::{Arrived, EngineHost, Work};
pub use files::{FileEvent, FileJob, Files, open_inside, read_up_to};
pub use options::{Options, ServeArgs, prepare};
pub use storage::Storage;

use std::path::PathBuf;

pub use wur2_engine::Config;

/// Why a server could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The files directory cannot be resolved.
    #[error("files directory {}: {source}", path.display())]
    FilesDir {
        /// The directory as given.
        path: PathBuf,
        /// Why it cannot be used.
        source: std::io::Error,
    },
}
