//! What the engine asks of storage, and what storage answers.
//!
//! The engine never hashes, never sees a hash and never touches a database: it emits a
//! [`StoreRequest`] through [`Output::Store`](crate::Output::Store) and gets a
//! [`StoreReply`] back through [`Engine::handle_store_reply`](crate::Engine::handle_store_reply).
//! Which reply answers which request is listed on each request variant.

use std::fmt;
use std::time::Duration;

use crate::ids::MessageId;
use crate::sanction::{Sanction, SanctionKind};

/// A password as typed by a user.
///
/// It is never printed (`Debug` shows `Password(***)`), and its bytes are overwritten
/// with zeros when it is dropped, so it does not linger in freed memory longer than needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password typed by a user.
    pub fn new(text: impl Into<String>) -> Self {
        Password(text.into())
    }

    /// The password's text, for hashing or verifying it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        // Keep the compiler from treating the zeroing as a dead store.
        std::hint::black_box(&bytes);
    }
}

/// What a user may do.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum Role {
    /// Chats, joins channels, sends private messages and files.
    #[default]
    User,
    /// A user who may also kick users, and ban and mute them.
    Mod,
    /// A moderator who may also kick, ban and mute moderators, and set anyone's role.
    Admin,
}

impl Role {
    /// The lowercase name used on the wire and in the database: `user`, `mod`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Mod => "mod",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "user" => Ok(Role::User),
            "mod" | "moderator" => Ok(Role::Mod),
            "admin" => Ok(Role::Admin),
            _ => Err(UnknownRole),
        }
    }
}

/// A change to an account made outside this engine: by the operator's command line
/// (`wur2 role`, `wur2 purge-user`), or another node sharing the accounts. The driver
/// learns of it from its store and passes it to
/// [`Engine::handle_account_changed`](crate::Engine::handle_account_changed), which applies
/// it to the account's live sessions.
///
/// `#[non_exhaustive]`: more kinds of change will come. Stores build these values; only
/// the engine matches on them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountChange {
    /// The account's role is now this one.
    Role(Role),
    /// The account was deleted with its messages.
    Purged,
    /// The account is banned (this ban is in force): its sessions are told and closed.
    Banned(Sanction),
    /// The account is muted (this mute is in force), or its mute changed.
    Muted(Sanction),
    /// The account's mute was lifted.
    Unmuted,
}

/// A role name other than `user`, `mod` or `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown role (expected user, mod or admin)")]
pub struct UnknownRole;

/// A message to a channel, as the engine accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelMessage {
    /// Unique id; storing the same id twice must keep one copy.
    pub id: MessageId,
    /// The channel's display name (as first created, e.g. `Global`).
    pub channel: String,
    /// The sender's username as registered.
    pub sender: String,
    /// The sanitised text.
    pub text: String,
}

/// A private message, as the engine accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateMessage {
    /// Unique id; storing the same id twice must keep one copy.
    pub id: MessageId,
    /// The sender's username as registered.
    pub sender: String,
    /// The recipient's username as the sender typed it (matched without regard to case).
    pub recipient: String,
    /// The sanitised text.
    pub text: String,
    /// Whether the recipient was online and got it already; `false` keeps it pending until
    /// a [`StoreRequest::FetchPending`] and [`StoreRequest::MarkDelivered`] of the recipient.
    pub delivered: bool,
}

/// A stored channel message, replayed as history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The id the engine gave the message when it accepted it.
    pub id: MessageId,
    /// The sender's username as registered.
    pub sender: String,
    /// The text as stored.
    pub text: String,
    /// When the store accepted it, in milliseconds since the Unix epoch.
    pub sent_at_unix_ms: i64,
}

/// A private message that waited for its recipient to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMessage {
    /// The id to pass back in [`StoreRequest::MarkDelivered`].
    pub id: MessageId,
    /// The sender's username as registered.
    pub sender: String,
    /// The text as stored.
    pub text: String,
    /// When the store accepted it, in milliseconds since the Unix epoch.
    pub sent_at_unix_ms: i64,
}

/// A registered channel as stored: it lasts when empty, with its owner, topic, privacy and
/// invitations.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoredChannel {
    /// The display name (as first created, e.g. `Global`).
    pub name: String,
    /// The username (as registered) of the first joiner, who may set the topic, make the
    /// channel private and invite; `None` for the default channel and for channels that
    /// existed before channels were registered.
    pub owner: Option<String>,
    /// The topic, if one is set.
    pub topic: Option<String>,
    /// Whether only invited users (and the owner, mods and admins) may join.
    pub private: bool,
    /// The usernames (as registered) invited to join, ordered by their keys.
    pub invited: Vec<String>,
}

