//! What the server said, typed: one [`Event`] per server line, read from a text line
//! (`docs/PROTOCOL.md`, text mode) or from a JSON object (JSON lines mode), so a scenario
//! states what a user should see once and checks it in both modes.
//!
//! The JSON reader is strict: an object without a known `type`, without a field its type
//! needs, without a `ts`, or (for stored messages) without a 32-hex-digit `id` fails the test.
//! The text reader is as strict as text allows: a line that matches no known form is
//! [`Event::Info`] (banners and hints are free text).

use base64::Engine as _;
use serde_json::Value;

/// The earliest `ts` (milliseconds since the Unix epoch) the server can send: 2020-01-01.
const EARLIEST_TS: i64 = 1_577_836_800_000;

/// A question of the interactive login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// "Do you have an account? (y/n)"
    Account,
    /// "Enter username:"
    Username,
    /// "Enter password:"
    Password,
}

/// Which side of a finished transfer a `file_done` line is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The recipient's line: the sender and the file's size.
    From {
        /// The sender.
        user: String,
        /// The file's size in bytes.
        size: u64,
    },
    /// The sender's line: the recipient.
    To(String),
}

/// One line the server sent, in either mode. Fields only one mode carries (the stored
/// message id and the role on welcome are JSON-only; the error code is JSON-only) are
/// `Option`s that [`Event::portable`] clears, so expectations compare across modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Free text: the banner, hints, "You are already in …", "No messages in … yet."
    Info(String),
    /// A login question.
    Prompt(Prompt),
    /// The answer to `/mode`: `true` for JSON.
    Mode {
        /// Whether the connection is now in JSON mode.
        json: bool,
    },
    /// Logged in (`new`: just registered).
    Welcome {
        /// The account, as registered.
        user: String,
        /// Whether the account was just created.
        new: bool,
        /// The role (JSON only).
        role: Option<String>,
    },
    /// `You are in <channel>` after login.
    InChannel(String),
    /// A live chat message in a channel.
    Message {
        /// The channel.
        channel: String,
        /// The sender.
        from: String,
        /// The text.
        text: String,
        /// The stored message id (JSON only).
        id: Option<String>,
    },
    /// A private message; `offline` when it waited for the recipient's login.
    Dm {
        /// The sender.
        from: String,
        /// The text.
        text: String,
        /// Whether it was stored while the recipient was away.
        offline: bool,
        /// The stored message id (JSON only).
        id: Option<String>,
    },
    /// A private message to an offline user was stored for later.
    DmStored {
        /// The recipient.
        to: String,
    },
    /// A replayed channel message.
    History {
        /// The channel.
        channel: String,
        /// The sender.
        from: String,
        /// The text.
        text: String,
        /// The stored message id (JSON only).
        id: Option<String>,
    },
    /// A private message of the past (`/history @with`).
    DmHistory {
        /// The other user of the conversation, as the reader typed it.
        with: String,
        /// The author.
        from: String,
        /// The text.
        text: String,
        /// The stored message id (JSON only).
        id: Option<String>,
    },
    /// A full page of history: the one before it is `/history [@with] count before …`.
    HistoryMore {
        /// The conversation's other user; `None` for a channel.
        with: Option<String>,
        /// The page's size.
        count: u64,
        /// The oldest message id of the page.
        before: String,
    },
    /// The answer to `/password`.
    PasswordChanged,
    /// The answer to `/token`: the token.
    Token(String),
    /// The answer to `/logout-everywhere`.
    LoggedOutEverywhere,
    /// The answer to `/delete-account`: the account's name.
    AccountDeleted(String),
    /// This session was logged out: why.
    LoggedOut(String),
    /// Someone entered the channel.
    Join {
        /// Who.
        user: String,
        /// Which channel.
        channel: String,
    },
    /// Someone left the channel.
    Part {
        /// Who.
        user: String,
        /// Which channel.
        channel: String,
    },
    /// The answer to `/join`.
    Switched {
        /// The channel left.
        from: String,
        /// The channel entered.
        to: String,
    },
    /// `/list`: the users online, and the away messages of those who are away.
    Users(Vec<String>, Vec<(String, String)>),
    /// `/channels`: names, member counts and topics.
    Channels(Vec<(String, u64, Option<String>)>),
    /// A channel's topic (`None`: none), shown at `/join` and by `/topic`; with `by`, a
    /// change to it.
    Topic {
        /// The channel.
        channel: String,
        /// The topic.
        topic: Option<String>,
        /// Who changed it, for a change.
        by: Option<String>,
    },
    /// Your channel became private or public.
    Private {
        /// The channel.
        channel: String,
        /// Whether it is private now.
        private: bool,
        /// Who changed it.
        by: String,
    },
    /// Your `/invite` worked.
    Invited {
        /// The channel.
        channel: String,
        /// Who may join it now.
        user: String,
    },
    /// You were invited to a channel.
    Invitation {
        /// The channel.
        channel: String,
        /// By whom.
        by: String,
    },
    /// `/names`: who is in the channel.
    Names {
        /// The channel.
        channel: String,
        /// The users, each once.
        users: Vec<String>,
    },
    /// The answer to `/away`: your away message, or `None` when you are back.
    AwaySet(Option<String>),
    /// The user you sent a private message to is away.
    Away {
        /// The user.
        user: String,
        /// The away message.
        text: String,
    },
    /// `/profile`.
    Profile {
        /// The user.
        user: String,
        /// The current channel.
        channel: String,
        /// The role.
        role: String,
    },
    /// Your role, and who set it when someone just did.
    Role {
        /// The role.
        role: String,
        /// The admin who set it, when it just changed.
        by: Option<String>,
    },
    /// An admin's `/role <user> <role>` took effect.
    RoleSet {
        /// The user.
        user: String,
        /// The new role.
        role: String,
    },
    /// Someone in your channel was kicked.
    Kick {
        /// Who was kicked.
        user: String,
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// You were kicked; the connection closes.
    Kicked {
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// Your `/kick` worked.
    KickDone {
        /// Who was kicked.
        user: String,
    },
    /// You are banned (at login, or live); the connection closes.
    Banned {
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// You are muted.
    Muted {
        /// By whom.
        by: String,
        /// Why.
        reason: String,
    },
    /// Your mute was lifted.
    Unmuted,
    /// Your `/ban` or `/mute` worked.
    Sanctioned {
        /// `ban` or `mute`.
        kind: String,
        /// Whom.
        user: String,
        /// Why.
        reason: String,
    },
    /// Your `/unban` or `/unmute` worked.
    Lifted {
        /// `ban` or `mute`.
        kind: String,
        /// Whose.
        user: String,
    },
    /// `/bans`: `(kind, user)` of each sanction in force (text mode: empty; the entries
    /// follow as [`Event::HelpEntry`] lines, `<kind> <user> by …`).
    Sanctions(Vec<(String, String)>),
    /// The answer to `/ping <token>`.
    Pong(String),
    /// `/help`: the usages listed (text mode: empty; the usages follow as [`Event::HelpEntry`]).
    Help(Vec<String>),
    /// One command of a text-mode `/help` list (its usage).
    HelpEntry(String),
    /// The answer to `/close`.
    Goodbye,
    /// The server is stopping.
    Shutdown,
    /// A file is coming to you.
    FileOffer {
        /// The transfer.
        id: u64,
        /// The sender.
        from: String,
        /// The file's name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Your file is being sent.
    FileSending {
        /// The transfer.
        id: u64,
        /// The recipient.
        to: String,
        /// The file's name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A piece of a file, decoded (raw text, base64 line, or JSON base64).
    FileChunk {
        /// The transfer.
        id: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A transfer finished.
    FileDone {
        /// The transfer.
        id: u64,
        /// The file's name.
        name: String,
        /// Which side this line is for.
        peer: Peer,
    },
    /// A transfer stopped.
    FileCancelled {
        /// The transfer.
        id: u64,
        /// Why.
        reason: String,
    },
    /// An error: its stable code (JSON only) and its message.
    Error {
        /// The stable code (JSON only).
        code: Option<String>,
        /// What a person reads.
        message: String,
    },
}

impl Event {
    /// A live chat message, as an expectation.
    pub fn message(channel: &str, from: &str, text: &str) -> Event {
        Event::Message {
            channel: channel.into(),
            from: from.into(),
            text: text.into(),
            id: None,
        }
    }

    /// A private message, as an expectation.
    pub fn dm(from: &str, text: &str, offline: bool) -> Event {
        Event::Dm {
            from: from.into(),
            text: text.into(),
            offline,
            id: None,
        }
    }

    /// A replayed channel message, as an expectation.
    pub fn history(channel: &str, from: &str, text: &str) -> Event {
        Event::History {
            channel: channel.into(),
            from: from.into(),
            text: text.into(),
            id: None,
        }
    }

    /// The event without the fields only one mode carries (ids, welcome role, error code),
    /// for comparing an expectation with what either mode received.
    pub fn portable(&self) -> Event {
        let mut event = self.clone();
        match &mut event {
            Event::Message { id, .. }
            | Event::Dm { id, .. }
            | Event::History { id, .. }
            | Event::DmHistory { id, .. } => *id = None,
            Event::Welcome { role, .. } => *role = None,
            Event::Error { code, .. } => *code = None,
            _ => {}
        }
        event
    }

    /// The stored message id of a chat, private or replayed message (JSON mode only).
    pub fn id(&self) -> Option<&str> {
        match self {
            Event::Message { id, .. }
            | Event::Dm { id, .. }
            | Event::History { id, .. }
            | Event::DmHistory { id, .. } => id.as_deref(),
            _ => None,
        }
    }
}

/// A text line, read: an event, or the header of a file chunk whose bytes follow.
#[derive(Debug)]
pub(crate) enum TextLine {
    /// A complete event.
    Event(Event),
    /// `[file <id> data <n>]`: `n` raw bytes and a line break follow.
    RawChunk { id: u64, len: usize },
    /// `[file <id> base64 <n>]`: one base64 line that decodes to `n` bytes follows.
    Base64Chunk { id: u64, len: usize },
}

/// Reads one text-mode line (without its line ending).
pub(crate) fn parse_text(line: &str) -> TextLine {
    if let Some(file) = line.strip_prefix("[file ") {
        if let Some(chunk) = file_chunk_header(file) {
            return chunk;
        }
        if let Some(event) = file_text(file) {
            return TextLine::Event(event);
        }
    }
    TextLine::Event(text_event(line).unwrap_or_else(|| Event::Info(line.to_string())))
}

/// The entries of a text `/channels` line: `name (members)`, each with ` [topic]` when
/// it has one, separated by `, ` (a topic ends at the `]` before the next `, ` or the end).
fn text_channels(mut rest: &str) -> Option<Vec<(String, u64, Option<String>)>> {
    let mut list = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once(" (")?;
        let (members, after) = after.split_once(')')?;
        let (topic, after) = match after.strip_prefix(" [") {
            Some(topic) => {
                let end = match topic.match_indices("], ").next() {
                    Some((at, _)) => at,
                    None => topic.strip_suffix(']')?.len(),
                };
                (Some(topic[..end].to_string()), &topic[end + 1..])
            }
            None => (None, after),
        };
        list.push((name.to_string(), members.parse().ok()?, topic));
        rest = match after.strip_prefix(", ") {
            Some(next) => next,
            None if after.is_empty() => "",
            None => return None,
        };
    }
    Some(list)
}

fn text_event(line: &str) -> Option<Event> {
    let owned = |s: &str| s.to_string();
    if let Some(message) = line.strip_prefix("Error: ") {
        return Some(Event::Error {
            code: None,
            message: owned(message),
        });
    }
    match line {
        "Do you have an account? (y/n)" => return Some(Event::Prompt(Prompt::Account)),
        "Enter username:" => return Some(Event::Prompt(Prompt::Username)),
        "Enter password:" => return Some(Event::Prompt(Prompt::Password)),
        "Mode: text" => return Some(Event::Mode { json: false }),
        "Goodbye!" => return Some(Event::Goodbye),
        "Server is shutting down. Goodbye!" => return Some(Event::Shutdown),
        "Commands:" => return Some(Event::Help(Vec::new())),
        "Bans and mutes:" | "No bans or mutes." => return Some(Event::Sanctions(Vec::new())),
        "You are no longer muted." => return Some(Event::Unmuted),
        "PONG" => return Some(Event::Pong(String::new())),
        _ => {}
    }
    if let Some(usage) = line.strip_prefix("  ") {
        let usage = usage.split("  ").next().unwrap_or(usage);
        return Some(Event::HelpEntry(owned(usage.trim_end())));
    }
    if let Some(token) = line.strip_prefix("PONG ") {
        return Some(Event::Pong(owned(token)));
    }
    if let Some(user) = line.strip_prefix("Welcome back ") {
        let user = user.strip_suffix('!')?;
        return (!user.contains(' ')).then(|| Event::Welcome {
            user: owned(user),
            new: false,
            role: None,
        });
    }
    if let Some(user) = line.strip_prefix("Welcome ") {
        let user = user.strip_suffix('!')?;
        return (!user.contains(' ')).then(|| Event::Welcome {
            user: owned(user),
            new: true,
            role: None,
        });
    }
    if let Some(channel) = line.strip_prefix("You are in ") {
        return Some(Event::InChannel(owned(channel)));
    }
    if let Some(rest) = line.strip_prefix("[DM] ") {
        let (from, text) = rest.split_once(": ")?;
        return Some(Event::dm(from, text, false));
    }
    if let Some(rest) = line.strip_prefix("[offline DM ") {
        let (_, rest) = rest.split_once("] ")?;
        let (from, text) = rest.split_once(": ")?;
        return Some(Event::dm(from, text, true));
    }
    if let Some(rest) = line.strip_prefix("[history ") {
        let (_, rest) = rest.split_once("] [")?;
        let (channel, rest) = rest.split_once("] ")?;
        let (from, text) = rest.split_once(": ")?;
        if let Some(with) = channel.strip_prefix('@') {
            return Some(Event::DmHistory {
                with: owned(with),
                from: owned(from),
                text: owned(text),
                id: None,
            });
        }
        return Some(Event::history(channel, from, text));
    }
    if let Some(rest) = line.strip_prefix("Older messages: /history ") {
        let (rest, before) = rest.split_once(" before ")?;
        let (with, count) = match rest.split_once(' ') {
            Some((with, count)) => (Some(owned(with.strip_prefix('@')?)), count),
            None => (None, rest),
        };
        return Some(Event::HistoryMore {
            with,
            count: count.parse().ok()?,
            before: owned(before),
        });
    }
    if line == "Your password was changed; your other sessions were logged out." {
        return Some(Event::PasswordChanged);
    }
    if line == "Your resume tokens were revoked and your other sessions logged out." {
        return Some(Event::LoggedOutEverywhere);
    }
    if let Some(rest) = line.strip_prefix("Your resume token (shown once; ") {
        let (_, rest) = rest.split_once("): ")?;
        let (token, _) = rest.split_once(' ')?;
        return Some(Event::Token(owned(token)));
    }
    if let Some(rest) = line.strip_prefix("Your account ") {
        let user = rest.strip_suffix(" was deleted, with its messages. Goodbye.")?;
        return Some(Event::AccountDeleted(owned(user)));
    }
    if let Some(reason) = line.strip_prefix("You were logged out: ") {
        return Some(Event::LoggedOut(owned(reason)));
    }
    if let Some(rest) = line.strip_prefix('[') {
        let (channel, rest) = rest.split_once("] ")?;
        let (from, text) = rest.split_once(": ")?;
        return Some(Event::message(channel, from, text));
    }
    if let Some(rest) = line.strip_prefix("* ") {
        if let Some((user, rest)) = rest.split_once(" was kicked by ") {
            let (by, reason) = rest.split_once(": ")?;
            return Some(Event::Kick {
                user: owned(user),
                by: owned(by),
                reason: owned(reason),
            });
        }
        if let Some((by, rest)) = rest.split_once(" set the topic of ") {
            let (channel, topic) = rest.split_once(": ")?;
            return Some(Event::Topic {
                channel: owned(channel),
                topic: Some(owned(topic)),
                by: Some(owned(by)),
            });
        }
        if let Some((by, channel)) = rest.split_once(" cleared the topic of ") {
            return Some(Event::Topic {
                channel: owned(channel),
                topic: None,
                by: Some(owned(by)),
            });
        }
        if let Some((by, rest)) = rest.split_once(" made ") {
            let (channel, private) =
                match rest.strip_suffix(" private: only invited users may join") {
                    Some(channel) => (channel, true),
                    None => (rest.strip_suffix(" public")?, false),
                };
            return Some(Event::Private {
                channel: owned(channel),
                private,
                by: owned(by),
            });
        }
        if let Some((user, channel)) = rest.split_once(" joined ") {
            return Some(Event::Join {
                user: owned(user),
                channel: owned(channel),
            });
        }
        if let Some((user, channel)) = rest.split_once(" left ") {
            return Some(Event::Part {
                user: owned(user),
                channel: owned(channel),
            });
        }
        return None;
    }
    if let Some(rest) = line.strip_prefix("Switched from ") {
        let (from, to) = rest.split_once(" to ")?;
        return Some(Event::Switched {
            from: owned(from),
            to: owned(to),
        });
    }
    if let Some(rest) = line.strip_prefix("You were kicked by ") {
        let (by, reason) = rest.split_once(": ")?;
        return Some(Event::Kicked {
            by: owned(by),
            reason: owned(reason),
        });
    }
    for (prefix, banned) in [("You are banned by ", true), ("You are muted by ", false)] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let (by, rest) = rest.split_once(" until ")?;
            let (_, reason) = rest.split_once(": ")?;
            let (by, reason) = (owned(by), owned(reason));
            return Some(if banned {
                Event::Banned { by, reason }
            } else {
                Event::Muted { by, reason }
            });
        }
    }
    for (participle, kind) in [("banned", "ban"), ("muted", "mute")] {
        if let Some((user, rest)) = line.split_once(&format!(" is {participle} until ")) {
            let (_, reason) = rest.split_once(": ")?;
            return Some(Event::Sanctioned {
                kind: owned(kind),
                user: owned(user),
                reason: owned(reason),
            });
        }
        if let Some(user) = line.strip_suffix(&format!(" is no longer {participle}")) {
            return Some(Event::Lifted {
                kind: owned(kind),
                user: owned(user),
            });
        }
    }
    if let Some(user) = line.strip_prefix("You kicked ") {
        return Some(Event::KickDone {
            user: owned(user.strip_suffix('.')?),
        });
    }
    if let Some(rest) = line.strip_prefix("Your role is now ") {
        let (role, by) = rest.split_once(" (set by ")?;
        return Some(Event::Role {
            role: owned(role),
            by: Some(owned(by.strip_suffix(')')?)),
        });
    }
    if let Some(role) = line.strip_prefix("Your role is ") {
        return Some(Event::Role {
            role: owned(role),
            by: None,
        });
    }
    if let Some(users) = line.strip_prefix("Connected users: ") {
        let (mut names, mut away) = (Vec::new(), Vec::new());
        for user in users.split(", ").filter(|u| !u.is_empty()) {
            match user.split_once(" (away: ") {
                Some((name, text)) => {
                    names.push(owned(name));
                    away.push((owned(name), owned(text.strip_suffix(')')?)));
                }
                None => names.push(owned(user)),
            }
        }
        return Some(Event::Users(names, away));
    }
    if let Some(channels) = line.strip_prefix("Channels: ") {
        return Some(Event::Channels(text_channels(channels)?));
    }
    if let Some(rest) = line.strip_prefix("Topic of ") {
        let (channel, topic) = rest.split_once(": ")?;
        return Some(Event::Topic {
            channel: owned(channel),
            topic: Some(owned(topic)),
            by: None,
        });
    }
    if let Some(channel) = line.strip_suffix(" has no topic") {
        return Some(Event::Topic {
            channel: owned(channel),
            topic: None,
            by: None,
        });
    }
    if let Some(rest) = line.strip_prefix("You invited ") {
        let (user, channel) = rest.split_once(" to ")?;
        return Some(Event::Invited {
            channel: owned(channel),
            user: owned(user),
        });
    }
    if let Some((by, rest)) = line.split_once(" invited you to ") {
        let (channel, _) = rest.split_once("; /join ")?;
        return Some(Event::Invitation {
            channel: owned(channel),
            by: owned(by),
        });
    }
    if let Some(rest) = line.strip_prefix("Names in ") {
        let (channel, users) = rest.split_once(": ")?;
        let users = users.split(", ").filter(|u| !u.is_empty()).map(owned);
        return Some(Event::Names {
            channel: owned(channel),
            users: users.collect(),
        });
    }
    if let Some(text) = line.strip_prefix("You are marked away: ") {
        return Some(Event::AwaySet(Some(owned(text))));
    }
    if line == "You are no longer marked away" {
        return Some(Event::AwaySet(None));
    }
    if let Some((user, text)) = line.split_once(" is away: ") {
        return Some(Event::Away {
            user: owned(user),
            text: owned(text),
        });
    }
    if let Some(rest) = line.strip_prefix("Username: ") {
        let (user, rest) = rest.split_once(" | Channel: ")?;
        let (channel, role) = rest.split_once(" | Role: ")?;
        return Some(Event::Profile {
            user: owned(user),
            channel: owned(channel),
            role: owned(role),
        });
    }
    if let Some(to) =
        line.strip_suffix(" is offline; the message will be delivered at their next login.")
    {
        return Some(Event::DmStored { to: owned(to) });
    }
    if let Some((user, role)) = line.split_once(" is now ") {
        return (!user.contains(' ') && !role.contains(' ')).then(|| Event::RoleSet {
            user: owned(user),
            role: owned(role),
        });
    }
    None
}

/// `<id> data <n>]` or `<id> base64 <n>]` (after `[file `).
fn file_chunk_header(file: &str) -> Option<TextLine> {
    let header = file.strip_suffix(']')?;
    let mut words = header.split(' ');
    let id = words.next()?.parse().ok()?;
    let kind = words.next()?;
    let len = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    match kind {
        "data" => Some(TextLine::RawChunk { id, len }),
        "base64" => Some(TextLine::Base64Chunk { id, len }),
        _ => None,
    }
}

/// The other `[file …` lines (after `[file `).
fn file_text(file: &str) -> Option<Event> {
    let owned = |s: &str| s.to_string();
    let (head, rest) = file.split_once("] ")?;
    let mut head = head.split(' ');
    let id: u64 = head.next()?.parse().ok()?;
    let name_and_size = |s: &str| -> Option<(String, u64)> {
        let (name, size) = s.split_once(" (")?;
        Some((owned(name), size.strip_suffix(" bytes)")?.parse().ok()?))
    };
    match head.next() {
        None => {
            if let Some(rest) = rest.strip_prefix("sending ") {
                let (file, to) = rest.rsplit_once(" to ")?;
                let (name, size) = name_and_size(file)?;
                return Some(Event::FileSending {
                    id,
                    to: owned(to),
                    name,
                    size,
                });
            }
            let (from, file) = rest.split_once(" is sending ")?;
            let (name, size) = name_and_size(file)?;
            Some(Event::FileOffer {
                id,
                from: owned(from),
                name,
                size,
            })
        }
        Some("done") => {
            if let Some((file, from)) = rest.rsplit_once(" from ") {
                let (name, size) = name_and_size(file)?;
                return Some(Event::FileDone {
                    id,
                    name,
                    peer: Peer::From {
                        user: owned(from),
                        size,
                    },
                });
            }
            let (name, to) = rest.split_once(" sent to ")?;
            Some(Event::FileDone {
                id,
                name: owned(name),
                peer: Peer::To(owned(to)),
            })
        }
        Some("cancelled") => Some(Event::FileCancelled {
            id,
            reason: owned(rest),
        }),
        Some(_) => None,
    }
}

/// Reads one JSON-mode line; panics (failing the test) on anything the protocol does not allow.
pub(crate) fn parse_json(line: &str) -> Event {
    let value: Value = serde_json::from_str(line)
        .unwrap_or_else(|error| panic!("a JSON-mode line is not JSON ({error}): {line:?}"));
    let object = Json {
        value: &value,
        line,
    };
    let ts = object.int("ts");
    assert!(ts >= EARLIEST_TS, "`ts` is not a plausible time: {line}");
    let text = |field: &str| object.text(field);
    match object.text("type").as_str() {
        "mode" => Event::Mode {
            json: match object.text("mode").as_str() {
                "json" => true,
                "text" => false,
                other => panic!("unknown mode {other:?}: {line}"),
            },
        },
        "info" => Event::Info(text("text")),
        "prompt" => Event::Prompt(match object.text("prompt").as_str() {
            "account" => Prompt::Account,
            "username" => Prompt::Username,
            "password" => Prompt::Password,
            other => panic!("unknown prompt {other:?}: {line}"),
        }),
        "welcome" => Event::Welcome {
            user: text("user"),
            new: object.bool("new"),
            role: Some(object.role("role")),
        },
        "channel" => Event::InChannel(text("channel")),
        "message" => Event::Message {
            channel: text("channel"),
            from: text("from"),
            text: text("text"),
            id: Some(object.message_id()),
        },
        "dm" => {
            let offline = object.value.get("offline").is_some();
            if offline {
                assert!(
                    object.bool("offline"),
                    "`offline` is true when sent: {line}"
                );
                object.sent_at();
            }
            Event::Dm {
                from: text("from"),
                text: text("text"),
                offline,
                id: Some(object.message_id()),
            }
        }
        "dm_stored" => Event::DmStored { to: text("to") },
        "history" => {
            object.sent_at();
            Event::History {
                channel: text("channel"),
                from: text("from"),
                text: text("text"),
                id: Some(object.message_id()),
            }
        }
        "dm_history" => {
            object.sent_at();
            Event::DmHistory {
                with: text("with"),
                from: text("from"),
                text: text("text"),
                id: Some(object.message_id()),
            }
        }
        "history_more" => Event::HistoryMore {
            with: object.value.get("with").map(|_| text("with")),
            count: object.uint("count"),
            before: text("before"),
        },
        "password_changed" => Event::PasswordChanged,
        "token" => Event::Token(text("token")),
        "logged_out_everywhere" => Event::LoggedOutEverywhere,
        "account_deleted" => Event::AccountDeleted(text("user")),
        "logged_out" => Event::LoggedOut(text("reason")),
        "join" => Event::Join {
            user: text("user"),
            channel: text("channel"),
        },
        "part" => Event::Part {
            user: text("user"),
            channel: text("channel"),
        },
        "switched" => Event::Switched {
            from: text("from"),
            to: text("to"),
        },
        "list" => Event::Users(
            object
                .array("users")
                .iter()
                .map(|user| Json { value: user, line }.string())
                .collect(),
            match object.value.get("away") {
                None => Vec::new(),
                Some(_) => object
                    .array("away")
                    .iter()
                    .map(|pair| {
                        let pair: (String, String) = serde_json::from_value(pair.clone())
                            .unwrap_or_else(|_| panic!("`away` holds [user, text] pairs: {line}"));
                        pair
                    })
                    .collect(),
            },
        ),
        "channels" => Event::Channels(
            object
                .array("channels")
                .iter()
                .map(|channel| {
                    let channel = Json {
                        value: channel,
                        line,
                    };
                    let topic = channel.value.get("topic").map(|_| channel.text("topic"));
                    (channel.text("name"), channel.uint("members"), topic)
                })
                .collect(),
        ),
        "topic" => Event::Topic {
            channel: text("channel"),
            topic: object.value.get("topic").map(|_| text("topic")),
            by: object.value.get("by").map(|_| text("by")),
        },
        "private" => Event::Private {
            channel: text("channel"),
            private: object.bool("private"),
            by: text("by"),
        },
        "invited" => Event::Invited {
            channel: text("channel"),
            user: text("user"),
        },
        "invitation" => Event::Invitation {
            channel: text("channel"),
            by: text("by"),
        },
        "names" => Event::Names {
            channel: text("channel"),
            users: object
                .array("users")
                .iter()
                .map(|user| Json { value: user, line }.string())
                .collect(),
        },
        "away_set" => Event::AwaySet(object.value.get("text").map(|_| text("text"))),
        "away" => Event::Away {
            user: text("user"),
            text: text("text"),
        },
        "profile" => Event::Profile {
            user: text("user"),
            channel: text("channel"),
            role: object.role("role"),
        },
        "role" => Event::Role {
            role: object.role("role"),
            by: object.value.get("by").map(|_| text("by")),
        },
        "role_set" => Event::RoleSet {
            user: text("user"),
            role: object.role("role"),
        },
        "kick" => Event::Kick {
            user: text("user"),
            by: text("by"),
            reason: text("reason"),
        },
        "kicked" => Event::Kicked {
            by: text("by"),
            reason: text("reason"),
        },
        "kick_done" => Event::KickDone { user: text("user") },
        "banned" => Event::Banned {
            by: text("by"),
            reason: text("reason"),
        },
        "muted" => Event::Muted {
            by: text("by"),
            reason: text("reason"),
        },
        "unmuted" => Event::Unmuted,
        "sanctioned" => Event::Sanctioned {
            kind: text("kind"),
            user: text("user"),
            reason: text("reason"),
        },
        "lifted" => Event::Lifted {
            kind: text("kind"),
            user: text("user"),
        },
        "sanctions" => Event::Sanctions(
            object
                .array("sanctions")
                .iter()
                .map(|sanction| {
                    let sanction = Json {
                        value: sanction,
                        line,
                    };
                    (sanction.text("kind"), sanction.text("user"))
                })
                .collect(),
        ),
        "pong" => Event::Pong(text("token")),
        "help" => Event::Help(
            object
                .array("commands")
                .iter()
                .map(|command| {
                    let pair = Json {
                        value: command,
                        line,
                    };
                    let pair = pair.value.as_array().filter(|pair| pair.len() == 2);
                    let pair = pair.unwrap_or_else(|| panic!("a help command is a pair: {line}"));
                    Json {
                        value: &pair[0],
                        line,
                    }
                    .string()
                })
                .collect(),
        ),
        "goodbye" => Event::Goodbye,
        "shutdown" => Event::Shutdown,
        "file_offer" => Event::FileOffer {
            id: object.uint("id"),
            from: text("from"),
            name: text("name"),
            size: object.uint("size"),
        },
        "file_sending" => Event::FileSending {
            id: object.uint("id"),
            to: text("to"),
            name: text("name"),
            size: object.uint("size"),
        },
        "file_chunk" => Event::FileChunk {
            id: object.uint("id"),
            data: base64::engine::general_purpose::STANDARD
                .decode(text("data"))
                .unwrap_or_else(|error| panic!("`data` is not base64 ({error}): {line}")),
        },
        "file_done" => Event::FileDone {
            id: object.uint("id"),
            name: text("name"),
            peer: match (object.value.get("from"), object.value.get("to")) {
                (Some(_), None) => Peer::From {
                    user: text("from"),
                    size: object.uint("size"),
                },
                (None, Some(_)) => Peer::To(text("to")),
                _ => panic!("`file_done` has `from` or `to`: {line}"),
            },
        },
        "file_cancelled" => Event::FileCancelled {
            id: object.uint("id"),
            reason: text("reason"),
        },
        "error" => {
            let code = text("code");
            assert!(
                !code.is_empty()
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "an error code is snake_case: {line}"
            );
            Event::Error {
                code: Some(code),
                message: text("message"),
            }
        }
        other => panic!("unknown `type` {other:?}: {line}"),
    }
}

/// One JSON value of a line, with the line for messages.
struct Json<'a> {
    value: &'a Value,
    line: &'a str,
}

impl Json<'_> {
    fn field(&self, name: &str) -> &Value {
        self.value
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` in {}", self.line))
    }

    fn string(&self) -> String {
        match self.value.as_str() {
            Some(text) => text.to_string(),
            None => panic!("{} is not a string in {}", self.value, self.line),
        }
    }

    fn text(&self, name: &str) -> String {
        Json {
            value: self.field(name),
            line: self.line,
        }
        .string()
    }

    fn int(&self, name: &str) -> i64 {
        match self.field(name).as_i64() {
            Some(n) => n,
            None => panic!("`{name}` is not an integer in {}", self.line),
        }
    }

    fn uint(&self, name: &str) -> u64 {
        match self.field(name).as_u64() {
            Some(n) => n,
            None => panic!("`{name}` is not a whole number in {}", self.line),
        }
    }

    fn bool(&self, name: &str) -> bool {
        match self.field(name).as_bool() {
            Some(b) => b,
            None => panic!("`{name}` is not a boolean in {}", self.line),
        }
    }

    fn array(&self, name: &str) -> &Vec<Value> {
        match self.field(name).as_array() {
            Some(items) => items,
            None => panic!("`{name}` is not an array in {}", self.line),
        }
    }

    fn role(&self, name: &str) -> String {
        let role = self.text(name);
        assert!(
            ["user", "mod", "admin"].contains(&role.as_str()),
            "unknown role {role:?} in {}",
            self.line
        );
        role
    }

    /// A stored message's `id`: 32 lowercase hex digits.
    fn message_id(&self) -> String {
        let id = self.text("id");
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "`id` is not 32 hex digits in {}",
            self.line
        );
        id
    }

    /// A stored message's `sent_at`: a plausible time.
    fn sent_at(&self) {
        assert!(
            self.int("sent_at") >= EARLIEST_TS,
            "`sent_at` is not a plausible time in {}",
            self.line
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> Event {
        match parse_text(line) {
            TextLine::Event(event) => event,
            chunk => panic!("{line:?} read as {chunk:?}"),
        }
    }

    #[test]
    fn channel_lines_read_with_their_topics_and_away_messages() {
        assert_eq!(
            event("Channels: cr9920x417x3 (2) [Rust talk, mostly], Global (1)"),
            Event::Channels(vec![
                ("cr9920x417x3".into(), 2, Some("Rust talk, mostly".into())),
                ("Global".into(), 1, None),
            ])
        );
        assert_eq!(
            event("Channels: #a (1) [x, y], b (0), c (2) [z]"),
            Event::Channels(vec![
                ("#a".into(), 1, Some("x, y".into())),
                ("b".into(), 0, None),
                ("c".into(), 2, Some("z".into())),
            ])
        );
        assert_eq!(
            event("Connected users: al (away: lunch), bo"),
            Event::Users(
                vec!["al".into(), "bo".into()],
                vec![("al".into(), "lunch".into())]
            )
        );
        assert_eq!(
            event("* al made #a private: only invited users may join"),
            Event::Private {
                channel: "#a".into(),
                private: true,
                by: "al".into()
            }
        );
        assert_eq!(
            event("* al cleared the topic of #a"),
            Event::Topic {
                channel: "#a".into(),
                topic: None,
                by: Some("al".into())
            }
        );
        assert_eq!(
            event("al invited you to #a; /join #a"),
            Event::Invitation {
                channel: "#a".into(),
                by: "al".into()
            }
        );
        assert_eq!(
            parse_json(r##"{"type":"names","channel":"#a","users":["al"],"ts":1795664700000}"##),
            Event::Names {
                channel: "#a".into(),
                users: vec!["al".into()]
            }
        );
        assert_eq!(
            parse_json(
                r#"{"away":[["al","lunch"]],"type":"list","users":["al"],"ts":1795664700000}"#
            ),
            Event::Users(vec!["al".into()], vec![("al".into(), "lunch".into())])
        );
    }

    #[test]
    fn text_lines_read_as_the_events_the_protocol_documents() {
        assert_eq!(
            event("[Global] al: hi: there"),
            Event::message("Global", "al", "hi: there")
        );
        assert_eq!(event("[DM] al: psst"), Event::dm("al", "psst", false));
        assert_eq!(
            event("[offline DM 2026-11-26 03:40 UTC] bob: later"),
            Event::dm("bob", "later", true)
        );
        assert_eq!(
            event("[history 2026-11-26 03:44 UTC] [room] al: old"),
            Event::history("room", "al", "old")
        );
        assert_eq!(
            event("Welcome to WUR2 chat!"),
            Event::Info("Welcome to WUR2 chat!".into())
        );
        assert_eq!(
            event("Welcome back al!"),
            Event::Welcome {
                user: "al".into(),
                new: false,
                role: None
            }
        );
        assert_eq!(
            event("Channels: Global (3), #rust (1)"),
            Event::Channels(vec![("Global".into(), 3, None), ("#rust".into(), 1, None)])
        );
        assert_eq!(
            event("al is offline; the message will be delivered at their next login."),
            Event::DmStored { to: "al".into() }
        );
        assert_eq!(
            event("al is now mod"),
            Event::RoleSet {
                user: "al".into(),
                role: "mod".into()
            }
        );
        assert_eq!(
            event("  /msg <user> <text>  private message"),
            Event::HelpEntry("/msg <user> <text>".into())
        );
    }

    #[test]
    fn text_file_lines_read_as_file_events() {
        assert_eq!(
            event("[file 7] al is sending a.bin (10 bytes)"),
            Event::FileOffer {
                id: 7,
                from: "al".into(),
                name: "a.bin".into(),
                size: 10
            }
        );
        assert_eq!(
            event("[file 7] sending a.bin (10 bytes) to bo"),
            Event::FileSending {
                id: 7,
                to: "bo".into(),
                name: "a.bin".into(),
                size: 10
            }
        );
        assert_eq!(
            event("[file 7 done] a.bin (10 bytes) from al"),
            Event::FileDone {
                id: 7,
                name: "a.bin".into(),
                peer: Peer::From {
                    user: "al".into(),
                    size: 10
                }
            }
        );
        assert_eq!(
            event("[file 7 done] a.bin sent to bo"),
            Event::FileDone {
                id: 7,
                name: "a.bin".into(),
                peer: Peer::To("bo".into())
            }
        );
        assert!(matches!(
            parse_text("[file 7 base64 4]"),
            TextLine::Base64Chunk { id: 7, len: 4 }
        ));
    }

    #[test]
    #[should_panic(expected = "no `ts`")]
    fn a_json_line_without_a_timestamp_fails() {
        parse_json(r#"{"type":"pong","token":"x"}"#);
    }

    #[test]
    #[should_panic(expected = "32 hex digits")]
    fn a_json_message_without_a_proper_id_fails() {
        parse_json(
            r#"{"type":"message","channel":"G","from":"a","text":"t","id":"7","ts":1795664700000}"#,
        );
    }
}
