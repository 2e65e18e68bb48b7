//! The cluster bus as the engine's loop sees it. [`bus`] makes a pair: a [`BusLink`] the
//! loop keeps (the engine's publications leave through it without ever waiting) and a
//! [`BusPort`] that the driver's transport serves (NATS in the `wur2` binary): it takes
//! publications in the engine's order, hands in what other nodes published, and says when
//! its connection is up or down.
//!
//! It owns the bound on publications waiting for the transport ([`BUS_QUEUE_MESSAGES`],
//! [`BUS_QUEUE_BYTES`]: past it they are dropped, counted and logged, never silently) and
//! the bus's side of [`ServerStatus`](crate::ServerStatus). It never touches a socket.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use wur2_engine::Topic;

use crate::clock::wall_clock_now;

/// Publications waiting for the transport at most (while the bus is down, or slow).
pub const BUS_QUEUE_MESSAGES: usize = 10_000;
/// Bytes of publications waiting for the transport at most.
pub const BUS_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// Received payloads and connection events waiting for the engine's loop at most; a
/// transport that finds this full waits (its client's own buffer takes the pressure).
const BUS_INBOX: usize = 4096;

/// One publication of the engine, for the transport to carry to `topic`'s nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Every node, or one.
    pub topic: Topic,
    /// The engine's payload, as is.
    pub payload: Bytes,
}

/// What the transport hands to the engine's loop.
#[derive(Debug)]
pub(crate) enum BusEvent {
    /// The connection is up: first, or again after it was lost.
    Connected,
    /// The connection is lost.
    Disconnected,
    /// Another node published this (on a topic this node listens to).
    Received(Bytes),
}

/// The bus's numbers, shared by both ends and read by [`ServerStatus`](crate::ServerStatus).
#[derive(Debug)]
pub(crate) struct BusShared {
    state: watch::Sender<LinkState>,
    /// Unix milliseconds of the last change between up and down (or of the start).
    changed_unix_ms: AtomicI64,
    queued: AtomicUsize,
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
    /// Whether publications are being dropped now (so the log says so once per spell).
    dropping: AtomicBool,
    sent_bytes: AtomicU64,
    received_bytes: AtomicU64,
}

impl BusShared {
    fn new() -> BusShared {
        BusShared {
            state: watch::Sender::new(LinkState::default()),
            changed_unix_ms: AtomicI64::new(wall_clock_now().unix_ms),
            queued: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
            sent_bytes: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
        }
    }

    /// A copy of the numbers now.
    pub(crate) fn snapshot(&self) -> BusStatus {
        BusStatus {
            up: self.state.borrow().up,
            changed_unix_ms: self.changed_unix_ms.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            received_bytes: self.received_bytes.load(Ordering::Relaxed),
        }
    }

    /// Counts one publication that will never leave this node, and says so (once per
    /// spell of drops, with the total).
    fn drop_one(&self, why: &dyn Display) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.dropping.swap(true, Ordering::Relaxed) {
            warn!(
                dropped_total = dropped,
                "cluster bus: dropping publications ({why}); other nodes will see a gap and \
                 ask for this node's state"
            );
        }
    }

    /// A publication of `len` bytes left the queue.
    fn taken(&self, len: usize) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    /// Turns up or down; returns whether that is a change.
    fn set_up(&self, up: bool) -> bool {
        let changed = self.state.send_if_modified(|state| {
            let changed = state.up != up;
            state.up = up;
            changed
        });
        if changed {
            self.changed_unix_ms
                .store(wall_clock_now().unix_ms, Ordering::Relaxed);
        }
        changed
    }
}

/// Whether the transport is connected, and whether the server has stopped publishing.
#[derive(Debug, Clone, Copy, Default)]
struct LinkState {
    up: bool,
    stopped: bool,
}

/// The bus as [`ServerStatus::bus`](crate::ServerStatus::bus) shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusStatus {
    /// Whether the transport's connection is up.
    pub up: bool,
    /// When it last went up or down (or the server started), in Unix milliseconds.
    pub changed_unix_ms: i64,
    /// Publications waiting for the transport.
    pub queued: usize,
    /// Bytes of those publications.
    pub queued_bytes: usize,
    /// Publications dropped since start: over the queue's bound, or refused by the
    /// transport.
    pub dropped: u64,
    /// Bytes of publications handed to the transport.
    pub sent_bytes: u64,
    /// Bytes of payloads received from the transport.
    pub received_bytes: u64,
}

