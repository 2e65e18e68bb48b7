//! Channels that last: the catalogue of registered channels, `/topic`, `/private`,
//! `/invite` and `/names`, and the check `/join` makes against a private channel.
//!
//! How the engine learns of stored channels: it asks the store for the whole catalogue
//! ([`StoreRequest::LoadChannels`]) once, when it is created, and from then on keeps it
//! current itself: its own registrations and changes (each committed before it is
//! applied), and in a cluster those the other nodes publish. So `/join` never waits for
//! the store: the catalogue answers whether a channel is private and who may join it. Until
//! the catalogue has arrived, channel commands (`/join`, `/topic`, `/private`, `/invite`)
//! wait for it (other lines of the same connection wait behind them, as behind any store
//! answer); if loading failed, those commands get a storage error and the next one asks
//! again. A channel's first joiner registers it ([`StoreRequest::RegisterChannel`], which
//! answers with the channel as stored, so a registration another node made first wins);
//! the default channel is never registered by a join and has no owner. This module owns
//! no state of its own: the catalogue lives in `channels`.

use std::collections::BTreeSet;
use std::time::Instant;

use super::cluster::Listing;
use super::{Engine, Pending, Sender};
use crate::cluster::{Body, Topic};
use crate::command::Command;
use crate::ids::{ConnectionId, RequestId};
use crate::names::{channel_key, is_valid_channel_name, is_valid_username, username_key};
use crate::store::{Role, StoreError, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line};

/// A store request about the catalogue that no connection waits for.
#[derive(Debug)]
pub(super) enum CatalogueRequest {
    /// [`StoreRequest::LoadChannels`].
    Load,
    /// [`StoreRequest::RegisterChannel`] of the channel with this key.
    Register(String),
}

/// A change to a channel's settings, waiting for its commit.
#[derive(Debug, Clone)]
pub(super) enum ChannelChange {
    Topic(Option<String>),
    Private(bool),
    /// The invitee as typed.
    Invite(String),
}

impl Engine {
    /// Asks the store for the catalogue, unless it is loaded or on its way.
    pub(super) fn load_catalogue(&mut self) {
        let loading = self
            .catalogue_requests
            .values()
            .any(|r| matches!(r, CatalogueRequest::Load));
        if self.channels.loaded || loading {
            return;
        }
        let id = self.request(StoreRequest::LoadChannels);
        self.catalogue_requests.insert(id, CatalogueRequest::Load);
    }

    /// Asks the store for the catalogue again (unless a load is on its way), after a
    /// cluster peer's publications may have been missed; commands do not wait for it.
    pub(super) fn refresh_catalogue(&mut self) {
        let loading = self
            .catalogue_requests
            .values()
            .any(|r| matches!(r, CatalogueRequest::Load));
        if self.channels.loaded && !loading {
            let id = self.request(StoreRequest::LoadChannels);
            self.catalogue_requests.insert(id, CatalogueRequest::Load);
        }
    }

    /// Whether `command` needs the catalogue and must wait for it: then it is kept, with
    /// `connection`'s input held, until the catalogue arrives.
    pub(super) fn waits_for_catalogue(
        &mut self,
        connection: ConnectionId,
        command: &Command,
    ) -> bool {
        let needs = matches!(
            command,
            Command::Join(_) | Command::SetTopic(_) | Command::Private(_) | Command::Invite(_)
        );
        if !needs || self.channels.loaded {
            return false;
        }
        self.load_catalogue();
        if let Some(session) = self.sessions.get_mut(connection) {
            session.awaiting += 1;
        }
        self.catalogue_waiters.push((connection, command.clone()));
        true
    }

    /// The answer to a catalogue request: the catalogue (then the commands that waited
    /// for it run), or a channel as registered.
    pub(super) fn on_catalogue_reply(
        &mut self,
        request: CatalogueRequest,
        reply: StoreReply,
        now: Instant,
    ) {
        match (request, reply) {
            (CatalogueRequest::Load, StoreReply::Channels(channels)) => {
                tracing::info!(channels = channels.len(), "channel catalogue loaded");
                self.channels.register(channels);
                self.channels.loaded = true;
                self.run_catalogue_waiters(None, now);
            }
            (CatalogueRequest::Load, other) => {
                tracing::warn!(reply = ?other, "loading the channel catalogue failed");
                // A failed refresh keeps the catalogue loaded before.
                self.run_catalogue_waiters(Some(other), now);
            }
            (CatalogueRequest::Register(_), StoreReply::Channels(channels)) => {
                // Only the owner: the rest of this answer may be older than a change
                // committed (and applied) since, whose answer overtook this one.
                for channel in channels {
                    if !is_valid_channel_name(&channel.name) {
                        continue;
                    }
                    self.apply_registered(&channel.name, channel.owner.clone());
                    let body = Body::Registered {
                        channel: channel.name,
                        owner: channel.owner,
                    };
                    self.publish(Topic::All, body);
                }
            }
            (CatalogueRequest::Register(key), other) => {
                // Not registered: the next first joiner tries again.
                tracing::warn!(channel = %key, reply = ?other, "registering a channel failed");
                self.channels.unregister(&key);
            }
        }
    }

