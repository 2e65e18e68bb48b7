//! The commands of logged-in users: chat, private messages, channels, roles, kicks, and
//! the store answers that complete them.

use super::channel_modes::ChannelChange;
use super::cluster::{away_text_everywhere, usernames_everywhere};
use super::delivery::Audience;
use super::{Departure, Engine, Pending, Sender, Stage};
use crate::command::{Command, ParseError, parse_command};
use crate::ids::ConnectionId;
use crate::names::{channel_key, is_valid_channel_name, is_valid_username, username_key};
use crate::output::CloseReason;
use crate::sanitize::sanitize_text;
use crate::store::{ChannelMessage, PrivateMessage, Role, StoreError, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line};

impl Engine {
    /// A line from a logged-in connection.
    pub(super) fn on_chat_line(&mut self, connection: ConnectionId, line: &str) {
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(ParseError::Empty) => return,
            Err(ParseError::Unknown(name)) => {
                let name = sanitize_text(&name);
                return self.error(
                    connection,
                    ErrorCode::UnknownCommand,
                    format_args!("unknown command /{name}; type /help for the list"),
                );
            }
            Err(ParseError::Usage(usage)) => {
                return self.error(connection, ErrorCode::Usage, format_args!("usage: {usage}"));
            }
        };
        if let Command::Say(text) = &command {
            return self.say(connection, text);
        }
        if self.waits_for_catalogue(connection, &command) {
            return;
        }
        self.run_command(connection, command);
    }

    /// A command of a logged-in connection, carried out.
    pub(super) fn run_command(&mut self, connection: ConnectionId, command: Command) {
        let Some(sender) = self.sender(connection) else {
            return;
        };
        match command {
            Command::Say(text) => self.say(connection, &text),
            Command::Msg { to, text } => self.direct_message(connection, &sender, &to, &text),
            Command::Join(channel) => self.join(connection, &sender, &channel),
            Command::SendUpload { to, name, size } => {
                self.start_upload(connection, &sender, &to, &name, size);
            }
            Command::SendServerFile { to, path } => {
                self.start_server_file(connection, &sender, &to, &path);
            }
            Command::Cancel(id) => self.cancel_transfer(connection, &sender, id),
            Command::List => {
                let (accounts, cluster) = (&self.accounts, self.cluster.as_ref());
                let users = usernames_everywhere(accounts, cluster)
                    .into_iter()
                    .map(|name| {
                        let away = away_text_everywhere(accounts, cluster, &username_key(name));
                        (name, away)
                    })
                    .collect();
                self.outbox
                    .send(&mut self.sessions, connection, &Line::Users(users));
            }
            Command::Channels => self.list_channels(connection, &sender),
            Command::ShowTopic => self.show_topic(connection, &sender.channel, true),
            Command::SetTopic(topic) => {
                self.change_channel(connection, &sender, ChannelChange::Topic(topic));
            }
            Command::Private(private) => {
                self.change_channel(connection, &sender, ChannelChange::Private(private));
            }
            Command::Invite(user) => {
                self.change_channel(connection, &sender, ChannelChange::Invite(user));
            }
            Command::Names => self.names(connection, &sender),
            Command::Away(text) => self.set_away(connection, &sender, text),
            Command::Profile => {
                let channel = self.channels.name(&sender.channel);
                let (user, role) = (sender.username.as_str(), sender.role);
                self.send(
                    connection,
                    Line::Profile {
                        user,
                        channel: &channel,
                        role,
                    },
                );
            }
            Command::Kick { user, reason } => self.kick(connection, &sender, &user, reason),
            Command::Sanction {
                kind,
                user,
                duration,
                reason,
            } => self.impose(connection, &sender, kind, &user, duration, reason),
            Command::Lift { kind, user } => self.lift(connection, &sender, kind, &user),
            Command::Sanctions => self.list_sanctions(connection, &sender),
            Command::ShowRole => self.show_role(connection, &sender),
            Command::SetRole { user, role } => self.set_role(connection, &sender, &user, role),
            Command::History {
                with,
                count,
                before,
            } => self.show_history(connection, &sender, with, count, before),
            Command::ChangePassword { old, new } => {
                self.change_password(connection, &sender, old, new);
            }
            Command::DeleteAccount { password } => {
                self.delete_account(connection, &sender, password);
            }
            Command::Token => self.issue_token(connection, &sender),
            Command::LogoutEverywhere => self.logout_everywhere(connection, &sender),
            Command::Ping(token) => self.send(connection, Line::Pong(&sanitize_text(&token))),
            Command::Close => {
                self.send(connection, Line::Goodbye);
                self.close(connection, CloseReason::ClientQuit, Departure::Announced);
            }
            Command::Help => self.send(connection, Line::Help(Some(sender.role))),
            Command::Mode(mode) => self.set_mode(connection, mode),
            Command::Register { .. } | Command::Login { .. } | Command::Resume { .. } => {
                self.error(
                    connection,
                    ErrorCode::AlreadyLoggedIn,
                    format_args!("you are already logged in"),
                );
            }
        }
    }

    /// Plain text: to the store, then (once committed) to every other member of the
    /// channel, encoded once.
    fn say(&mut self, connection: ConnectionId, text: &str) {
        let Some(sender) = self.sender(connection) else {
            return;
        };
        if self.refuse_if_muted(connection, &sender.account) {
            return;
        }
        let Some(text) = self.checked_text(connection, text) else {
            return;
        };
        let id = self.next_message_id();
        let channel = self.channels.name(&sender.channel);
        let to = Audience::channel(&sender.channel, &channel);
        let message = ChannelMessage {
            id,
            channel,
            sender: sender.username.clone(),
            text: text.clone(),
        };
        self.stats.channel_messages += 1;
        let request = StoreRequest::AppendChannelMessage(message);
        self.hold(connection, &sender, request, to, id, text);
    }

    fn direct_message(&mut self, connection: ConnectionId, sender: &Sender, to: &str, text: &str) {
        if self.refuse_if_muted(connection, &sender.account) {
            return;
        }
        if !is_valid_username(to) {
            return self.no_such_user(connection, to);
        }
        let Some(text) = self.checked_text(connection, text) else {
            return;
        };
        let id = self.next_message_id();
        let key = username_key(to);
        let online = self.accounts.is_online(&key)
            || self
                .cluster
                .as_ref()
                .is_some_and(|cluster| cluster.peers.account(&key).is_some());
        self.stats.direct_messages += 1;
        if let Some(away) = self.away_reply_anywhere(&key, &sender.account) {
            let user = self.username_anywhere(&key).unwrap_or(to).to_owned();
            self.send(
                connection,
                Line::Away {
                    user: &user,
                    text: &away,
                },
            );
        }
        let message = |text| PrivateMessage {
            id,
            sender: sender.username.clone(),
            recipient: to.to_string(),
            text,
            delivered: online,
        };
        if online {
            let request = StoreRequest::AppendPrivateMessage(message(text.clone()));
            self.hold(connection, sender, request, Audience::direct(to), id, text);
        } else {
            let request = StoreRequest::AppendPrivateMessage(message(text));
            let recipient = to.to_string();
            self.request_for(
                request,
                Pending::OfflineDirect {
                    connection,
                    recipient,
                },
            );
        }
    }

    fn join(&mut self, connection: ConnectionId, sender: &Sender, channel: &str) {
        if !is_valid_channel_name(channel) {
            return self.error(
                connection,
                ErrorCode::InvalidChannel,
                format_args!("channel names are 1 to 32 letters, digits, '_', '-', '.' or '#'"),
            );
        }
        let old = self.channels.name(&sender.channel);
        let key = channel_key(channel);
        if key == sender.channel {
            return self.send(connection, Line::Info(&format!("You are already in {old}")));
        }
        if !self.may_enter(connection, sender, &key) {
            return;
        }
        self.leave_channel(connection, Departure::Announced);
        let new = self.enter_channel(connection, channel);
        self.register_if_new(connection, sender, &key);
        self.send(
            connection,
            Line::Switched {
                from: &old,
                to: &new,
            },
        );
        self.show_topic(connection, &key, false);
        self.replay_history(connection, new, self.config.history_replay, None);
    }

    /// `/away [text]`: every session of the account is told (the message is the account's);
    /// a muted user may come back but not set a message.
    fn set_away(&mut self, connection: ConnectionId, sender: &Sender, text: Option<String>) {
        // An away message answers private messages: not from a muted user.
        if text.is_some() && self.refuse_if_muted(connection, &sender.account) {
            return;
        }
        let text = match text {
            Some(text) => match self.checked_text(connection, &text) {
                Some(text) => Some(text),
                None => return,
            },
            None => None,
        };
        self.accounts.set_away(&sender.account, text.clone());
        self.tell_away(&sender.account);
        self.publish_away(&sender.account, &sender.username, text);
    }

    /// Tells every session here of account `key` its away message as it is now.
    pub(super) fn tell_away(&mut self, key: &str) {
        let Some(account) = self.accounts.get(key) else {
            return;
        };
        let away = account.away.as_ref().map(|away| away.text.clone());
        let sessions = account.sessions.clone();
        let line = Line::AwaySet(away.as_deref());
        self.outbox
            .broadcast(&mut self.sessions, &sessions, None, &line);
    }

    fn kick(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        user: &str,
        reason: Option<String>,
    ) {
        if sender.role < Role::Mod {
            return self.error(
                connection,
                ErrorCode::Forbidden,
                format_args!("only moderators and admins can kick"),
            );
        }
        let key = username_key(user);
        if key == sender.account {
            return self.error(
                connection,
                ErrorCode::CannotKickSelf,
                format_args!("you cannot kick yourself"),
            );
        }
        // The target's registered name and role, from its sessions here or elsewhere.
        let local = self
            .accounts
            .get(&key)
            .map(|a| (a.username.clone(), a.role));
        let remote = self.cluster.as_ref().and_then(|cluster| {
            let account = cluster.peers.account(&key)?;
            Some((account.name.clone(), account.role))
        });
        let Some((target_name, target_role)) = local.or(remote).filter(|_| is_valid_username(user))
        else {
            let user = sanitize_text(user);
            return self.error(
                connection,
                ErrorCode::NotOnline,
                format_args!("{user} is not online"),
            );
        };
        if sender.role == Role::Mod && target_role >= Role::Mod {
            return self.error(
                connection,
                ErrorCode::Forbidden,
                format_args!("moderators cannot kick moderators or admins"),
            );
        }
        let reason = reason
            .map(|r| sanitize_text(&r).into_owned())
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "no reason given".to_string());
        // The channels of the user's sessions here, then (in a cluster) elsewhere.
        let mut channels: Vec<String> = Vec::new();
        let sessions = self.accounts.get(&key).map(|a| a.sessions.as_slice());
        for &session in sessions.unwrap_or_default() {
            if let Some(member) = self.sessions.get(session).and_then(|s| s.member())
                && !channels.contains(&member.channel)
            {
                channels.push(member.channel.clone());
            }
        }
        // Named on other nodes as the channels are named here.
        let mut channel_names: Vec<String> =
            channels.iter().map(|k| self.channels.name(k)).collect();
        if let Some(cluster) = &self.cluster {
            for name in cluster.peers.channels_of(&key) {
                if !channels.contains(&channel_key(&name)) {
                    channels.push(channel_key(&name));
                    channel_names.push(name);
                }
            }
        }
        self.kick_out(&key, &target_name, &sender.username, &reason, &channels);
        self.publish_kick(&target_name, &sender.username, &reason, &channel_names);
        tracing::info!(by = %sender.username, user = %target_name, %reason, "kick");
        self.send(connection, Line::KickDone { user: &target_name });
    }

    /// Closes this node's sessions of account `key` (named `user`), telling each it was
    /// kicked by `by`, then tells this node's members of `channels` (keys).
    pub(super) fn kick_out(
        &mut self,
        key: &str,
        user: &str,
        by: &str,
        reason: &str,
        channels: &[String],
    ) {
        let sessions = self
            .accounts
            .get(key)
            .map(|account| account.sessions.clone())
            .unwrap_or_default();
        for session in sessions {
            self.send(session, Line::Kicked { by, reason });
            self.close(session, CloseReason::Kicked, Departure::Silent);
        }
        let line = Line::KickNotice { user, by, reason };
        for key in channels {
            if let Some(channel) = self.channels.get(key) {
                self.outbox
                    .broadcast(&mut self.sessions, &channel.members, None, &line);
            }
        }
    }

    fn show_role(&mut self, connection: ConnectionId, sender: &Sender) {
        let toggled = match sender.role {
            Role::User => Role::Mod,
            Role::Mod => Role::User,
            Role::Admin => Role::Admin,
        };
        if !self.config.demo_roles || toggled == sender.role {
            return self.send(connection, Line::YourRole { role: sender.role });
        }
        let username = sender.username.clone();
        let pending = Pending::SetRole {
            connection,
            user: username.clone(),
        };
        let request = StoreRequest::SetRole {
            username,
            role: toggled,
        };
        self.request_for(request, pending);
    }

    fn set_role(&mut self, connection: ConnectionId, sender: &Sender, user: &str, role: Role) {
        if sender.role != Role::Admin {
            return self.error(
                connection,
                ErrorCode::Forbidden,
                format_args!("only admins can set roles"),
            );
        }
        if !is_valid_username(user) {
            return self.no_such_user(connection, user);
        }
        let username = user.to_string();
        self.request_for(
            StoreRequest::SetRole { username, role },
            Pending::SetRole {
                connection,
                user: user.to_string(),
            },
        );
    }

    /// The store changed a role: apply it to the live sessions at once.
    pub(super) fn on_role_set(&mut self, connection: ConnectionId, user: &str, reply: StoreReply) {
        let StoreReply::Account { username, role, .. } = reply else {
            match reply {
                StoreReply::Failed(StoreError::UnknownUser) => self.no_such_user(connection, user),
                StoreReply::Failed(StoreError::LastAdmin) => self.error(
                    connection,
                    ErrorCode::LastAdmin,
                    format_args!(
                        "the last admin cannot stop being admin; make another admin first"
                    ),
                ),
                _ => self.store_failed(connection, &reply),
            }
            return;
        };
        let by = self.username_of(connection).unwrap_or_default();
        let key = username_key(&username);
        let mut told_requester = false;
        if let Some(account) = self.accounts.set_role(&key, role) {
            told_requester = account.sessions.contains(&connection);
            let line = Line::RoleChanged { role, by: &by };
            self.outbox
                .broadcast(&mut self.sessions, &account.sessions, None, &line);
        }
        self.publish_role(&username, role, &by);
        tracing::info!(%by, user = %username, %role, "role set");
        if !told_requester {
            self.send(
                connection,
                Line::RoleSet {
                    user: &username,
                    role,
                },
            );
        }
    }

    /// Private messages that waited for this user: shown, then marked delivered.
    pub(super) fn on_offline_messages(&mut self, connection: ConnectionId, reply: StoreReply) {
        let StoreReply::Pending(messages) = reply else {
            return self.store_failed(connection, &reply);
        };
        if messages.is_empty() {
            return;
        }
        let mut ids = Vec::with_capacity(messages.len());
        for message in messages {
            let text = sanitize_text(&message.text);
            let sender = sanitize_text(&message.sender);
            self.send(
                connection,
                Line::OfflineDirect {
                    from: &sender,
                    text: &text,
                    sent_at: message.sent_at_unix_ms,
                    id: message.id,
                },
            );
            ids.push(message.id);
        }
        self.request(StoreRequest::MarkDelivered { ids });
    }

    pub(super) fn on_offline_direct_stored(
        &mut self,
        connection: ConnectionId,
        recipient: &str,
        reply: StoreReply,
    ) {
        match reply {
            StoreReply::Done => self.send(connection, Line::StoredForLater { to: recipient }),
            StoreReply::Failed(StoreError::UnknownUser) => self.no_such_user(connection, recipient),
            other => self.store_failed(connection, &other),
        }
    }

    /// An unexpected store answer: the user hears that it failed, the log hears why.
    pub(super) fn store_failed(&mut self, connection: ConnectionId, reply: &StoreReply) {
        match reply {
            StoreReply::Failed(StoreError::Busy) => {
                self.error(
                    connection,
                    ErrorCode::Busy,
                    format_args!("the server is busy; try again"),
                );
            }
            other => {
                tracing::warn!(%connection, reply = ?other, "store request failed");
                self.error(
                    connection,
                    ErrorCode::StorageUnavailable,
                    format_args!("storage is unavailable; try again later"),
                );
            }
        }
    }

    /// Sanitised text within the message limit, or an error to the sender.
    pub(super) fn checked_text(&mut self, connection: ConnectionId, text: &str) -> Option<String> {
        let text = sanitize_text(text);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let max = self.config.max_message_bytes;
        if text.len() > max {
            self.error(
                connection,
                ErrorCode::MessageTooLong,
                format_args!("message too long (max {max} bytes)"),
            );
            return None;
        }
        Some(text.to_string())
    }

    pub(super) fn no_such_user(&mut self, connection: ConnectionId, user: &str) {
        let user = sanitize_text(user);
        self.error(
            connection,
            ErrorCode::NoSuchUser,
            format_args!("no such user: {user}"),
        );
    }

    fn sender(&self, connection: ConnectionId) -> Option<Sender> {
        let session = self.sessions.get(connection)?;
        let Stage::Chatting(member) = &session.stage else {
            return None;
        };
        let account = self.accounts.get(&member.account)?;
        Some(Sender {
            account: member.account.clone(),
            username: account.username.clone(),
            role: account.role,
            channel: member.channel.clone(),
        })
    }
}
