//! File streaming between users: the transfer state machine, its limits and its
//! backpressure.
//!
//! A transfer moves bytes from a source (the sender's own connection, right after its
//! `/send` line, or a server-side file the driver reads for us) to one session of the
//! recipient, in chunks. The engine never holds more than `transfer_window_bytes` unwritten
//! for the recipient: past that the sender's connection stops being read (or no further
//! file read is asked for) until the recipient catches up.
//!
//! A transfer that moves no bytes for `transfer_idle_timeout` (the sender stopped, the
//! recipient stopped reading, the file cannot be read) is cancelled, so a stalled transfer
//! never holds one of its sender's slots for ever. An upload announcing more than
//! `max_file_bytes` closes its connection: its bytes could not be skipped in any
//! reasonable time.
//!
//! In a cluster, the sender and the recipient may be on different nodes: the transfer then
//! runs on both, linked by the payloads of [`between_nodes`], and the window is the
//! recipient's node's to grant.

mod between_nodes;

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::sanctions;
use super::timers::Timer;
use super::{Departure, Engine, Sender};
use crate::cluster::{Body, Topic};
use crate::file::{FileError, check_relative_path, is_valid_file_name};
use crate::ids::{ConnectionId, TransferId};
use crate::names::{is_valid_username, username_key};
use crate::output::{CloseReason, Output};
use crate::sanitize::sanitize_text;
use crate::store::{PrivateMessage, StoreRequest};
use crate::wire::{ErrorCode, Line};

/// What a file name may be, as told to a sender whose name breaks the rules.
const FILE_NAME_RULE: &str =
    "file names are 1 to 255 bytes, without '/', '\\', control or invisible characters";

/// One running transfer.
#[derive(Debug)]
struct Transfer {
    sender_account: String,
    sender_name: String,
    /// Who asked for the transfer.
    requester: Requester,
    /// The session the file goes to.
    recipient: Recipient,
    recipient_name: String,
    name: String,
    size: u64,
    remaining: u64,
    source: Source,
    /// `None` when `transfer_idle_timeout` is off.
    idle: Option<IdleTimer>,
}

impl Transfer {
    /// The sender's connection, when it is on this node.
    fn requester_here(&self) -> Option<ConnectionId> {
        match self.requester {
            Requester::Here(connection) => Some(connection),
            Requester::Node { .. } => None,
        }
    }

    /// The recipient's connection, when it is on this node.
    fn recipient_here(&self) -> Option<ConnectionId> {
        match self.recipient {
            Recipient::Here(connection) => Some(connection),
            Recipient::Node { .. } => None,
        }
    }

    /// The connection the transfer's idle timer goes with: the sender's if it is here,
    /// else the recipient's (one of them always is).
    fn timer_owner(&self) -> Option<ConnectionId> {
        self.requester_here().or(self.recipient_here())
    }

    /// File bytes that went to the recipient (or, to another node, were sent there).
    fn moved(&self) -> u64 {
        self.size - self.remaining
    }
}

/// Where the sender of a transfer is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requester {
    /// The connection of this node that typed `/send`.
    Here(ConnectionId),
    /// Another node, whose transfer `transfer` this is; `granted`: how many of the file's
    /// bytes this node has let it send (the recipient is here).
    Node {
        node: String,
        transfer: u64,
        granted: u64,
    },
}

/// Where the recipient of a transfer is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recipient {
    /// A session of this node.
    Here(ConnectionId),
    /// A session on another node; `credit`: how many of the file's bytes that node lets
    /// this one send (the sender is here).
    Node { node: String, credit: u64 },
}

/// When a transfer last moved bytes, and when its idle timer is due.
///
/// A chunk only updates `last_progress`; the timer is looked at when it is due and set
/// again for `last_progress + transfer_idle_timeout` if bytes moved meanwhile, so a busy
/// transfer costs no timer work per chunk.
#[derive(Debug, Clone, Copy)]
struct IdleTimer {
    /// When file bytes last went to the recipient (at first: when the transfer started).
    last_progress: Instant,
    /// When the [`Timer::TransferIdle`] of the transfer is due.
    due: Instant,
}