/// Something the engine needs from storage.
///
/// Every request comes with a [`RequestId`](crate::RequestId) in
/// [`Output::Store`](crate::Output::Store); the driver runs it (concurrently with others,
/// off the engine's loop) and passes the reply back with that id. Requests of one kind
/// from one engine must be applied in the order they were emitted where the text says so.
#[derive(Debug)]
pub enum StoreRequest {
    /// Create an account with role `user`; hash the password.
    /// Answer: [`StoreReply::Account`], or `Failed(UsernameTaken)`.
    Register {
        /// Already validated by the engine (1–32 of letters, digits, `_`, `-`, `.`).
        username: String,
        /// Already checked for length by the engine.
        password: Password,
    },
    /// Verify a password. Answer: [`StoreReply::Account`] with the name as registered, or
    /// `Failed(InvalidCredentials)` for a wrong password and an unknown user alike (which
    /// should take the same time).
    Login {
        /// As the user typed it; matched without regard to case.
        username: String,
        /// As the user typed it.
        password: Password,
    },
    /// Store a channel message. Appends are applied in the order emitted. Answer:
    /// [`StoreReply::Done`] once it is durably stored (committed): the engine delivers the
    /// message only then, so whatever anyone received survives a crash.
    AppendChannelMessage(ChannelMessage),
    /// Store a private message. Answer: [`StoreReply::Done`] once committed (the engine
    /// delivers it only then), or `Failed(UnknownUser)` when the recipient has no account.
    AppendPrivateMessage(PrivateMessage),
    /// The last `limit` messages of a channel (before message `before`, when given).
    /// Answer: [`StoreReply::History`], oldest first; empty when `before` names no message
    /// of the channel.
    FetchHistory {
        /// The channel's display name; matched without regard to case.
        channel: String,
        /// How many messages at most.
        limit: usize,
        /// Only messages stored before this one.
        before: Option<MessageId>,
    },
    /// The last `limit` private messages between two users, both ways, delivered or not
    /// (before message `before`, when given). Answer: [`StoreReply::History`], oldest
    /// first; empty when `before` names no message of the conversation.
    FetchConversation {
        /// One user (the one asking), matched without regard to case.
        username: String,
        /// The other user, matched without regard to case.
        with: String,
        /// How many messages at most.
        limit: usize,
        /// Only messages stored before this one.
        before: Option<MessageId>,
    },
    /// The undelivered private messages of a user. Answer: [`StoreReply::Pending`], oldest
    /// first. They stay pending until a `MarkDelivered`.
    FetchPending {
        /// The username as registered; matched without regard to case.
        username: String,
    },
    /// These pending private messages were handed to a connection. Answer:
    /// [`StoreReply::Done`] (the engine does not wait for it).
    MarkDelivered {
        /// Ids from [`PendingMessage::id`].
        ids: Vec<MessageId>,
    },
    /// These private messages, stored as delivered to an online recipient, never reached
    /// them (every session of the recipient ended before the message was committed):
    /// keep them pending for the next login. Applied in order with `FetchPending` and
    /// `MarkDelivered`. Answer: [`StoreReply::Done`] (the engine does not wait for it).
    MarkPending {
        /// Ids from [`PrivateMessage::id`].
        ids: Vec<MessageId>,
    },
    /// Change a user's role. Answer: [`StoreReply::Account`] with the new role, or
    /// `Failed(UnknownUser)`.
    SetRole {
        /// Matched without regard to case.
        username: String,
        /// The new role.
        role: Role,
    },
    /// Ban or mute a user, replacing a sanction of the same kind; expiry is reckoned by the
    /// store's clock. Record the change for every server sharing the accounts (as the
    /// operator's changes are: see [`AccountChange`]), in the same transaction. Answer:
    /// [`StoreReply::Sanctioned`], `Failed(UnknownUser)`, or `Failed(Outranked)` when the
    /// account's role is not below `by_role`.
    Sanction {
        /// Ban or mute.
        kind: SanctionKind,
        /// Matched without regard to case.
        username: String,
        /// Who sets it (a username as registered).
        by: String,
        /// The role of `by`: only accounts of a lower role may be sanctioned.
        by_role: Role,
        /// How long it lasts from now; `None`: until lifted.
        duration: Option<Duration>,
        /// Why (sanitised; may be empty).
        reason: String,
    },
    /// Lift a user's ban or mute (a lifted mute is recorded like a new one). Answer:
    /// [`StoreReply::Lifted`], `Failed(UnknownUser)`, `Failed(NotSanctioned)` when none is
    /// in force, or `Failed(Outranked)` when the account's role is not below `by_role`.
    LiftSanction {
        /// Ban or mute.
        kind: SanctionKind,
        /// Matched without regard to case.
        username: String,
        /// The role of whoever lifts it.
        by_role: Role,
    },
    /// The bans and mutes in force. Answer: [`StoreReply::Sanctions`], ordered by username
    /// key, then bans before mutes.
    FetchSanctions {
        /// How many at most.
        limit: usize,
    },
    /// Replace a user's password, if `old` is the current one; hash `new`. Answer:
    /// [`StoreReply::Done`], or `Failed(InvalidCredentials)` when `old` is wrong (or the
    /// account is gone).
    ChangePassword {
        /// Matched without regard to case.
        username: String,
        /// The current password, as typed.
        old: Password,
        /// The new one, already checked for length by the engine.
        new: Password,
    },
    /// Make a resume token for a user: 128 random bits from the OS, kept only as a hash
    /// with the account, its creation and its expiry. Answer: [`StoreReply::Token`] with
    /// the token (shown to the user once), or `Failed(UnknownUser)`.
    IssueToken {
        /// Matched without regard to case.
        username: String,
    },
    /// Log in with a resume token: one hash lookup, no password hashing. Answer:
    /// [`StoreReply::Account`], or `Failed(InvalidCredentials)` for a token that is
    /// unknown, another account's, revoked or expired.
    Resume {
        /// As the user typed it; matched without regard to case.
        username: String,
        /// As the user typed it.
        token: Password,
    },
    /// Revoke every resume token of a user. Answer: [`StoreReply::Done`]. A password
    /// change and an account's deletion revoke them too, by themselves.
    RevokeTokens {
        /// Matched without regard to case.
        username: String,
    },
    /// Delete an account and every message it sent or received, if `password` is its
    /// password, as the operator's purge does (recorded as an account change, so every
    /// server on the database closes its sessions); the name may then be registered again.
    /// Answer: [`StoreReply::Done`], `Failed(InvalidCredentials)` for a wrong password, or
    /// `Failed(LastAdmin)` for the only admin.
    DeleteAccount {
        /// Matched without regard to case.
        username: String,
        /// As typed.
        password: Password,
    },
    /// Every registered channel, for the engine's catalogue (asked once at start, and again
    /// at the next channel command when that failed). Answer: [`StoreReply::Channels`].
    LoadChannels,
    /// Register channel `name` with `owner`, unless a channel with its key is registered
    /// already (then it is kept as it is). A channel stored but never registered (by a
    /// message appended to it, which may be committed first, or a setting) is claimed.
    /// Answer: [`StoreReply::Channels`] with the one channel as stored now, whoever
    /// registered it.
    RegisterChannel {
        /// The display name.
        name: String,
        /// The first joiner's username as registered; `None` registers it without owner.
        owner: Option<String>,
    },
    /// Set (or with `None` clear) a channel's topic, registering the channel without owner
    /// if needed. Answer: [`StoreReply::Done`] once committed.
    SetTopic {
        /// The display name; matched without regard to case.
        channel: String,
        /// The sanitised topic.
        topic: Option<String>,
    },
    /// Make a channel private or public, registering it without owner if needed. Answer:
    /// [`StoreReply::Done`] once committed.
    SetPrivate {
        /// The display name; matched without regard to case.
        channel: String,
        /// Whether only invited users may join.
        private: bool,
    },
    /// Invite a user to a channel (inviting twice keeps one invitation; an invitation lasts
    /// until the account is deleted), registering the channel without owner if needed.
    /// Answer: [`StoreReply::Account`] with the invitee as registered, or
    /// `Failed(UnknownUser)`.
    Invite {
        /// The display name; matched without regard to case.
        channel: String,
        /// The invitee, matched without regard to case.
        username: String,
    },
}

