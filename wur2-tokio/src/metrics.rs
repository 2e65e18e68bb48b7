//! Metrics in the Prometheus text format (version 0.0.4) and a health check, served over
//! HTTP on a listener of their own (`GET /metrics`, `GET /healthz`).
//!
//! It owns the timing of store requests ([`Metered`] wraps the store) and a tiny HTTP/1.1
//! responder. It reads the engine only through [`ServerStatus`] and never blocks the
//! driver. The exposition is written by hand: a few dozen lines, no global registry, so
//! several servers in one process each report their own numbers.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use wur2_engine::{StoreReply, StoreRequest};

use crate::Storage;
use crate::status::ServerStatus;

/// Upper bounds of the store latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Request kinds timed separately (argon2 makes logins slow on purpose).
const KINDS: [&str; 8] = [
    "register",
    "login",
    "append_channel_message",
    "append_private_message",
    "fetch_history",
    "fetch_pending",
    "mark_delivered",
    "set_role",
];
/// How long `/healthz` waits for the store to answer before calling it unhealthy.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest HTTP request head read; scrapers send a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scraper has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP requests answered at once at most.
const MAX_REQUESTS: usize = 64;

/// One latency histogram (non-cumulative bucket counts; made cumulative when written).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    /// Above the last bucket.
    over: AtomicU64,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        match BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => self.buckets[index].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Store latency per request kind, shared by [`Metered`] and the exporter.
#[derive(Debug, Default)]
struct StoreTimings {
    kinds: [Histogram; KINDS.len()],
}

fn kind_index(request: &StoreRequest) -> usize {
    match request {
        StoreRequest::Register { .. } => 0,
        StoreRequest::Login { .. } => 1,
        StoreRequest::AppendChannelMessage(_) => 2,
        StoreRequest::AppendPrivateMessage(_) => 3,
        StoreRequest::FetchHistory { .. } => 4,
        StoreRequest::FetchPending { .. } => 5,
        StoreRequest::MarkDelivered { .. } => 6,
        StoreRequest::SetRole { .. } => 7,
    }
}

/// The metrics of one server: create it, wrap the store with [`Metrics::meter`] before
/// serving, then export with [`serve`].
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    timings: Arc<StoreTimings>,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Wraps `store` so every request's latency is recorded here.
    pub fn meter<S: Storage>(&self, store: S) -> Metered<S> {
        Metered {
            inner: store,
            timings: Arc::clone(&self.timings),
        }
    }
}

/// A store whose request latencies are recorded in a [`Metrics`]; it behaves exactly like
/// the store it wraps.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    timings: Arc<StoreTimings>,
}

impl<S: Storage> Storage for Metered<S> {
    fn execute(&self, request: StoreRequest) -> impl Future<Output = StoreReply> + Send + 'static {
        let kind = kind_index(&request);
        let started = Instant::now();
        // `execute` is called here, in the engine's order, as the trait requires.
        let reply = self.inner.execute(request);
        let timings = Arc::clone(&self.timings);
        async move {
            let reply = reply.await;
            timings.kinds[kind].observe(started.elapsed());
            reply
        }
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        self.inner.close()
    }
}

/// What the exporter asks of the store beyond [`Storage`]: whether it answers (for
/// `/healthz`), and its internal queues when it has them.
pub trait StoreProbe: Send + Sync + 'static {
    /// Resolves to `Ok` when the database answers a trivial query; the exporter bounds the
    /// wait with [`HEALTH_TIMEOUT`].
    fn ping(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Message appends queued and not yet written, if the store queues them.
    fn append_queue_len(&self) -> Option<usize> {
        None
    }
    /// Password hashing jobs waiting for a thread, if the store has such a pool.
    fn hash_queue_len(&self) -> Option<usize> {
        None
    }
}

impl StoreProbe for wur2_store::Store {
    fn ping(&self) -> impl Future<Output = Result<(), String>> + Send {
        let store = self.clone();
        async move {
            wur2_store::Store::ping(&store, HEALTH_TIMEOUT)
                .await
                .map_err(|error| error.to_string())
        }
    }

    fn append_queue_len(&self) -> Option<usize> {
        Some(wur2_store::Store::append_queue_len(self))
    }

    fn hash_queue_len(&self) -> Option<usize> {
        Some(wur2_store::Store::hash_queue_len(self))
    }
}

