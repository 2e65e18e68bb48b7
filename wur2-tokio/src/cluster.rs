//! Cluster mode of the `wur2` binary: its flags, and NATS as the bus between nodes.
//!
//! The engine decides what every node must learn and parses what the others publish; this
//! module only moves bytes. It maps the engine's topics to two subjects, `<prefix>.all`
//! and `<prefix>.node.<name>`, subscribes to both before the engine first says hello, and
//! publishes in the engine's order from one task. When NATS goes away, `async-nats`
//! reconnects by itself (and subscribes again before anything else is sent); this module
//! turns its connection events into the bus's up and down, so the engine asks every node
//! for its state again when the bus is back. It holds no chat state.

use std::task::Poll;
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, ServerAddr, Subscriber};
use futures_lite::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use wur2_engine::{ClusterConfig, Topic, is_valid_username};
use wur2_tokio::{BusInbox, BusPort, Publication};

/// How long a start waits for NATS to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the NATS client checks that the server still answers (a dead link that
/// closes no socket is found within about two of these).
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long a stopping node may take to hand its last publications to NATS.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between attempts to reach NATS again after a loss: short and flat, so that when
/// NATS comes back every node is back within this of the others.
const RECONNECT_DELAY: Duration = Duration::from_millis(250);
/// After reconnecting, how long publications still wait: NATS core delivers only to
/// subscriptions that exist when a message arrives, and the other nodes subscribe again
/// within [`RECONNECT_DELAY`] of this one, so what waited during the loss reaches them.
const RESUBSCRIBE_GRACE: Duration = Duration::from_millis(600);

/// The flags of cluster mode.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ClusterArgs {
    /// Run as one node of a cluster whose nodes meet on this NATS server
    /// (`nats://host:4222`; several comma-separated). Needs --node-name, and a PostgreSQL
    /// database that every node of the cluster shares.
    #[arg(
        long = "cluster",
        env = "WUR2_CLUSTER",
        value_name = "NATS_URL",
        hide_env_values = true
    )]
    pub nats_url: Option<String>,
    /// This node's name, unique in the cluster: 1 to 32 ASCII letters, digits, `_` and
    /// `-`. Required with --cluster.
    #[arg(long, env = "WUR2_NODE_NAME")]
    pub node_name: Option<String>,
    /// The first part of every NATS subject of the cluster (`<prefix>.all`,
    /// `<prefix>.node.<name>`): clusters sharing one NATS need different prefixes.
    #[arg(long, env = "WUR2_CLUSTER_SUBJECT_PREFIX", default_value = "wur2")]
    pub cluster_subject_prefix: String,
}

/// A cluster this node is to join, its flags checked.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    servers: Vec<ServerAddr>,
    /// The NATS URL(s) without passwords, for messages.
    shown: String,
    node: String,
    subjects: Subjects,
}

impl ClusterArgs {
    /// The cluster these flags ask for (`None` without --cluster), checked against the
    /// database every node must share (`database_url`; `location` describes it).
    pub(crate) fn cluster(
        &self,
        database_url: &str,
        location: &str,
    ) -> anyhow::Result<Option<Cluster>> {
        let Some(url) = self
            .nats_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
        else {
            if self.node_name.is_some() {
                bail!("--node-name needs --cluster <nats-url>");
            }
            return Ok(None);
        };
        let scheme = database_url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("postgres" | "postgresql")) {
            bail!(
                "cluster mode needs PostgreSQL: every node must share one store (the database \
                 is {location}; set DATABASE_URL=postgres://…)"
            );
        }
        let Some(node) = self.node_name.as_deref().map(str::trim) else {
            bail!("--cluster needs --node-name <name>: this node's name, unique in the cluster");
        };
        if !is_valid_node_name(node) {
            bail!(
                "--node-name {node:?}: 1 to 32 ASCII letters, digits, `_` and `-` (a name \
                 in NATS subjects)"
            );
        }
        let prefix = self.cluster_subject_prefix.trim();
        if !is_valid_subject_prefix(prefix) {
            bail!(
                "--cluster-subject-prefix {prefix:?}: dot-separated tokens without spaces, \
                 `*` or `>`"
            );
        }
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<ServerAddr>()
                    .with_context(|| format!("--cluster {}: not a NATS URL", crate::redact(part)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shown = url
            .split(',')
            .map(|part| crate::redact(part.trim()))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Some(Cluster {
            servers,
            shown,
            node: node.to_owned(),
            subjects: Subjects::new(prefix, node),
        }))
    }
}

/// A node name the engine accepts that is also one NATS subject token.
fn is_valid_node_name(name: &str) -> bool {
    is_valid_username(name) && !name.contains('.')
}

