//! Durable delivery: a message reaches its readers only once the store has committed it.
//!
//! A channel message or a private message to someone online is *held* when accepted: its
//! append goes to the store. Its sender may go on sending messages (up to
//! `Config::max_uncommitted_messages` held at once, so a busy sender's messages share
//! commits), but any other command of a logged-in user waits until every message accepted
//! before it (anyone's) is released, so what a user does reaches others in the order they
//! did it and a `/join` never overtakes a message its sender should still get. When the store answers, the message is settled;
//! settled messages are released in the order they were accepted: delivered when the
//! store committed them, or, when it could not, never delivered and the sender told why.
//! So whatever anyone received is in history, even if the process dies the next moment.
//!
//! A member who joined a channel while one of its messages was held reads that message in
//! the history replayed at the join (which waits for earlier appends), not live as well.

use super::{Engine, Sender};
use crate::ids::{ConnectionId, MessageId, RequestId};
use crate::names::username_key;
use crate::store::{StoreReply, StoreRequest};
use crate::wire::Line;

/// An accepted message waiting for the store's answer.
#[derive(Debug)]
pub(super) struct Held {
    /// The append's request; `held` is ordered by it.
    request: RequestId,
    sender: ConnectionId,
    /// `Some(true)` once committed, `Some(false)` once the store failed it.
    committed: Option<bool>,
    /// Whom it goes to once committed.
    to: Audience,
    id: MessageId,
    /// The sender's username as registered.
    from: String,
    text: String,
}

/// Whom a held message is for.
#[derive(Debug)]
pub(super) enum Audience {
    /// The members of the channel with this key (except the sender's connection), on
    /// this node and, in a cluster, on every other (where the channel is `name`).
    Channel { key: String, name: String },
    /// Every session of the account with this key.
    Direct(String),
}

