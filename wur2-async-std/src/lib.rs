//! # wur2-async-std
//!
//! The async-std driver of the WUR2 chat engine: it owns the sockets, the clock and the
//! tasks, and [`wur2_engine::Engine`] owns every chat decision. It serves exactly what the
//! Tokio driver (`wur2-tokio`) serves, with the same limits, TLS, metrics and graceful
//! shutdown: the server is written once in `wur2-host` over its `Runtime` trait, and this
//! crate is async-std's [`Runtime`](wur2_host::Runtime) ([`AsyncStd`]) and the public API.
//!
//! async-std is deprecated upstream in favour of smol; this crate pins its last release,
//! which still builds and works (see the README).
//!
//! With the `metrics` feature (off by default), `metrics::serve::<AsyncStd, _>` serves
//! Prometheus metrics and `/healthz` over HTTP on async-std sockets.
//!
//! ## Embedding
//!
//! ```no_run
//! # async fn example(store: impl wur2_async_std::Storage) -> Result<(), wur2_async_std::Error> {
//! let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = wur2_async_std::serve(listener, store, wur2_engine::Config::default())?;
//! println!("listening on {}", server.local_addr());
//! // ... later: tell everyone, write what is queued, flush the store, stop.
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod runtime;

use async_std::net::TcpListener;
use wur2_engine::Config;

pub use runtime::{AsyncStd, AsyncStdStream};
/// Prometheus metrics and `/healthz` over HTTP (`metrics` feature): serve them on
/// async-std with `metrics::serve::<AsyncStd, _>(listener, metrics, server.status(), store)`.
#[cfg(feature = "metrics")]
pub use wur2_host::metrics;
pub use wur2_host::{
    Options, ServeError as Error, ServerStatus, Storage, TlsAcceptor, TlsError, WEBSOCKET_PATH,
    WebOptions,
};

/// A running server on async-std. Dropping it leaves the server running (detached); call
/// [`ServerHandle::shutdown`](wur2_host::ServerHandle::shutdown) to stop it, and
/// [`serve_tls`](wur2_host::ServerHandle::serve_tls) to add a TLS listener,
/// [`serve_web`](wur2_host::ServerHandle::serve_web) to add the web client and its
/// WebSocket.
pub type ServerHandle = wur2_host::ServerHandle<AsyncStd>;

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
/// server runs in async-std tasks until
/// [`ServerHandle::shutdown`](wur2_host::ServerHandle::shutdown).
pub fn serve_with<S: Storage>(
    listener: TcpListener,
    store: S,
    config: Config,
    options: Options,
) -> Result<ServerHandle, Error> {
    wur2_host::serve_with::<AsyncStd, S>(listener, store, config, options)
}
