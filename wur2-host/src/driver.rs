//! The one task that owns the [`Engine`] (inside an [`EngineHost`]): it feeds it
//! connection events, store replies, file results, what the cluster bus brings and time,
//! and carries out what the engine asks, on any [`Runtime`]. It holds no chat state of its
//! own, and it never waits on a socket, on the store or on the bus.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};
use wur2_engine::{ConnectionId, Engine, RequestId, StoreReply};

use crate::account_changes::{self, ChangeBatch};
use crate::bus::{BusEvent, BusLink, BusOutbox};
use crate::connection::{self, Reports};
use crate::connections::ConnectionEvent;
use crate::engine_host::{Arrived, EngineHost, Work};
use crate::files::FileEvent;
use crate::runtime::{Runtime, sleep_until_opt};
use crate::status::StatusCell;
use crate::{Options, Storage};

/// Events taken from the connection channel per loop turn at most.
const EVENT_BATCH: usize = 512;
/// Events waiting for the loop at most; a reader that finds the channel full waits, and so
/// stops reading its socket (backpressure instead of unbounded memory).
const EVENT_CHANNEL: usize = 4096;

/// Everything the engine's loop owns.
pub(crate) struct Driver<R: Runtime, S> {
    pub host: EngineHost,
    pub store: Arc<S>,
    pub options: Options,
    pub files_tx: mpsc::UnboundedSender<FileEvent>,
    /// Given to each new connection task; dropped at shutdown so the event channel closes
    /// once the last task is gone.
    pub reports: Option<Arc<Reports<R::Stream>>>,
    pub replies_tx: mpsc::UnboundedSender<(RequestId, StoreReply)>,
    /// Given to the task that reads account changes, started with the loop.
    pub changes_tx: Option<mpsc::UnboundedSender<ChangeBatch>>,
    /// Where metrics and health checks read the engine's counters.
    pub status: Arc<StatusCell>,
    /// Tells the accept loops to stop (at shutdown).
    pub stop_accepting: watch::Sender<bool>,
    /// Cluster mode: where publications leave.
    pub bus: Option<BusOutbox>,
}

/// The engine's loop, its channels, and where the accept loops hand over new clients.
pub(crate) struct Wired<R: Runtime, S> {
    pub driver: Driver<R, S>,
    pub channels: Channels<R::Stream>,
    pub intake: mpsc::Sender<ConnectionEvent<R::Stream>>,
}

/// The receiving ends the engine's loop reads.
pub(crate) struct Channels<S> {
    pub events: mpsc::Receiver<ConnectionEvent<S>>,
    pub files: mpsc::UnboundedReceiver<FileEvent>,
    pub written: mpsc::UnboundedReceiver<(ConnectionId, usize)>,
    pub replies: mpsc::UnboundedReceiver<(RequestId, StoreReply)>,
    /// Accounts changed outside the server (the operator's shell).
    pub changes: mpsc::UnboundedReceiver<ChangeBatch>,
    /// The server handle's request to stop.
    pub shutdown: oneshot::Receiver<()>,
    /// Cluster mode: what the bus brings.
    pub bus: Option<mpsc::Receiver<BusEvent>>,
}

/// What woke the engine's loop.
enum Wake {
    /// The handle asked to stop (`true`), or was dropped (`false`: run on, detached).
    Shutdown(bool),
    Written((ConnectionId, usize)),
    /// A batch of events arrived, or the channel closed (`0`).
    Events(usize),
    Reply((RequestId, StoreReply)),
    File(FileEvent),
    AccountsChanged(ChangeBatch),
    /// The bus brought something, or its transport is gone (`None`).
    Bus(Option<BusEvent>),
    Timeout,
    StopBy,
}