/// Makes the two ends of a cluster bus: give the [`BusLink`] to
/// [`serve_with_bus`](crate::serve_with_bus), and the [`BusPort`] to the transport.
pub fn bus() -> (BusLink, BusPort) {
    let shared = Arc::new(BusShared::new());
    let (publications_tx, publications) = mpsc::unbounded_channel();
    let (events_tx, events) = mpsc::channel(BUS_INBOX);
    let link = BusLink {
        outbox: BusOutbox {
            publications: publications_tx,
            shared: Arc::clone(&shared),
        },
        events,
    };
    let port = BusPort {
        publications,
        held: None,
        state: shared.state.subscribe(),
        inbox: BusInbox {
            events: events_tx,
            shared,
        },
    };
    (link, port)
}

/// The engine loop's end of the bus, handed to [`serve_with_bus`](crate::serve_with_bus).
#[derive(Debug)]
pub struct BusLink {
    pub(crate) outbox: BusOutbox,
    pub(crate) events: mpsc::Receiver<BusEvent>,
}

/// Where the engine's loop puts publications: never waits, bounded.
#[derive(Debug)]
pub(crate) struct BusOutbox {
    publications: mpsc::UnboundedSender<Publication>,
    pub(crate) shared: Arc<BusShared>,
}

impl BusOutbox {
    /// Queues `payload` for `topic`, or drops and counts it when the queue is full (or the
    /// transport is gone).
    pub(crate) fn publish(&self, topic: Topic, payload: Bytes) {
        let shared = &self.shared;
        let len = payload.len();
        let queued = shared.queued.load(Ordering::Relaxed);
        let queued_bytes = shared.queued_bytes.load(Ordering::Relaxed);
        if queued >= BUS_QUEUE_MESSAGES || queued_bytes + len > BUS_QUEUE_BYTES {
            shared.drop_one(&format_args!(
                "{queued} publications of {queued_bytes} bytes wait already"
            ));
            return;
        }
        shared.queued.fetch_add(1, Ordering::Relaxed);
        shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        if self
            .publications
            .send(Publication { topic, payload })
            .is_err()
        {
            shared.taken(len);
            shared.drop_one(&"the bus transport has stopped");
        }
    }
}

impl Drop for BusOutbox {
    /// The server has stopped: the transport takes what is queued and ends.
    fn drop(&mut self) {
        self.shared.state.send_modify(|state| state.stopped = true);
    }
}

/// The transport's end of the bus: publications to carry, and an [`BusInbox`] for what
/// arrives. Dropping it stops the bus (later publications are dropped and counted).
#[derive(Debug)]
pub struct BusPort {
    publications: mpsc::UnboundedReceiver<Publication>,
    /// Taken from the queue just as the bus went down: the first to go when it is back.
    held: Option<Publication>,
    state: watch::Receiver<LinkState>,
    inbox: BusInbox,
}

impl BusPort {
    /// The next publication to carry, in the engine's order, once the connection is up
    /// (while it is down they wait here, within the bound). `None` once the server has
    /// stopped and every publication has been taken; publications still waiting then
    /// while the bus is down are dropped and counted, so a shutdown never waits for it.
    pub async fn next_publication(&mut self) -> Option<Publication> {
        let shared = Arc::clone(&self.inbox.shared);
        let publication = loop {
            let state = self
                .state
                .wait_for(|state| state.up || state.stopped)
                .await
                .map(|state| *state)
                .unwrap_or(LinkState {
                    up: false,
                    stopped: true,
                });
            if !state.up {
                let held = self.held.take().into_iter();
                for publication in
                    held.chain(std::iter::from_fn(|| self.publications.try_recv().ok()))
                {
                    shared.taken(publication.payload.len());
                    shared.drop_one(&"the server stopped while the bus was down");
                }
                return None;
            }
            let publication = match self.held.take() {
                Some(held) => held,
                None => self.publications.recv().await?,
            };
            // The bus may have gone down while this one was awaited: it waits with the rest.
            if self.state.borrow().up {
                break publication;
            }
            self.held = Some(publication);
        };
        let len = publication.payload.len();
        shared.taken(len);
        shared.sent_bytes.fetch_add(len as u64, Ordering::Relaxed);
        if shared.queued.load(Ordering::Relaxed) == 0
            && shared.dropping.swap(false, Ordering::Relaxed)
        {
            info!(
                dropped_total = shared.dropped.load(Ordering::Relaxed),
                "cluster bus: the publication queue has room again"
            );
        }
        Some(publication)
    }

    /// The transport could not carry a publication it took (for example over the bus's
    /// largest payload): counted with the drops and logged.
    pub fn lost(&self, why: &dyn Display) {
        self.inbox.shared.drop_one(why);
    }

