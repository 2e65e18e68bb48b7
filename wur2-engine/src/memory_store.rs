//! An in-memory store that answers every [`StoreRequest`] as its documentation says, for
//! tests, simulations, fuzzing and examples (feature `memory-store`).
//!
//! It owns accounts, registered channels, channel history and private messages, plus two knobs a test needs: a
//! *delay* (requests are held until the test releases them, in any order) and a *failure*
//! (requests fail with a chosen [`StoreError`]). Like the engine it reads no clock, starts
//! no thread and draws no random number: stored messages are stamped from a clock the
//! caller sets, and held requests wait until the caller releases them.
//!
//! Not a production store: passwords are kept as typed, where a real store keeps a slow
//! salted hash (`wur2-store` does) and runs requests off the engine's thread.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::ids::{MessageId, RequestId};
use crate::names::{channel_key, username_key};
use crate::sanction::{Expiry, Sanction, SanctionKind};
use crate::store::{
    Password, PendingMessage, Role, StoreError, StoreReply, StoreRequest, StoredChannel,
    StoredMessage,
};

/// One account (its password hidden from `Debug`).
#[derive(Debug, Clone)]
struct Account {
    username: String,
    password: Password,
    role: Role,
}

/// A ban or mute as stored: who, why, and when it was set and ends (store clock).
#[derive(Debug, Clone)]
struct Stored {
    by: String,
    reason: String,
    set_at_unix_ms: i64,
    expires_at_unix_ms: Option<i64>,
}

/// A private message and whether it reached its recipient.
#[derive(Debug, Clone)]
struct Private {
    recipient_key: String,
    message: PendingMessage,
    delivered: bool,
}

/// Accounts, history and private messages in memory, with knobs for delay and failure.
///
/// A driver hands each [`Output::Store`](crate::Output::Store) to [`MemoryStore::submit`]
/// and passes a reply it returns to
/// [`Engine::handle_store_reply`](crate::Engine::handle_store_reply); held requests come
/// back from [`MemoryStore::release`].
#[derive(Debug)]
pub struct MemoryStore {
    /// By username key.
    accounts: BTreeMap<String, Account>,
    /// Channels by channel key: registered, or created by a setting.
    channels: BTreeMap<String, StoredChannel>,
    /// The keys of the channels registered by a first joiner.
    registered_channels: BTreeSet<String>,
    /// (channel key, message), in append order.
    channel_messages: Vec<(String, StoredMessage)>,
    private_messages: Vec<Private>,
    /// Ids stored so far: storing one twice keeps one copy.
    stored_ids: BTreeSet<MessageId>,
    /// Bans and mutes by username key and kind, expired ones included until replaced or
    /// lifted (they no longer apply: the clock decides).
    sanctions: BTreeMap<(String, SanctionKind), Stored>,
    failure: Option<StoreError>,
    holding: bool,
    held: VecDeque<(RequestId, StoreRequest)>,
    /// The stamp of the next stored message, and how much later each one after it is.
    clock_unix_ms: i64,
    tick_ms: i64,
    /// Resume tokens: the account's key and when the token expires (by the store's clock).
    /// Made from a counter, not random: this store is for tests.
    tokens: BTreeMap<String, (String, i64)>,
    tokens_issued: u64,
}

/// How long a resume token of the memory store lasts: 30 days, as the real store's default.
pub const MEMORY_TOKEN_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;

/// Resume tokens kept per account, as the real store: a new one beyond forgets the oldest.
pub const MEMORY_TOKENS_PER_ACCOUNT: usize = 20;

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            accounts: BTreeMap::new(),
            channels: BTreeMap::new(),
            registered_channels: BTreeSet::new(),
            channel_messages: Vec::new(),
            private_messages: Vec::new(),
            stored_ids: BTreeSet::new(),
            sanctions: BTreeMap::new(),
            failure: None,
            holding: false,
            held: VecDeque::new(),
            clock_unix_ms: 0,
            tick_ms: 1,
            tokens: BTreeMap::new(),
            tokens_issued: 0,
        }
    }
}

impl MemoryStore {
    /// An empty store that answers at once, never fails, and stamps messages from the Unix
    /// epoch on, 1 ms apart.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Creates (or replaces) an account, as an operator would before anyone logs in.
    pub fn add_account(&mut self, username: &str, password: &str, role: Role) {
        let account = Account {
            username: username.to_string(),
            password: Password::new(password),
            role,
        };
        self.accounts.insert(username_key(username), account);
    }

