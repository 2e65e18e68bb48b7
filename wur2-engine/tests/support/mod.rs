//! A small world for driving the engine in tests: fake clients that record what they
//! receive, the engine's in-memory store (answering at once or when released), and a
//! virtual clock.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wur2_engine::memory_store::MemoryStore;
use wur2_engine::{
    CloseReason, Config, ConnectionId, Engine, FileError, Output, Topic, TransferId,
};

/// xorshift64*: small, fast, and the same everywhere (seeded schedules of simulations).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A password long enough for the default rules.
pub const PASSWORD: &str = "correct-horse";

/// The engine, its fake clients, its store and its clock.
pub struct World {
    pub engine: Engine,
    pub now: Instant,
    pub store: MemoryStore,
    /// Bytes each connection has received and not yet taken by the test.
    pub inbox: BTreeMap<ConnectionId, Vec<u8>>,
    /// Everything each connection ever received.
    pub transcript: BTreeMap<ConnectionId, Vec<u8>>,
    pub closed: BTreeMap<ConnectionId, (CloseReason, bool)>,
    pub paused: BTreeSet<ConnectionId>,
    /// Every `PauseReading` (`true`) and `ResumeReading` (`false`), in order.
    pub reading_changes: Vec<(ConnectionId, bool)>,
    /// Connections that do not read: their bytes stay queued in the engine.
    pub not_reading: BTreeSet<ConnectionId>,
    /// Every store request in the order the engine emitted it (passwords show as `***`).
    pub store_log: Vec<String>,
    /// Violations of driver-visible rules seen while draining.
    pub violations: Vec<String>,
    /// The operator's files directory: path → contents.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Open server-side files: transfer → (path, offset).
    pub open_files: BTreeMap<TransferId, (String, usize)>,
    /// Cluster mode: publications not yet carried to other worlds, in order.
    pub published: Vec<(Topic, Bytes)>,
    next_port: u16,
}

impl World {
    pub fn new(config: Config) -> Self {
        World {
            engine: Engine::new(config),
            now: Instant::now(),
            store: MemoryStore::new(),
            inbox: BTreeMap::new(),
            transcript: BTreeMap::new(),
            closed: BTreeMap::new(),
            paused: BTreeSet::new(),
            reading_changes: Vec::new(),
            not_reading: BTreeSet::new(),
            store_log: Vec::new(),
            violations: Vec::new(),
            files: BTreeMap::new(),
            open_files: BTreeMap::new(),
            published: Vec::new(),
            next_port: 10_000,
        }
    }

    pub fn default_world() -> Self {
        World::new(Config::default())
    }

    pub fn connect(&mut self) -> ConnectionId {
        self.connect_from("127.0.0.1")
    }

    pub fn connect_from(&mut self, ip: &str) -> ConnectionId {
        self.next_port += 1;
        let peer: SocketAddr = format!("{ip}:{}", self.next_port)
            .parse()
            .expect("test address");
        let id = self.engine.handle_connect(peer, self.now);
        self.drain();
        id
    }

    pub fn send(&mut self, connection: ConnectionId, text: &str) {
        self.send_bytes(connection, text.as_bytes());
    }

    pub fn send_bytes(&mut self, connection: ConnectionId, bytes: &[u8]) {
        if self.closed.contains_key(&connection) {
            self.violations
                .push(format!("test sent to closed {connection}"));
        }
        self.engine.handle_received(connection, bytes, self.now);
        self.drain();
    }

    pub fn peer_closes(&mut self, connection: ConnectionId) {
        self.engine.handle_peer_closed(connection, self.now);
        self.closed
            .entry(connection)
            .or_insert((CloseReason::ClientQuit, true));
        self.drain();
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.engine.handle_timeout(self.now);
        self.drain();
    }

    /// Answers held store requests, oldest first, until none are held.
    pub fn release_store(&mut self) {
        while let Some((id, reply)) = self.store.release(0) {
            self.engine.handle_store_reply(id, reply, self.now);
            self.drain();
        }
    }

    /// A connection that was not reading starts reading: it takes everything queued.
    pub fn start_reading(&mut self, connection: ConnectionId) {
        self.not_reading.remove(&connection);
        let queued = self.engine.queued_bytes(connection);
        self.engine.handle_written(connection, queued, self.now);
        self.drain();
    }