/// Dot-separated tokens, none empty, none with a space or a wildcard.
fn is_valid_subject_prefix(prefix: &str) -> bool {
    prefix.split('.').all(|token| {
        !token.is_empty()
            && token
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
    })
}

/// The subjects of one cluster, seen from one node.
#[derive(Debug, Clone)]
struct Subjects {
    prefix: String,
    /// `<prefix>.all`: every node.
    all: String,
    /// `<prefix>.node.<this node>`: this node only.
    own: String,
}

impl Subjects {
    fn new(prefix: &str, node: &str) -> Subjects {
        Subjects {
            prefix: prefix.to_owned(),
            all: format!("{prefix}.all"),
            own: format!("{prefix}.node.{node}"),
        }
    }

    /// Where a publication on `topic` goes.
    fn of(&self, topic: &Topic) -> String {
        match topic {
            Topic::All => self.all.clone(),
            Topic::Node(node) => format!("{}.node.{node}", self.prefix),
        }
    }
}

impl Cluster {
    /// The engine's part of this node in the cluster.
    pub(crate) fn config(&self) -> ClusterConfig {
        ClusterConfig::new(self.node.clone())
    }

    /// Connects to NATS and subscribes to this node's two subjects; fails when NATS does
    /// not answer within [`CONNECT_TIMEOUT`] (a node that never met its cluster should say
    /// so at start, not serve alone quietly). Later losses are reconnected by themselves.
    pub(crate) async fn connect(&self) -> anyhow::Result<Nats> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let client = ConnectOptions::new()
            .name(format!("wur2 node {}", self.node))
            .connection_timeout(CONNECT_TIMEOUT)
            .ping_interval(PING_INTERVAL)
            // This node's own publications need not come back (the engine would ignore
            // them); a second node with this node's name still reaches it, and is refused.
            .no_echo()
            .reconnect_delay_callback(|attempts| match attempts {
                0 | 1 => Duration::ZERO,
                _ => RECONNECT_DELAY,
            })
            .event_callback(move |event| {
                let _ = events_tx.send(event);
                std::future::ready(())
            })
            .connect(self.servers.clone())
            .await
            .with_context(|| format!("cannot reach the cluster bus (NATS) at {}", self.shown))?;
        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .with_context(|| format!("cannot subscribe to {subject}"))
            }
        };
        let all = subscribe(self.subjects.all.clone()).await?;
        let own = subscribe(self.subjects.own.clone()).await?;
        // The server has both subscriptions before the engine's first hello goes out.
        client
            .flush()
            .await
            .context("the cluster bus (NATS) did not confirm the subscriptions")?;
        info!(
            node = %self.node,
            subjects = %format_args!("{}, {}", self.subjects.all, self.subjects.own),
            "cluster bus: connected to {}",
            self.shown
        );
        Ok(Nats {
            client,
            subscriptions: [all, own],
            events,
            subjects: self.subjects.clone(),
        })
    }
}

/// A NATS connection with this node's subscriptions, ready to carry the bus.
pub(crate) struct Nats {
    client: Client,
    subscriptions: [Subscriber; 2],
    events: mpsc::UnboundedReceiver<Event>,
    subjects: Subjects,
}

impl Nats {
    /// Carries the bus of a running server (`port`) over this connection, in tasks of the
    /// current runtime, until the server stops.
    pub(crate) async fn carry(self, port: BusPort) -> RunningBus {
        let Nats {
            client,
            subscriptions,
            events,
            subjects,
        } = self;
        let inbox = port.inbox();
        let [all, own] = subscriptions;
        let mut tasks = vec![tokio::spawn(receive(all, own, inbox.clone()))];
        // Subscribed and flushed already: the bus is up.
        if inbox.connected().await.is_err() {
            warn!("cluster bus: the server stopped before the bus came up");
        }
        tasks.push(tokio::spawn(follow(events, client.clone(), inbox)));
        let publisher = tokio::spawn(publish(client, subjects, port));
        RunningBus { publisher, tasks }
    }
}

