//! The other nodes of a cluster as this node knows them: each peer's sessions and where
//! they are, and what follows from them (who is online through a peer, how many members
//! each channel has there). It sends nothing; the engine announces what changes.

use std::collections::BTreeMap;
use std::time::Instant;

use super::accounts::Away;
use crate::names::{channel_key, username_key};
use crate::store::Role;

/// A session on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteSession {
    /// The username as registered.
    pub(super) user: String,
    /// The channel's name as the peer shows it.
    pub(super) channel: String,
    /// The account's role as the peer last said.
    pub(super) role: Role,
}

/// An account with sessions on other nodes.
#[derive(Debug)]
pub(super) struct RemoteAccount {
    /// The username as registered.
    pub(super) name: String,
    pub(super) role: Role,
    /// How many of its sessions each node has.
    pub(super) nodes: BTreeMap<String, usize>,
    /// Its away message, as the node that set it last said.
    pub(super) away: Option<Away>,
}

/// One peer node.
#[derive(Debug)]
struct Peer {
    incarnation: u64,
    /// The last `seq` of its publications on the all-nodes topic seen (`None` before the
    /// first: a peer first heard through a directed publication).
    last_seq: Option<u64>,
    last_heard: Instant,
    sessions: BTreeMap<u64, RemoteSession>,
}

/// How a publication fits what was heard from its node before.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Heard {
    /// The next one: apply it.
    InOrder,
    /// Later than the next one: some were lost on the way; apply it, and ask the peer for
    /// its state.
    AfterGap,
    /// A node not known before, or a known node's new incarnation (its old sessions, now
    /// gone, are returned): apply it, and ask for its state.
    New(Vec<RemoteSession>),
    /// Seen before (or older): drop it.
    Duplicate,
    /// A node beyond `max_peers`: drop it.
    TooManyPeers,
}

/// Every peer node, with counts derived from their sessions.
#[derive(Debug, Default)]
pub(super) struct Peers {
    by_node: BTreeMap<String, Peer>,
    /// Accounts with remote sessions, by key.
    accounts: BTreeMap<String, RemoteAccount>,
    /// Remote members per channel key: the channel's name and how many.
    channels: BTreeMap<String, (String, usize)>,
}

impl Peers {
    /// Records a publication from `node` (incarnation `incarnation`) heard at `now`:
    /// `seq` is its number on the all-nodes topic when `ordered`. A directed publication
    /// (`ordered` false: a `state`, a `hello`, an answer) is never a duplicate and moves
    /// no numbering: broadcasts numbered before it may still be on their way (a `state`
    /// is no substitute for the chat messages among them).
    pub(super) fn heard(
        &mut self,
        node: &str,
        incarnation: u64,
        seq: u64,
        ordered: bool,
        now: Instant,
        max_peers: usize,
    ) -> Heard {
        let mut gone = Vec::new();
        match self.by_node.get(node) {
            Some(peer) if peer.incarnation == incarnation => {}
            Some(_) => gone = self.remove(node),
            None if self.by_node.len() >= max_peers => return Heard::TooManyPeers,
            None => {}
        }
        let new = !self.by_node.contains_key(node);
        let peer = self.by_node.entry(node.to_owned()).or_insert_with(|| Peer {
            incarnation,
            last_seq: None,
            last_heard: now,
            sessions: BTreeMap::new(),
        });
        peer.last_heard = now;
        let heard = match (ordered, peer.last_seq) {
            (false, _) => Heard::InOrder,
            (true, None) => Heard::InOrder,
            (true, Some(last)) if seq <= last => return Heard::Duplicate,
            (true, Some(last)) if seq > last + 1 => Heard::AfterGap,
            (true, Some(_)) => Heard::InOrder,
        };
        if ordered {
            peer.last_seq = Some(seq);
        }
        if new { Heard::New(gone) } else { heard }
    }