    /// The role of an account (matched without regard to case), if it exists.
    pub fn role(&self, username: &str) -> Option<Role> {
        self.accounts
            .get(&username_key(username))
            .map(|account| account.role)
    }

    /// A registered channel (matched without regard to case), as stored.
    pub fn channel(&self, name: &str) -> Option<&StoredChannel> {
        self.channels.get(&channel_key(name))
    }

    /// Every message stored for a channel (matched without regard to case), oldest first.
    pub fn history(&self, channel: &str) -> Vec<&StoredMessage> {
        let key = channel_key(channel);
        self.channel_messages
            .iter()
            .filter(|(stored_in, _)| *stored_in == key)
            .map(|(_, message)| message)
            .collect()
    }

    /// Every private message stored for a user (matched without regard to case), delivered
    /// or not, oldest first.
    pub fn private_messages(&self, recipient: &str) -> Vec<&PendingMessage> {
        let key = username_key(recipient);
        self.private_messages
            .iter()
            .filter(|private| private.recipient_key == key)
            .map(|private| &private.message)
            .collect()
    }

    /// The ban or mute of `kind` of a user (matched without regard to case) in force by
    /// the store's clock, if any.
    pub fn sanction(&self, username: &str, kind: SanctionKind) -> Option<Sanction> {
        self.sanction_in_force(&username_key(username), kind)
    }

    /// Sets the store's clock: the next stored message is stamped `unix_ms`, and each one
    /// after it `tick_ms` later (a driver with a wall clock sets it before every request,
    /// with a tick of 0). Bans and mutes expire by this clock.
    pub fn set_clock(&mut self, unix_ms: i64, tick_ms: i64) {
        self.clock_unix_ms = unix_ms;
        self.tick_ms = tick_ms;
    }

    /// The failure knob: with `Some(error)`, every request the engine waits for fails with
    /// `error` until it is set back to `None`. `MarkDelivered` and `MarkPending`, which the
    /// engine does not wait for, are still carried out.
    pub fn set_failure(&mut self, error: Option<StoreError>) {
        self.failure = error;
    }

    /// The delay knob: while `true`, [`MemoryStore::submit`] holds requests until
    /// [`MemoryStore::release`]; turning it off answers new requests at once and leaves the
    /// held ones waiting.
    pub fn set_holding(&mut self, holding: bool) {
        self.holding = holding;
    }

    /// Whether the delay knob is on.
    pub fn is_holding(&self) -> bool {
        self.holding
    }

    /// How many requests are held.
    pub fn waiting(&self) -> usize {
        self.held.len()
    }

    /// Whether the request with this id is held.
    pub fn holds(&self, id: RequestId) -> bool {
        self.held.iter().any(|(held, _)| *held == id)
    }

    /// Takes a request from the engine: its reply now, or `None` when it is held.
    pub fn submit(&mut self, id: RequestId, request: StoreRequest) -> Option<StoreReply> {
        if self.holding {
            self.held.push_back((id, request));
            return None;
        }
        Some(self.answer(&request))
    }

    /// Answers the held request at `index` (0 is the oldest), for the engine to get with its
    /// id; `None` when fewer are held. Releasing index 0 repeatedly answers in order.
    pub fn release(&mut self, index: usize) -> Option<(RequestId, StoreReply)> {
        let (id, request) = self.held.remove(index)?;
        Some((id, self.answer(&request)))
    }

    /// Takes the held request at `index` unanswered, for a test that answers it its own way
    /// (a wrong or late reply, say).
    pub fn take_held(&mut self, index: usize) -> Option<(RequestId, StoreRequest)> {
        self.held.remove(index)
    }

