//! Prometheus metrics and a health check over HTTP (`GET /metrics`, `GET /healthz`) on
//! Tokio: `wur2_host::metrics` served with Tokio's sockets and tasks.

use std::io;

use tokio::net::TcpListener;
pub use wur2_host::metrics::{HEALTH_TIMEOUT, Metered, Metrics, MetricsServer, StoreProbe};

use crate::{ServerStatus, Tokio};

/// Serves `GET /metrics` and `GET /healthz` on `listener` until stopped; see
/// [`wur2_host::metrics::serve`].
pub fn serve<P: StoreProbe>(
    listener: TcpListener,
    metrics: Metrics,
    status: ServerStatus,
    store: P,
) -> io::Result<MetricsServer> {
    wur2_host::metrics::serve::<Tokio, P>(listener, metrics, status, store)
}
