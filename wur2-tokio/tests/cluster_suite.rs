//! The end-to-end suite (`wur2-testkit`) against a cluster: three nodes of the Tokio driver
//! in one process, sharing one store, their buses joined in memory (`in_process_cluster`),
//! the scenarios' clients spread round-robin over the nodes ([`Target::cluster`]), with
//! text and JSON clients, on SQLite and (when configured) PostgreSQL.
//!
//! In process rather than `wur2` binaries over NATS: the suite starts a fresh server for
//! every scenario and database (close to a hundred clusters a run), which stays fast only
//! in process; what NATS adds (the real transport, its reconnections) is what
//! `cluster_nats.rs` tests with the real binary. On PostgreSQL every node opens its own
//! store (its own pool and append writer), as separate `wur2` processes would; on SQLite
//! (which the binary refuses in cluster mode) the nodes share one store, one writer for
//! one file.
//!
//! What a cluster makes different, and how the scenarios take it: presence is eventually
//! consistent (a login on one node is seen on the others once the bus carried it), so the
//! scenarios wait for it with a bounded poll (`Client::users_seen`) where they depend on
//! it; limits counted per address (connections, failed logins, registrations) are each
//! node's own, so those scenarios put all their clients on one node (`Target::first_node`).

mod in_process_cluster;

use std::path::PathBuf;
use std::time::Duration;

use in_process_cluster::Node;
use wur2_engine::Config;
use wur2_store::Store;
use wur2_testkit::{Target, store_config};
use wur2_tokio::Options;

/// The node names of every cluster of this suite.
const NODES: [&str; 3] = ["a", "b", "c"];

/// Three-node clusters on a multi-threaded Tokio runtime of their own.
struct Cluster;

/// A running cluster: its runtime, its nodes and their stores' writers.
struct ClusterServer {
    runtime: tokio::runtime::Runtime,
    nodes: Vec<Node>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    target: Target,
}

/// Opens the store at `url`; its writer runs on the current runtime.
async fn open(url: &str) -> (Store, tokio::task::JoinHandle<()>) {
    let (store, writer) = Store::open(url, store_config())
        .await
        .expect("open the store");
    (store, tokio::spawn(writer.run()))
}

impl wur2_testkit::Driver for Cluster {
    type Server = ClusterServer;

    fn start(&self, url: &str, config: Config, files_dir: Option<PathBuf>) -> ClusterServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the cluster");
        let (nodes, writers) = runtime.block_on(async {
            let mut stores = Vec::new();
            let mut writers = Vec::new();
            if url.starts_with("sqlite:") {
                let (store, writer) = open(url).await;
                stores = vec![store; NODES.len()];
                writers.push(writer);
            } else {
                for _ in NODES {
                    let (store, writer) = open(url).await;
                    stores.push(store);
                    writers.push(writer);
                }
            }
            let options = Options {
                shutdown_timeout: Duration::from_secs(10),
                files_dir,
                ..Options::default()
            };
            let nodes = in_process_cluster::start(
                NODES.into_iter().zip(stores).collect(),
                &config,
                &options,
            )
            .await;
            (nodes, writers)
        });
        let addrs: Vec<_> = nodes.iter().map(|node| node.server.local_addr()).collect();
        ClusterServer {
            runtime,
            nodes,
            writers,
            target: Target::cluster(&addrs),
        }
    }
}

impl wur2_testkit::Server for ClusterServer {
    fn addr(&self) -> Target {
        self.target
    }

    fn stop(self) {
        self.runtime.block_on(async {
            for node in self.nodes {
                node.server.shutdown().await.expect("clean shutdown");
            }
            for writer in self.writers {
                tokio::time::timeout(Duration::from_secs(10), writer)
                    .await
                    .expect("the store writer stops")
                    .expect("the store writer does not panic");
            }
        });
    }
}

wur2_testkit::suite!(Cluster);
