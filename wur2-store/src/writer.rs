//! Group commit of message appends: a bounded queue and the one task that drains it.
//!
//! Appends are queued by [`Store::execute`](crate::Store::execute) at the moment it is
//! called, so their order is the order of the calls. The [`AppendWriter`] takes everything
//! queued (up to `max_batch`), writes it in one transaction, and takes the next batch as soon
//! as that one is committed: one append waits one round trip at low load, and many appends
//! share one commit at high load. Each append is answered once its batch is committed, and
//! the engine delivers a message only then (durable delivery). A failed batch is retried, unchanged and first, with a
//! growing pause until the database answers again; the database ignores a message id it
//! already holds, so a batch that was committed but not acknowledged is not written twice.
//!
//! Readers that must see earlier appends (history, pending messages) wait for a *flush*:
//! until everything queued before them is committed, or fail at once while the database is
//! failing.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::task::AtomicWaker;
use wur2_engine::{StoreError, StoreReply};

use crate::db::{AppendRow, AppendSession, is_permanent};
use crate::deadline::timed;
use crate::store::Shared;

/// One append in the queue.
pub(crate) struct Append {
    pub(crate) row: AppendRow,
    /// Told `Done` once committed (`UnknownUser` for a pending private message to nobody).
    pub(crate) reply: oneshot::Sender<StoreReply>,
}

/// Why an append was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The buffer holds `append_buffer` appends already.
    Full,
    /// The store is closing.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    NotStarted,
    Running,
    Finished,
}

struct QueueState {
    waiting: VecDeque<Append>,
    /// Appends taken by the writer and not yet committed.
    in_flight: usize,
    capacity: usize,
    /// Appends ever queued, and ever finished (committed, or dropped as unwritable).
    queued: u64,
    finished: u64,
    /// The last error while the writer is retrying; `None` when the last batch succeeded.
    failing: Option<String>,
    flush_waiters: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
    closing: bool,
    writer: WriterState,
    finished_waiters: Vec<oneshot::Sender<()>>,
}

/// The appends waiting to be written, shared by the store handles and the writer.
pub(crate) struct AppendQueue {
    state: Mutex<QueueState>,
    writer_wake: AtomicWaker,
}

impl AppendQueue {
    pub(crate) fn new(capacity: usize) -> AppendQueue {
        AppendQueue {
            state: Mutex::new(QueueState {
                waiting: VecDeque::new(),
                in_flight: 0,
                capacity,
                queued: 0,
                finished: 0,
                failing: None,
                flush_waiters: Vec::new(),
                closing: false,
                writer: WriterState::NotStarted,
                finished_waiters: Vec::new(),
            }),
            writer_wake: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent between statements; a panic elsewhere does not poison it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends queued and not yet written (waiting, or in the batch being written).
    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state.waiting.len() + state.in_flight
    }

    /// Queues `append` behind everything queued before.
    pub(crate) fn push(&self, append: Append) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.closing {
            return Err(Refused::Closed);
        }
        if state.waiting.len() + state.in_flight >= state.capacity {
            return Err(Refused::Full);
        }
        state.waiting.push_back(append);
        state.queued += 1;
        drop(state);
        self.writer_wake.wake();
        Ok(())
    }

