//! A chat bot living in the same process as the engine, with no socket: it is one more
//! connection whose bytes the program hands to the engine and whose output it reads back.
//! It speaks JSON-lines mode (`/mode json`), logs in, joins `#lobby`, and answers:
//!
//! - `!ping` in its channel with `pong, <user>`;
//! - `!roll <sides>` with a (deterministic) die roll;
//! - any private message with a short help text.
//!
//! A person (alice, also in-process here; over TCP in a real server) talks to it, and the
//! program prints her screen and checks the answers. Time is virtual, so every run prints
//! the same transcript. `cargo run -p wur2-engine --example bot`

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use wur2_engine::memory_store::MemoryStore;
use wur2_engine::{Config, ConnectionId, Engine, Output};

/// The engine, its store, a virtual clock, and what each in-process connection received.
struct Hub {
    engine: Engine,
    store: MemoryStore,
    now: Instant,
    received: HashMap<ConnectionId, Vec<u8>>,
}

impl Hub {
    fn new() -> Self {
        Hub {
            engine: Engine::new(Config::default()),
            store: MemoryStore::new(),
            now: Instant::now(),
            received: HashMap::new(),
        }
    }

    /// A new in-process connection. Its "peer address" only counts towards the
    /// per-address connection limit.
    fn connect(&mut self) -> ConnectionId {
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let connection = self.engine.handle_connect(peer, self.now);
        self.received.insert(connection, Vec::new());
        self.drain();
        connection
    }

    /// `connection` sends one line; a second passes (flood control counts lines per second).
    fn send(&mut self, connection: ConnectionId, line: &str) {
        self.now += Duration::from_secs(1);
        self.engine.handle_timeout(self.now);
        let line = format!("{line}\n");
        self.engine
            .handle_received(connection, line.as_bytes(), self.now);
        self.drain();
    }

    /// The drain-until-`None` loop, for connections that are byte buffers in memory.
    fn drain(&mut self) {
        while let Some(output) = self.engine.poll_output() {
            match output {
                Output::Transmit { connection, data } => self.deliver(connection, &data),
                Output::Broadcast { recipients, data } => {
                    for connection in recipients {
                        self.deliver(connection, &data);
                    }
                }
                Output::Close { connection, .. } => drop(self.received.remove(&connection)),
                Output::Store { id, request } => {
                    let reply = self.store.answer(&request);
                    self.engine.handle_store_reply(id, reply, self.now);
                }
                // Lines are handed over one at a time, between drains, after every store
                // reply is in: no input ever waits, so reading never needs to pause.
                Output::PauseReading(_) | Output::ResumeReading(_) => {}
                // `Config::server_files` is off: the engine never asks for files.
                Output::OpenFile { .. } | Output::ReadFile { .. } | Output::CloseFile { .. } => {}
                // No `Config::cluster`: the engine publishes nothing.
                Output::Publish { .. } => {}
            }
        }
    }

    /// "Writing" to an in-process connection is appending to its buffer, and then telling
    /// the engine the bytes are written (or it would drop the reader as too slow).
    fn deliver(&mut self, connection: ConnectionId, data: &[u8]) {
        if let Some(buffer) = self.received.get_mut(&connection) {
            buffer.extend_from_slice(data);
            self.engine.handle_written(connection, data.len(), self.now);
        }
    }

    /// The complete lines `connection` received since the last call.
    fn lines(&mut self, connection: ConnectionId) -> Vec<String> {
        let Some(buffer) = self.received.get_mut(&connection) else {
            return Vec::new();
        };
        let complete = buffer
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1);
        let text = String::from_utf8_lossy(&buffer[..complete]).into_owned();
        buffer.drain(..complete);
        text.lines().map(str::to_string).collect()
    }
}

/// The bot's brain: one JSON line from the server in, at most one command out.
fn answer(line: &str, turn: u64) -> Option<String> {
    let event: Value = serde_json::from_str(line).ok()?;
    let field = |name: &str| event.get(name).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "message" => {
            let (from, text) = (field("from"), field("text"));
            if text == "!ping" {
                return Some(format!("pong, {from}"));
            }
            let sides: u64 = text.strip_prefix("!roll ")?.trim().parse().ok()?;
            // A real bot takes randomness from its host; this one stays reproducible.
            let roll = (turn.wrapping_mul(6_364_136_223_846_793_005) >> 33) % sides.max(1) + 1;
            Some(format!("{from} rolls {roll} (1-{sides})"))
        }
        "dm" => Some(format!(
            "/msg {} I answer !ping and !roll <sides> in #lobby",
            field("from")
        )),
        // Errors are for the bot's operator, not for the channel.
        "error" => {
            eprintln!("bot got an error: {}", field("message"));
            None
        }
        _ => None,
    }
}

/// Lets the bot read everything it received and answer, until it has nothing to say.
fn run_bot(hub: &mut Hub, bot: ConnectionId, turn: &mut u64) {
    loop {
        let replies: Vec<String> = hub
            .lines(bot)
            .iter()
            .filter_map(|line| {
                *turn += 1;
                answer(line, *turn)
            })
            .collect();
        if replies.is_empty() {
            return;
        }
        for reply in replies {
            hub.send(bot, &reply);
        }
    }
}

fn main() {
    let mut hub = Hub::new();
    let mut turn = 0;
    let bot = hub.connect();
    for line in [
        "/mode json",
        "/register helpbot bot-password",
        "/join #lobby",
    ] {
        hub.send(bot, line);
    }
    run_bot(&mut hub, bot, &mut turn);

    let alice = hub.connect();
    let mut screen = hub.lines(alice);
    for line in [
        "/register alice correct-horse",
        "/join #lobby",
        "hello everyone",
        "!ping",
        "!roll 20",
        "/msg helpbot what can you do?",
    ] {
        screen.push(format!("> {line}"));
        hub.send(alice, line);
        run_bot(&mut hub, bot, &mut turn);
        screen.extend(hub.lines(alice));
    }
    println!("{}", screen.join("\n"));

    let saw = |wanted: &str| screen.iter().any(|line| line.starts_with(wanted));
    assert!(
        saw("[#lobby] helpbot: pong, alice"),
        "the bot answers !ping"
    );
    assert!(saw("[#lobby] helpbot: alice rolls "), "the bot rolls a die");
    assert!(
        saw("[DM] helpbot: I answer !ping"),
        "the bot answers private messages"
    );
    assert_eq!(hub.engine.channel_members("#lobby").len(), 2);
}
