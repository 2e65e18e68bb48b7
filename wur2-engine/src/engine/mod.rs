//! The engine: all chat state, every input and every output.
//!
//! This module owns the connection lifecycle, the output queue, timers and backpressure;
//! `login` holds the login flow and `chat` the commands of logged-in users. Nothing here
//! reads a clock, touches I/O or iterates a randomly seeded map.

mod chat;
mod login;
mod sessions;
mod transfers;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;

use crate::config::{Config, WallClock};
use crate::file::FileError;
use crate::framer::{Frame, LineFramer};
use crate::ids::{ConnectionId, MessageId, RequestId, TransferId};
use crate::login_guard::FailureLog;
use crate::output::{CloseReason, Output};
use crate::stats::Stats;
use crate::store::{Role, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line, Mode, Prompt};

use sessions::{Delivery, Login, Member, Session, Sessions, Stage};

/// The WUR2 chat engine: a synchronous state machine with no I/O of its own.
///
/// See the [crate documentation](crate) for the drive loop and the rules for callers.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    sessions: Sessions,
    outbox: Outbox,
    connections_per_address: BTreeMap<IpAddr, usize>,
    /// Accounts with at least one logged-in session, by username key.
    accounts: BTreeMap<String, Account>,
    /// Channels with at least one member, by channel key.
    channels: BTreeMap<String, Channel>,
    /// Store requests whose answers the engine acts on.
    pending: BTreeMap<RequestId, Pending>,
    timers: BTreeSet<(Instant, ConnectionId, Timer)>,
    next_request: u64,
    next_message: u64,
    account_failures: FailureLog<String>,
    address_failures: FailureLog<IpAddr>,
    shutting_down: bool,
    transfers: BTreeMap<TransferId, transfers::Transfer>,
    next_transfer: u64,
    /// Reused buffer for the line being processed; wiped after each line.
    line: Vec<u8>,
    /// Counters for [`Engine::stats`] (gauges and delivery counts are filled in there).
    stats: Stats,
}

/// A logged-in account and its sessions.
#[derive(Debug)]
struct Account {
    username: String,
    role: Role,
    sessions: Vec<ConnectionId>,
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

/// A channel with members.
#[derive(Debug)]
struct Channel {
    name: String,
    members: Vec<ConnectionId>,
}

/// What to do with the answer to a store request.
#[derive(Debug)]
enum Pending {
    Authenticate {
        connection: ConnectionId,
        existing: bool,
        account: String,
    },
    History {
        connection: ConnectionId,
        channel: String,
        asked: bool,
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
    },
}

impl Pending {
    fn connection(&self) -> ConnectionId {
        match self {
            Pending::Authenticate { connection, .. }
            | Pending::History { connection, .. }
            | Pending::OfflineMessages { connection }
            | Pending::OfflineDirect { connection, .. }
            | Pending::SetRole { connection } => *connection,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    LoginDeadline,
    FloodRetry,
}

/// What the channel hears when a session leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Departure {
    Announced,
    Silent,
}

/// The output queue, and the per-recipient delivery rule: render once per mode, count the
/// bytes, drop readers that fall too far behind.
#[derive(Debug)]
struct Outbox {
    outputs: VecDeque<Output>,
    max_queued_bytes: usize,
    /// Connections that passed `max_queued_bytes`; closed once the current input is done.
    slow_readers: Vec<ConnectionId>,
    /// Stamps JSON lines with wall-clock time, when the caller told us the time.
    wall_clock: Option<WallClock>,
    /// The `now` of the input being handled: the time every line it emits is stamped with.
    now: Option<Instant>,
    /// Lines and bytes handed out (for [`Stats`]).
    deliveries: u64,
    bytes_out: u64,
}

impl Outbox {
    /// One line to one connection, in its mode.
    fn send(&mut self, sessions: &mut Sessions, connection: ConnectionId, line: &Line<'_>) {
        if let Some(data) = self.render(sessions, connection, line) {
            self.transmit(sessions, connection, data);
        }
    }

    /// `line` as `connection` reads it (`None`: no such connection).
    fn render(
        &self,
        sessions: &Sessions,
        connection: ConnectionId,
        line: &Line<'_>,
    ) -> Option<Bytes> {
        let mode = sessions.mode(connection)?;
        Some(line.render(mode, self.unix_ms()))
    }

