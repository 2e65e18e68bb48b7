//! The one task that owns the [`Engine`] (inside an [`EngineHost`], shared with every
//! driver): it feeds it connection events, store replies and time, and carries out what
//! the engine asks on Tokio. It holds no chat state of its own, and it never waits on a
//! socket or on the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use wur2_engine::{ConnectionId, Engine, RequestId, StoreReply};
use wur2_host::{Arrived, EngineHost, FileEvent, Storage, Work};

use crate::Options;
use crate::connection::{self, Event, Reports};
use crate::status::StatusCell;

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
    files_tx: mpsc::UnboundedSender<FileEvent>,
    /// Given to each new connection task; dropped at shutdown so the event channel closes
    /// once the last task is gone.
    reports: Option<Arc<Reports>>,
    replies_tx: mpsc::UnboundedSender<(RequestId, StoreReply)>,
    /// Where metrics and health checks read the engine's counters.
    status: Arc<StatusCell>,
}

/// The receiving ends the engine's loop reads.
struct Channels {
    events: mpsc::Receiver<Event>,
    files: mpsc::UnboundedReceiver<FileEvent>,
    written: mpsc::UnboundedReceiver<(ConnectionId, usize)>,
    replies: mpsc::UnboundedReceiver<(RequestId, StoreReply)>,
}

/// Starts the accept loop and the engine's loop; returns the engine loop's task, and a
/// handle through which other listeners (TLS) hand over accepted clients without keeping
/// the event channel open at shutdown.
pub(crate) fn spawn<S: Storage>(
    listener: TcpListener,
    store: S,
    engine: Engine,
    options: Options,
    shutdown: oneshot::Receiver<()>,
    status: Arc<StatusCell>,
) -> (JoinHandle<()>, mpsc::WeakSender<Event>) {
    let (events_tx, events) = mpsc::channel(EVENT_CHANNEL);
    let (written_tx, written) = mpsc::unbounded_channel();
    let (replies_tx, replies) = mpsc::unbounded_channel();
    let (files_tx, files) = mpsc::unbounded_channel();
    let intake = events_tx.downgrade();
    let accept = tokio::spawn(accept_loop(
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
            written: written_tx,
            flush_timeout: options.close_flush_timeout,
        })),
        replies_tx,
        status,
    };
    let channels = Channels {
        events,
        files,
        written,
        replies,
    };
    (tokio::spawn(driver.run(channels, shutdown, accept)), intake)
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
                let timeout = self.host.poll_timeout();
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
                        self.host.engine.handle_written(id, bytes, Instant::now());
                        // Written counts are not urgent: the connection tasks that can
                        // write now do so first, and their counts come in one turn
                        // rather than one turn per task. (Tokio's yield also lets it
                        // poll for I/O first; measured better for latency than a plain
                        // self-wake, and the same for transfers.)
                        tokio::task::yield_now().await;
                    }
                    received = channels.events.recv_many(&mut batch, EVENT_BATCH), if events_open => {
                        if received == 0 {
                            events_open = false;
                        }
                    }
                    Some((id, reply)) = channels.replies.recv() => {
                        self.host.store_reply(id, reply, Instant::now());
                    }
                    Some(event) = channels.files.recv() => {
                        self.host.file_event(event, Instant::now());
                    }
                    () = sleep_until_opt(timeout), if timeout.is_some() => {}
                    () = sleep_until_opt(stop_by.map(|t| t.into_std())), if stop_by.is_some() => {
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
                        tokio::spawn(connection::run(id, stream, link, reports));
                    }
                },
                carrier(&self.store, &self.replies_tx, &self.files_tx),
            );
            self.status
                .publish(self.host.engine.stats(), self.host.in_flight());
            if stop_by.is_some() && !events_open && self.host.in_flight() == 0 {
                break;
            }
            if wrote {
                // Let the connection tasks write (and report) before more input arrives.
                tokio::task::yield_now().await;
            }
        }
        accept.abort();
        self.status.set_accepting(false);
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
        self.status.set_accepting(false);
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

/// Sleeps until `at`, or forever when there is no deadline (the branch is disabled then).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Carries out a drain's [`Work`] on Tokio: file jobs on its blocking pool, store requests
/// started now (in the engine's order) and awaited in their own tasks.
fn carrier<'a, S: Storage>(
    store: &'a Arc<S>,
    replies: &'a mpsc::UnboundedSender<(RequestId, StoreReply)>,
    files: &'a mpsc::UnboundedSender<FileEvent>,
) -> impl FnMut(Work) + 'a {
    move |work| match work {
        Work::File(job) => {
            let files = files.clone();
            tokio::task::spawn_blocking(move || {
                let _ = files.send(job());
            });
        }
        Work::Store(id, request) => {
            let reply = store.execute(request);
            let replies = replies.clone();
            tokio::spawn(async move {
                let _ = replies.send((id, reply.await));
            });
        }
    }
}
