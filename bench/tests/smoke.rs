//! The benchmark's pieces work together: the load generator against the bare relay and
//! against an in-process WUR2 server (plain, over TLS, in JSON mode, over WebSocket), a few
//! clients and messages, nothing lost. Fast on purpose: the real benchmark is `bench/run.sh`, never part of the
//! test command.

use std::time::Duration;

use wur2_bench::load::{self, Auth, LoadConfig, Protocol};
use wur2_bench::transport::TlsClient;

fn small(addr: std::net::SocketAddr, protocol: Protocol) -> LoadConfig {
    LoadConfig {
        addrs: vec![addr],
        protocol,
        clients: 5,
        senders: 2,
        messages: 50,
        payload: 64,
        window: 4,
        settle: Duration::ZERO,
        server_pids: vec![std::process::id()],
        timeout: Duration::from_secs(20),
        ..LoadConfig::default()
    }
}

#[tokio::test]
async fn load_generator_and_relay_lose_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let relay = tokio::spawn(wur2_bench::relay::serve(listener));

    let report = load::run(small(addr, Protocol::Line))
        .await
        .expect("setup works");
    assert_eq!(report.clients, 5);
    assert_eq!(report.expected, 2 * 50 * 4);
    assert_eq!(report.received, report.expected);
    assert_eq!((report.lost, report.duplicates), (0, 0));
    assert!(!report.timed_out);
    assert!(report.deliveries_per_sec > 0.0 && report.p50_us <= report.p999_us);
    assert!(report.memory_after.is_some_and(|m| m.rss_kib > 0));

    // Paced sending too.
    let paced = load::run(LoadConfig {
        rate: Some(200.0),
        messages: 10,
        ..small(addr, Protocol::Line)
    })
    .await
    .expect("setup works");
    assert_eq!((paced.received, paced.lost), (2 * 10 * 4, 0));
    relay.abort();
}

/// Clients split over three addresses (the relay itself and two forwarders in front of
/// it, standing in for the nodes of a cluster) are counted as one run: every delivery
/// across "nodes" arrives once, and each address got its round-robin share.
#[tokio::test]
async fn clients_over_several_addresses_are_one_run() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relay_addr = listener.local_addr().expect("address");
    let relay = tokio::spawn(wur2_bench::relay::serve(listener));
    let mut addrs = vec![relay_addr];
    let mut forwarders = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..2 {
        let front = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addrs.push(front.local_addr().expect("address"));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        accepted.push(std::sync::Arc::clone(&count));
        forwarders.push(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = front.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(relay_addr).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    let report = load::run(LoadConfig {
        addrs: addrs.clone(),
        clients: 7,
        ..small(relay_addr, Protocol::Line)
    })
    .await
    .expect("setup works");
    assert_eq!(report.clients, 7);
    // Clients 0, 3, 6 on the relay; 1, 4 and 2, 5 through the forwarders.
    assert_eq!(report.clients_per_addr, [3, 2, 2]);
    let through = |i: usize| accepted[i].load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!((through(0), through(1)), (2, 2));
    // Sender 0 is on the relay, sender 1 behind the first forwarder: each one's messages
    // reach the members behind the other addresses too.
    assert_eq!(report.expected, 2 * 50 * 6);
    assert_eq!(report.received, report.expected);
    assert_eq!((report.lost, report.duplicates), (0, 0));
    assert!(report.to_line().contains(" addrs=3 clients_per_addr=3/2/2"));
    for forwarder in forwarders {
        forwarder.abort();
    }
    relay.abort();
}

/// How the load generator's clients reach the WUR2 server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Over {
    Tcp,
    Tls,
    /// Plain TCP in JSON lines mode.
    Json,
    /// The web listener's WebSocket.
    WebSocket,
}

#[tokio::test]
async fn load_generator_and_wur2_lose_nothing() {
    wur2_loses_nothing(Over::Tcp).await;
}

#[tokio::test]
async fn load_generator_over_tls_and_wur2_lose_nothing() {
    wur2_loses_nothing(Over::Tls).await;
}

#[tokio::test]
async fn load_generator_in_json_mode_and_wur2_lose_nothing() {
    wur2_loses_nothing(Over::Json).await;
}

#[tokio::test]
async fn load_generator_over_websocket_and_wur2_lose_nothing() {
    wur2_loses_nothing(Over::WebSocket).await;
}

