//! The driver's side of its connections, without the sockets: which connection gets which
//! frames and instructions from one drain of the engine's outputs, handed over in one lock
//! and one wake-up per connection ([`Connections`]), and the slot a connection task reads
//! them from ([`Link`]).
//!
//! It holds no chat state (the engine has it) and never touches a socket (the driver's
//! connection tasks do); it only routes.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tracing::{debug, info};
use wur2_engine::{ConnectionId, Output};

/// Received bytes handed to the engine per loop turn at most (one event may pass it).
/// Between turns the connection tasks write and report, which keeps the engine's count of
/// bytes queued per client close to the truth, so fast readers are not taken for slow.
pub const INPUT_BUDGET: usize = 64 * 1024;

/// Bytes a connection task reads from its socket in one system call at most.
pub const READ_CHUNK: usize = 16 * 1024;
/// Buffers handed to one vectored write at most (well below every platform's `IOV_MAX`).
pub const MAX_IOVECS: usize = 64;
/// Frames up to this size are copied once into the drain round's shared buffer (a
/// broadcast once for all its recipients), and each connection gets slices of it: the
/// frames a connection got one after another in the round leave as one slice, one
/// buffer, one write, with no copy and no allocation per recipient. Larger frames (file
/// chunks) are handed over shared, as they are.
pub const COALESCE_MAX: usize = 1024;
/// A round buffer of more than this many bytes is shared only with connections that get
/// at least [`SHARE_FRACTION`] of it; the others get their part copied (see
/// [`Connections::deliver`]).
const SHARE_ALWAYS_BELOW: usize = 4096;
/// See [`SHARE_ALWAYS_BELOW`]: a connection's slices keep the whole round buffer alive
/// while they wait to be written, so a slow reader of a quiet channel must not keep the
/// rounds of a busy one; sharing only a part of at least one eighth bounds what its
/// queue holds to eight times its own bytes.
const SHARE_FRACTION: usize = 8;

/// Bytes of unread input discarded while lingering after a graceful close, at most.
pub const LINGER_DISCARD_LIMIT: usize = 256 * 1024;
/// How long to linger after a graceful close for the client to close its side.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// What the accept loop and the connection tasks tell the engine's loop; `S` is the
/// runtime's socket type.
#[derive(Debug)]
pub enum ConnectionEvent<S> {
    /// The accept loop got a new client.
    Accepted(S, SocketAddr),
    /// The web listener upgraded a client to a WebSocket, whose frames carry JSON lines
    /// only: the engine speaks JSON to it from the first line, and the driver frames
    /// what it writes ([`Framing::WebSocket`]).
    AcceptedWebSocket(S, SocketAddr),
    /// Bytes arrived from the client.
    Received(ConnectionId, Bytes),
    /// The client closed its side (end of stream).
    PeerClosed(ConnectionId),
    /// Reading or writing failed (reset, broken pipe); the socket is gone.
    Failed(ConnectionId, io::Error),
}

impl<S> ConnectionEvent<S> {
    /// The bytes this event hands the engine, if it is received input (for
    /// [`input_budget`]).
    pub fn received_len(&self) -> Option<usize> {
        match self {
            ConnectionEvent::Received(_, data) => Some(data.len()),
            _ => None,
        }
    }
}

/// How the driver wants a connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Write what is queued (within the flush timeout), then close.
    Flush,
    /// Drop what is queued and close now.
    Abort,
}

/// The slot between the engine's loop and one connection task: instructions go in under a
/// lock, then the task is woken.
///
/// The wake-up is a waker slot under the same lock rather than a runtime's notify
/// primitive: it keeps the link and the waiting task small, and works on any runtime.
#[derive(Default, Debug)]
pub struct Link {
    state: Mutex<LinkState>,
}

/// Bytes a connection task may have read and not yet seen handed to the engine. Past this
/// it stops reading until the engine's loop catches up, so a paused client's bytes wait in
/// the kernel, not in the driver's queues.
pub const READ_AHEAD: usize = 64 * 1024;