    pub fn drain(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Transmit { connection, data } => self.transmit(connection, &data),
                Output::Broadcast { recipients, data } => {
                    for connection in recipients {
                        self.transmit(connection, &data);
                    }
                }
                Output::OpenFile { transfer, path } => {
                    let result = match self.files.get(&path) {
                        Some(contents) => Ok(contents.len() as u64),
                        None => Err(FileError::NotFound),
                    };
                    if result.is_ok() {
                        self.open_files.insert(transfer, (path, 0));
                    }
                    self.engine.handle_file_opened(transfer, result, self.now);
                }
                Output::ReadFile { transfer, max } => {
                    let Some((path, offset)) = self.open_files.get_mut(&transfer) else {
                        self.violations
                            .push(format!("read of a file never opened: {transfer}"));
                        continue;
                    };
                    let contents = &self.files[path.as_str()];
                    let start = (*offset).min(contents.len());
                    let end = contents.len().min(start + max);
                    let data = contents[start..end].to_vec();
                    *offset = end;
                    self.engine.handle_file_data(transfer, &data, self.now);
                }
                Output::CloseFile { transfer } => {
                    if self.open_files.remove(&transfer).is_none() {
                        self.violations
                            .push(format!("close of a file not open: {transfer}"));
                    }
                }
                Output::Close {
                    connection,
                    reason,
                    flush,
                } => {
                    if self.closed.insert(connection, (reason, flush)).is_some() {
                        self.violations.push(format!("closed twice: {connection}"));
                    }
                }
                Output::PauseReading(connection) => {
                    self.reading_changes.push((connection, true));
                    if !self.paused.insert(connection) {
                        self.violations.push(format!("paused twice: {connection}"));
                    }
                }
                Output::ResumeReading(connection) => {
                    self.reading_changes.push((connection, false));
                    if !self.paused.remove(&connection) {
                        self.violations
                            .push(format!("resumed while reading: {connection}"));
                    }
                }
                Output::Store { id, request } => {
                    self.store_log.push(format!("{request:?}"));
                    if let Some(reply) = self.store.submit(id, *request) {
                        self.engine.handle_store_reply(id, reply, self.now);
                    }
                }
                Output::Publish { topic, payload } => self.published.push((topic, payload)),
            }
        }
    }

    fn transmit(&mut self, connection: ConnectionId, data: &[u8]) {
        if self.closed.contains_key(&connection) {
            self.violations
                .push(format!("output for closed {connection}"));
        }
        self.inbox
            .entry(connection)
            .or_default()
            .extend_from_slice(data);
        self.transcript
            .entry(connection)
            .or_default()
            .extend_from_slice(data);
        if !self.not_reading.contains(&connection) {
            self.engine.handle_written(connection, data.len(), self.now);
        }
    }

    /// Lines received since the last call, without their line endings.
    pub fn lines(&mut self, connection: ConnectionId) -> Vec<String> {
        let bytes = self.inbox.remove(&connection).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether any line received since the last call contains `needle` (and takes them).
    pub fn saw(&mut self, connection: ConnectionId, needle: &str) -> bool {
        self.lines(connection).iter().any(|l| l.contains(needle))
    }

    /// Registers `name` on a new connection and discards the welcome lines.
    pub fn user(&mut self, name: &str) -> ConnectionId {
        let connection = self.connect();
        self.send(connection, &format!("/register {name} {PASSWORD}\n"));
        let lines = self.lines(connection);
        assert!(
            lines.iter().any(|l| l == &format!("Welcome {name}!")),
            "register {name}: {lines:?}"
        );
        connection
    }

    /// Logs an existing account in on a new connection and discards the welcome lines.
    pub fn login(&mut self, name: &str) -> ConnectionId {
        let connection = self.connect();
        self.send(connection, &format!("/login {name} {PASSWORD}\n"));
        let lines = self.lines(connection);
        assert!(
            lines.iter().any(|l| l.starts_with("Welcome back")),
            "login {name}: {lines:?}"
        );
        connection
    }

    pub fn is_closed(&self, connection: ConnectionId) -> bool {
        self.closed.contains_key(&connection)
    }
}

/// What a program rebuilds from a connection's byte stream: its text lines, and the bytes
/// of every file (by transfer id) from the `[file <id> data|base64 <n>]` chunks.
#[derive(Debug, Default)]
pub struct Received {
    pub lines: Vec<String>,
    pub files: BTreeMap<u64, Vec<u8>>,
    /// Position of each chunk among the lines: (lines before it, transfer id).
    pub chunk_positions: Vec<(usize, u64)>,
}

pub fn parse_received(mut bytes: &[u8]) -> Received {
    let mut received = Received::default();
    while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(&bytes[..newline]).into_owned();
        bytes = &bytes[newline + 1..];
        let chunk = line
            .strip_prefix("[file ")
            .and_then(|rest| rest.strip_suffix(']'))
            .map(|rest| rest.split(' ').collect::<Vec<_>>());
        if let Some([id, kind @ ("data" | "base64"), len]) = chunk.as_deref() {
            let (id, len): (u64, usize) = (id.parse().unwrap(), len.parse().unwrap());
            let data = if *kind == "data" {
                let data = bytes[..len].to_vec();
                assert_eq!(bytes[len], b'\n', "a data chunk ends with a line break");
                bytes = &bytes[len + 1..];
                data
            } else {
                let end = bytes.iter().position(|&b| b == b'\n').unwrap();
                let data = decode_base64(&bytes[..end]);
                bytes = &bytes[end + 1..];
                data
            };
            assert_eq!(data.len(), len);
            received.chunk_positions.push((received.lines.len(), id));
            received
                .files
                .entry(id)
                .or_default()
                .extend_from_slice(&data);
        } else {
            received.lines.push(line);
        }
    }
    received
}

fn decode_base64(text: &[u8]) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let mut out = Vec::new();
    for group in text.chunks(4) {
        let n = group.iter().fold(0u32, |n, &c| (n << 6) | value(c));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let keep = 3 - group.iter().filter(|&&c| c == b'=').count();
        out.extend_from_slice(&bytes[..keep]);
    }
    out
}
