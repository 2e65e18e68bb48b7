//! # wur2-engine
//!
//! The chat engine of WUR2 as a synchronous, I/O-free state machine ("sans-IO"). It holds
//! every piece of chat state (sessions, accounts online, channels, roles, file transfers,
//! rate limits) and implements every chat behaviour, but owns no socket, file, database,
//! clock, thread or random source: the caller (a *driver*) pushes bytes, store replies and
//! time in, and pulls bytes to write, connections to close and store requests out. It runs
//! the same under Tokio, async-std, plain threads, a game loop or a test with a virtual
//! clock.
//!
//! This page is the engine's contract, in one place. The wire protocol the engine speaks
//! to clients is specified in the repository's `docs/PROTOCOL.md`.
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
//!             engine.handle_written(connection, data.len(), start);
//!             written.extend_from_slice(&data);
//!         }
//!         Output::Store { id, request } => {
//!             let reply = match *request {
//!                 StoreRequest::Register { username, .. } => {
//!                     StoreReply::Account { username, role: Role::User, mute: None }
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
//!                 engine.handle_written(connection, data.len(), start);
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
//! Complete programs, each run by the workspace's test script:
//!
//! - `examples/blocking_server.rs`: a TCP chat server on `std::net` and threads, in about
//!   200 lines, with the engine's in-memory store (`wur2_engine::memory_store`, feature
//!   `memory-store`). The engine needs no async runtime.
//! - `examples/bot.rs`: a bot that logs in, joins a channel and answers messages
//!   in-process, with no socket.
//! - `wur2-tokio`'s `examples/embed_tokio.rs`: the Tokio driver embedded in an existing
//!   Tokio application next to other services.
//!
//! The crates around the engine, in the same repository: `wur2-store` answers every
//! [`StoreRequest`] with SQLite or PostgreSQL, and `wur2-tokio` is a complete driver (and
//! the `wur2` server).
//!
//! ## What goes in
//!
//! | input | when the caller calls it |
//! |---|---|
//! | [`Engine::handle_connect`] | a client connected; returns the [`ConnectionId`] to use for it from now on |
//! | [`Engine::handle_received`] | bytes arrived from a connection (any split of the stream gives the same result) |
//! | [`Engine::handle_written`] | bytes of a [`Output::Transmit`] or [`Output::Broadcast`] reached the connection's socket |
//! | [`Engine::handle_peer_closed`] | the peer closed the connection, or reading or writing failed |
//! | [`Engine::handle_store_reply`] | a [`StoreRequest`] finished; pass its [`RequestId`] and [`StoreReply`] |
//! | [`Engine::handle_file_opened`], [`Engine::handle_file_data`], [`Engine::handle_file_failed`] | a server-side file was opened or read, or could not be |
//! | [`Engine::handle_timeout`] | the instant from [`Engine::poll_timeout`] has come |
//! | [`Engine::handle_account_changed`] | the store reported an account changed outside the engine (a role set, an account purged, a ban or mute set or lifted, from the operator's shell or another node): its live sessions follow |
//! | [`Engine::handle_shutdown`] | the server is stopping: everyone is told and closed, and every connection after it is refused |
//! | [`Engine::handle_bus_connected`], [`Engine::handle_bus_disconnected`], [`Engine::handle_published`] | cluster mode ([`Config::cluster`]) only: the link to the other nodes is up or lost, and a payload came from one of them |
//!
//! Every input takes `now`, a monotonic [`Instant`](std::time::Instant) from the caller's
//! clock: any input may emit lines (a peer's close tells its channel, a write lets a
//! stalled upload go on), and every line an input emits is stamped with that input's `now`.
//! The engine never reads a clock; wall-clock timestamps in JSON mode come from
//! [`Config::wall_clock`], and message ids from [`Config::message_id_origin`], both chosen
//! by the caller.
//!
//! ## What comes out
//!
//! [`Engine::poll_output`] yields one [`Output`] at a time, in the order the driver must act
//! on them:
//!
//! | output | what the driver does |
//! |---|---|
//! | [`Output::Transmit`] | write the bytes to the connection, after everything before; report them with `handle_written` |
//! | [`Output::Broadcast`] | the same for each recipient; the bytes are one shared [`bytes::Bytes`] buffer, so fan-out to N members costs N reference-count bumps |
//! | [`Output::Close`] | close the connection, after writing what is queued when `flush` is `true`; the engine has already forgotten it, so later events for it are ignored and no `handle_peer_closed` is needed (its [slot](ConnectionId::slot) stays unused until this drain ends) |
//! | [`Output::PauseReading`], [`Output::ResumeReading`] | stop and restart reading from a connection (backpressure) |
//! | [`Output::Store`] | run the request (anything slow off the engine's thread, so nobody else waits) and answer with `handle_store_reply` and the same id; what answers which request is listed on each [`StoreRequest`] variant |
//! | [`Output::OpenFile`], [`Output::ReadFile`], [`Output::CloseFile`] | open, read and close a server-side file inside the operator's files directory (only when [`Config::server_files`] is on) |
//! | [`Output::Publish`] | cluster mode only: carry the payload to the other nodes on its [`Topic`], in order, to their `handle_published` |
//!
//! [`Engine::poll_timeout`] says when the engine next wants [`Engine::handle_timeout`]
//! (login deadlines, flood-control waits, idle file transfers, the cluster heartbeat); `None`
//! means no timer is set. Check it after
//! every input: an input may set an earlier timer.
//!
//! ## The drain-until-empty rule
//!
//! After **every** `handle_*` call, call [`Engine::poll_output`] until it returns `None`,
//! and act on the outputs in the order they came. Outputs are queued inside the engine
//! until drained; draining late delays users, and never draining grows that queue without
//! bound. Several inputs may be batched before one drain (the Tokio driver does this), as
//! long as the drain follows before the driver waits for anything else. Handling an output
//! may itself produce inputs (a store that answers at once, a write that completes at
//! once): feed them in and keep draining; the loop ends when `poll_output` returns `None`.
//!
//! The end of a drain is also when the [slots](ConnectionId::slot) of connections that
//! ended (by an [`Output::Close`] or [`Engine::handle_peer_closed`]) become free: a
//! connection accepted before that drain never gets the slot of one whose `Close` the
//! driver has not seen, so a driver that keys its own table by slot needs no second table
//! for connections on their way out.
//!
//! ## What a caller must never do
//!
//! - Never reorder writes to one connection, or drop a `Transmit`/`Broadcast` for a
//!   connection that is still open: clients parse a stream.
//! - Never keep reading from a connection after [`Output::PauseReading`] until
//!   [`Output::ResumeReading`]: the engine holds that connection's unprocessed lines, and a
//!   client that pushes past [`Config::max_held_input_bytes`] is closed for flooding.
//! - Never skip [`Engine::handle_written`]: the engine counts unwritten bytes per connection
//!   and closes a connection whose count passes [`Config::max_queued_bytes`] as a slow
//!   reader. Report bytes only once they left (or were handed to) the socket.
//! - Never leave a [`Output::Store`] unanswered (the user waiting for it waits for ever;
//!   answer with [`StoreError::Unavailable`] when the store gave up), and never answer one
//!   twice or with another request's id (a second answer is ignored; a reply of the wrong
//!   kind counts as a store failure and is logged). Run appends in the order they were
//!   emitted.
//! - Never let `now` go backwards: use a monotonic clock (an earlier `now` is treated as
//!   "no time has passed", never a panic, but timers then fire late).
//! - Never log, print or persist a [`Password`] except to hash or verify it; its `Debug`
//!   hides it and it is wiped on drop.
//! - Never serve a server-side file without checking, after resolving symlinks, that it is a
//!   regular file inside the configured directory: the engine has refused `..`, absolute
//!   paths and control characters ([`check_relative_path`]), but cannot see the file system.
//!
//! ## Which inputs can fail, and how
//!
//! No `handle_*` method returns an error and none panics, whatever the bytes, the replies
//! or the order:
//!
//! - **Client input** (bad UTF-8, over-long lines, unknown commands, wrong arguments,
//!   floods, slow logins) is the client's fault: it gets an error line carrying an
//!   [`ErrorCode`], and the connection stays open unless a limit says it must close
//!   (then an [`Output::Close`] with its [`CloseReason`] follows).
//! - **A connection over a limit** ([`Config::max_connections`],
//!   [`Config::max_connections_per_address`], or after [`Engine::handle_shutdown`]):
//!   `handle_connect` still returns an id, and the outputs tell that client why and close it.
//!   The engine is the one place that decides this: a driver hands every accepted client
//!   to `handle_connect`, even while shutting down, and carries out the outputs.
//! - **Store failures** arrive as [`StoreReply::Failed`] with a [`StoreError`]: the user who
//!   waited gets an error line (`busy`, `storage_unavailable`, `username_taken`, …), the
//!   failure is logged with `tracing`, and the engine carries on.
//! - **File failures** ([`Engine::handle_file_opened`] with `Err`,
//!   [`Engine::handle_file_failed`], or a short read) cancel that transfer and tell both
//!   users; nothing else is affected.
//! - **Late or unknown ids** (a reply for a connection that has closed, data for a
//!   connection or transfer that has ended) are ignored. Ids are never reused by one
//!   engine, so a late event can never hit the wrong client.
//!
//! ## Determinism
//!
//! Given the same [`Config`] and the same inputs in the same order (with the same `now`
//! values), the engine produces the same outputs, byte for byte, and hands out the same
//! ids. It reads no clock and no randomness, and never lets the iteration order of a
//! randomly seeded map decide what it emits. Tests can therefore run hundreds of simulated
//! clients against a fake store and a virtual clock, and replay any failure from its seed.
//!
//! ## Stability
//!
//! - **Wire format.** The text lines documented in `docs/PROTOCOL.md` are stable: scripts
//!   may parse them. In JSON-lines mode (`/mode json`) every `type` and field listed there
//!   is stable; new types and new fields may be added, so clients must ignore what they do
//!   not know. [`ErrorCode`] strings are stable; the human text after `Error: ` is not.
//! - **`ErrorCode`** is `#[non_exhaustive]`: new codes may come in any release, so match it
//!   with a wildcard arm.
//! - **`Output`** and **`StoreRequest`** are deliberately *exhaustive*: a driver or store
//!   that silently ignored a new kind of output or request would lose messages or hang
//!   users, so a new variant is a breaking change that the compiler points out. Until 1.0
//!   such a change comes with a minor version bump (0.1 → 0.2) and a `CHANGELOG.md` entry;
//!   patch releases never add variants. A driver that matches every variant (rather than
//!   using `_`) is guaranteed to act on every output.
//! - **The Rust API** follows semver with the 0.x convention: breaking changes bump the
//!   minor version. The minimum supported Rust version is 1.88; raising it is a minor
//!   change too.
//!
//! ## Cargo features
//!
//! Two, both off by default and both for testing rather than serving:
//!
//! - `memory-store`: `memory_store::MemoryStore`, an in-memory store that answers every
//!   [`StoreRequest`], with knobs for delay (requests held until released, in any order)
//!   and failure. It reads no clock: messages are stamped from a clock the caller sets.
//! - `framer-model`: `framer_model`, the line framer's reference model and a check that
//!   runs [`LineFramer`] beside it (for property tests and fuzzing).
//!
//! The engine's dependencies are `bytes` (shared output buffers), `thiserror`, `tracing`
//! (logs of closes and store failures; silent unless the program installs a subscriber),
//! `base64-simd` (file chunks in JSON mode) and `serde` with `serde_json`: JSON-lines mode
//! is rendered from the typed schema in [`json`], which a client deserialises with the
//! same types, so they are not optional (the derive adds one proc-macro crate next to
//! `thiserror`'s). Engine inputs and outputs have no serde derives: drivers and stores run
//! in the same process as the engine, and the types that would need them to cross a
//! process boundary ([`StoreRequest`] carries a [`Password`]) deserve a deliberate format
//! rather than a derived one.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod address;
mod cluster;
mod command;
mod config;
mod engine;
mod file;
mod flood;
mod framer;
#[cfg(any(test, feature = "framer-model"))]
pub mod framer_model;
mod ids;
pub mod json;
mod login_guard;
#[cfg(feature = "memory-store")]
pub mod memory_store;
mod names;
mod output;
mod registration_limit;
mod sanction;
mod sanitize;
mod stats;
mod store;
mod wire;

pub use address::address_key;
pub use cluster::{CLUSTER_PROTOCOL_VERSION, ClusterConfig, Topic};
pub use command::{Command, ParseError, parse_command};
pub use config::{Config, RESERVED_USERNAMES, WallClock};
pub use engine::Engine;
pub use file::{
    FileError, MAX_FILE_NAME_BYTES, MAX_FILE_PATH_BYTES, PathProblem, check_relative_path,
    is_valid_file_name,
};
pub use framer::{Frame, LineFramer};
pub use ids::{ConnectionId, InvalidMessageId, MessageId, RequestId, TransferId};
pub use names::{channel_key, is_valid_channel_name, is_valid_username, username_key};
pub use output::{CloseReason, Output};
pub use sanction::{
    DurationError, Expiry, MAX_SANCTION_DURATION, Sanction, SanctionKind, format_duration,
    parse_duration,
};
pub use sanitize::sanitize_text;
pub use stats::Stats;
pub use store::{
    AccountChange, ChannelMessage, Password, PendingMessage, PrivateMessage, Role, StoreError,
    StoreReply, StoreRequest, StoredChannel, StoredMessage, UnknownRole,
};
pub use wire::{ErrorCode, Mode};