#[derive(Default, Debug)]
struct LinkState {
    outbox: Vec<Bytes>,
    paused: bool,
    /// Bytes read by the task and not yet handed to the engine.
    unprocessed: usize,
    closing: Option<Closing>,
    /// Something changed since the task last looked.
    news: bool,
    /// The task, when it waits.
    waker: Option<Waker>,
}

impl Link {
    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A poisoned lock only means a task panicked mid-update of plain data; the data is
        // still usable, and losing the connection over it would be worse.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands the task new frames, the reading state and maybe a close, in one lock and one
    /// wake-up.
    fn deliver(&self, frames: &mut Vec<Bytes>, paused: bool, closing: Option<Closing>) {
        // `frames` leaves empty and without capacity either way: an idle connection keeps
        // no buffer on the driver's side.
        let frames = std::mem::take(frames);
        let waker = {
            let mut state = self.lock();
            if state.outbox.is_empty() {
                state.outbox = frames;
            } else {
                state.outbox.extend(frames);
            }
            state.paused = paused;
            if closing.is_some() {
                state.closing = closing;
            }
            state.news = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The task's side: moves the delivered frames to the end of `queue` and returns
    /// whether reading is paused and whether to close.
    pub fn take(&self, queue: &mut VecDeque<Bytes>) -> (bool, Option<Closing>) {
        let mut state = self.lock();
        if !state.outbox.is_empty() {
            // Taken whole, so the outbox keeps no capacity while idle.
            let frames = std::mem::take(&mut state.outbox);
            if queue.is_empty() {
                *queue = VecDeque::from(frames);
            } else {
                queue.extend(frames);
            }
        }
        state.news = false;
        (state.must_not_read(), state.closing)
    }

    /// The task's side, inside its poll: `true` when something was delivered since the
    /// last [`Link::take`]; otherwise `waker` is woken at the next delivery.
    pub fn poll_news(&self, waker: &Waker) -> bool {
        let mut state = self.lock();
        if state.news {
            return true;
        }
        if !state.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            state.waker = Some(waker.clone());
        }
        false
    }

    /// Whether the task must stop reading: the engine asked it to, or [`READ_AHEAD`]
    /// bytes already wait for the engine.
    pub fn paused(&self) -> bool {
        self.lock().must_not_read()
    }

    /// The task's side: it read `len` bytes and sends them to the driver.
    pub fn read(&self, len: usize) {
        self.lock().unprocessed += len;
    }

    /// The driver's side: `len` bytes of this connection reached the engine; a task held
    /// back by [`READ_AHEAD`] is woken to read again.
    fn processed(&self, len: usize) {
        let waker = {
            let mut state = self.lock();
            let was_full = state.unprocessed >= READ_AHEAD;
            state.unprocessed = state.unprocessed.saturating_sub(len);
            if !was_full || state.unprocessed >= READ_AHEAD {
                return;
            }
            state.news = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl LinkState {
    fn must_not_read(&self) -> bool {
        self.paused || self.unprocessed >= READ_AHEAD
    }
}

/// The driver's record of one live connection: small, since every connection has one
/// for as long as it lives; what a drain round stages for it lives in the round.
struct Entry {
    id: ConnectionId,
    link: Arc<Link>,
    /// The client's address as [`AddressCounts`] counts it.
    address: IpAddr,
    /// Where this connection's frames of the current round are in `Connections::round`.
    staged: Option<u32>,
    paused: bool,
    closing: Option<Closing>,
    framing: Framing,
}

/// How a connection's transport carries the engine's lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// As they are (TCP, TLS).
    Lines,
    /// One WebSocket text frame per line: the round frames each output once for all such
    /// recipients, and their transport writes the frames as they are.
    WebSocket,
}

/// What the current drain round has for one connection.
struct Staged {
    id: ConnectionId,
    /// Its frames in order, handed over in one go at the round's end.
    pieces: Vec<Piece>,
}

/// Part of what a round has for one connection.
enum Piece {
    /// A large frame, shared as it is.
    Shared(Bytes),
    /// Bytes `start..end` of the round buffer: small frames that followed one another.
    Round { start: u32, end: u32 },
}

impl Staged {
    /// Adds `piece`: a shared buffer, or bytes of the round buffer (see
    /// [`Staged::push_round`]).
    fn push(&mut self, piece: &Piece) {
        match *piece {
            Piece::Shared(ref frame) => self.pieces.push(Piece::Shared(frame.clone())),
            Piece::Round { start, end } => self.push_round(start, end),
        }
    }

    /// Adds bytes `start..end` of the round buffer, joined to the last piece when it ends
    /// where they begin.
    fn push_round(&mut self, start: u32, end: u32) {
        if let Some(Piece::Round { end: last, .. }) = self.pieces.last_mut()
            && *last == start
        {
            *last = end;
            return;
        }
        self.pieces.push(Piece::Round { start, end });
    }

    /// Bytes of the round buffer it gets.
    fn round_bytes(&self) -> usize {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Shared(_) => 0,
                Piece::Round { start, end } => (end - start) as usize,
            })
            .sum()
    }
}

/// Bytes of room the next round buffer starts with at most.
const ROUND_BUFFER_KEEP: usize = 64 * 1024;

/// Round records kept between rounds at most (a burst that touched more gives the rest
/// back): enough for a 10 000-member channel's broadcasts to stage without allocating,
/// at most about 2 MiB kept.
const ROUND_KEEP: usize = 16 * 1024;
/// Pieces a kept round record keeps room for (most connections get one or two a round).
const PIECES_KEEP: usize = 2;

/// Live connections per client address (one host's IPv6 /64 as one address, as the
/// engine counts), readable from any task: the web listener refuses an upgrade from an
/// address that is at the engine's limit already, before the upgrade.
#[derive(Debug, Default)]
pub struct AddressCounts {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressCounts {
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Plain counts: still right after a panic elsewhere.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Live connections from `ip` (from its /64 for IPv6).
    pub fn get(&self, ip: IpAddr) -> usize {
        let key = wur2_engine::address_key(ip);
        self.lock().get(&key).copied().unwrap_or(0)
    }

