//! Metrics in the Prometheus text format (version 0.0.4) and a health check, served over
//! HTTP on a listener of their own (`GET /metrics`, `GET /healthz`).
//!
//! It owns the timing of store requests ([`Metered`] wraps the store) and the two
//! endpoints. `hyper` speaks HTTP/1.1 (over the [`Runtime`]'s sockets, on any runtime);
//! `prometheus-client` provides the registry, the metric types and the text encoding. The engine's numbers are never copied into metric atomics: a collector reads
//! the snapshot the driver publishes in [`ServerStatus`] when a scraper asks, so the driver
//! pays nothing per metric and never waits for the exporter. Each [`serve`] builds its own
//! registry (no global one), so several servers in one process each report their own
//! numbers.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, prometheus_text};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};
use wur2_engine::{StoreError, StoreReply, StoreRequest};

use crate::runtime::{Runtime, Transport};
use crate::status::ServerStatus;
use crate::{AccountChanges, Storage};

/// Upper bounds of the store latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Request kinds timed separately (argon2 makes logins slow on purpose).
const KINDS: [&str; 23] = [
    "register",
    "login",
    "append_channel_message",
    "append_private_message",
    "fetch_history",
    "fetch_pending",
    "mark_delivered",
    "set_role",
    "mark_pending",
    "fetch_conversation",
    "change_password",
    "delete_account",
    "issue_token",
    "resume",
    "revoke_tokens",
    "sanction",
    "lift_sanction",
    "fetch_sanctions",
    "load_channels",
    "register_channel",
    "set_topic",
    "set_private",
    "invite",
];
/// How long `/healthz` waits for the store to answer before calling it unhealthy.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest HTTP request head read; scrapers send a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long one request may take, from connecting to the end of the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may take to send its whole request head. A scraper sends it at
/// once; a connection that sends nothing (or dribbles) is dropped after this, so idle
/// connections cannot hold the [`MAX_REQUESTS`] slots and keep `/healthz` waiting.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP connections served at once at most; more wait in the kernel's backlog until a
/// slot frees (an answer, or [`REQUEST_HEAD_TIMEOUT`] for a connection that sends nothing).
pub const MAX_REQUESTS: usize = 64;

/// Store latency histograms, one per request kind, labelled `request="<kind>"`.
type Latencies = Family<[(&'static str, &'static str); 1], Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
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
        StoreRequest::MarkPending { .. } => 8,
        StoreRequest::FetchConversation { .. } => 9,
        StoreRequest::ChangePassword { .. } => 10,
        StoreRequest::DeleteAccount { .. } => 11,
        StoreRequest::IssueToken { .. } => 12,
        StoreRequest::Resume { .. } => 13,
        StoreRequest::RevokeTokens { .. } => 14,
        StoreRequest::Sanction { .. } => 15,
        StoreRequest::LiftSanction { .. } => 16,
        StoreRequest::FetchSanctions { .. } => 17,
        StoreRequest::LoadChannels => 18,
        StoreRequest::RegisterChannel { .. } => 19,
        StoreRequest::SetTopic { .. } => 20,
        StoreRequest::SetPrivate { .. } => 21,
        StoreRequest::Invite { .. } => 22,
    }
}

/// The metrics of one server: create it, wrap the store with [`Metrics::meter`] before
/// serving, then export with [`serve`].
#[derive(Clone, Debug)]
pub struct Metrics {
    latencies: Latencies,
    /// The histograms of `latencies`, indexed by [`kind_index`]: recording a reply takes
    /// no lock on the family.
    by_kind: Arc<[Histogram; KINDS.len()]>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Metrics {
        let latencies = Latencies::new_with_constructor(latency_histogram);
        // Every kind exists from the start, so each series is exported (at zero) before its
        // first request: `rate()` then sees that request instead of a series appearing.
        let by_kind = KINDS.map(|kind| latencies.get_or_create_owned(&[("request", kind)]));
        Metrics {
            latencies,
            by_kind: Arc::new(by_kind),
        }
    }

    /// Wraps `store` so every request's latency is recorded here.
    pub fn meter<S: Storage>(&self, store: S) -> Metered<S> {
        Metered {
            inner: store,
            by_kind: Arc::clone(&self.by_kind),
        }
    }
}

/// A store whose request latencies are recorded in a [`Metrics`]; it behaves exactly like
/// the store it wraps.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    by_kind: Arc<[Histogram; KINDS.len()]>,
}

