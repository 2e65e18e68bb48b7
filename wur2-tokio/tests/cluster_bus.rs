//! Two nodes of one cluster in one process, through the embedder API: their buses joined
//! by a small in-memory transport (the `wur2` binary's is NATS), their store shared. What
//! this protects is the driver's side of cluster mode: publications leave in order, what
//! arrives reaches the engine, the bus going down and up again is survived.

mod in_process_cluster;

use std::time::Duration;

use in_process_cluster::Node;
use wur2_store::Store;
use wur2_testkit::scenarios::{Client, Event, Mode, unique};
use wur2_testkit::store_config;
use wur2_tokio::Options;

/// Nodes `names` on one SQLite store, their buses joined and up.
async fn cluster(names: &[&str]) -> (Vec<Node>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("cluster.db").display());
    let (store, writer) = Store::open(&url, store_config()).await.expect("open");
    tokio::spawn(writer.run());
    let nodes = names.iter().map(|name| (*name, store.clone())).collect();
    let nodes =
        in_process_cluster::start(nodes, &wur2_testkit::config(), &Options::default()).await;
    (nodes, dir)
}

/// Asks `/list` until `user` is in it (presence crosses the bus), within a few seconds.
async fn wait_listed(client: &mut Client, user: &str) {
    let listed = |users: &[String]| users.iter().any(|u| u == user);
    client
        .list_until(
            format_args!("{user} listed"),
            Duration::from_secs(10),
            listed,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_message_crosses_the_bus_once_and_list_counts_every_node() {
    let (nodes, _dir) = cluster(&["a", "b"]).await;
    let (alice, bob) = (unique("al"), unique("bo"));
    let mut on_a = Client::register(nodes[0].target(), Mode::Text, &alice).await;
    let mut on_b = Client::register(nodes[1].target(), Mode::Text, &bob).await;
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
    let mut alice_a = Client::register(nodes[0].target(), Mode::Text, &alice).await;
    let mut carol_a = Client::register(nodes[0].target(), Mode::Text, &carol).await;
    let mut bob_b = Client::register(nodes[1].target(), Mode::Text, &bob).await;
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