    fn add(&self, key: IpAddr) {
        *self.lock().entry(key).or_insert(0) += 1;
    }

    fn remove(&self, key: IpAddr) {
        let mut counts = self.lock();
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }
}

/// The live connections and what the current drain round has for each.
#[derive(Default)]
pub struct Connections {
    /// Indexed by [`ConnectionId::slot`]; the entry's id tells a reused slot apart. The
    /// engine hands a slot out again only after a drain that carried its connection's
    /// close, and the round delivers (and forgets) closed entries at the end of that drain,
    /// so a slot never holds two connections.
    entries: Vec<Option<Entry>>,
    live: usize,
    /// The connections the current round touched, in the order it first touched them:
    /// the first `round_len` records; the rest are spare, kept from earlier rounds.
    round: Vec<Staged>,
    round_len: usize,
    /// The current round's small frames, each once, back to back.
    round_buffer: BytesMut,
    /// Live connections by address, shared with the web listener.
    by_address: Arc<AddressCounts>,
}

impl Connections {
    /// No connections.
    pub fn new() -> Connections {
        Connections::default()
    }

    /// Live connections per address, as the web listener reads them.
    pub fn address_counts(&self) -> Arc<AddressCounts> {
        Arc::clone(&self.by_address)
    }

    /// Connections that have not been closed yet.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// `id`'s entry, from the table alone (so the round can be borrowed beside).
    fn entry_mut(entries: &mut [Option<Entry>], id: ConnectionId) -> Option<&mut Entry> {
        entries
            .get_mut(id.slot())?
            .as_mut()
            .filter(|entry| entry.id == id)
    }

    /// Forgets a closed connection.
    fn remove(&mut self, id: ConnectionId) {
        if let Some(slot) = self.entries.get_mut(id.slot())
            && slot.as_ref().is_some_and(|entry| entry.id == id)
        {
            if let Some(entry) = slot.take() {
                self.by_address.remove(entry.address);
            }
            self.live -= 1;
        }
    }