    /// Session `session` of `node` is now in `channel`; returns where it was before
    /// (`None`: it is new). A peer already at `max_sessions` gets no new session
    /// (`Err(())`).
    pub(super) fn enter(
        &mut self,
        node: &str,
        session: u64,
        entered: RemoteSession,
        max_sessions: usize,
    ) -> Result<Option<RemoteSession>, ()> {
        let Some(peer) = self.by_node.get_mut(node) else {
            return Err(());
        };
        if !peer.sessions.contains_key(&session) && peer.sessions.len() >= max_sessions {
            return Err(());
        }
        count(
            &mut self.channels,
            &channel_key(&entered.channel),
            &entered.channel,
            1,
        );
        let key = username_key(&entered.user);
        let account = self.accounts.entry(key).or_insert_with(|| RemoteAccount {
            name: entered.user.clone(),
            role: entered.role,
            nodes: BTreeMap::new(),
            away: None,
        });
        account.role = entered.role;
        let before = peer.sessions.insert(session, entered);
        match &before {
            Some(before) => {
                count(
                    &mut self.channels,
                    &channel_key(&before.channel),
                    &before.channel,
                    -1,
                );
            }
            None => *account.nodes.entry(node.to_owned()).or_default() += 1,
        }
        Ok(before)
    }

    /// Session `session` of `node` ended; returns it if it was known.
    pub(super) fn exit(&mut self, node: &str, session: u64) -> Option<RemoteSession> {
        let gone = self.by_node.get_mut(node)?.sessions.remove(&session)?;
        self.uncount(node, &gone);
        Some(gone)
    }

    /// Whether a state of `node` taken after its broadcast `seq` is older than broadcasts
    /// of it applied already (published after the state, they overtook it on the way: the
    /// node's own topic and the all-nodes one are read apart). Applying it would undo them.
    pub(super) fn state_is_stale(&self, node: &str, seq: u64) -> bool {
        self.by_node
            .get(node)
            .and_then(|peer| peer.last_seq)
            .is_some_and(|last| last > seq)
    }

    /// Replaces what is known of `node`'s sessions with `sessions` (at most
    /// `max_sessions` of them).
    pub(super) fn replace(
        &mut self,
        node: &str,
        sessions: impl IntoIterator<Item = (u64, RemoteSession)>,
        max_sessions: usize,
    ) {
        let Some(peer) = self.by_node.get_mut(node) else {
            return;
        };
        let old = std::mem::take(&mut peer.sessions);
        for gone in old.values() {
            self.uncount(node, gone);
        }
        for (session, entered) in sessions.into_iter() {
            // Errors only past `max_sessions`: the rest is not believed.
            if self.enter(node, session, entered, max_sessions).is_err() {
                break;
            }
        }
    }

    /// Removes every peer not heard from since `deadline`; returns each one's name and
    /// sessions.
    pub(super) fn expire(&mut self, deadline: Instant) -> Vec<(String, Vec<RemoteSession>)> {
        let lost: Vec<String> = self
            .by_node
            .iter()
            .filter(|(_, peer)| peer.last_heard < deadline)
            .map(|(node, _)| node.clone())
            .collect();
        lost.into_iter()
            .map(|node| {
                let sessions = self.remove(&node);
                (node, sessions)
            })
            .collect()
    }

    /// Forgets `node`; returns its sessions.
    fn remove(&mut self, node: &str) -> Vec<RemoteSession> {
        let Some(peer) = self.by_node.remove(node) else {
            return Vec::new();
        };
        let sessions: Vec<RemoteSession> = peer.sessions.into_values().collect();
        for gone in &sessions {
            self.uncount(node, gone);
        }
        sessions
    }

    /// Account `key`, if it has sessions on other nodes.
    pub(super) fn account(&self, key: &str) -> Option<&RemoteAccount> {
        self.accounts.get(key)
    }

