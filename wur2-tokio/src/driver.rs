//! The one task that owns the [`Engine`]: it feeds it connection events, store replies and
//! time, and carries out what the engine asks. It holds no chat state of its own, only
//! the table from connection ids to connection tasks, and it never waits on a socket or on
//! the store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use wur2_engine::{ConnectionId, Engine, Output, RequestId, StoreError, StoreReply};

use crate::Options;
use crate::connection::{self, Closing, Event, Link, Reports};
use crate::files::{FileEvent, Files};
use crate::storage::Storage;

/// Events taken from the connection channel per loop turn at most.
const EVENT_BATCH: usize = 512;
/// Received bytes handed to the engine per loop turn at most (one event may pass it).
/// Between turns the connection tasks write and report, which keeps the engine's count of
/// bytes queued per client close to the truth, so fast readers are not taken for slow.
const INPUT_BUDGET: usize = 64 * 1024;
/// Events waiting for the driver at most; a reader that finds the channel full waits, and
/// so stops reading its socket (backpressure instead of unbounded memory).
const EVENT_CHANNEL: usize = 4096;

/// The driver's record of one live connection.
struct Entry {
    link: Arc<Link>,
    peer: SocketAddr,
    /// Frames from the current drain round, handed over in one go at its end.
    staged: Vec<Bytes>,
    paused: bool,
    closing: Option<Closing>,
    /// Whether `id` is already in the round's list of connections to deliver to.
    dirty: bool,
}

/// Everything the engine's loop owns.
struct Driver<S> {
    engine: Engine,
    store: Arc<S>,
    options: Options,
    files: Files,
    connections: HashMap<ConnectionId, Entry>,
    dirty: Vec<ConnectionId>,
    /// Given to each new connection task; dropped at shutdown so the event channel closes
    /// once the last task is gone.
    reports: Option<Reports>,
    replies_tx: mpsc::UnboundedSender<(RequestId, StoreReply)>,
    /// Store requests started and not answered yet.
    in_flight: usize,
}

/// The receiving ends the engine's loop reads.
struct Channels {
    events: mpsc::Receiver<Event>,
    files: mpsc::UnboundedReceiver<FileEvent>,
    written: mpsc::UnboundedReceiver<(ConnectionId, usize)>,
    replies: mpsc::UnboundedReceiver<(RequestId, StoreReply)>,
}

/// Starts the accept loop and the engine's loop; returns the engine loop's task.
pub(crate) fn spawn<S: Storage>(
    listener: TcpListener,
    store: S,
    engine: Engine,
    options: Options,
    shutdown: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    let (events_tx, events) = mpsc::channel(EVENT_CHANNEL);
    let (written_tx, written) = mpsc::unbounded_channel();
    let (replies_tx, replies) = mpsc::unbounded_channel();
    let (files_tx, files) = mpsc::unbounded_channel();
    let accept = tokio::spawn(accept_loop(
        listener,
        events_tx.clone(),
        options.accept_backoff,
    ));
    let driver = Driver {
        engine,
        store: Arc::new(store),
        files: Files::new(options.files_dir.clone(), files_tx),
        options: options.clone(),
        connections: HashMap::new(),
        dirty: Vec::new(),
        reports: Some(Reports {
            events: events_tx,
            written: written_tx,
            flush_timeout: options.close_flush_timeout,
        }),
        replies_tx,
        in_flight: 0,
    };
    let channels = Channels {
        events,
        files,
        written,
        replies,
    };
    tokio::spawn(driver.run(channels, shutdown, accept))
}