    /// Records a new connection; its task reads instructions from the returned link.
    pub fn insert(&mut self, id: ConnectionId, peer: SocketAddr, framing: Framing) -> Arc<Link> {
        info!(connection = %id, %peer, "connected");
        let link = Arc::new(Link::default());
        let slot = id.slot();
        if self.entries.len() <= slot {
            self.entries.resize_with(slot + 1, || None);
        }
        let address = wur2_engine::address_key(peer.ip());
        self.by_address.add(address);
        let previous = self.entries[slot].replace(Entry {
            id,
            link: Arc::clone(&link),
            address,
            staged: None,
            paused: false,
            closing: None,
            framing,
        });
        debug_assert!(
            previous.is_none(),
            "the engine reused a slot before its close was drained"
        );
        self.live += usize::from(previous.is_none());
        link
    }

    /// `len` received bytes of `id` were handed to the engine (see [`READ_AHEAD`]).
    pub fn processed(&mut self, id: ConnectionId, len: usize) {
        if let Some(entry) = Self::entry_mut(&mut self.entries, id) {
            entry.link.processed(len);
        }
    }

    /// The peer went away (`reason`): write what is queued ([`Closing::Flush`], a
    /// half-closed client still reads) or drop it ([`Closing::Abort`], the socket failed).
    /// The engine logs the departure; this logs the socket's side of it.
    pub fn closed_by_peer(&mut self, id: ConnectionId, reason: &dyn Display, closing: Closing) {
        debug!(connection = %id, %reason, "socket closed");
        self.mark(id, |entry| entry.closing = Some(closing));
    }

    /// Stages one output of the engine for its connection. Outputs that are not about a
    /// connection (store requests, files) come back for the driver to carry out.
    pub fn route(&mut self, output: Output) -> Option<Output> {
        match output {
            Output::Transmit { connection, data } => self.stage(&[connection], &data),
            Output::Broadcast { recipients, data } => self.stage(&recipients, &data),
            // The engine logged why it closes.
            Output::Close {
                connection, flush, ..
            } => {
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
                self.mark(connection, |entry| entry.paused = true);
            }
            Output::ResumeReading(connection) => {
                self.mark(connection, |entry| entry.paused = false);
            }
            other => return Some(other),
        }
        None
    }

    /// Ends a drain round: hands every touched connection its frames and instructions in
    /// one lock and one wake-up each, and forgets closed ones. Returns whether any were
    /// touched.
    pub fn deliver(&mut self) -> bool {
        let touched = self.round_len > 0;
        let mut round = std::mem::take(&mut self.round);
        // Room for a round like this one next time (one allocation per round), but an idle
        // server keeps no large buffer from one busy round.
        let capacity = self.round_buffer.len().min(ROUND_BUFFER_KEEP);
        let shared =
            std::mem::replace(&mut self.round_buffer, BytesMut::with_capacity(capacity)).freeze();
        let copy_below = match shared.len() {
            len if len <= SHARE_ALWAYS_BELOW => 0,
            len => len / SHARE_FRACTION,
        };
        let mut frames = Vec::new();
        for staged in &mut round[..self.round_len] {
            let Some(entry) = Self::entry_mut(&mut self.entries, staged.id) else {
                staged.pieces.clear();
                staged.pieces.shrink_to(PIECES_KEEP);
                continue;
            };
            entry.staged = None;
            if entry.closing == Some(Closing::Abort) {
                staged.pieces.clear();
            }
            // Under SHARE_ALWAYS_BELOW every share is shared: no need to add it up.
            let copy = copy_below > 0 && staged.round_bytes() < copy_below;
            frames.extend(staged.pieces.drain(..).map(|piece| match piece {
                Piece::Shared(frame) => frame,
                Piece::Round { start, end } if copy => {
                    Bytes::copy_from_slice(&shared[start as usize..end as usize])
                }
                Piece::Round { start, end } => shared.slice(start as usize..end as usize),
            }));
            // The record stays for the next round with room for a few pieces, no more.
            staged.pieces.shrink_to(PIECES_KEEP);
            entry.link.deliver(&mut frames, entry.paused, entry.closing);
            if entry.closing.is_some() {
                self.remove(staged.id);
            }
        }
        // The records stay for the next round, their piece lists emptied but not freed
        // (no allocation per recipient and round), within bounds. Only the touched ones
        // were looked at: a small round after a large one costs no more than it touches.
        round.truncate(ROUND_KEEP);
        round.shrink_to(ROUND_KEEP);
        self.round = round;
        self.round_len = 0;
        touched
    }

