//! # wur2-async-std
//!
//! The async-std driver of the WUR2 chat engine: it owns the sockets, the clock and the
//! tasks, and [`wur2_engine::Engine`] owns every chat decision. It serves exactly what the
//! Tokio driver (`wur2-tokio`) serves, with the same limits and the same graceful shutdown;
//! everything the two share that is not about the runtime lives once in `wur2-host`.
//!
//! async-std is deprecated upstream in favour of smol; this crate pins its last release,
//! which still builds and works (see the README).
//!
//! ## Shape
//!
//! - One task owns the engine and loops: connection events, store replies, the engine's
//!   next timeout and the shutdown signal go in; each batch of inputs is followed by a
//!   full drain of the engine's outputs.
//! - One task per client socket reads (a stack buffer, never a buffer held while idle) and
//!   writes everything the engine queued for it with vectored writes, reporting written
//!   bytes back so the engine can drop slow readers.
//! - Each store request runs in its own task; server-side file I/O runs on async-std's
//!   blocking pool.
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

mod connection;
mod driver;

use std::net::SocketAddr;
use std::path::PathBuf;

use async_std::net::TcpListener;
use async_std::task::JoinHandle;
use futures::channel::oneshot;
use wur2_engine::{Config, Engine};

pub use wur2_host::{Options, Storage};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener's socket failed (for example it has no local address).
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The files directory cannot be resolved.
    #[error("files directory {}: {source}", path.display())]
    FilesDir {
        /// The directory as given.
        path: PathBuf,
        /// Why it cannot be used.
        source: std::io::Error,
    },
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
/// server runs in async-std tasks until [`ServerHandle::shutdown`].
pub fn serve_with<S: Storage>(
    listener: TcpListener,
    store: S,
    mut config: Config,
    mut options: Options,
) -> Result<ServerHandle, Error> {
    let local_addr = listener.local_addr()?;
    wur2_host::prepare(&mut config, &mut options).map_err(|error| match error {
        wur2_host::PrepareError::FilesDir { path, source } => Error::FilesDir { path, source },
    })?;
    let (shutdown, shutdown_rx) = oneshot::channel();
    let task = driver::spawn(listener, store, Engine::new(config), options, shutdown_rx);
    Ok(ServerHandle {
        local_addr,
        shutdown,
        task,
    })
}

/// A running server. Dropping it leaves the server running (detached); call
/// [`ServerHandle::shutdown`] to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the server gracefully and waits for it: no new connections, every user is told
    /// the server is going down, queued lines are written, store requests in flight are
    /// answered and pending appends flushed, all within [`Options::shutdown_timeout`].
    pub async fn shutdown(self) -> Result<(), Error> {
        // The driver may have stopped already; then there is nobody to tell.
        let _ = self.shutdown.send(());
        self.task.await;
        Ok(())
    }
}
