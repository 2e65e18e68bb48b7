//! The whole engine driven by a fuzzer-chosen sequence of events over several connections:
//! connects, command lines and raw bytes, file uploads, peer closes, written bytes, store
//! replies and server-side file reads answered in any order (right, failed or of the wrong
//! kind), time steps and shutdown. After every event the driver-visible contract is checked
//! against a small model kept from what each client received (in text or JSON mode):
//!
//! - no panic (the engine's own promise);
//! - no output for a connection that is closed or was never opened, no second `Close`;
//! - queued bytes per connection match what was handed out minus what was reported
//!   written, and stay within `max_queued_bytes`;
//! - a `[<channel>] user: text` chat line only reaches members of that channel;
//! - every server line ends in `\n` and carries no terminal control character; a JSON-mode
//!   line is one JSON object with a `type`;
//! - a file arrives byte-exact: what the recipient got when told it is done is the size
//!   announced, and is the server-side file or bytes its sender sent;
//! - server-side file outputs: only checked paths are opened, at most one read per
//!   transfer is out, nothing is read or closed that was not opened, nothing closed twice;
//! - store request ids are never repeated, and requests carry what the engine promises to
//!   have validated; each request is answered at most once by this driver;
//! - the getters (`connection_count`, `is_logged_in`, `online_user_count`,
//!   `channel_members`, `queued_bytes`) agree with the model;
//! - a password given in `/register` or `/login` never comes back out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use serde_json::Value;
use wur2_engine::memory_store::MemoryStore;
use wur2_engine::{
    AccountChange, CLUSTER_PROTOCOL_VERSION, CloseReason, ClusterConfig, Config, ConnectionId,
    Engine, Expiry, FileError, MessageId, Output, PendingMessage, RequestId, Role, Sanction,
    SanctionKind, StoreError, StoreReply, StoreRequest, StoredChannel, StoredMessage, TransferId,
    WallClock, check_relative_path, is_valid_channel_name, is_valid_username, sanitize_text,
    username_key,
};

use crate::sanitize::is_forbidden;

/// One fuzz case: engine limits, how the store answers, and the events.
#[derive(Arbitrary, Debug)]
pub struct Scenario {
    /// The engine's limits, mostly small so that every limit is reached.
    pub limits: Limits,
    /// Answer store requests as they come out (else they wait for `Answer` events).
    pub store_answers_at_once: bool,
    /// The events, in order.
    pub events: Vec<Event>,
}

/// `Config` fields, each mapped onto a range worth exploring.
#[derive(Arbitrary, Debug)]
pub struct Limits {
    max_line_bytes: u8,
    max_message_bytes: u8,
    max_queued_bytes: u16,
    flood: Option<(u8, u8)>,
    max_pending_lines: u8,
    login_timeout_ms: u16,
    max_login_failures_per_connection: u8,
    max_login_failures_per_account_and_address: u8,
    max_login_failures_per_address: u8,
    login_failure_window_ms: u16,
    max_tracked_login_failures: u8,
    min_password_bytes: u8,
    extra_password_bytes: u8,
    max_connections: u8,
    max_connections_per_address: u8,
    history_replay: u8,
    max_history: u8,
    demo_roles: bool,
    message_id_origin: u64,
    max_file_bytes: u16,
    max_transfers_per_user: u8,
    transfer_window_bytes: u16,
    transfer_chunk_bytes: u8,
    server_files: bool,
    wall_clock_unix_ms: Option<i64>,
    /// Cluster mode, as node `fuzz`: peers' payloads and the bus coming up are events.
    cluster: bool,
}

impl Limits {
    fn config(&self, start: Instant) -> Config {
        let min_password_bytes = usize::from(self.min_password_bytes % 16);
        Config {
            max_line_bytes: 16 + usize::from(self.max_line_bytes) * 16,
            max_message_bytes: 1 + usize::from(self.max_message_bytes) * 8,
            max_queued_bytes: 32 + usize::from(self.max_queued_bytes) * 16,
            flood_lines_per_second: self.flood.map_or(0, |(rate, _)| u32::from(rate % 50)),
            flood_burst: self.flood.map_or(20, |(_, burst)| u32::from(burst % 30)),
            max_pending_lines: 1 + usize::from(self.max_pending_lines),
            login_timeout: Duration::from_millis(u64::from(self.login_timeout_ms) * 16),
            max_login_failures_per_connection: u32::from(
                self.max_login_failures_per_connection % 8,
            ),
            max_login_failures_per_account_and_address: u32::from(
                self.max_login_failures_per_account_and_address % 8,
            ),
            max_login_failures_per_address: u32::from(self.max_login_failures_per_address % 16),
            login_failure_window: Duration::from_millis(
                u64::from(self.login_failure_window_ms) * 16,
            ),
            max_tracked_login_failures: usize::from(self.max_tracked_login_failures % 8),
            min_password_bytes,
            max_password_bytes: min_password_bytes + usize::from(self.extra_password_bytes),
            max_connections: 1 + usize::from(self.max_connections % 16),
            max_connections_per_address: 1 + usize::from(self.max_connections_per_address % 8),
            history_replay: usize::from(self.history_replay % 8),
            max_history: usize::from(self.max_history % 16),
            demo_roles: self.demo_roles,
            message_id_origin: self.message_id_origin,
            max_file_bytes: u64::from(self.max_file_bytes) * 2,
            max_transfers_per_user: usize::from(self.max_transfers_per_user % 4),
            transfer_window_bytes: usize::from(self.transfer_window_bytes),
            transfer_chunk_bytes: usize::from(self.transfer_chunk_bytes) * 64,
            server_files: self.server_files,
            wall_clock: self
                .wall_clock_unix_ms
                .map(|unix_ms| WallClock { at: start, unix_ms }),
            cluster: self.cluster.then(|| ClusterConfig::new(OWN_NODE)),
            ..Config::default()
        }
    }
}

/// One input to the engine (or to the driver's own state).
#[derive(Arbitrary, Debug)]
pub enum Event {
    /// A client connects from one of a few addresses.
    Connect { address: u8 },
    /// A client sends one line.
    Line {
        connection: u8,
        line: Line,
        crlf: bool,
    },
    /// A client sends one line in two reads, cut at `at`.
    SplitLine { connection: u8, line: Line, at: u8 },
    /// A client sends raw bytes.
    Bytes { connection: u8, bytes: Vec<u8> },
    /// A client sends `/send <to> <name> <size>` and the file right after it (in two reads,
    /// cut at `at`); `size` is the content's length unless `declared` says otherwise.
    Upload {
        connection: u8,
        to: Name,
        name: FileName,
        declared: Option<u16>,
        content: Vec<u8>,
        at: u16,
    },
    /// The peer closes.
    PeerClosed { connection: u8 },
    /// The driver wrote some of what is queued for a connection.
    Written { connection: u8, bytes: u16 },
    /// The client starts or stops reading (while it does not, bytes stay queued).
    ToggleReading { connection: u8 },
    /// The store answers one waiting request.
    Answer { request: u8, reply: Reply },
    /// The store answers every waiting request correctly, oldest first.
    AnswerAll,
    /// The store switches between answering at once and holding requests (file opens and
    /// reads too).
    ToggleStore,
    /// The driver answers one waiting server-side file open or read.
    FileAnswer { index: u8, answer: FileAnswer },
    /// A reply to a request id that was never issued or was answered already.
    StaleAnswer { id: u64, reply: Reply },
    /// Time passes.
    Advance { millis: u16 },
    /// A lot of time passes.
    AdvanceLong { seconds: u16 },
    /// Time passes to the engine's next timer, which fires.
    FireTimer,
    /// The server shuts down.
    Shutdown,
    /// The operator changed an account from the shell: a new role, or (`None`) a purge.
    AccountChanged { user: Name, role: Option<RoleName> },
    /// A ban or mute (or a lifted mute) read from the store's record of changes.
    Sanctioned { user: Name, change: SanctionChange },
    /// Cluster mode: the bus to the other nodes is up (again).
    BusConnected,
    /// Cluster mode: the bus to the other nodes is lost.
    BusDisconnected,
    /// Cluster mode: a payload from the bus.
    Published(PeerPayload),
}

/// This node's name in cluster mode.
const OWN_NODE: &str = "fuzz";
/// Node names peers publish under: two peers, this node's own, and no valid name.
const NODES: &[&str] = &["n1", "n2", OWN_NODE, "bad node"];

/// What another node publishes: any bytes, or a publication made of fuzzed parts.
#[derive(Arbitrary, Debug)]
pub enum PeerPayload {
    Raw(Vec<u8>),
    Publication {
        node: u8,
        inc: u8,
        seq: u8,
        /// For this node alone (else for all).
        to_me: bool,
        body: PeerBody,
    },
}