    /// Updates a connection's record and lists it for delivery at the end of the round;
    /// returns where its round record is (`None`: no such connection).
    fn mark(&mut self, id: ConnectionId, update: impl FnOnce(&mut Entry)) -> Option<usize> {
        let round = &mut self.round;
        let entry = Self::entry_mut(&mut self.entries, id)?;
        update(entry);
        let index = match entry.staged {
            Some(index) => index as usize,
            None => {
                let index = self.round_len;
                entry.staged = Some(u32::try_from(index).ok()?);
                match round.get_mut(index) {
                    // A record of an earlier round, its pieces delivered.
                    Some(spare) => spare.id = id,
                    None => round.push(Staged {
                        id,
                        pieces: Vec::new(),
                    }),
                }
                self.round_len += 1;
                index
            }
        };
        Some(index)
    }

    /// Queues `data` for `recipients` in this round: a small frame is copied once into the
    /// round buffer and each recipient gets its place there, a larger one is shared (a
    /// reference-count bump). WebSocket recipients get the same, framed once.
    fn stage(&mut self, recipients: &[ConnectionId], data: &Bytes) {
        // Each placed once, when a recipient needs it.
        let (mut plain, mut framed) = (None, None);
        for &connection in recipients {
            // One lookup per recipient: a closing entry was marked in this round already
            // (its close is delivered, and the entry forgotten, at the round's end), so
            // marking it again adds no round record.
            let mut open = false;
            let mut framing = Framing::Lines;
            let Some(index) = self.mark(connection, |entry| {
                open = entry.closing.is_none();
                framing = entry.framing;
            }) else {
                continue;
            };
            if !open {
                continue;
            }
            let piece = match framing {
                Framing::Lines => &mut plain,
                Framing::WebSocket => &mut framed,
            }
            .get_or_insert_with(|| self.place(data, framing));
            self.round[index].push(piece);
        }
    }

    /// Where `data`, framed for `framing`, goes for this round's recipients: into the
    /// round buffer if small; otherwise shared as it is, or framed into a buffer of its own.
    fn place(&mut self, data: &Bytes, framing: Framing) -> Piece {
        let write = |out: &mut BytesMut| match framing {
            Framing::Lines => out.extend_from_slice(data),
            Framing::WebSocket => crate::web::frame_lines(data, out),
        };
        let start = self.round_buffer.len();
        if data.len() <= COALESCE_MAX {
            write(&mut self.round_buffer);
            if let Ok(end) = u32::try_from(self.round_buffer.len()) {
                // `start` is smaller.
                return Piece::Round {
                    start: start as u32,
                    end,
                };
            }
            self.round_buffer.truncate(start);
        }
        match framing {
            Framing::Lines => Piece::Shared(data.clone()),
            Framing::WebSocket => {
                let mut own = BytesMut::new();
                write(&mut own);
                Piece::Shared(own.freeze())
            }
        }
    }
}

/// How many events from the front of a batch fit in [`INPUT_BUDGET`] (at least one);
/// `received` gives the bytes an event carries (`None`: not received bytes).
pub fn input_budget<E>(batch: &[E], received: impl Fn(&E) -> Option<usize>) -> usize {
    let mut bytes = 0;
    for (index, event) in batch.iter().enumerate() {
        if let Some(len) = received(event) {
            if bytes > 0 && bytes + len > INPUT_BUDGET {
                return index;
            }
            bytes += len;
        }
    }
    batch.len()
}

/// Drops `n` written bytes from the front of `queue`.
pub fn consume(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:1".parse().expect("address")
    }

    fn frames(link: &Link) -> Vec<Bytes> {
        let mut queue = VecDeque::new();
        link.take(&mut queue);
        queue.into()
    }