    /// Carries out `request` now and answers it (subject to the failure knob, not to the
    /// delay knob).
    pub fn answer(&mut self, request: &StoreRequest) -> StoreReply {
        let waited_for = !matches!(
            request,
            StoreRequest::MarkDelivered { .. } | StoreRequest::MarkPending { .. }
        );
        if let (Some(error), true) = (&self.failure, waited_for) {
            return StoreReply::Failed(error.clone());
        }
        match request {
            StoreRequest::Register { username, password } => {
                if self.accounts.contains_key(&username_key(username)) {
                    return StoreReply::Failed(StoreError::UsernameTaken);
                }
                self.add_account(username, password.expose(), Role::User);
                StoreReply::Account {
                    username: username.clone(),
                    role: Role::User,
                    mute: None,
                }
            }
            StoreRequest::Login { username, password } => {
                let key = username_key(username);
                // Before the password: a banned account gets one answer whatever is typed.
                if let Some(ban) = self.sanction_in_force(&key, SanctionKind::Ban) {
                    return StoreReply::Failed(StoreError::Banned(ban));
                }
                match self.accounts.get(&key) {
                    Some(account) if account.password.expose() == password.expose() => {
                        StoreReply::Account {
                            username: account.username.clone(),
                            role: account.role,
                            mute: self.sanction_in_force(&key, SanctionKind::Mute),
                        }
                    }
                    _ => StoreReply::Failed(StoreError::InvalidCredentials),
                }
            }
            StoreRequest::AppendChannelMessage(message) => {
                if self.stored_ids.insert(message.id) {
                    let stored = StoredMessage {
                        id: message.id,
                        sender: message.sender.clone(),
                        text: message.text.clone(),
                        sent_at_unix_ms: self.stamp(),
                    };
                    let key = channel_key(&message.channel);
                    self.channel_messages.push((key, stored));
                }
                StoreReply::Done
            }
            StoreRequest::AppendPrivateMessage(message) => {
                let recipient_key = username_key(&message.recipient);
                if !self.accounts.contains_key(&recipient_key) {
                    return StoreReply::Failed(StoreError::UnknownUser);
                }
                if self.stored_ids.insert(message.id) {
                    let pending = PendingMessage {
                        id: message.id,
                        sender: message.sender.clone(),
                        text: message.text.clone(),
                        sent_at_unix_ms: self.stamp(),
                    };
                    self.private_messages.push(Private {
                        recipient_key,
                        message: pending,
                        delivered: message.delivered,
                    });
                }
                StoreReply::Done
            }
            StoreRequest::FetchHistory {
                channel,
                limit,
                before,
            } => {
                let all: Vec<StoredMessage> = self.history(channel).into_iter().cloned().collect();
                StoreReply::History(page(all, *limit, *before))
            }
            StoreRequest::FetchConversation {
                username,
                with,
                limit,
                before,
            } => {
                let all = self.conversation(username, with);
                StoreReply::History(page(all, *limit, *before))
            }
            StoreRequest::FetchPending { username } => {
                let key = username_key(username);
                let pending = self
                    .private_messages
                    .iter()
                    .filter(|p| p.recipient_key == key && !p.delivered)
                    .map(|p| p.message.clone())
                    .collect();
                StoreReply::Pending(pending)
            }
            StoreRequest::MarkDelivered { ids } => {
                for private in &mut self.private_messages {
                    private.delivered |= ids.contains(&private.message.id);
                }
                StoreReply::Done
            }
            StoreRequest::MarkPending { ids } => {
                for private in &mut self.private_messages {
                    private.delivered &= !ids.contains(&private.message.id);
                }
                StoreReply::Done
            }
            StoreRequest::SetRole { username, role } => {
                let admins = self
                    .accounts
                    .values()
                    .filter(|account| account.role == Role::Admin)
                    .count();
                match self.accounts.get_mut(&username_key(username)) {
                    Some(account)
                        if account.role == Role::Admin && *role != Role::Admin && admins == 1 =>
                    {
                        StoreReply::Failed(StoreError::LastAdmin)
                    }
                    Some(account) => {
                        account.role = *role;
                        StoreReply::Account {
                            username: account.username.clone(),
                            role: *role,
                            mute: None,
                        }
                    }
                    None => StoreReply::Failed(StoreError::UnknownUser),
                }
            }
            StoreRequest::Sanction {
                kind,
                username,
                by,
                by_role,
                duration,
                reason,
            } => {
                let key = username_key(username);
                if let Err(refused) = self.check_rank(&key, *by_role) {
                    return StoreReply::Failed(refused);
                }
                let set_at_unix_ms = self.stamp();
                let stored = Stored {
                    by: by.clone(),
                    reason: reason.clone(),
                    set_at_unix_ms,
                    expires_at_unix_ms: duration.map(|d| expires_at(set_at_unix_ms, d)),
                };
                self.sanctions.insert((key.clone(), *kind), stored);
                if *kind == SanctionKind::Ban {
                    // A ban revokes the account's resume tokens.
                    self.tokens.retain(|_, (owner, _)| *owner != key);
                }
                match self.sanction_in_force(&key, *kind) {
                    Some(sanction) => StoreReply::Sanctioned(sanction),
                    None => StoreReply::Failed(StoreError::Unavailable(
                        "a sanction expired as it was set".into(),
                    )),
                }
            }
            StoreRequest::LiftSanction {
                kind,
                username,
                by_role,
            } => {
                let key = username_key(username);
                if let Err(refused) = self.check_rank(&key, *by_role) {
                    return StoreReply::Failed(refused);
                }
                let in_force = self.sanction_in_force(&key, *kind);
                self.sanctions.remove(&(key.clone(), *kind));
                match (in_force, self.accounts.get(&key)) {
                    (Some(_), Some(account)) => StoreReply::Lifted {
                        username: account.username.clone(),
                    },
                    _ => StoreReply::Failed(StoreError::NotSanctioned),
                }
            }
            StoreRequest::FetchSanctions { limit } => {
                let in_force = self
                    .sanctions
                    .keys()
                    .filter_map(|(key, kind)| self.sanction_in_force(key, *kind))
                    .take(*limit)
                    .collect();
                StoreReply::Sanctions(in_force)
            }
            StoreRequest::ChangePassword { username, old, new } => {
                let key = username_key(username);
                match self.accounts.get_mut(&key) {
                    Some(account) if account.password.expose() == old.expose() => {
                        account.password = new.clone();
                        self.tokens.retain(|_, (owner, _)| *owner != key);
                        StoreReply::Done
                    }
                    _ => StoreReply::Failed(StoreError::InvalidCredentials),
                }
            }
            StoreRequest::IssueToken { username } => self.issue_token(username),
            StoreRequest::Resume { username, token } => self.resume(username, token),
            StoreRequest::RevokeTokens { username } => {
                let key = username_key(username);
                self.tokens.retain(|_, (owner, _)| *owner != key);
                StoreReply::Done
            }
            StoreRequest::DeleteAccount { username, password } => {
                let key = username_key(username);
                let admins = self
                    .accounts
                    .values()
                    .filter(|account| account.role == Role::Admin)
                    .count();
                match self.accounts.get(&key) {
                    Some(account) if account.password.expose() != password.expose() => {
                        StoreReply::Failed(StoreError::InvalidCredentials)
                    }
                    None => StoreReply::Failed(StoreError::InvalidCredentials),
                    Some(account) if account.role == Role::Admin && admins == 1 => {
                        StoreReply::Failed(StoreError::LastAdmin)
                    }
                    Some(_) => {
                        self.accounts.remove(&key);
                        for channel in self.channels.values_mut() {
                            channel.invited.retain(|user| username_key(user) != key);
                            if channel.owner.as_deref().map(username_key) == Some(key.clone()) {
                                channel.owner = None;
                            }
                        }
                        self.tokens.retain(|_, (owner, _)| *owner != key);
                        self.sanctions
                            .retain(|(sanctioned, _), _| *sanctioned != key);
                        self.channel_messages
                            .retain(|(_, message)| username_key(&message.sender) != key);
                        self.private_messages.retain(|private| {
                            private.recipient_key != key
                                && username_key(&private.message.sender) != key
                        });
                        StoreReply::Done
                    }
                }
            }
            StoreRequest::LoadChannels => {
                StoreReply::Channels(self.channels.values().cloned().collect())
            }
            StoreRequest::RegisterChannel { name, owner } => {
                let claimed = self.registered_channels.insert(channel_key(name));
                let channel = self.registered(name);
                if claimed {
                    channel.owner.clone_from(owner);
                }
                StoreReply::Channels(vec![channel.clone()])
            }
            StoreRequest::SetTopic { channel, topic } => {
                self.registered(channel).topic = topic.clone();
                StoreReply::Done
            }
            StoreRequest::SetPrivate { channel, private } => {
                self.registered(channel).private = *private;
                StoreReply::Done
            }
            StoreRequest::Invite { channel, username } => {
                let Some(account) = self.accounts.get(&username_key(username)) else {
                    return StoreReply::Failed(StoreError::UnknownUser);
                };
                let (invitee, role) = (account.username.clone(), account.role);
                let invited = &mut self.registered(channel).invited;
                if let Err(at) =
                    invited.binary_search_by_key(&username_key(&invitee), |u| username_key(u))
                {
                    invited.insert(at, invitee.clone());
                }
                StoreReply::Account {
                    username: invitee,
                    role,
                    mute: None,
                }
            }
        }
    }

