//! Startup-to-listening time of the `wur2` binary, and its memory idle and per idle
//! logged-in connection (VmRSS from `/proc/<pid>/status`), against the idle server measured
//! in the same run.
//!
//! `cargo bench -p wur2-tokio --bench idle_memory` (release profile). Environment:
//! `WUR2_BENCH_CLIENTS` (default 5000), `WUR2_BENCH_STARTS` (default 5),
//! `WUR2_BENCH_FIXED_ONLY` (skip the pass with glibc's default mmap threshold),
//! `WUR2_BENCH_SERVER_ENV` / `WUR2_BENCH_SERVER_ARGS` (extra `NAME=value` environment and
//! flags for the server, to compare settings).
//! Everything runs on 127.0.0.1; the server is stopped by its own pid.

#[path = "../tests/server_process/mod.rs"]
mod server_process;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use server_process::ServerProcess;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

const PASSWORD: &str = "correct-horse-battery";

/// Starts the binary on a database in `dir` and returns it with the time until it said
/// it was listening.
fn start(dir: &Path, fixed_mmap_threshold: bool) -> (ServerProcess, Duration) {
    let mut env: Vec<(String, String)> = Vec::new();
    if fixed_mmap_threshold {
        // With glibc's threshold fixed, freed blocks go back to the system at once.
        env.push(("MALLOC_MMAP_THRESHOLD_".into(), "131072".into()));
    }
    // Extra `NAME=value` pairs for the server, to compare allocator settings.
    for pair in std::env::var("WUR2_BENCH_SERVER_ENV")
        .unwrap_or_default()
        .split_whitespace()
    {
        if let Some((name, value)) = pair.split_once('=') {
            env.push((name.into(), value.into()));
        }
    }
    let extra = std::env::var("WUR2_BENCH_SERVER_ARGS").unwrap_or_default();
    let mut args = vec![
        "--max-connections-per-ip",
        "20000",
        "--max-connections",
        "20000",
    ];
    args.extend(["--login-timeout-secs", "600"]);
    args.extend(extra.split_whitespace());
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let server = ServerProcess::start(dir, &args, &env);
    let startup = server.startup;
    (server, startup)
}

/// Logged-in clients that keep reading (and discarding) until told to stop; each answers
/// one `/ping` barrier when asked, so the measurement starts on a quiet server.
async fn clients(
    addr: SocketAddr,
    count: usize,
    prefix: &str,
) -> (watch::Sender<u8>, Arc<AtomicUsize>) {
    let (phase, _) = watch::channel(0u8);
    let ready = Arc::new(AtomicUsize::new(0));
    let logins = Arc::new(Semaphore::new(64));
    for i in 0..count {
        let name = format!("{prefix}{i}");
        let mut phase_rx = phase.subscribe();
        let ready = Arc::clone(&ready);
        let logins = Arc::clone(&logins);
        tokio::spawn(async move {
            let permit = logins.acquire_owned().await.expect("semaphore");
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            write
                .write_all(format!("/register {name} {PASSWORD}\n").as_bytes())
                .await
                .expect("send");
            let welcome = format!("Welcome {name}!");
            while let Ok(Some(line)) = lines.next_line().await {
                if line == welcome {
                    break;
                }
                assert!(!line.starts_with("Error"), "{name}: {line}");
            }
            drop(permit);
            ready.fetch_add(1, Ordering::SeqCst);
            // Phase 1: one barrier; phase 2: close.
            let mut pinged = false;
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) if line == "PONG idle" => { ready.fetch_add(1, Ordering::SeqCst); }
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                    changed = phase_rx.changed() => {
                        if changed.is_err() { return; }
                        let now = *phase_rx.borrow_and_update();
                        if now == 1 && !pinged {
                            pinged = true;
                            let _ = write.write_all(b"/ping idle\n").await;
                        }
                        if now >= 2 { return; }
                    }
                }
            }
        });
    }
    (phase, ready)
}

async fn wait_for(counter: &AtomicUsize, target: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(900);
    while counter.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {target}",
            counter.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let clients_wanted: usize = std::env::var("WUR2_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let starts: usize = std::env::var("WUR2_BENCH_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    // Startup to listening: on a fresh database (migrations run) and on an existing one.
    let mut fresh = Vec::new();
    let mut existing = Vec::new();
    for _ in 0..starts {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (server, took) = start(dir.path(), false);
        fresh.push(took);
        server.stop();
        let (server, took) = start(dir.path(), false);
        existing.push(took);
        server.stop();
    }
    println!(
        "startup to listening, fresh database: median {:?} of {starts}",
        median(fresh)
    );
    println!(
        "startup to listening, existing database: median {:?} of {starts}",
        median(existing)
    );

    let passes: &[bool] = if std::env::var_os("WUR2_BENCH_FIXED_ONLY").is_some() {
        &[true]
    } else {
        &[false, true]
    };
    for &fixed in passes {
        println!(
            "\n## allocator: glibc {}",
            if fixed {
                "with MALLOC_MMAP_THRESHOLD_=131072"
            } else {
                "defaults"
            }
        );
        measure(&runtime, clients_wanted, fixed);
    }
}

/// Idle server, warmed-up server and `clients_wanted` idle logged-in connections, in one server.
fn measure(runtime: &tokio::runtime::Runtime, clients_wanted: usize, fixed: bool) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (server, _) = start(dir.path(), fixed);
    std::thread::sleep(Duration::from_millis(500));
    let idle_kib = server.status_number("VmRSS:");
    println!("idle server: VmRSS {idle_kib} KiB");

    runtime.block_on(async {
        // Warm-up: enough concurrent logins that every password hashing thread has run,
        // so its (freed, but kept by the allocator) argon2 memory is in the baseline.
        let (warm_phase, warm_ready) = clients(server.addr, 16, "warm").await;
        wait_for(&warm_ready, 16, "warm-up logins").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let warm_kib = server.status_number("VmRSS:");
        println!("after 16 warm-up logins: VmRSS {warm_kib} KiB");

        let began = Instant::now();
        let (phase, ready) = clients(server.addr, clients_wanted, "idle").await;
        wait_for(&ready, clients_wanted, "logins").await;
        let login_time = began.elapsed();
        phase.send_replace(1);
        wait_for(&ready, 2 * clients_wanted, "barriers").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let loaded_kib = server.status_number("VmRSS:");
        let hwm_kib = server.status_number("VmHWM:");
        let per_connection = (loaded_kib.saturating_sub(warm_kib)) as f64 * 1024.0 / clients_wanted as f64;
        println!(
            "{clients_wanted} idle logged-in connections (logged in over {login_time:.1?}): \
             VmRSS {loaded_kib} KiB, VmHWM {hwm_kib} KiB"
        );
        println!(
            "per idle logged-in connection: {per_connection:.0} bytes ({:.2} KiB) above the warmed-up idle server",
            per_connection / 1024.0
        );
        phase.send_replace(2);
        warm_phase.send_replace(2);
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    server.stop();
}
