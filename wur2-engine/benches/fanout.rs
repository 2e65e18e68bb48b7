//! One line in, fan-out to a 1 000-member and a 10 000-member channel, through the engine
//! alone: time per message and per recipient, and allocations per recipient (counted by a
//! wrapping global allocator), with every member in text mode and then with every member
//! in JSON lines mode. The cost per recipient should not grow with the channel (issue 20).
//!
//! Run: `cargo bench -p wur2-engine --bench fanout`

use std::alloc::System;
use std::time::{Duration, Instant};

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
mod support;

use support::{drain, register_users};
use wur2_engine::{Config, Engine};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Channel sizes, each with as many messages as make 20 million deliveries.
const RUNS: [(usize, usize); 2] = [(1_000, 20_000), (10_000, 2_000)];

fn main() {
    for (members, messages) in RUNS {
        fanout("text", "", members, messages);
        fanout("JSON lines", "/mode json\n", members, messages);
    }
}

/// Measures one run: `members` register and send `setup`, then one of them sends
/// `messages` lines.
fn fanout(mode: &str, setup: &str, members: usize, messages: usize) {
    let config = Config {
        flood_lines_per_second: 0,
        max_connections_per_address: members + 1,
        max_connections: members + 1,
        max_registrations_per_address: 0,
        max_registrations_per_minute: 0,
        max_queued_bytes: usize::MAX,
        ..Config::default()
    };
    let mut engine = Engine::new(config);
    let now = Instant::now();
    let connections = register_users(&mut engine, members, setup, now);
    let sender = connections[0];
    let line = format!("{}\n", "x".repeat(64));

    // Warm up, then measure time and allocations separately from setup.
    for _ in 0..1000 {
        engine.handle_received(sender, line.as_bytes(), now);
        drain(&mut engine, now);
    }
    let region = Region::new(GLOBAL);
    let start = Instant::now();
    let mut deliveries = 0;
    for _ in 0..messages {
        engine.handle_received(sender, line.as_bytes(), now);
        deliveries += drain(&mut engine, now).deliveries;
    }
    let elapsed = start.elapsed();
    let stats = region.change();
    assert_eq!(
        deliveries,
        messages * (members - 1),
        "every member but the sender"
    );

    let per_message = elapsed / messages as u32;
    let allocations_per_message = stats.allocations as f64 / messages as f64;
    println!(
        "fan-out to a {members}-member channel in {mode} mode, {messages} messages of 64 bytes"
    );
    println!(
        "  time per message:            {:>8.2} µs",
        micros(per_message)
    );
    println!(
        "  time per recipient:          {:>8.1} ns",
        elapsed.as_nanos() as f64 / deliveries as f64
    );
    println!("  allocations per message:     {allocations_per_message:>8.2}");
    println!(
        "  allocations per recipient:   {:>8.4}",
        allocations_per_message / (members - 1) as f64
    );
    println!(
        "  bytes allocated per message: {:>8.0}",
        stats.bytes_allocated as f64 / messages as f64
    );
}

fn micros(duration: Duration) -> f64 {
    duration.as_nanos() as f64 / 1000.0
}