    /// Channel `name`, registered without owner if it was not.
    fn registered(&mut self, name: &str) -> &mut StoredChannel {
        self.channels
            .entry(channel_key(name))
            .or_insert_with(|| StoredChannel {
                name: name.to_owned(),
                ..StoredChannel::default()
            })
    }

    /// A new resume token for `username`, or why not.
    fn issue_token(&mut self, username: &str) -> StoreReply {
        let key = username_key(username);
        if !self.accounts.contains_key(&key) {
            return StoreReply::Failed(StoreError::UnknownUser);
        }
        self.tokens_issued += 1;
        // Fixed-width hex of a counter: the tokens' order is their issue order.
        let token = format!("{:032x}", self.tokens_issued);
        let expires = self.clock_unix_ms.saturating_add(MEMORY_TOKEN_LIFETIME_MS);
        self.tokens.insert(token.clone(), (key.clone(), expires));
        let owned: Vec<String> = self
            .tokens
            .iter()
            .filter(|(_, (owner, _))| *owner == key)
            .map(|(token, _)| token.clone())
            .collect();
        let excess = owned.len().saturating_sub(MEMORY_TOKENS_PER_ACCOUNT);
        for oldest in &owned[..excess] {
            self.tokens.remove(oldest);
        }
        StoreReply::Token(Password::new(token))
    }

