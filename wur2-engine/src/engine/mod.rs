//! The engine: all chat state, every input and every output.
//!
//! This module owns the connection lifecycle, the store requests in flight and
//! backpressure, and ties the sub-states together: `sessions` (the connection table),
//! `accounts` (who is online), `channels` (who is where), `transfers` (files on the move),
//! `timers` and `outbox` (the output queue) each own their data and keep their own
//! invariants. `login` holds the login flow and `chat` the commands of logged-in users.
//! Nothing here reads a clock, touches I/O or iterates a randomly seeded map.

mod account_changes;
mod accounts;
mod channel_modes;
mod channels;
mod chat;
mod cluster;
mod delivery;
mod history;
mod login;
mod outbox;
mod peers;
mod sanctions;
mod self_service;
mod sessions;
mod timers;
mod transfers;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::Config;
use crate::file::FileError;
use crate::framer::{Frame, LineFramer};
use crate::ids::{ConnectionId, MessageId, RequestId, TransferId};
use crate::login_guard::LoginGuard;
use crate::output::{CloseReason, Output};
use crate::registration_limit::RegistrationLimit;
use crate::stats::Stats;
use crate::store::{AccountChange, Role, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line, Mode, Prompt};

use accounts::Accounts;
use channel_modes::{CatalogueRequest, ChannelChange};
use channels::{Channels, Left};
use cluster::Cluster;
use delivery::Held;
use outbox::Outbox;
use sessions::{Login, Member, Session, Sessions, Stage};
use timers::{Timer, Timers};
use transfers::Transfers;

/// The WUR2 chat engine: a synchronous state machine with no I/O of its own.
///
/// See the [crate documentation](crate) for the drive loop and the rules for callers.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    sessions: Sessions,
    outbox: Outbox,
    accounts: Accounts,
    channels: Channels,
    transfers: Transfers,
    timers: Timers,
    login_guard: LoginGuard,
    registrations: RegistrationLimit,
    /// Store requests whose answers the engine acts on.
    pending: BTreeMap<RequestId, Pending>,
    /// Store requests about the channel catalogue that no connection waits for.
    catalogue_requests: BTreeMap<RequestId, CatalogueRequest>,
    /// Channel commands waiting for the catalogue to load, in arrival order.
    catalogue_waiters: Vec<(ConnectionId, crate::Command)>,
    /// Accepted messages waiting for the store to commit them, in the order accepted.
    held: VecDeque<Held>,
    /// Connections whose next line waits for held messages to be released.
    held_waiters: Vec<ConnectionId>,
    next_request: u64,
    next_message: u64,
    /// Set by `handle_shutdown`: every connection from then on is refused.
    shutting_down: bool,
    /// Reused buffer for the line being processed; wiped after each line.
    line: Vec<u8>,
    /// Counters for [`Engine::stats`] (gauges and delivery counts are filled in there).
    stats: Stats,
    /// This node's part in a cluster, if [`Config::cluster`] is set.
    cluster: Option<Cluster>,
}

/// Whether a waiting line is `/send <user> <name> <size>`, whose size in raw bytes follows.
fn is_upload_line(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let head = text.trim_start().get(..6).unwrap_or_default();
    head.eq_ignore_ascii_case("/send ")
        && matches!(
            crate::command::parse_command(text),
            Ok(crate::Command::SendUpload { .. })
        )
}

/// Who sent a command: the parts of the session the commands need.
struct Sender {
    account: String,
    username: String,
    role: Role,
    channel: String,
}

