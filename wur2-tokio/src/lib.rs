//! # wur2-tokio
//!
//! The Tokio driver of the WUR2 chat engine: it owns the sockets, the clock and the tasks,
//! and [`wur2_engine::Engine`] owns every chat decision. The `wur2` binary in this crate is
//! the bundled server; this library lets a program embed the same server.
//!
//! The server itself (accept loops, the engine's loop, connection tasks on plain TCP or
//! TLS) is written once in `wur2-host`, over its `Runtime` trait; this crate is Tokio's
//! [`Runtime`](wur2_host::Runtime) ([`Tokio`], in `runtime.rs`), the server's public API
//! on Tokio, and the `wur2` binary's extras behind features:
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | `metrics` | `metrics`: Prometheus metrics and `/healthz` over HTTP (hyper) | yes |
//! | `cli` | the `wur2` binary: flags, `.env`, logging, operator commands, `wur2 chat`, cluster mode over NATS (`async-nats`) | yes |
//!
//! An embedder who adds this crate with `default-features = false` gets the server, TLS
//! and the cluster bus's two ends ([`serve_with_bus`]) and builds no HTTP server, CLI
//! parser, terminal UI or NATS client.
//!
//! ## Embedding
//!
//! ```no_run
//! # async fn example(store: impl wur2_tokio::Storage) -> Result<(), wur2_tokio::Error> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = wur2_tokio::serve(listener, store, wur2_engine::Config::default())?;
//! println!("listening on {}", server.local_addr());
//! // ... later: tell everyone, write what is queued, flush the store, stop.
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod runtime;

use tokio::net::TcpListener;
use wur2_engine::Config;

pub use runtime::{Tokio, TokioStream};
/// Prometheus metrics and `/healthz` over HTTP (`metrics` feature): serve them on Tokio
/// with `metrics::serve::<Tokio, _>(listener, metrics, server.status(), store)`.
#[cfg(feature = "metrics")]
pub use wur2_host::metrics;
pub use wur2_host::{
    BusInbox, BusLink, BusPort, BusStatus, Options, Publication, ServeError as Error, ServerStatus,
    ServerStopped, Storage, TlsAcceptor, TlsError, WEBSOCKET_PATH, WebOptions, bus,
};

/// A running server on Tokio. Dropping it leaves the server running (detached); call
/// [`ServerHandle::shutdown`](wur2_host::ServerHandle::shutdown) to stop it, and
/// [`serve_tls`](wur2_host::ServerHandle::serve_tls) to add a TLS listener,
/// [`serve_web`](wur2_host::ServerHandle::serve_web) to add the web client and its
/// WebSocket.
pub type ServerHandle = wur2_host::ServerHandle<Tokio>;

/// TLS certificates for [`ServerHandle::serve_tls`](wur2_host::ServerHandle::serve_tls).
pub mod tls {
    pub use wur2_host::{TlsAcceptor, TlsError};
}

/// Runs a chat server on `listener` with default [`Options`]; see [`serve_with`].
pub fn serve<S: Storage>(
    listener: TcpListener,
    store: S,
    config: Config,
) -> Result<ServerHandle, Error> {
    serve_with(listener, store, config, Options::default())
}

/// Runs a chat server on a listener the caller bound, with a store the caller opened and
/// an engine configuration the caller built (its `wall_clock` is set from the system clock
/// when `None`, and `server_files` from [`Options::files_dir`]). Returns at once; the
/// server runs in tasks on the current Tokio runtime until
/// [`ServerHandle::shutdown`](wur2_host::ServerHandle::shutdown).
///
/// Must be called from within a Tokio runtime.
pub fn serve_with<S: Storage>(
    listener: TcpListener,
    store: S,
    config: Config,
    options: Options,
) -> Result<ServerHandle, Error> {
    wur2_host::serve_with::<Tokio, S>(listener, store, config, options)
}

/// Runs one node of a cluster, like [`serve_with`]: `config.cluster` names the node, and
/// the engine's publications leave through `bus` (from [`bus()`]), whose [`BusPort`] the
/// caller's transport serves (the `wur2` binary's is NATS).
///
/// Must be called from within a Tokio runtime.
pub fn serve_with_bus<S: Storage>(
    listener: TcpListener,
    store: S,
    config: Config,
    options: Options,
    bus: BusLink,
) -> Result<ServerHandle, Error> {
    wur2_host::serve_with_bus::<Tokio, S>(listener, store, config, options, bus)
}
