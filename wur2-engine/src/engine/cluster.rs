//! Cluster mode: what this engine publishes for the other nodes, and what it does with
//! what they publish (see [`crate::cluster`]).
//!
//! A committed channel message is published once, whatever the number of members on
//! other nodes; sessions entering channels and ending are published as they happen, and
//! the whole set on request, so every node keeps a view of the others ([`Peers`]) for
//! `/list`, `/channels` and the join and leave notices. Every node's publications on the
//! all-nodes topic are numbered: a duplicate is dropped, a gap asks the node for its state.
//! A node silent for the node timeout is lost: its users leave.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use bytes::Bytes;

use super::accounts::Accounts;
use super::channels::{Channels, Settings};
use super::peers::{Heard, Peers, RemoteSession};
use super::{Departure, Engine};
use crate::cluster::{Body, CLUSTER_PROTOCOL_VERSION, ClusterConfig, Envelope, PeerSession, Topic};
use crate::ids::{ConnectionId, MessageId};
use crate::names::{channel_key, username_key};
use crate::output::Output;
use crate::sanitize::sanitize_text;
use crate::store::{Role, StoreRequest};
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
    /// Private messages published for other nodes, waiting for their answers.
    awaiting: BTreeMap<MessageId, AwaitingDirect>,
    /// Whether the driver's link to the other nodes is up: no heartbeat is published
    /// while it is down (it would only fill the driver's waiting queue).
    bus_up: bool,
}

/// A private message published for the recipient's sessions on other nodes.
#[derive(Debug)]
struct AwaitingDirect {
    /// The nodes that have not answered yet.
    nodes: BTreeSet<String>,
    /// Whether a session of the recipient has shown it (here or on a node that answered).
    delivered: bool,
    /// When it was published: past the node timeout, the nodes still silent count as
    /// not having shown it.
    since: Instant,
}

impl Cluster {
    pub(super) fn new(config: ClusterConfig) -> Cluster {
        Cluster {
            config,
            seq: 0,
            peers: Peers::default(),
            next_heartbeat: None,
            awaiting: BTreeMap::new(),
            bus_up: false,
        }
    }
}