    #[test]
    fn a_rounds_small_frames_leave_as_one_buffer_in_order_around_large_ones() {
        let mut engine = wur2_engine::Engine::new(wur2_engine::Config::default());
        let id = engine.handle_connect(addr(), std::time::Instant::now());
        let mut connections = Connections::new();
        let link = connections.insert(id, addr(), Framing::Lines);
        let large = Bytes::from(vec![b'x'; COALESCE_MAX + 1]);
        for data in [
            Bytes::from_static(b"one\n"),
            Bytes::from_static(b"two\n"),
            large.clone(),
            Bytes::from_static(b"three\n"),
        ] {
            let output = Output::Broadcast {
                recipients: vec![id],
                data,
            };
            assert!(connections.route(output).is_none());
        }
        assert!(connections.deliver());
        let got = frames(&link);
        assert_eq!(got.len(), 3);
        assert_eq!(&got[0][..], b"one\ntwo\n");
        assert_eq!(got[1], large);
        assert_eq!(&got[2][..], b"three\n");
        let lone = Bytes::from_static(b"alone\n");
        let output = Output::Transmit {
            connection: id,
            data: lone.clone(),
        };
        assert!(connections.route(output).is_none());
        assert!(connections.deliver());
        assert_eq!(frames(&link), [lone]);
        // Nothing is kept for the next round.
        assert!(!connections.deliver());
        assert!(frames(&link).is_empty());
    }

    /// `n` connections known to an engine and to `connections`, with their links.
    fn connected(n: usize, connections: &mut Connections) -> Vec<(ConnectionId, Arc<Link>)> {
        let mut engine = wur2_engine::Engine::new(wur2_engine::Config::default());
        (0..n)
            .map(|_| {
                let id = engine.handle_connect(addr(), std::time::Instant::now());
                (id, connections.insert(id, addr(), Framing::Lines))
            })
            .collect()
    }

    #[test]
    fn websocket_recipients_share_one_framing_of_a_broadcast_and_tcp_ones_get_the_lines() {
        let mut engine = wur2_engine::Engine::new(wur2_engine::Config::default());
        let mut connections = Connections::new();
        let mut connect = |framing| {
            let id = engine.handle_connect(addr(), std::time::Instant::now());
            (id, connections.insert(id, addr(), framing))
        };
        let (tcp, tcp_link) = connect(Framing::Lines);
        let (web, web_link) = connect(Framing::WebSocket);
        let (other_web, other_web_link) = connect(Framing::WebSocket);
        let large = vec![b'x'; COALESCE_MAX + 1];
        for data in [&b"{\"a\":1}\n{\"b\":2}\n"[..], &large] {
            let output = Output::Broadcast {
                recipients: vec![tcp, web, other_web],
                data: Bytes::copy_from_slice(data),
            };
            assert!(connections.route(output).is_none());
        }
        assert!(connections.deliver());
        let plain = frames(&tcp_link);
        assert_eq!(&plain[0][..], b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(plain[1], large);
        let framed = frames(&web_link);
        assert_eq!(&framed[0][..], b"\x81\x07{\"a\":1}\x81\x07{\"b\":2}");
        // 1 025 bytes: a 16-bit length.
        assert_eq!(&framed[1][..4], &[0x81, 126, 0x04, 0x01][..]);
        assert_eq!(&framed[1][4..], &large[..COALESCE_MAX + 1]);
        let other = frames(&other_web_link);
        assert_eq!(other, framed);
        for (mine, theirs) in framed.iter().zip(&other) {
            assert_eq!(mine.as_ptr(), theirs.as_ptr(), "framed once, shared");
        }
    }

    #[test]
    fn a_record_kept_from_an_earlier_round_carries_nothing_into_the_next() {
        let mut connections = Connections::new();
        let clients = connected(3, &mut connections);
        let [(a, a_link), (b, b_link), (c, c_link)] = &clients[..] else {
            unreachable!("three clients")
        };
        let send = |connections: &mut Connections, to: Vec<ConnectionId>, line: &'static [u8]| {
            let output = Output::Broadcast {
                recipients: to,
                data: Bytes::from_static(line),
            };
            assert!(connections.route(output).is_none());
            assert!(connections.deliver());
        };
        send(&mut connections, vec![*a, *b], b"first\n");
        assert_eq!(frames(a_link), [Bytes::from_static(b"first\n")]);
        assert_eq!(frames(b_link), [Bytes::from_static(b"first\n")]);
        // Two records are kept, with room for pieces; the next round reuses them for
        // other connections.
        assert_eq!(connections.round.len(), 2);
        assert!(
            connections
                .round
                .iter()
                .all(|staged| staged.pieces.capacity() > 0)
        );
        send(&mut connections, vec![*c], b"second\n");
        assert_eq!(frames(c_link), [Bytes::from_static(b"second\n")]);
        assert!(frames(a_link).is_empty());
        assert!(frames(b_link).is_empty());
        send(&mut connections, vec![*b, *a], b"third\n");
        assert_eq!(frames(a_link), [Bytes::from_static(b"third\n")]);
        assert_eq!(frames(b_link), [Bytes::from_static(b"third\n")]);
        assert!(frames(c_link).is_empty());
        // A record that held many pieces in one round keeps room for a few only.
        let large = Bytes::from(vec![b'x'; COALESCE_MAX + 1]);
        for _ in 0..10 {
            let output = Output::Transmit {
                connection: *c,
                data: large.clone(),
            };
            assert!(connections.route(output).is_none());
        }
        assert!(connections.deliver());
        assert_eq!(frames(c_link).len(), 10);
        assert!(
            connections
                .round
                .iter()
                .all(|staged| staged.pieces.capacity() <= PIECES_KEEP)
        );
    }