/// What to do with the answer to a store request.
#[derive(Debug)]
enum Pending {
    Authenticate {
        connection: ConnectionId,
        existing: bool,
        account: String,
        /// A registration: when it was counted against the registration limits.
        registration: Option<Instant>,
    },
    History {
        connection: ConnectionId,
        page: history::Page,
    },
    OfflineMessages {
        connection: ConnectionId,
    },
    OfflineDirect {
        connection: ConnectionId,
        recipient: String,
    },
    SetRole {
        connection: ConnectionId,
        /// Whose role, as typed.
        user: String,
    },
    ChangePassword {
        connection: ConnectionId,
    },
    DeleteAccount {
        connection: ConnectionId,
    },
    ChannelChange {
        connection: ConnectionId,
        /// The channel's display name.
        channel: String,
        change: ChannelChange,
    },
    IssueToken {
        connection: ConnectionId,
    },
    LogoutEverywhere {
        connection: ConnectionId,
    },
    Sanction {
        connection: ConnectionId,
        /// As typed, for the answer when there is no such user.
        user: String,
    },
    Lift {
        connection: ConnectionId,
        kind: crate::sanction::SanctionKind,
        /// As typed, for the answer when there is nothing to lift.
        user: String,
    },
    Sanctions {
        connection: ConnectionId,
    },
}

impl Pending {
    fn connection(&self) -> ConnectionId {
        match self {
            Pending::Authenticate { connection, .. }
            | Pending::History { connection, .. }
            | Pending::OfflineMessages { connection }
            | Pending::OfflineDirect { connection, .. }
            | Pending::SetRole { connection, .. }
            | Pending::Sanction { connection, .. }
            | Pending::Lift { connection, .. }
            | Pending::Sanctions { connection }
            | Pending::ChangePassword { connection }
            | Pending::DeleteAccount { connection }
            | Pending::ChannelChange { connection, .. }
            | Pending::IssueToken { connection }
            | Pending::LogoutEverywhere { connection } => *connection,
        }
    }
}

/// What the channel hears when a session leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    Announced,
    Silent,
}

impl Engine {
    /// An engine with no connections, enforcing the limits in `config`. Its first output
    /// is a [`StoreRequest::LoadChannels`]: the registered channels, which it keeps in
    /// memory from then on.
    pub fn new(mut config: Config) -> Self {
        // A transfer moves at least one byte at a time and may hold at least one: with
        // either at 0 it could never finish.
        config.transfer_chunk_bytes = config.transfer_chunk_bytes.max(1);
        config.transfer_window_bytes = config.transfer_window_bytes.max(1);
        let mut engine = Engine {
            cluster: config.cluster.clone().map(Cluster::new),
            outbox: Outbox::new(&config),
            login_guard: LoginGuard::new(&config),
            registrations: RegistrationLimit::new(&config),
            config,
            sessions: Sessions::default(),
            accounts: Accounts::default(),
            channels: Channels::default(),
            transfers: Transfers::default(),
            timers: Timers::default(),
            pending: BTreeMap::new(),
            catalogue_requests: BTreeMap::new(),
            catalogue_waiters: Vec::new(),
            held: VecDeque::new(),
            held_waiters: Vec::new(),
            next_request: 0,
            next_message: 0,
            shutting_down: false,
            line: Vec::new(),
            stats: Stats::default(),
        };
        engine.load_catalogue();
        engine
    }

    // ----- getters -----

    /// The settings this engine enforces.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Open connections, logged in or not.
    pub fn connection_count(&self) -> usize {
        self.sessions.len()
    }

    /// Accounts with at least one logged-in session.
    pub fn online_user_count(&self) -> usize {
        self.accounts.len()
    }