/// The running transfers, by id.
#[derive(Debug, Default)]
pub(super) struct Transfers {
    running: BTreeMap<TransferId, Transfer>,
    /// The last id handed out (ids count up and are never reused).
    last_id: u64,
    /// Senders whose upload ended while it waited for the recipient (reading paused):
    /// read again once the current input is done, their owed bytes dropped.
    ended_while_stalled: Vec<ConnectionId>,
}

impl Transfers {
    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    fn start(&mut self, transfer: Transfer) -> TransferId {
        self.last_id += 1;
        let id = TransferId(self.last_id);
        self.running.insert(id, transfer);
        id
    }

    fn get(&self, id: TransferId) -> Option<&Transfer> {
        self.running.get(&id)
    }

    fn get_mut(&mut self, id: TransferId) -> Option<&mut Transfer> {
        self.running.get_mut(&id)
    }

    fn remove(&mut self, id: TransferId) -> Option<Transfer> {
        self.running.remove(&id)
    }

    /// How many transfers account `account` is sending from this node.
    fn sent_by(&self, account: &str) -> usize {
        self.running
            .values()
            .filter(|t| t.sender_account == account && t.requester_here().is_some())
            .count()
    }

    /// The transfers `connection` receives.
    fn received_by(&self, connection: ConnectionId) -> Vec<TransferId> {
        self.running
            .iter()
            .filter(|(_, t)| t.recipient_here() == Some(connection))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The transfers `connection` takes part in, each with what its going away means.
    fn involving(&self, connection: ConnectionId) -> Vec<(TransferId, &'static str)> {
        self.running
            .iter()
            .filter_map(|(id, t)| {
                if t.recipient_here() == Some(connection) {
                    Some((*id, "the recipient disconnected"))
                } else if t.requester_here() == Some(connection)
                    || t.source == Source::Upload(connection)
                {
                    Some((*id, "the sender disconnected"))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// Where a transfer's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The sender's connection, raw bytes after the `/send` line.
    Upload(ConnectionId),
    /// A server-side file read by the driver.
    File {
        /// The driver answered the open (size known, both sides told).
        opened: bool,
        /// A `ReadFile` is out and unanswered.
        reading: bool,
    },
    /// Another node's publications ([`Requester::Node`]).
    Peer,
}

/// What an upload does next with the bytes in front of it ([`Engine::plan_upload`]).
enum UploadStep {
    /// Nothing to take.
    Wait,
    /// The recipient's window is full: wait for it to drain.
    Stall,
    /// Drop this many bytes of a refused or ended upload.
    Discard(usize),
    /// Send `len` bytes to the recipient as `chunk`.
    Forward {
        id: TransferId,
        len: usize,
        chunk: Chunk,
    },
}

/// A chunk of file bytes, made ready for where the recipient is.
enum Chunk {
    /// A line for the recipient's connection here, in its mode (`None`: it is gone).
    Line(Option<Bytes>),
    /// A [`Body::FileChunk`](crate::cluster::Body::FileChunk) for the recipient's node.
    Publication(Topic, Bytes),
}

impl UploadStep {
    /// Bytes of the input the step uses up.
    fn consumed(&self) -> usize {
        match self {
            UploadStep::Wait | UploadStep::Stall => 0,
            UploadStep::Discard(len) | UploadStep::Forward { len, .. } => *len,
        }
    }
}

/// Raw bytes a connection still owes after its `/send` line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upload {
    /// `None`: the transfer was refused or has ended; the bytes are read and dropped.
    pub(crate) transfer: Option<TransferId>,
    pub(crate) remaining: u64,
    /// The recipient's window is full: wait for it.
    pub(crate) stalled: bool,
}

impl Engine {
    /// `/send <user> <name> <size>`: the next `size` bytes on this connection are the file,
    /// whether or not the transfer can start (refused bytes are dropped, never read as
    /// commands). A `size` above `max_file_bytes` closes the connection instead: those
    /// bytes (up to 2^64 − 1 of them) would never end.
    pub(super) fn start_upload(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        to: &str,
        name: &str,
        size: u64,
    ) {
        let max = self.config.max_file_bytes;
        if size > max {
            self.error(
                connection,
                ErrorCode::FileTooLarge,
                format_args!(
                    "file too large (max {max} bytes); closing the connection rather than \
                     reading the {size} bytes announced"
                ),
            );
            return self.close(
                connection,
                CloseReason::UploadTooLarge,
                Departure::Announced,
            );
        }
        if size > 0
            && let Some(session) = self.sessions.get_mut(connection)
        {
            session.upload = Some(Upload {
                transfer: None,
                remaining: size,
                stalled: false,
            });
        }
        let checked = if is_valid_file_name(name) {
            self.check_new_transfer(sender, to)
        } else {
            Err((ErrorCode::InvalidFileName, FILE_NAME_RULE.to_string()))
        };
        let recipient = match checked {
            Ok(recipient) => recipient,
            Err((code, reason)) => {
                let dropped = if size > 0 {
                    format!("; the {size} bytes that follow are discarded")
                } else {
                    String::new()
                };
                return self.error(connection, code, format_args!("{reason}{dropped}"));
            }
        };
        let requester = Requester::Here(connection);
        let source = Source::Upload(connection);
        let from = (sender.account.as_str(), sender.username.as_str());
        let id = self.new_transfer(from, requester, recipient, name, source);
        if let Some(upload) = self
            .sessions
            .get_mut(connection)
            .and_then(|s| s.upload.as_mut())
        {
            upload.transfer = Some(id);
        }
        self.announce(id, size);
    }

    /// `/send <user> <path>`: a file from the operator's files directory.
    pub(super) fn start_server_file(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        to: &str,
        path: &str,
    ) {
        if !self.config.server_files {
            return self.error(
                connection,
                ErrorCode::FilesOff,
                format_args!("server-side files are off on this server"),
            );
        }
        if let Err(problem) = check_relative_path(path) {
            return self.error(
                connection,
                ErrorCode::InvalidPath,
                format_args!("{problem}"),
            );
        }
        // The recipient is shown the name: it follows an upload's rules, so no
        // bidirectional override (say) disguises what the file is.
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        if !is_valid_file_name(&name) {
            return self.error(
                connection,
                ErrorCode::InvalidFileName,
                format_args!("{FILE_NAME_RULE}"),
            );
        }
        let recipient = match self.check_new_transfer(sender, to) {
            Ok(recipient) => recipient,
            Err((code, reason)) => return self.error(connection, code, format_args!("{reason}")),
        };
        let source = Source::File {
            opened: false,
            reading: false,
        };
        let requester = Requester::Here(connection);
        let from = (sender.account.as_str(), sender.username.as_str());
        let transfer = self.new_transfer(from, requester, recipient, &name, source);
        self.outbox.push(Output::OpenFile {
            transfer,
            path: path.to_string(),
        });
    }

    /// `/cancel <id>`, by the sender or the recipient.
    pub(super) fn cancel_transfer(&mut self, connection: ConnectionId, sender: &Sender, id: u64) {
        let id = TransferId(id);
        let allowed = self.transfers.get(id).is_some_and(|t| {
            t.sender_account == sender.account || username_key(&t.recipient_name) == sender.account
        });
        if !allowed {
            return self.error(
                connection,
                ErrorCode::NoSuchTransfer,
                format_args!("no such transfer: {id}"),
            );
        }
        self.end_transfer(id, Some(format!("cancelled by {}", sender.username)));
    }

    /// The driver opened (or could not open) a server-side file.
    pub(super) fn on_file_opened(&mut self, id: TransferId, result: Result<u64, FileError>) {
        let Some(transfer) = self.transfers.get_mut(id) else {
            return;
        };
        if transfer.source
            != (Source::File {
                opened: false,
                reading: false,
            })
        {
            return;
        }
        let Some(requester) = transfer.requester_here() else {
            return;
        };
        let size = match result {
            Ok(size) if size > self.config.max_file_bytes => {
                let max = self.config.max_file_bytes;
                self.outbox.push(Output::CloseFile { transfer: id });
                self.take_transfer(id);
                return self.error(
                    requester,
                    ErrorCode::FileTooLarge,
                    format_args!("file too large (max {max} bytes)"),
                );
            }
            Ok(size) => size,
            Err(error) => {
                if let FileError::Io(detail) = &error {
                    tracing::warn!(transfer = %id, %detail, "server-side file failed to open");
                }
                let (code, message) = match error {
                    FileError::NotFound => {
                        (ErrorCode::NoSuchFile, "no such file in the files directory")
                    }
                    FileError::NotAllowed => {
                        (ErrorCode::FileNotAllowed, "that file may not be sent")
                    }
                    FileError::Io(_) => (ErrorCode::FileUnreadable, "the file could not be read"),
                };
                self.take_transfer(id);
                return self.error(requester, code, format_args!("{message}"));
            }
        };
        transfer.source = Source::File {
            opened: true,
            reading: false,
        };
        self.announce(id, size);
        self.read_more(id);
    }

    /// Bytes the driver read from a server-side file.
    pub(super) fn on_file_data(&mut self, id: TransferId, data: &[u8]) {
        let Some(transfer) = self.transfers.get_mut(id) else {
            return;
        };
        let Source::File {
            opened: true,
            reading: true,
        } = transfer.source
        else {
            return;
        };
        transfer.source = Source::File {
            opened: true,
            reading: false,
        };
        if data.is_empty() || data.len() as u64 > transfer.remaining {
            return self.end_transfer(id, Some("the file changed while it was being sent".into()));
        }
        self.forward(id, data);
        self.read_more(id);
    }

    /// Reading a server-side file failed.
    pub(super) fn on_file_failed(&mut self, id: TransferId, error: &FileError) {
        if self.transfers.get(id).is_some() {
            tracing::warn!(transfer = %id, %error, "server-side file failed");
            self.end_transfer(id, Some("the file could not be read".into()));
        }
    }

    /// The idle timer of transfer `id`, set for `at`, is due at `now`: the transfer is
    /// cancelled if no bytes moved within `transfer_idle_timeout`, else checked again that
    /// long after its last progress.
    pub(super) fn on_transfer_idle(&mut self, id: TransferId, at: Instant, now: Instant) {
        let timeout = self.config.transfer_idle_timeout;
        let Some(transfer) = self.transfers.get_mut(id) else {
            return;
        };
        let Some(idle) = transfer.idle.as_mut().filter(|idle| idle.due == at) else {
            return;
        };
        let Some(deadline) = idle.last_progress.checked_add(timeout) else {
            // A timeout past any instant never ends.
            transfer.idle = None;
            return;
        };
        if deadline > now {
            // Bytes moved since the timer was set.
            idle.due = deadline;
            if let Some(owner) = transfer.timer_owner() {
                self.timers.set(deadline, owner, Timer::TransferIdle(id));
            }
            return;
        }
        let source = transfer.source;
        let stuck = if self.window_room(id) == 0 {
            "the recipient read nothing"
        } else {
            match source {
                Source::Upload(_) | Source::Peer => "the sender sent nothing",
                Source::File { .. } => "the file could not be read",
            }
        };
        tracing::info!(transfer = %id, ?timeout, stuck, "file transfer idle");
        self.end_transfer(id, Some(format!("idle for {timeout:?}: {stuck}")));
    }

    /// Moves raw bytes of `connection`'s upload that wait in its framer into its transfer
    /// while the recipient's window has room. Returns false when it must wait (for bytes
    /// or for room).
    pub(super) fn pump_upload(&mut self, connection: ConnectionId) -> bool {
        let Some(session) = self.sessions.get(connection) else {
            return false;
        };
        let Some(upload) = session.upload else {
            return false;
        };
        let ahead = session.framer.peek(self.config.transfer_chunk_bytes + 1);
        let step = self.plan_upload(upload, ahead);
        if let Some(session) = self.sessions.get_mut(connection) {
            session.framer.skip(step.consumed());
        }
        self.take_upload_step(connection, step)
    }

    /// Takes the upload bytes at the front of `data`, just received on `connection`, straight
    /// to the recipient (no copy into the framer) while the upload can go on; returns the
    /// rest, for the framer.
    pub(super) fn upload_from_input<'a>(
        &mut self,
        connection: ConnectionId,
        mut data: &'a [u8],
    ) -> &'a [u8] {
        while !data.is_empty() {
            let dropping = self.sessions.is_dropping(connection);
            let Some(session) = self.sessions.get(connection) else {
                break;
            };
            let Some(upload) = session.upload else {
                break;
            };
            if dropping || session.is_blocked() || session.framer.buffered_bytes() > 0 {
                break;
            }
            let step = self.plan_upload(upload, data);
            data = &data[step.consumed()..];
            if !self.take_upload_step(connection, step) {
                break;
            }
        }
        data
    }

    /// What `upload` does next with `ahead`, the bytes it has in front of it (rendering
    /// the chunk needs only a look at them, so they can stay where they are).
    fn plan_upload(&self, upload: Upload, ahead: &[u8]) -> UploadStep {
        if ahead.is_empty() {
            return UploadStep::Wait;
        }
        let Some(id) = upload.transfer else {
            // Refused or ended: drop what is owed.
            let len = upload.remaining.min(ahead.len() as u64) as usize;
            return UploadStep::Discard(len);
        };
        let room = self.window_room(id).min(self.config.transfer_chunk_bytes);
        let Some(transfer) = self.transfers.get(id).filter(|_| room > 0) else {
            return UploadStep::Stall;
        };
        let limit = (room as u64).min(upload.remaining).min(ahead.len() as u64) as usize;
        let len = char_boundary(
            &ahead[..ahead.len().min(limit + 1)],
            limit,
            upload.remaining,
        );
        let chunk = self.chunk(id, transfer, &ahead[..len]);
        UploadStep::Forward { id, len, chunk }
    }

    /// File bytes `data` of transfer `id` made ready for its recipient, here or on its
    /// node.
    fn chunk(&self, id: TransferId, transfer: &Transfer, data: &[u8]) -> Chunk {
        match &transfer.recipient {
            Recipient::Here(recipient) => {
                let line = Line::FileChunk { id, data };
                Chunk::Line(self.outbox.render(&self.sessions, *recipient, &line))
            }
            Recipient::Node { node, .. } => {
                let body = Body::FileChunk {
                    transfer: id.0,
                    offset: transfer.moved(),
                };
                let topic = Topic::Node(node.clone());
                let payload = self.publication(&topic, body, data);
                Chunk::Publication(topic, payload)
            }
        }
    }

    /// Carries out a planned step whose bytes have left the input; returns whether the
    /// upload went on (false: it waits).
    fn take_upload_step(&mut self, connection: ConnectionId, step: UploadStep) -> bool {
        let Some(upload) = self
            .sessions
            .get_mut(connection)
            .and_then(|s| s.upload.as_mut())
        else {
            return false;
        };
        match step {
            UploadStep::Wait => false,
            UploadStep::Stall => {
                upload.stalled = true;
                false
            }
            UploadStep::Discard(len) => {
                upload.remaining -= len as u64;
                if upload.remaining == 0
                    && let Some(session) = self.sessions.get_mut(connection)
                {
                    session.upload = None;
                }
                true
            }
            UploadStep::Forward { id, len, chunk } => {
                upload.remaining -= len as u64;
                if upload.remaining == 0
                    && let Some(session) = self.sessions.get_mut(connection)
                {
                    // Every byte is sent: what follows is lines again (a recipient on
                    // another node may not have them all yet).
                    session.upload = None;
                }
                self.forward_rendered(id, len, chunk);
                true
            }
        }
    }

    /// The recipient `connection` wrote some of its queue: let waiting sources go on.
    pub(super) fn recipient_drained(&mut self, connection: ConnectionId, now: Instant) {
        for id in self.transfers.received_by(connection) {
            self.go_on(id, now);
        }
    }

    /// The recipient of transfer `id` has room again (it wrote some of its queue, or its
    /// node granted credit): the source goes on if it waited.
    fn go_on(&mut self, id: TransferId, now: Instant) {
        if self.window_room(id) == 0 {
            return;
        }
        let Some(source) = self.transfers.get(id).map(|t| t.source) else {
            return;
        };
        match source {
            Source::Upload(sender) => {
                let stalled = self
                    .sessions
                    .get_mut(sender)
                    .and_then(|s| s.upload.as_mut())
                    .filter(|u| u.stalled);
                if let Some(upload) = stalled {
                    upload.stalled = false;
                    self.process_input(sender, now);
                }
            }
            Source::File {
                opened: true,
                reading: false,
            } => self.read_more(id),
            Source::File { .. } => {}
            Source::Peer => self.grant_credit(id),
        }
    }

    /// Senders whose upload ended while waiting for its recipient go on with their input
    /// (the rest of the upload is dropped, then lines are commands again). Called once an
    /// input is done, never in the middle of another connection's lines or departure.
    pub(super) fn resume_ended_uploads(&mut self) {
        let Some(now) = self.outbox.now() else {
            return;
        };
        while let Some(sender) = self.transfers.ended_while_stalled.pop() {
            self.process_input(sender, now);
        }
    }

    /// `connection` is going away: every transfer it takes part in ends.
    pub(super) fn end_transfers_of(&mut self, connection: ConnectionId) {
        for (id, reason) in self.transfers.involving(connection) {
            let untold = Untold::Connection(connection);
            self.end_transfer_without(id, Some(reason.to_string()), untold);
        }
    }

    /// Ends a transfer: completed (`failure` is `None`) or cancelled, both sides told (and
    /// the other node, when one side is there), the outcome recorded in the history (by
    /// the sender's node) and the log.
    pub(super) fn end_transfer(&mut self, id: TransferId, failure: Option<String>) {
        self.end_transfer_without(id, failure, Untold::Nobody);
    }

    /// [`Engine::end_transfer`], telling nothing to `untold`.
    fn end_transfer_without(&mut self, id: TransferId, failure: Option<String>, untold: Untold) {
        let departing = match untold {
            Untold::Connection(connection) => Some(connection),
            Untold::Nobody | Untold::Node => None,
        };
        let Some(transfer) = self.take_transfer(id) else {
            return;
        };
        match transfer.source {
            Source::Upload(sender) => {
                if let Some(session) = self.sessions.get_mut(sender)
                    && let Some(upload) = session.upload.as_mut()
                    && upload.transfer == Some(id)
                {
                    upload.transfer = None;
                    if upload.stalled && departing != Some(sender) {
                        self.transfers.ended_while_stalled.push(sender);
                    }
                    upload.stalled = false;
                    if upload.remaining == 0 {
                        session.upload = None;
                    }
                }
            }
            Source::File { .. } => self.outbox.push(Output::CloseFile { transfer: id }),
            Source::Peer => {}
        }
        if untold != Untold::Node {
            self.tell_other_node(id, &transfer, failure.as_deref());
        }
        let (name, size) = (&transfer.name, transfer.size);
        match failure {
            None => self.stats.transfers_completed += 1,
            Some(_) => self.stats.transfers_cancelled += 1,
        }
        let (requester, recipient) = (transfer.requester_here(), transfer.recipient_here());
        let outcome = match &failure {
            None => {
                if let Some(requester) = requester {
                    let to = &transfer.recipient_name;
                    self.send(requester, Line::FileSent { id, name, to });
                }
                if let Some(recipient) = recipient {
                    let from = &transfer.sender_name;
                    let line = Line::FileReceived {
                        id,
                        name,
                        size,
                        from,
                    };
                    self.send(recipient, line);
                }
                "completed".to_string()
            }
            Some(reason) => {
                for side in [requester, recipient].into_iter().flatten() {
                    if Some(side) != departing {
                        self.send(side, Line::FileCancelled { id, reason });
                    }
                }
                format!("cancelled ({reason})")
            }
        };
        tracing::info!(
            transfer = %id,
            from = %transfer.sender_name,
            to = %transfer.recipient_name,
            file = %name,
            size,
            %outcome,
            "file transfer ended"
        );
        if requester.is_none() {
            // The sender's node records it.
            return;
        }
        let record = PrivateMessage {
            id: self.next_message_id(),
            sender: transfer.sender_name.clone(),
            recipient: transfer.recipient_name.clone(),
            text: format!("[file] {name} ({size} bytes): {outcome}"),
            delivered: true,
        };
        self.request(StoreRequest::AppendPrivateMessage(record));
    }

    /// Whether `sender` may start a transfer to `to` now; where the recipient is, and
    /// their name, if so: their newest session here, else a node that has one.
    fn check_new_transfer(
        &self,
        sender: &Sender,
        to: &str,
    ) -> Result<(Recipient, String), (ErrorCode, String)> {
        if let Some(mute) = self.mute_in_force(&sender.account) {
            return Err((ErrorCode::Muted, sanctions::muted_text(mute)));
        }
        let key = username_key(to);
        let here = self.accounts.get(&key).and_then(|account| {
            let newest = account.sessions.last()?;
            Some((Recipient::Here(*newest), account.username.clone()))
        });
        let elsewhere = || {
            let account = self.cluster.as_ref()?.peers.account(&key)?;
            let node = account.nodes.keys().next()?.clone();
            Some((Recipient::Node { node, credit: 0 }, account.name.clone()))
        };
        let Some(recipient) = here.or_else(elsewhere).filter(|_| is_valid_username(to)) else {
            return Err((
                ErrorCode::NotOnline,
                format!("{} is not online", sanitize_text(to)),
            ));
        };
        if key == sender.account {
            let reason = "you cannot send a file to yourself".to_string();
            return Err((ErrorCode::CannotSendToSelf, reason));
        }
        let running = self.transfers.sent_by(&sender.account);
        let max = self.config.max_transfers_per_user;
        if running >= max {
            let reason = format!("you already have {max} transfers running; wait or /cancel one");
            return Err((ErrorCode::TooManyTransfers, reason));
        }
        Ok(recipient)
    }

    /// Starts a transfer from `sender` to the recipient found by
    /// [`Engine::check_new_transfer`] (or named by the sender's node).
    fn new_transfer(
        &mut self,
        (account, username): (&str, &str),
        requester: Requester,
        (recipient, recipient_name): (Recipient, String),
        name: &str,
        source: Source,
    ) -> TransferId {
        let timeout = self.config.transfer_idle_timeout;
        let idle = self
            .outbox
            .now()
            .filter(|_| !timeout.is_zero())
            .and_then(|now| {
                let due = now.checked_add(timeout)?;
                Some(IdleTimer {
                    last_progress: now,
                    due,
                })
            });
        let transfer = Transfer {
            sender_account: account.to_owned(),
            sender_name: username.to_owned(),
            requester,
            recipient,
            recipient_name,
            name: name.to_string(),
            size: 0,
            remaining: 0,
            source,
            idle,
        };
        let owner = transfer.timer_owner();
        if let Some(recipient) = transfer.recipient_here() {
            self.sessions.set_receiving(recipient, 1);
        }
        let id = self.transfers.start(transfer);
        if let (Some(idle), Some(owner)) = (idle, owner) {
            self.timers.set(idle.due, owner, Timer::TransferIdle(id));
        }
        id
    }

    /// Removes transfer `id` with its idle timer (alone: for a server-side transfer that
    /// failed before anyone was told of it); its recipient receives one transfer less.
    fn take_transfer(&mut self, id: TransferId) -> Option<Transfer> {
        let transfer = self.transfers.remove(id)?;
        if let Some(recipient) = transfer.recipient_here() {
            self.sessions.set_receiving(recipient, -1);
        }
        if let (Some(idle), Some(owner)) = (transfer.idle, transfer.timer_owner()) {
            self.timers.cancel(idle.due, owner, Timer::TransferIdle(id));
        }
        Some(transfer)
    }

    /// Both sides hear of the transfer (a recipient on another node through its node);
    /// an empty file for a recipient here completes at once.
    fn announce(&mut self, id: TransferId, size: u64) {
        let Some(transfer) = self.transfers.get_mut(id) else {
            return;
        };
        transfer.size = size;
        transfer.remaining = size;
        let (name, from, to) = (
            transfer.name.clone(),
            transfer.sender_name.clone(),
            transfer.recipient_name.clone(),
        );
        let (requester, recipient) = (transfer.requester_here(), transfer.recipient.clone());
        if let Some(requester) = requester {
            let line = Line::FileSending {
                id,
                to: &to,
                name: &name,
                size,
            };
            self.send(requester, line);
        }
        match recipient {
            Recipient::Here(recipient) => {
                let line = Line::FileOffer {
                    id,
                    from: &from,
                    name: &name,
                    size,
                };
                self.send(recipient, line);
                if size == 0 {
                    self.end_transfer(id, None);
                }
            }
            // The recipient's node completes it, even an empty one, and says so.
            Recipient::Node { node, .. } => self.offer_to_node(id, node, to, from, name, size),
        }
    }

    /// Sends one chunk to the recipient; the last one completes the transfer.
    fn forward(&mut self, id: TransferId, data: &[u8]) {
        let Some(transfer) = self.transfers.get(id) else {
            return;
        };
        let chunk = self.chunk(id, transfer, data);
        self.forward_rendered(id, data.len(), chunk);
    }

    /// Sends a chunk of `len` file bytes, ready for the recipient; the last one completes
    /// the transfer (for a recipient on another node: once its node says so).
    fn forward_rendered(&mut self, id: TransferId, len: usize, chunk: Chunk) {
        let now = self.outbox.now();
        let Some(transfer) = self.transfers.get_mut(id) else {
            return;
        };
        if let (Some(idle), Some(now)) = (transfer.idle.as_mut(), now) {
            idle.last_progress = now;
        }
        transfer.remaining -= len as u64;
        let done = transfer.remaining == 0;
        match (chunk, &transfer.recipient) {
            (Chunk::Line(line), &Recipient::Here(recipient)) => {
                if let Some(line) = line {
                    self.outbox.transmit(&mut self.sessions, recipient, line);
                }
                if done {
                    self.end_transfer(id, None);
                }
            }
            (Chunk::Publication(topic, payload), Recipient::Node { .. }) => {
                self.stats.bus_published += 1;
                self.outbox.push(Output::Publish { topic, payload });
            }
            _ => {}
        }
    }

    /// Asks the driver for the next piece of a server-side file, if there is room.
    fn read_more(&mut self, id: TransferId) {
        let room = self.window_room(id);
        let chunk = self.config.transfer_chunk_bytes;
        let Some(transfer) = self.transfers.get_mut(id) else {
            return;
        };
        if room == 0 || transfer.remaining == 0 {
            return;
        }
        let max = (room.min(chunk) as u64).min(transfer.remaining) as usize;
        transfer.source = Source::File {
            opened: true,
            reading: true,
        };
        self.outbox.push(Output::ReadFile { transfer: id, max });
    }

    /// How many more bytes the recipient of `id` may have queued (on another node: how
    /// many more its node's credit allows).
    fn window_room(&self, id: TransferId) -> usize {
        let Some(transfer) = self.transfers.get(id) else {
            return 0;
        };
        let window = self.config.transfer_window_bytes;
        match transfer.recipient {
            Recipient::Here(recipient) => {
                let queued = self.sessions.queued_bytes(recipient);
                let coming = self.transfers.on_the_way_to(recipient);
                window.saturating_sub(queued.saturating_add(coming))
            }
            Recipient::Node { credit, .. } => {
                let room = credit.saturating_sub(transfer.moved());
                usize::try_from(room).map_or(window, |room| room.min(window))
            }
        }
    }
}

/// Whom ending a transfer tells nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Untold {
    /// Every side is told.
    Nobody,
    /// This connection, going away.
    Connection(ConnectionId),
    /// The other node: it ended the transfer and knows.
    Node,
}

/// How many of `limit` bytes to take so a chunk does not end inside a UTF-8 character when
/// more of the file follows (text then reaches a terminal whole). `ahead` holds up to
/// `limit + 1` upcoming bytes.
fn char_boundary(ahead: &[u8], limit: usize, remaining: u64) -> usize {
    if limit as u64 >= remaining || ahead.len() <= limit {
        return limit;
    }
    let mut take = limit;
    // Step back over at most 3 continuation bytes; binary data just takes `limit`.
    while take > limit.saturating_sub(3) && take > 1 && ahead[take] & 0xC0 == 0x80 {
        take -= 1;
    }
    if ahead[take] & 0xC0 == 0x80 {
        limit
    } else {
        take
    }
}