/// The body of a fuzzed publication.
#[derive(Arbitrary, Debug)]
pub enum PeerBody {
    Chat {
        channel: ChannelName,
        from: Name,
        text: Text,
    },
    Enter {
        session: u8,
        user: Name,
        channel: ChannelName,
        role: RoleName,
    },
    Exit {
        session: u8,
        announce: bool,
    },
    Alive,
    Hello,
    State {
        sessions: Vec<(u8, Name, ChannelName, RoleName)>,
    },
    Direct {
        sequence: u8,
        recipient: Name,
        from: Name,
        text: Text,
        /// Whether this node is among the nodes named.
        to_me: bool,
    },
    Delivered {
        sequence: u8,
        delivered: bool,
    },
    Kick {
        user: Name,
        by: Name,
        reason: Text,
        channels: Vec<ChannelName>,
    },
    Role {
        user: Name,
        role: RoleName,
        by: Name,
    },
    /// A file offered to a user of this node (as the peer's transfer `transfer`).
    FileOffer {
        transfer: u8,
        recipient: Name,
        from: Name,
        name: FileName,
        size: u16,
    },
    /// Bytes of the peer's transfer `transfer` (maybe out of place, maybe past credit).
    FileChunk {
        transfer: u8,
        offset: u16,
        data: Vec<u8>,
    },
    /// Credit for this node's transfer `transfer`.
    FileCredit {
        transfer: u8,
        upto: u32,
    },
    /// The peer's transfer `transfer` ended on the sender's side.
    FileAbort {
        transfer: u8,
        reason: Text,
    },
    /// This node's transfer `transfer` ended on the recipient's side.
    FileOutcome {
        transfer: u8,
        failure: Option<Text>,
    },
}

impl PeerPayload {
    /// The payload's bytes; `own_origin` is this node's message id origin (answers to
    /// its private messages carry its ids).
    fn render(&self, own_origin: u64) -> Vec<u8> {
        let (node, inc, seq, to_me, body) = match self {
            PeerPayload::Raw(bytes) => return bytes.clone(),
            PeerPayload::Publication {
                node,
                inc,
                seq,
                to_me,
                body,
            } => (node, inc, seq, to_me, body),
        };
        let channel = |c: &ChannelName| CHANNELS[usize::from(c.0) % CHANNELS.len()];
        let mut value = match body {
            PeerBody::Chat {
                channel: c,
                from,
                text,
            } => serde_json::json!({
                "type": "chat", "id": format!("{:016x}{:016x}", inc, seq),
                "channel": channel(c), "from": from.as_str(), "text": text.render(),
            }),
            PeerBody::Enter {
                session,
                user,
                channel: c,
                role,
            } => serde_json::json!({
                "type": "enter", "session": session, "user": user.as_str(), "channel": channel(c),
                "role": role.role().as_str(),
            }),
            PeerBody::Exit { session, announce } => {
                serde_json::json!({ "type": "exit", "session": session, "announce": announce })
            }
            PeerBody::Alive => serde_json::json!({ "type": "alive" }),
            PeerBody::Hello => serde_json::json!({ "type": "hello" }),
            PeerBody::State { sessions } => serde_json::json!({
                "type": "state",
                "sessions": sessions.iter().map(|(session, user, c, role)| serde_json::json!({
                    "session": session, "user": user.as_str(), "channel": channel(c),
                    "role": role.role().as_str(),
                })).collect::<Vec<_>>(),
            }),
            PeerBody::Direct {
                sequence,
                recipient,
                from,
                text,
                to_me,
            } => serde_json::json!({
                "type": "direct", "id": format!("{:016x}{:016x}", inc, sequence),
                "recipient": recipient.as_str(), "from": from.as_str(), "text": text.render(),
                "nodes": if *to_me { vec![OWN_NODE, "n2"] } else { vec!["n2"] },
            }),
            PeerBody::Delivered {
                sequence,
                delivered,
            } => serde_json::json!({
                // This node's own ids: it may be waiting for this answer.
                "type": "delivered", "id": format!("{:016x}{:016x}", own_origin, sequence),
                "delivered": delivered,
            }),
            PeerBody::Kick {
                user,
                by,
                reason,
                channels,
            } => serde_json::json!({
                "type": "kick", "user": user.as_str(), "by": by.as_str(),
                "reason": reason.render(),
                "channels": channels.iter().map(channel).collect::<Vec<_>>(),
            }),
            PeerBody::Role { user, role, by } => serde_json::json!({
                "type": "role", "user": user.as_str(), "role": role.role().as_str(),
                "by": by.as_str(),
            }),
            PeerBody::FileOffer {
                transfer,
                recipient,
                from,
                name,
                size,
            } => serde_json::json!({
                "type": "file_offer", "transfer": transfer, "recipient": recipient.as_str(),
                "from": from.as_str(), "name": name.as_str(), "size": size,
            }),
            PeerBody::FileChunk {
                transfer, offset, ..
            } => {
                serde_json::json!({ "type": "file_chunk", "transfer": transfer, "offset": offset })
            }
            PeerBody::FileCredit { transfer, upto } => {
                serde_json::json!({ "type": "file_credit", "transfer": transfer, "upto": upto })
            }
            PeerBody::FileAbort { transfer, reason } => serde_json::json!({
                "type": "file_abort", "transfer": transfer, "reason": reason.render(),
            }),
            PeerBody::FileOutcome { transfer, failure } => serde_json::json!({
                "type": "file_outcome", "transfer": transfer,
                "failure": failure.as_ref().map(Text::render),
            }),
        };
        if let Value::Object(fields) = &mut value {
            fields.insert("v".into(), Value::from(CLUSTER_PROTOCOL_VERSION));
            let node = NODES[usize::from(*node) % NODES.len()];
            fields.insert("node".into(), Value::from(node));
            fields.insert("inc".into(), Value::from(*inc));
            fields.insert("seq".into(), Value::from(*seq));
            if *to_me {
                fields.insert("to".into(), Value::from(OWN_NODE));
            }
        }
        let mut payload = value.to_string().into_bytes();
        if let PeerBody::FileChunk { data, .. } = body {
            // A chunk's bytes follow the envelope's line.
            payload.push(b'\n');
            payload.extend_from_slice(data);
        }
        payload
    }
}

/// How the store answers one request.
#[derive(Arbitrary, Debug)]
pub enum Reply {
    /// What a correct store would answer.
    Correct,
    /// A failure.
    Failed(Failure),
    /// `Done`, whatever was asked.
    Done,
    /// An account, whatever was asked.
    Account(RoleName),
    /// History, whatever was asked.
    History(Vec<(u64, Name, Text, i64)>),
    /// Pending private messages, whatever was asked.
    Pending(Vec<(u64, Name, Text, i64)>),
    /// Registered channels (name, owner, topic, private, invited), whatever was asked.
    Channels(Vec<(ChannelName, Option<Name>, Option<Text>, bool, Vec<Name>)>),
}

/// A sanction from elsewhere, as [`AccountChange`] carries it.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum SanctionChange {
    /// Banned, for this many seconds (`None`: until lifted).
    Banned(Option<u16>),
    /// Muted, for this many seconds (`None`: until lifted).
    Muted(Option<u16>),
    /// The mute was lifted.
    Unmuted,
}

/// A sanction of `user` as a store would give it, ending in `seconds` (`None`: until
/// lifted).
fn made_up_sanction(kind: SanctionKind, user: &str, seconds: Option<u16>) -> Sanction {
    Sanction {
        kind,
        username: user.to_string(),
        by: "mod".to_string(),
        reason: "fuzz\u{1b}[31m".to_string(),
        set_at_unix_ms: 60_000,
        expires: seconds.map(|s| Expiry {
            at_unix_ms: 60_000 + i64::from(s) * 1000,
            remaining: Duration::from_secs(u64::from(s)),
        }),
    }
}

/// How the driver answers an `OpenFile` or a `ReadFile`.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum FileAnswer {
    /// The file as it is.
    Correct,
    /// Open: not there. Read: an I/O error.
    NotFound,
    /// Open: refused (a symlink out, say). Read: an I/O error.
    NotAllowed,
    /// Open: an I/O error. Read: an I/O error.
    Io,
    /// Open: this size instead of the real one. Read: this many bytes (at most `max`, as
    /// the contract says; `0` is an empty read).
    Size(u16),
}

/// A store failure.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Failure {
    UsernameTaken,
    InvalidCredentials,
    UnknownUser,
    Busy,
    Unavailable,
    Banned,
    Outranked,
    NotSanctioned,
}

impl Failure {
    fn error(self) -> StoreError {
        match self {
            Failure::UsernameTaken => StoreError::UsernameTaken,
            Failure::InvalidCredentials => StoreError::InvalidCredentials,
            Failure::UnknownUser => StoreError::UnknownUser,
            Failure::Busy => StoreError::Busy,
            Failure::Unavailable => StoreError::Unavailable("database is down".into()),
            Failure::Banned => {
                StoreError::Banned(made_up_sanction(SanctionKind::Ban, "alice", Some(60)))
            }
            Failure::Outranked => StoreError::Outranked,
            Failure::NotSanctioned => StoreError::NotSanctioned,
        }
    }
}

