//! # wur2-host
//!
//! The one driver of [`wur2_engine::Engine`], written once over a small [`Runtime`] trait:
//! the accept loops (plain, TLS, and web: the embedded web client and a WebSocket that
//! speaks JSON lines), the engine's loop, and the connection task, generic over the
//! client's [`Transport`]. A runtime crate (`wur2-tokio`, `wur2-async-std`)
//! implements the two traits in about a hundred lines and calls [`serve_with`]; everything
//! else is here: the server's [`Options`], the clocks the engine is given, what the driver
//! needs from its store ([`Storage`]), TLS certificates ([`TlsAcceptor`]), server-side
//! files opened only inside their directory, the per-connection bookkeeping of the
//! engine's outputs, the [`ServerStatus`] that metrics and health checks read, and the
//! cluster [`bus`] a driver's transport (NATS in the `wur2` binary) attaches with
//! [`serve_with_bus`].
//!
//! It names no async runtime and no database: tasks, timers and sockets come from the
//! [`Runtime`]; its channels are Tokio's `sync` primitives, which need no Tokio runtime.
//!
//! ## Shape
//!
//! - One task owns the engine and loops: connection events, store replies, file results,
//!   the engine's next timeout and the shutdown signal go in; each batch of inputs is
//!   followed by a full drain of the engine's outputs.
//! - One task per client reads (a stack buffer, never a buffer held while idle) and writes
//!   everything the engine queued for it with vectored writes, reporting written bytes
//!   back so the engine can drop slow readers.
//! - Each store request runs in its own task; a slow database delays only those who wait
//!   for its answer. Server-side file I/O runs on the runtime's blocking pool.

// One audited `unsafe` call: `malloc_trim` in `memory`.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod account_changes;
mod bus;
mod clock;
mod connection;
mod connections;
mod descriptors;
mod driver;
mod engine_host;
mod files;
mod memory;
#[cfg(feature = "metrics")]
pub mod metrics;
mod options;
mod runtime;
mod server;
mod status;
mod storage;
#[cfg(test)]
mod test_runtime;
mod tls;
mod web;

pub use account_changes::ACCOUNT_CHANGES_POLL;
pub use bus::{
    BUS_QUEUE_BYTES, BUS_QUEUE_MESSAGES, BusInbox, BusLink, BusPort, BusStatus, Publication,
    ServerStopped, bus,
};
pub use clock::{message_id_origin, wall_clock_now};
pub use connections::{
    AddressCounts, Closing, ConnectionEvent, Connections, Framing, INPUT_BUDGET,
    LINGER_DISCARD_LIMIT, LINGER_TIME, Link, MAX_IOVECS, READ_AHEAD, READ_CHUNK, consume,
    input_budget,
};
pub use engine_host::{Arrived, EngineHost, Work};
pub use files::{FileEvent, FileJob, Files, open_inside, read_up_to};
pub use options::{Options, prepare};
pub use runtime::{Runtime, Transport};
pub use server::{
    HANDSHAKE_TIMEOUT, MAX_HANDSHAKES, ServeError, ServerHandle, serve_with, serve_with_bus,
};
pub use status::ServerStatus;
pub use storage::{AccountChanges, Storage};
pub use tls::{TlsAcceptor, TlsError};
pub use web::{MAX_REQUEST_HEAD, UPLOAD_FRAME_MAX, WEBSOCKET_PATH, WebOptions, WebSocket};

use std::path::PathBuf;

/// Bytes a [`Runtime::Stream`] may take at most: the connection task holds its stream
/// while idle, and is tested to stay small with a stream of this size.
pub const STREAM_BUDGET: usize = 48;

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
