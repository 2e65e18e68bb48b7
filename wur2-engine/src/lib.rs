//! # wur2-engine
//!
//! The chat engine of WUR2 as a synchronous, I/O-free state machine ("sans-IO"). It holds
//! every piece of chat state (sessions, accounts online, channels, roles, rate limits) and
//! implements every chat behaviour, but owns no socket, file, database, clock, thread or
//! random source: the caller (a *driver*) pushes bytes, store replies and time in, and
//! pulls bytes to write, connections to close and store requests out.
//!
//! ## The drive loop
//!
//! Inputs are the `handle_*` methods; outputs come from [`Engine::poll_output`], which the
//! caller drains **until it returns `None`** after every input, and
//! [`Engine::poll_timeout`], the instant at which to call [`Engine::handle_timeout`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wur2_engine::{Config, Engine, Output, StoreReply, StoreRequest, Role};
//!
//! let mut engine = Engine::new(Config::default());
//! let start = Instant::now();
//! let alice = engine.handle_connect("127.0.0.1:50000".parse().unwrap(), start);
//! engine.handle_received(alice, b"/register alice secret-pw\n", start);
//!
//! let mut written = Vec::new();
//! // Drain outputs until none are left; answer store requests as a store would.
//! loop {
//!     let Some(output) = engine.poll_output() else { break };
//!     match output {
//!         Output::Transmit { connection, data } => {
//!             // A real driver writes `data` to the socket, then reports what it wrote.
//!             engine.handle_written(connection, data.len());
//!             written.extend_from_slice(&data);
//!         }
//!         Output::Store { id, request } => {
//!             let reply = match *request {
//!                 StoreRequest::Register { username, .. } => {
//!                     StoreReply::Account { username, role: Role::User }
//!                 }
//!                 StoreRequest::FetchHistory { .. } => StoreReply::History(Vec::new()),
//!                 StoreRequest::FetchPending { .. } => StoreReply::Pending(Vec::new()),
//!                 _ => StoreReply::Done,
//!             };
//!             // A real driver runs the request concurrently and answers later.
//!             engine.handle_store_reply(id, reply, start);
//!         }
//!         Output::Broadcast { recipients, data } => {
//!             for connection in recipients {
//!                 engine.handle_written(connection, data.len());
//!             }
//!         }
//!         // Closing, backpressure and server-side files (see `Output`).
//!         _ => {}
//!     }
//! }
//! assert!(String::from_utf8_lossy(&written).contains("Welcome alice!"));
//!
//! // Time only moves when the caller says so.
//! if let Some(deadline) = engine.poll_timeout() {
//!     engine.handle_timeout(deadline.max(start + Duration::from_millis(1)));
//! }
//! ```
//!
//! ## Rules for callers
//!
//! - Drain `poll_output` after every `handle_*` call; act on outputs in order.
//! - Never call `Instant::now()` on the engine's behalf in tests: pass the time you mean.
//! - After [`Output::Close`] the engine has forgotten the connection; events for it are
//!   ignored. Report a peer's close with [`Engine::handle_peer_closed`].
//! - Answer every [`Output::Store`] exactly once (a late answer for a forgotten
//!   connection is fine and ignored).
//! - No input can make the engine panic; a bad line from a client is an error line to that
//!   client.
//!
//! Same inputs in the same order give the same outputs: the engine reads no clock and no
//! randomness, and never lets the iteration order of a randomly seeded map decide what it
//! emits.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod command;
mod config;
mod engine;
mod file;
mod flood;
mod framer;
mod ids;
mod login_guard;
mod names;
mod output;
mod sanitize;
mod store;
mod wire;

pub use command::{Command, ParseError, parse_command};
pub use config::{Config, WallClock};
pub use engine::Engine;
pub use file::{
    FileError, MAX_FILE_NAME_BYTES, MAX_FILE_PATH_BYTES, PathProblem, check_relative_path,
    is_valid_file_name,
};
pub use framer::{Frame, LineFramer};
pub use ids::{ConnectionId, InvalidMessageId, MessageId, RequestId, TransferId};
pub use names::{channel_key, is_valid_channel_name, is_valid_username, username_key};
pub use output::{CloseReason, Output};
pub use sanitize::sanitize_text;
pub use store::{
    ChannelMessage, Password, PendingMessage, PrivateMessage, Role, StoreError, StoreReply,
    StoreRequest, StoredMessage, UnknownRole,
};
pub use wire::{ErrorCode, Mode};