    #[test]
    fn a_rounds_broadcasts_are_one_shared_buffer_for_all_their_recipients() {
        let mut connections = Connections::new();
        let clients = connected(3, &mut connections);
        let everyone: Vec<ConnectionId> = clients.iter().map(|(id, _)| *id).collect();
        for line in [&b"[Global] ann: one\n"[..], b"[Global] bob: two\n"] {
            let output = Output::Broadcast {
                recipients: everyone.clone(),
                data: Bytes::copy_from_slice(line),
            };
            assert!(connections.route(output).is_none());
        }
        // The third client also gets a line of its own, between nothing: it joins its run.
        let output = Output::Transmit {
            connection: everyone[2],
            data: Bytes::from_static(b"just you\n"),
        };
        assert!(connections.route(output).is_none());
        assert!(connections.deliver());
        let got: Vec<Vec<Bytes>> = clients.iter().map(|(_, link)| frames(link)).collect();
        assert_eq!(got[0].len(), 1, "one buffer: {:?}", got[0]);
        assert_eq!(&got[0][0][..], b"[Global] ann: one\n[Global] bob: two\n");
        assert_eq!(got[1], got[0]);
        assert_eq!(got[0][0].as_ptr(), got[1][0].as_ptr(), "shared, not copied");
        assert_eq!(
            &got[2][0][..],
            b"[Global] ann: one\n[Global] bob: two\njust you\n"
        );
    }

    #[test]
    fn a_small_part_of_a_large_round_is_copied_so_a_slow_reader_keeps_no_more() {
        let mut connections = Connections::new();
        let clients = connected(2, &mut connections);
        let (busy, quiet) = (clients[0].0, clients[1].0);
        let line = Bytes::from(vec![b'x'; 1000]);
        for _ in 0..8 {
            let output = Output::Transmit {
                connection: busy,
                data: line.clone(),
            };
            assert!(connections.route(output).is_none());
        }
        let output = Output::Transmit {
            connection: quiet,
            data: Bytes::from_static(b"hi\n"),
        };
        assert!(connections.route(output).is_none());
        assert!(connections.deliver());
        let busy_frames = frames(&clients[0].1);
        assert_eq!(busy_frames.len(), 1);
        assert_eq!(busy_frames[0].len(), 8000);
        let quiet_frames = frames(&clients[1].1);
        assert_eq!(quiet_frames, [Bytes::from_static(b"hi\n")]);
        // The round buffer holds the busy client's 8 000 bytes, then the quiet one's 3.
        let start = busy_frames[0].as_ptr() as usize;
        let quiet_at = quiet_frames[0].as_ptr() as usize;
        assert!(
            !(start..start + 8003).contains(&quiet_at),
            "the quiet client's 3 bytes are its own copy, not a slice of the round"
        );
    }

