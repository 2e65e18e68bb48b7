//! What the engine asks its driver to do, drained with [`Engine::poll_output`](crate::Engine::poll_output).

use bytes::Bytes;

use crate::cluster::Topic;
use crate::ids::{ConnectionId, RequestId, TransferId};
use crate::store::StoreRequest;

/// One thing for the driver to do. Drain them with
/// [`Engine::poll_output`](crate::Engine::poll_output) until it returns `None`, after every
/// input, and act on them in order.
///
/// Deliberately not `#[non_exhaustive]`: match every variant, so that a new kind of output
/// is a compile error in your driver rather than something it silently ignores. Adding a
/// variant is a breaking change (see "Stability" in the [crate documentation](crate)).
#[derive(Debug)]
pub enum Output {
    /// Write these bytes to the connection, after everything written to it before.
    ///
    /// A message to many recipients is encoded once: every recipient's `data` shares one
    /// buffer, so cloning it is cheap. Report bytes as they are written with
    /// [`Engine::handle_written`](crate::Engine::handle_written).
    Transmit {
        /// Where to write.
        connection: ConnectionId,
        /// What to write.
        data: Bytes,
    },
    /// Write `data` to every connection in `recipients`: the same as one
    /// [`Output::Transmit`] per recipient, in this order, and one buffer shared by all (a
    /// chat line to a channel of N members is one output, not N). Report written bytes per
    /// connection as for `Transmit`.
    Broadcast {
        /// Where to write; each connection appears once.
        recipients: Vec<ConnectionId>,
        /// What to write to each.
        data: Bytes,
    },
    /// Close the connection. The engine has forgotten it already: later events for it are
    /// ignored, and no more output for it will come. Its slot
    /// ([`ConnectionId::slot`]) goes to no new connection before this drain has ended.
    Close {
        /// Which connection.
        connection: ConnectionId,
        /// Why, for the log.
        reason: CloseReason,
        /// `true`: write what is still queued first (within a short bounded time), then
        /// close. `false`: drop what is queued and close now (the peer is not reading).
        flush: bool,
    },
    /// Stop reading from this connection until [`Output::ResumeReading`] (backpressure:
    /// the engine holds enough unprocessed input from it).
    PauseReading(ConnectionId),
    /// Read from this connection again.
    ResumeReading(ConnectionId),
    /// Open `path`, relative to the files directory the operator configured, for reading,
    /// and answer with [`Engine::handle_file_opened`](crate::Engine::handle_file_opened)
    /// (its size, or why not). The engine has already refused absolute paths, `..` and
    /// control characters; the driver must still refuse whatever resolves outside the
    /// directory (symlinks) or is not a regular file.
    OpenFile {
        /// The transfer the file is for.
        transfer: TransferId,
        /// Relative to the files directory.
        path: String,
    },
    /// Read up to `max` bytes of the open file and pass them to
    /// [`Engine::handle_file_data`](crate::Engine::handle_file_data) (or report a failure
    /// with [`Engine::handle_file_failed`](crate::Engine::handle_file_failed)). At most one
    /// read per transfer is asked for at a time.
    ReadFile {
        /// Which open file.
        transfer: TransferId,
        /// Read at most this many bytes.
        max: usize,
    },
    /// The transfer ended: close its file.
    CloseFile {
        /// Which open file.
        transfer: TransferId,
    },
    /// Run this store request and answer with
    /// [`Engine::handle_store_reply`](crate::Engine::handle_store_reply) and `id`.
    Store {
        /// The id to answer with.
        id: RequestId,
        /// What to do (boxed to keep the common `Transmit` small).
        request: Box<StoreRequest>,
    },
    /// Cluster mode only ([`Config::cluster`](crate::Config::cluster)): carry `payload`
    /// to the other nodes on `topic`, after the publications before it, and hand it to
    /// their engines' [`Engine::handle_published`](crate::Engine::handle_published). A
    /// driver without a cluster never sees this.
    Publish {
        /// Which nodes it is for.
        topic: Topic,
        /// What to carry, as it is.
        payload: Bytes,
    },
}

/// Why the engine closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `/close`.
    ClientQuit,
    /// A moderator or admin kicked the user.
    Kicked,
    /// The client did not read: its unwritten bytes passed `max_queued_bytes`.
    SlowReader,
    /// The client sent lines faster than flood control lets them wait.
    Flood,
    /// The client did not log in within `login_timeout`.
    LoginTimeout,
    /// Too many failed logins on this connection.
    TooManyLoginFailures,
    /// The server already had `max_connections` connections.
    ServerFull,
    /// The peer address already had `max_connections_per_ip` connections.
    TooManyFromAddress,
    /// The server is shutting down.
    Shutdown,
    /// The client announced an upload larger than `max_file_bytes`: its bytes could not
    /// be read and dropped in any reasonable time, so the connection ends instead.
    UploadTooLarge,
    /// The account was deleted (`wur2 purge-user`, or `/delete-account` by its user)
    /// while the user was logged in.
    AccountDeleted,
    /// The account is banned: at login, or a ban set while the user was logged in.
    Banned,
    /// Another session of the account changed its password.
    LoggedOut,
}

impl CloseReason {
    /// A short phrase for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientQuit => "client quit",
            CloseReason::Kicked => "kicked",
            CloseReason::SlowReader => "slow reader",
            CloseReason::Flood => "flooding",
            CloseReason::LoginTimeout => "login timeout",
            CloseReason::TooManyLoginFailures => "too many failed logins",
            CloseReason::ServerFull => "server full",
            CloseReason::TooManyFromAddress => "too many connections from address",
            CloseReason::Shutdown => "server shutdown",
            CloseReason::UploadTooLarge => "upload too large",
            CloseReason::AccountDeleted => "account deleted",
            CloseReason::Banned => "banned",
            CloseReason::LoggedOut => "logged out",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
