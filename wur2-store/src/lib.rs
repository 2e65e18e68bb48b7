//! Storage for WUR2: answers every [`StoreRequest`](wur2_engine::StoreRequest) of
//! `wur2-engine` with SQLite (the embedded default) or PostgreSQL through sqlx, and hashes
//! passwords with argon2id on its own threads.
//!
//! It owns the database schema (migrations in this crate's `migrations/`), the password
//! hashing threads and the group commit of message appends. It never runs on a particular
//! async runtime's threads or timers: it works the same under Tokio and async-std, and no
//! async task ever blocks on argon2.
//!
//! # Driving it
//!
//! ```no_run
//! # async fn drive(requests: Vec<wur2_engine::StoreRequest>) -> Result<(), wur2_store::OpenError> {
//! use wur2_store::{Store, StoreConfig};
//!
//! let (store, writer) = Store::open("sqlite://wur2.db", StoreConfig::default()).await?;
//! // The writer stores message appends: spawn it on the runtime that opened the store.
//! let writer = tokio::spawn(writer.run());
//! for request in requests {
//!     // Call `execute` in the engine's order; await the replies in any order.
//!     let reply = store.execute(request);
//!     tokio::spawn(async move {
//!         let _reply = reply.await; // then: engine.handle_store_reply(id, reply, now)
//!     });
//! }
//! store.close().await; // every queued append is written
//! let _ = writer.await;
//! # Ok(()) }
//! ```

mod config;
mod db;
mod deadline;
#[cfg(feature = "host")]
mod host;
mod password;
pub mod retention;
mod store;
mod writer;

pub use config::{PasswordConfig, StoreConfig};
pub use store::{ACCOUNT_CHANGES_BATCH, PRUNE_BATCH, Purged, Store};
pub use writer::AppendWriter;

use wur2_engine::Role;

/// An account as the operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The username as registered.
    pub username: String,
    /// Its role now.
    pub role: Role,
    /// When it was registered, in milliseconds since the Unix epoch.
    pub created_at_unix_ms: i64,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// The database could not be reached or the URL is malformed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// Applying the migrations failed.
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// argon2 refused the configured cost parameters.
    #[error("invalid password hashing parameters: {0}")]
    PasswordParams(String),
    /// The hashing threads could not be started.
    #[error("cannot start the password hashing threads: {0}")]
    Threads(#[source] std::io::Error),
}