/// A line a client might send: commands with names and texts drawn from small sets (so
/// that users meet, channels fill and roles matter), and free text.
#[derive(Arbitrary, Debug)]
pub enum Line {
    Register {
        user: Name,
        password: Secret,
    },
    Login {
        user: Name,
        password: Secret,
    },
    Yes,
    No,
    Username(Name),
    Password(Secret),
    Join(ChannelName),
    Say(Text),
    Msg {
        to: Name,
        text: Text,
    },
    Kick {
        user: Name,
        reason: Option<Text>,
    },
    ShowRole,
    SetRole {
        user: Name,
        role: RoleName,
    },
    /// `/ban` (or `/mute` when not `ban`), with a duration drawn from [`DURATIONS`].
    Sanction {
        ban: bool,
        user: Name,
        duration: Option<u8>,
        reason: Option<Text>,
    },
    /// `/unban` (or `/unmute`).
    Lift {
        ban: bool,
        user: Name,
    },
    Bans,
    History(Option<u8>),
    /// `/history [@user] [n] [before <id>]` (ids made of one byte: mostly unknown ones).
    HistoryPage {
        with: Option<Name>,
        count: Option<u8>,
        before: Option<u8>,
    },
    ChangePassword {
        old: Secret,
        new: Secret,
    },
    DeleteAccount(Secret),
    /// `/topic`, `/topic <text>`.
    Topic(Option<Text>),
    /// `/topic -`.
    ClearTopic,
    /// `/private on|off` (or a wrong word).
    Private(u8),
    Invite(Name),
    Names,
    Away(Option<Text>),
    Token,
    /// `/resume <user> <token>` with a token made of one byte (almost never a real one).
    Resume {
        user: Name,
        token: u8,
    },
    LogoutEverywhere,
    Ping(Text),
    List,
    Channels,
    Profile,
    Help,
    Close,
    SendFile {
        to: Name,
        path: FilePath,
    },
    Cancel(u8),
    Mode(u8),
    Other(String),
}

/// The password of the accounts the store starts with; it must never come back out.
pub const PASSWORD: &str = "pw!secret-1";
const PASSWORD_MARK: &[u8] = b"secret";

const NAMES: &[&str] = &[
    "alice",
    "bob",
    "admin",
    "mod",
    "Alice",
    "ADMIN",
    "carol.x",
    "dave_9",
    "two words",
    "émile",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];
const CHANNELS: &[&str] = &[
    "Global", "global", "rust", "RUST", "#ops", "DM", "history", "a/b", "",
];
const TEXTS: &[&str] = &[
    "hi",
    "hello   world",
    "/slash",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07x",
    "\u{202e}evil",
    "tab\there",
    "[Global] admin: fake",
    "You are in rust",
    "Switched from Global to rust",
    "Welcome back admin!",
    "\u{9b}2J",
    "  ",
];
/// Durations typed after `/ban` and `/mute`: valid, zero, too long, and words that are not
/// durations at all (taken as the reason's first word).
const DURATIONS: &[&str] = &[
    "1s",
    "10m",
    "2h",
    "7d",
    "2w",
    "forever",
    "0m",
    "3651d",
    "99999999999999999999w",
    "5x",
];

const SECRETS: &[&str] = &[PASSWORD, "short", "pass word", "Sixteen-bytes-pw"];

/// Server-side files: a path and its size (contents follow from the path).
const FILES: &[(&str, usize)] = &[
    ("notes.txt", 300),
    ("docs/readme.md", 5000),
    ("empty", 0),
    ("big.bin", 20_000),
    ("..hidden", 10),
];
/// Paths a user might ask for: the files, and some that must never be opened.
const PATHS: &[&str] = &[
    "notes.txt",
    "docs/readme.md",
    "empty",
    "big.bin",
    "..hidden",
    "missing.txt",
    "../etc/passwd",
    "/etc/passwd",
    "docs/../../x",
    "a\\b",
    "dir/",
    "./notes.txt",
];
/// Names of uploaded files (some invalid).
const FILE_NAMES: &[&str] = &[
    "photo.jpg",
    "résumé v2.pdf",
    "a/b",
    "..",
    "bad\u{202e}txt.exe",
    "",
];

/// The contents of server-side file `path`: text with multi-byte characters, or bytes
/// no terminal should see. Made once per process.
fn file_contents(path: &str) -> Option<&'static [u8]> {
    static CONTENTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let contents = CONTENTS.get_or_init(|| {
        FILES
            .iter()
            .map(|&(path, size)| {
                if path.ends_with(".bin") {
                    (0..size).map(|i| (i * 31 % 251) as u8).collect()
                } else {
                    "línea de texto ✓\n".bytes().cycle().take(size).collect()
                }
            })
            .collect()
    });
    let index = FILES.iter().position(|(p, _)| *p == path)?;
    Some(&contents[index])
}

/// A path given to `/send <user> <path>`.
#[derive(Arbitrary, Debug)]
pub enum FilePath {
    Known(u8),
    Free(String),
}

impl FilePath {
    fn render(&self) -> String {
        match self {
            FilePath::Known(i) => PATHS[usize::from(*i) % PATHS.len()].to_string(),
            FilePath::Free(path) => path.clone(),
        }
    }
}

/// The name of an uploaded file.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct FileName(u8);

impl FileName {
    fn as_str(self) -> &'static str {
        FILE_NAMES[usize::from(self.0) % FILE_NAMES.len()]
    }
}

/// A username (or not quite one).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Name(u8);

impl Name {
    fn as_str(self) -> &'static str {
        NAMES[usize::from(self.0) % NAMES.len()]
    }
}

/// A channel name (or not quite one).
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct ChannelName(u8);

/// A password.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Secret(u8);

/// A role name as typed.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct RoleName(u8);

impl RoleName {
    fn role(self) -> Role {
        match self.0 % 3 {
            0 => Role::User,
            1 => Role::Mod,
            _ => Role::Admin,
        }
    }

    fn typed(self) -> &'static str {
        ["user", "MOD", "admin", "moderator", "king"][usize::from(self.0) % 5]
    }
}

/// Message text: one of a few tricky ones, a long one, or anything.
#[derive(Arbitrary, Debug)]
pub enum Text {
    Known(u8),
    Long(u16),
    Free(String),
}

impl Text {
    fn render(&self) -> String {
        match self {
            Text::Known(i) => TEXTS[usize::from(*i) % TEXTS.len()].to_string(),
            Text::Long(n) => "x".repeat(usize::from(*n) % 5000),
            Text::Free(text) => text.clone(),
        }
    }
}

impl Line {
    /// The line's text without its line ending.
    fn render(&self) -> String {
        let secret = |s: &Secret| SECRETS[usize::from(s.0) % SECRETS.len()];
        match self {
            Line::Register { user, password } => {
                format!("/register {} {}", user.as_str(), secret(password))
            }
            Line::Login { user, password } => {
                format!("/login {} {}", user.as_str(), secret(password))
            }
            Line::Yes => "y".into(),
            Line::No => "n".into(),
            Line::Username(name) => name.as_str().into(),
            Line::Password(password) => secret(password).into(),
            Line::Join(channel) => {
                format!(
                    "/join {}",
                    CHANNELS[usize::from(channel.0) % CHANNELS.len()]
                )
            }
            Line::Say(text) => text.render(),
            Line::Msg { to, text } => format!("/msg {} {}", to.as_str(), text.render()),
            Line::Kick { user, reason } => match reason {
                Some(reason) => format!("/kick {} {}", user.as_str(), reason.render()),
                None => format!("/kick {}", user.as_str()),
            },
            Line::ShowRole => "/role".into(),
            Line::SetRole { user, role } => format!("/role {} {}", user.as_str(), role.typed()),
            Line::Sanction {
                ban,
                user,
                duration,
                reason,
            } => {
                let mut line = format!("/{} {}", if *ban { "ban" } else { "mute" }, user.as_str());
                if let Some(duration) = duration {
                    line.push(' ');
                    line.push_str(DURATIONS[usize::from(*duration) % DURATIONS.len()]);
                }
                if let Some(reason) = reason {
                    line.push(' ');
                    line.push_str(&reason.render());
                }
                line
            }
            Line::Lift { ban, user } => {
                format!(
                    "/{} {}",
                    if *ban { "unban" } else { "unmute" },
                    user.as_str()
                )
            }
            Line::Bans => "/bans".into(),
            Line::History(None) => "/history".into(),
            Line::History(Some(n)) => format!("/history {n}"),
            Line::HistoryPage {
                with,
                count,
                before,
            } => {
                let mut line = String::from("/history");
                if let Some(with) = with {
                    line.push_str(&format!(" @{}", with.as_str()));
                }
                if let Some(count) = count {
                    line.push_str(&format!(" {count}"));
                }
                if let Some(before) = before {
                    line.push_str(&format!(" before {before:032x}"));
                }
                line
            }
            Line::ChangePassword { old, new } => {
                format!("/password {} {}", secret(old), secret(new))
            }
            Line::DeleteAccount(password) => format!("/delete-account {}", secret(password)),
            Line::Topic(None) => "/topic".into(),
            Line::Topic(Some(text)) => format!("/topic {}", text.render()),
            Line::ClearTopic => "/topic -".into(),
            Line::Private(word) => format!(
                "/private {}",
                ["on", "off", "ON", "maybe"][usize::from(*word) % 4]
            ),
            Line::Invite(user) => format!("/invite {}", user.as_str()),
            Line::Names => "/names".into(),
            Line::Away(None) => "/away".into(),
            Line::Away(Some(text)) => format!("/away {}", text.render()),
            Line::Token => "/token".into(),
            Line::Resume { user, token } => format!("/resume {} {token:032x}", user.as_str()),
            Line::LogoutEverywhere => "/logout-everywhere".into(),
            Line::Ping(text) => format!("/ping {}", text.render()),
            Line::List => "/list".into(),
            Line::Channels => "/channels".into(),
            Line::Profile => "/profile".into(),
            Line::Help => "/help".into(),
            Line::Close => "/close".into(),
            Line::SendFile { to, path } => format!("/send {} {}", to.as_str(), path.render()),
            Line::Cancel(id) => format!("/cancel {id}"),
            Line::Mode(mode) => format!(
                "/mode {}",
                ["json", "text", "JSON", "xml"][usize::from(*mode) % 4]
            ),
            Line::Other(text) => text.clone(),
        }
    }

