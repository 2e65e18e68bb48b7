//! TLS is a transport of the connection task, not a bridge: a TLS client costs the server
//! its one socket. Alone in its test binary, so no other test's sockets are counted.

use std::time::Duration;

use wur2_store::Store;
use wur2_testkit::scenarios::{Client, Event, Mode, unique};
use wur2_testkit::{block_on, config, store_config};
use wur2_tokio::Options;

/// Sockets this process holds now (Linux: `/proc/self/fd` entries that are sockets).
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_link(entry.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[test]
fn a_tls_client_costs_the_server_one_socket_and_no_loopback_pair() {
    const CLIENTS: usize = 20;
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the server");
    let (mut handle, writer) = runtime.block_on(async {
        let (store, writer) = Store::open(&url, store_config()).await.expect("open");
        let writer = tokio::spawn(writer.run());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let handle =
            wur2_tokio::serve_with(listener, store, config(), Options::default()).expect("serve");
        (handle, writer)
    });
    let target = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        wur2_testkit::target(&mut handle, Some(listener))
    });

    // The clients' runtime first: its signal driver holds a socket of its own.
    block_on(async {});
    let before = open_sockets();
    let clients = block_on(async {
        let mut clients = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            let name = unique("tls");
            clients.push(Client::register(target, Mode::Text, &name).await);
        }
        clients
    });
    // Every client is logged in, so the server has finished with each handshake. Client
    // and server share this process: each TLS client is exactly its own socket and the
    // server's end of it (a bridge through loopback would add a pair more per client).
    assert_eq!(open_sockets() - before, 2 * CLIENTS);

    let mut clients = clients;
    block_on(async {
        let text = "over TLS, straight to the engine";
        clients[0].send(text).await;
        // Its PONG: the line was handled, so its copies are queued for everyone.
        clients[0].barrier().await;
        let last = clients.last_mut().expect("clients");
        let events = last.barrier().await;
        assert!(
            events
                .iter()
                .any(|event| matches!(event, Event::Message { text: got, .. } if got == text)),
            "{events:?}"
        );
    });
    runtime.block_on(async {
        handle.shutdown().await.expect("clean shutdown");
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the store writer stops")
            .expect("the store writer does not panic");
    });
}