impl<S: Storage> Storage for Metered<S> {
    fn execute(&self, request: StoreRequest) -> impl Future<Output = StoreReply> + Send + 'static {
        let kind = kind_index(&request);
        let started = Instant::now();
        // `execute` is called here, in the engine's order, as the trait requires.
        let reply = self.inner.execute(request);
        let by_kind = Arc::clone(&self.by_kind);
        async move {
            let reply = reply.await;
            by_kind[kind].observe(started.elapsed().as_secs_f64());
            reply
        }
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        self.inner.close()
    }

    fn account_changes(
        &self,
        after: Option<i64>,
    ) -> impl Future<Output = Option<Result<AccountChanges, StoreError>>> + Send + 'static {
        self.inner.account_changes(after)
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

/// A running metrics listener; [`MetricsServer::stop`] ends it (so does dropping the
/// runtime).
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl MetricsServer {
    /// Where scrapers connect (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops taking new requests (the listener closes).
    pub fn stop(self) {
        self.stop.send_replace(true);
    }
}

/// Serves `GET /metrics` and `GET /healthz` on `listener` until stopped, in tasks of `R`.
///
/// `/healthz` answers `200 ok` only while `status` says the chat listener accepts
/// connections and `store` answers within [`HEALTH_TIMEOUT`]; otherwise `503` and the
/// reason in one line. In cluster mode, while the bus is down, it answers
/// `200 degraded: <reason>`: the node serves its own users, and restarting it would not
/// bring the bus back (alert on `wur2_bus_up` instead).
pub fn serve<R: Runtime, P: StoreProbe>(
    listener: R::TcpListener,
    metrics: Metrics,
    status: ServerStatus,
    store: P,
) -> io::Result<MetricsServer> {
    let local_addr = R::local_addr(&listener)?;
    let store = Arc::new(store);
    let exporter = Arc::new(Exporter {
        registry: registry(metrics, status.clone(), Arc::clone(&store)),
        status,
        store,
    });
    let (stop, stop_rx) = watch::channel(false);
    R::spawn(async move {
        let requests = Arc::new(Semaphore::new(MAX_REQUESTS));
        loop {
            let Ok(permit) = Arc::clone(&requests).acquire_owned().await else {
                return;
            };
            let Some(accepted) = crate::server::next_client::<R>(&listener, &stop_rx).await else {
                return;
            };
            match accepted {
                Ok((stream, peer)) => {
                    let exporter = Arc::clone(&exporter);
                    R::spawn(async move {
                        if let Err(error) = answer::<R, P>(exporter, stream).await {
                            debug!(%peer, %error, "metrics request failed");
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    warn!(%error, "metrics accept failed; backing off");
                    R::sleep_until(Instant::now() + Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(MetricsServer { local_addr, stop })
}

/// Answers one request on `stream` with hyper: its head within [`REQUEST_HEAD_TIMEOUT`],
/// the whole exchange within [`REQUEST_TIMEOUT`]; the connection closes after the answer.
async fn answer<R: Runtime, P: StoreProbe>(
    exporter: Arc<Exporter<P>>,
    stream: R::TcpStream,
) -> Result<(), String> {
    let accepted = Instant::now();
    // hyper calls the service once the request head is read.
    let head_read = Arc::new(AtomicBool::new(false));
    let service = hyper::service::service_fn({
        let head_read = Arc::clone(&head_read);
        move |request: Request<Incoming>| {
            head_read.store(true, Ordering::Relaxed);
            let exporter = Arc::clone(&exporter);
            async move { Ok::<_, Infallible>(exporter.respond::<R>(&request).await) }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(false).max_buf_size(MAX_REQUEST_HEAD);
    let connection = builder.serve_connection(HyperIo(R::Stream::from(stream)), service);
    futures_lite::future::or(
        async { connection.await.map_err(|error| error.to_string()) },
        async {
            R::sleep_until(accepted + REQUEST_HEAD_TIMEOUT).await;
            if !head_read.load(Ordering::Relaxed) {
                return Err("no request head in time".to_owned());
            }
            R::sleep_until(accepted + REQUEST_TIMEOUT).await;
            Err("timed out".to_owned())
        },
    )
    .await
}

/// A client stream as hyper's I/O.
struct HyperIo<T>(T);

impl<T: Transport> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; 1024];
        let n = ready!(self.get_mut().0.poll_read(cx, &mut chunk))?;
        buf.put_slice(&chunk[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<T: Transport> hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .0
            .poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_close(cx)
    }
}

/// Every metric of one server: its store latencies, and a collector for the rest.
fn registry<P: StoreProbe>(metrics: Metrics, status: ServerStatus, store: Arc<P>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ServerCollector { status, store }));
    registry.register_with_unit(
        "wur2_store_request_duration",
        "Time from the engine's store request to its reply, by request",
        Unit::Seconds,
        metrics.latencies,
    );
    registry
}

/// Reads the server's numbers when a scraper asks: the engine's [`wur2_engine::Stats`] as
/// the driver last published them, the TLS counters, and the store's queues.
struct ServerCollector<P> {
    status: ServerStatus,
    store: Arc<P>,
}

impl<P> std::fmt::Debug for ServerCollector<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCollector")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl<P: StoreProbe> Collector for ServerCollector<P> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = self.status.stats();
        let mut gauges: Vec<(&str, &str, u64)> = vec![
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
            (
                "wur2_store_requests_in_flight",
                "Store requests the engine waits for.",
                self.status.store_requests_in_flight() as u64,
            ),
        ];
        if let Some(len) = self.store.append_queue_len() {
            gauges.push((
                "wur2_store_append_queue",
                "Message appends queued and not yet written to the database.",
                len as u64,
            ));
        }
        if let Some(len) = self.store.hash_queue_len() {
            gauges.push((
                "wur2_store_hash_queue",
                "Password hashing jobs waiting for a free argon2 thread.",
                len as u64,
            ));
        }
        let bus = self.status.bus();
        if let Some(bus) = bus {
            gauges.extend([
                (
                    "wur2_bus_up",
                    "Cluster mode: 1 while the bus (NATS) is connected.",
                    u64::from(bus.up),
                ),
                (
                    "wur2_bus_queued",
                    "Cluster mode: publications waiting for the bus.",
                    bus.queued as u64,
                ),
                (
                    "wur2_bus_queued_bytes",
                    "Cluster mode: bytes of publications waiting for the bus.",
                    bus.queued_bytes as u64,
                ),
                (
                    "wur2_peers",
                    "Cluster mode: other nodes known.",
                    stats.peers,
                ),
                (
                    "wur2_peer_sessions",
                    "Cluster mode: sessions known on other nodes.",
                    stats.peer_sessions,
                ),
            ]);
        }
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        // Names without `_total`: the encoder appends it to every counter.
        let mut counters: Vec<(&str, &str, u64)> = vec![
            (
                "wur2_tls_handshakes",
                "TLS handshakes completed (0 without --tls-listen).",
                self.status.tls_handshakes(),
            ),
            (
                "wur2_tls_handshake_failures",
                "TLS handshakes that failed or timed out.",
                self.status.tls_handshake_failures(),
            ),
            (
                "wur2_connections_opened",
                "Connections accepted.",
                stats.connections_opened,
            ),
            (
                "wur2_lines_received",
                "Lines received from clients.",
                stats.lines_received,
            ),
            (
                "wur2_channel_messages",
                "Chat messages accepted for a channel (messages in).",
                stats.channel_messages,
            ),
            (
                "wur2_direct_messages",
                "Private messages accepted.",
                stats.direct_messages,
            ),
            (
                "wur2_deliveries",
                "Lines handed to connections; a broadcast to N counts N (messages out).",
                stats.deliveries,
            ),
            (
                "wur2_sent_bytes",
                "Bytes handed to connections.",
                stats.bytes_out,
            ),
            (
                "wur2_logins",
                "Successful logins and registrations.",
                stats.logins,
            ),
            (
                "wur2_login_failures",
                "Failed logins: wrong password, unknown user, locked out.",
                stats.login_failures,
            ),
            (
                "wur2_flood_pauses",
                "Times flood control made a connection wait.",
                stats.flood_pauses,
            ),
            (
                "wur2_flood_disconnects",
                "Connections closed for flooding.",
                stats.flood_disconnects,
            ),
            (
                "wur2_slow_readers_dropped",
                "Connections dropped because they did not read what was sent to them.",
                stats.slow_readers_dropped,
            ),
            (
                "wur2_store_requests",
                "Store requests the engine made.",
                stats.store_requests,
            ),
            (
                "wur2_transfers_completed",
                "File transfers that completed.",
                stats.transfers_completed,
            ),
            (
                "wur2_transfers_cancelled",
                "File transfers cancelled or failed.",
                stats.transfers_cancelled,
            ),
        ];
        if let Some(bus) = bus {
            counters.extend([
                (
                    "wur2_bus_published",
                    "Cluster mode: publications the engine made (messages out).",
                    stats.bus_published,
                ),
                (
                    "wur2_bus_received",
                    "Cluster mode: payloads received from the bus (messages in).",
                    stats.bus_received,
                ),
                (
                    "wur2_bus_sent_bytes",
                    "Cluster mode: bytes of publications handed to the bus.",
                    bus.sent_bytes,
                ),
                (
                    "wur2_bus_received_bytes",
                    "Cluster mode: bytes received from the bus.",
                    bus.received_bytes,
                ),
                (
                    "wur2_bus_refused",
                    "Cluster mode: payloads refused (invalid, another protocol version, over a limit).",
                    stats.bus_refused,
                ),
                (
                    "wur2_bus_gaps",
                    "Cluster mode: times publications of a node were found missing.",
                    stats.bus_gaps,
                ),
                (
                    "wur2_bus_dropped",
                    "Cluster mode: publications dropped before the bus took them (queue full, or refused by the bus).",
                    bus.dropped,
                ),
            ]);
        }
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

struct Exporter<P> {
    registry: Registry,
    status: ServerStatus,
    store: Arc<P>,
}

impl<P: StoreProbe> Exporter<P> {
    /// The answer to one request.
    async fn respond<R: Runtime>(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let text = "text/plain; charset=utf-8";
        let (status, content_type, body) = match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => match self.render() {
                Ok(body) => (StatusCode::OK, prometheus_text::CONTENT_TYPE, body),
                Err(std::fmt::Error) => {
                    warn!("metrics could not be encoded");
                    let body = "metrics could not be encoded\n".to_owned();
                    (StatusCode::INTERNAL_SERVER_ERROR, text, body)
                }
            },
            (&Method::GET, "/healthz") => match self.health::<R>().await {
                Ok(()) => match self.degraded() {
                    None => (StatusCode::OK, text, "ok\n".to_owned()),
                    Some(reason) => (StatusCode::OK, text, format!("degraded: {reason}\n")),
                },
                Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, text, format!("{reason}\n")),
            },
            (_, "/metrics" | "/healthz") => (
                StatusCode::METHOD_NOT_ALLOWED,
                text,
                "GET only\n".to_owned(),
            ),
            _ => (
                StatusCode::NOT_FOUND,
                text,
                "try /metrics or /healthz\n".to_owned(),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        response
    }

    async fn health<R: Runtime>(&self) -> Result<(), String> {
        if !self.status.accepting() {
            return Err("chat listener: not accepting connections".to_owned());
        }
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let answer = futures_lite::future::or(async { Some(self.store.ping().await) }, async {
            R::sleep_until(deadline).await;
            None
        });
        match answer.await {
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => Err(format!("store: {error}")),
            None => Err(format!("store: no answer within {HEALTH_TIMEOUT:?}")),
        }
    }

    /// Why the server serves less than it should while still serving its own users: the
    /// cluster bus is down. `/healthz` still answers 200 then (restarting this node would
    /// not bring the bus back), with `degraded: <reason>`.
    fn degraded(&self) -> Option<String> {
        let bus = self.status.bus().filter(|bus| !bus.up)?;
        let now = crate::clock::wall_clock_now().unix_ms;
        let seconds = now.saturating_sub(bus.changed_unix_ms).max(0) / 1000;
        Some(format!(
            "cluster bus down for {seconds} s (since Unix ms {}): this node's users are \
             served, other nodes are not reached; {} publications wait, {} dropped",
            bus.changed_unix_ms, bus.queued, bus.dropped
        ))
    }

    /// The whole exposition, in the Prometheus text format.
    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut body = String::with_capacity(8 * 1024);
        prometheus_text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StatusCell;

    /// A store with queues of known lengths.
    struct Queues;

    impl StoreProbe for Queues {
        async fn ping(&self) -> Result<(), String> {
            Ok(())
        }

        fn append_queue_len(&self) -> Option<usize> {
            Some(30)
        }

        fn hash_queue_len(&self) -> Option<usize> {
            Some(31)
        }
    }

    #[test]
    fn cluster_mode_adds_the_bus_numbers_and_healthz_says_degraded_while_it_is_down() {
        let (link, port) = crate::bus::bus();
        let cell = Arc::new(StatusCell::with_bus(Arc::clone(&link.outbox.shared)));
        let mut stats = wur2_engine::Stats::default();
        stats.peers = 2;
        stats.peer_sessions = 3;
        stats.bus_published = 4;
        stats.bus_received = 5;
        stats.bus_refused = 6;
        stats.bus_gaps = 7;
        cell.publish(stats, 0);
        link.outbox
            .publish(wur2_engine::Topic::All, Bytes::from_static(b"12345678"));
        port.lost(&"test");
        let status = ServerStatus::new(cell);
        let registry = registry(Metrics::new(), status.clone(), Arc::new(Queues));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).expect("a String takes any text");
        for (name, value) in [
            ("wur2_bus_up", 0),
            ("wur2_bus_queued", 1),
            ("wur2_bus_queued_bytes", 8),
            ("wur2_peers", 2),
            ("wur2_peer_sessions", 3),
            ("wur2_bus_published_total", 4),
            ("wur2_bus_received_total", 5),
            ("wur2_bus_refused_total", 6),
            ("wur2_bus_gaps_total", 7),
            ("wur2_bus_dropped_total", 1),
            ("wur2_bus_sent_bytes_total", 0),
            ("wur2_bus_received_bytes_total", 0),
        ] {
            assert!(
                text.contains(&format!("\n{name} {value}\n")),
                "{name} is not {value} in\n{text}"
            );
        }
        let exporter = Exporter {
            registry,
            status,
            store: Arc::new(Queues),
        };
        let degraded = exporter.degraded().expect("the bus is down");
        assert!(degraded.starts_with("cluster bus down for "), "{degraded}");
        futures_lite::future::block_on(port.inbox().connected()).expect("the loop listens");
        assert_eq!(exporter.degraded(), None);
    }

    #[test]
    fn every_published_number_is_served_under_its_own_name_and_type() {
        // Each number is different, so a metric reading the wrong field shows.
        let mut stats = wur2_engine::Stats::default();
        stats.connections = 10;
        stats.users_online = 11;
        stats.bytes_queued = 12;
        stats.transfers_active = 13;
        stats.connections_opened = 14;
        stats.lines_received = 15;
        stats.channel_messages = 16;
        stats.direct_messages = 17;
        stats.deliveries = 18;
        stats.bytes_out = 19;
        stats.logins = 20;
        stats.login_failures = 21;
        stats.flood_pauses = 22;
        stats.flood_disconnects = 23;
        stats.slow_readers_dropped = 24;
        stats.store_requests = 25;
        stats.transfers_completed = 26;
        stats.transfers_cancelled = 27;
        let cell = Arc::new(StatusCell::default());
        cell.publish(stats, 28);
        cell.set_accepting(true);
        for _ in 0..3 {
            cell.count_tls_handshake(true);
        }
        for _ in 0..4 {
            cell.count_tls_handshake(false);
        }
        let registry = registry(Metrics::new(), ServerStatus::new(cell), Arc::new(Queues));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).expect("a String takes any text");

        let expected: [(&str, &str, u64); 25] = [
            ("wur2_connections", "gauge", 10),
            ("wur2_users_online", "gauge", 11),
            ("wur2_queued_bytes", "gauge", 12),
            ("wur2_transfers_active", "gauge", 13),
            ("wur2_accepting", "gauge", 1),
            ("wur2_store_requests_in_flight", "gauge", 28),
            ("wur2_store_append_queue", "gauge", 30),
            ("wur2_store_hash_queue", "gauge", 31),
            ("wur2_tls_handshakes_total", "counter", 3),
            ("wur2_tls_handshake_failures_total", "counter", 4),
            ("wur2_connections_opened_total", "counter", 14),
            ("wur2_lines_received_total", "counter", 15),
            ("wur2_channel_messages_total", "counter", 16),
            ("wur2_direct_messages_total", "counter", 17),
            ("wur2_deliveries_total", "counter", 18),
            ("wur2_sent_bytes_total", "counter", 19),
            ("wur2_logins_total", "counter", 20),
            ("wur2_login_failures_total", "counter", 21),
            ("wur2_flood_pauses_total", "counter", 22),
            ("wur2_flood_disconnects_total", "counter", 23),
            ("wur2_slow_readers_dropped_total", "counter", 24),
            ("wur2_store_requests_total", "counter", 25),
            ("wur2_transfers_completed_total", "counter", 26),
            ("wur2_transfers_cancelled_total", "counter", 27),
            ("wur2_store_request_duration_seconds", "histogram", 0),
        ];
        for (name, kind, value) in expected {
            assert!(
                text.contains(&format!("\n# TYPE {name} {kind}\n")),
                "no {kind} {name} in\n{text}"
            );
            if kind != "histogram" {
                assert!(
                    text.contains(&format!("# TYPE {name} {kind}\n{name} {value}\n")),
                    "{name} is not {value} in\n{text}"
                );
            }
        }
        assert_eq!(
            text.matches("# TYPE ").count(),
            expected.len(),
            "a metric not listed here: {text}"
        );
        for kind in KINDS {
            assert!(
                text.contains(&format!(
                    "wur2_store_request_duration_seconds_count{{request=\"{kind}\"}} 0\n"
                )),
                "no latency series for {kind} in\n{text}"
            );
        }
    }
}
