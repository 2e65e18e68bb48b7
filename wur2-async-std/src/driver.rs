//! The one task that owns the [`Engine`] (inside an [`EngineHost`], shared with every
//! driver): it feeds it connection events, store replies and time, and carries out what
//! the engine asks on async-std. It holds no chat state of its own, and it never waits on
//! a socket or on the store.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::channel::{self, Receiver, Sender};
use async_std::net::TcpListener;
use async_std::task::{self, JoinHandle};
use futures::FutureExt;
use futures::channel::oneshot;
use tracing::{debug, info, warn};
use wur2_engine::{ConnectionId, Engine, RequestId, StoreReply};
use wur2_host::{Arrived, EngineHost, FileEvent, Storage, Work};

use crate::Options;
use crate::connection::{self, Event, Reports};

/// Events taken from the connection channel per loop turn at most.
const EVENT_BATCH: usize = 512;
/// Events waiting for the driver at most; a reader that finds the channel full waits, and
/// so stops reading its socket (backpressure instead of unbounded memory).
const EVENT_CHANNEL: usize = 4096;

/// Everything the engine's loop owns.
struct Driver<S> {
    host: EngineHost,
    store: Arc<S>,
    options: Options,
    files_tx: Sender<FileEvent>,
    /// Given to each new connection task; dropped at shutdown so the event channel closes
    /// once the last task is gone.
    reports: Option<Arc<Reports>>,
    replies_tx: Sender<(RequestId, StoreReply)>,
}

/// The receiving ends the engine's loop reads.
struct Channels {
    events: Receiver<Event>,
    files: Receiver<FileEvent>,
    written: Receiver<(ConnectionId, usize)>,
    /// Kept so `written` never closes while the loop runs (connection tasks come and go).
    _written_tx: Sender<(ConnectionId, usize)>,
    replies: Receiver<(RequestId, StoreReply)>,
}

/// What woke the engine's loop.
enum Wake {
    Shutdown(bool),
    Written(Option<(ConnectionId, usize)>),
    Event(Option<Event>),
    Reply(Option<(RequestId, StoreReply)>),
    File(Option<FileEvent>),
    Timeout,
    StopBy,
}

/// Starts the accept loop and the engine's loop; returns the engine loop's task.
pub(crate) fn spawn<S: Storage>(
    listener: TcpListener,
    store: S,
    engine: Engine,
    options: Options,
    shutdown: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    let (events_tx, events) = channel::bounded(EVENT_CHANNEL);
    let (written_tx, written) = channel::unbounded();
    let (replies_tx, replies) = channel::unbounded();
    let (files_tx, files) = channel::unbounded();
    let accept = task::spawn(accept_loop(
        listener,
        events_tx.clone(),
        options.accept_backoff,
    ));
    let driver = Driver {
        host: EngineHost::new(engine, options.files_dir.clone()),
        store: Arc::new(store),
        files_tx,
        options: options.clone(),
        reports: Some(Arc::new(Reports {
            events: events_tx,
            written: written_tx.clone(),
            flush_timeout: options.close_flush_timeout,
        })),
        replies_tx,
    };
    let channels = Channels {
        events,
        files,
        written,
        _written_tx: written_tx,
        replies,
    };
    task::spawn(driver.run(channels, shutdown, accept))
}

/// Accepts clients and hands them to the driver. Accept errors (out of file descriptors,
/// a connection reset before it was accepted) back off instead of spinning.
async fn accept_loop(listener: TcpListener, events: Sender<Event>, backoff: Duration) {
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
                task::sleep(backoff).await;
            }
        }
    }
}

