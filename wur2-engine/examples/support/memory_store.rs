//! An in-memory store for the examples: accounts, channel history and offline private
//! messages, answering every [`StoreRequest`] as its documentation says.
//!
//! An example only: it keeps passwords as typed, where a real store keeps an argon2 hash
//! (`wur2-store` does) and runs requests off the engine's thread.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use wur2_engine::{
    PendingMessage, Role, StoreError, StoreReply, StoreRequest, StoredMessage, channel_key,
    username_key,
};

/// One account.
struct Account {
    username: String,
    password: String,
    role: Role,
}

/// Everything stored, in memory.
#[derive(Default)]
pub struct MemoryStore {
    /// By username key (case-folded).
    accounts: HashMap<String, Account>,
    /// By channel key, oldest first.
    history: HashMap<String, Vec<StoredMessage>>,
    /// (recipient key, message) for private messages not yet delivered.
    pending: Vec<(String, PendingMessage)>,
}

impl MemoryStore {
    /// Carries out `request` and answers it; messages are stamped with the time now.
    pub fn answer(&mut self, request: StoreRequest) -> StoreReply {
        let unix_ms = now_unix_ms();
        match request {
            StoreRequest::Register { username, password } => {
                let key = username_key(&username);
                if self.accounts.contains_key(&key) {
                    return StoreReply::Failed(StoreError::UsernameTaken);
                }
                let password = password.expose().to_string();
                let role = Role::User;
                let account = Account {
                    username: username.clone(),
                    password,
                    role,
                };
                self.accounts.insert(key, account);
                StoreReply::Account { username, role }
            }
            StoreRequest::Login { username, password } => {
                match self.accounts.get(&username_key(&username)) {
                    Some(account) if account.password == password.expose() => {
                        let username = account.username.clone();
                        StoreReply::Account {
                            username,
                            role: account.role,
                        }
                    }
                    _ => StoreReply::Failed(StoreError::InvalidCredentials),
                }
            }
            StoreRequest::AppendChannelMessage(message) => {
                let history = self.history.entry(channel_key(&message.channel));
                history.or_default().push(StoredMessage {
                    id: message.id,
                    sender: message.sender,
                    text: message.text,
                    sent_at_unix_ms: unix_ms,
                });
                StoreReply::Done
            }
            StoreRequest::AppendPrivateMessage(message) => {
                let key = username_key(&message.recipient);
                if !self.accounts.contains_key(&key) {
                    return StoreReply::Failed(StoreError::UnknownUser);
                }
                if !message.delivered {
                    self.pending.push((
                        key,
                        PendingMessage {
                            id: message.id,
                            sender: message.sender,
                            text: message.text,
                            sent_at_unix_ms: unix_ms,
                        },
                    ));
                }
                StoreReply::Done
            }
            StoreRequest::FetchHistory { channel, limit } => {
                let all = self.history.get(&channel_key(&channel));
                let all = all.map_or(&[][..], Vec::as_slice);
                StoreReply::History(all[all.len().saturating_sub(limit)..].to_vec())
            }
            StoreRequest::FetchPending { username } => {
                let key = username_key(&username);
                let waiting = self.pending.iter().filter(|(to, _)| *to == key);
                StoreReply::Pending(waiting.map(|(_, message)| message.clone()).collect())
            }
            StoreRequest::MarkDelivered { ids } => {
                self.pending
                    .retain(|(_, message)| !ids.contains(&message.id));
                StoreReply::Done
            }
            StoreRequest::SetRole { username, role } => {
                match self.accounts.get_mut(&username_key(&username)) {
                    Some(account) => {
                        account.role = role;
                        StoreReply::Account {
                            username: account.username.clone(),
                            role,
                        }
                    }
                    None => StoreReply::Failed(StoreError::UnknownUser),
                }
            }
        }
    }
}

/// Wall-clock time now, in milliseconds since the Unix epoch (the engine reads no clock:
/// it gets this from its caller).
pub fn now_unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    i64::try_from(since.unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}