/// The bus's tasks.
pub(crate) struct RunningBus {
    publisher: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningBus {
    /// After the server stopped: hands its last publications (its users leaving) to NATS,
    /// within [`FLUSH_TIMEOUT`], and ends the bus's tasks.
    pub(crate) async fn stop(self) {
        if tokio::time::timeout(FLUSH_TIMEOUT, self.publisher)
            .await
            .is_err()
        {
            warn!("cluster bus: the last publications were not sent in time");
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Hands every publication to NATS in the engine's order, while the bus is up; flushes
/// once the server has stopped.
async fn publish(client: Client, subjects: Subjects, mut port: BusPort) {
    while let Some(Publication { topic, payload }) = port.next_publication().await {
        let len = payload.len();
        if let Err(error) = client.publish(subjects.of(&topic), payload).await {
            port.lost(&format_args!(
                "NATS refused a publication of {len} bytes: {error}"
            ));
        }
    }
    if let Err(error) = client.flush().await {
        warn!(%error, "cluster bus: could not flush the last publications");
    }
}

/// Hands what arrives on this node's two subscriptions to the engine's loop, in one task
/// and the all-nodes subject first. NATS keeps one publisher's order on the connection,
/// but the client hands each subscription its own queue: a publisher's answer on this
/// node's subject (its `state`, numbered after its broadcasts) must not overtake the
/// broadcasts it follows, or the engine would take them for duplicates.
async fn receive(mut all: Subscriber, mut own: Subscriber, inbox: BusInbox) {
    loop {
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(message) = all.poll_next(cx) {
                return Poll::Ready(message);
            }
            own.poll_next(cx)
        })
        .await;
        let Some(message) = next else {
            return;
        };
        if inbox.received(message.payload).await.is_err() {
            return;
        }
    }
}

/// Turns the client's connection events into the bus's up and down; a reconnection counts
/// as up after [`RESUBSCRIBE_GRACE`], if it still holds then.
async fn follow(mut events: mpsc::UnboundedReceiver<Event>, client: Client, inbox: BusInbox) {
    while let Some(event) = events.recv().await {
        match event {
            // The first connection, reported before `carry` made the bus up.
            Event::Connected if inbox.is_up() => {}
            Event::Connected => {
                tokio::time::sleep(RESUBSCRIBE_GRACE).await;
                if client.connection_state() == State::Connected && inbox.connected().await.is_err()
                {
                    return;
                }
            }
            Event::Disconnected => {
                if inbox.disconnected().await.is_err() {
                    return;
                }
            }
            // Messages were dropped for this node: the engine sees the gap and asks for
            // the missing state.
            Event::SlowConsumer(_) => {
                warn!("cluster bus: NATS dropped messages for this node (slow consumer)")
            }
            Event::Closed => {
                warn!("cluster bus: the NATS connection is closed for good");
                let _ = inbox.disconnected().await;
            }
            // `async_nats` logs these itself.
            other => debug!(event = %other, "cluster bus"),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    fn cluster(args: &[&str], database_url: &str) -> anyhow::Result<Option<Cluster>> {
        let mut argv = vec!["wur2"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .cluster
            .cluster(database_url, "the database")
    }

    const PG: &str = "postgres://wur2@db/wur2";

    #[test]
    fn without_cluster_nothing_changes() {
        assert!(cluster(&[], "sqlite://wur2.db").expect("fine").is_none());
        let error = cluster(&["--node-name", "a"], PG).expect_err("needs --cluster");
        assert!(
            error.to_string().contains("--node-name needs --cluster"),
            "{error}"
        );
    }

    #[test]
    fn cluster_mode_on_sqlite_is_refused_at_start() {
        let error = cluster(
            &["--cluster", "nats://127.0.0.1:4222", "--node-name", "a"],
            "sqlite://wur2.db",
        )
        .expect_err("SQLite is one node's store");
        assert!(
            error
                .to_string()
                .starts_with("cluster mode needs PostgreSQL: every node must share one store"),
            "{error}"
        );
    }

    #[test]
    fn the_node_name_is_required_and_must_fit_a_subject() {
        let error = cluster(&["--cluster", "nats://127.0.0.1:4222"], PG).expect_err("no name");
        assert!(error.to_string().contains("--node-name"), "{error}");
        for bad in ["a.b", "a b", "", "x*", &"n".repeat(33)] {
            assert!(
                cluster(
                    &["--cluster", "nats://127.0.0.1:4222", "--node-name", bad],
                    PG
                )
                .is_err(),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn topics_map_to_the_prefixed_subjects() {
        let cluster = cluster(
            &[
                "--cluster",
                "nats://127.0.0.1:4222, nats://127.0.0.1:4223",
                "--node-name",
                "node-1",
                "--cluster-subject-prefix",
                "chat.prod",
            ],
            PG,
        )
        .expect("valid")
        .expect("cluster mode");
        assert_eq!(cluster.servers.len(), 2);
        assert_eq!(cluster.subjects.of(&Topic::All), "chat.prod.all");
        assert_eq!(cluster.subjects.own, "chat.prod.node.node-1");
        assert_eq!(
            cluster.subjects.of(&Topic::Node("b_2".into())),
            "chat.prod.node.b_2"
        );
        for bad in ["", "a..b", "a.*", ">", "a b"] {
            assert!(!is_valid_subject_prefix(bad), "{bad:?}");
        }
    }
}
