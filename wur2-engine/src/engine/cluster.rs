//! Cluster mode: what this engine publishes for the other nodes, and what it does with
//! what they publish (see [`crate::cluster`]).
//!
//! A committed channel message is published once, whatever the number of members on
//! other nodes; sessions entering channels and ending are published as they happen, and
//! the whole set on request, so every node keeps a view of the others ([`Peers`]) for
//! `/list`, `/channels` and the join and leave notices. Every node's publications on the
//! all-nodes topic are numbered: a duplicate is dropped, a gap asks the node for its state.
//! A node silent for the node timeout is lost: its users leave.

use std::time::Instant;

use super::accounts::Accounts;
use super::channels::Channels;
use super::peers::{Heard, Peers, RemoteSession};
use super::{Departure, Engine};
use crate::cluster::{Body, CLUSTER_PROTOCOL_VERSION, ClusterConfig, Envelope, PeerSession, Topic};
use crate::ids::{ConnectionId, MessageId};
use crate::names::channel_key;
use crate::output::Output;
use crate::sanitize::sanitize_text;
use crate::wire::Line;

/// This node's part in the cluster.
#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) config: ClusterConfig,
    /// Publications made on the all-nodes topic.
    seq: u64,
    pub(super) peers: Peers,
    /// When to say this node is alive next (and look for lost peers); `None` until the
    /// bus is connected.
    pub(super) next_heartbeat: Option<Instant>,
}

impl Cluster {
    pub(super) fn new(config: ClusterConfig) -> Cluster {
        Cluster {
            config,
            seq: 0,
            peers: Peers::default(),
            next_heartbeat: None,
        }
    }
}

impl Engine {
    /// Publishes `body` on `topic`, if this engine is part of a cluster.
    pub(super) fn publish(&mut self, topic: Topic, body: Body) {
        let inc = self.config.message_id_origin;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let to = match &topic {
            Topic::All => {
                cluster.seq += 1;
                None
            }
            Topic::Node(node) => Some(node.clone()),
        };
        let envelope = Envelope {
            v: CLUSTER_PROTOCOL_VERSION,
            node: cluster.config.node.clone(),
            inc,
            seq: cluster.seq,
            to,
            body,
        };
        self.stats.bus_published += 1;
        self.outbox.push(Output::Publish {
            topic,
            payload: envelope.encode(),
        });
    }

    /// Publishes that logged-in `connection`, of user `user`, is now in `channel`.
    pub(super) fn publish_enter(&mut self, connection: ConnectionId, user: &str, channel: &str) {
        if self.cluster.is_some() {
            let body = Body::Enter {
                session: connection.as_u64(),
                user: user.to_owned(),
                channel: channel.to_owned(),
            };
            self.publish(Topic::All, body);
        }
    }

    /// Publishes that logged-in `connection` ended.
    pub(super) fn publish_exit(&mut self, connection: ConnectionId, departure: Departure) {
        if self.cluster.is_some() {
            let body = Body::Exit {
                session: connection.as_u64(),
                announce: departure == Departure::Announced,
            };
            self.publish(Topic::All, body);
        }
    }

    /// Publishes committed channel message `id` for the other nodes' members.
    pub(super) fn publish_chat(&mut self, id: MessageId, channel: &str, from: &str, text: &str) {
        if self.cluster.is_some() {
            let body = Body::Chat {
                id: id.to_string(),
                channel: channel.to_owned(),
                from: from.to_owned(),
                text: text.to_owned(),
            };
            self.publish(Topic::All, body);
        }
    }

    /// The bus is connected (or back): asks every node for its state, and starts the
    /// heartbeat.
    pub(super) fn bus_connected(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.next_heartbeat.is_none() {
            cluster.next_heartbeat = Some(now + cluster.config.heartbeat_interval);
        }
        self.publish(Topic::All, Body::Hello);
    }