impl<R: Runtime, S: Storage> Driver<R, S> {
    /// Runs until a graceful shutdown has finished (or timed out), then closes the store.
    pub(crate) async fn run(mut self, mut channels: Channels<R::Stream>) {
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        let mut shutdown_armed = true;
        let mut stop_by: Option<Instant> = None;
        let mut events_open = true;
        if let Some(changes) = self.changes_tx.take() {
            R::spawn(account_changes::watch::<R, S>(
                Arc::clone(&self.store),
                changes,
                self.stop_accepting.subscribe(),
            ));
        }
        loop {
            if batch.is_empty() {
                let mut timeout = pin!(sleep_until_opt::<R>(self.host.poll_timeout()));
                let mut give_up = pin!(sleep_until_opt::<R>(stop_by));
                // Biased, in this order: the stop signal, written bytes (so nobody looks
                // slower than they are), input, store replies, files, timers.
                let wake = std::future::poll_fn(|cx| {
                    if shutdown_armed
                        && let Poll::Ready(signal) = Pin::new(&mut channels.shutdown).poll(cx)
                    {
                        return Poll::Ready(Wake::Shutdown(signal.is_ok()));
                    }
                    if let Poll::Ready(Some(written)) = channels.written.poll_recv(cx) {
                        return Poll::Ready(Wake::Written(written));
                    }
                    if events_open
                        && let Poll::Ready(received) =
                            channels.events.poll_recv_many(cx, &mut batch, EVENT_BATCH)
                    {
                        return Poll::Ready(Wake::Events(received));
                    }
                    if let Poll::Ready(Some(reply)) = channels.replies.poll_recv(cx) {
                        return Poll::Ready(Wake::Reply(reply));
                    }
                    if let Poll::Ready(Some(file)) = channels.files.poll_recv(cx) {
                        return Poll::Ready(Wake::File(file));
                    }
                    if let Poll::Ready(Some(batch)) = channels.changes.poll_recv(cx) {
                        return Poll::Ready(Wake::AccountsChanged(batch));
                    }
                    if let Some(bus) = channels.bus.as_mut()
                        && let Poll::Ready(event) = bus.poll_recv(cx)
                    {
                        return Poll::Ready(Wake::Bus(event));
                    }
                    if timeout.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::Timeout);
                    }
                    if give_up.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Wake::StopBy);
                    }
                    Poll::Pending
                })
                .await;
                match wake {
                    Wake::Shutdown(signal) => {
                        shutdown_armed = false;
                        // A dropped handle detaches the server instead of stopping it.
                        if signal {
                            stop_by = Some(Instant::now() + self.options.shutdown_timeout);
                            self.begin_shutdown();
                        }
                    }
                    Wake::Written((id, bytes)) => {
                        self.host.engine.handle_written(id, bytes, Instant::now());
                        // Written counts are not urgent: the connection tasks that can
                        // write now do so first, and their counts come in one turn
                        // rather than one turn per task.
                        R::yield_now().await;
                    }
                    Wake::Events(0) => events_open = false,
                    Wake::Events(_) => {}
                    Wake::Reply((id, reply)) => self.host.store_reply(id, reply, Instant::now()),
                    Wake::File(event) => self.host.file_event(event, Instant::now()),
                    Wake::AccountsChanged(batch) => {
                        let now = Instant::now();
                        for (username, change) in batch {
                            self.host
                                .engine
                                .handle_account_changed(&username, change, now);
                        }
                    }
                    Wake::Bus(Some(event)) => {
                        let now = Instant::now();
                        self.bus_event(event, now);
                        // What else arrived meanwhile, within a turn's budget.
                        if let Some(bus) = channels.bus.as_mut() {
                            for _ in 0..EVENT_BATCH {
                                let Ok(event) = bus.try_recv() else { break };
                                self.bus_event(event, now);
                            }
                        }
                    }
                    Wake::Bus(None) => {
                        warn!("the cluster bus's transport has stopped");
                        channels.bus = None;
                    }
                    Wake::Timeout => {}
                    Wake::StopBy => {
                        warn!(
                            connections = self.host.connections(),
                            store_requests = self.host.in_flight(),
                            "shutdown timed out; stopping anyway"
                        );
                        break;
                    }
                }
            }
            let arrived = Arrived {
                written: std::iter::from_fn(|| channels.written.try_recv().ok()),
                replies: std::iter::from_fn(|| channels.replies.try_recv().ok()),
                files: std::iter::from_fn(|| channels.files.try_recv().ok()),
            };
            let reports = &self.reports;
            let wrote = self.host.turn(
                Instant::now(),
                arrived,
                &mut batch,
                |id, stream, link| {
                    // No reports once shutdown began: the engine refuses a client accepted then,
                    // and its socket is dropped without a task.
                    if let Some(reports) = reports.as_ref().map(Arc::clone) {
                        R::spawn(connection::run::<R>(id, stream, link, reports));
                    }
                },
                carrier::<R, S>(
                    &self.store,
                    &self.replies_tx,
                    &self.files_tx,
                    self.bus.as_ref(),
                ),
            );
            self.status
                .publish(self.host.engine.stats(), self.host.in_flight());
            if stop_by.is_some() && !events_open && self.host.in_flight() == 0 {
                break;
            }
            if wrote {
                // Let the connection tasks write (and report) before more input arrives.
                R::yield_now().await;
            }
        }
        // The loop ends only after `begin_shutdown`: the listeners are stopped already.
        let remaining = stop_by
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(self.options.shutdown_timeout);
        let deadline = Instant::now() + remaining.max(Duration::from_secs(1));
        let closed = futures_lite::future::or(
            async {
                self.store.close().await;
                true
            },
            async {
                R::sleep_until(deadline).await;
                false
            },
        )
        .await;
        if !closed {
            warn!("store did not write pending appends in time");
        }
        info!("server stopped");
    }

    /// Gives the engine what the bus brought.
    fn bus_event(&mut self, event: BusEvent, now: Instant) {
        match event {
            BusEvent::Connected => self.host.engine.handle_bus_connected(now),
            BusEvent::Disconnected => self.host.engine.handle_bus_disconnected(now),
            BusEvent::Received(payload) => self.host.engine.handle_published(&payload, now),
        }
    }

    fn begin_shutdown(&mut self) {
        self.stop_accepting.send_replace(true);
        self.status.set_accepting(false);
        // New connections must not start tasks now; when the last task ends, the event
        // channel closes and the loop knows every client has been written to.
        self.reports = None;
        self.host.begin_shutdown(Instant::now());
        let carry = carrier::<R, S>(
            &self.store,
            &self.replies_tx,
            &self.files_tx,
            self.bus.as_ref(),
        );
        self.host.drain_outputs(carry);
    }
}