    /// Where the transport's other tasks hand in what arrives and how the connection is.
    pub fn inbox(&self) -> BusInbox {
        self.inbox.clone()
    }
}

/// Hands payloads and connection changes to the engine's loop; cheap to clone.
#[derive(Debug, Clone)]
pub struct BusInbox {
    events: mpsc::Sender<BusEvent>,
    shared: Arc<BusShared>,
}

/// The server has stopped: nothing takes what the bus receives any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server has stopped")]
pub struct ServerStopped;

impl BusInbox {
    /// Another node published `payload`; waits while the engine's loop is behind.
    pub async fn received(&self, payload: Bytes) -> Result<(), ServerStopped> {
        self.shared
            .received_bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.events
            .send(BusEvent::Received(payload))
            .await
            .map_err(|_| ServerStopped)
    }

    /// The connection is up: the first time, or again. Subscribe first: the engine
    /// publishes at once a request for every node's state, and the answers must find
    /// this node listening. Saying it twice does nothing more.
    pub async fn connected(&self) -> Result<(), ServerStopped> {
        if !self.shared.set_up(true) {
            return Ok(());
        }
        info!("cluster bus connected");
        self.events
            .send(BusEvent::Connected)
            .await
            .map_err(|_| ServerStopped)
    }

    /// Whether the bus is up, as last said by [`BusInbox::connected`] and
    /// [`BusInbox::disconnected`].
    pub fn is_up(&self) -> bool {
        self.shared.state.borrow().up
    }

    /// The connection is lost: local users are still served, publications wait (within
    /// the bound) until [`BusInbox::connected`], and the engine stops its heartbeat
    /// meanwhile. Saying it twice does nothing more.
    pub async fn disconnected(&self) -> Result<(), ServerStopped> {
        if !self.shared.set_up(false) {
            return Ok(());
        }
        warn!(
            "cluster bus lost: serving this node's users only; publications wait (at most \
             {BUS_QUEUE_MESSAGES} or {} MiB) until it is back",
            BUS_QUEUE_BYTES >> 20
        );
        self.events
            .send(BusEvent::Disconnected)
            .await
            .map_err(|_| ServerStopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    #[test]
    fn publications_past_the_bound_are_dropped_and_counted_while_the_bus_is_down() {
        let (link, port) = bus();
        for _ in 0..BUS_QUEUE_MESSAGES + 5 {
            link.outbox.publish(Topic::All, payload(10));
        }
        let status = link.outbox.shared.snapshot();
        assert!(!status.up);
        assert_eq!(status.queued, BUS_QUEUE_MESSAGES);
        assert_eq!(status.dropped, 5);
        drop(port);
    }

    #[test]
    fn the_byte_bound_counts_too() {
        let (link, _port) = bus();
        link.outbox
            .publish(Topic::All, payload(BUS_QUEUE_BYTES - 1));
        link.outbox.publish(Topic::All, payload(2));
        link.outbox.publish(Topic::All, payload(1));
        let status = link.outbox.shared.snapshot();
        assert_eq!((status.queued, status.dropped), (2, 1));
        assert_eq!(status.queued_bytes, BUS_QUEUE_BYTES);
    }

    #[test]
    fn publications_wait_for_the_connection_and_leave_in_the_engines_order() {
        futures_lite::future::block_on(async {
            let (mut link, mut port) = bus();
            link.outbox.publish(Topic::All, payload(1));
            link.outbox.publish(Topic::Node("b".into()), payload(2));
            let inbox = port.inbox();
            let waiting = futures_lite::future::poll_once(port.next_publication()).await;
            assert!(waiting.is_none(), "nothing leaves while the bus is down");
            inbox.connected().await.expect("the loop listens");
            inbox.connected().await.expect("twice is fine");
            assert!(matches!(link.events.try_recv(), Ok(BusEvent::Connected)));
            assert!(link.events.try_recv().is_err(), "one connected event");
            let first = port.next_publication().await.expect("first");
            let second = port.next_publication().await.expect("second");
            assert_eq!((first.topic, first.payload.len()), (Topic::All, 1));
            assert_eq!(second.topic, Topic::Node("b".into()));
            let status = link.outbox.shared.snapshot();
            assert!(status.up);
            assert_eq!((status.queued, status.sent_bytes), (0, 3));
            inbox.disconnected().await.expect("the loop listens");
            assert!(matches!(link.events.try_recv(), Ok(BusEvent::Disconnected)));
            assert!(!link.outbox.shared.snapshot().up);
            drop(link);
            assert!(
                port.next_publication().await.is_none(),
                "a stopped server with the bus down does not wait for it"
            );
        });
    }
}