/// Accepts clients and hands them to the driver. Accept errors (out of file descriptors,
/// a connection reset before it was accepted) back off instead of spinning.
async fn accept_loop(listener: TcpListener, events: mpsc::Sender<Event>, backoff: Duration) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(%peer, %error, "could not set TCP_NODELAY");
                }
                if events.send(Event::Accepted(stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                warn!(%error, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

impl<S: Storage> Driver<S> {
    async fn run(
        mut self,
        mut channels: Channels,
        mut shutdown: oneshot::Receiver<()>,
        accept: JoinHandle<()>,
    ) {
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        let mut shutdown_armed = true;
        let mut stop_by: Option<tokio::time::Instant> = None;
        let mut events_open = true;
        loop {
            if batch.is_empty() {
                let timeout = self.engine.poll_timeout();
                tokio::select! {
                    biased;
                    signal = &mut shutdown, if shutdown_armed => {
                        shutdown_armed = false;
                        // A dropped handle detaches the server instead of stopping it.
                        if signal.is_ok() {
                            accept.abort();
                            stop_by = Some(tokio::time::Instant::now() + self.options.shutdown_timeout);
                            self.begin_shutdown();
                        }
                    }
                    Some((id, bytes)) = channels.written.recv() => {
                        self.engine.handle_written(id, bytes);
                    }
                    received = channels.events.recv_many(&mut batch, EVENT_BATCH), if events_open => {
                        if received == 0 {
                            events_open = false;
                        }
                    }
                    Some((id, reply)) = channels.replies.recv() => {
                        self.handle_reply(id, reply, Instant::now());
                    }
                    Some(event) = channels.files.recv() => {
                        self.handle_file_event(event, Instant::now());
                    }
                    () = sleep_until_opt(timeout), if timeout.is_some() => {}
                    () = sleep_until_opt(stop_by.map(|t| t.into_std())), if stop_by.is_some() => {
                        warn!(
                            connections = self.connections.len(),
                            store_requests = self.in_flight,
                            "shutdown timed out; stopping anyway"
                        );
                        break;
                    }
                }
            }
            let now = Instant::now();
            // What reached the sockets first, so nobody looks slower than they are.
            while let Ok((id, bytes)) = channels.written.try_recv() {
                self.engine.handle_written(id, bytes);
            }
            let take = input_budget(&batch);
            for event in batch.drain(..take) {
                self.handle_event(event, now);
            }
            while let Ok((id, reply)) = channels.replies.try_recv() {
                self.handle_reply(id, reply, now);
            }
            while let Ok(event) = channels.files.try_recv() {
                self.handle_file_event(event, now);
            }
            if self.engine.poll_timeout().is_some_and(|at| at <= now) {
                self.engine.handle_timeout(now);
            }
            let wrote = self.drain_outputs();
            if stop_by.is_some() && !events_open && self.in_flight == 0 {
                break;
            }
            if wrote {
                // Let the connection tasks write (and report) before more input arrives.
                tokio::task::yield_now().await;
            }
        }
        accept.abort();
        let remaining = stop_by
            .map(|t| t.saturating_duration_since(tokio::time::Instant::now()))
            .unwrap_or(self.options.shutdown_timeout);
        if tokio::time::timeout(remaining.max(Duration::from_secs(1)), self.store.close())
            .await
            .is_err()
        {
            warn!("store did not write pending appends in time");
        }
        info!("server stopped");
    }

    fn begin_shutdown(&mut self) {
        info!(connections = self.connections.len(), "shutting down");
        // New connections must not start tasks now; when the last task ends, the event
        // channel closes and the loop knows every client has been written to.
        self.reports = None;
        self.engine.handle_shutdown(Instant::now());
        self.drain_outputs();
    }

    fn handle_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Accepted(stream, peer) => {
                let Some(reports) = self.reports.clone() else {
                    // Shutting down: the socket is dropped unanswered.
                    return;
                };
                let id = self.engine.handle_connect(peer, now);
                info!(connection = %id, %peer, "connected");
                let link = Arc::new(Link::default());
                tokio::spawn(connection::run(id, stream, Arc::clone(&link), reports));
                self.connections.insert(
                    id,
                    Entry {
                        link,
                        peer,
                        staged: Vec::new(),
                        paused: false,
                        closing: None,
                        dirty: false,
                    },
                );
            }
            Event::Received(id, data) => self.engine.handle_received(id, &data, now),
            Event::PeerClosed(id) => {
                if let Some(entry) = self.connections.get(&id) {
                    info!(connection = %id, peer = %entry.peer, reason = "peer closed", "disconnected");
                }
                self.engine.handle_peer_closed(id, now);
                // Write what is already queued (a half-closed client still reads).
                self.mark(id, |entry| entry.closing = Some(Closing::Flush));
            }
            Event::Failed(id, error) => {
                if let Some(entry) = self.connections.get(&id) {
                    info!(connection = %id, peer = %entry.peer, reason = %error, "disconnected");
                }
                self.engine.handle_peer_closed(id, now);
                self.mark(id, |entry| entry.closing = Some(Closing::Abort));
            }
        }
    }

    fn handle_reply(&mut self, id: RequestId, reply: StoreReply, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match &reply {
            StoreReply::Failed(StoreError::Unavailable(error)) => {
                warn!(request = %id, %error, "store error");
            }
            StoreReply::Failed(StoreError::Busy) => warn!(request = %id, "store busy"),
            _ => {}
        }
        self.engine.handle_store_reply(id, reply, now);
    }

    fn handle_file_event(&mut self, event: FileEvent, now: Instant) {
        match event {
            FileEvent::Opened(transfer, Ok((file, size))) => {
                if self.files.returned(transfer, Some(file)) {
                    self.engine.handle_file_opened(transfer, Ok(size), now);
                }
            }
            FileEvent::Opened(transfer, Err(error)) => {
                if self.files.returned(transfer, None) {
                    self.files.close(transfer);
                    self.engine.handle_file_opened(transfer, Err(error), now);
                }
            }
            FileEvent::Read(transfer, file, result) => {
                if self.files.returned(transfer, file) {
                    match result {
                        Ok(data) => self.engine.handle_file_data(transfer, &data, now),
                        Err(error) => self.engine.handle_file_failed(transfer, error, now),
                    }
                }
            }
        }
    }

    /// Updates a connection's record and lists it for delivery at the end of the round.
    fn mark(&mut self, id: ConnectionId, update: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.connections.get_mut(&id) {
            update(entry);
            if !entry.dirty {
                entry.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Queues `data` for `connection` in this round (a reference-count bump, not a copy).
    fn stage(&mut self, connection: ConnectionId, data: &Bytes) {
        self.mark(connection, |entry| {
            if entry.closing.is_none() {
                entry.staged.push(data.clone());
            }
        });
    }

    /// Drains the engine's outputs, then hands every touched connection its frames and
    /// instructions in one lock and one wake-up each. Returns whether any were touched.
    fn drain_outputs(&mut self) -> bool {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Transmit { connection, data } => self.stage(connection, &data),
                Output::Broadcast { recipients, data } => {
                    for connection in recipients {
                        self.stage(connection, &data);
                    }
                }
                Output::Close {
                    connection,
                    reason,
                    flush,
                } => {
                    if let Some(entry) = self.connections.get(&connection)
                        && entry.closing.is_none()
                    {
                        info!(connection = %connection, peer = %entry.peer, %reason, "disconnected");
                    }
                    let closing = if flush {
                        Closing::Flush
                    } else {
                        Closing::Abort
                    };
                    self.mark(connection, |entry| {
                        if entry.closing != Some(Closing::Abort) {
                            entry.closing = Some(closing);
                        }
                    });
                }
                Output::PauseReading(connection) => {
                    self.mark(connection, |entry| entry.paused = true)
                }
                Output::ResumeReading(connection) => {
                    self.mark(connection, |entry| entry.paused = false);
                }
                Output::OpenFile { transfer, path } => self.files.open(transfer, path),
                Output::ReadFile { transfer, max } => self.files.read(transfer, max),
                Output::CloseFile { transfer } => self.files.close(transfer),
                Output::Store { id, request } => {
                    self.in_flight += 1;
                    let reply = self.store.execute(*request);
                    let replies = self.replies_tx.clone();
                    tokio::spawn(async move {
                        let _ = replies.send((id, reply.await));
                    });
                }
            }
        }
        let touched = !self.dirty.is_empty();
        for id in std::mem::take(&mut self.dirty) {
            let Some(entry) = self.connections.get_mut(&id) else {
                continue;
            };
            entry.dirty = false;
            if entry.closing == Some(Closing::Abort) {
                entry.staged.clear();
            }
            entry
                .link
                .deliver(&mut entry.staged, entry.paused, entry.closing);
            if entry.closing.is_some() {
                self.connections.remove(&id);
            }
        }
        touched
    }
}

/// How many events from the front of `batch` fit in [`INPUT_BUDGET`] (at least one).
fn input_budget(batch: &[Event]) -> usize {
    let mut bytes = 0;
    for (index, event) in batch.iter().enumerate() {
        if let Event::Received(_, data) = event {
            if bytes > 0 && bytes + data.len() > INPUT_BUDGET {
                return index;
            }
            bytes += data.len();
        }
    }
    batch.len()
}

/// Sleeps until `at`, or forever when there is no deadline (the branch is disabled then).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
