//! One task per client socket: it reads bytes for the engine and writes what the engine
//! queued for this client. It owns the socket and nothing of chat state; it never decides
//! anything about the chat.
//!
//! While a connection is idle its task holds no read buffer and no write buffer: reads go
//! through a stack buffer inside the task's poll and leave as exactly-sized [`Bytes`]; the
//! write queue is released as soon as it is empty. async-std has no readiness API
//! (`try_read`, `poll_read_ready`), so the task polls the socket's `AsyncRead` and
//! `AsyncWrite` directly in one hand-written poll.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_std::channel::{Sender, TrySendError};
use async_std::net::TcpStream;
use bytes::Bytes;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use wur2_engine::ConnectionId;
use wur2_host::{
    Closing, LINGER_DISCARD_LIMIT, LINGER_TIME, Link, MAX_IOVECS, READ_CHUNK, consume,
};

/// What a connection task tells the driver (the runtime-independent event, on this
/// runtime's socket).
pub(crate) type Event = wur2_host::ConnectionEvent<TcpStream>;

/// Where a connection task reports to the driver.
///
/// Written-byte counts go through their own unbounded channel, which the driver reads
/// before any new input: the engine's idea of what is still queued for a client must not
/// lag behind a backlog of other clients' input, or fast readers would look slow.
#[derive(Clone, Debug)]
pub(crate) struct Reports {
    /// Input and socket state, bounded: a full channel stops readers (backpressure).
    pub events: Sender<Event>,
    /// Bytes that reached a socket.
    pub written: Sender<(ConnectionId, usize)>,
    /// How long a graceful close may take to write what is queued.
    pub flush_timeout: Duration,
}

/// What woke a connection task.
enum Woken {
    /// The driver left new frames or instructions.
    Instructions,
    /// Bytes of the queue reached the socket.
    Wrote(usize),
    /// Bytes arrived; empty at end of stream.
    Read(Bytes),
}

/// Runs one connection until the driver closes it or the socket fails.
pub(crate) async fn run(
    id: ConnectionId,
    stream: TcpStream,
    link: Arc<Link>,
    reports: Arc<Reports>,
) {
    let events = &reports.events;
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut reading = true;
    loop {
        let (paused, closing) = link.take(&mut queue);
        match closing {
            Some(Closing::Abort) => return,
            Some(Closing::Flush) => {
                // Boxed: closing is rare, and its timers would otherwise make every idle
                // connection's task as large as a closing one.
                let closing = async_std::future::timeout(
                    reports.flush_timeout,
                    flush_and_close(stream, queue),
                );
                let _ = Box::pin(closing).await;
                return;
            }
            None => {}
        }

        let woken = std::future::poll_fn(|cx| {
            if link.poll_news(cx.waker()) {
                return Poll::Ready(Ok(Woken::Instructions));
            }
            if !queue.is_empty()
                && let Poll::Ready(written) = poll_write_queued(&stream, &mut queue, cx)
            {
                return Poll::Ready(written.map(Woken::Wrote));
            }
            if reading && !paused {
                return poll_read_chunk(&stream, cx).map(|read| read.map(Woken::Read));
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
            Ok(Woken::Wrote(n)) => {
                if reports.written.try_send((id, n)).is_err() {
                    return;
                }
                continue;
            }
            Ok(Woken::Read(data)) if data.is_empty() => {
                reading = false;
                Event::PeerClosed(id)
            }
            Ok(Woken::Read(data)) => {
                link.read(data.len());
                Event::Received(id, data)
            }
            Err(error) => Event::Failed(id, error),
        };
        let fatal = matches!(event, Event::Failed(..));
        // Only the boxed wait for a full channel is held across this await.
        let sent = match send(events, event) {
            Ok(Some(wait)) => wait.await,
            other => other.map(|_| ()),
        };
        if sent.is_err() || fatal {
            return;
        }
    }
}

/// A wait for room in the driver's channel (the driver is behind).
type WaitForRoom<'a> = Pin<Box<dyn Future<Output = Result<(), ()>> + Send + 'a>>;

/// Sends `event` to the driver now, or returns the boxed wait for a full channel (so
/// neither the event nor the waiting state is part of every idle task). `Err`: the driver
/// is gone.
fn send(events: &Sender<Event>, event: Event) -> Result<Option<WaitForRoom<'_>>, ()> {
    match events.try_send(event) {
        Ok(()) => Ok(None),
        Err(TrySendError::Full(event)) => Ok(Some(Box::pin(async move {
            events.send(event).await.map_err(|_| ())
        }))),
        Err(TrySendError::Closed(_)) => Err(()),
    }
}

/// One read into a stack buffer; `Ready(Ok(empty))` at end of stream.
fn poll_read_chunk(stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<Bytes>> {
    let mut buf = [0u8; READ_CHUNK];
    loop {
        match Pin::new(&mut &*stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(n)) => return Poll::Ready(Ok(Bytes::copy_from_slice(&buf[..n]))),
            Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Writes as much of `queue` as the socket takes now, many buffers per system call.
/// `Ready` with the bytes written once any were; written buffers leave the queue.
fn poll_write_queued(
    stream: &TcpStream,
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
        match Pin::new(&mut &*stream).poll_write_vectored(cx, &slices[..count]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                total += n;
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
async fn flush_and_close(stream: TcpStream, mut queue: VecDeque<Bytes>) {
    while !queue.is_empty() {
        if std::future::poll_fn(|cx| poll_write_queued(&stream, &mut queue, cx))
            .await
            .is_err()
        {
            return;
        }
    }
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let _ = async_std::future::timeout(LINGER_TIME, discard_until_closed(&stream)).await;
}

/// Reads and drops what the client still sends until it closes its side.
async fn discard_until_closed(mut stream: &TcpStream) {
    let mut discarded = 0;
    let mut buf = vec![0u8; READ_CHUNK];
    while discarded < LINGER_DISCARD_LIMIT {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_task_is_small() {
        async_std::task::block_on(async {
            let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let stream = TcpStream::connect(listener.local_addr().expect("addr"))
                .await
                .expect("connect");
            let (events, _events_rx) = async_std::channel::bounded(1);
            let (written, _written_rx) = async_std::channel::unbounded();
            let reports = Arc::new(Reports {
                events,
                written,
                flush_timeout: Duration::from_secs(1),
            });
            let id = wur2_engine::Engine::new(wur2_engine::Config::default()).handle_connect(
                "127.0.0.1:1".parse().expect("addr"),
                std::time::Instant::now(),
            );
            let task = run(id, stream, Arc::new(Link::default()), reports);
            // The same budget as the Tokio driver's connection task.
            let size = std::mem::size_of_val(&task);
            assert!(size <= 256, "a connection task's future is {size} bytes");
        });
    }
}