impl Audience {
    /// The channel with `key`, named `name`.
    pub(super) fn channel(key: &str, name: &str) -> Audience {
        Audience::Channel {
            key: key.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The account named `user` (any letter case).
    pub(super) fn direct(user: &str) -> Audience {
        Audience::Direct(username_key(user))
    }
}

impl Engine {
    /// Sends `request` (the append of message `id` with `text` from `sender`) and holds
    /// the message for `to` until the store answers (see [`Engine::waits_for_held`]).
    pub(super) fn hold(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        request: StoreRequest,
        to: Audience,
        id: MessageId,
        text: String,
    ) {
        let request = self.request(request);
        self.held.push_back(Held {
            request,
            sender: connection,
            committed: None,
            to,
            id,
            from: sender.username.clone(),
            text,
        });
        if let Some(session) = self.sessions.get_mut(connection) {
            session.uncommitted += 1;
        }
    }

    /// If `request` is a held message's append: settles it with `reply`, releases what can
    /// be released, and returns `true`.
    pub(super) fn settle_held(
        &mut self,
        request: RequestId,
        reply: &StoreReply,
        now: std::time::Instant,
    ) -> bool {
        let Ok(index) = self
            .held
            .binary_search_by_key(&request, |held| held.request)
        else {
            return false;
        };
        let committed = matches!(reply, StoreReply::Done);
        if let Some(held) = self.held.get_mut(index) {
            held.committed = Some(committed);
        }
        if !committed && let Some(sender) = self.held.get(index).map(|held| held.sender) {
            tracing::warn!(request = %request, reply = ?reply, "a message was not stored");
            self.store_failed(sender, reply);
        }
        // Everything releasable goes out before any waiting input runs: a line that
        // arrived after these messages must not act before them (a `/join` would take
        // its sender out of a channel that still has a message for them).
        let mut resume = std::mem::take(&mut self.held_waiters);
        while self
            .held
            .front()
            .is_some_and(|held| held.committed.is_some())
        {
            if let Some(held) = self.held.pop_front() {
                resume.push(held.sender);
                self.release(held, now);
            }
        }
        resume.sort_unstable();
        resume.dedup();
        for connection in resume {
            self.process_input(connection, now);
        }
        true
    }

    /// Whether `connection`'s next line must wait for held messages: `max_uncommitted`
    /// of its own are held already, or the line is not a message and messages accepted
    /// before it (anyone's) are still held. Such a line waits only for those, never for
    /// messages accepted after it, so steady chat cannot hold it up for ever.
    pub(super) fn waits_for_held(&mut self, connection: ConnectionId) -> bool {
        let newest = self.held.back().map(|held| held.request);
        let oldest = self.held.front().map(|held| held.request);
        let max = self.config.max_uncommitted_messages;
        let Some(session) = self.sessions.get_mut(connection) else {
            return false;
        };
        if newest.is_none() {
            // Nothing held (the usual case): no line to look at.
            session.held_barrier = None;
            return false;
        }
        let waits = match session.next_line() {
            _ if session.uncommitted > 0 && session.uncommitted >= max => true,
            None | Some(true) => false,
            // Before login no line touches a channel.
            Some(false) if session.member().is_none() => false,
            Some(false) => {
                if session.held_barrier.is_none() {
                    session.held_barrier = newest;
                }
                let barrier = session.held_barrier;
                barrier.is_some_and(|barrier| oldest.is_some_and(|oldest| oldest <= barrier))
            }
        };
        if !waits {
            session.held_barrier = None;
        } else if !self.held_waiters.contains(&connection) {
            self.held_waiters.push(connection);
        }
        waits
    }

    /// Delivers a settled message (if committed) and lets its sender send more.
    fn release(&mut self, held: Held, now: std::time::Instant) {
        if held.committed == Some(true) {
            match &held.to {
                Audience::Channel { key, name } => {
                    self.deliver_to_channel(&held, key);
                    self.publish_chat(held.id, name, &held.from, &held.text);
                }
                Audience::Direct(key) => self.deliver_direct(&held, key, now),
            }
        }
        if let Some(session) = self.sessions.get_mut(held.sender) {
            session.uncommitted = session.uncommitted.saturating_sub(1);
        }
    }

    fn deliver_to_channel(&mut self, held: &Held, key: &str) {
        let Some(channel) = self.channels.get(key) else {
            return;
        };
        let line = Line::Chat {
            channel: &channel.name,
            user: &held.from,
            text: &held.text,
            id: held.id,
        };
        let sequence = held.id.sequence;
        if channel.last_joined_after < sequence {
            self.outbox.broadcast(
                &mut self.sessions,
                &channel.members,
                Some(held.sender),
                &line,
            );
            return;
        }
        // Someone joined while it was held: they have it from the join's history replay.
        let sessions = &self.sessions;
        let before_join: Vec<ConnectionId> = channel
            .members
            .iter()
            .copied()
            .filter(|&member| {
                sessions
                    .get(member)
                    .and_then(|session| session.member())
                    .is_some_and(|m| m.joined_after < sequence)
            })
            .collect();
        self.outbox
            .broadcast(&mut self.sessions, &before_join, Some(held.sender), &line);
    }

    /// To the recipient's sessions here and, in a cluster, on other nodes; when it has
    /// none left anywhere, it waits for their login.
    fn deliver_direct(&mut self, held: &Held, key: &str, now: std::time::Instant) {
        let shown_here = match self.accounts.get(key) {
            Some(recipient) => {
                let line = Line::Direct {
                    from: &held.from,
                    text: &held.text,
                    id: held.id,
                };
                self.outbox
                    .broadcast(&mut self.sessions, &recipient.sessions, None, &line);
                true
            }
            None => false,
        };
        let published = self.publish_direct(held.id, key, &held.from, &held.text, shown_here, now);
        if !shown_here && !published {
            // Every session of the recipient ended meanwhile: it waits for their login.
            self.request(StoreRequest::MarkPending { ids: vec![held.id] });
        }
    }
}