    /// Whether the line carries a password in a place the engine must keep secret
    /// (a one-line login or registration: never echoed, whatever the session's state).
    fn hides_its_password(&self) -> bool {
        matches!(
            self,
            Line::Register { .. }
                | Line::Login { .. }
                | Line::ChangePassword { .. }
                | Line::DeleteAccount(_)
                | Line::Resume { .. }
        )
    }
}

/// The engine's in-memory store, with three accounts (an admin, a moderator and a user)
/// and messages stamped a minute apart.
fn store_with_staff() -> MemoryStore {
    let mut store = MemoryStore::new();
    store.set_clock(60_000, 60_000);
    for (name, role) in [
        ("admin", Role::Admin),
        ("mod", Role::Mod),
        ("alice", Role::User),
    ] {
        store.add_account(name, PASSWORD, role);
    }
    store
}

/// The reply `reply` asks for to `request`: the store's own when it is `Correct`.
fn reply(store: &mut MemoryStore, request: &StoreRequest, reply: &Reply) -> StoreReply {
    match reply {
        Reply::Correct => store.answer(request),
        Reply::Failed(failure) => StoreReply::Failed(failure.error()),
        Reply::Done => StoreReply::Done,
        Reply::Account(role) => {
            // A name the engine validated, so the reply could have come from a store.
            let username = match request {
                StoreRequest::Register { username, .. }
                | StoreRequest::Login { username, .. }
                | StoreRequest::SetRole { username, .. }
                | StoreRequest::FetchPending { username } => username.clone(),
                _ => "alice".to_string(),
            };
            StoreReply::Account {
                username,
                role: role.role(),
                mute: None,
            }
        }
        Reply::History(messages) => {
            StoreReply::History(stored(messages, |id, sender, text, sent_at_unix_ms| {
                StoredMessage {
                    id,
                    sender,
                    text,
                    sent_at_unix_ms,
                }
            }))
        }
        Reply::Pending(messages) => {
            StoreReply::Pending(stored(messages, |id, sender, text, sent_at_unix_ms| {
                PendingMessage {
                    id,
                    sender,
                    text,
                    sent_at_unix_ms,
                }
            }))
        }
        Reply::Channels(channels) => StoreReply::Channels(
            channels
                .iter()
                .map(|(name, owner, topic, private, invited)| StoredChannel {
                    name: CHANNELS[usize::from(name.0) % CHANNELS.len()].to_string(),
                    owner: owner.map(|owner| owner.as_str().to_string()),
                    topic: topic.as_ref().map(Text::render),
                    private: *private,
                    invited: invited.iter().map(|u| u.as_str().to_string()).collect(),
                })
                .collect(),
        ),
    }
}

/// Messages of a made-up store reply, built by `message` from id, sender, text and time.
fn stored<T>(
    messages: &[(u64, Name, Text, i64)],
    message: impl Fn(MessageId, String, String, i64) -> T,
) -> Vec<T> {
    messages
        .iter()
        .map(|(sequence, sender, text, at)| {
            let id = MessageId {
                origin: 7,
                sequence: *sequence,
            };
            message(id, sender.as_str().to_string(), text.render(), *at)
        })
        .collect()
}

/// What the model knows of one connection, from what it was sent.
#[derive(Debug, Default)]
struct Client {
    open: bool,
    /// Bytes handed out and not yet reported written.
    queued: usize,
    /// Whether the client reads (the driver reports writes as soon as bytes come out).
    not_reading: bool,
    /// The last bytes it sent did not end a line: the next line continues it.
    mid_line: bool,
    /// It sent a `/send` whose contents may not have ended where this driver thinks:
    /// later lines may be file contents, shown to another user.
    may_be_uploading: bool,
    /// Everything it sent (uploads are checked against it).
    sent: Vec<u8>,
    paused: bool,
    /// Account key, from the welcome line.
    account: Option<String>,
    /// Current channel's display name, from "You are in" and "Switched from".
    channel: Option<String>,
}

/// A server-side file as the driver sees it.
#[derive(Debug)]
struct OpenedFile {
    path: String,
    /// The open was answered with a size.
    opened: bool,
    /// A read is out (its `max`).
    reading: Option<usize>,
    closed: bool,
    /// Bytes handed to the engine so far.
    offset: usize,
}

/// Work for the driver's file side.
#[derive(Debug, Clone, Copy)]
enum FileWork {
    Open,
    Read(usize),
}

/// A transfer as its two clients were told of it.
#[derive(Debug, Default)]
struct SeenTransfer {
    sender: Option<ConnectionId>,
    recipient: Option<ConnectionId>,
    size: Option<u64>,
    received: Vec<u8>,
}

/// The driver: engine, store, clock and the model.
struct Harness {
    engine: Engine,
    config: Config,
    store: MemoryStore,
    now: Instant,
    next_port: u16,
    /// Every connection ever opened, in order (events pick from it by index).
    ids: Vec<ConnectionId>,
    clients: BTreeMap<ConnectionId, Client>,
    issued: BTreeSet<RequestId>,
    answered: Vec<RequestId>,
    /// Server-side files the engine asked for, by transfer.
    files: BTreeMap<TransferId, OpenedFile>,
    /// File opens and reads waiting for the driver, oldest first.
    held_files: Vec<(TransferId, FileWork)>,
    /// Transfers as the clients saw them, by the id shown to them.
    transfers: BTreeMap<u64, SeenTransfer>,
    /// A line or raw bytes that may carry the password in the clear were sent: a chat
    /// line with it may legitimately come back, so the secrecy check is off.
    password_sent_in_clear: bool,
    shut_down: bool,
    /// What happened so far, printed when a check fails.
    trace: Vec<String>,
}

/// Runs one scenario, panicking at the first broken invariant.
pub fn run(scenario: &Scenario) {
    run_traced(scenario);
}

/// Runs one scenario like [`run`], and returns what happened: every event, output and
/// store answer, one per line (to see what a corpus file does).
pub fn run_traced(scenario: &Scenario) -> Vec<String> {
    let now = Instant::now();
    let config = scenario.limits.config(now);
    let mut store = store_with_staff();
    store.set_holding(!scenario.store_answers_at_once);
    let mut harness = Harness {
        engine: Engine::new(config.clone()),
        config,
        store,
        now,
        next_port: 1000,
        ids: Vec::new(),
        clients: BTreeMap::new(),
        issued: BTreeSet::new(),
        answered: Vec::new(),
        files: BTreeMap::new(),
        held_files: Vec::new(),
        transfers: BTreeMap::new(),
        password_sent_in_clear: false,
        shut_down: false,
        trace: Vec::new(),
    };
    for event in &scenario.events {
        harness.step(event);
        harness.drain();
        harness.check_state();
    }
    harness.trace
}

impl Harness {
    fn pick(&self, index: u8) -> Option<ConnectionId> {
        if self.ids.is_empty() {
            return None;
        }
        Some(self.ids[usize::from(index) % self.ids.len()])
    }

    fn fail(&self, what: std::fmt::Arguments<'_>) -> ! {
        let start = self.trace.len().saturating_sub(40);
        panic!(
            "invariant broken: {what}\nconfig: {:?}\nlast events and outputs:\n  {}",
            self.config,
            self.trace[start..].join("\n  ")
        );
    }

