//! Nodes of one cluster in one process, through the embedder API: each node's bus joined
//! to the others' by a small in-memory transport (the `wur2` binary's is NATS), in order per
//! publisher, as NATS core keeps it.
#![allow(dead_code)]

use wur2_engine::{ClusterConfig, Config, Topic};
use wur2_testkit::Target;
use wur2_tokio::{BusInbox, BusPort, Options, ServerHandle, Storage};

/// One node: its server and its bus's inbox (to take the bus down and up).
pub struct Node {
    /// The node's server.
    pub server: ServerHandle,
    /// What its transport hands it; also its bus's state.
    pub inbox: BusInbox,
}

impl Node {
    /// Where the node serves chat.
    pub fn target(&self) -> Target {
        Target::plain(self.server.local_addr())
    }
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

/// Starts one node per `(name, store)` on a free loopback port, each serving `config` as
/// that node (with a message id origin of its own) with `options`; joins their buses and
/// waits until every bus is up. Call from within a Tokio runtime.
pub async fn start<S: Storage>(
    nodes: Vec<(&str, S)>,
    config: &Config,
    options: &Options,
) -> Vec<Node> {
    let mut ports = Vec::new();
    let mut started = Vec::new();
    let mut inboxes = Vec::new();
    for (n, (name, store)) in nodes.into_iter().enumerate() {
        let (link, port) = wur2_tokio::bus();
        let config = Config {
            cluster: Some(ClusterConfig::new(name)),
            message_id_origin: config.message_id_origin + n as u64,
            ..config.clone()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let server = wur2_tokio::serve_with_bus(listener, store, config, options.clone(), link)
            .expect("serve");
        inboxes.push((name.to_string(), port.inbox()));
        started.push(Node {
            server,
            inbox: port.inbox(),
        });
        ports.push(port);
    }
    for port in ports {
        tokio::spawn(carry(port, inboxes.clone()));
    }
    for node in &started {
        node.inbox.connected().await.expect("the server listens");
    }
    started
}
