//! Counters of what the engine has done, for metrics: read with
//! [`Engine::stats`](crate::Engine::stats). Counters only grow; gauges are the current value.

/// What the engine has done since it was made, and what it holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Gauge: open connections, logged in or not.
    pub connections: u64,
    /// Gauge: accounts with at least one logged-in session.
    pub users_online: u64,
    /// Gauge: bytes handed out for writing and not yet reported written, all connections.
    pub bytes_queued: u64,
    /// Gauge: file transfers running.
    pub transfers_active: u64,
    /// Connections opened.
    pub connections_opened: u64,
    /// Lines received from clients.
    pub lines_received: u64,
    /// Chat messages accepted for a channel.
    pub channel_messages: u64,
    /// Private messages accepted.
    pub direct_messages: u64,
    /// Lines handed to connections (a broadcast to N counts N).
    pub deliveries: u64,
    /// Bytes handed to connections.
    pub bytes_out: u64,
    /// Successful logins and registrations.
    pub logins: u64,
    /// Failed logins (wrong password, unknown user, locked out).
    pub login_failures: u64,
    /// Times flood control made a connection wait.
    pub flood_pauses: u64,
    /// Connections closed for flooding.
    pub flood_disconnects: u64,
    /// Connections dropped as slow readers.
    pub slow_readers_dropped: u64,
    /// Store requests emitted.
    pub store_requests: u64,
    /// File transfers that completed.
    pub transfers_completed: u64,
    /// File transfers that were cancelled or failed.
    pub transfers_cancelled: u64,
    /// Gauge, cluster mode: other nodes known.
    pub peers: u64,
    /// Gauge, cluster mode: sessions known on other nodes.
    pub peer_sessions: u64,
    /// Cluster mode: publications made (`Output::Publish`).
    pub bus_published: u64,
    /// Cluster mode: payloads received from the bus (this node's own included).
    pub bus_received: u64,
    /// Cluster mode: payloads dropped as invalid, of another protocol version, or from
    /// a node past the limits.
    pub bus_refused: u64,
    /// Cluster mode: times publications from a node were found missing (a gap in its
    /// numbering); each asks that node for its state.
    pub bus_gaps: u64,
}