    fn step(&mut self, event: &Event) {
        self.trace.push(format!("> {event:?}"));
        match event {
            Event::Connect { address } => {
                let ip = match address % 5 {
                    4 => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    n => IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)),
                };
                self.next_port = self.next_port.wrapping_add(1);
                let peer = SocketAddr::new(ip, self.next_port);
                let id = self.engine.handle_connect(peer, self.now);
                if self.clients.contains_key(&id) {
                    self.fail(format_args!("connection id {id} handed out twice"));
                }
                self.trace.push(format!("  = {id}"));
                self.ids.push(id);
                self.clients.insert(
                    id,
                    Client {
                        open: true,
                        ..Client::default()
                    },
                );
            }
            Event::Line {
                connection,
                line,
                crlf,
            } => {
                let Some(id) = self.pick(*connection) else {
                    return;
                };
                let mut text = line.render();
                self.note_password(id, line, text.as_bytes());
                text.push_str(if *crlf { "\r\n" } else { "\n" });
                self.receive(id, text.as_bytes());
            }
            Event::SplitLine {
                connection,
                line,
                at,
            } => {
                let Some(id) = self.pick(*connection) else {
                    return;
                };
                let mut text = line.render().into_bytes();
                self.note_password(id, line, &text);
                text.push(b'\n');
                let (first, second) = text.split_at(usize::from(*at).min(text.len()));
                self.receive(id, first);
                self.drain();
                self.receive(id, second);
            }
            Event::Bytes { connection, bytes } => {
                let Some(id) = self.pick(*connection) else {
                    return;
                };
                if may_carry_password(bytes) {
                    self.password_sent_in_clear = true;
                }
                self.receive(id, bytes);
            }
            Event::Upload {
                connection,
                to,
                name,
                declared,
                content,
                at,
            } => {
                let Some(id) = self.pick(*connection) else {
                    return;
                };
                let size = declared.map_or(content.len(), usize::from);
                let mut bytes =
                    format!("/send {} {} {size}\n", to.as_str(), name.as_str()).into_bytes();
                if self.clients.get(&id).is_some_and(|c| c.mid_line) || may_carry_password(content)
                {
                    self.password_sent_in_clear = true;
                }
                let exact =
                    declared.is_none() && !self.clients.get(&id).is_some_and(|c| c.mid_line);
                bytes.extend_from_slice(content);
                let (first, second) = bytes.split_at(usize::from(*at).min(bytes.len()));
                self.receive(id, first);
                self.drain();
                self.receive(id, second);
                if let Some(client) = self.clients.get_mut(&id) {
                    client.may_be_uploading |= !exact || may_upload(content);
                }
            }
            Event::FileAnswer { index, answer } => {
                if self.held_files.is_empty() {
                    return;
                }
                let index = usize::from(*index) % self.held_files.len();
                let (transfer, work) = self.held_files.remove(index);
                self.answer_file(transfer, work, *answer);
            }
            Event::PeerClosed { connection } => {
                let Some(id) = self.pick(*connection) else {
                    return;
                };
                if let Some(client) = self.clients.get_mut(&id) {
                    client.open = false;
                    client.channel = None;
                }
                self.engine.handle_peer_closed(id, self.now);
            }
            Event::Written { connection, bytes } => {
                let Some(id) = self.pick(*connection) else {
                    return;
                };
                let bytes = usize::from(*bytes);
                if let Some(client) = self.clients.get_mut(&id).filter(|c| c.open) {
                    client.queued = client.queued.saturating_sub(bytes);
                }
                self.engine.handle_written(id, bytes, self.now);
            }
            Event::ToggleReading { connection } => {
                let Some(id) = self.pick(*connection) else {
                    return;
                };
                let Some(client) = self.clients.get_mut(&id) else {
                    return;
                };
                client.not_reading = !client.not_reading;
                if !client.not_reading && client.open {
                    let queued = std::mem::take(&mut client.queued);
                    self.engine.handle_written(id, queued, self.now);
                }
            }
            Event::Answer {
                request,
                reply: how,
            } => {
                let waiting = self.store.waiting();
                if waiting == 0 {
                    return;
                }
                let Some((id, request)) = self.store.take_held(usize::from(*request) % waiting)
                else {
                    return;
                };
                let reply = reply(&mut self.store, &request, how);
                self.note_reply(&reply);
                self.answer(id, reply);
            }
            Event::AnswerAll => {
                // Those held now, oldest first; requests this sends are held behind them.
                for _ in 0..self.store.waiting() {
                    if let Some((id, reply)) = self.store.release(0) {
                        self.answer(id, reply);
                        self.drain();
                    }
                }
            }
            Event::ToggleStore => self.store.set_holding(!self.store.is_holding()),
            Event::StaleAnswer { id, reply: how } => {
                let id = match self.answered.len() {
                    0 => RequestId(*id),
                    n => {
                        let index = usize::try_from(*id % n as u64).unwrap_or(0);
                        self.answered[index]
                    }
                };
                if self.store.holds(id) {
                    return;
                }
                let dummy = StoreRequest::FetchPending {
                    username: "alice".into(),
                };
                let reply = reply(&mut self.store, &dummy, how);
                self.note_reply(&reply);
                self.trace.push(format!("  stale answer {id}: {reply:?}"));
                self.engine.handle_store_reply(id, reply, self.now);
            }
            Event::Advance { millis } => {
                self.advance(Duration::from_millis(u64::from(*millis)));
            }
            Event::AdvanceLong { seconds } => {
                self.advance(Duration::from_secs(u64::from(*seconds) * 60));
            }
            Event::FireTimer => {
                if let Some(at) = self.engine.poll_timeout() {
                    self.now = self.now.max(at);
                    self.engine.handle_timeout(self.now);
                }
            }
            Event::Shutdown => {
                self.shut_down = true;
                self.engine.handle_shutdown(self.now);
            }
            Event::AccountChanged { user, role } => {
                let change = match role {
                    Some(role) => AccountChange::Role(role.role()),
                    None => AccountChange::Purged,
                };
                self.engine
                    .handle_account_changed(user.as_str(), change, self.now);
            }
            Event::Sanctioned { user, change } => {
                let user = user.as_str();
                let change = match *change {
                    SanctionChange::Banned(seconds) => {
                        AccountChange::Banned(made_up_sanction(SanctionKind::Ban, user, seconds))
                    }
                    SanctionChange::Muted(seconds) => {
                        AccountChange::Muted(made_up_sanction(SanctionKind::Mute, user, seconds))
                    }
                    SanctionChange::Unmuted => AccountChange::Unmuted,
                };
                self.engine.handle_account_changed(user, change, self.now);
            }
            Event::BusConnected => self.engine.handle_bus_connected(self.now),
            Event::BusDisconnected => self.engine.handle_bus_disconnected(self.now),
            Event::Published(payload) => {
                let payload = payload.render(self.config.message_id_origin);
                self.engine.handle_published(&payload, self.now);
            }
        }
    }

    fn receive(&mut self, id: ConnectionId, bytes: &[u8]) {
        if let (Some(client), Some(&last)) = (self.clients.get_mut(&id), bytes.last()) {
            client.mid_line = last != b'\n';
            client.may_be_uploading |= may_upload(bytes);
            client.sent.extend_from_slice(bytes);
        }
        self.engine.handle_received(id, bytes, self.now);
    }

    /// A line that is not a one-line login, or that continues what the client sent
    /// before (so it is part of a longer line, chat text perhaps), or that may be the
    /// contents of a file, may show its password.
    fn note_password(&mut self, id: ConnectionId, line: &Line, text: &[u8]) {
        let mid_line = self
            .clients
            .get(&id)
            .is_some_and(|c| c.mid_line || c.may_be_uploading);
        if (mid_line || !line.hides_its_password()) && may_carry_password(text) {
            self.password_sent_in_clear = true;
        }
    }

    /// Texts in store replies are replayed to users: one with the password in it turns the
    /// secrecy check off like a chat line would.
    fn note_reply(&mut self, reply: &StoreReply) {
        let texts: Vec<&str> = match reply {
            StoreReply::History(messages) => messages.iter().map(|m| m.text.as_str()).collect(),
            StoreReply::Pending(messages) => messages.iter().map(|m| m.text.as_str()).collect(),
            StoreReply::Channels(channels) => {
                channels.iter().filter_map(|c| c.topic.as_deref()).collect()
            }
            _ => Vec::new(),
        };
        if texts.iter().any(|t| may_carry_password(t.as_bytes())) {
            self.password_sent_in_clear = true;
        }
    }

    fn advance(&mut self, by: Duration) {
        if let Some(later) = self.now.checked_add(by) {
            self.now = later;
        }
        self.engine.handle_timeout(self.now);
    }

    /// The driver's answer to an `OpenFile` or a `ReadFile`, from the file's real contents
    /// or as `answer` says.
    fn answer_file(&mut self, transfer: TransferId, work: FileWork, answer: FileAnswer) {
        let Some(file) = self.files.get_mut(&transfer) else {
            return;
        };
        let contents = file_contents(&file.path).unwrap_or_default();
        let exists = file_contents(&file.path).is_some();
        match work {
            FileWork::Open => {
                let result = match answer {
                    FileAnswer::Correct if exists => Ok(contents.len() as u64),
                    FileAnswer::Correct | FileAnswer::NotFound => Err(FileError::NotFound),
                    FileAnswer::NotAllowed => Err(FileError::NotAllowed),
                    FileAnswer::Io => Err(FileError::Io("disk on fire".into())),
                    FileAnswer::Size(size) => Ok(u64::from(size)),
                };
                file.opened |= result.is_ok();
                self.trace
                    .push(format!("  file {transfer} opened: {result:?}"));
                self.engine.handle_file_opened(transfer, result, self.now);
            }
            FileWork::Read(max) => {
                if file.reading == Some(max) {
                    file.reading = None;
                }
                let rest = contents.get(file.offset..).unwrap_or_default();
                let len = match answer {
                    FileAnswer::Correct => rest.len().min(max),
                    FileAnswer::Size(n) => usize::from(n).min(max).min(rest.len()),
                    FileAnswer::NotFound | FileAnswer::NotAllowed | FileAnswer::Io => {
                        self.trace.push(format!("  file {transfer} read failed"));
                        let error = FileError::Io("read error".into());
                        self.engine.handle_file_failed(transfer, error, self.now);
                        return;
                    }
                };
                file.offset += len;
                self.trace
                    .push(format!("  file {transfer} read {len} of {max} bytes"));
                self.engine
                    .handle_file_data(transfer, &rest[..len], self.now);
            }
        }
    }

    fn answer(&mut self, id: RequestId, reply: StoreReply) {
        self.trace.push(format!("  answer {id}: {reply:?}"));
        self.answered.push(id);
        self.engine.handle_store_reply(id, reply, self.now);
    }

    /// Takes every output, checking each against the model.
    fn drain(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Transmit { connection, data } => {
                    self.trace
                        .push(format!("  < {connection}: {}", shown(&data)));
                    self.delivered(connection, &data);
                }
                Output::Broadcast { recipients, data } => {
                    self.trace
                        .push(format!("  < {recipients:?}: {}", shown(&data)));
                    if recipients.is_empty() {
                        self.fail(format_args!("broadcast to nobody"));
                    }
                    let unique: BTreeSet<_> = recipients.iter().collect();
                    if unique.len() != recipients.len() {
                        self.fail(format_args!("a recipient twice in {recipients:?}"));
                    }
                    for connection in recipients {
                        self.delivered(connection, &data);
                    }
                }
                Output::Close {
                    connection,
                    reason,
                    flush,
                } => {
                    self.trace
                        .push(format!("  close {connection}: {reason} flush={flush}"));
                    self.expect_open(connection, "Close");
                    if reason == CloseReason::SlowReader && flush {
                        self.fail(format_args!(
                            "slow reader {connection} closed with its queue flushed"
                        ));
                    }
                    if let Some(client) = self.clients.get_mut(&connection) {
                        client.open = false;
                        client.channel = None;
                    }
                }
                Output::PauseReading(connection) => {
                    self.trace.push(format!("  pause {connection}"));
                    self.expect_open(connection, "PauseReading");
                    if let Some(client) = self.clients.get_mut(&connection) {
                        if client.paused {
                            self.fail(format_args!("{connection} paused twice"));
                        }
                        client.paused = true;
                    }
                }
                Output::ResumeReading(connection) => {
                    self.trace.push(format!("  resume {connection}"));
                    self.expect_open(connection, "ResumeReading");
                    if let Some(client) = self.clients.get_mut(&connection) {
                        if !client.paused {
                            self.fail(format_args!("{connection} resumed while not paused"));
                        }
                        client.paused = false;
                    }
                }
                Output::Store { id, request } => {
                    self.trace.push(format!("  store {id}: {request:?}"));
                    if !self.issued.insert(id) {
                        self.fail(format_args!("store request id {id} issued twice"));
                    }
                    self.check_request(&request);
                    if let Some(reply) = self.store.submit(id, *request) {
                        self.answer(id, reply);
                    }
                }
                Output::OpenFile { transfer, path } => {
                    self.trace.push(format!("  open file {transfer}: {path:?}"));
                    if !self.config.server_files || check_relative_path(&path).is_err() {
                        self.fail(format_args!("asked to open {path:?}"));
                    }
                    let file = OpenedFile {
                        path,
                        opened: false,
                        reading: None,
                        closed: false,
                        offset: 0,
                    };
                    if self.files.insert(transfer, file).is_some() {
                        self.fail(format_args!("file of transfer {transfer} opened twice"));
                    }
                    self.file_work(transfer, FileWork::Open);
                }
                Output::ReadFile { transfer, max } => {
                    self.trace.push(format!("  read file {transfer}: {max}"));
                    let Some(file) = self.files.get_mut(&transfer) else {
                        self.fail(format_args!("read of never-opened transfer {transfer}"));
                    };
                    if !file.opened || file.closed || file.reading.is_some() || max == 0 {
                        let file = format!("{file:?}");
                        self.fail(format_args!("read of {max} bytes from {file}"));
                    }
                    file.reading = Some(max);
                    self.file_work(transfer, FileWork::Read(max));
                }
                Output::CloseFile { transfer } => {
                    self.trace.push(format!("  close file {transfer}"));
                    match self.files.get_mut(&transfer) {
                        Some(file) if !file.closed => {
                            file.closed = true;
                            file.reading = None;
                        }
                        other => {
                            let other = format!("{other:?}");
                            self.fail(format_args!("close of file {transfer}: {other}"));
                        }
                    }
                }
                Output::Publish { topic, payload } => {
                    self.trace.push(format!("  publish to {topic:?}"));
                    if self.config.cluster.is_none() {
                        self.fail(format_args!("published to {topic:?} without a cluster"));
                    }
                    let version = serde_json::from_slice::<Value>(&payload)
                        .ok()
                        .and_then(|value| value.get("v").and_then(Value::as_u64));
                    if version != Some(u64::from(CLUSTER_PROTOCOL_VERSION)) {
                        self.fail(format_args!("a publication that is not one: {payload:?}"));
                    }
                }
            }
        }
    }

    fn file_work(&mut self, transfer: TransferId, work: FileWork) {
        if !self.store.is_holding() {
            self.answer_file(transfer, work, FileAnswer::Correct);
        } else {
            self.held_files.push((transfer, work));
        }
    }

    fn expect_open(&self, connection: ConnectionId, what: &str) {
        match self.clients.get(&connection) {
            None => self.fail(format_args!("{what} for never-opened {connection}")),
            Some(client) if !client.open => {
                self.fail(format_args!("{what} for closed {connection}"))
            }
            Some(_) => {}
        }
    }

    /// `data` was handed out for `connection`.
    fn delivered(&mut self, connection: ConnectionId, data: &[u8]) {
        self.expect_open(connection, "bytes");
        if data.last() != Some(&b'\n') {
            self.fail(format_args!("output that is not whole lines: {data:?}"));
        }
        if !self.password_sent_in_clear && contains(data, PASSWORD_MARK) {
            let text = String::from_utf8_lossy(data);
            self.fail(format_args!("a password came back out: {text:?}"));
        }
        if let Some((id, payload)) = self.text_chunk(data) {
            self.chunk(connection, id, &payload);
        } else {
            let Ok(text) = std::str::from_utf8(data) else {
                self.fail(format_args!("output that is not UTF-8: {data:?}"));
            };
            for line in text.lines() {
                if line.starts_with('{') {
                    self.json_line(connection, line);
                } else {
                    if let Some(bad) = line.chars().find(|&c| is_forbidden(c)) {
                        self.fail(format_args!("{bad:?} in server line {line:?}"));
                    }
                    self.text_line(connection, line);
                }
            }
        }
        let Some(client) = self.clients.get_mut(&connection) else {
            return;
        };
        if client.not_reading {
            client.queued += data.len();
        } else {
            self.engine.handle_written(connection, data.len(), self.now);
        }
    }

    /// A text-mode piece of a file: `[file <id> data <n>]`, a line break, the `n` bytes
    /// (terminal-safe text) and a line break; or `base64` and one line of base64.
    fn text_chunk(&self, data: &[u8]) -> Option<(u64, Vec<u8>)> {
        let rest = data.strip_prefix(b"[file ")?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        let header = std::str::from_utf8(&rest[..end]).ok()?.strip_suffix(']')?;
        let mut words = header.split(' ');
        let (id, kind, len) = (words.next()?, words.next()?, words.next()?);
        if words.next().is_some() || !matches!(kind, "data" | "base64") {
            return None;
        }
        let (id, len) = (id.parse::<u64>().ok()?, len.parse::<usize>().ok()?);
        let body = &rest[end + 1..data.len() - "[file ".len() - 1];
        let payload = if kind == "data" {
            let text = match std::str::from_utf8(body) {
                Ok(text) => text,
                Err(e) if e.error_len().is_none() => {
                    std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default()
                }
                Err(_) => self.fail(format_args!("file data that is not text: {body:?}")),
            };
            if let Some(bad) = text
                .chars()
                .find(|&c| is_forbidden(c) && !matches!(c, '\n' | '\r' | '\t'))
            {
                self.fail(format_args!("{bad:?} in file data shown as text"));
            }
            body.to_vec()
        } else {
            match decode_base64(body) {
                Some(decoded) => decoded,
                None => self.fail(format_args!("bad base64 in a file chunk: {body:?}")),
            }
        };
        if payload.len() != len {
            self.fail(format_args!(
                "file chunk says {len} bytes, carries {}",
                payload.len()
            ));
        }
        Some((id, payload))
    }

    /// A piece of file `id` reached `connection`.
    fn chunk(&mut self, connection: ConnectionId, id: u64, payload: &[u8]) {
        let seen = self.transfers.entry(id).or_default();
        if seen.recipient != Some(connection) {
            let seen = format!("{seen:?}");
            self.fail(format_args!(
                "file {id} data reached {connection}, not its recipient: {seen}"
            ));
        }
        seen.received.extend_from_slice(payload);
        if seen
            .size
            .is_none_or(|size| seen.received.len() as u64 > size)
        {
            let seen = format!("{seen:?}");
            self.fail(format_args!("file {id}: more data than announced: {seen}"));
        }
    }

    /// Transfer `id` was announced to `connection`: as its recipient, or its sender.
    fn announced(&mut self, connection: ConnectionId, id: u64, size: u64, recipient: bool) {
        let seen = self.transfers.entry(id).or_default();
        let side = if recipient {
            &mut seen.recipient
        } else {
            &mut seen.sender
        };
        if side.is_some() || seen.size.is_some_and(|s| s != size) {
            let seen = format!("{seen:?}");
            self.fail(format_args!("file {id} announced again: {seen}"));
        }
        *side = Some(connection);
        seen.size = Some(size);
    }

    /// The recipient was told transfer `id` is complete: it has every byte, as sent.
    fn completed(&mut self, connection: ConnectionId, id: u64) {
        let Some(seen) = self.transfers.remove(&id) else {
            self.fail(format_args!("unknown file {id} completed"));
        };
        if seen.recipient != Some(connection) || seen.size != Some(seen.received.len() as u64) {
            self.fail(format_args!("file {id} completed early: {seen:?}"));
        }
        let file = self
            .files
            .get(&TransferId(id))
            .and_then(|f| file_contents(&f.path));
        let exact = match (file, seen.sender) {
            // A server-side file: its first `size` bytes (a driver may claim a smaller size).
            (Some(contents), _) => contents.get(..seen.received.len()) == Some(&seen.received[..]),
            // An upload: bytes its sender sent, in order.
            (None, Some(sender)) => {
                let sent = self.clients.get(&sender).map(|c| &c.sent[..]);
                seen.received.is_empty()
                    || sent.is_some_and(|sent| {
                        sent.windows(seen.received.len())
                            .any(|w| w == &seen.received[..])
                    })
            }
            (None, None) => true,
        };
        if !exact {
            self.fail(format_args!("file {id} arrived changed: {seen:?}"));
        }
    }

    /// A JSON-mode line: one object with a `type`, clean strings, and what it tells.
    fn json_line(&mut self, connection: ConnectionId, line: &str) {
        let value: Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(e) => self.fail(format_args!("bad JSON line {line:?}: {e}")),
        };
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            self.fail(format_args!("JSON line without a type: {line:?}"));
        };
        if let Some(bad) = first_forbidden(&value) {
            self.fail(format_args!("{bad:?} in JSON line {line:?}"));
        }
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
        let number = |key: &str| value.get(key).and_then(Value::as_u64);
        match kind {
            "channel" => self.entered(connection, None, text("channel")),
            "switched" => self.entered(connection, text("from"), text("to")),
            "welcome" => self.welcomed(connection, text("user")),
            "message" => self.chat_line(connection, text("channel").as_deref(), line),
            "file_offer" | "file_sending" | "file_chunk" | "file_done" | "file_cancelled" => {
                let Some(id) = number("id") else {
                    self.fail(format_args!("file line without an id: {line:?}"));
                };
                match kind {
                    "file_offer" => {
                        self.announced(connection, id, number("size").unwrap_or(0), true)
                    }
                    "file_sending" => {
                        self.announced(connection, id, number("size").unwrap_or(0), false);
                    }
                    "file_chunk" => {
                        let data = text("data").unwrap_or_default();
                        match decode_base64(data.as_bytes()) {
                            Some(payload) => self.chunk(connection, id, &payload),
                            None => self.fail(format_args!("bad base64 in {line:?}")),
                        }
                    }
                    "file_done" if value.get("from").is_some() => self.completed(connection, id),
                    "file_cancelled" => {
                        self.transfers.remove(&id);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// A text-mode line, and what it tells.
    fn text_line(&mut self, connection: ConnectionId, line: &str) {
        if let Some(channel) = line.strip_prefix("You are in ") {
            return self.entered(connection, None, Some(channel.to_string()));
        }
        if let Some(rest) = line.strip_prefix("Switched from ")
            && let Some((from, to)) = rest.rsplit_once(" to ")
        {
            return self.entered(connection, Some(from.to_string()), Some(to.to_string()));
        }
        let welcome = line
            .strip_prefix("Welcome back ")
            .or_else(|| line.strip_prefix("Welcome "))
            .and_then(|rest| rest.strip_suffix('!'))
            .filter(|name| is_valid_username(name));
        if let Some(name) = welcome {
            return self.welcomed(connection, Some(name.to_string()));
        }
        if let Some(rest) = line.strip_prefix("[file ") {
            return self.text_file_line(connection, rest);
        }
        // `[<channel>] <user>: <text>`; `[DM] ...` is a private message, so a channel
        // called `DM` goes unchecked.
        if let Some(rest) = line.strip_prefix('[')
            && let Some((channel, rest)) = rest.split_once("] ")
            && is_valid_channel_name(channel)
            && channel != "DM"
            && let Some((user, _)) = rest.split_once(": ")
            && is_valid_username(user)
        {
            self.chat_line(connection, Some(channel), line);
        }
    }

    /// `[file <id>] <from> is sending <name> (<size> bytes)`, `[file <id>] sending <name>
    /// (<size> bytes) to <to>`, `[file <id> done] <name> (<size> bytes) from <from>` and
    /// `[file <id> cancelled] <reason>` (after `[file `).
    fn text_file_line(&mut self, connection: ConnectionId, rest: &str) {
        let Some((head, rest)) = rest.split_once("] ") else {
            return;
        };
        let size_before = |text: &str, tail: &str| -> Option<u64> {
            let (left, _) = text.rsplit_once(tail)?;
            left.rsplit_once(" (")?.1.parse().ok()
        };
        let mut words = head.split(' ');
        let (Some(Ok(id)), state) = (words.next().map(str::parse::<u64>), words.next()) else {
            return;
        };
        match state {
            None if rest.starts_with("sending ") && rest.contains(" bytes) to ") => {
                let size = size_before(rest, " bytes) to ").unwrap_or(0);
                self.announced(connection, id, size, false);
            }
            None => {
                let size = size_before(rest, " bytes)").unwrap_or(0);
                self.announced(connection, id, size, true);
            }
            Some("done") if rest.contains(" bytes) from ") => self.completed(connection, id),
            Some("cancelled") => {
                self.transfers.remove(&id);
            }
            _ => {}
        }
    }

    /// `connection` is now in channel `to` (coming from `from`, if it says).
    fn entered(&mut self, connection: ConnectionId, from: Option<String>, to: Option<String>) {
        let Some(to) = to.filter(|to| is_valid_channel_name(to)) else {
            return;
        };
        let Some(client) = self.clients.get_mut(&connection) else {
            return;
        };
        if let Some(from) = from
            && client.channel.as_deref() != Some(from.as_str())
        {
            let was = client.channel.clone();
            self.fail(format_args!(
                "{connection} switched from {from:?} but was in {was:?}"
            ));
        }
        client.channel = Some(to);
    }

    fn welcomed(&mut self, connection: ConnectionId, user: Option<String>) {
        if let (Some(client), Some(user)) = (self.clients.get_mut(&connection), user) {
            client.account = Some(username_key(&user));
        }
    }

    /// A chat line of `channel` reached `connection`: it must be a member.
    fn chat_line(&self, connection: ConnectionId, channel: Option<&str>, line: &str) {
        let member_of = self
            .clients
            .get(&connection)
            .and_then(|c| c.channel.as_deref());
        if member_of != channel {
            self.fail(format_args!(
                "chat line {line:?} reached {connection}, a member of {member_of:?}"
            ));
        }
    }

    /// What the engine promises about the requests it makes.
    fn check_request(&self, request: &StoreRequest) {
        let config = &self.config;
        match request {
            StoreRequest::Register { username, password } => {
                let len = password.expose().len();
                if !is_valid_username(username)
                    || !(config.min_password_bytes..=config.max_password_bytes).contains(&len)
                {
                    self.fail(format_args!("unvalidated registration of {username:?}"));
                }
            }
            StoreRequest::Login { username, password } => {
                if !is_valid_username(username)
                    || password.expose().len() > config.max_password_bytes
                {
                    self.fail(format_args!("unvalidated login of {username:?}"));
                }
            }
            StoreRequest::AppendChannelMessage(message) => {
                self.check_text(&message.text);
                if !is_valid_channel_name(&message.channel) {
                    self.fail(format_args!("append to channel {:?}", message.channel));
                }
            }
            StoreRequest::AppendPrivateMessage(message) => {
                // A transfer's record is the engine's own text, not bound by the
                // message limit.
                if message.text.starts_with("[file] ") {
                    if let Some(bad) = message.text.chars().find(|&c| is_forbidden(c)) {
                        self.fail(format_args!("{bad:?} in record {:?}", message.text));
                    }
                } else {
                    self.check_text(&message.text);
                }
                if !is_valid_username(&message.recipient) {
                    self.fail(format_args!("private message to {:?}", message.recipient));
                }
            }
            StoreRequest::SetRole { username, .. } => {
                if !is_valid_username(username) {
                    self.fail(format_args!("role set for {username:?}"));
                }
            }
            StoreRequest::FetchHistory { channel, limit, .. } => {
                if *limit == 0 || !is_valid_channel_name(channel) {
                    self.fail(format_args!("history of {channel:?}, {limit} messages"));
                }
            }
            StoreRequest::Sanction {
                username, reason, ..
            } => {
                if !is_valid_username(username) {
                    self.fail(format_args!("sanction of {username:?}"));
                }
                if reason.is_empty() || reason.chars().any(is_forbidden) {
                    self.fail(format_args!("sanction reason {reason:?}"));
                }
            }
            StoreRequest::LiftSanction { username, .. } => {
                if !is_valid_username(username) {
                    self.fail(format_args!("sanction lifted of {username:?}"));
                }
            }
            StoreRequest::FetchSanctions { limit } => {
                if *limit == 0 {
                    self.fail(format_args!("bans listed, {limit} at most"));
                }
            }
            StoreRequest::FetchConversation {
                username,
                with,
                limit,
                ..
            } => {
                if *limit == 0 || !is_valid_username(username) || !is_valid_username(with) {
                    self.fail(format_args!("conversation of {username:?} with {with:?}"));
                }
            }
            StoreRequest::ChangePassword { username, new, .. } => {
                let len = new.expose().len();
                if !is_valid_username(username)
                    || !(config.min_password_bytes..=config.max_password_bytes).contains(&len)
                {
                    self.fail(format_args!("unvalidated password change of {username:?}"));
                }
            }
            StoreRequest::DeleteAccount { username, .. }
            | StoreRequest::IssueToken { username }
            | StoreRequest::RevokeTokens { username } => {
                if !is_valid_username(username) {
                    self.fail(format_args!("account request for {username:?}"));
                }
            }
            StoreRequest::Resume { username, token } => {
                if !is_valid_username(username) || token.expose().len() > config.max_password_bytes
                {
                    self.fail(format_args!("unvalidated resume of {username:?}"));
                }
            }
            StoreRequest::RegisterChannel { name, owner } => {
                if !is_valid_channel_name(name)
                    || owner.as_deref().is_some_and(|o| !is_valid_username(o))
                {
                    self.fail(format_args!("registration of {name:?} for {owner:?}"));
                }
            }
            StoreRequest::SetTopic { channel, topic } => {
                if let Some(topic) = topic {
                    self.check_text(topic);
                }
                if !is_valid_channel_name(channel) {
                    self.fail(format_args!("topic of {channel:?}"));
                }
            }
            StoreRequest::SetPrivate { channel, .. } => {
                if !is_valid_channel_name(channel) {
                    self.fail(format_args!("privacy of {channel:?}"));
                }
            }
            StoreRequest::Invite { channel, username } => {
                if !is_valid_channel_name(channel) || !is_valid_username(username) {
                    self.fail(format_args!("invitation of {username:?} to {channel:?}"));
                }
            }
            StoreRequest::FetchPending { .. }
            | StoreRequest::MarkDelivered { .. }
            | StoreRequest::MarkPending { .. }
            | StoreRequest::LoadChannels => {}
        }
    }

    fn check_text(&self, text: &str) {
        if text.is_empty()
            || text.len() > self.config.max_message_bytes
            || text.chars().any(is_forbidden)
            || text.trim() != text
        {
            self.fail(format_args!("message text {text:?} stored"));
        }
    }

    /// The engine's getters against the model, after an event and all its outputs.
    fn check_state(&self) {
        let open: Vec<_> = self.clients.iter().filter(|(_, c)| c.open).collect();
        if self.engine.connection_count() != open.len() {
            self.fail(format_args!(
                "engine counts {} connections, the driver has {} open",
                self.engine.connection_count(),
                open.len()
            ));
        }
        if self.shut_down && !open.is_empty() {
            self.fail(format_args!("connections open after shutdown"));
        }
        let mut accounts = BTreeSet::new();
        for (&id, client) in &self.clients {
            let queued = self.engine.queued_bytes(id);
            let logged_in = self.engine.is_logged_in(id);
            if !client.open {
                if queued != 0 || logged_in {
                    self.fail(format_args!(
                        "closed {id}: {queued} bytes queued, logged in: {logged_in}"
                    ));
                }
                continue;
            }
            if queued != client.queued {
                self.fail(format_args!(
                    "{id}: engine has {queued} bytes queued, the driver {}",
                    client.queued
                ));
            }
            if queued > self.config.max_queued_bytes {
                self.fail(format_args!("{id}: {queued} bytes queued, past the limit"));
            }
            if logged_in != client.channel.is_some() {
                self.fail(format_args!(
                    "{id}: logged in {logged_in}, but its lines say channel {:?}",
                    client.channel
                ));
            }
            if let Some(channel) = &client.channel {
                if !self.engine.channel_members(channel).contains(&id) {
                    self.fail(format_args!("{id} missing from the members of {channel}"));
                }
                match &client.account {
                    Some(account) => {
                        accounts.insert(account.clone());
                    }
                    None => self.fail(format_args!("{id} in {channel} without a welcome")),
                }
            }
        }
        if self.engine.online_user_count() != accounts.len() {
            self.fail(format_args!(
                "engine counts {} users online, the clients saw {} accounts log in: {accounts:?}",
                self.engine.online_user_count(),
                accounts.len()
            ));
        }
    }
}

/// Whether client or store text could come out of the engine with the password mark in it:
/// it is there as sent, or appears once the sanitiser removes control characters and
/// escape sequences from some line, or from the rest of a line from one of its first words
/// (where a command's text argument may start). Errs on the side of yes.
fn may_carry_password(text: &[u8]) -> bool {
    if contains(text, PASSWORD_MARK) {
        return true;
    }
    let text = String::from_utf8_lossy(text);
    if !text.chars().any(is_forbidden) {
        return false;
    }
    text.split('\n').any(|line| {
        // Where words start: a command's text is the rest of the line from one of its
        // first few words.
        let mut previous_is_space = true;
        let starts: Vec<usize> = line
            .char_indices()
            .filter(|&(_, c)| {
                let starts_word = previous_is_space && !c.is_whitespace();
                previous_is_space = c.is_whitespace();
                starts_word
            })
            .map(|(i, _)| i)
            .take(5)
            .collect();
        std::iter::once(0)
            .chain(starts)
            .any(|start| contains(sanitize_text(&line[start..]).as_bytes(), PASSWORD_MARK))
    })
}

/// The first string character in `value` that may not reach a terminal.
fn first_forbidden(value: &Value) -> Option<char> {
    match value {
        Value::String(text) => text.chars().find(|&c| is_forbidden(c)),
        Value::Array(items) => items.iter().find_map(first_forbidden),
        Value::Object(fields) => fields.iter().find_map(|(key, value)| {
            key.chars()
                .find(|&c| is_forbidden(c))
                .or_else(|| first_forbidden(value))
        }),
        _ => None,
    }
}

/// Standard base64 with padding; `None` if `text` is not that.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for group in text.chunks(4) {
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &group[..4 - padding] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * padding as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - padding]);
    }
    Some(out)
}

/// Output bytes for the trace: the start of them, as text.
fn shown(data: &[u8]) -> String {
    const SHOWN: usize = 160;
    let text = String::from_utf8_lossy(&data[..data.len().min(SHOWN)]);
    if data.len() > SHOWN {
        format!("{text:?}… ({} bytes)", data.len())
    } else {
        format!("{text:?}")
    }
}

/// Whether `bytes` may start an upload (`/send`, in any letter case).
fn may_upload(bytes: &[u8]) -> bool {
    bytes.windows(5).any(|w| w.eq_ignore_ascii_case(b"/send"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