    /// Account `key` has role `role` now (on every node).
    pub(super) fn set_role(&mut self, key: &str, role: Role) {
        let Some(account) = self.accounts.get_mut(key) else {
            return;
        };
        account.role = role;
        for node in account.nodes.keys() {
            if let Some(peer) = self.by_node.get_mut(node) {
                for session in peer.sessions.values_mut() {
                    if username_key(&session.user) == key {
                        session.role = role;
                    }
                }
            }
        }
    }

    /// Account `key` (if it has sessions on other nodes) is away with `text`, or back.
    pub(super) fn set_away(&mut self, key: &str, text: Option<String>) {
        let Some(account) = self.accounts.get_mut(key) else {
            return;
        };
        // The same message again (a peer's state repeats it) keeps whom it answered.
        if account.away.as_ref().map(|away| &away.text) != text.as_ref() {
            account.away = text.map(Away::new);
        }
    }

    /// The away message of account `key` for a private message from `sender` (a key),
    /// the first time only for each away message.
    pub(super) fn away_reply(&mut self, key: &str, sender: &str) -> Option<String> {
        self.accounts.get_mut(key)?.away.as_mut()?.reply_to(sender)
    }

    /// The channels account `key` has sessions in on other nodes (names, each once).
    pub(super) fn channels_of(&self, key: &str) -> Vec<String> {
        let mut channels: Vec<String> = Vec::new();
        let Some(account) = self.accounts.get(key) else {
            return channels;
        };
        for node in account.nodes.keys() {
            let Some(peer) = self.by_node.get(node) else {
                continue;
            };
            for session in peer.sessions.values() {
                if username_key(&session.user) == key
                    && !channels
                        .iter()
                        .any(|c| channel_key(c) == channel_key(&session.channel))
                {
                    channels.push(session.channel.clone());
                }
            }
        }
        channels
    }

    /// Takes session `gone` of `node` out of the counts.
    fn uncount(&mut self, node: &str, gone: &RemoteSession) {
        count(
            &mut self.channels,
            &channel_key(&gone.channel),
            &gone.channel,
            -1,
        );
        let key = username_key(&gone.user);
        let Some(account) = self.accounts.get_mut(&key) else {
            return;
        };
        if let Some(sessions) = account.nodes.get_mut(node) {
            *sessions = sessions.saturating_sub(1);
            if *sessions == 0 {
                account.nodes.remove(node);
            }
        }
        if account.nodes.is_empty() {
            self.accounts.remove(&key);
        }
    }

    /// Accounts with a session on some peer: key and username, ordered by key.
    pub(super) fn accounts(&self) -> impl Iterator<Item = (&str, &str)> {
        self.accounts
            .iter()
            .map(|(key, account)| (key.as_str(), account.name.as_str()))
    }

    /// Channels with members on some peer: key, name and how many, ordered by key.
    pub(super) fn channels(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.channels
            .iter()
            .map(|(key, (name, members))| (key.as_str(), name.as_str(), *members))
    }

    /// How many members the channel with `key` has on the peers.
    pub(super) fn members_of(&self, key: &str) -> usize {
        self.channels.get(key).map_or(0, |(_, members)| *members)
    }

    /// The name channel `name` (any letter case) has on the peers, if it has members
    /// there.
    pub(super) fn channel_name(&self, name: &str) -> Option<&str> {
        let (name, _) = self.channels.get(&channel_key(name))?;
        Some(name)
    }

    /// The usernames of the sessions in channel `key` on every peer (an account once per
    /// session).
    pub(super) fn users_in<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.by_node
            .values()
            .flat_map(|peer| peer.sessions.values())
            .filter(move |session| channel_key(&session.channel) == key)
            .map(|session| session.user.as_str())
    }

    /// Peers known.
    pub(super) fn len(&self) -> usize {
        self.by_node.len()
    }

    /// Sessions known on all peers together.
    pub(super) fn session_count(&self) -> usize {
        self.by_node.values().map(|peer| peer.sessions.len()).sum()
    }
}