impl Engine {
    /// Publishes `body` on `topic`, if this engine is part of a cluster.
    pub(super) fn publish(&mut self, topic: Topic, body: Body) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if topic == Topic::All {
            cluster.seq += 1;
        }
        let payload = self.publication(&topic, body, &[]);
        self.stats.bus_published += 1;
        self.outbox.push(Output::Publish { topic, payload });
    }

    /// `body` for `topic`, with `data` after it (see [`Envelope::encode_with`]), numbered
    /// as the last publication on the all-nodes topic.
    pub(super) fn publication(&self, topic: &Topic, body: Body, data: &[u8]) -> Bytes {
        let (node, seq) = match &self.cluster {
            Some(cluster) => (cluster.config.node.clone(), cluster.seq),
            None => (String::new(), 0),
        };
        let to = match topic {
            Topic::All => None,
            Topic::Node(node) => Some(node.clone()),
        };
        let envelope = Envelope {
            v: CLUSTER_PROTOCOL_VERSION,
            node,
            inc: self.config.message_id_origin,
            seq,
            to,
            body,
        };
        envelope.encode_with(data)
    }

    /// Publishes that logged-in `connection` is now in its channel.
    pub(super) fn publish_enter(&mut self, connection: ConnectionId) {
        if self.cluster.is_none() {
            return;
        }
        let Some(session) = self.peer_session(connection) else {
            return;
        };
        let body = Body::Enter {
            session: session.session,
            user: session.user,
            channel: session.channel,
            role: session.role,
        };
        self.publish(Topic::All, body);
    }

    /// Logged-in `connection` as [`Body::Enter`] and [`Body::State`] describe it.
    fn peer_session(&self, connection: ConnectionId) -> Option<PeerSession> {
        let member = self.sessions.get(connection)?.member()?;
        let account = self.accounts.get(&member.account)?;
        let channel = self.channels.get(&member.channel)?;
        Some(PeerSession {
            session: connection.as_u64(),
            user: account.username.clone(),
            channel: channel.name.clone(),
            role: account.role,
            away: account.away.as_ref().map(|away| away.text.clone()),
        })
    }

    /// Publishes that logged-in `connection` ended.
    pub(super) fn publish_exit(&mut self, connection: ConnectionId, departure: Departure) {
        if self.cluster.is_some() {
            // Closed by a shutdown, the node's sessions were told here; the other nodes'
            // members hear that they left.
            let body = Body::Exit {
                session: connection.as_u64(),
                announce: departure == Departure::Announced || self.shutting_down,
            };
            self.publish(Topic::All, body);
        }
    }

    /// Publishes committed channel message `id` for the other nodes' members.
    pub(super) fn publish_chat(&mut self, id: MessageId, channel: &str, from: &str, text: &str) {
        if self.cluster.is_some() {
            let body = Body::Chat {
                id,
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
        cluster.bus_up = true;
        self.publish(Topic::All, Body::Hello);
    }

    /// The bus is down: no more heartbeats until it is back (peers still expire).
    pub(super) fn bus_disconnected(&mut self) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.bus_up = false;
        }
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
            self.announce_departures(&sessions);
            self.node_gone(&node);
        }
        self.expire_awaiting(now);
        if self.cluster.as_ref().is_some_and(|cluster| cluster.bus_up) {
            self.publish(Topic::All, Body::Alive);
        }
    }

    /// A payload another node published, on either topic.
    pub(super) fn on_published(&mut self, payload: &[u8], now: Instant) {
        let max_text = self.config.max_message_bytes;
        let inc = self.config.message_id_origin;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        self.stats.bus_received += 1;
        let (envelope, data) =
            match Envelope::decode(payload, cluster.config.max_payload_bytes, max_text) {
                Ok(decoded) => decoded,
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
                self.announce_departures(&gone);
                // A restarted node answers nothing its last incarnation was asked.
                self.node_gone(&envelope.node);
                true
            }
        };
        let node = envelope.node;
        // A state is the answer itself; anything else from a new node (its `hello`
        // included: it may be an old node back on the bus, with sessions) or after a gap
        // asks for one.
        if ask_state && !matches!(envelope.body, Body::State { .. }) {
            self.publish(Topic::Node(node.clone()), Body::Hello);
        }
        // Channel changes may have been lost with the publications: the store has them.
        if ask_state {
            self.refresh_catalogue();
        }
        self.apply(&node, envelope.seq, envelope.body, data, now);
    }

    /// Applies what `node` published (checked whole already), with the data after its
    /// envelope.
    fn apply(&mut self, node: &str, seq: u64, body: Body, data: &[u8], now: Instant) {
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
            } => self.deliver_remote_chat(id, &channel, &from, &text),
            Body::Enter {
                session,
                user,
                channel,
                role,
            } => {
                let entered = RemoteSession {
                    user,
                    channel,
                    role,
                };
                match peers.enter(node, session, entered.clone(), max_sessions) {
                    Ok(before) => {
                        let moved = before.as_ref().is_none_or(|before| {
                            channel_key(&before.channel) != channel_key(&entered.channel)
                        });
                        if moved {
                            if let Some(before) = before {
                                self.announce_departures(std::slice::from_ref(&before));
                            }
                            self.announce_remote(Announce::Joined, &entered);
                        }
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
                    self.announce_departures(std::slice::from_ref(&gone));
                }
            }
            Body::Alive => {}
            Body::Hello => self.publish_state(node),
            // A state older than broadcasts applied already: ask for a newer one instead.
            Body::State { .. } if peers.state_is_stale(node, seq) => {
                tracing::debug!(
                    node,
                    seq,
                    "a cluster node's state came after newer broadcasts; asking again"
                );
                self.publish(Topic::Node(node.to_owned()), Body::Hello);
            }
            Body::State { sessions } => {
                // A node's state says its accounts' away messages as they are now.
                let mut aways = BTreeMap::new();
                let sessions = sessions.into_iter().map(|s| {
                    let away = s.away.map(|t| sanitize_text(&t).into_owned());
                    aways.insert(username_key(&s.user), away);
                    let entered = RemoteSession {
                        user: s.user,
                        channel: s.channel,
                        role: s.role,
                    };
                    (s.session, entered)
                });
                let sessions: Vec<_> = sessions.collect();
                peers.replace(node, sessions, max_sessions);
                for (key, away) in aways {
                    peers.set_away(&key, away);
                }
            }
            Body::Direct {
                id,
                recipient,
                from,
                text,
                nodes,
            } => {
                if nodes.contains(&cluster.config.node) {
                    let delivered = self.deliver_remote_direct(id, &recipient, &from, &text);
                    let answer = Body::Delivered { id, delivered };
                    self.publish(Topic::Node(node.to_owned()), answer);
                }
            }
            Body::Delivered { id, delivered } => self.answered(id, node, delivered),
            Body::Kick {
                user,
                by,
                reason,
                channels,
            } => self.apply_kick(&user, &by, &reason, &channels),
            Body::Role { user, role, by } => self.apply_role(&username_key(&user), role, &by),
            Body::Away { user, text } => {
                let text = text.map(|t| sanitize_text(&t).into_owned());
                self.apply_away(&username_key(&user), text);
            }
            Body::LoggedOut { user, cause } => {
                self.log_out_sessions_of(&username_key(&user), None, cause);
            }
            Body::Registered { channel, owner } => self.apply_registered(&channel, owner),
            Body::Topic { channel, topic, by } => {
                let topic = topic.map(|t| sanitize_text(&t).into_owned());
                self.apply_topic(&channel, topic, &by);
            }
            Body::Private {
                channel,
                private,
                by,
            } => self.apply_private(&channel, private, &by),
            Body::Invite { channel, user, by } => self.apply_invite(&channel, &user, &by),
            Body::FileOffer {
                transfer,
                recipient,
                from,
                name,
                size,
            } => self.on_file_offer(node, transfer, &recipient, &from, &name, size),
            Body::FileChunk { transfer, offset } => {
                self.on_file_chunk(node, transfer, offset, data);
            }
            Body::FileCredit { transfer, upto } => self.on_file_credit(node, transfer, upto, now),
            Body::FileAbort { transfer, reason } => self.on_file_abort(node, transfer, &reason),
            Body::FileOutcome { transfer, failure } => {
                self.on_file_outcome(node, transfer, failure.as_deref());
            }
        }
    }

    /// Sends every logged-in session of this node to `node`.
    fn publish_state(&mut self, node: &str) {
        let sessions = self
            .sessions
            .ids()
            .into_iter()
            .filter_map(|connection| self.peer_session(connection))
            .collect();
        self.publish(Topic::Node(node.to_owned()), Body::State { sessions });
    }

    /// Publishes committed private message `id` for the sessions of account `key` on
    /// other nodes, if it has any there, and waits for their answers (see
    /// `Engine::answered`); `shown_here`: a session on this node showed it already.
    /// Returns whether it was published.
    pub(super) fn publish_direct(
        &mut self,
        id: MessageId,
        key: &str,
        from: &str,
        text: &str,
        shown_here: bool,
        now: Instant,
    ) -> bool {
        let Some(cluster) = self.cluster.as_mut() else {
            return false;
        };
        let Some(account) = cluster.peers.account(key) else {
            return false;
        };
        let nodes: BTreeSet<String> = account.nodes.keys().cloned().collect();
        let recipient = account.name.clone();
        let waiting = AwaitingDirect {
            nodes: nodes.clone(),
            delivered: shown_here,
            since: now,
        };
        cluster.awaiting.insert(id, waiting);
        let body = Body::Direct {
            id,
            recipient,
            from: from.to_owned(),
            text: text.to_owned(),
            nodes: nodes.into_iter().collect(),
        };
        self.publish(Topic::All, body);
        true
    }

    /// `node` answered whether it showed private message `id` (or, `delivered` false,
    /// it is gone); once every node has answered, a message nobody saw is put back to
    /// wait for the recipient's next login.
    fn answered(&mut self, id: MessageId, node: &str, delivered: bool) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let Some(waiting) = cluster.awaiting.get_mut(&id) else {
            return;
        };
        if !waiting.nodes.remove(node) {
            return;
        }
        waiting.delivered |= delivered;
        if waiting.nodes.is_empty() {
            let shown = waiting.delivered;
            cluster.awaiting.remove(&id);
            if !shown {
                self.request(StoreRequest::MarkPending { ids: vec![id] });
            }
        }
    }

    /// `node` is gone (lost, or restarted): it will answer no private message, and its
    /// side of every transfer between it and this node is gone.
    fn node_gone(&mut self, node: &str) {
        self.end_transfers_with(node);
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let waiting: Vec<MessageId> = cluster
            .awaiting
            .iter()
            .filter(|(_, waiting)| waiting.nodes.contains(node))
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.answered(id, node, false);
        }
    }

    /// Private messages whose nodes did not all answer within the node timeout: the
    /// silent ones count as not having shown them.
    fn expire_awaiting(&mut self, now: Instant) {
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let timeout = cluster.config.node_timeout;
        let late: Vec<(MessageId, Vec<String>)> = cluster
            .awaiting
            .iter()
            .filter(|(_, waiting)| now.saturating_duration_since(waiting.since) >= timeout)
            .map(|(&id, waiting)| (id, waiting.nodes.iter().cloned().collect()))
            .collect();
        for (id, nodes) in late {
            for node in nodes {
                self.answered(id, &node, false);
            }
        }
    }

    /// Private message `id` from another node for `to`: to this node's sessions of `to`;
    /// returns whether there were any.
    fn deliver_remote_direct(&mut self, id: MessageId, to: &str, from: &str, text: &str) -> bool {
        let Some(recipient) = self.accounts.get(&username_key(to)) else {
            return false;
        };
        let text = sanitize_text(text);
        let line = Line::Direct {
            from,
            text: &text,
            id,
        };
        self.outbox
            .broadcast(&mut self.sessions, &recipient.sessions, None, &line);
        true
    }

    /// Publishes that `user` was kicked by `by` from `channels` (the channels of all
    /// their sessions, on every node).
    pub(super) fn publish_kick(&mut self, user: &str, by: &str, reason: &str, channels: &[String]) {
        if self.cluster.is_some() {
            let body = Body::Kick {
                user: user.to_owned(),
                by: by.to_owned(),
                reason: reason.to_owned(),
                channels: channels.to_vec(),
            };
            self.publish(Topic::All, body);
        }
    }

    /// Another node kicked `user`: this node closes its sessions of `user` and tells its
    /// members of `channels`.
    fn apply_kick(&mut self, user: &str, by: &str, reason: &str, channels: &[String]) {
        let reason = sanitize_text(reason);
        let keys: Vec<String> = channels.iter().map(|name| channel_key(name)).collect();
        self.kick_out(&username_key(user), user, by, &reason, &keys);
        tracing::info!(%by, %user, "kick from another node");
    }

    /// Publishes that account `key` (`user` as registered) is away with `text`, or back.
    pub(super) fn publish_away(&mut self, key: &str, user: &str, text: Option<String>) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.peers.set_away(key, text.clone());
            let body = Body::Away {
                user: user.to_owned(),
                text,
            };
            self.publish(Topic::All, body);
        }
    }

    /// Account `key` set its away message (or came back) on another node: noted for its
    /// remote sessions and, when it is online here too, for its sessions here, who are told.
    fn apply_away(&mut self, key: &str, text: Option<String>) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.peers.set_away(key, text.clone());
        }
        if self.accounts.is_online(key) {
            self.accounts.set_away(key, text);
            self.tell_away(key);
        }
    }

    /// An account that just came online here and is away on another node is away here too.
    pub(super) fn inherit_remote_away(&mut self, key: &str) {
        let Some(cluster) = self.cluster.as_ref() else {
            return;
        };
        let remote = cluster.peers.account(key).and_then(|a| a.away.as_ref());
        if let Some(away) = remote
            && self.accounts.away_text(key).is_none()
        {
            let text = away.text.clone();
            self.accounts.set_away(key, Some(text));
        }
    }

    /// The username of account `key` as registered, when it is online here or elsewhere.
    pub(super) fn username_anywhere(&self, key: &str) -> Option<&str> {
        match self.accounts.get(key) {
            Some(account) => Some(account.username.as_str()),
            None => Some(self.cluster.as_ref()?.peers.account(key)?.name.as_str()),
        }
    }

    /// The away message of account `key` for a private message from `sender` (a key),
    /// once per message: from the account here, or else from its sessions elsewhere.
    pub(super) fn away_reply_anywhere(&mut self, key: &str, sender: &str) -> Option<String> {
        if self.accounts.is_online(key) {
            return self.accounts.away_reply(key, sender);
        }
        self.cluster.as_mut()?.peers.away_reply(key, sender)
    }

    /// Publishes that `by` gave account `user` role `role` with `/role` (and notes it in
    /// this node's view of the others).
    pub(super) fn publish_role(&mut self, user: &str, role: Role, by: &str) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.peers.set_role(&username_key(user), role);
            let body = Body::Role {
                user: user.to_owned(),
                role,
                by: by.to_owned(),
            };
            self.publish(Topic::All, body);
        }
    }

    /// A channel message committed on another node: to this node's members of its
    /// channel, encoded once.
    fn deliver_remote_chat(&mut self, id: MessageId, channel: &str, from: &str, text: &str) {
        let Some(members) = self.channels.get(&channel_key(channel)) else {
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

    /// Tells this node's members of each channel that `sessions` (gone from the view
    /// already) left it, unless the channel was too large for such notices, counted with
    /// them all (as a local departure is counted with the one leaving): a lost node's
    /// thousand users leaving a big channel must not send a thousand notices to everyone.
    fn announce_departures(&mut self, sessions: &[RemoteSession]) {
        let mut leaving: BTreeMap<String, usize> = BTreeMap::new();
        for session in sessions {
            *leaving.entry(channel_key(&session.channel)).or_default() += 1;
        }
        let limit = self.config.join_notices_max_members;
        for session in sessions {
            let key = channel_key(&session.channel);
            let before = self.members_everywhere(&key) + leaving.get(&key).copied().unwrap_or(0);
            if before <= limit {
                self.announce_remote(Announce::Left, session);
            }
        }
    }

    /// Tells this node's members of `session`'s channel that it joined or left (the
    /// caller decides whether the channel is small enough for such notices).
    fn announce_remote(&mut self, announce: Announce, session: &RemoteSession) {
        let key = channel_key(&session.channel);
        if announce == Announce::Joined && !self.announces_membership(&key) {
            return;
        }
        let Some(channel) = self.channels.get(&key) else {
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

/// The away message of account `key`, online here or on another node.
pub(super) fn away_text_everywhere<'a>(
    accounts: &'a Accounts,
    cluster: Option<&'a Cluster>,
    key: &str,
) -> Option<&'a str> {
    accounts.away_text(key).or_else(|| {
        let account = cluster?.peers.account(key)?;
        Some(account.away.as_ref()?.text.as_str())
    })
}

/// One line of `/channels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Listing<'a> {
    pub(super) name: &'a str,
    pub(super) members: usize,
    pub(super) topic: Option<&'a str>,
}

/// Channels with members on this node (`channels`) or another, and the registered ones,
/// with how many members and their topics, ordered by key; private channels only when
/// `visible` says the reader may join them.
pub(super) fn channels_everywhere<'a>(
    channels: &'a Channels,
    cluster: Option<&'a Cluster>,
    visible: impl Fn(&Settings) -> bool,
) -> Vec<Listing<'a>> {
    let local = channels
        .entries()
        .filter(|(_, c)| c.settings.as_ref().is_none_or(|s| !s.private || visible(s)))
        .map(|(key, c)| {
            let listing = Listing {
                name: c.name.as_str(),
                members: c.members.len(),
                topic: c.settings.as_ref().and_then(|s| s.topic.as_deref()),
            };
            (key, listing)
        });
    match cluster {
        None => local.map(|(_, entry)| entry).collect(),
        Some(cluster) => {
            let remote = cluster
                .peers
                .channels()
                .filter(|(key, _, _)| {
                    channels
                        .settings(key)
                        .is_none_or(|s| !s.private || visible(s))
                })
                .map(|(key, name, members)| {
                    let listing = Listing {
                        name,
                        members,
                        topic: None,
                    };
                    (key, listing)
                });
            merge(local, remote, |here, there| Listing {
                members: here.members + there.members,
                ..here
            })
        }
    }
}

/// What a channel hears of a session on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
