//! # wur2-tokio
//!
//! The Tokio driver of the WUR2 chat engine: it owns the sockets, the clock and the tasks,
//! and [`wur2_engine::Engine`] owns every chat decision. The `wur2` binary in this crate is
//! the bundled server; this library lets a program embed the same server.
//!
//! ## Shape
//!
//! - One task owns the engine and loops: connection events, store replies, the engine's
//!   next timeout and the shutdown signal go in; each batch of inputs is followed by a
//!   full drain of the engine's outputs.
//! - One task per client socket reads (a small stack buffer, never a buffer held while
//!   idle) and writes everything the engine queued for it with vectored writes, reporting
//!   written bytes back so the engine can drop slow readers.
//! - Each store request runs in its own task; a slow database delays only those who wait
//!   for its answer.
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

mod connection;
mod driver;
pub mod metrics;
pub mod retention;
mod status;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use wur2_engine::{Config, Engine};

pub use status::ServerStatus;
pub use wur2_host::{Options, Storage};

/// Why the server could not start or did not stop cleanly.
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
    /// The engine's task panicked: a bug, reported instead of propagated.
    #[error("the server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
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
/// when `None`, and `server_files` from [`Options::files_dir`]). Returns at once; the server runs in tasks on
/// the current Tokio runtime until [`ServerHandle::shutdown`].
///
/// Must be called from within a Tokio runtime.
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
    let cell = Arc::new(status::StatusCell::default());
    cell.set_accepting(true);
    let (task, intake) = driver::spawn(
        listener,
        store,
        Engine::new(config),
        options,
        shutdown_rx,
        Arc::clone(&cell),
    );
    Ok(ServerHandle {
        local_addr,
        shutdown,
        task,
        status: ServerStatus::new(cell),
        intake,
        tls_listeners: Vec::new(),
    })
}

/// A running server. Dropping it leaves the server running (detached); call
/// [`ServerHandle::shutdown`] to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    status: ServerStatus,
    /// Where TLS listeners hand over their clients; weak, so it never keeps the driver's
    /// event channel open during shutdown.
    intake: mpsc::WeakSender<connection::Event>,
    tls_listeners: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A view of the server for metrics and health checks, readable from any task.
    pub fn status(&self) -> ServerStatus {
        self.status.clone()
    }

    /// Also serves the same chat over TLS on `listener` (bound by the caller, for example
    /// on port 6697 beside the plain one): clients finish the handshake with `acceptor`'s
    /// certificate, then talk to the same engine as plain clients, under the same limits
    /// (per-address limits see their real address). Returns the TLS listener's address.
    pub fn serve_tls(
        &mut self,
        listener: TcpListener,
        acceptor: tls::TlsAcceptor,
    ) -> Result<SocketAddr, Error> {
        let local_addr = listener.local_addr()?;
        self.tls_listeners.push(tokio::spawn(tls::accept_loop(
            listener,
            acceptor,
            self.intake.clone(),
            self.status.cell(),
        )));
        Ok(local_addr)
    }

    /// Stops the server gracefully and waits for it: no new connections, every user is told
    /// the server is going down, queued lines are written, store requests in flight are
    /// answered and pending appends flushed, all within [`Options::shutdown_timeout`].
    pub async fn shutdown(self) -> Result<(), Error> {
        for listener in &self.tls_listeners {
            listener.abort();
        }
        // The driver may have stopped already; then there is nobody to tell.
        let _ = self.shutdown.send(());
        self.task.await?;
        Ok(())
    }
}