    /// The account a live resume token of `username` logs in to (unless it is banned).
    fn resume(&self, username: &str, token: &Password) -> StoreReply {
        let key = username_key(username);
        let live = self
            .tokens
            .get(token.expose())
            .is_some_and(|(owner, expires)| *owner == key && *expires > self.clock_unix_ms);
        if !live {
            return StoreReply::Failed(StoreError::InvalidCredentials);
        }
        if let Some(ban) = self.sanction_in_force(&key, SanctionKind::Ban) {
            return StoreReply::Failed(StoreError::Banned(ban));
        }
        match self.accounts.get(&key) {
            Some(account) => StoreReply::Account {
                username: account.username.clone(),
                role: account.role,
                mute: self.sanction_in_force(&key, SanctionKind::Mute),
            },
            None => StoreReply::Failed(StoreError::InvalidCredentials),
        }
    }

    /// Whether someone of `by_role` may sanction account `key`: its role must be lower.
    fn check_rank(&self, key: &str, by_role: Role) -> Result<(), StoreError> {
        match self.accounts.get(key) {
            None => Err(StoreError::UnknownUser),
            Some(account) if account.role >= by_role => Err(StoreError::Outranked),
            Some(_) => Ok(()),
        }
    }

    /// The sanction of `kind` of account `key` in force by the store's clock.
    fn sanction_in_force(&self, key: &str, kind: SanctionKind) -> Option<Sanction> {
        let stored = self.sanctions.get(&(key.to_string(), kind))?;
        let account = self.accounts.get(key)?;
        let now = self.clock_unix_ms;
        let expires = match stored.expires_at_unix_ms {
            Some(at) if at <= now => return None,
            Some(at) => Some(Expiry {
                at_unix_ms: at,
                remaining: Duration::from_millis(u64::try_from(at - now).unwrap_or(0)),
            }),
            None => None,
        };
        Some(Sanction {
            kind,
            username: account.username.clone(),
            by: stored.by.clone(),
            reason: stored.reason.clone(),
            set_at_unix_ms: stored.set_at_unix_ms,
            expires,
        })
    }

    /// Every private message between `a` and `b`, both ways, oldest first.
    fn conversation(&self, a: &str, b: &str) -> Vec<StoredMessage> {
        let (a, b) = (username_key(a), username_key(b));
        self.private_messages
            .iter()
            .filter(|private| {
                let sender = username_key(&private.message.sender);
                (private.recipient_key == a && sender == b)
                    || (private.recipient_key == b && sender == a)
            })
            .map(|private| StoredMessage {
                id: private.message.id,
                sender: private.message.sender.clone(),
                text: private.message.text.clone(),
                sent_at_unix_ms: private.message.sent_at_unix_ms,
            })
            .collect()
    }

    /// The stamp for a message or sanction stored now; the clock moves on by one tick.
    fn stamp(&mut self) -> i64 {
        let now = self.clock_unix_ms;
        self.clock_unix_ms = now.saturating_add(self.tick_ms);
        now
    }
}

/// When a sanction set at `set_at_unix_ms` for `duration` ends (saturating: the engine
/// refuses durations that could overflow long before this).
fn expires_at(set_at_unix_ms: i64, duration: Duration) -> i64 {
    let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    set_at_unix_ms.saturating_add(ms)
}

