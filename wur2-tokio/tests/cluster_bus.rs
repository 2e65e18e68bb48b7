//! Two nodes of one cluster in one process, through the embedder API: their buses joined
//! by a small in-memory transport (the `wur2` binary's is NATS), their store shared. What
//! this protects is the driver's side of cluster mode: publications leave in order, what
//! arrives reaches the engine, the bus going down and up again is survived.

use std::time::{Duration, Instant};

use wur2_engine::{ClusterConfig, Config, Topic};
use wur2_store::Store;
use wur2_testkit::scenarios::{Client, Event, Mode, unique};
use wur2_testkit::{Target, store_config};
use wur2_tokio::{BusInbox, BusPort, Options, ServerHandle};

/// One node: its server and its bus's inbox.
struct Node {
    server: ServerHandle,
    inbox: BusInbox,
}

/// Carries `port`'s publications to every node `topic` names (the publisher included, as
/// NATS does); [`BusPort::next_publication`] holds them while the bus is down.
async fn carry(mut port: BusPort, nodes: Vec<(String, BusInbox)>) {
    while let Some(publication) = port.next_publication().await {
        for (name, inbox) in &nodes {
            let to_it = match &publication.topic {
                Topic::All => true,
                Topic::Node(node) => node == name,
            };
            if to_it {
                let _ = inbox.received(publication.payload.clone()).await;
            }
        }
    }
}

/// Nodes `names` on one store, their buses joined and up.
async fn cluster(names: &[&str]) -> (Vec<Node>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("cluster.db").display());
    let (store, writer) = Store::open(&url, store_config()).await.expect("open");
    tokio::spawn(writer.run());
    let mut ports = Vec::new();
    let mut nodes = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let (link, port) = wur2_tokio::bus();
        let config = Config {
            cluster: Some(ClusterConfig::new(*name)),
            message_id_origin: wur2_testkit::config().message_id_origin + n as u64,
            ..wur2_testkit::config()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server =
            wur2_tokio::serve_with_bus(listener, store.clone(), config, Options::default(), link)
                .expect("serve");
        nodes.push(Node {
            server,
            inbox: port.inbox(),
        });
        ports.push(port);
    }
    let inboxes: Vec<(String, BusInbox)> = names
        .iter()
        .zip(&nodes)
        .map(|(name, node)| (name.to_string(), node.inbox.clone()))
        .collect();
    for port in ports {
        tokio::spawn(carry(port, inboxes.clone()));
    }
    for node in &nodes {
        node.inbox.connected().await.expect("the server listens");
    }
    (nodes, dir)
}

fn target(node: &Node) -> Target {
    Target::plain(node.server.local_addr())
}

/// Asks `/list` until `user` is in it (presence crosses the bus), within a few seconds.
async fn wait_listed(client: &mut Client, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let users = client.users().await;
        if users.iter().any(|u| u == user) {
            return;
        }
        assert!(Instant::now() < deadline, "{user} never listed: {users:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_message_crosses_the_bus_once_and_list_counts_every_node() {
    let (nodes, _dir) = cluster(&["a", "b"]).await;
    let (alice, bob) = (unique("al"), unique("bo"));
    let mut on_a = Client::register(target(&nodes[0]), Mode::Text, &alice).await;
    let mut on_b = Client::register(target(&nodes[1]), Mode::Text, &bob).await;
    wait_listed(&mut on_b, &alice).await;
    wait_listed(&mut on_a, &bob).await;

    on_a.send("hello from a").await;
    on_b.expect(Event::message("Global", &alice, "hello from a"))
        .await;
    on_a.send("second").await;
    let hello = Event::message("Global", &alice, "hello from a");
    let second = Event::message("Global", &alice, "second");
    assert_eq!(
        on_b.count_until(&hello, second).await,
        0,
        "a message crosses once"
    );
    for node in nodes {
        node.server.shutdown().await.expect("stops");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_bus_is_down_local_chat_works_and_publications_wait_for_it() {
    let (nodes, _dir) = cluster(&["a", "b"]).await;
    let (alice, carol, bob) = (unique("al"), unique("ca"), unique("bo"));
    let mut alice_a = Client::register(target(&nodes[0]), Mode::Text, &alice).await;
    let mut carol_a = Client::register(target(&nodes[0]), Mode::Text, &carol).await;
    let mut bob_b = Client::register(target(&nodes[1]), Mode::Text, &bob).await;
    wait_listed(&mut bob_b, &alice).await;

    nodes[0]
        .inbox
        .disconnected()
        .await
        .expect("the server runs");
    let bus = nodes[0].server.status().bus().expect("cluster mode");
    assert!(!bus.up);
    alice_a.send("while down").await;
    carol_a
        .expect(Event::message("Global", &alice, "while down"))
        .await;
    let waiting = nodes[0].server.status().bus().expect("cluster mode");
    assert!(waiting.queued >= 1, "{waiting:?}");

    nodes[0]
        .inbox
        .connected()
        .await
        .expect("the server listens");
    bob_b
        .expect(Event::message("Global", &alice, "while down"))
        .await;
    alice_a.send("after").await;
    bob_b
        .expect(Event::message("Global", &alice, "after"))
        .await;
    assert_eq!(
        nodes[0].server.status().bus().map(|bus| bus.dropped),
        Some(0)
    );
    for node in nodes {
        node.server.shutdown().await.expect("stops");
    }
}