/// A running metrics listener; [`MetricsServer::stop`] ends it (so does dropping the
/// runtime).
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Where scrapers connect (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops answering.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Serves `GET /metrics` and `GET /healthz` on `listener` until stopped.
///
/// `/healthz` answers `200 ok` only while `status` says the chat listener accepts
/// connections and `store` answers within [`HEALTH_TIMEOUT`]; otherwise `503` and the
/// reason in one line.
pub fn serve<P: StoreProbe>(
    listener: TcpListener,
    metrics: Metrics,
    status: ServerStatus,
    store: P,
) -> std::io::Result<MetricsServer> {
    let local_addr = listener.local_addr()?;
    let exporter = Arc::new(Exporter {
        metrics,
        status,
        store,
    });
    let task = tokio::spawn(async move {
        let requests = Arc::new(Semaphore::new(MAX_REQUESTS));
        loop {
            let Ok(permit) = Arc::clone(&requests).acquire_owned().await else {
                return;
            };
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let exporter = Arc::clone(&exporter);
                    tokio::spawn(async move {
                        if let Err(error) = exporter.answer(stream).await {
                            debug!(%peer, %error, "metrics request failed");
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    warn!(%error, "metrics accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(MetricsServer { local_addr, task })
}

struct Exporter<P> {
    metrics: Metrics,
    status: ServerStatus,
    store: P,
}

impl<P: StoreProbe> Exporter<P> {
    /// Reads one request head and answers it; the connection closes after the answer.
    async fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let mut words = head.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = path.split('?').next().unwrap_or("");
        let (status, content_type, body) = match (method, path) {
            ("GET", "/metrics") => (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                self.render(),
            ),
            ("GET", "/healthz") => match self.health().await {
                Ok(()) => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_owned()),
                Err(reason) => (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    format!("{reason}\n"),
                ),
            },
            (_, "/metrics" | "/healthz") => (
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "GET only\n".to_owned(),
            ),
            _ => (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "try /metrics or /healthz\n".to_owned(),
            ),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    }

    async fn health(&self) -> Result<(), String> {
        if !self.status.accepting() {
            return Err("chat listener: not accepting connections".to_owned());
        }
        match tokio::time::timeout(HEALTH_TIMEOUT, self.store.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("store: {error}")),
            Err(_) => Err(format!("store: no answer within {HEALTH_TIMEOUT:?}")),
        }
    }

    /// The whole exposition, in the text format.
    fn render(&self) -> String {
        let stats = self.status.stats();
        let mut out = String::with_capacity(8 * 1024);
        let gauges: [(&str, &str, u64); 5] = [
            (
                "wur2_connections",
                "Open client connections, logged in or not.",
                stats.connections,
            ),
            (
                "wur2_users_online",
                "Accounts with at least one logged-in session.",
                stats.users_online,
            ),
            (
                "wur2_queued_bytes",
                "Bytes handed to connections and not yet written to their sockets.",
                stats.bytes_queued,
            ),
            (
                "wur2_transfers_active",
                "File transfers running.",
                stats.transfers_active,
            ),
            (
                "wur2_accepting",
                "1 while the chat listener accepts connections, 0 once shutdown began.",
                u64::from(self.status.accepting()),
            ),
        ];
        for (name, help, value) in gauges {
            metric(&mut out, name, help, "gauge", value);
        }
        metric(
            &mut out,
            "wur2_store_requests_in_flight",
            "Store requests the engine waits for.",
            "gauge",
            self.status.store_requests_in_flight() as u64,
        );
        if let Some(len) = self.store.append_queue_len() {
            metric(
                &mut out,
                "wur2_store_append_queue",
                "Message appends queued and not yet written to the database.",
                "gauge",
                len as u64,
            );
        }
        if let Some(len) = self.store.hash_queue_len() {
            metric(
                &mut out,
                "wur2_store_hash_queue",
                "Password hashing jobs waiting for a free argon2 thread.",
                "gauge",
                len as u64,
            );
        }
        let counters: [(&str, &str, u64); 16] = [
            (
                "wur2_tls_handshakes_total",
                "TLS handshakes completed (0 without --tls-listen).",
                self.status.tls_handshakes(),
            ),
            (
                "wur2_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                self.status.tls_handshake_failures(),
            ),
            (
                "wur2_connections_opened_total",
                "Connections accepted.",
                stats.connections_opened,
            ),
            (
                "wur2_lines_received_total",
                "Lines received from clients.",
                stats.lines_received,
            ),
            (
                "wur2_channel_messages_total",
                "Chat messages accepted for a channel (messages in).",
                stats.channel_messages,
            ),
            (
                "wur2_direct_messages_total",
                "Private messages accepted.",
                stats.direct_messages,
            ),
            (
                "wur2_deliveries_total",
                "Lines handed to connections; a broadcast to N counts N (messages out).",
                stats.deliveries,
            ),
            (
                "wur2_sent_bytes_total",
                "Bytes handed to connections.",
                stats.bytes_out,
            ),
            (
                "wur2_logins_total",
                "Successful logins and registrations.",
                stats.logins,
            ),
            (
                "wur2_login_failures_total",
                "Failed logins: wrong password, unknown user, locked out.",
                stats.login_failures,
            ),
            (
                "wur2_flood_pauses_total",
                "Times flood control made a connection wait.",
                stats.flood_pauses,
            ),
            (
                "wur2_flood_disconnects_total",
                "Connections closed for flooding.",
                stats.flood_disconnects,
            ),
            (
                "wur2_slow_readers_dropped_total",
                "Connections dropped because they did not read what was sent to them.",
                stats.slow_readers_dropped,
            ),
            (
                "wur2_store_requests_total",
                "Store requests the engine made.",
                stats.store_requests,
            ),
            (
                "wur2_transfers_completed_total",
                "File transfers that completed.",
                stats.transfers_completed,
            ),
            (
                "wur2_transfers_cancelled_total",
                "File transfers cancelled or failed.",
                stats.transfers_cancelled,
            ),
        ];
        for (name, help, value) in counters {
            metric(&mut out, name, help, "counter", value);
        }
        self.render_latency(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let name = "wur2_store_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from the engine's store request to its reply, by request."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (kind, histogram) in KINDS.iter().zip(&self.metrics.timings.kinds) {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&histogram.buckets) {
                cumulative += count.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{request=\"{kind}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            // Read once, so `+Inf` and `_count` agree even while requests finish.
            let total = cumulative + histogram.over.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{request=\"{kind}\",le=\"+Inf\"}} {total}"
            );
            let sum = histogram.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{request=\"{kind}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{request=\"{kind}\"}} {total}");
        }
    }
}

/// One single-valued metric with its `HELP` and `TYPE` lines.
fn metric(out: &mut String, name: &str, help: &str, kind: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Reads up to the end of the request head; returns its first line.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).trim_end().to_owned())
}
