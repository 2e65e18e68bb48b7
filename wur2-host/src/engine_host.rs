//! [`EngineHost`]: the engine with what every driver keeps beside it — its connections'
//! hand-over slots, its server-side files, the count of store requests in flight — and the
//! steps every driver takes on them, whatever its runtime. A driver feeds it what its
//! sockets, store and files report, and carries out the [`Work`] a drain hands back
//! (spawning on its own runtime).

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{info, warn};
use wur2_engine::{
    ConnectionId, Engine, Mode, Output, RequestId, StoreError, StoreReply, StoreRequest, Topic,
};

use crate::connections::{Closing, ConnectionEvent, Connections, Framing, Link, input_budget};
use crate::files::{FileEvent, FileJob, Files};
use crate::memory::Release;

/// What a drain asks the driver to start on its runtime, in the engine's order.
pub enum Work {
    /// Blocking file I/O: run it off the loop, give its event to
    /// [`EngineHost::file_event`].
    File(FileJob),
    /// A store request: call [`Storage::execute`](crate::Storage::execute) now (order
    /// matters), await the reply anywhere, give it to [`EngineHost::store_reply`].
    Store(RequestId, StoreRequest),
    /// Cluster mode: a publication for the other nodes, to hand to the bus now (order
    /// matters: peers number what they receive).
    Publish(Topic, Bytes),
}

/// What arrived on a driver's channels since its last turn, drained without waiting.
pub struct Arrived<W, R, F> {
    /// Bytes that reached each socket.
    pub written: W,
    /// Store replies.
    pub replies: R,
    /// Finished file jobs.
    pub files: F,
}

/// The engine and the driver's runtime-independent state beside it.
pub struct EngineHost {
    /// The chat engine; drivers call it directly for written bytes and timeouts.
    pub engine: Engine,
    connections: Connections,
    files: Files,
    in_flight: usize,
    /// Freed memory goes back to the system once the server is quiet.
    release: Release,
    busy: BusyLog,
}

/// How often, at most, busy store answers are logged.
const BUSY_LOG_EVERY: Duration = Duration::from_secs(10);

/// Busy store answers (a full password-hashing queue) are what a login storm is meant to
/// get, thousands of them: the first is logged at once, later ones summed at most every
/// [`BUSY_LOG_EVERY`].
#[derive(Debug, Default)]
struct BusyLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl BusyLog {
    /// One more busy answer at `now`; returns how many were logged now, if it logged.
    fn busy(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < BUSY_LOG_EVERY)
        {
            return None;
        }
        let requests = std::mem::take(&mut self.unlogged);
        warn!(
            requests,
            "store busy (the password hashing queue is full): clients were told to try again"
        );
        self.last = Some(now);
        Some(requests)
    }
}

impl EngineHost {
    /// Hosts `engine`, with server-side files from `files_dir` (canonical; see
    /// [`prepare`](crate::prepare)).
    pub fn new(engine: Engine, files_dir: Option<PathBuf>) -> EngineHost {
        EngineHost {
            engine,
            connections: Connections::new(),
            files: Files::new(files_dir),
            in_flight: 0,
            release: Release::default(),
            busy: BusyLog::default(),
        }
    }

    /// When the driver must call [`EngineHost::turn`] even if nothing arrives: the
    /// engine's next timer, or the moment the server has been quiet long enough to give
    /// freed memory back to the system.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.engine.poll_timeout(), self.release.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Live connections per address, for the web listener's check before an upgrade.
    pub fn address_counts(&self) -> Arc<crate::connections::AddressCounts> {
        self.connections.address_counts()
    }

    /// Connections not closed yet.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Store requests started and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Gives the engine what a socket reported. A new client gets an id and a link, and
    /// `start` starts its connection task on the driver's runtime; once shutdown began,
    /// the engine refuses it (its only outputs are a shutdown notice and a close).
    pub fn handle_event<S>(
        &mut self,
        event: ConnectionEvent<S>,
        now: Instant,
        start: &mut impl FnMut(ConnectionId, S, Arc<Link>),
    ) {
        match event {
            ConnectionEvent::Accepted(socket, peer) => {
                let id = self.engine.handle_connect(peer, now);
                start(
                    id,
                    socket,
                    self.connections.insert(id, peer, Framing::Lines),
                );
            }
            ConnectionEvent::AcceptedWebSocket(socket, peer) => {
                let id = self.engine.handle_connect_in(peer, Mode::Json, now);
                let link = self.connections.insert(id, peer, Framing::WebSocket);
                start(id, socket, link);
            }
            ConnectionEvent::Received(id, data) => {
                self.engine.handle_received(id, &data, now);
                self.connections.processed(id, data.len());
            }
            // Write what is already queued: a half-closed client still reads.
            ConnectionEvent::PeerClosed(id) => {
                self.peer_closed(id, &"peer closed", Closing::Flush, now);
            }
            ConnectionEvent::Failed(id, error) => {
                self.peer_closed(id, &error, Closing::Abort, now);
            }
        }
    }

    /// The client went away (`reason`); `closing` says whether what is queued is still
    /// written ([`Closing::Flush`]) or dropped.
    fn peer_closed(
        &mut self,
        id: ConnectionId,
        reason: &dyn Display,
        closing: Closing,
        now: Instant,
    ) {
        self.engine.handle_peer_closed(id, now);
        self.connections.closed_by_peer(id, reason, closing);
    }