    /// The heartbeat, if due: says this node is alive and drops peers that went silent.
    pub(super) fn cluster_timeout(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.next_heartbeat.is_none_or(|due| due > now) {
            return;
        }
        cluster.next_heartbeat = Some(now + cluster.config.heartbeat_interval);
        let lost = match now.checked_sub(cluster.config.node_timeout) {
            Some(deadline) => cluster.peers.expire(deadline),
            None => Vec::new(),
        };
        for (node, sessions) in lost {
            tracing::warn!(node = %node, sessions = sessions.len(), "cluster node lost");
            for session in &sessions {
                self.announce_remote(Announce::Left, session);
            }
        }
        self.publish(Topic::All, Body::Alive);
    }

    /// A payload another node published, on either topic.
    pub(super) fn on_published(&mut self, payload: &[u8], now: Instant) {
        let max_text = self.config.max_message_bytes;
        let inc = self.config.message_id_origin;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        self.stats.bus_received += 1;
        let envelope = match Envelope::decode(payload, cluster.config.max_payload_bytes, max_text) {
            Ok(envelope) => envelope,
            Err(refusal) => {
                self.stats.bus_refused += 1;
                tracing::warn!("refused a payload from the cluster bus: {refusal}");
                return;
            }
        };
        if envelope.node == cluster.config.node {
            if envelope.inc != inc {
                self.stats.bus_refused += 1;
                tracing::warn!(node = %envelope.node, "another node publishes with this node's name");
            }
            return;
        }
        if envelope
            .to
            .as_ref()
            .is_some_and(|to| *to != cluster.config.node)
        {
            return;
        }
        let ordered = envelope.to.is_none();
        let max_peers = cluster.config.max_peers;
        let heard = cluster.peers.heard(
            &envelope.node,
            envelope.inc,
            envelope.seq,
            ordered,
            now,
            max_peers,
        );
        let ask_state = match heard {
            Heard::Duplicate => return,
            Heard::TooManyPeers => {
                self.stats.bus_refused += 1;
                tracing::warn!(node = %envelope.node, max_peers, "too many cluster nodes; ignoring this one");
                return;
            }
            Heard::InOrder => false,
            Heard::AfterGap => {
                self.stats.bus_gaps += 1;
                tracing::warn!(node = %envelope.node, "publications from this node were lost; asking for its state");
                true
            }
            Heard::New(gone) => {
                for session in &gone {
                    self.announce_remote(Announce::Left, session);
                }
                true
            }
        };
        let node = envelope.node;
        if ask_state && !matches!(envelope.body, Body::State { .. } | Body::Hello) {
            self.publish(Topic::Node(node.clone()), Body::Hello);
        }
        self.apply(&node, envelope.body);
    }

