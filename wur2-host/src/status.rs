//! What a running server shows the outside (metrics, health checks) without touching its
//! engine: the driver copies the engine's [`Stats`] here once per loop turn, and says
//! whether it still accepts connections; in cluster mode the bus's own numbers are read
//! from both of its ends. Readers never wait on the driver, and the driver
//! never waits on a reader for longer than one uncontended lock.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wur2_engine::Stats;

use crate::bus::{BusShared, BusStatus};

/// The cell the driver writes and [`ServerStatus`] reads.
#[derive(Debug, Default)]
pub(crate) struct StatusCell {
    stats: Mutex<Stats>,
    accepting: AtomicBool,
    store_in_flight: AtomicUsize,
    tls_handshakes: AtomicU64,
    tls_handshake_failures: AtomicU64,
    /// The cluster bus, when the server has one.
    bus: Option<Arc<BusShared>>,
}

impl StatusCell {
    /// The cell of a server whose cluster bus shares `bus`.
    pub(crate) fn with_bus(bus: Arc<BusShared>) -> StatusCell {
        StatusCell {
            bus: Some(bus),
            ..StatusCell::default()
        }
    }

    /// Copies the engine's latest counters and the store requests not answered yet.
    pub(crate) fn publish(&self, stats: Stats, store_in_flight: usize) {
        // A poisoned lock holds plain numbers that are still valid.
        *self
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = stats;
        self.store_in_flight
            .store(store_in_flight, Ordering::Relaxed);
    }

    /// Counts one TLS handshake that completed (`true`) or failed or timed out (`false`).
    pub(crate) fn count_tls_handshake(&self, completed: bool) {
        let counter = if completed {
            &self.tls_handshakes
        } else {
            &self.tls_handshake_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether new clients are taken: true from start until shutdown begins.
    pub(crate) fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Relaxed);
    }
}

/// A read-only view of a running server, cheap to clone and to read from any task or
/// thread: for metrics exporters and health checks.
#[derive(Clone, Debug)]
pub struct ServerStatus {
    cell: Arc<StatusCell>,
}

impl ServerStatus {
    pub(crate) fn new(cell: Arc<StatusCell>) -> ServerStatus {
        ServerStatus { cell }
    }

    /// The cell behind this view, for the server's own tasks to write.
    pub(crate) fn cell(&self) -> Arc<StatusCell> {
        Arc::clone(&self.cell)
    }

    /// The engine's counters and gauges as of the driver's last loop turn.
    pub fn stats(&self) -> Stats {
        *self
            .cell
            .stats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the server takes new connections (false once shutdown has begun or the
    /// driver has stopped).
    pub fn accepting(&self) -> bool {
        self.cell.accepting.load(Ordering::Relaxed)
    }

    /// TLS handshakes completed since start.
    pub fn tls_handshakes(&self) -> u64 {
        self.cell.tls_handshakes.load(Ordering::Relaxed)
    }

    /// TLS handshakes that failed (bad client, untrusted certificate on the client's side,
    /// plain text on the TLS port) or timed out since start.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.cell.tls_handshake_failures.load(Ordering::Relaxed)
    }

    /// The cluster bus's state and numbers; `None` without cluster mode. The engine's own
    /// bus counters (publications, peers, gaps) are in [`ServerStatus::stats`].
    pub fn bus(&self) -> Option<BusStatus> {
        self.cell.bus.as_ref().map(|bus| bus.snapshot())
    }

    /// Store requests the engine is waiting for: a growing number means a slow database.
    pub fn store_requests_in_flight(&self) -> usize {
        self.cell.store_in_flight.load(Ordering::Relaxed)
    }
}