    /// Queues bytes rendered for `connection` (by [`Outbox::render`]).
    fn transmit(&mut self, sessions: &mut Sessions, connection: ConnectionId, data: Bytes) {
        match sessions.charge(connection, data.len(), self.max_queued_bytes) {
            Delivery::Send => {
                self.deliveries += 1;
                self.bytes_out += data.len() as u64;
                self.outputs
                    .push_back(Output::Transmit { connection, data });
            }
            Delivery::SlowReader => self.slow_readers.push(connection),
            Delivery::Skip => {}
        }
    }

    /// One line to many connections: rendered at most once per mode, one output per mode.
    fn broadcast(
        &mut self,
        sessions: &mut Sessions,
        recipients: &[ConnectionId],
        except: Option<ConnectionId>,
        line: &Line<'_>,
    ) {
        let unix_ms = self.unix_ms();
        let mut text: Option<Bytes> = None;
        let mut json: Option<Bytes> = None;
        let mut text_to = Vec::with_capacity(recipients.len());
        let mut json_to = Vec::new();
        for &recipient in recipients {
            if Some(recipient) == except {
                continue;
            }
            let (delivery, mode) =
                sessions.charge_in_mode(recipient, self.max_queued_bytes, |mode| match mode {
                    Mode::Text => text.get_or_insert_with(|| line.text()).len(),
                    Mode::Json => json.get_or_insert_with(|| line.json(unix_ms)).len(),
                });
            match delivery {
                Delivery::Send if mode == Mode::Text => text_to.push(recipient),
                Delivery::Send => json_to.push(recipient),
                Delivery::SlowReader => self.slow_readers.push(recipient),
                Delivery::Skip => {}
            }
        }
        for (to, data) in [(text_to, text), (json_to, json)] {
            let Some(data) = data else { continue };
            self.deliveries += to.len() as u64;
            self.bytes_out += (to.len() * data.len()) as u64;
            match to[..] {
                [] => {}
                [connection] => self
                    .outputs
                    .push_back(Output::Transmit { connection, data }),
                _ => self.outputs.push_back(Output::Broadcast {
                    recipients: to,
                    data,
                }),
            }
        }
    }

    /// Wall-clock milliseconds at the current input's `now`, if the caller gave a clock.
    fn unix_ms(&self) -> Option<i64> {
        let clock = self.wall_clock?;
        let now = self.now?;
        let since = now.saturating_duration_since(clock.at).as_millis();
        let before = clock.at.saturating_duration_since(now).as_millis();
        let ms = i64::try_from(since).unwrap_or(i64::MAX) - i64::try_from(before).unwrap_or(0);
        Some(clock.unix_ms.saturating_add(ms))
    }
}

impl Engine {
    /// An engine with no connections, enforcing the limits in `config`.
    pub fn new(mut config: Config) -> Self {
        // A transfer moves at least one byte at a time and may hold at least one: with
        // either at 0 it could never finish.
        config.transfer_chunk_bytes = config.transfer_chunk_bytes.max(1);
        config.transfer_window_bytes = config.transfer_window_bytes.max(1);
        Engine {
            outbox: Outbox {
                outputs: VecDeque::new(),
                max_queued_bytes: config.max_queued_bytes,
                slow_readers: Vec::new(),
                wall_clock: config.wall_clock,
                now: None,
                deliveries: 0,
                bytes_out: 0,
            },
            account_failures: FailureLog::new(
                config.max_tracked_login_failures,
                config.login_failure_window,
            ),
            address_failures: FailureLog::new(
                config.max_tracked_login_failures,
                config.login_failure_window,
            ),
            config,
            sessions: Sessions::default(),
            connections_per_address: BTreeMap::new(),
            accounts: BTreeMap::new(),
            channels: BTreeMap::new(),
            pending: BTreeMap::new(),
            timers: BTreeSet::new(),
            next_request: 0,
            next_message: 0,
            shutting_down: false,
            transfers: BTreeMap::new(),
            next_transfer: 0,
            line: Vec::new(),
            stats: Stats::default(),
        }
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
            ..self.stats
        }
    }

