//! What an operator relies on: Prometheus metrics and `/healthz` on their own listener,
//! and chat over TLS beside plain TCP with a certificate reloaded in place.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use wur2_store::Store;
use wur2_tokio::metrics::{self, Metrics};
use wur2_tokio::tls::TlsAcceptor;
use wur2_tokio::{Options, ServerHandle};

const STEP: Duration = Duration::from_secs(15);
const PASSWORD: &str = "correct-horse-battery";

/// Cheap password hashing: these tests prove nothing about argon2 cost.
fn store_config() -> wur2_store::StoreConfig {
    wur2_store::StoreConfig {
        password: wur2_store::PasswordConfig {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..wur2_store::StoreConfig::default()
    }
}

/// Flood control off: the tests send a few lines back to back.
fn config() -> wur2_engine::Config {
    wur2_engine::Config {
        flood_lines_per_second: 0,
        ..wur2_engine::Config::default()
    }
}

/// A line client over any byte stream (plain TCP or TLS).
struct Client<S> {
    stream: BufReader<S>,
    name: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn register(stream: S, name: &str) -> Client<S> {
        let mut client = Client {
            stream: BufReader::new(stream),
            name: name.to_owned(),
        };
        client.send(&format!("/register {name} {PASSWORD}")).await;
        client.expect(&format!("Welcome {name}!")).await;
        client
    }

    async fn send(&mut self, line: &str) {
        let bytes = format!("{line}\n");
        tokio::time::timeout(STEP, async {
            self.stream.get_mut().write_all(bytes.as_bytes()).await?;
            self.stream.get_mut().flush().await
        })
        .await
        .expect("send timed out")
        .expect("send failed");
    }

    /// Reads lines until one contains `text`.
    async fn expect(&mut self, text: &str) -> String {
        tokio::time::timeout(STEP, async {
            loop {
                let mut line = String::new();
                let n = self.stream.read_line(&mut line).await.expect("read");
                assert!(n > 0, "{}: closed before {text:?}", self.name);
                if line.contains(text) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{}: no line with {text:?}", self.name))
    }
}

/// A server on a fresh SQLite file, its store metered, and its writer.
struct Server {
    handle: ServerHandle,
    store: Store,
    metrics: Metrics,
    writer: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let (store, writer) = Store::open(&url, store_config())
        .await
        .expect("open the store");
    let writer = tokio::spawn(writer.run());
    let metrics = Metrics::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = wur2_tokio::serve_with(
        listener,
        metrics.meter(store.clone()),
        config(),
        Options::default(),
    )
    .expect("serve");
    Server {
        handle,
        store,
        metrics,
        writer,
        _dir: dir,
    }
}

/// One HTTP GET: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (code, _, body) = get_with_type(addr, path).await;
    (code, body)
}

/// One HTTP GET: the status code, the `Content-Type` and the body.
async fn get_with_type(addr: SocketAddr, path: &str) -> (u16, String, String) {
    tokio::time::timeout(STEP, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
            .await
            .expect("read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head");
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status code");
        // Header names are case-insensitive (hyper writes them in lower case).
        let content_type = head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.trim())
            .unwrap_or_default();
        (code, content_type.to_owned(), body.to_owned())
    })
    .await
    .expect("the metrics listener answers")
}

/// A scrape, parsed: each family's `TYPE`, and each sample's value by series.
struct Exposition {
    types: HashMap<String, String>,
    samples: HashMap<String, f64>,
}

impl Exposition {
    /// A sample's value; fails the test when the series is not served.
    fn value(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} is not served"))
    }
}

/// Parses an exposition strictly enough to catch format mistakes: every family has a
/// `# HELP` line right before its `# TYPE` line, every sample belongs to a family declared
/// before it, counters end in `_total`, and every value is a number.
fn parse_exposition(text: &str) -> Exposition {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let mut helped: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.trim().is_empty(), "{line}");
            helped = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert_eq!(helped.take().as_deref(), Some(name), "HELP before {line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("a sample");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().expect("a name");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no TYPE line");
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    Exposition { types, samples }
}

