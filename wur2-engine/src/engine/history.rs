//! History: a channel's past, replayed at login and `/join`, and the pages `/history`
//! asks for, of the current channel or of a private conversation (`/history @bob`), with
//! the page before a message (`before <id>`) for reading further back.

use super::{Engine, Pending, Sender};
use crate::ids::{ConnectionId, MessageId};
use crate::names::is_valid_username;
use crate::sanitize::sanitize_text;
use crate::store::{StoreReply, StoreRequest};
use crate::wire::Line;

/// Whose past a page of history is.
#[derive(Debug)]
pub(super) enum Past {
    /// A channel's, by its display name.
    Channel(String),
    /// The reader's private conversation with this user (a valid username, as typed).
    Conversation(String),
}

/// A page of history asked for: of what, how long, and whether the user asked (a replay
/// at login or `/join` says nothing when there is none, and offers no older page).
#[derive(Debug)]
pub(super) struct Page {
    pub(super) of: Past,
    pub(super) count: usize,
    pub(super) asked: bool,
    /// At login: the user whose waiting private messages are asked for once this page is
    /// shown, so they always come after it.
    pub(super) then_offline_for: Option<String>,
}

impl Engine {
    /// Asks the store for a channel's last `count` messages, and holds the connection's
    /// input until they have been sent; then, given `then_offline_for`, for that user's
    /// private messages that waited for them (at login: they come after the history).
    pub(super) fn replay_history(
        &mut self,
        connection: ConnectionId,
        channel: String,
        count: usize,
        then_offline_for: Option<String>,
    ) {
        if count == 0 {
            return self.fetch_offline_messages(connection, then_offline_for);
        }
        let request = StoreRequest::FetchHistory {
            channel: channel.clone(),
            limit: count,
            before: None,
        };
        let page = Page {
            of: Past::Channel(channel),
            count,
            asked: false,
            then_offline_for,
        };
        self.request_for(request, Pending::History { connection, page });
    }

    /// Asks for the private messages that waited for `username`, if given.
    fn fetch_offline_messages(&mut self, connection: ConnectionId, username: Option<String>) {
        if let Some(username) = username {
            self.request_for(
                StoreRequest::FetchPending { username },
                Pending::OfflineMessages { connection },
            );
        }
    }

    /// `/history [@user] [n] [before <id>]`: a page of the current channel's history, or
    /// of the private conversation with `user` (at most `max_history` messages).
    pub(super) fn show_history(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        with: Option<String>,
        count: Option<usize>,
        before: Option<MessageId>,
    ) {
        let count = count
            .unwrap_or(self.config.history_replay)
            .clamp(1, self.config.max_history.max(1));
        let (request, of) = match with {
            None => {
                let channel = self.channels.name(&sender.channel);
                let request = StoreRequest::FetchHistory {
                    channel: channel.clone(),
                    limit: count,
                    before,
                };
                (request, Past::Channel(channel))
            }
            Some(user) if !is_valid_username(&user) => return self.no_such_user(connection, &user),
            Some(user) => {
                let request = StoreRequest::FetchConversation {
                    username: sender.username.clone(),
                    with: user.clone(),
                    limit: count,
                    before,
                };
                (request, Past::Conversation(user))
            }
        };
        let page = Page {
            of,
            count,
            asked: true,
            then_offline_for: None,
        };
        self.request_for(request, Pending::History { connection, page });
    }

    /// The store's answer to a page of history: each message, then (when the page is
    /// full and was asked for) how to ask for the one before it.
    pub(super) fn on_history(&mut self, connection: ConnectionId, page: Page, reply: StoreReply) {
        self.show_page(connection, &page, reply);
        self.fetch_offline_messages(connection, page.then_offline_for);
    }

    fn show_page(&mut self, connection: ConnectionId, page: &Page, reply: StoreReply) {
        let StoreReply::History(messages) = reply else {
            return self.store_failed(connection, &reply);
        };
        if messages.is_empty() && page.asked {
            let none = match &page.of {
                Past::Channel(channel) => format!("No messages in {channel} yet."),
                Past::Conversation(user) => format!("No private messages with {user} yet."),
            };
            self.send(connection, Line::Info(&none));
        }
        for message in &messages {
            let text = sanitize_text(&message.text);
            let from = sanitize_text(&message.sender);
            let (sent_at, id) = (message.sent_at_unix_ms, message.id);
            let line = match &page.of {
                Past::Channel(channel) => Line::History {
                    channel,
                    from: &from,
                    text: &text,
                    sent_at,
                    id,
                },
                Past::Conversation(with) => Line::DmHistory {
                    with,
                    from: &from,
                    text: &text,
                    sent_at,
                    id,
                },
            };
            self.send(connection, line);
        }
        if let Some(oldest) = messages.first().filter(|_| page.asked)
            && messages.len() >= page.count
        {
            let with = match &page.of {
                Past::Channel(_) => None,
                Past::Conversation(user) => Some(user.as_str()),
            };
            let line = Line::HistoryMore {
                with,
                count: page.count,
                before: oldest.id,
            };
            self.send(connection, line);
        }
    }
}