    /// Bytes handed out for `connection` and not yet reported written (0 if unknown).
    pub fn queued_bytes(&self, connection: ConnectionId) -> usize {
        self.sessions.queued_bytes(connection)
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
        self.outbox.now = Some(now);
        let session = Session {
            peer,
            stage: Stage::LoggingIn(Login::AskAccount),
            framer: LineFramer::new(self.config.max_line_bytes),
            flood: Default::default(),
            throttled_until: None,
            awaiting: 0,
            reading_paused: false,
            login_failures: 0,
            login_deadline: None,
            upload: None,
        };
        let connection = self.sessions.insert(session);
        self.stats.connections_opened += 1;
        let from_address = self.connections_per_address.entry(peer.ip()).or_insert(0);
        *from_address += 1;
        let from_address = *from_address;

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
            self.timers
                .insert((deadline, connection, Timer::LoginDeadline));
        }
        self.finish_input();
        connection
    }

    /// Bytes arrived from `connection`. Any split of a stream across calls gives the same
    /// result.
    pub fn handle_received(&mut self, connection: ConnectionId, data: &[u8], now: Instant) {
        self.outbox.now = Some(now);
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
        self.outbox.now = Some(now);
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
        self.outbox.now = Some(now);
        self.on_file_opened(transfer, result);
        self.finish_input();
    }

    /// Bytes read from the server-side file of `transfer`, after an [`Output::ReadFile`]:
    /// at least one byte and at most the `max` asked for (fewer bytes than the file's
    /// size before its end, or an empty read, ends the transfer as failed).
    pub fn handle_file_data(&mut self, transfer: TransferId, data: &[u8], now: Instant) {
        self.outbox.now = Some(now);
        self.on_file_data(transfer, data);
        self.finish_input();
    }

    /// Reading the server-side file of `transfer` failed.
    pub fn handle_file_failed(&mut self, transfer: TransferId, error: FileError, now: Instant) {
        self.outbox.now = Some(now);
        self.on_file_failed(transfer, &error);
        self.finish_input();
    }

    /// The peer closed `connection` (or it failed) at `now`. The engine forgets it and
    /// tells its channel (a line stamped `now`); no `Close` output follows, and its slot is
    /// reused only after the next drain.
    pub fn handle_peer_closed(&mut self, connection: ConnectionId, now: Instant) {
        self.outbox.now = Some(now);
        if let Some(session) = self.forget(connection, Departure::Announced) {
            tracing::info!(%connection, peer = %session.peer, "disconnected by the peer");
        }
        self.finish_input();
    }