/// Every family an operator sees (docs/OPERATIONS.md lists them), with its type.
const FAMILIES: [(&str, &str); 25] = [
    ("wur2_connections", "gauge"),
    ("wur2_users_online", "gauge"),
    ("wur2_queued_bytes", "gauge"),
    ("wur2_transfers_active", "gauge"),
    ("wur2_accepting", "gauge"),
    ("wur2_store_requests_in_flight", "gauge"),
    ("wur2_store_append_queue", "gauge"),
    ("wur2_store_hash_queue", "gauge"),
    ("wur2_tls_handshakes_total", "counter"),
    ("wur2_tls_handshake_failures_total", "counter"),
    ("wur2_connections_opened_total", "counter"),
    ("wur2_lines_received_total", "counter"),
    ("wur2_channel_messages_total", "counter"),
    ("wur2_direct_messages_total", "counter"),
    ("wur2_deliveries_total", "counter"),
    ("wur2_sent_bytes_total", "counter"),
    ("wur2_logins_total", "counter"),
    ("wur2_login_failures_total", "counter"),
    ("wur2_flood_pauses_total", "counter"),
    ("wur2_flood_disconnects_total", "counter"),
    ("wur2_slow_readers_dropped_total", "counter"),
    ("wur2_store_requests_total", "counter"),
    ("wur2_transfers_completed_total", "counter"),
    ("wur2_transfers_cancelled_total", "counter"),
    ("wur2_store_request_duration_seconds", "histogram"),
];

/// The families a node in cluster mode serves besides [`FAMILIES`].
const CLUSTER_FAMILIES: [(&str, &str); 12] = [
    ("wur2_bus_up", "gauge"),
    ("wur2_bus_queued", "gauge"),
    ("wur2_bus_queued_bytes", "gauge"),
    ("wur2_peers", "gauge"),
    ("wur2_peer_sessions", "gauge"),
    ("wur2_bus_published_total", "counter"),
    ("wur2_bus_received_total", "counter"),
    ("wur2_bus_sent_bytes_total", "counter"),
    ("wur2_bus_received_bytes_total", "counter"),
    ("wur2_bus_refused_total", "counter"),
    ("wur2_bus_gaps_total", "counter"),
    ("wur2_bus_dropped_total", "counter"),
];

#[tokio::test]
async fn a_cluster_node_serves_the_bus_families_and_healthz_follows_the_bus() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let (store, writer) = Store::open(&url, store_config())
        .await
        .expect("open the store");
    let writer = tokio::spawn(writer.run());
    let metrics = Metrics::new();
    let (link, port) = wur2_tokio::bus();
    let config = wur2_engine::Config {
        cluster: Some(wur2_engine::ClusterConfig::new("a")),
        ..config()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let handle = wur2_tokio::serve_with_bus(
        listener,
        metrics.meter(store.clone()),
        config,
        Options::default(),
        link,
    )
    .expect("serve");
    let exporter = metrics::serve::<wur2_tokio::Tokio, _>(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        metrics,
        handle.status(),
        store.clone(),
    )
    .expect("serve metrics");
    let addr = exporter.local_addr();

    let (code, body) = get(addr, "/healthz").await;
    assert_eq!(code, 200, "a node without its bus still serves its users");
    assert!(
        body.starts_with("degraded: cluster bus down for "),
        "{body}"
    );
    let (_, _, text) = get_with_type(addr, "/metrics").await;
    let exposition = parse_exposition(&text);
    let expected: HashMap<String, String> = FAMILIES
        .iter()
        .chain(&CLUSTER_FAMILIES)
        .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
        .collect();
    assert_eq!(exposition.types, expected);
    assert_eq!(exposition.value("wur2_bus_up"), 0.0);

    port.inbox().connected().await.expect("the server listens");
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_owned()));
    let (_, _, text) = get_with_type(addr, "/metrics").await;
    let exposition = parse_exposition(&text);
    assert_eq!(exposition.value("wur2_bus_up"), 1.0);
    // The engine said hello to the other nodes as the bus came up.
    assert!(exposition.value("wur2_bus_published_total") >= 1.0);

    exporter.stop();
    handle.shutdown().await.expect("stops");
    drop(store);
    let _ = writer.await;
}