    #[test]
    fn a_reused_slot_does_not_get_the_old_connections_frames() {
        let now = std::time::Instant::now();
        let mut engine = wur2_engine::Engine::new(wur2_engine::Config::default());
        let old = engine.handle_connect(addr(), now);
        engine.handle_peer_closed(old, now);
        while engine.poll_output().is_some() {}
        let new = engine.handle_connect(addr(), now);
        assert_eq!(old.slot(), new.slot(), "the engine reuses the slot");
        let mut connections = Connections::new();
        let link = connections.insert(new, addr(), Framing::Lines);
        let output = Output::Transmit {
            connection: old,
            data: Bytes::from_static(b"for the old one\n"),
        };
        assert!(connections.route(output).is_none());
        assert!(!connections.deliver());
        assert!(frames(&link).is_empty());
        assert_eq!(connections.len(), 1);
    }

    #[test]
    fn a_client_accepted_in_the_turn_another_closes_gets_its_own_entry() {
        let now = std::time::Instant::now();
        let mut engine = wur2_engine::Engine::new(wur2_engine::Config::default());
        let mut connections = Connections::new();
        let old = engine.handle_connect(addr(), now);
        let old_link = connections.insert(old, addr(), Framing::Lines);
        while let Some(output) = engine.poll_output() {
            connections.route(output);
        }
        connections.deliver();
        frames(&old_link);
        // One turn: the engine closes `old`, then a new client is accepted, and only then
        // are the outputs routed. The engine keeps `old`'s slot until that drain is done.
        engine.handle_received(old, b"/close\n", now);
        let new = engine.handle_connect(addr(), now);
        assert_ne!(old.slot(), new.slot());
        let new_link = connections.insert(new, addr(), Framing::Lines);
        assert_eq!(connections.len(), 2);
        while let Some(output) = engine.poll_output() {
            assert!(connections.route(output).is_none());
        }
        connections.deliver();
        let mut queue = VecDeque::new();
        assert_eq!(old_link.take(&mut queue).1, Some(Closing::Flush));
        assert!(!queue.is_empty(), "the goodbye is written before the close");
        assert_eq!(new_link.take(&mut VecDeque::new()).1, None);
        assert_eq!(connections.len(), 1);
    }

    #[test]
    fn frames_after_a_close_in_the_same_round_are_not_written() {
        let mut engine = wur2_engine::Engine::new(wur2_engine::Config::default());
        let id = engine.handle_connect(addr(), std::time::Instant::now());
        let mut connections = Connections::new();
        let link = connections.insert(id, addr(), Framing::Lines);
        for output in [
            Output::Transmit {
                connection: id,
                data: Bytes::from_static(b"goodbye\n"),
            },
            Output::Close {
                connection: id,
                reason: wur2_engine::CloseReason::ClientQuit,
                flush: true,
            },
            Output::Transmit {
                connection: id,
                data: Bytes::from_static(b"too late\n"),
            },
        ] {
            assert!(connections.route(output).is_none());
        }
        connections.deliver();
        let mut queue = VecDeque::new();
        assert_eq!(link.take(&mut queue).1, Some(Closing::Flush));
        assert_eq!(Vec::from(queue), vec![Bytes::from_static(b"goodbye\n")]);
        assert!(connections.is_empty());
    }

    #[test]
    fn consume_drops_whole_and_partial_buffers() {
        let mut queue: VecDeque<Bytes> = [Bytes::from_static(b"abc"), Bytes::from_static(b"defg")]
            .into_iter()
            .collect();
        consume(&mut queue, 5);
        assert_eq!(queue.len(), 1);
        assert_eq!(&queue[0][..], b"fg");
        consume(&mut queue, 2);
        assert!(queue.is_empty());
    }

    #[test]
    fn the_input_budget_takes_at_least_one_event() {
        let sizes = [INPUT_BUDGET * 2, 10, 10];
        assert_eq!(input_budget(&sizes, |n| Some(*n)), 1);
        let sizes = [10, 10, INPUT_BUDGET];
        assert_eq!(input_budget(&sizes, |n| Some(*n)), 2);
    }
}
