//! One task per client: it reads bytes for the engine and writes what the engine queued
//! for this client, on any [`Transport`] (plain TCP, TLS). It owns the stream and nothing
//! of chat state; it never decides anything about the chat.
//!
//! Memory matters here more than anywhere (thousands of idle clients): while a connection
//! is idle its task holds no read buffer and no write buffer. Reads go through one buffer
//! per thread and leave as exactly-sized [`Bytes`]; the write queue is released as soon as
//! it is empty. The task waits in one hand-written poll (instructions, writability,
//! readability) rather than a select of futures, so it holds a few references while it
//! waits, not three futures' worth of state.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use wur2_engine::ConnectionId;

use crate::connections::{
    Closing, ConnectionEvent, LINGER_DISCARD_LIMIT, LINGER_TIME, Link, MAX_IOVECS, READ_CHUNK,
    consume,
};
use crate::runtime::{Runtime, Transport};

/// Where connection tasks report to the engine's loop.
///
/// Written-byte counts go through their own unbounded channel, which the loop reads before
/// any new input: the engine's idea of what is still queued for a client must not lag
/// behind a backlog of other clients' input, or fast readers would look slow.
#[derive(Debug)]
pub(crate) struct Reports<S> {
    /// Input and socket state, bounded: a full channel stops readers (backpressure).
    pub events: mpsc::Sender<ConnectionEvent<S>>,
    /// Bytes that reached a socket.
    pub written: mpsc::UnboundedSender<(ConnectionId, usize)>,
    /// How long a graceful close may take to write what is queued.
    pub flush_timeout: Duration,
}

/// What woke a connection task.
enum Woken {
    /// The engine's loop left new frames or instructions.
    Instructions,
    /// `bytes` of the queue reached the transport (maybe none), and whether the transport
    /// has pushed out everything it buffered.
    Wrote { bytes: usize, flushed: bool },
    /// Bytes arrived; empty at end of stream.
    Read(Bytes),
}

/// Runs one connection until the engine's loop closes it or the stream fails.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async
/// fn keeps its arguments twice in its state (as passed, and as moved into its body),
/// which every idle connection would pay for.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run<R: Runtime>(
    id: ConnectionId,
    mut stream: R::Stream,
    link: Arc<Link>,
    reports: Arc<Reports<R::Stream>>,
) -> impl Future<Output = ()> + Send {
    async move {
        let events = &reports.events;
        let mut queue: VecDeque<Bytes> = VecDeque::new();
        let mut reading = true;
        // Bytes handed to the transport that it may still hold (TLS records not sent yet).
        let mut unflushed = false;
        loop {
            let (paused, closing) = link.take(&mut queue);
            match closing {
                Some(Closing::Abort) => return,
                Some(Closing::Flush) => {
                    // Boxed: closing is rare, and its timer would otherwise make every idle
                    // connection's task as large as a closing one.
                    let deadline = Instant::now() + reports.flush_timeout;
                    Box::pin(futures_lite::future::or(
                        flush_and_close::<R>(stream, queue),
                        R::sleep_until(deadline),
                    ))
                    .await;
                    return;
                }
                None => {}
            }

            // What woke the task and the event it makes end in this block: only the boxed
            // wait for a full channel is held across the await below.
            let (sent, fatal) = {
                // The wait captures three references and two flags, no more: it is part
                // of every idle connection's state.
                let (link_ref, stream_ref, queue_ref) = (&*link, &mut stream, &mut queue);
                let (read, flush) = (reading && !paused, unflushed);
                let woken = std::future::poll_fn(move |cx| {
                    // Writes first, as soon as the task runs (instructions were taken just
                    // before); the link is only looked at, and its waker set, when there
                    // is nothing to write.
                    if !queue_ref.is_empty() || flush {
                        let mut bytes = 0;
                        if !queue_ref.is_empty() {
                            match poll_write_queued(stream_ref, queue_ref, cx) {
                                Poll::Ready(Ok(n)) => bytes = n,
                                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                                Poll::Pending => {}
                            }
                        }
                        // Once the queue is out, what the transport buffered (TLS records)
                        // goes too, in the same turn; plain TCP has nothing to push.
                        let mut flushed = false;
                        if queue_ref.is_empty() {
                            match stream_ref.poll_flush(cx) {
                                Poll::Ready(Ok(())) => flushed = true,
                                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                                Poll::Pending => {}
                            }
                        }
                        if bytes > 0 || flushed {
                            return Poll::Ready(Ok(Woken::Wrote { bytes, flushed }));
                        }
                    }
                    if link_ref.poll_news(cx.waker()) {
                        return Poll::Ready(Ok(Woken::Instructions));
                    }
                    if read {
                        return poll_read_chunk(stream_ref, cx).map(|read| read.map(Woken::Read));
                    }
                    Poll::Pending
                })
                .await;
                if queue.is_empty() {
                    // Idle connections hold no write buffer.
                    queue = VecDeque::new();
                }
                let event = match woken {
                    Ok(Woken::Instructions) => continue,
                    Ok(Woken::Wrote { bytes, flushed }) => {
                        unflushed = !flushed;
                        if bytes > 0 && reports.written.send((id, bytes)).is_err() {
                            return;
                        }
                        continue;
                    }
                    Ok(Woken::Read(data)) if data.is_empty() => {
                        reading = false;
                        ConnectionEvent::PeerClosed(id)
                    }
                    Ok(Woken::Read(data)) => {
                        link.read(data.len());
                        ConnectionEvent::Received(id, data)
                    }
                    Err(error) => ConnectionEvent::Failed(id, error),
                };
                let fatal = matches!(event, ConnectionEvent::Failed(..));
                (send(events, event), fatal)
            };
            let sent = match sent {
                Ok(Some(wait)) => wait.await,
                other => other.map(|_| ()),
            };
            if sent.is_err() || fatal {
                return;
            }
        }
    }
}