#[test]
fn the_operations_guide_lists_every_served_metric_with_its_type() {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/OPERATIONS.md"
    ))
    .expect("docs/OPERATIONS.md");
    let mut documented: Vec<(String, String)> = Vec::new();
    for row in guide.lines().filter(|line| line.starts_with("| `wur2_")) {
        let mut cells = row.split('|').skip(1).map(str::trim);
        let (names, kind) = (cells.next().unwrap_or(""), cells.next().unwrap_or(""));
        for name in names.split(" / ") {
            let name = name.trim_matches('`');
            let name = name.split('{').next().unwrap_or(name);
            documented.push((name.to_owned(), kind.to_owned()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = FAMILIES
        .iter()
        .chain(&CLUSTER_FAMILIES)
        .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

/// Scrapes `/metrics`: a 200 in the Prometheus text format with every family of
/// [`FAMILIES`], each of its type, and no other.
async fn scrape(addr: SocketAddr) -> Exposition {
    let (code, content_type, body) = get_with_type(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let exposition = parse_exposition(&body);
    let expected: HashMap<String, String> = FAMILIES
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
        .collect();
    assert_eq!(exposition.types, expected);
    exposition
}

#[tokio::test]
async fn metrics_follow_the_chat_and_healthz_follows_the_listener_and_the_store() {
    let server = start().await;
    let addr = server.handle.local_addr();
    let exporter = metrics::serve::<wur2_tokio::Tokio, _>(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        server.metrics.clone(),
        server.handle.status(),
        server.store.clone(),
    )
    .expect("serve metrics");
    let metrics_addr = exporter.local_addr();

    let before = scrape(metrics_addr).await;
    for (name, kind) in FAMILIES {
        if kind != "histogram" && name != "wur2_accepting" {
            assert_eq!(before.value(name), 0.0, "{name}");
        }
    }
    assert_eq!(before.value("wur2_accepting"), 1.0);
    assert_eq!(
        before.value("wur2_store_request_duration_seconds_count{request=\"register\"}"),
        0.0
    );

    let mut alice =
        Client::register(TcpStream::connect(addr).await.expect("connect"), "alice").await;
    let mut bob = Client::register(TcpStream::connect(addr).await.expect("connect"), "bob").await;
    alice.send("hello metrics").await;
    bob.expect("hello metrics").await;
    alice.send("/msg bob psst").await;
    bob.expect("psst").await;
    let mut mallory = Client {
        stream: BufReader::new(TcpStream::connect(addr).await.expect("connect")),
        name: "mallory".to_owned(),
    };
    mallory.send("/login alice wrong-password").await;
    mallory.expect("invalid username or password").await;

    let after = scrape(metrics_addr).await;
    for (name, kind) in FAMILIES {
        if kind == "counter" {
            assert!(after.value(name) >= before.value(name), "{name} went down");
        }
    }
    assert_eq!(after.value("wur2_connections"), 3.0);
    assert_eq!(after.value("wur2_users_online"), 2.0);
    assert_eq!(after.value("wur2_connections_opened_total"), 3.0);
    assert_eq!(after.value("wur2_logins_total"), 2.0);
    assert_eq!(after.value("wur2_login_failures_total"), 1.0);
    assert_eq!(after.value("wur2_channel_messages_total"), 1.0);
    assert_eq!(after.value("wur2_direct_messages_total"), 1.0);
    // Two welcomes, the message and the private message at least.
    assert!(after.value("wur2_deliveries_total") >= 4.0);
    assert!(after.value("wur2_sent_bytes_total") > 0.0);
    // Two registrations, two messages, one login.
    assert!(after.value("wur2_lines_received_total") >= 5.0);
    assert!(after.value("wur2_store_requests_total") >= 5.0);
    let register = |series: &str| {
        after.value(&format!(
            "wur2_store_request_duration_seconds_{series}{{request=\"register\"}}"
        ))
    };
    assert_eq!(register("count"), 2.0);
    assert!(register("sum") > 0.0);
    assert_eq!(
        after.value("wur2_store_request_duration_seconds_bucket{request=\"register\",le=\"+Inf\"}"),
        2.0
    );
    assert_eq!(
        after.value("wur2_store_request_duration_seconds_count{request=\"login\"}"),
        1.0
    );

    assert_eq!(
        get(metrics_addr, "/healthz").await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(get(metrics_addr, "/nothing").await.0, 404);

    // The store goes away: unhealthy, while the listener still accepts.
    server.store.close().await;
    let (code, body) = get(metrics_addr, "/healthz").await;
    assert_eq!(code, 503);
    assert!(body.starts_with("store:"), "{body}");

    server.handle.shutdown().await.expect("shutdown");
    let (code, body) = get(metrics_addr, "/healthz").await;
    assert_eq!(code, 503);
    assert!(body.contains("not accepting"), "{body}");
    assert_eq!(scrape(metrics_addr).await.value("wur2_accepting"), 0.0);
    exporter.stop();
    drop(server.store);
    let _ = tokio::time::timeout(STEP, server.writer).await;
}

#[tokio::test]
async fn idle_connections_to_the_metrics_port_cannot_keep_healthz_waiting() {
    let server = start().await;
    let exporter = metrics::serve::<wur2_tokio::Tokio, _>(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        server.metrics.clone(),
        server.handle.status(),
        server.store.clone(),
    )
    .expect("serve metrics");
    let metrics_addr = exporter.local_addr();
    // More silent connections than the exporter serves at once.
    let mut idle = Vec::new();
    for _ in 0..metrics::MAX_REQUESTS + 16 {
        idle.push(TcpStream::connect(metrics_addr).await.expect("connect"));
    }
    let asked = std::time::Instant::now();
    assert_eq!(
        get(metrics_addr, "/healthz").await,
        (200, "ok\n".to_owned())
    );
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "/healthz took {took:?} behind {} idle connections",
        idle.len()
    );
    // The silent connections were closed, not kept.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(STEP, idle[0].read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    exporter.stop();
    server.handle.shutdown().await.expect("shutdown");
    drop(server.store);
    let _ = tokio::time::timeout(STEP, server.writer).await;
}

/// A self-signed certificate for `localhost`, written as PEM files in `dir`.
fn write_certificate(
    dir: &std::path::Path,
    tag: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let cert_path = dir.join(format!("{tag}.crt"));
    let key_path = dir.join(format!("{tag}.key"));
    std::fs::write(&cert_path, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_path, certified.key_pair.serialize_pem()).expect("write key");
    (cert_path, key_path, certified.cert.der().to_vec())
}

/// A TLS client that trusts only `der`.
async fn tls_connect(
    addr: SocketAddr,
    der: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls_handshake(tcp, der).await
}

/// The client side of a TLS handshake on `tcp`, trusting only `der`.
async fn tls_handshake(
    tcp: TcpStream,
    der: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .expect("a root");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    tokio::time::timeout(STEP, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
}

#[tokio::test]
async fn a_tls_client_chats_with_a_plain_client_and_survives_a_certificate_reload() {
    let mut server = start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cert, key, first_der) = write_certificate(dir.path(), "server");
    let acceptor = TlsAcceptor::from_pem_files(&cert, &key).expect("load the certificate");
    let tls_addr = server
        .handle
        .serve_tls(
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            acceptor.clone(),
        )
        .expect("serve TLS");

    let tls = tls_connect(tls_addr, &first_der)
        .await
        .expect("TLS connect");
    let mut alice = Client::register(tls, "alice").await;
    let plain = TcpStream::connect(server.handle.local_addr())
        .await
        .expect("connect");
    let mut bob = Client::register(plain, "bob").await;
    alice.send("hello from TLS").await;
    bob.expect("hello from TLS").await;
    bob.send("hello from plain").await;
    alice.expect("hello from plain").await;

    // A renewal: new files in place, reloaded; the open TLS session goes on.
    let (_, _, second_der) = write_certificate(dir.path(), "server");
    acceptor.reload().expect("reload");
    let tls = tls_connect(tls_addr, &second_der)
        .await
        .expect("TLS connect after reload");
    let mut carol = Client::register(tls, "carol").await;
    alice.send("still here").await;
    bob.expect("still here").await;
    carol.expect("still here").await;
    assert!(
        tls_connect(tls_addr, &first_der).await.is_err(),
        "the old certificate is no longer served"
    );

    // Alice's and Carol's handshakes completed; the client refused the old certificate
    // (the server learns it from the client's alert, a moment later).
    let status = server.handle.status();
    assert_eq!(status.tls_handshakes(), 2);
    tokio::time::timeout(STEP, async {
        while status.tls_handshake_failures() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the failed handshake is counted");
    assert_eq!(status.tls_handshake_failures(), 1);
    let exporter = metrics::serve::<wur2_tokio::Tokio, _>(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        server.metrics.clone(),
        status,
        server.store.clone(),
    )
    .expect("serve metrics");
    let scraped = scrape(exporter.local_addr()).await;
    assert_eq!(scraped.value("wur2_tls_handshakes_total"), 2.0);
    assert_eq!(scraped.value("wur2_tls_handshake_failures_total"), 1.0);
    exporter.stop();

    // A bad renewal keeps the certificate in use.
    std::fs::write(&key, "not a key").expect("write");
    assert!(acceptor.reload().is_err());
    let tls = tls_connect(tls_addr, &second_der)
        .await
        .expect("TLS connect after a bad reload");
    Client::register(tls, "dave").await;

    server.handle.shutdown().await.expect("shutdown");
    alice.expect("").await;
    drop(server.store);
    let _ = tokio::time::timeout(STEP, server.writer).await;
}

/// Whether the server closes `stream` within a second (end of stream or a reset), without
/// a byte.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn silent_connections_from_one_address_cannot_take_every_tls_handshake() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let (store, writer) = Store::open(&url, store_config()).await.expect("open");
    let writer = tokio::spawn(writer.run());
    let options = Options {
        max_handshakes_per_address: 3,
        ..Options::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut handle =
        wur2_tokio::serve_with(listener, store.clone(), config(), options).expect("serve");
    let (cert, key, der) = write_certificate(dir.path(), "server");
    let acceptor = TlsAcceptor::from_pem_files(&cert, &key).expect("load the certificate");
    let tls_addr = handle
        .serve_tls(
            TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            acceptor,
        )
        .expect("serve TLS");

    // Three connections from 127.0.0.1 that never say hello hold that address's handshakes.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(tls_addr).await.expect("connect"));
    }
    let mut fourth = TcpStream::connect(tls_addr).await.expect("connect");
    assert!(
        closed_by_server(&mut fourth).await,
        "a fourth is closed at once"
    );
    assert!(
        !closed_by_server(&mut silent[0]).await,
        "the first three wait"
    );

    // Another address is served meanwhile.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    let tcp = socket
        .connect(tls_addr)
        .await
        .expect("connect from 127.0.0.2");
    let other = tls_handshake(tcp, &der).await.expect("TLS from 127.0.0.2");
    Client::register(other, "elsewhere").await;

    // Once the silent ones are gone, the address is served again.
    drop(silent);
    let again = tokio::time::timeout(STEP, async {
        loop {
            if let Ok(tls) = tls_connect(tls_addr, &der).await {
                return tls;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a handshake from 127.0.0.1 again");
    Client::register(again, "back").await;

    handle.shutdown().await.expect("shutdown");
    drop(store);
    let _ = tokio::time::timeout(STEP, writer).await;
}