    /// Applies what `node` published.
    fn apply(&mut self, node: &str, body: Body) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let (peers, max_sessions) = (&mut cluster.peers, cluster.config.max_sessions_per_peer);
        match body {
            Body::Chat {
                id,
                channel,
                from,
                text,
            } => self.deliver_remote_chat(&id, &channel, &from, &text),
            Body::Enter {
                session,
                user,
                channel,
            } => {
                let entered = RemoteSession { user, channel };
                match peers.enter(node, session, entered.clone(), max_sessions) {
                    Ok(before) => {
                        if let Some(before) = before {
                            self.announce_remote(Announce::Left, &before);
                        }
                        self.announce_remote(Announce::Joined, &entered);
                    }
                    Err(()) => {
                        self.stats.bus_refused += 1;
                        tracing::warn!(
                            node,
                            max_sessions,
                            "a cluster node announces too many sessions"
                        );
                    }
                }
            }
            Body::Exit { session, announce } => {
                if let Some(gone) = peers.exit(node, session)
                    && announce
                {
                    self.announce_remote(Announce::Left, &gone);
                }
            }
            Body::Alive => {}
            Body::Hello => self.publish_state(node),
            Body::State { sessions } => {
                let sessions = sessions.into_iter().map(|s| {
                    let entered = RemoteSession {
                        user: s.user,
                        channel: s.channel,
                    };
                    (s.session, entered)
                });
                peers.replace(node, sessions, max_sessions);
            }
        }
    }

    /// Sends every logged-in session of this node to `node`.
    fn publish_state(&mut self, node: &str) {
        let mut sessions = Vec::new();
        for connection in self.sessions.ids() {
            let Some(member) = self.sessions.get(connection).and_then(|s| s.member()) else {
                continue;
            };
            let (Some(account), Some(channel)) = (
                self.accounts.get(&member.account),
                self.channels.get(&member.channel),
            ) else {
                continue;
            };
            sessions.push(PeerSession {
                session: connection.as_u64(),
                user: account.username.clone(),
                channel: channel.name.clone(),
            });
        }
        self.publish(Topic::Node(node.to_owned()), Body::State { sessions });
    }

    /// A channel message committed on another node: to this node's members of its
    /// channel, encoded once.
    fn deliver_remote_chat(&mut self, id: &str, channel: &str, from: &str, text: &str) {
        let (Ok(id), Some(members)) = (
            id.parse::<MessageId>(),
            self.channels.get(&channel_key(channel)),
        ) else {
            return;
        };
        let text = sanitize_text(text);
        let line = Line::Chat {
            channel: &members.name,
            user: from,
            text: &text,
            id,
        };
        self.outbox
            .broadcast(&mut self.sessions, &members.members, None, &line);
    }

    /// Tells this node's members of `session`'s channel that it joined or left.
    fn announce_remote(&mut self, announce: Announce, session: &RemoteSession) {
        let Some(channel) = self.channels.get(&channel_key(&session.channel)) else {
            return;
        };
        let (user, name) = (session.user.as_str(), channel.name.as_str());
        let line = match announce {
            Announce::Joined => Line::Joined {
                user,
                channel: name,
            },
            Announce::Left => Line::Left {
                user,
                channel: name,
            },
        };
        self.outbox
            .broadcast(&mut self.sessions, &channel.members, None, &line);
    }
}

/// Usernames online on this node (`accounts`) or another, ordered by key.
pub(super) fn usernames_everywhere<'a>(
    accounts: &'a Accounts,
    cluster: Option<&'a Cluster>,
) -> Vec<&'a str> {
    let local = accounts.entries();
    match cluster {
        None => local.map(|(_, name)| name).collect(),
        Some(cluster) => merge(local, cluster.peers.accounts(), |name, _| name),
    }
}

/// Channels with members on this node (`channels`) or another, with how many, ordered
/// by key.
pub(super) fn channels_everywhere<'a>(
    channels: &'a Channels,
    cluster: Option<&'a Cluster>,
) -> Vec<(&'a str, usize)> {
    let local = channels.entries();
    match cluster {
        None => local.map(|(_, entry)| entry).collect(),
        Some(cluster) => {
            let remote = cluster
                .peers
                .channels()
                .map(|(key, name, members)| (key, (name, members)));
            merge(local, remote, |(name, here), (_, there)| {
                (name, here + there)
            })
        }
    }
}

/// What a channel hears of a session on another node.
#[derive(Debug, Clone, Copy)]
enum Announce {
    Joined,
    Left,
}

/// Merges two key-ordered sequences into one, combining the values of a key in both.
fn merge<'a, V>(
    a: impl Iterator<Item = (&'a str, V)>,
    b: impl Iterator<Item = (&'a str, V)>,
    both: impl Fn(V, V) -> V,
) -> Vec<V> {
    let mut out = Vec::new();
    let (mut a, mut b) = (a.peekable(), b.peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return out,
        };
        match next {
            std::cmp::Ordering::Less => out.extend(a.next().map(|(_, v)| v)),
            std::cmp::Ordering::Greater => out.extend(b.next().map(|(_, v)| v)),
            std::cmp::Ordering::Equal => {
                if let (Some((_, va)), Some((_, vb))) = (a.next(), b.next()) {
                    out.push(both(va, vb));
                }
            }
        }
    }
}