/// Adds `delta` to the count of `key` (named `name`), which goes when it reaches zero.
fn count(table: &mut BTreeMap<String, (String, usize)>, key: &str, name: &str, delta: isize) {
    let entry = table
        .entry(key.to_owned())
        .or_insert_with(|| (name.to_owned(), 0));
    entry.1 = entry.1.saturating_add_signed(delta);
    if entry.1 == 0 {
        table.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str, channel: &str) -> RemoteSession {
        RemoteSession {
            user: user.into(),
            channel: channel.into(),
            role: Role::User,
        }
    }

    #[test]
    fn publications_are_taken_in_order_once_and_a_gap_is_noticed() {
        let now = Instant::now();
        let mut peers = Peers::default();
        assert_eq!(peers.heard("a", 1, 5, true, now, 8), Heard::New(vec![]));
        assert_eq!(peers.heard("a", 1, 6, true, now, 8), Heard::InOrder);
        assert_eq!(peers.heard("a", 1, 6, true, now, 8), Heard::Duplicate);
        assert_eq!(peers.heard("a", 1, 9, true, now, 8), Heard::AfterGap);
        assert_eq!(peers.heard("a", 1, 8, true, now, 8), Heard::Duplicate);
        assert_eq!(peers.heard("b", 1, 1, true, now, 1), Heard::TooManyPeers);
        // A state (directed) numbered 20 does not swallow broadcasts 10 to 20.
        assert_eq!(peers.heard("a", 1, 20, false, now, 8), Heard::InOrder);
        assert_eq!(peers.heard("a", 1, 10, true, now, 8), Heard::InOrder);
        // A node first heard through a state takes its next broadcast as the first.
        assert_eq!(peers.heard("c", 1, 30, false, now, 8), Heard::New(vec![]));
        assert_eq!(peers.heard("c", 1, 25, true, now, 8), Heard::InOrder);
    }

    #[test]
    fn counts_follow_sessions_and_a_new_incarnation_drops_the_old_ones() {
        let now = Instant::now();
        let mut peers = Peers::default();
        peers.heard("a", 1, 1, true, now, 8);
        assert_eq!(peers.enter("a", 10, session("Bob", "Global"), 8), Ok(None));
        assert_eq!(peers.enter("a", 11, session("Bob", "dev"), 8), Ok(None));
        assert_eq!(
            peers.enter("a", 10, session("Bob", "dev"), 8),
            Ok(Some(session("Bob", "Global")))
        );
        assert_eq!(peers.accounts().collect::<Vec<_>>(), [("bob", "Bob")]);
        assert_eq!(peers.channels().collect::<Vec<_>>(), [("dev", "dev", 2)]);
        assert_eq!(peers.exit("a", 11), Some(session("Bob", "dev")));
        assert_eq!(peers.accounts().collect::<Vec<_>>(), [("bob", "Bob")]);
        let gone = peers.heard("a", 2, 1, true, now, 8);
        assert_eq!(gone, Heard::New(vec![session("Bob", "dev")]));
        assert_eq!(peers.accounts().count(), 0);
        assert_eq!(peers.channels().count(), 0);
        assert_eq!(peers.session_count(), 0);
    }

    #[test]
    fn a_peer_gets_no_sessions_past_its_limit_and_a_silent_one_expires() {
        let now = Instant::now();
        let mut peers = Peers::default();
        peers.heard("a", 1, 1, true, now, 8);
        peers.replace(
            "a",
            (0..5).map(|i| (i, session(&format!("u{i}"), "Global"))),
            3,
        );
        assert_eq!(peers.session_count(), 3);
        assert_eq!(peers.enter("a", 9, session("late", "Global"), 3), Err(()));
        let later = now + std::time::Duration::from_secs(10);
        peers.heard("b", 1, 1, true, later, 8);
        let lost = peers.expire(later);
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].0, "a");
        assert_eq!(lost[0].1.len(), 3);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers.accounts().count(), 0);
    }
}