/// The store's answer to one [`StoreRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// The request was carried out and has nothing to return.
    Done,
    /// An account after register, login or set-role.
    Account {
        /// The username as registered (its letter case as first typed).
        username: String,
        /// The account's role now.
        role: Role,
        /// Login only: the account's mute in force, if any (`None` for other requests).
        mute: Option<Sanction>,
    },
    /// The ban or mute just set.
    Sanctioned(Sanction),
    /// A ban or mute was lifted from this account.
    Lifted {
        /// The username as registered.
        username: String,
    },
    /// The bans and mutes in force.
    Sanctions(Vec<Sanction>),
    /// A channel's recent history, oldest first.
    History(Vec<StoredMessage>),
    /// Undelivered private messages, oldest first.
    Pending(Vec<PendingMessage>),
    /// Registered channels, ordered by key.
    Channels(Vec<StoredChannel>),
    /// A new resume token ([`StoreRequest::IssueToken`]), as secret as a password (so it
    /// never shows in `Debug` output).
    Token(Password),
    /// The request failed.
    Failed(StoreError),
}

/// Why a store request failed, in terms the engine can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Registration: the name is taken, in any letter case.
    #[error("username is taken")]
    UsernameTaken,
    /// Login: unknown user or wrong password (deliberately the same).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The named user has no account.
    #[error("no such user")]
    UnknownUser,
    /// Set-role: the account is the last admin and the new role is not admin; someone must
    /// stay able to grant roles.
    #[error("the last admin cannot stop being admin")]
    LastAdmin,
    /// Login: the account is banned (this ban is in force). Answered whatever the password,
    /// so the answer tells nothing about it.
    #[error("the account is banned")]
    Banned(Sanction),
    /// Sanction or lift: the account's role is not below the role of whoever asked.
    #[error("the account's role is too high")]
    Outranked,
    /// Lift: the account has no sanction of that kind in force.
    #[error("no such ban or mute")]
    NotSanctioned,
    /// The store is overloaded (for example the password hashing queue is full); try again.
    #[error("busy, try again")]
    Busy,
    /// The database failed or cannot be reached. The text is for logs, never for users.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}