    /// Resolves once every append queued before this call is written; fails while the
    /// database is failing or when no writer runs.
    pub(crate) fn flush(&self) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let mut state = self.lock();
        let waiter = if state.finished == state.queued {
            Err(Ok(()))
        } else if let Some(error) = &state.failing {
            Err(Err(error.clone()))
        } else if state.writer == WriterState::Finished {
            Err(Err("the append writer has stopped".to_owned()))
        } else {
            let (tell, told) = oneshot::channel();
            let target = state.queued;
            state.flush_waiters.push((target, tell));
            Ok(told)
        };
        drop(state);
        async move {
            match waiter {
                Err(now) => now,
                Ok(told) => told
                    .await
                    .unwrap_or_else(|_| Err("the append writer has stopped".to_owned())),
            }
        }
    }

    /// Marks the queue closing: nothing new is accepted and the writer stops once the
    /// queue is empty.
    pub(crate) fn begin_close(&self) {
        self.lock().closing = true;
        self.writer_wake.wake();
    }

    /// Resolves once the writer has stopped.
    pub(crate) fn writer_finished(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut state = self.lock();
        let waiter = if state.writer == WriterState::Finished {
            None
        } else {
            let (tell, told) = oneshot::channel();
            state.finished_waiters.push(tell);
            Some(told)
        };
        drop(state);
        async move {
            if let Some(told) = waiter {
                let _ = told.await;
            }
        }
    }

    /// Claims the writer role; `false` if a writer already ran or runs.
    fn claim_writer(&self) -> bool {
        let mut state = self.lock();
        if state.writer == WriterState::NotStarted {
            state.writer = WriterState::Running;
            true
        } else {
            false
        }
    }

    /// Whether no writer was ever started.
    pub(crate) fn writer_never_started(&self) -> bool {
        self.lock().writer == WriterState::NotStarted
    }

    /// Moves up to `max` waiting appends into `batch`; `Ready(false)` once closing and empty.
    fn poll_take(&self, cx: &mut Context<'_>, max: usize, batch: &mut Vec<Append>) -> Poll<bool> {
        self.writer_wake.register(cx.waker());
        let mut state = self.lock();
        if state.waiting.is_empty() {
            return if state.closing {
                Poll::Ready(false)
            } else {
                Poll::Pending
            };
        }
        let count = state.waiting.len().min(max);
        batch.extend(state.waiting.drain(..count));
        state.in_flight = batch.len();
        Poll::Ready(true)
    }

    /// Moves waiting appends into `batch` until it holds `max`.
    fn take_more(&self, max: usize, batch: &mut Vec<Append>) {
        let mut state = self.lock();
        let count = state.waiting.len().min(max.saturating_sub(batch.len()));
        batch.extend(state.waiting.drain(..count));
        state.in_flight = batch.len();
    }

    /// `count` appends of the batch are done (written or dropped).
    fn finish(&self, count: usize) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(count);
        state.finished += count as u64;
        state.failing = None;
        let finished = state.finished;
        let mut index = 0;
        while index < state.flush_waiters.len() {
            if state.flush_waiters[index].0 <= finished {
                let (_, tell) = state.flush_waiters.swap_remove(index);
                let _ = tell.send(Ok(()));
            } else {
                index += 1;
            }
        }
    }

    /// The batch failed with `error`: readers waiting for a flush are told at once.
    fn fail(&self, error: String) {
        let mut state = self.lock();
        for (_, tell) in state.flush_waiters.drain(..) {
            let _ = tell.send(Err(error.clone()));
        }
        state.failing = Some(error);
    }

    fn writer_stopped(&self) {
        let mut state = self.lock();
        state.writer = WriterState::Finished;
        let error = "the append writer has stopped".to_owned();
        for (_, tell) in state.flush_waiters.drain(..) {
            let _ = tell.send(Err(error.clone()));
        }
        for tell in state.finished_waiters.drain(..) {
            let _ = tell.send(());
        }
    }
}

/// The task that writes queued appends; it must be running for appends to be stored.
///
/// [`Store::open`](crate::Store::open) returns it: spawn [`AppendWriter::run`] on the
/// runtime that opened the store (`tokio::spawn(writer.run())`,
/// `async_std::task::spawn(writer.run())`). It finishes by itself after
/// [`Store::close`](crate::Store::close) (or when every `Store` handle is dropped), once
/// every queued append is written.
#[must_use = "appends are only written while `AppendWriter::run` is awaited or spawned"]
pub struct AppendWriter {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for AppendWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppendWriter")
    }
}

impl AppendWriter {
    /// Writes appends until the store closes and its queue is empty (and, on an SQLite
    /// file, checkpoints its write-ahead log every second meanwhile).
    pub async fn run(self) {
        let tail_due = AtomicBool::new(false);
        let checkpoints = checkpoint_every_second(&self.shared, &tail_due);
        futures_lite::future::or(run_writer(&self.shared, &tail_due), checkpoints).await;
    }
}

/// How often the write-ahead log of an SQLite file is checkpointed.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Checkpoints an SQLite file's write-ahead log every [`CHECKPOINT_INTERVAL`], in two
/// steps so that no commit waits for the bulk of it: this task copies what the log holds
/// on a pool connection of its own while commits go on, then sets `tail_due`, and the
/// writer copies the few pages committed meanwhile after its next batch. That second
/// step completes the checkpoint (no commit runs beside it), so the log starts over at
/// the next commit and holds about a second of writes at most. Never ends (the writer's
/// end ends it).
async fn checkpoint_every_second(shared: &Shared, tail_due: &AtomicBool) {
    if !shared.db.needs_checkpoints() {
        return std::future::pending().await;
    }
    loop {
        async_io::Timer::after(CHECKPOINT_INTERVAL).await;
        if checkpoint(shared, None).await {
            tail_due.store(true, Ordering::Relaxed);
        }
    }
}

/// One checkpoint, on the writer's connection when `writer` is given; `false` (after a
/// warning) when it failed.
async fn checkpoint(shared: &Shared, writer: Option<&mut AppendSession>) -> bool {
    match timed(shared.config.request_timeout, shared.db.checkpoint(writer)).await {
        Some(Ok(())) => true,
        Some(Err(error)) => {
            tracing::warn!("checkpointing the write-ahead log failed: {error}");
            false
        }
        None => {
            tracing::warn!("checkpointing the write-ahead log took too long");
            false
        }
    }
}