/// A wait for room in the loop's channel (the loop is behind).
type WaitForRoom<'a> = Pin<Box<dyn Future<Output = Result<(), ()>> + Send + 'a>>;

/// Sends `event` to the engine's loop now, or returns the boxed wait for a full channel
/// (so neither the event nor the waiting state is part of every idle task). `Err`: the
/// loop is gone.
fn send<S: Send>(
    events: &mpsc::Sender<ConnectionEvent<S>>,
    event: ConnectionEvent<S>,
) -> Result<Option<WaitForRoom<'_>>, ()> {
    match events.try_send(event) {
        Ok(()) => Ok(None),
        Err(mpsc::error::TrySendError::Full(event)) => Ok(Some(Box::pin(async move {
            events.send(event).await.map_err(|_| ())
        }))),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

thread_local! {
    /// The read buffer of every connection task the thread polls, zeroed once: a buffer on
    /// the stack would be zeroed (16 KiB) by every poll that tries to read, most of which
    /// find nothing or a line.
    static READ_BUFFER: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// One read into the thread's read buffer, handed on as an exactly-sized copy;
/// `Ready(Ok(empty))` at end of stream.
fn poll_read_chunk(stream: &mut impl Transport, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
    READ_BUFFER.with_borrow_mut(|buf| {
        loop {
            match stream.poll_read(cx, buf) {
                Poll::Ready(Ok(n)) => return Poll::Ready(Ok(Bytes::copy_from_slice(&buf[..n]))),
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map(|result| result.map(|_| Bytes::new())),
            }
        }
    })
}

/// Writes as much of `queue` as the transport takes now, many buffers per call.
/// `Ready` with the engine's bytes written ([`Transport::engine_bytes`]) once any were;
/// written buffers leave the queue.
fn poll_write_queued(
    stream: &mut impl Transport,
    queue: &mut VecDeque<Bytes>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut total = 0;
    while !queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, buf) in slices.iter_mut().zip(queue.iter()) {
            *slot = IoSlice::new(buf);
            count += 1;
        }
        match stream.poll_write_vectored(cx, &slices[..count]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                total += stream.engine_bytes(n);
                consume(queue, n);
            }
            Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => break,
        }
    }
    if total > 0 {
        Poll::Ready(Ok(total))
    } else {
        Poll::Pending
    }
}

/// Writes everything queued, closes our side, then discards what the client still sends
/// for a moment, so that closing a socket with unread input does not reset the connection
/// and destroy the last lines (a goodbye, the reason for a kick) before the client reads
/// them.
///
/// The engine forgot the connection already, so written bytes are not reported.
async fn flush_and_close<R: Runtime>(mut stream: R::Stream, mut queue: VecDeque<Bytes>) {
    while !queue.is_empty() {
        if std::future::poll_fn(|cx| poll_write_queued(&mut stream, &mut queue, cx))
            .await
            .is_err()
        {
            return;
        }
    }
    if std::future::poll_fn(|cx| stream.poll_close(cx))
        .await
        .is_err()
    {
        return;
    }
    let linger = R::sleep_until(Instant::now() + LINGER_TIME);
    futures_lite::future::or(discard_until_closed(&mut stream), linger).await;
}

/// Reads and drops what the client still sends until it closes its side.
async fn discard_until_closed(stream: &mut impl Transport) {
    let mut discarded = 0;
    while discarded < LINGER_DISCARD_LIMIT {
        match std::future::poll_fn(|cx| poll_read_chunk(stream, cx)).await {
            Ok(data) if data.is_empty() => return,
            Ok(data) => discarded += data.len(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_runtime::{FakeStream, Types};

    #[test]
    fn an_idle_connection_task_is_small() {
        let (events, _events_rx) = mpsc::channel(1);
        let (written, _written_rx) = mpsc::unbounded_channel();
        let reports = Arc::new(Reports {
            events,
            written,
            flush_timeout: Duration::from_secs(1),
        });
        let id = wur2_engine::Engine::new(wur2_engine::Config::default())
            .handle_connect("127.0.0.1:1".parse().expect("addr"), Instant::now());
        let task = run::<Types>(id, FakeStream::from(()), Arc::new(Link::default()), reports);
        // The whole state of a connection task while it waits (168 bytes with a 48-byte
        // stream); the goal for everything a logged-in idle connection costs is 2 KiB.
        // (Tokio's task cell rounds the future up with its header: 408 bytes made a
        // 512-byte cell.)
        let size = std::mem::size_of_val(&task);
        assert!(size <= 192, "a connection task's future is {size} bytes");
    }
}
