//! What the driver needs from storage: run a [`StoreRequest`] off the engine's loop, make
//! every accepted append durable before the server stops, and, when the store records
//! them, tell which accounts were changed outside the server (the operator's shell).
//! `wur2_store::Store` (SQLite, PostgreSQL) implements it.
//!
//! The driver never blocks on storage: each request runs in its own task of the driver's runtime and its reply
//! goes back into the engine when it arrives, so a slow database delays only the users
//! waiting for it.

use std::future::Future;

use wur2_engine::{AccountChange, StoreError, StoreReply, StoreRequest};

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

    /// Account changes recorded after `after` (a role set or an account purged from the
    /// operator's shell), oldest first, and
    /// where to read after next time. `after == None` asks only where the record stands
    /// now: the driver asks that once at start, then every
    /// [`ACCOUNT_CHANGES_POLL`](crate::ACCOUNT_CHANGES_POLL) for what came since, and gives
    /// each change to [`Engine::handle_account_changed`](wur2_engine::Engine::handle_account_changed).
    ///
    /// `None` (what this method does unless a store overrides it): the store records no
    /// changes (an in-memory store, whose only writer is the server itself), and the
    /// driver never asks again.
    fn account_changes(
        &self,
        after: Option<i64>,
    ) -> impl Future<Output = Option<Result<AccountChanges, StoreError>>> + Send + 'static {
        let _ = after;
        std::future::ready(None)
    }
}

/// What [`Storage::account_changes`] read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountChanges {
    /// Where to read after next time (a store's own position, such as a row id).
    pub cursor: i64,
    /// The changes, oldest first: the username (any letter case) and what changed.
    pub changes: Vec<(String, AccountChange)>,
}