/// Marks the writer finished however its future ends (completed or dropped).
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.queue.writer_stopped();
    }
}

/// The writer's loop: takes what is queued, writes it in one commit, answers it; after a
/// batch, completes a checkpoint when `tail_due` says one is due.
pub(crate) async fn run_writer(shared: &Arc<Shared>, tail_due: &AtomicBool) {
    if !shared.queue.claim_writer() {
        tracing::warn!("an append writer already ran for this store; this one does nothing");
        return;
    }
    let _guard = StopGuard(Arc::clone(shared));
    let config = &shared.config;
    let mut batch: Vec<Append> = Vec::new();
    let mut session = AppendSession::default();
    let mut last_batch: Option<Instant> = None;
    let mut backoff = config.retry_backoff_min;
    tracing::debug!("append writer started");
    loop {
        if batch.is_empty() {
            let more =
                std::future::poll_fn(|cx| shared.queue.poll_take(cx, config.max_batch, &mut batch))
                    .await;
            if !more {
                break;
            }
            // Written at once: every message waits for its commit before anyone gets it
            // (durable delivery), and what is appended while this batch is written joins
            // the next. At light load the batch waits out the commit interval.
            let due = last_batch.map(|started| started + config.commit_interval);
            if let Some(wait) = due.and_then(|due| due.checked_duration_since(Instant::now()))
                && shared.queue.len() < config.max_batch
            {
                async_io::Timer::after(wait).await;
            }
            shared.queue.take_more(config.max_batch, &mut batch);
        }
        last_batch = Some(Instant::now());
        match write_batch(shared, &mut batch, &mut session).await {
            Ok(()) => {
                backoff = config.retry_backoff_min;
                if tail_due.swap(false, Ordering::Relaxed) {
                    checkpoint(shared, Some(&mut session)).await;
                }
            }
            Err(error) => {
                tracing::warn!(
                    waiting = batch.len(),
                    retry_in_ms = backoff.as_millis() as u64,
                    "writing appends failed, will retry: {error}"
                );
                shared.queue.fail(error);
                async_io::Timer::after(backoff).await;
                backoff = (backoff * 2).min(config.retry_backoff_max);
            }
        }
    }
    tracing::debug!("append writer finished: every queued append is written");
}

/// Writes `batch` and empties it; on a transient failure leaves what is unwritten in it.
async fn write_batch(
    shared: &Shared,
    batch: &mut Vec<Append>,
    session: &mut AppendSession,
) -> Result<(), String> {
    let rows: Vec<&crate::db::AppendRow> = batch.iter().map(|append| &append.row).collect();
    let started = std::time::Instant::now();
    let result = timed(
        shared.config.request_timeout,
        shared.db.append(&rows, session),
    )
    .await;
    match result {
        Some(Ok(kept)) => {
            tracing::debug!(
                appends = batch.len(),
                micros = started.elapsed().as_micros() as u64,
                "appends written"
            );
            let count = batch.len();
            answer(batch.drain(..), &kept);
            shared.queue.finish(count);
            Ok(())
        }
        None => Err("the database did not answer in time".to_owned()),
        Some(Err(error)) if is_permanent(&error) => {
            // Some row cannot be stored as it is: write them one by one, on a fresh
            // session (which checks every channel's row again), so only it is lost.
            tracing::warn!("a batch of appends was refused ({error}); writing them one by one");
            while !batch.is_empty() {
                let single = [&batch[0].row];
                let written = shared.db.append(&single, session);
                match timed(shared.config.request_timeout, written).await {
                    Some(Ok(kept)) => {
                        answer(batch.drain(..1), &kept);
                        shared.queue.finish(1);
                    }
                    Some(Err(error)) if is_permanent(&error) => {
                        drop_unwritable(shared, batch, &error)
                    }
                    Some(Err(error)) => return Err(error.to_string()),
                    None => return Err("the database did not answer in time".to_owned()),
                }
            }
            Ok(())
        }
        Some(Err(error)) => Err(error.to_string()),
    }
}

fn drop_unwritable(shared: &Shared, batch: &mut Vec<Append>, error: &sqlx::Error) {
    let append = batch.remove(0);
    tracing::error!(message_id = %append.row.message_id, "dropping an append the database refuses: {error}");
    let _ = append
        .reply
        .send(StoreReply::Failed(StoreError::Unavailable(format!(
            "the database refused the message: {error}"
        ))));
    shared.queue.finish(1);
}

fn answer(written: impl Iterator<Item = Append>, kept: &[bool]) {
    for (append, kept) in written.zip(kept) {
        let outcome = if *kept {
            StoreReply::Done
        } else {
            StoreReply::Failed(StoreError::UnknownUser)
        };
        let _ = append.reply.send(outcome);
    }
}