    /// A store reply arrived.
    pub fn store_reply(&mut self, id: RequestId, reply: StoreReply, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match &reply {
            StoreReply::Failed(StoreError::Unavailable(error)) => {
                warn!(request = %id, %error, "store error");
            }
            StoreReply::Failed(StoreError::Busy) => {
                self.busy.busy(now);
            }
            _ => {}
        }
        self.engine.handle_store_reply(id, reply, now);
    }

    /// A file job finished.
    pub fn file_event(&mut self, event: FileEvent, now: Instant) {
        self.files.handle(event, &mut self.engine, now);
    }

    /// Starts a graceful shutdown: the engine tells everyone and closes every connection,
    /// and refuses clients accepted from now on. Drain afterwards.
    pub fn begin_shutdown(&mut self, now: Instant) {
        info!(connections = self.connections.len(), "shutting down");
        self.engine.handle_shutdown(now);
    }

    /// One turn of a driver's loop, after it woke: written bytes first (so nobody looks
    /// slower than they are), then the front of `events` within [`INPUT_BUDGET`](crate::INPUT_BUDGET)
    /// (the rest waits for the next turn), store replies, file results, the engine's timer,
    /// and a full drain ([`EngineHost::drain_outputs`]); a turn with nothing to do after a
    /// quiet spell gives freed memory back to the system. Returns whether any connection
    /// was touched (then let the connection tasks run before the next turn).
    pub fn turn<S>(
        &mut self,
        now: Instant,
        arrived: Arrived<
            impl Iterator<Item = (ConnectionId, usize)>,
            impl Iterator<Item = (RequestId, StoreReply)>,
            impl Iterator<Item = FileEvent>,
        >,
        events: &mut Vec<ConnectionEvent<S>>,
        mut start: impl FnMut(ConnectionId, S, Arc<Link>),
        carry: impl FnMut(Work),
    ) -> bool {
        let mut arrivals = 0;
        for (id, bytes) in arrived.written {
            self.engine.handle_written(id, bytes, now);
            arrivals += 1;
        }
        let take = input_budget(events, ConnectionEvent::received_len);
        arrivals += take;
        for event in events.drain(..take) {
            self.handle_event(event, now, &mut start);
        }
        for (id, reply) in arrived.replies {
            self.store_reply(id, reply, now);
            arrivals += 1;
        }
        for event in arrived.files {
            self.file_event(event, now);
            arrivals += 1;
        }
        if self.engine.poll_timeout().is_some_and(|at| at <= now) {
            self.engine.handle_timeout(now);
        }
        let touched = self.drain_outputs(carry);
        if arrivals > 0 || touched {
            self.release.busy(now);
        } else {
            self.release.poll(now);
        }
        touched
    }

    /// Drains the engine's outputs: frames and instructions are staged per connection and
    /// handed over at the end (one lock and one wake-up each); everything else goes to
    /// `carry`, in the engine's order. Returns whether any connection was touched.
    pub fn drain_outputs(&mut self, mut carry: impl FnMut(Work)) -> bool {
        while let Some(output) = self.engine.poll_output() {
            match self.connections.route(output) {
                None => {}
                Some(Output::OpenFile { transfer, path }) => {
                    carry(Work::File(self.files.open(transfer, path)));
                }
                Some(Output::ReadFile { transfer, max }) => {
                    carry(Work::File(self.files.read(transfer, max)));
                }
                Some(Output::CloseFile { transfer }) => self.files.close(transfer),
                Some(Output::Store { id, request }) => {
                    self.in_flight += 1;
                    carry(Work::Store(id, *request));
                }
                Some(Output::Publish { topic, payload }) => carry(Work::Publish(topic, payload)),
                // `route` keeps every connection output.
                Some(
                    Output::Transmit { .. }
                    | Output::Broadcast { .. }
                    | Output::Close { .. }
                    | Output::PauseReading(_)
                    | Output::ResumeReading(_),
                ) => {}
            }
        }
        self.connections.deliver()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    #[test]
    fn busy_answers_are_logged_at_once_then_summed_every_ten_seconds() {
        let start = Instant::now();
        let mut log = BusyLog::default();
        assert_eq!(log.busy(start), Some(1), "the first at once");
        for ms in [1, 500, 9_999] {
            assert_eq!(log.busy(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(
            log.busy(start + BUSY_LOG_EVERY),
            Some(4),
            "the rest, summed"
        );
        assert_eq!(log.busy(start + BUSY_LOG_EVERY * 3), Some(1));
    }

    #[test]
    fn a_client_accepted_after_shutdown_is_told_and_closed_by_the_engine() {
        let now = Instant::now();
        let mut host = EngineHost::new(Engine::new(wur2_engine::Config::default()), None);
        host.begin_shutdown(now);
        host.drain_outputs(|_| {});
        let mut started = Vec::new();
        let peer = "127.0.0.1:1".parse().expect("address");
        host.handle_event(
            ConnectionEvent::Accepted((), peer),
            now,
            &mut |id, (), link| {
                started.push((id, link));
            },
        );
        host.drain_outputs(|_| {});
        let [(_, link)] = &started[..] else {
            panic!("the host hands the client to the engine and its link to the driver");
        };
        let mut queue = VecDeque::new();
        assert_eq!(link.take(&mut queue).1, Some(Closing::Flush));
        let written: Vec<u8> = queue.iter().flat_map(|frame| frame.to_vec()).collect();
        assert!(String::from_utf8_lossy(&written).contains("shutting down"));
        assert_eq!(host.connections(), 0);
    }
}
