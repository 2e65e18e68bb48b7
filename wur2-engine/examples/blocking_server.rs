//! A complete WUR2 chat server on `std::net` and threads, no async: one engine thread owns
//! the [`Engine`] and the engine's in-memory store (feature `memory-store`); each connection has
//! a reader and a writer thread that talk to the engine thread over one channel.
//!
//! `cargo run -p wur2-engine --example blocking_server` serves on 127.0.0.1:6970 until
//! killed; `-- --self-test` serves on a free port, runs two clients through a chat, exits.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use wur2_engine::memory_store::MemoryStore;
use wur2_engine::{Config, ConnectionId, Engine, Output, WallClock};

/// Everything the engine thread waits for, from every other thread.
enum Event {
    Connected(TcpStream, SocketAddr),
    Received(ConnectionId, Vec<u8>),
    Written(ConnectionId, usize),
    Closed(ConnectionId),
}

/// The engine thread's handle on one connection.
struct Conn {
    out: Sender<Bytes>, // to the writer; dropped: write what is queued, close
    stream: TcpStream,  // to close at once, dropping what is queued
    gate: Arc<(Mutex<bool>, Condvar)>, // `true`: the reader waits (backpressure)
}

fn main() -> io::Result<()> {
    let self_test = std::env::args().any(|arg| arg == "--self-test");
    let listener = TcpListener::bind(("127.0.0.1", if self_test { 0 } else { 6970 }))?;
    let addr = listener.local_addr()?;
    let (events, inbox) = mpsc::channel();
    let accepted = events.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            match stream.and_then(|s| Ok((s.peer_addr()?, s))) {
                Ok((peer, stream)) => drop(accepted.send(Event::Connected(stream, peer))),
                Err(_) => thread::sleep(Duration::from_millis(100)), // e.g. out of descriptors
            }
        }
    });
    let engine = thread::spawn(move || run_engine(&inbox, &events));
    if self_test {
        return run_self_test(addr);
    }
    println!("listening on {addr}; try: nc {} {}", addr.ip(), addr.port());
    engine.join().map_err(|_| io::Error::other("panicked")) // serves until killed
}