    /// Runs (or, when loading failed with `failure`, refuses) the commands that waited for
    /// the catalogue, then lets their connections go on.
    fn run_catalogue_waiters(&mut self, failure: Option<StoreReply>, now: Instant) {
        for (connection, command) in std::mem::take(&mut self.catalogue_waiters) {
            let Some(session) = self.sessions.get_mut(connection) else {
                continue;
            };
            session.awaiting = session.awaiting.saturating_sub(1);
            match &failure {
                Some(reply) => self.store_failed(connection, reply),
                None => self.run_command(connection, command),
            }
            self.process_input(connection, now);
        }
    }

    /// Whether `sender` may enter channel `key`; if not, says why.
    pub(super) fn may_enter(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        key: &str,
    ) -> bool {
        let Some(settings) = self.channels.settings(key) else {
            return true;
        };
        if settings.may_join(&sender.account, sender.role) {
            return true;
        }
        let name = self.channels.name(key);
        self.error(
            connection,
            ErrorCode::NotInvited,
            format_args!("{name} is private: ask its owner or a moderator for an /invite"),
        );
        false
    }

    /// After `sender` (on `connection`) entered channel `key`: registers it, with `sender`
    /// as its owner, if it is new (the default channel never is) and `sender` may own one
    /// more ([`Config::max_channels_per_owner`](crate::Config::max_channels_per_owner)).
    pub(super) fn register_if_new(&mut self, connection: ConnectionId, sender: &Sender, key: &str) {
        if self.channels.settings(key).is_some() || key == channel_key(&self.config.default_channel)
        {
            return;
        }
        let name = self.channels.name(key);
        let limit = self.config.max_channels_per_owner;
        if sender.role < Role::Mod && self.channels.owned_by(&sender.account) >= limit {
            let text = format!(
                "{name} is not registered: you own {limit} channels already (the most a user \
                 may); it goes away when its last member leaves"
            );
            return self.send(connection, Line::Info(&text));
        }
        let owner = Some(sender.username.clone());
        // Owned at once: the store's answer corrects it if another node was first.
        self.channels.set_owner(&name, owner.clone());
        let id = self.request(StoreRequest::RegisterChannel { name, owner });
        self.catalogue_requests
            .insert(id, CatalogueRequest::Register(key.to_owned()));
    }

    /// Sends the topic of channel `key` to `connection`: when none is set, only if `always`.
    pub(super) fn show_topic(&mut self, connection: ConnectionId, key: &str, always: bool) {
        let name = self.channels.name(key);
        let topic = self.channels.settings(key).and_then(|s| s.topic.clone());
        if topic.is_some() || always {
            let topic = topic.as_deref();
            self.send(
                connection,
                Line::Topic {
                    channel: &name,
                    topic,
                },
            );
        }
    }

    /// `/topic <text>`, `/private on|off` and `/invite <user>`: checked, then committed
    /// (the connection's next line waits), then applied.
    pub(super) fn change_channel(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        change: ChannelChange,
    ) {
        let key = sender.channel.clone();
        let name = self.channels.name(&key);
        let allowed = match self.channels.settings(&key) {
            Some(settings) => settings.may_change(&sender.account, sender.role),
            None => sender.role >= Role::Mod,
        };
        if !allowed {
            return self.error(
                connection,
                ErrorCode::Forbidden,
                format_args!("only the owner of {name}, moderators and admins can do that"),
            );
        }
        let request = match &change {
            ChannelChange::Topic(topic) => {
                // A topic is words to the channel: not from a muted user.
                if topic.is_some() && self.refuse_if_muted(connection, &sender.account) {
                    return;
                }
                let topic = match topic {
                    Some(text) => match self.checked_text(connection, text) {
                        Some(text) => Some(text),
                        None => return,
                    },
                    None => None,
                };
                let change = ChannelChange::Topic(topic.clone());
                let request = StoreRequest::SetTopic {
                    channel: name.clone(),
                    topic,
                };
                return self.request_for(
                    request,
                    Pending::ChannelChange {
                        connection,
                        channel: name,
                        change,
                    },
                );
            }
            ChannelChange::Private(private) => {
                if *private && key == channel_key(&self.config.default_channel) {
                    return self.error(
                        connection,
                        ErrorCode::Forbidden,
                        format_args!("{name} is where everyone arrives: it cannot be private"),
                    );
                }
                StoreRequest::SetPrivate {
                    channel: name.clone(),
                    private: *private,
                }
            }
            ChannelChange::Invite(user) => {
                if !is_valid_username(user) {
                    return self.no_such_user(connection, user);
                }
                StoreRequest::Invite {
                    channel: name.clone(),
                    username: user.clone(),
                }
            }
        };
        self.request_for(
            request,
            Pending::ChannelChange {
                connection,
                channel: name,
                change,
            },
        );
    }