/// Registers, then logs in, a few clients of an in-process WUR2 server, plain, over TLS
/// (a self-signed certificate for `localhost` the load generator trusts), in JSON lines
/// mode or over the WebSocket, and checks that every message arrives once.
async fn wur2_loses_nothing(over: Over) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    // The cheapest argon2 cost: this test is about messages, not hashing.
    let store_config = wur2_store::StoreConfig {
        password: wur2_store::PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..wur2_store::StoreConfig::default()
    };
    let (store, writer) = wur2_store::Store::open(&url, store_config)
        .await
        .expect("store opens");
    let writer = tokio::spawn(writer.run());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut addr = listener.local_addr().expect("address");
    let config = wur2_engine::Config {
        flood_lines_per_second: 0,
        ..wur2_engine::Config::default()
    };
    let mut server = wur2_tokio::serve(listener, store.clone(), config).expect("server starts");
    let mut client_tls = None;
    if over == Over::WebSocket {
        let web_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addr = server
            .serve_web(web_listener, wur2_tokio::WebOptions::default())
            .expect("serve web");
    }
    if over == Over::Tls {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
        let acceptor = wur2_tokio::TlsAcceptor::from_pem_files(&cert, &key).expect("load it");
        let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        addr = server.serve_tls(tls_listener, acceptor).expect("serve TLS");
        client_tls = Some(TlsClient {
            ca: cert,
            server_name: "localhost".to_owned(),
        });
    }
    let small = || LoadConfig {
        tls: client_tls.clone(),
        json: over == Over::Json,
        websocket: over == Over::WebSocket,
        ..small(addr, Protocol::Wur2)
    };

    let first = load::run(small()).await.expect("registration works");
    assert_eq!(first.received, first.expected);
    assert_eq!((first.lost, first.duplicates), (0, 0));
    // The second run logs the same accounts in, as bench/run.sh does on repetitions.
    let again = load::run(LoadConfig {
        auth: Auth::Login,
        ..small()
    })
    .await
    .expect("login works");
    assert_eq!((again.received, again.lost), (again.expected, 0));

    server.shutdown().await.expect("clean shutdown");
    drop(store);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// The scale modes (issue 20) against an in-process WUR2 server: tokens asked for once
/// with `/token` (`get_tokens`, idempotent), clients logging in with `/resume` from two
/// loopback source addresses, and reconnect storms of token and password logins while the
/// run's own clients send, every storm client welcomed and nothing lost.
#[tokio::test]
async fn tokens_source_addresses_and_storms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("scale.db").display());
    let store_config = wur2_store::StoreConfig {
        password: wur2_store::PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..wur2_store::StoreConfig::default()
    };
    let (store, writer) = wur2_store::Store::open(&url, store_config)
        .await
        .expect("store opens");
    let writer = tokio::spawn(writer.run());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let config = wur2_engine::Config {
        flood_lines_per_second: 0,
        max_registrations_per_address: 0,
        max_registrations_per_minute: 0,
        ..wur2_engine::Config::default()
    };
    let server = wur2_tokio::serve(listener, store.clone(), config).expect("server starts");

    // Setup: tokens for l0…l4 (the run's clients) and u0…u5 (the storms).
    let tokens_path = dir.path().join("tokens");
    for (prefix, clients) in [("l", 5), ("u", 6)] {
        let asked = load::get_tokens(
            &LoadConfig {
                clients,
                senders: 0,
                user_prefix: prefix.to_owned(),
                ..small(addr, Protocol::Wur2)
            },
            &tokens_path,
        )
        .await
        .expect("tokens");
        assert_eq!(asked.asked, clients);
    }
    let again = load::get_tokens(
        &LoadConfig {
            clients: 6,
            senders: 0,
            ..small(addr, Protocol::Wur2)
        },
        &tokens_path,
    )
    .await
    .expect("tokens again");
    assert_eq!(
        (again.tokens, again.asked),
        (11, 0),
        "a token is asked for once"
    );
    let tokens = std::sync::Arc::new(load::read_tokens(&tokens_path).expect("read tokens"));
    assert!(tokens["u3"].len() == 32 && tokens.contains_key("l4"));

    let two_sources = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let resumed = load::run(LoadConfig {
        auth: Auth::Token,
        user_prefix: "l".to_owned(),
        tokens: tokens.clone(),
        source_ips: two_sources.clone(),
        ..small(addr, Protocol::Wur2)
    })
    .await
    .expect("token logins work");
    assert_eq!((resumed.received, resumed.lost), (resumed.expected, 0));
    assert!(resumed.memory_start.is_some() && resumed.storm.is_none());

    for storm_auth in [Auth::Token, Auth::Login] {
        let report = load::run(LoadConfig {
            auth: Auth::Token,
            user_prefix: "l".to_owned(),
            tokens: tokens.clone(),
            source_ips: two_sources.clone(),
            rate: Some(100.0),
            messages: 20,
            storm: Some(load::Storm {
                clients: 6,
                auth: storm_auth,
                user_prefix: "u".to_owned(),
                max_retries: 20,
            }),
            ..small(addr, Protocol::Wur2)
        })
        .await
        .expect("storm run works");
        assert_eq!((report.received, report.lost), (report.expected, 0));
        let storm = report.storm.clone().expect("a storm report");
        assert_eq!((storm.welcomed, storm.failed), (6, 0), "{storm:?}");
        assert!(
            storm.last_welcome_secs > 0.0 && storm.median_welcome_secs <= storm.last_welcome_secs
        );
        let line = report.to_line();
        assert!(
            line.contains(" storm_clients=6 ") && line.contains(" p99_storm_us="),
            "{line}"
        );
    }

    server.shutdown().await.expect("clean shutdown");
    drop(store);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}