/// The engine thread: take one event, feed it in, then drain every output until `None`.
fn run_engine(inbox: &mpsc::Receiver<Event>, events: &Sender<Event>) {
    let (at, unix_ms) = (Instant::now(), now_unix_ms());
    let mut engine = Engine::new(Config {
        wall_clock: Some(WallClock { at, unix_ms }),
        message_id_origin: u64::try_from(unix_ms).unwrap_or(0), // unique per run
        ..Config::default()
    });
    let mut store = MemoryStore::new();
    let mut conns: HashMap<ConnectionId, Conn> = HashMap::new();
    loop {
        let event = match engine.poll_timeout() {
            Some(at) => inbox.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let now = Instant::now();
        match event {
            Ok(Event::Connected(stream, peer)) => {
                let connection = engine.handle_connect(peer, now);
                match start_threads(connection, stream, events) {
                    Ok(conn) => drop(conns.insert(connection, conn)),
                    Err(_) => engine.handle_peer_closed(connection, now),
                }
            }
            Ok(Event::Received(connection, data)) => engine.handle_received(connection, &data, now),
            Ok(Event::Written(connection, n)) => engine.handle_written(connection, n, now),
            Ok(Event::Closed(connection)) => {
                engine.handle_peer_closed(connection, now);
                close(&mut conns, connection, false);
            }
            Err(RecvTimeoutError::Timeout) => engine.handle_timeout(now),
            Err(RecvTimeoutError::Disconnected) => return,
        }
        while let Some(output) = engine.poll_output() {
            match output {
                Output::Transmit { connection, data } => send(&conns, connection, data),
                Output::Broadcast { recipients, data } => {
                    for connection in recipients {
                        send(&conns, connection, data.clone()); // a reference-count bump
                    }
                }
                Output::Close {
                    connection, flush, ..
                } => close(&mut conns, connection, flush),
                Output::PauseReading(connection) => pause(&conns, connection, true),
                Output::ResumeReading(connection) => pause(&conns, connection, false),
                // In memory it answers at once; a real store's reply comes back as an event.
                Output::Store { id, request } => {
                    store.set_clock(now_unix_ms(), 0); // messages are stamped with the time now
                    let reply = store.answer(&request);
                    engine.handle_store_reply(id, reply, Instant::now());
                }
                // `Config::server_files` is off: the engine never asks for files.
                Output::OpenFile { .. } | Output::ReadFile { .. } | Output::CloseFile { .. } => {}
                // No `Config::cluster`: the engine publishes nothing.
                Output::Publish { .. } => {}
            }
        }
    }
}

fn send(conns: &HashMap<ConnectionId, Conn>, connection: ConnectionId, data: Bytes) {
    if let Some(conn) = conns.get(&connection) {
        let _ = conn.out.send(data);
    }
}

fn pause(conns: &HashMap<ConnectionId, Conn>, connection: ConnectionId, paused: bool) {
    if let Some(conn) = conns.get(&connection) {
        *conn.gate.0.lock().unwrap_or_else(PoisonError::into_inner) = paused;
        conn.gate.1.notify_all();
    }
}

fn close(conns: &mut HashMap<ConnectionId, Conn>, connection: ConnectionId, flush: bool) {
    if !flush && let Some(conn) = conns.get(&connection) {
        let _ = conn.stream.shutdown(Shutdown::Both);
    }
    pause(conns, connection, false); // a paused reader wakes up to find the socket closed
    conns.remove(&connection); // the writer writes what is queued, then closes
}

/// A reader and a writer thread for one connection.
fn start_threads(id: ConnectionId, stream: TcpStream, events: &Sender<Event>) -> io::Result<Conn> {
    // A writer stuck on a client that does not read gives up; the engine drops slow readers.
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let (mut reader, mut writer) = (stream.try_clone()?, stream.try_clone()?);
    let (out, outbox) = mpsc::channel::<Bytes>();
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (reader_events, writer_events, reader_gate) =
        (events.clone(), events.clone(), Arc::clone(&gate));
    thread::spawn(move || {
        let mut buf = [0; 4096];
        loop {
            let paused = reader_gate.0.lock().unwrap_or_else(PoisonError::into_inner);
            drop(reader_gate.1.wait_while(paused, |paused| *paused));
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => drop(reader_events.send(Event::Received(id, buf[..n].to_vec()))),
            }
        }
        let _ = reader_events.send(Event::Closed(id));
    });
    thread::spawn(move || {
        for data in outbox {
            if writer.write_all(&data).is_err() {
                break;
            }
            let _ = writer_events.send(Event::Written(id, data.len()));
        }
        let _ = writer.shutdown(Shutdown::Both);
    });
    Ok(Conn { out, stream, gate })
}

/// Two people on `nc`, scripted: they register, chat in `Global` and send a private message.
fn run_self_test(addr: SocketAddr) -> io::Result<()> {
    let connect = |addr| -> io::Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(BufReader::new(stream))
    };
    // Reads lines until `wanted` arrives; an error on timeout or end of stream.
    let expect = |client: &mut BufReader<TcpStream>, wanted: &str| -> io::Result<()> {
        for line in client.by_ref().lines() {
            if line? == wanted {
                return Ok(());
            }
        }
        Err(io::Error::other(format!("closed before {wanted:?}")))
    };
    let (mut bob, mut alice) = (connect(addr)?, connect(addr)?);
    writeln!(bob.get_mut(), "/register bob correct-horse")?;
    expect(&mut bob, "You are in Global")?;
    writeln!(alice.get_mut(), "/register alice correct-horse")?;
    expect(&mut alice, "You are in Global")?;
    writeln!(alice.get_mut(), "hello bob")?;
    expect(&mut bob, "[Global] alice: hello bob")?;
    writeln!(bob.get_mut(), "/msg alice hi alice")?;
    expect(&mut alice, "[DM] bob: hi alice")?;
    println!("self-test passed: two clients chatted over TCP on {addr}");
    Ok(())
}

/// Wall-clock time now, in milliseconds since the Unix epoch (the engine and its store read
/// no clock: they get this from their caller).
fn now_unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    i64::try_from(since.unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}