    /// What the engine has done and holds now, for metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.sessions.len() as u64,
            users_online: self.accounts.len() as u64,
            bytes_queued: self.sessions.queued_total() as u64,
            transfers_active: self.transfers.len() as u64,
            deliveries: self.outbox.deliveries,
            bytes_out: self.outbox.bytes_out,
            peers: self.cluster.as_ref().map_or(0, |c| c.peers.len() as u64),
            peer_sessions: self
                .cluster
                .as_ref()
                .map_or(0, |c| c.peers.session_count() as u64),
            ..self.stats
        }
    }

    /// Bytes handed out for `connection` and not yet reported written (0 if unknown).
    pub fn queued_bytes(&self, connection: ConnectionId) -> usize {
        self.sessions.queued_bytes(connection)
    }

    /// Bytes received from `connection` that the engine holds unprocessed (0 if unknown):
    /// lines waiting for a store answer or for flood control, a partial line, upload bytes
    /// waiting for the recipient. Never more than [`Config::max_held_input_bytes`] after
    /// an input; reading is paused while complete lines wait.
    pub fn held_input_bytes(&self, connection: ConnectionId) -> usize {
        self.sessions
            .get(connection)
            .map_or(0, |session| session.framer.buffered_bytes())
    }

    /// Whether `connection` is open and logged in.
    pub fn is_logged_in(&self, connection: ConnectionId) -> bool {
        self.sessions
            .get(connection)
            .is_some_and(|s| s.member().is_some())
    }

    /// The members of a channel (matched without regard to case), in join order.
    pub fn channel_members(&self, channel: &str) -> Vec<ConnectionId> {
        self.channels
            .get(&crate::names::channel_key(channel))
            .map(|c| c.members.clone())
            .unwrap_or_default()
    }

    // ----- inputs -----

    /// A client connected from `peer`. Returns its id; when the server is full (or shutting
    /// down, after [`Engine::handle_shutdown`]) the connection is told why and closed at
    /// once. The id's slot is not that of a connection whose `Close` is still undrained.
    pub fn handle_connect(&mut self, peer: SocketAddr, now: Instant) -> ConnectionId {
        self.handle_connect_in(peer, Mode::Text, now)
    }

    /// Like [`Engine::handle_connect`], for a client whose transport asks for `mode` from
    /// the first line on (a WebSocket client speaks JSON lines only): the banner, the
    /// first login question and any refusal already come in `mode`, as if the client had
    /// sent `/mode` before anything else, but without the `mode` answer.
    pub fn handle_connect_in(
        &mut self,
        peer: SocketAddr,
        mode: Mode,
        now: Instant,
    ) -> ConnectionId {
        self.outbox.begin_input(now);
        let session = Session {
            peer,
            stage: Stage::LoggingIn(Login::AskAccount),
            framer: LineFramer::new(self.config.max_line_bytes),
            flood: Default::default(),
            throttled_until: None,
            awaiting: 0,
            uncommitted: 0,
            held_barrier: None,
            reading_paused: false,
            login_failures: 0,
            login_deadline: None,
            upload: None,
        };
        let connection = self.sessions.insert(session);
        self.sessions.set_mode(connection, mode);
        self.stats.connections_opened += 1;
        let from_address = self.sessions.count_from(peer.ip());

        if self.shutting_down {
            self.send(connection, Line::ShuttingDown);
            self.close(connection, CloseReason::Shutdown, Departure::Silent);
        } else if self.sessions.len() > self.config.max_connections {
            self.error(
                connection,
                ErrorCode::ServerFull,
                format_args!("server is full, try again later"),
            );
            self.close(connection, CloseReason::ServerFull, Departure::Silent);
        } else if from_address > self.config.max_connections_per_address {
            self.error(
                connection,
                ErrorCode::TooManyConnections,
                format_args!("too many connections from your address"),
            );
            self.close(
                connection,
                CloseReason::TooManyFromAddress,
                Departure::Silent,
            );
        } else {
            let banner = self.config.banner.clone();
            self.send(connection, Line::Info(&banner));
            self.send(connection, Line::Prompt(Prompt::Account));
            let deadline = now.checked_add(self.config.login_timeout).unwrap_or(now);
            if let Some(session) = self.sessions.get_mut(connection) {
                session.login_deadline = Some(deadline);
            }
            self.timers.set(deadline, connection, Timer::LoginDeadline);
        }
        self.finish_input();
        connection
    }

    /// Bytes arrived from `connection`. Any split of a stream across calls gives the same
    /// result.
    pub fn handle_received(&mut self, connection: ConnectionId, data: &[u8], now: Instant) {
        self.outbox.begin_input(now);
        // Upload bytes go straight to the recipient when nothing waits before them.
        let rest = self.upload_from_input(connection, data);
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        session.framer.push(rest);
        self.process_input(connection, now);
        self.finish_input();
    }

    /// `bytes` of what was transmitted to `connection` have been written to it, at `now`
    /// (room in a recipient's window lets a stalled file transfer go on: its lines carry
    /// `now`).
    pub fn handle_written(&mut self, connection: ConnectionId, bytes: usize, now: Instant) {
        self.outbox.begin_input(now);
        if self.sessions.written(connection, bytes) {
            self.recipient_drained(connection, now);
            self.finish_input();
        }
    }

    /// The driver opened the server-side file of `transfer` (its size), or could not.
    pub fn handle_file_opened(
        &mut self,
        transfer: TransferId,
        result: Result<u64, FileError>,
        now: Instant,
    ) {
        self.outbox.begin_input(now);
        self.on_file_opened(transfer, result);
        self.finish_input();
    }

    /// Bytes read from the server-side file of `transfer`, after an [`Output::ReadFile`]:
    /// at least one byte and at most the `max` asked for (fewer bytes than the file's
    /// size before its end, or an empty read, ends the transfer as failed).
    pub fn handle_file_data(&mut self, transfer: TransferId, data: &[u8], now: Instant) {
        self.outbox.begin_input(now);
        self.on_file_data(transfer, data);
        self.finish_input();
    }

    /// Reading the server-side file of `transfer` failed.
    pub fn handle_file_failed(&mut self, transfer: TransferId, error: FileError, now: Instant) {
        self.outbox.begin_input(now);
        self.on_file_failed(transfer, &error);
        self.finish_input();
    }

    /// The peer closed `connection` (or it failed) at `now`. The engine forgets it and
    /// tells its channel (a line stamped `now`); no `Close` output follows, and its slot is
    /// reused only after the next drain.
    pub fn handle_peer_closed(&mut self, connection: ConnectionId, now: Instant) {
        self.outbox.begin_input(now);
        if let Some(session) = self.forget(connection, Departure::Announced) {
            tracing::info!(%connection, peer = %session.peer, "disconnected by the peer");
        }
        self.finish_input();
    }

    /// The answer to store request `id`. Answers for unknown or finished requests, and
    /// answers that do not fit the request, are ignored (the latter logged).
    pub fn handle_store_reply(&mut self, id: RequestId, reply: StoreReply, now: Instant) {
        self.outbox.begin_input(now);
        if self.settle_held(id, &reply, now) {
            return self.finish_input();
        }
        if let Some(request) = self.take_catalogue_request(id) {
            self.on_catalogue_reply(request, reply, now);
            return self.finish_input();
        }
        let Some(pending) = self.pending.remove(&id) else {
            if let StoreReply::Failed(error) = &reply {
                tracing::warn!(request = %id, %error, "store request failed");
            }
            return;
        };
        let connection = pending.connection();
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        session.awaiting = session.awaiting.saturating_sub(1);
        match pending {
            Pending::Authenticate {
                existing,
                account,
                registration,
                ..
            } => {
                self.on_authenticated(connection, existing, &account, registration, reply, now);
            }
            Pending::History { page, .. } => self.on_history(connection, page, reply),
            Pending::OfflineMessages { .. } => self.on_offline_messages(connection, reply),
            Pending::OfflineDirect { recipient, .. } => {
                self.on_offline_direct_stored(connection, &recipient, reply);
            }
            Pending::SetRole { user, .. } => self.on_role_set(connection, &user, reply),
            Pending::ChangePassword { .. } => self.on_password_changed(connection, reply, now),
            Pending::DeleteAccount { .. } => self.on_account_deleted(connection, reply, now),
            Pending::ChannelChange {
                channel, change, ..
            } => self.on_channel_changed(connection, &channel, change, reply),
            Pending::IssueToken { .. } => self.on_token_issued(connection, reply),
            Pending::LogoutEverywhere { .. } => self.on_tokens_revoked(connection, reply),
            Pending::Sanction { user, .. } => self.on_sanctioned(connection, &user, reply),
            Pending::Lift { kind, user, .. } => self.on_lifted(connection, kind, &user, reply),
            Pending::Sanctions { .. } => self.on_sanctions(connection, reply),
        }
        self.process_input(connection, now);
        self.finish_input();
    }

    /// Time has come to `now`: login deadlines, slowed-down logins, flood control waits and
    /// transfer idle checks that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.outbox.begin_input(now);
        while let Some((at, connection, timer)) = self.timers.pop_due(now) {
            let Some(session) = self.sessions.get_mut(connection) else {
                continue;
            };
            match timer {
                Timer::LoginDeadline if session.login_deadline == Some(at) => {
                    session.login_deadline = None;
                    self.error(
                        connection,
                        ErrorCode::LoginTimeout,
                        format_args!("login timed out"),
                    );
                    self.close(connection, CloseReason::LoginTimeout, Departure::Silent);
                }
                Timer::LoginDelay if session.login_delayed_until() == Some(at) => {
                    self.login_delay_over(connection);
                    self.process_input(connection, now);
                }
                Timer::FloodRetry if session.throttled_until == Some(at) => {
                    session.throttled_until = None;
                    self.process_input(connection, now);
                }
                Timer::TransferIdle(transfer) => self.on_transfer_idle(transfer, at, now),
                _ => {}
            }
        }
        self.cluster_timeout(now);
        self.finish_input();
    }

    /// Cluster mode ([`Config::cluster`]): the driver's link to the other nodes is up at
    /// `now`, first or again after it was lost. The engine asks every node for its state
    /// and starts its heartbeat ([`Engine::poll_timeout`] then includes it). Without
    /// `Config::cluster` this does nothing.
    pub fn handle_bus_connected(&mut self, now: Instant) {
        self.outbox.begin_input(now);
        self.bus_connected(now);
        self.finish_input();
    }

    /// Cluster mode: the driver's link to the other nodes is lost at `now`. The engine
    /// stops its heartbeat until [`Engine::handle_bus_connected`] (what it publishes
    /// meanwhile waits in the driver); peers it no longer hears from are lost after the
    /// node timeout as usual. Without `Config::cluster` this does nothing.
    pub fn handle_bus_disconnected(&mut self, now: Instant) {
        self.outbox.begin_input(now);
        self.bus_disconnected();
        self.finish_input();
    }

    /// Cluster mode: `payload` arrived at `now` from another node, on any
    /// [`Topic`](crate::Topic) this node listens to (its own publications may come back
    /// too: they are ignored). A payload that is not a valid publication of this
    /// version is dropped whole and counted ([`Stats::bus_refused`]). Without
    /// `Config::cluster` this does nothing.
    pub fn handle_published(&mut self, payload: &[u8], now: Instant) {
        self.outbox.begin_input(now);
        self.on_published(payload, now);
        self.finish_input();
    }

    /// Account `username` (matched without regard to case) was changed outside this engine
    /// at `now`: by the operator's command line, or another node sharing the accounts.
    /// A new role applies to every live session of the account at once, and each is told
    /// (as after `/role`); a role it already has changes nothing. A purged or banned
    /// account's sessions are told and closed. A mute applies to the account's messages
    /// from `now` until its [`Expiry::remaining`](crate::Expiry::remaining) has passed
    /// (a mute the sessions already know is not told again); a lifted mute stops
    /// applying. An account that is not online is ignored.
    pub fn handle_account_changed(&mut self, username: &str, change: AccountChange, now: Instant) {
        self.outbox.begin_input(now);
        self.apply_account_change(username, change);
        self.finish_input();
    }

    /// The server is going down at `now`: every connection is told and closed after its
    /// queued bytes. From now on [`Engine::handle_connect`] refuses every client (its only
    /// outputs are a shutdown notice and a `Close`), so the driver need not decide that
    /// itself.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.outbox.begin_input(now);
        self.shutting_down = true;
        for connection in self.sessions.ids() {
            self.send(connection, Line::ShuttingDown);
            self.close(connection, CloseReason::Shutdown, Departure::Silent);
        }
        self.finish_input();
    }

    // ----- outputs -----

    /// The next thing for the driver to do; call until `None` after every input.
    ///
    /// The slot ([`ConnectionId::slot`]) of a connection that ended is handed to a new
    /// connection only after this has returned `None` following that connection's
    /// [`Output::Close`] (or [`Engine::handle_peer_closed`]).
    pub fn poll_output(&mut self) -> Option<Output> {
        let output = self.outbox.pop();
        if output.is_none() {
            self.sessions.recycle();
        }
        output
    }

    /// When to call [`Engine::handle_timeout`] next, if anything waits for time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heartbeat = self.cluster.as_ref().and_then(|c| c.next_heartbeat);
        match (self.timers.next(), heartbeat) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- internals shared by login and chat -----

    fn send(&mut self, connection: ConnectionId, line: Line<'_>) {
        self.outbox.send(&mut self.sessions, connection, &line);
    }

    fn error(
        &mut self,
        connection: ConnectionId,
        code: ErrorCode,
        message: std::fmt::Arguments<'_>,
    ) {
        let line = Line::Error {
            code,
            message: message.to_string(),
        };
        self.send(connection, line);
    }

    /// `/mode`: later lines to `connection` come in `mode`, starting with the answer.
    fn set_mode(&mut self, connection: ConnectionId, mode: Mode) {
        self.sessions.set_mode(connection, mode);
        self.send(connection, Line::ModeSet(mode));
    }

    fn request(&mut self, request: StoreRequest) -> RequestId {
        self.stats.store_requests += 1;
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.outbox.push(Output::Store {
            id,
            request: Box::new(request),
        });
        id
    }

    /// A store request whose answer `connection`'s input waits for.
    fn request_for(&mut self, request: StoreRequest, pending: Pending) {
        let connection = pending.connection();
        let id = self.request(request);
        self.pending.insert(id, pending);
        if let Some(session) = self.sessions.get_mut(connection) {
            session.awaiting += 1;
        }
    }

    fn next_message_id(&mut self) -> MessageId {
        self.next_message += 1;
        MessageId {
            origin: self.config.message_id_origin,
            sequence: self.next_message,
        }
    }

    /// Processes what `connection` has sent, in order (lines, or the raw bytes of an
    /// upload), until nothing is left or the connection must wait; then pauses or resumes
    /// reading to match.
    fn process_input(&mut self, connection: ConnectionId, now: Instant) {
        loop {
            let dropping = self.sessions.is_dropping(connection);
            let waits = self.waits_for_held(connection);
            let Some(session) = self.sessions.get_mut(connection) else {
                return;
            };
            if dropping || session.is_blocked() || waits {
                break;
            }
            if session.upload.is_some() {
                if self.pump_upload(connection) {
                    continue;
                }
                break;
            }
            if session.framer.pending_frames() == 0 && session.framer.buffered_bytes() == 0 {
                break;
            }
            let (rate, burst) = (self.config.flood_lines_per_second, self.config.flood_burst);
            if session.framer.pending_frames() > 0
                && let Err(retry_at) = session.flood.take(now, rate, burst)
            {
                session.throttled_until = Some(retry_at);
                self.stats.flood_pauses += 1;
                self.timers.set(retry_at, connection, Timer::FloodRetry);
                break;
            }
            let mut line = std::mem::take(&mut self.line);
            let frame = session.framer.next_frame(&mut line);
            self.stats.lines_received += u64::from(frame.is_some());
            if let Some(frame) = frame {
                self.on_frame(connection, frame, &line, now);
            }
            line.fill(0);
            self.line = line;
            if frame.is_none() {
                break;
            }
        }
        self.apply_backpressure(connection);
    }

    /// Reading pauses while the engine holds input it cannot process yet, and resumes when
    /// it can.
    ///
    /// Only flood control punishes: a connection holding more than `max_pending_lines`
    /// lines that flood control holds back is closed for flooding, and reading goes on
    /// while it holds them back, so that a flood is seen whole. Lines waiting for a
    /// store answer are the store's pace, not the client's: they stay in the framer, in
    /// order, while reading is paused, so a trusted client may pipeline. Either way the
    /// bytes held are bounded by [`Config::max_held_input_bytes`], past which (a driver
    /// that read ahead of the pause) the connection is closed too.
    fn apply_backpressure(&mut self, connection: ConnectionId) {
        let waits = self.waits_for_held(connection);
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        let max_lines = self.config.max_pending_lines;
        let throttled_lines = if session.throttled_until.is_none() || session.upload.is_some() {
            0
        } else if session.framer.pending_frames() > max_lines {
            // Bytes after a pending upload line are file data, not lines: count up to it.
            session.framer.lines_until(is_upload_line)
        } else {
            session.framer.pending_frames()
        };
        let bytes = session.framer.buffered_bytes();
        if throttled_lines > max_lines || bytes > self.config.max_held_input_bytes() {
            tracing::info!(%connection, throttled_lines, bytes, "closing a flooding connection");
            self.stats.flood_disconnects += 1;
            self.error(
                connection,
                ErrorCode::Flooding,
                format_args!("too many lines at once; slow down"),
            );
            self.close(connection, CloseReason::Flood, Departure::Announced);
            return;
        }
        // Flood control alone does not pause reading: what a flooder keeps sending piles
        // up and closes it past `max_pending_lines` (above), however the driver's reads
        // happened to cut the flood. (Paused, a flooder whose first read was short would
        // trickle at the flood rate, unseen, for as long as its backlog lasts.)
        let blocked = session.waits_for_more_than_flood_control() || waits;
        let must_wait = bytes > 0 && blocked;
        if must_wait != session.reading_paused {
            session.reading_paused = must_wait;
            let output = if must_wait {
                Output::PauseReading(connection)
            } else {
                Output::ResumeReading(connection)
            };
            self.outbox.push(output);
        }
    }

    fn on_frame(&mut self, connection: ConnectionId, frame: Frame, line: &[u8], now: Instant) {
        let text = match frame {
            Frame::TooLong => {
                let max = self.config.max_line_bytes;
                return self.error(
                    connection,
                    ErrorCode::LineTooLong,
                    format_args!("line too long (max {max} bytes)"),
                );
            }
            Frame::Line => match std::str::from_utf8(line) {
                Ok(text) => text,
                Err(_) => {
                    return self.error(
                        connection,
                        ErrorCode::InvalidUtf8,
                        format_args!("invalid UTF-8; line ignored"),
                    );
                }
            },
        };
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        let login = match &mut session.stage {
            Stage::Chatting(_) => return self.on_chat_line(connection, text),
            // The handler owns the step (and the username in it) and returns the next;
            // nothing reads the step meanwhile, so any value holds its place.
            Stage::LoggingIn(login) => std::mem::replace(login, Login::Authenticating),
        };
        let next = self.on_login_line(connection, login, text, now);
        self.set_login(connection, next);
    }

    /// Closes `connection`: forgets it and asks the driver to close it.
    fn close(&mut self, connection: ConnectionId, reason: CloseReason, departure: Departure) {
        let flush = !self.sessions.is_dropping(connection);
        let Some(session) = self.forget(connection, departure) else {
            return;
        };
        tracing::info!(%connection, peer = %session.peer, %reason, "closing connection");
        self.outbox.push(Output::Close {
            connection,
            reason,
            flush,
        });
    }

    /// Removes every trace of `connection` from the chat state.
    fn forget(&mut self, connection: ConnectionId, departure: Departure) -> Option<Session> {
        self.end_transfers_of(connection);
        self.leave_channel(connection, departure);
        let session = self.sessions.remove(connection)?;
        if let Some(at) = session.login_deadline {
            self.timers.cancel(at, connection, Timer::LoginDeadline);
        }
        if let Some(at) = session.throttled_until {
            self.timers.cancel(at, connection, Timer::FloodRetry);
        }
        if let Some(at) = session.login_delayed_until() {
            self.timers.cancel(at, connection, Timer::LoginDelay);
        }
        if let Some(member) = session.member() {
            self.accounts.log_out(&member.account, connection);
            self.publish_exit(connection, departure);
        }
        Some(session)
    }

    /// Takes `connection` out of its channel (which disappears when empty).
    fn leave_channel(&mut self, connection: ConnectionId, departure: Departure) {
        let Some(session) = self.sessions.get(connection) else {
            return;
        };
        let Some(member) = session.member() else {
            return;
        };
        let (key, position) = (member.channel.clone(), member.slot_in_channel);
        let name = match departure {
            Departure::Announced => self.username_of(connection).unwrap_or_default(),
            Departure::Silent => String::new(),
        };
        // Counted with the one leaving: a channel just over the limit stays quiet.
        let announce = departure == Departure::Announced && self.announces_membership(&key);
        let (channel, moved) = match self.channels.leave(&key, position, connection) {
            Left::Remaining { channel, moved } => (channel, moved),
            Left::Emptied => return,
            Left::NotMember => {
                tracing::error!(%connection, "channel membership out of step");
                return;
            }
        };
        if let Some(moved) = moved
            && let Some(Stage::Chatting(m)) = self.sessions.get_mut(moved).map(|s| &mut s.stage)
        {
            m.slot_in_channel = position;
        }
        if announce {
            let line = Line::Left {
                user: &name,
                channel: &channel.name,
            };
            self.outbox
                .broadcast(&mut self.sessions, &channel.members, None, &line);
        }
    }

    /// Puts logged-in `connection` into channel `name` (created when missing) and tells
    /// the other members. Returns the channel's display name.
    fn enter_channel(&mut self, connection: ConnectionId, name: &str) -> String {
        // A channel new here but in use on another node keeps the name it has there.
        let name = match &self.cluster {
            Some(cluster) => cluster.peers.channel_name(name).unwrap_or(name),
            None => name,
        };
        let (key, position) = self.channels.join(name, connection, self.next_message);
        if let Some(Stage::Chatting(member)) =
            self.sessions.get_mut(connection).map(|s| &mut s.stage)
        {
            member.channel = key.clone();
            member.slot_in_channel = position;
            member.joined_after = self.next_message;
        }
        let user = self.username_of(connection).unwrap_or_default();
        let Some(channel) = self.channels.get(&key) else {
            return String::new();
        };
        let display = channel.name.clone();
        if self.announces_membership(&key) {
            let members = &channel.members;
            let line = Line::Joined {
                user: &user,
                channel: &display,
            };
            self.outbox
                .broadcast(&mut self.sessions, members, Some(connection), &line);
        }
        self.publish_enter(connection);
        display
    }

    /// Whether channel `key` is small enough for join and leave notices
    /// ([`Config::join_notices_max_members`]), counting its members on every node.
    fn announces_membership(&self, key: &str) -> bool {
        self.members_everywhere(key) <= self.config.join_notices_max_members
    }

    /// Members of channel `key` on this node and, in a cluster, on the others.
    fn members_everywhere(&self, key: &str) -> usize {
        let here = self.channels.get(key).map_or(0, |c| c.members.len());
        let elsewhere = self
            .cluster
            .as_ref()
            .map_or(0, |cluster| cluster.peers.members_of(key));
        here.saturating_add(elsewhere)
    }

    fn username_of(&self, connection: ConnectionId) -> Option<String> {
        let member = self.sessions.get(connection)?.member()?;
        Some(self.accounts.get(&member.account)?.username.clone())
    }

    /// Lets uploads that ended while waiting for their recipient go on, then closes the
    /// slow readers found while handling the last input.
    fn finish_input(&mut self) {
        self.resume_ended_uploads();
        while let Some(connection) = self.outbox.take_slow_reader() {
            if self.sessions.get(connection).is_some() {
                let queued = self.sessions.queued_bytes(connection);
                tracing::warn!(%connection, queued, "dropping slow reader");
                self.stats.slow_readers_dropped += 1;
                self.close(connection, CloseReason::SlowReader, Departure::Announced);
            }
        }
    }
}