/// The last `limit` of `messages` (oldest first) stored before message `before` (none
/// when `before` is not among them).
fn page(
    messages: Vec<StoredMessage>,
    limit: usize,
    before: Option<MessageId>,
) -> Vec<StoredMessage> {
    let end = match before {
        None => messages.len(),
        Some(id) => match messages.iter().position(|message| message.id == id) {
            Some(end) => end,
            None => return Vec::new(),
        },
    };
    let start = end.saturating_sub(limit);
    messages.into_iter().take(end).skip(start).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChannelMessage;

    fn register(name: &str) -> StoreRequest {
        StoreRequest::Register {
            username: name.into(),
            password: Password::new("long-enough"),
        }
    }

    fn append(sequence: u64, channel: &str) -> StoreRequest {
        StoreRequest::AppendChannelMessage(ChannelMessage {
            id: MessageId {
                origin: 1,
                sequence,
            },
            channel: channel.into(),
            sender: "al".into(),
            text: format!("message {sequence}"),
        })
    }

    #[test]
    fn the_first_registration_owns_a_channel_even_one_a_setting_created() {
        let mut store = MemoryStore::new();
        let register = |owner: &str| StoreRequest::RegisterChannel {
            name: "#Club".into(),
            owner: Some(owner.into()),
        };
        let topic = StoreRequest::SetTopic {
            channel: "#club".into(),
            topic: Some("t".into()),
        };
        assert_eq!(store.answer(&topic), StoreReply::Done);
        let owner = |reply: StoreReply| match reply {
            StoreReply::Channels(channels) => channels[0].owner.clone(),
            other => panic!("expected channels, got {other:?}"),
        };
        assert_eq!(owner(store.answer(&register("ann"))), Some("ann".into()));
        assert_eq!(owner(store.answer(&register("bob"))), Some("ann".into()));
        assert_eq!(
            store.channel("#CLUB").map(|c| c.topic.clone()),
            Some(Some("t".into()))
        );
    }

    #[test]
    fn held_requests_wait_until_released_in_any_order() {
        let mut store = MemoryStore::new();
        store.set_holding(true);
        assert_eq!(store.submit(RequestId(1), register("al")), None);
        assert_eq!(store.submit(RequestId(2), register("AL")), None);
        assert_eq!(store.waiting(), 2);
        assert!(store.holds(RequestId(2)));
        let (id, reply) = store.release(1).unwrap();
        assert_eq!(id, RequestId(2));
        assert!(matches!(reply, StoreReply::Account { username, .. } if username == "AL"));
        let (id, reply) = store.release(0).unwrap();
        assert_eq!(id, RequestId(1));
        assert_eq!(reply, StoreReply::Failed(StoreError::UsernameTaken));
        assert_eq!(store.release(0), None);
    }

    #[test]
    fn passwords_do_not_show_in_debug_output() {
        let mut store = MemoryStore::new();
        store.answer(&register("al"));
        store.set_holding(true);
        store.submit(RequestId(1), register("bo"));
        assert!(!format!("{store:?}").contains("long-enough"));
    }

    #[test]
    fn a_failing_store_refuses_appends_and_keeps_none_of_them() {
        let mut store = MemoryStore::new();
        store.set_failure(Some(StoreError::Busy));
        assert_eq!(
            store.answer(&register("al")),
            StoreReply::Failed(StoreError::Busy)
        );
        // The engine delivers a message only once stored: a refused one is in no history.
        assert_eq!(
            store.answer(&append(1, "Global")),
            StoreReply::Failed(StoreError::Busy)
        );
        store.set_failure(None);
        assert!(store.history("global").is_empty());
    }

    #[test]
    fn history_keeps_one_copy_per_id_stamped_by_the_callers_clock() {
        let mut store = MemoryStore::new();
        store.set_clock(1_000, 60_000);
        for request in [append(1, "rust"), append(1, "rust"), append(2, "Rust")] {
            store.answer(&request);
        }
        let stamps: Vec<i64> = store
            .history("RUST")
            .iter()
            .map(|m| m.sent_at_unix_ms)
            .collect();
        assert_eq!(stamps, [1_000, 61_000]);
        let fetch = StoreRequest::FetchHistory {
            channel: "rust".into(),
            limit: 1,
            before: None,
        };
        let StoreReply::History(last) = store.answer(&fetch) else {
            panic!("history expected");
        };
        assert_eq!(last[0].text, "message 2");
    }
}
