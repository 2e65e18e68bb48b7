//! One task per client socket: it reads bytes for the engine and writes what the engine
//! queued for this client. It owns the socket and nothing of chat state; it never decides
//! anything about the chat.
//!
//! Memory matters here more than anywhere (thousands of idle clients): while a connection
//! is idle its task holds no read buffer and no write buffer. Reads go through a stack
//! buffer in a synchronous helper and leave as exactly-sized [`Bytes`]; the write queue is
//! released as soon as it is empty.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use wur2_engine::ConnectionId;
use wur2_host::{
    Closing, LINGER_DISCARD_LIMIT, LINGER_TIME, Link, MAX_IOVECS, READ_CHUNK, consume,
};

/// Reads in a row before the task lets its other work (writes, instructions) run.
const READS_PER_WAKE: usize = 4;

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
    pub events: mpsc::Sender<Event>,
    /// Bytes that reached a socket.
    pub written: mpsc::UnboundedSender<(ConnectionId, usize)>,
    /// How long a graceful close may take to write what is queued.
    pub flush_timeout: Duration,
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
                let closing =
                    tokio::time::timeout(reports.flush_timeout, flush_and_close(stream, queue));
                let _ = Box::pin(closing).await;
                return;
            }
            None => {}
        }

        if !queue.is_empty() {
            match write_queued(&stream, &mut queue) {
                Ok(0) => {}
                Ok(n) => {
                    if reports.written.send((id, n)).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    if let Ok(Some(wait)) = send(events, Event::Failed(id, error)) {
                        let _ = wait.await;
                    }
                    return;
                }
            }
            if queue.is_empty() {
                // Idle connections hold no write buffer.
                queue = VecDeque::new();
            }
        }

        // One hand-written poll instead of a select of three futures: the task waits with
        // a few references in its state, not three futures' worth of it.
        let woken = std::future::poll_fn(|cx| {
            if link.poll_news(cx.waker()) {
                return Poll::Ready(Ok(Woken::Instructions));
            }
            if !queue.is_empty()
                && let Poll::Ready(ready) = stream.poll_write_ready(cx)
            {
                return Poll::Ready(ready.map(|()| Woken::Writable));
            }
            if reading
                && !paused
                && let Poll::Ready(ready) = stream.poll_read_ready(cx)
            {
                return Poll::Ready(ready.map(|()| Woken::Readable));
            }
            Poll::Pending
        })
        .await;
        match woken {
            Ok(Woken::Instructions | Woken::Writable) => {}
            Ok(Woken::Readable) => {
                for _ in 0..READS_PER_WAKE {
                    let (sent, fatal) = match read_now(&stream) {
                        Ok(Some(data)) if data.is_empty() => {
                            reading = false;
                            (send(events, Event::PeerClosed(id)), false)
                        }
                        Ok(Some(data)) => {
                            link.read(data.len());
                            (send(events, Event::Received(id, data)), false)
                        }
                        Ok(None) => break,
                        Err(error) => (send(events, Event::Failed(id, error)), true),
                    };
                    // Only the boxed wait for a full channel is held across this await.
                    let sent = match sent {
                        Ok(Some(wait)) => wait.await,
                        other => other.map(|_| ()),
                    };
                    if sent.is_err() || fatal {
                        return;
                    }
                    if !reading || link.paused() {
                        break;
                    }
                }
            }
            Err(error) => {
                if let Ok(Some(wait)) = send(events, Event::Failed(id, error)) {
                    let _ = wait.await;
                }
                return;
            }
        }
    }
}

/// A wait for room in the driver's channel (the driver is behind).
type WaitForRoom<'a> = Pin<Box<dyn Future<Output = Result<(), ()>> + Send + 'a>>;

/// Sends `event` to the driver now, or returns the boxed wait for a full channel (so
/// neither the event nor the waiting state is part of every idle task). `Err`: the driver
/// is gone.
fn send(events: &mpsc::Sender<Event>, event: Event) -> Result<Option<WaitForRoom<'_>>, ()> {
    match events.try_send(event) {
        Ok(()) => Ok(None),
        Err(mpsc::error::TrySendError::Full(event)) => Ok(Some(Box::pin(async move {
            events.send(event).await.map_err(|_| ())
        }))),
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// What woke a connection task.
enum Woken {
    /// The driver left new frames or instructions.
    Instructions,
    /// The socket can take more bytes.
    Writable,
    /// The socket has bytes (or end of stream) to read.
    Readable,
}

/// One non-blocking read into a stack buffer. `Ok(None)`: nothing to read now;
/// `Ok(Some(empty))`: end of stream.
fn read_now(stream: &TcpStream) -> io::Result<Option<Bytes>> {
    let mut buf = [0u8; READ_CHUNK];
    match stream.try_read(&mut buf) {
        Ok(n) => Ok(Some(Bytes::copy_from_slice(&buf[..n]))),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes as much of `queue` as the socket takes now, many buffers per system call.
/// Returns the bytes written; written buffers leave the queue.
fn write_queued(stream: &TcpStream, queue: &mut VecDeque<Bytes>) -> io::Result<usize> {
    let mut total = 0;
    while !queue.is_empty() {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, buf) in slices.iter_mut().zip(queue.iter()) {
            *slot = IoSlice::new(buf);
            count += 1;
        }
        let written = match stream.try_write_vectored(&slices[..count]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        total += written;
        consume(queue, written);
    }
    Ok(total)
}

/// Writes everything queued, closes our side, then discards what the client still sends
/// for a moment, so that closing a socket with unread input does not reset the connection
/// and destroy the last lines (a goodbye, the reason for a kick) before the client reads
/// them.
///
/// The engine forgot the connection already, so written bytes are not reported.
async fn flush_and_close(mut stream: TcpStream, mut queue: VecDeque<Bytes>) {
    while !queue.is_empty() {
        match write_queued(&stream, &mut queue) {
            Ok(0) => {}
            Ok(_) => continue,
            Err(_) => return,
        }
        if stream.writable().await.is_err() {
            return;
        }
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER_TIME, discard_until_closed(&stream)).await;
}

/// Reads and drops what the client still sends until it closes its side.
async fn discard_until_closed(stream: &TcpStream) {
    let mut discarded = 0;
    while discarded < LINGER_DISCARD_LIMIT {
        if stream.readable().await.is_err() {
            return;
        }
        match read_now(stream) {
            Ok(Some(data)) if data.is_empty() => return,
            Ok(Some(data)) => discarded += data.len(),
            Ok(None) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_connection_task_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (events, _events_rx) = mpsc::channel(1);
        let (written, _written_rx) = mpsc::unbounded_channel();
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
        // The whole state of a connection task while it waits; the goal for everything
        // a logged-in idle connection costs is 2 KiB. (Tokio's task cell rounds the
        // future up with its header: 408 bytes made a 512-byte cell.)
        let size = std::mem::size_of_val(&task);
        assert!(size <= 256, "a connection task's future is {size} bytes");
    }
}
