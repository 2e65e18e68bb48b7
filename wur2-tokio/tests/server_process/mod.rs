//! The real `wur2` binary as a child process on 127.0.0.1, for tests that drive or measure
//! the server from outside (over its sockets, signals, `/proc/<pid>/status`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_wur2");

/// A running `wur2`; stopped with SIGTERM (by its own pid) when dropped, its log printed
/// if the test is failing.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its metrics listener, when started with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
    /// From spawning to its "listening on" log line.
    pub startup: Duration,
    /// Its log so far.
    log: Arc<Mutex<Vec<String>>>,
}

/// The address after `marker` in a log line (up to a space or a `/`).
pub fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    line.split(marker)
        .nth(1)?
        .split(['/', ' '])
        .next()?
        .parse()
        .ok()
}

impl ServerProcess {
    /// Starts `wur2` on an SQLite database in `dir` (unless `env` sets `DATABASE_URL`),
    /// listening on a free loopback port, with `args` added and `env` set; waits until it
    /// says where it listens (and, with `--metrics-listen`, where its metrics are).
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let started = Instant::now();
        let mut child = Command::new(BINARY)
            .current_dir(dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("server.db").display()),
            )
            .env("RUST_LOG", "warn,wur2=info")
            // Tests register many accounts from 127.0.0.1 within a minute.
            .env("WUR2_MAX_REGISTRATIONS_PER_MINUTE", "0")
            .envs(env.iter().copied())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wur2");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            // Keep draining so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = address_after(&line, "listening on ") {
                    let _ = tx.send((true, addr));
                }
                if let Some(addr) = address_after(&line, "metrics on http://") {
                    let _ = tx.send((false, addr));
                }
                if let Ok(mut log) = kept.lock() {
                    log.push(line);
                }
            }
        });
        let wants_metrics = args.contains(&"--metrics-listen");
        let (mut addr, mut metrics) = (None, None);
        while addr.is_none() || (wants_metrics && metrics.is_none()) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok((true, found)) => addr = Some(found),
                Ok((false, found)) => metrics = Some(found),
                Err(error) => {
                    let _ = child.kill();
                    let log = log.lock().map(|log| log.join("\n")).unwrap_or_default();
                    panic!("wur2 did not say where it listens ({error}):\n{log}");
                }
            }
        }
        ServerProcess {
            child,
            addr: addr.expect("found"),
            metrics,
            startup: started.elapsed(),
            log,
        }
    }

    /// Sends SIGTERM and waits for the exit status, within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for wur2") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wur2 did not stop within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` (by its own pid): the server says nothing to anyone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// CPU time the server's live threads have used so far (nanoseconds, the first field
    /// of each `/proc/<pid>/task/<tid>/schedstat`); for differences over a short span.
    pub fn cpu_time(&self) -> Duration {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .expect("read /proc/<pid>/task");
        let nanos = tasks
            .filter_map(|task| {
                let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
                stat.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        Duration::from_nanos(nanos)
    }

    /// The number a field of `/proc/<pid>/status` starts with, such as `VmRSS:` (in KiB)
    /// or `FDSize:` (the descriptor table's size).
    pub fn status_number(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(field)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .expect("a numeric field")
    }

    /// Stops the server with SIGTERM and waits (killing it after 30 s).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.wait();
        }
        if std::thread::panicking()
            && let Ok(log) = self.log.lock()
        {
            eprintln!("wur2's log:\n{}", log.join("\n"));
        }
    }
}
