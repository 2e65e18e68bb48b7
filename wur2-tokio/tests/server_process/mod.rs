//! The real `wur2` binary as a child process on 127.0.0.1, for tests and benchmarks that
//! measure the server from outside (its memory in `/proc/<pid>/status`, its startup).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_wur2");

/// A running `wur2`; stopped with SIGTERM (by its own pid) when dropped.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// From spawning to its "listening on" log line.
    pub startup: Duration,
}

impl ServerProcess {
    /// Starts `wur2` on an SQLite database in `dir`, listening on a free loopback port,
    /// with `args` added and `env` set; waits until it says where it listens.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let started = Instant::now();
        let mut child = Command::new(BINARY)
            .current_dir(dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("server.db").display()),
            )
            .env("RUST_LOG", "warn,wur2=info")
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
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1)
                    && let Some(addr) = rest.split_whitespace().next().and_then(|a| a.parse().ok())
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("wur2 listens");
        ServerProcess {
            child,
            addr,
            startup: started.elapsed(),
        }
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

    /// A `kB` field of `/proc/<pid>/status`, such as `VmRSS:` or `VmHWM:`, in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| {
                line.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .expect("a kB field")
    }

    /// Stops the server with SIGTERM and waits (killing it after 30 s).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
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
}
