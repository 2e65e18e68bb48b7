//! Many sessions on one engine (issue 20): 10 000 and then 50 000 logged-in connections,
//! all in the default channel: how long logging them all in takes, the engine's heap per
//! logged-in session, and how long `/list`, `/channels`, every session opening (and so
//! registering and owning) a channel of its own, and a shutdown take. Each should
//! grow linearly with the sessions (no quadratic step), which the two sizes show side by
//! side.
//!
//! Run: `cargo bench -p wur2-engine --bench sessions`

use std::alloc::System;
use std::time::{Duration, Instant};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
mod support;

use support::{drain, register_users};
use wur2_engine::{Config, Engine};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    for sessions in [10_000, 50_000] {
        measure(sessions);
    }
}

fn measure(sessions: usize) {
    let config = Config {
        flood_lines_per_second: 0,
        max_connections: sessions + 1,
        max_connections_per_address: sessions + 1,
        max_registrations_per_address: 0,
        max_registrations_per_minute: 0,
        max_queued_bytes: usize::MAX,
        ..Config::default()
    };
    let mut engine = Engine::new(config);
    let now = Instant::now();
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    let connections = register_users(&mut engine, sessions, "", now);
    let logins = start.elapsed();
    let heap = region.change();
    let held = heap.bytes_allocated as i64 - heap.bytes_deallocated as i64;

    let timed = |engine: &mut Engine, line: &str| {
        let start = Instant::now();
        engine.handle_received(connections[0], line.as_bytes(), now);
        let bytes = drain(engine, now).bytes;
        (start.elapsed(), bytes)
    };
    let (list, list_bytes) = timed(&mut engine, "/list\n");
    let (channels, _) = timed(&mut engine, "/channels\n");
    let start = Instant::now();
    for (i, &connection) in connections.iter().enumerate() {
        let line = format!("/join #own{i}\n");
        engine.handle_received(connection, line.as_bytes(), now);
        drain(&mut engine, now);
    }
    let own_channels = start.elapsed();
    let start = Instant::now();
    engine.handle_shutdown(now);
    drain(&mut engine, now);
    let shutdown = start.elapsed();

    println!("{sessions} logged-in sessions in one channel");
    println!(
        "  logging all in:          {:>9.1} ms ({:.1} µs each)",
        millis(logins),
        micros(logins) / sessions as f64
    );
    println!(
        "  engine heap per session: {:>9.0} bytes",
        held as f64 / sessions as f64
    );
    println!(
        "  /list:                   {:>9.2} ms ({list_bytes} bytes)",
        millis(list)
    );
    println!("  /channels:               {:>9.3} ms", millis(channels));
    println!(
        "  each opens a channel:    {:>9.1} ms ({:.1} µs each)",
        millis(own_channels),
        micros(own_channels) / sessions as f64
    );
    println!(
        "  shutdown:                {:>9.1} ms ({:.2} µs per session)",
        millis(shutdown),
        micros(shutdown) / sessions as f64
    );
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