impl<S: Storage> Driver<S> {
    async fn run(
        mut self,
        channels: Channels,
        mut shutdown: oneshot::Receiver<()>,
        accept: JoinHandle<()>,
    ) {
        let mut accept = Some(accept);
        let mut batch = Vec::with_capacity(EVENT_BATCH);
        let mut shutdown_armed = true;
        let mut stop_by: Option<Instant> = None;
        let mut events_open = true;
        loop {
            if batch.is_empty() {
                let timeout = self.host.poll_timeout();
                let wake = futures::select_biased! {
                    signal = armed(shutdown_armed, &mut shutdown).fuse() => Wake::Shutdown(signal.is_ok()),
                    written = channels.written.recv().fuse() => Wake::Written(written.ok()),
                    event = armed(events_open, channels.events.recv()).fuse() => Wake::Event(event.ok()),
                    reply = channels.replies.recv().fuse() => Wake::Reply(reply.ok()),
                    file = channels.files.recv().fuse() => Wake::File(file.ok()),
                    () = sleep_until(timeout).fuse() => Wake::Timeout,
                    () = sleep_until(stop_by).fuse() => Wake::StopBy,
                };
                match wake {
                    Wake::Shutdown(signal) => {
                        shutdown_armed = false;
                        // A dropped handle detaches the server instead of stopping it.
                        if signal {
                            if let Some(accept) = accept.take() {
                                accept.cancel().await;
                            }
                            stop_by = Some(Instant::now() + self.options.shutdown_timeout);
                            self.begin_shutdown();
                        }
                    }
                    Wake::Written(Some((id, bytes))) => {
                        self.host.engine.handle_written(id, bytes, Instant::now());
                        // Written counts are not urgent: the connection tasks that can
                        // write now do so first, and their counts come in one turn
                        // rather than one turn per task.
                        task::yield_now().await;
                    }
                    Wake::Event(Some(event)) => {
                        batch.push(event);
                        while batch.len() < EVENT_BATCH {
                            match channels.events.try_recv() {
                                Ok(event) => batch.push(event),
                                Err(_) => break,
                            }
                        }
                    }
                    Wake::Event(None) => events_open = false,
                    Wake::Reply(Some((id, reply))) => {
                        self.host.store_reply(id, reply, Instant::now());
                    }
                    Wake::File(Some(event)) => self.host.file_event(event, Instant::now()),
                    Wake::Written(None) | Wake::Reply(None) | Wake::File(None) => {}
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
                        task::spawn(connection::run(id, stream, link, reports));
                    }
                },
                carrier(&self.store, &self.replies_tx, &self.files_tx),
            );
            if stop_by.is_some() && !events_open && self.host.in_flight() == 0 {
                break;
            }
            if wrote {
                // Let the connection tasks write (and report) before more input arrives.
                task::yield_now().await;
            }
        }
        if let Some(accept) = accept.take() {
            accept.cancel().await;
        }
        let remaining = stop_by
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(self.options.shutdown_timeout);
        if async_std::future::timeout(remaining.max(Duration::from_secs(1)), self.store.close())
            .await
            .is_err()
        {
            warn!("store did not write pending appends in time");
        }
        info!("server stopped");
    }

    fn begin_shutdown(&mut self) {
        // New connections must not start tasks now; when the last task ends, the event
        // channel closes and the loop knows every client has been written to.
        self.reports = None;
        self.host.begin_shutdown(Instant::now());
        self.drain_outputs();
    }

    /// Drains the engine's outputs (at shutdown, outside a turn).
    fn drain_outputs(&mut self) -> bool {
        let carry = carrier(&self.store, &self.replies_tx, &self.files_tx);
        self.host.drain_outputs(carry)
    }
}

/// `future` when `armed`, otherwise never (a disabled branch of the loop's select).
async fn armed<F: Future>(armed: bool, future: F) -> F::Output {
    if armed {
        future.await
    } else {
        std::future::pending().await
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => task::sleep(at.saturating_duration_since(Instant::now())).await,
        None => std::future::pending().await,
    }
}

/// Carries out a drain's [`Work`] on async-std: file jobs on its blocking pool, store requests
/// started now (in the engine's order) and awaited in their own tasks.
fn carrier<'a, S: Storage>(
    store: &'a Arc<S>,
    replies: &'a Sender<(RequestId, StoreReply)>,
    files: &'a Sender<FileEvent>,
) -> impl FnMut(Work) + 'a {
    move |work| match work {
        Work::File(job) => {
            let files = files.clone();
            task::spawn_blocking(move || {
                let _ = files.try_send(job());
            });
        }
        Work::Store(id, request) => {
            let reply = store.execute(request);
            let replies = replies.clone();
            task::spawn(async move {
                let _ = replies.send((id, reply.await)).await;
            });
        }
    }
}