    /// The answer to store request `id`. Answers for unknown or finished requests, and
    /// answers that do not fit the request, are ignored (the latter logged).
    pub fn handle_store_reply(&mut self, id: RequestId, reply: StoreReply, now: Instant) {
        self.outbox.now = Some(now);
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
                existing, account, ..
            } => {
                self.on_authenticated(connection, existing, &account, reply, now);
            }
            Pending::History { channel, asked, .. } => {
                self.on_history(connection, &channel, asked, reply);
            }
            Pending::OfflineMessages { .. } => self.on_offline_messages(connection, reply),
            Pending::OfflineDirect { recipient, .. } => {
                self.on_offline_direct_stored(connection, &recipient, reply);
            }
            Pending::SetRole { .. } => self.on_role_set(connection, reply),
        }
        self.process_input(connection, now);
        self.finish_input();
    }

    /// Time has come to `now`: login deadlines and flood control waits that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.outbox.now = Some(now);
        while let Some(&(at, connection, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
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
                Timer::FloodRetry if session.throttled_until == Some(at) => {
                    session.throttled_until = None;
                    self.process_input(connection, now);
                }
                _ => {}
            }
        }
        self.finish_input();
    }

    /// The server is going down at `now`: every connection is told and closed after its
    /// queued bytes. From now on [`Engine::handle_connect`] refuses every client (its only
    /// outputs are a shutdown notice and a `Close`), so the driver need not decide that
    /// itself.
    pub fn handle_shutdown(&mut self, now: Instant) {
        self.outbox.now = Some(now);
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
        let output = self.outbox.outputs.pop_front();
        if output.is_none() {
            self.sessions.recycle();
        }
        output
    }

    /// When to call [`Engine::handle_timeout`] next, if anything waits for time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _, _)| at)
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
        self.outbox.outputs.push_back(Output::Store {
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
            let Some(session) = self.sessions.get_mut(connection) else {
                return;
            };
            if dropping || session.is_blocked() {
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
                self.timers
                    .insert((retry_at, connection, Timer::FloodRetry));
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
    /// it can; a connection holding more than the limits allow is closed for flooding.
    fn apply_backpressure(&mut self, connection: ConnectionId) {
        let Some(session) = self.sessions.get_mut(connection) else {
            return;
        };
        let max_lines = self.config.max_pending_lines;
        let lines = match session.upload {
            Some(_) => 0,
            // Bytes after a pending upload line are file data, not lines: count up to it.
            None if session.framer.pending_frames() > max_lines => {
                session.framer.lines_until(is_upload_line)
            }
            None => session.framer.pending_frames(),
        };
        let bytes = session.framer.buffered_bytes();
        let max_bytes = (max_lines + 2).saturating_mul(self.config.max_line_bytes + 2);
        if lines > max_lines || bytes > max_bytes.max(self.config.transfer_window_bytes) {
            tracing::info!(%connection, lines, bytes, "closing a flooding connection");
            self.stats.flood_disconnects += 1;
            self.error(
                connection,
                ErrorCode::Flooding,
                format_args!("too many lines at once; slow down"),
            );
            self.close(connection, CloseReason::Flood, Departure::Announced);
            return;
        }
        let must_wait = bytes > 0 && session.is_blocked();
        if must_wait != session.reading_paused {
            session.reading_paused = must_wait;
            let output = if must_wait {
                Output::PauseReading(connection)
            } else {
                Output::ResumeReading(connection)
            };
            self.outbox.outputs.push_back(output);
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
            // Input waits while authenticating, so `Authenticating` is never read here.
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
        self.outbox.outputs.push_back(Output::Close {
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
            self.timers.remove(&(at, connection, Timer::LoginDeadline));
        }
        if let Some(at) = session.throttled_until {
            self.timers.remove(&(at, connection, Timer::FloodRetry));
        }
        let ip = session.peer.ip();
        if let Some(count) = self.connections_per_address.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.connections_per_address.remove(&ip);
            }
        }
        if let Some(member) = session.member()
            && let Some(account) = self.accounts.get_mut(&member.account)
        {
            account.sessions.retain(|&s| s != connection);
            if account.sessions.is_empty() {
                self.accounts.remove(&member.account);
            }
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
        let (channel_key, slot) = (member.channel.clone(), member.slot_in_channel);
        let name = match departure {
            Departure::Announced => self.username_of(connection).unwrap_or_default(),
            Departure::Silent => String::new(),
        };
        let Some(channel) = self.channels.get_mut(&channel_key) else {
            return;
        };
        if channel.members.get(slot) != Some(&connection) {
            tracing::error!(%connection, "channel membership out of step");
            return;
        }
        channel.members.swap_remove(slot);
        if let Some(&moved) = channel.members.get(slot)
            && let Some(Stage::Chatting(m)) = self.sessions.get_mut(moved).map(|s| &mut s.stage)
        {
            m.slot_in_channel = slot;
        }
        if channel.members.is_empty() {
            self.channels.remove(&channel_key);
            return;
        }
        if departure == Departure::Announced {
            let channel = &self.channels[&channel_key];
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
        let key = crate::names::channel_key(name);
        let channel = self.channels.entry(key.clone()).or_insert_with(|| Channel {
            name: name.to_string(),
            members: Vec::new(),
        });
        channel.members.push(connection);
        let slot = channel.members.len() - 1;
        let display = channel.name.clone();
        if let Some(Stage::Chatting(member)) =
            self.sessions.get_mut(connection).map(|s| &mut s.stage)
        {
            member.channel = key.clone();
            member.slot_in_channel = slot;
        }
        let user = self.username_of(connection).unwrap_or_default();
        let channel = &self.channels[&key];
        let line = Line::Joined {
            user: &user,
            channel: &display,
        };
        self.outbox.broadcast(
            &mut self.sessions,
            &channel.members,
            Some(connection),
            &line,
        );
        display
    }

    fn username_of(&self, connection: ConnectionId) -> Option<String> {
        let member = self.sessions.get(connection)?.member()?;
        Some(self.accounts.get(&member.account)?.username.clone())
    }

    /// Closes the slow readers found while handling the last input.
    fn finish_input(&mut self) {
        while let Some(connection) = self.outbox.slow_readers.pop() {
            if self.sessions.get(connection).is_some() {
                let queued = self.sessions.queued_bytes(connection);
                tracing::warn!(%connection, queued, "dropping slow reader");
                self.stats.slow_readers_dropped += 1;
                self.close(connection, CloseReason::SlowReader, Departure::Announced);
            }
        }
    }
}