/// Carries out a drain's [`Work`] on the runtime: file jobs on its blocking pool, store
/// requests started now (in the engine's order) and awaited in their own tasks,
/// publications queued on the bus.
fn carrier<'a, R: Runtime, S: Storage>(
    store: &'a Arc<S>,
    replies: &'a mpsc::UnboundedSender<(RequestId, StoreReply)>,
    files: &'a mpsc::UnboundedSender<FileEvent>,
    bus: Option<&'a BusOutbox>,
) -> impl FnMut(Work) + 'a {
    move |work| match work {
        Work::File(job) => {
            let files = files.clone();
            R::spawn_blocking(move || {
                let _ = files.send(job());
            });
        }
        Work::Store(id, request) => {
            let reply = store.execute(request);
            let replies = replies.clone();
            R::spawn(async move {
                let _ = replies.send((id, reply.await));
            });
        }
        Work::Publish(topic, payload) => match bus {
            Some(bus) => bus.publish(topic, payload),
            // `serve_with` refuses `Config::cluster` without a bus.
            None => tracing::error!(?topic, "a publication without a cluster bus; dropped"),
        },
    }
}

/// The engine's loop and its channels, ready to run, and where accept loops hand over
/// their clients; built by [`serve_with`](crate::serve_with).
pub(crate) fn driver<R: Runtime, S: Storage>(
    store: S,
    engine: Engine,
    options: Options,
    status: Arc<StatusCell>,
    shutdown: oneshot::Receiver<()>,
    stop_accepting: watch::Sender<bool>,
    bus: Option<BusLink>,
) -> Wired<R, S> {
    let (bus_outbox, bus_events) = match bus {
        Some(BusLink { outbox, events }) => (Some(outbox), Some(events)),
        None => (None, None),
    };
    let (events_tx, events) = mpsc::channel(EVENT_CHANNEL);
    let intake = events_tx.clone();
    let (written_tx, written) = mpsc::unbounded_channel();
    let (replies_tx, replies) = mpsc::unbounded_channel();
    let (files_tx, files) = mpsc::unbounded_channel();
    let (changes_tx, changes) = mpsc::unbounded_channel();
    let driver = Driver {
        host: EngineHost::new(engine, options.files_dir.clone()),
        store: Arc::new(store),
        files_tx,
        reports: Some(Arc::new(Reports {
            events: events_tx,
            written: written_tx,
            flush_timeout: options.close_flush_timeout,
        })),
        options,
        replies_tx,
        changes_tx: Some(changes_tx),
        status,
        stop_accepting,
        bus: bus_outbox,
    };
    let channels = Channels {
        events,
        files,
        written,
        replies,
        changes,
        shutdown,
        bus: bus_events,
    };
    Wired {
        driver,
        channels,
        intake,
    }
}
