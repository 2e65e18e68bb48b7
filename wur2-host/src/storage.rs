//! What the driver needs from storage: run a [`StoreRequest`] off the engine's loop, and
//! make every accepted append durable before the server stops. `wur2_store::Store` (SQLite,
//! PostgreSQL) implements it.
//!
//! The driver never blocks on storage: each request runs in its own task of the driver's runtime and its reply
//! goes back into the engine when it arrives, so a slow database delays only the users
//! waiting for it.

use std::future::Future;

use wur2_engine::{StoreReply, StoreRequest};

/// A store the driver can run engine requests against.
///
/// `wur2_store::Store` implements it; an embedder may bring another (an in-memory store
/// for tests, a proxy to a remote service).
pub trait Storage: Send + Sync + 'static {
    /// Starts `request` and returns a future that resolves to its reply.
    ///
    /// The driver calls this in the order the engine emitted the requests, then awaits the
    /// futures concurrently in separate tasks. Requests whose order matters (appends) must
    /// therefore be ordered by this call itself, not by when the future is first polled.
    fn execute(&self, request: StoreRequest) -> impl Future<Output = StoreReply> + Send + 'static;

    /// The server is done with the store: resolves once every append accepted so far is
    /// written (or given up on). Called once, at the end of a graceful shutdown, after the
    /// last request was started; the driver bounds how long it waits.
    fn close(&self) -> impl Future<Output = ()> + Send;
}