    /// The store committed (or refused) a change to channel `channel` asked by
    /// `connection`.
    pub(super) fn on_channel_changed(
        &mut self,
        connection: ConnectionId,
        channel: &str,
        change: ChannelChange,
        reply: StoreReply,
    ) {
        let by = self.username_of(connection).unwrap_or_default();
        match (change, reply) {
            (ChannelChange::Topic(topic), StoreReply::Done) => {
                self.apply_topic(channel, topic.clone(), &by);
                let body = Body::Topic {
                    channel: channel.to_owned(),
                    topic,
                    by,
                };
                self.publish(Topic::All, body);
            }
            (ChannelChange::Private(private), StoreReply::Done) => {
                self.apply_private(channel, private, &by);
                let body = Body::Private {
                    channel: channel.to_owned(),
                    private,
                    by,
                };
                self.publish(Topic::All, body);
            }
            (ChannelChange::Invite(_), StoreReply::Account { username, .. }) => {
                self.apply_invite(channel, &username, &by);
                self.send(
                    connection,
                    Line::Invited {
                        channel,
                        user: &username,
                    },
                );
                let body = Body::Invite {
                    channel: channel.to_owned(),
                    user: username,
                    by,
                };
                self.publish(Topic::All, body);
            }
            (ChannelChange::Invite(user), StoreReply::Failed(StoreError::UnknownUser)) => {
                self.no_such_user(connection, &user);
            }
            (_, other) => self.store_failed(connection, &other),
        }
    }

    /// Channel `channel`'s topic is now `topic`, set by `by`: its members here are told.
    pub(super) fn apply_topic(&mut self, channel: &str, topic: Option<String>, by: &str) {
        let (key, settings) = self.channels.settings_mut(channel);
        settings.topic = topic;
        let Some(channel) = self.channels.get(&key) else {
            return;
        };
        let topic = channel.settings.as_ref().and_then(|s| s.topic.as_deref());
        let line = Line::TopicChanged {
            channel: &channel.name,
            topic,
            by,
        };
        self.outbox
            .broadcast(&mut self.sessions, &channel.members, None, &line);
    }

    /// Channel `channel` is now private (or public), by `by`: its members here are told.
    pub(super) fn apply_private(&mut self, channel: &str, private: bool, by: &str) {
        let (key, settings) = self.channels.settings_mut(channel);
        settings.private = private;
        let Some(channel) = self.channels.get(&key) else {
            return;
        };
        let line = Line::PrivacyChanged {
            channel: &channel.name,
            private,
            by,
        };
        self.outbox
            .broadcast(&mut self.sessions, &channel.members, None, &line);
    }

    /// `by` invited `user` (as registered) to `channel`: the invitee's sessions here are
    /// told.
    pub(super) fn apply_invite(&mut self, channel: &str, user: &str, by: &str) {
        let (key, settings) = self.channels.settings_mut(channel);
        settings.invited.insert(username_key(user), user.to_owned());
        let name = self.channels.name(&key);
        let sessions = self
            .accounts
            .get(&username_key(user))
            .map(|account| account.sessions.clone())
            .unwrap_or_default();
        let line = Line::Invitation { channel: &name, by };
        self.outbox
            .broadcast(&mut self.sessions, &sessions, None, &line);
    }

    /// `channel` was registered, here or on another node, with `owner` as stored.
    pub(super) fn apply_registered(&mut self, channel: &str, owner: Option<String>) {
        let owner = owner.filter(|o| is_valid_username(o));
        self.channels.set_owner(channel, owner);
    }

    /// `/names`: who is in the sender's channel, on this node and the others, each once,
    /// ordered by key.
    pub(super) fn names(&mut self, connection: ConnectionId, sender: &Sender) {
        let key = &sender.channel;
        let mut users: Vec<(String, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        let local = self.channels.get(key).map(|c| c.members.as_slice());
        for &member in local.unwrap_or_default() {
            if let Some(name) = self.username_of(member)
                && seen.insert(username_key(&name))
            {
                users.push((username_key(&name), name));
            }
        }
        if let Some(cluster) = &self.cluster {
            for name in cluster.peers.users_in(key) {
                if seen.insert(username_key(name)) {
                    users.push((username_key(name), name.to_owned()));
                }
            }
        }
        users.sort();
        let channel = self.channels.name(key);
        let users = users.iter().map(|(_, name)| name.as_str()).collect();
        self.send(
            connection,
            Line::Names {
                channel: &channel,
                users,
            },
        );
    }

    /// `/channels`: the channels the sender may see, with members and topics.
    pub(super) fn list_channels(&mut self, connection: ConnectionId, sender: &Sender) {
        let entries = super::cluster::channels_everywhere(
            &self.channels,
            self.cluster.as_ref(),
            |settings| settings.may_join(&sender.account, sender.role),
        );
        let entries = entries
            .into_iter()
            .map(
                |Listing {
                     name,
                     members,
                     topic,
                 }| (name, members, topic),
            )
            .collect();
        self.outbox
            .send(&mut self.sessions, connection, &Line::Channels(entries));
    }

    /// The request for `id`, if it is a catalogue request.
    pub(super) fn take_catalogue_request(&mut self, id: RequestId) -> Option<CatalogueRequest> {
        self.catalogue_requests.remove(&id)
    }
}
