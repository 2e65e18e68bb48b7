//! The load generator: N clients in one channel, S of them sending M messages each, every
//! delivery to every other member counted, timed and checked for loss and duplicates.
//!
//! A run has three phases. Setup: clients connect (at most `connect_concurrency` at once),
//! log in and join, each ending with the protocol's barrier (WUR2 `/ping`, IRC `PING`, the
//! relay's greeting), so every member is in the channel before anything is measured; setup
//! time is reported apart and never counted in throughput. Measure: the senders send,
//! either windowed (at most `window` of a sender's messages not yet seen by an observer
//! client) or open-loop at a fixed rate; every client reads all the time and counts its
//! deliveries. Stop: when every client has received everything it should, or at the hard
//! deadline, whichever is first; what did not arrive is `lost`.
//!
//! Every client reads from the moment it connects until the end, so a server never queues
//! for a client that stopped reading (join announcements during setup included).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, Notify, Semaphore, mpsc, watch};

use crate::memory::{self, Memory};
use crate::payload::{Codec, Stamp};
use crate::scrape::{self, Counters};
use crate::transport::{Connector, ReadHalf, TlsClient, WriteHalf};

/// What the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// WUR2 text mode: `/register` or `/login`, `/join`, `/ping` barrier.
    Wur2,
    /// IRC: NICK/USER, JOIN, PRIVMSG; server PINGs are answered.
    Irc,
    /// Plain lines, as the bare relay speaks them; its greeting is the barrier.
    Line,
}

/// How WUR2 clients get their accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Auth {
    /// `/register` (a taken name then logs in): a fresh database.
    Register,
    /// `/login`: accounts made by an earlier run on the same database.
    Login,
    /// `/resume <user> <token>`: the tokens [`get_tokens`] asked for with `/token` in
    /// setup ([`LoadConfig::tokens`]), one SHA-256 lookup instead of argon2.
    Token,
}

/// A reconnect storm (configuration R): clients that all connect and log in at once when
/// the measured part starts, while the run's other clients send; the time until the last
/// is welcomed, and the busy answers (`Error: the server is busy; try again`) on the way.
#[derive(Debug, Clone)]
pub struct Storm {
    /// Clients that log in at once.
    pub clients: usize,
    /// How they log in: [`Auth::Login`] (argon2) or [`Auth::Token`] (`/resume`).
    pub auth: Auth,
    /// Their usernames are this plus their index (`0..clients`).
    pub user_prefix: String,
    /// Busy or unavailable answers one storm client retries at most (after a backoff of
    /// 100 ms doubling to 2 s), and reconnects after the server closed it at most; beyond
    /// either it counts as failed.
    pub max_retries: u32,
}

impl Default for Storm {
    fn default() -> Self {
        Storm {
            clients: 0,
            auth: Auth::Token,
            user_prefix: "u".to_owned(),
            max_retries: 50,
        }
    }
}

/// One run's shape.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server, or the nodes of a cluster: client `i` connects to
    /// `addrs[i % addrs.len()]` (round-robin, see [`LoadConfig::addr_for`]), so with one
    /// address every client connects to it, and with several the senders, the observer and
    /// the other members spread over all of them. Never empty.
    pub addrs: Vec<SocketAddr>,
    /// TLS to the server; plain TCP when `None`.
    pub tls: Option<TlsClient>,
    /// WUR2 clients connect to the server's web listener (`wur2 --web-listen`) and speak
    /// over its WebSocket: one line per text frame, JSON lines from the server.
    pub websocket: bool,
    /// WUR2 clients ask for JSON lines mode (`/mode json`) before logging in; a WebSocket
    /// speaks JSON anyway. Setup reads the JSON objects; deliveries are found as in text.
    pub json: bool,
    /// What it speaks.
    pub protocol: Protocol,
    /// Clients, all in one channel.
    pub clients: usize,
    /// How many of them send (the first `senders`); 0 makes an idle run.
    pub senders: usize,
    /// Messages per sender.
    pub messages: usize,
    /// Payload bytes per message.
    pub payload: usize,
    /// Messages per second per sender (open loop); `None` sends windowed.
    pub rate: Option<f64>,
    /// Windowed sending: messages of one sender the observer has not seen yet, at most.
    pub window: usize,
    /// Clients connecting and logging in at once.
    pub connect_concurrency: usize,
    /// The channel, without `#` (added for IRC).
    pub channel: String,
    /// Usernames and nicks are this plus the client's index.
    pub user_prefix: String,
    /// Password of every WUR2 account.
    pub password: String,
    /// How WUR2 clients get their accounts.
    pub auth: Auth,
    /// Clients logged in before the "before" memory snapshot, so one-time costs of the
    /// first logins (buffers, password hashing memory) are not charged per connection.
    pub warmup: usize,
    /// Wait after setup before the setup memory snapshot (lets announcements drain).
    pub settle: Duration,
    /// The server's process ids (one per node of a cluster), for memory snapshots (summed)
    /// and the servers' CPU seconds in the measured part.
    pub server_pids: Vec<u32>,
    /// The cluster bus's process id (the NATS server), for its CPU seconds and system calls
    /// in the measured part.
    pub bus_pid: Option<u32>,
    /// The servers' Prometheus endpoints (`wur2 --metrics-listen`), read at the start and
    /// the end of the measured part: chat messages, deliveries and bus counters.
    pub metrics: Vec<SocketAddr>,
    /// The whole run, setup included, ends by this deadline.
    pub timeout: Duration,
    /// A file created once every client is ready (before `settle`), so a script can start
    /// a profiler on the server for the measured part only.
    pub ready_file: Option<std::path::PathBuf>,
    /// Local addresses the clients connect from, round-robin (client `i` from
    /// `source_ips[i % len]`, see [`LoadConfig::source_for`]), each with its own ephemeral
    /// ports; empty lets the system pick. Storm clients spread the same way.
    pub source_ips: Vec<IpAddr>,
    /// Whether the clients join the channel (WUR2 and IRC); idle runs may stay out.
    pub join: bool,
    /// Resume tokens by username, for [`Auth::Token`] (see [`read_tokens`]).
    pub tokens: Arc<HashMap<String, String>>,
    /// A reconnect storm in the measured part, if any.
    pub storm: Option<Storm>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 6969))],
            tls: None,
            websocket: false,
            json: false,
            protocol: Protocol::Wur2,
            clients: 10,
            senders: 2,
            messages: 100,
            payload: 64,
            rate: None,
            window: 8,
            connect_concurrency: 32,
            channel: "bench".to_owned(),
            user_prefix: "u".to_owned(),
            password: "bench-password".to_owned(),
            auth: Auth::Register,
            warmup: 1,
            settle: Duration::from_millis(300),
            server_pids: Vec::new(),
            bus_pid: None,
            metrics: Vec::new(),
            timeout: Duration::from_secs(120),
            ready_file: None,
            source_ips: Vec::new(),
            join: true,
            tokens: Arc::new(HashMap::new()),
            storm: None,
        }
    }
}

impl LoadConfig {
    /// The address client `index` connects to: round-robin over [`LoadConfig::addrs`];
    /// `None` only when there is no address.
    pub fn addr_for(&self, index: usize) -> Option<SocketAddr> {
        let count = self.addrs.len();
        (count > 0).then(|| self.addrs[index % count])
    }

    /// The local address client `index` connects from: round-robin over
    /// [`LoadConfig::source_ips`]; `None` (the system picks) when there are none.
    pub fn source_for(&self, index: usize) -> Option<IpAddr> {
        let count = self.source_ips.len();
        (count > 0).then(|| self.source_ips[index % count])
    }

    /// The `/login`, `/register` or `/resume` line of `user`; `None` for [`Auth::Token`]
    /// when there is no token for `user`.
    /// Whether the server speaks JSON lines to these clients.
    fn json_lines(&self) -> bool {
        self.json || self.websocket
    }

    fn auth_line(&self, auth: Auth, user: &str) -> Option<String> {
        Some(match auth {
            Auth::Register => format!("/register {user} {}\n", self.password),
            Auth::Login => format!("/login {user} {}\n", self.password),
            Auth::Token => format!("/resume {user} {}\n", self.tokens.get(user)?),
        })
    }
}

/// What went wrong before anything could be measured.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A client could not connect or log in.
    #[error("client {client}: {reason}")]
    Setup {
        /// The client's index.
        client: usize,
        /// What happened.
        reason: String,
    },
    /// Setup did not finish before the deadline.
    #[error("setup timed out with {ready} of {clients} clients ready")]
    SetupTimeout {
        /// Clients ready.
        ready: usize,
        /// Clients wanted.
        clients: usize,
    },
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The tag in every payload of this run (`~B<tag>.`), to find its messages in history.
    pub run_tag: u32,
    /// Clients that completed setup.
    pub clients: usize,
    /// Clients that completed setup per address of [`LoadConfig::addrs`], in its order.
    pub clients_per_addr: Vec<usize>,
    /// Seconds from the first connect to the last client ready.
    pub setup_secs: f64,
    /// Deliveries that should happen: every message to every other member.
    pub expected: u64,
    /// Distinct deliveries that happened.
    pub received: u64,
    /// Deliveries seen more than once.
    pub duplicates: u64,
    /// `expected − received`.
    pub lost: u64,
    /// Chat messages the senders were to send (senders × messages).
    pub sent: u64,
    /// Seconds from the first send to the last delivery.
    pub measure_secs: f64,
    /// Distinct deliveries per second of `measure_secs`.
    pub deliveries_per_sec: f64,
    /// Latency percentiles, in microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest latency.
    pub max_us: u64,
    /// The largest latency of the messages sent in each tenth of a second of the measured
    /// part (index 0: its first 100 ms): where in time the slow deliveries were.
    pub worst_us_by_tenth: Vec<u32>,
    /// Server memory before the non-warm-up clients connected.
    pub memory_before: Option<Memory>,
    /// Server memory once every client is ready (after `settle`).
    pub memory_ready: Option<Memory>,
    /// Server memory after the measurement, before the clients leave.
    pub memory_after: Option<Memory>,
    /// Connections counted in the per-connection memory (clients minus warm-up).
    pub memory_connections: usize,
    /// Whether the run hit its deadline.
    pub timed_out: bool,
    /// CPU seconds of the server processes ([`LoadConfig::server_pids`], summed) in the
    /// measured part.
    pub server_cpu_secs: Option<f64>,
    /// CPU seconds of the bus process ([`LoadConfig::bus_pid`]) in the measured part.
    pub bus_cpu_secs: Option<f64>,
    /// Read and write system calls of the bus process in the measured part.
    pub bus_syscalls: Option<crate::cpu::Syscalls>,
    /// What the servers' counters ([`LoadConfig::metrics`], summed over nodes) moved by in
    /// the measured part.
    pub counters_measured: Option<Counters>,
    /// The servers' counters at the end, summed over nodes (since they started: bus drops
    /// and gaps of the whole run, setup included).
    pub counters_end: Option<Counters>,
    /// Server memory before the first client connected (the idle server).
    pub memory_start: Option<Memory>,
    /// The reconnect storm's outcome, when there was one.
    pub storm: Option<StormReport>,
}

/// What a reconnect storm did.
#[derive(Debug, Clone, Default)]
pub struct StormReport {
    /// Storm clients.
    pub clients: usize,
    /// How they logged in.
    pub auth: Option<Auth>,
    /// Clients welcomed.
    pub welcomed: usize,
    /// Clients that gave up (an error, too many retries, the deadline).
    pub failed: usize,
    /// The first failure, to say why.
    pub first_error: Option<String>,
    /// `busy` answers in all (every one retried after a backoff).
    pub busy: u64,
    /// Clients that got at least one `busy`.
    pub busy_clients: usize,
    /// `storage is unavailable` answers in all (retried the same way).
    pub unavailable: u64,
    /// Connections the server closed before the welcome (reconnected).
    pub reconnects: u64,
    /// Seconds from the storm's start to the last welcome.
    pub last_welcome_secs: f64,
    /// Seconds from the storm's start to the median welcome.
    pub median_welcome_secs: f64,
    /// The run's own clients' deliveries of messages sent while the storm lasted (from its
    /// start to its last welcome), and their latency percentiles.
    pub deliveries_during: u64,
    /// 50th percentile latency of those deliveries, in microseconds.
    pub p50_during_us: u64,
    /// 99th percentile latency of those deliveries, in microseconds.
    pub p99_during_us: u64,
}

impl Report {
    /// Server memory per connection, in bytes: the resident growth from "before" to
    /// "ready" over the connections made in between.
    pub fn bytes_per_connection(&self) -> Option<f64> {
        let (before, ready) = (self.memory_before?, self.memory_ready?);
        if self.memory_connections == 0 {
            return None;
        }
        Some(
            (ready.rss_kib as f64 - before.rss_kib as f64) * 1024.0
                / self.memory_connections as f64,
        )
    }

    /// One line of `key=value` pairs for scripts.
    pub fn to_line(&self) -> String {
        let mem = |m: Option<Memory>| m.map_or((0, 0), |m| (m.rss_kib, m.hwm_kib));
        let (rss0, hwm0) = mem(self.memory_before);
        let (rss1, hwm1) = mem(self.memory_ready);
        let (rss2, hwm2) = mem(self.memory_after);
        format!(
            "RESULT run={} clients={} setup_s={:.2} expected={} received={} dup={} lost={} measure_s={:.3} \
             deliveries_per_s={:.0} p50_us={} p99_us={} p999_us={} max_us={} \
             rss_before_kib={rss0} hwm_before_kib={hwm0} rss_ready_kib={rss1} hwm_ready_kib={hwm1} \
             rss_after_kib={rss2} hwm_after_kib={hwm2} bytes_per_conn={:.0} timed_out={}{}",
            self.run_tag,
            self.clients,
            self.setup_secs,
            self.expected,
            self.received,
            self.duplicates,
            self.lost,
            self.measure_secs,
            self.deliveries_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.bytes_per_connection().unwrap_or(0.0),
            self.timed_out,
            self.extra_fields(),
        )
    }

    /// The fields only some runs have: clients per address with several addresses, CPU
    /// seconds when pids were given, counters when metrics endpoints were.
    fn extra_fields(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if let Some(start) = self.memory_start {
            let _ = write!(out, " rss_start_kib={}", start.rss_kib);
        }
        if let Some(storm) = &self.storm {
            let auth = match storm.auth {
                Some(Auth::Token) => "token",
                Some(Auth::Login) => "password",
                Some(Auth::Register) => "register",
                None => "none",
            };
            let _ = write!(
                out,
                " storm_clients={} storm_auth={auth} storm_welcomed={} storm_failed={} \
                 storm_busy={} storm_busy_clients={} storm_unavailable={} storm_reconnects={} \
                 storm_s={:.3} storm_median_s={:.3} storm_deliveries={} p50_storm_us={} p99_storm_us={}",
                storm.clients,
                storm.welcomed,
                storm.failed,
                storm.busy,
                storm.busy_clients,
                storm.unavailable,
                storm.reconnects,
                storm.last_welcome_secs,
                storm.median_welcome_secs,
                storm.deliveries_during,
                storm.p50_during_us,
                storm.p99_during_us,
            );
        }
        if self.clients_per_addr.len() > 1 {
            let split: Vec<String> = self.clients_per_addr.iter().map(usize::to_string).collect();
            let _ = write!(
                out,
                " addrs={} clients_per_addr={}",
                split.len(),
                split.join("/")
            );
        }
        let per_message = |value: f64, messages: u64| {
            if messages == 0 {
                0.0
            } else {
                value / messages as f64
            }
        };
        // Chat messages of the run: the servers' own count when there is one.
        let messages = self
            .counters_measured
            .map_or(self.sent, |c| c.chat_messages);
        if let Some(secs) = self.server_cpu_secs {
            let _ = write!(
                out,
                " server_cpu_s={secs:.2} server_cpu_us_per_msg={:.1}",
                per_message(secs * 1e6, messages)
            );
        }
        if let Some(secs) = self.bus_cpu_secs {
            let _ = write!(
                out,
                " bus_cpu_s={secs:.2} bus_cpu_us_per_msg={:.1}",
                per_message(secs * 1e6, messages)
            );
        }
        if let Some(calls) = self.bus_syscalls {
            let _ = write!(
                out,
                " bus_reads_per_msg={:.3} bus_writes_per_msg={:.3}",
                per_message(calls.reads as f64, messages),
                per_message(calls.writes as f64, messages)
            );
        }
        if let Some(c) = self.counters_measured {
            let _ = write!(
                out,
                " chat_msgs={} srv_deliveries={}",
                c.chat_messages, c.deliveries
            );
            if c.bus {
                let _ = write!(
                    out,
                    " bus_pub={} bus_recv={} bus_sent_bytes={} bus_pub_per_msg={:.4} \
                     bus_bytes_per_msg={:.1} bus_recv_per_msg={:.4}",
                    c.bus_published,
                    c.bus_received,
                    c.bus_sent_bytes,
                    per_message(c.bus_published as f64, c.chat_messages),
                    per_message(c.bus_sent_bytes as f64, c.chat_messages),
                    per_message(c.bus_received as f64, c.chat_messages),
                );
            }
        }
        if let Some(c) = self.counters_end.filter(|c| c.bus) {
            let _ = write!(
                out,
                " bus_dropped_total={} bus_gaps_total={} bus_refused_total={}",
                c.bus_dropped, c.bus_gaps, c.bus_refused
            );
        }
        out
    }
}

/// State every client task shares.
struct Shared {
    config: LoadConfig,
    connector: Connector,
    codec: Codec,
    epoch: Instant,
    /// Highest sequence number + 1 the observer has seen, per sender.
    observed: Vec<AtomicU64>,
    observed_changed: Notify,
    /// Receivers that got everything they expect.
    complete: AtomicUsize,
    all_complete: Notify,
    /// Microseconds since `epoch` of the latest delivery anywhere.
    last_delivery_us: AtomicU64,
    setup_slots: Semaphore,
    /// The storm's start and last welcome, microseconds since `epoch`: a delivery of a
    /// message sent in between counts as "during the storm". `u64::MAX` while unknown.
    storm_start_us: AtomicU64,
    storm_end_us: AtomicU64,
    /// When the measured part started, microseconds since `epoch` (`u64::MAX` before).
    measure_start_us: AtomicU64,
}

/// A client after setup: where the sender writes.
struct Ready {
    index: usize,
    writer: Arc<Mutex<WriteHalf>>,
}

/// What a client saw.
#[derive(Default)]
struct Seen {
    distinct: u64,
    duplicates: u64,
    latencies_us: Vec<u32>,
    /// Latencies of messages sent while the storm lasted.
    storm_latencies_us: Vec<u32>,
    /// See [`Report::worst_us_by_tenth`].
    worst_us_by_tenth: Vec<u32>,
}

/// Runs one load test against `config.addrs`.
pub async fn run(config: LoadConfig) -> Result<Report, LoadError> {
    validate(&config)?;
    if config.json_lines() && config.protocol != Protocol::Wur2 {
        return Err(LoadError::Config(
            "--json and --websocket are WUR2's (--protocol wur2)".into(),
        ));
    }
    if config.json_lines() && config.storm.is_some() {
        return Err(LoadError::Config(
            "a storm speaks text mode over TCP: no --json or --websocket".into(),
        ));
    }
    let connector =
        Connector::new(config.tls.as_ref(), config.websocket).map_err(LoadError::Config)?;
    let deadline = tokio::time::Instant::now() + config.timeout;
    let run_tag = (std::process::id() ^ nanos_now()) % 1_000_000_000;
    let shared = Arc::new(Shared {
        connector,
        codec: Codec::new(run_tag, config.payload),
        epoch: Instant::now(),
        observed: (0..config.senders).map(|_| AtomicU64::new(0)).collect(),
        observed_changed: Notify::new(),
        complete: AtomicUsize::new(0),
        all_complete: Notify::new(),
        last_delivery_us: AtomicU64::new(0),
        setup_slots: Semaphore::new(config.connect_concurrency.max(1)),
        storm_start_us: AtomicU64::new(u64::MAX),
        storm_end_us: AtomicU64::new(u64::MAX),
        measure_start_us: AtomicU64::new(u64::MAX),
        config,
    });
    let config = &shared.config;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<Ready, LoadError>>();
    let mut clients = tokio::task::JoinSet::new();
    let mut writers: Vec<Option<Arc<Mutex<WriteHalf>>>> = vec![None; config.clients];

    let setup_started = Instant::now();
    let mut report = Report {
        run_tag,
        ..Report::default()
    };
    report.memory_start = memory::read_all(&config.server_pids);
    let warmup = config.warmup.min(config.clients);
    let mut spawned = 0;
    let mut ready = 0;
    for batch_end in [warmup, config.clients] {
        while spawned < batch_end {
            clients.spawn(client(
                spawned,
                Arc::clone(&shared),
                ready_tx.clone(),
                stop_rx.clone(),
            ));
            spawned += 1;
        }
        while ready < batch_end {
            let outcome = tokio::time::timeout_at(deadline, ready_rx.recv()).await;
            match outcome {
                Ok(Some(Ok(client))) => {
                    writers[client.index] = Some(client.writer);
                    ready += 1;
                }
                Ok(Some(Err(error))) => {
                    let _ = stop_tx.send(true);
                    return Err(error);
                }
                Ok(None) | Err(_) => {
                    let _ = stop_tx.send(true);
                    return Err(LoadError::SetupTimeout {
                        ready,
                        clients: config.clients,
                    });
                }
            }
        }
        if batch_end == warmup {
            report.memory_before = memory::read_all(&config.server_pids);
        }
    }
    report.clients = ready;
    report.clients_per_addr = vec![0; config.addrs.len()];
    for index in (0..config.clients).filter(|&i| writers[i].is_some()) {
        report.clients_per_addr[index % config.addrs.len()] += 1;
    }
    report.memory_connections = config.clients - warmup;
    report.setup_secs = setup_started.elapsed().as_secs_f64();
    if let Some(path) = &config.ready_file
        && let Err(error) = std::fs::write(path, b"ready\n")
    {
        eprintln!("wur2-loadgen: cannot write {}: {error}", path.display());
    }
    tokio::time::sleep(config.settle).await;
    report.memory_ready = memory::read_all(&config.server_pids);
    let counters_ready = read_counters(config).await;
    let server_cpu_ready = crate::cpu::read_all(&config.server_pids);
    let bus_cpu_ready = config.bus_pid.and_then(crate::cpu::read);
    let bus_calls_ready = config.bus_pid.and_then(crate::cpu::syscalls);

    // Measure.
    let receivers = receivers(config);
    report.expected = expected_total(config);
    report.sent = (config.senders * config.messages) as u64;
    let measure_started_us = micros_since(shared.epoch);
    shared
        .measure_start_us
        .store(measure_started_us, Ordering::Release);
    // The storm starts with the senders: every storm client connects at once.
    let (storm_tx, mut storm_rx) = mpsc::unbounded_channel::<StormOutcome>();
    let storm_clients = config.storm.as_ref().map_or(0, |storm| storm.clients);
    let storm_thread = if storm_clients > 0 {
        shared
            .storm_start_us
            .store(measure_started_us, Ordering::Release);
        match start_storm(storm_clients, &shared, storm_tx, &stop_rx) {
            Ok(thread) => Some(thread),
            Err(error) => {
                let _ = stop_tx.send(true);
                return Err(LoadError::Config(format!(
                    "cannot start the storm's thread: {error}"
                )));
            }
        }
    } else {
        drop(storm_tx);
        None
    };
    // The storm's outcomes as they come; its end (the last outcome) closes the window of
    // "during the storm" deliveries.
    let storm_outcomes = Arc::new(std::sync::Mutex::new(Vec::with_capacity(storm_clients)));
    let storm_collector = {
        let (shared, outcomes) = (Arc::clone(&shared), Arc::clone(&storm_outcomes));
        tokio::spawn(async move {
            let mut count = 0;
            while let Some(outcome) = storm_rx.recv().await {
                outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(outcome);
                count += 1;
                if count == storm_clients {
                    shared
                        .storm_end_us
                        .store(micros_since(shared.epoch), Ordering::Release);
                    break;
                }
            }
        })
    };
    let mut senders = tokio::task::JoinSet::new();
    for (index, writer) in writers.iter().take(config.senders).enumerate() {
        if let Some(writer) = writer {
            senders.spawn(send(index, Arc::clone(writer), Arc::clone(&shared)));
        }
    }
    if receivers > 0 {
        let all_in = async {
            loop {
                let notified = shared.all_complete.notified();
                if shared.complete.load(Ordering::Acquire) >= receivers {
                    break;
                }
                notified.await;
            }
        };
        report.timed_out = tokio::time::timeout_at(deadline, all_in).await.is_err();
    }
    if let Some(storm) = &config.storm {
        if tokio::time::timeout_at(deadline, storm_collector)
            .await
            .is_err()
        {
            report.timed_out = true;
        }
        let outcomes = storm_outcomes.lock().unwrap_or_else(|e| e.into_inner());
        report.storm = Some(storm_report(storm, &outcomes, measure_started_us));
    } else {
        storm_collector.abort();
    }
    report.memory_after = memory::read_all(&config.server_pids);
    // CPU first: reading the counters costs the servers a little.
    let cpu_since = |ready: Option<f64>, now: Option<f64>| Some(now? - ready?);
    report.server_cpu_secs = cpu_since(server_cpu_ready, crate::cpu::read_all(&config.server_pids));
    report.bus_cpu_secs = cpu_since(bus_cpu_ready, config.bus_pid.and_then(crate::cpu::read));
    report.bus_syscalls = config
        .bus_pid
        .and_then(crate::cpu::syscalls)
        .zip(bus_calls_ready)
        .map(|(now, ready)| now.since(ready));
    report.counters_end = read_counters(config).await;
    report.counters_measured = report
        .counters_end
        .zip(counters_ready)
        .map(|(end, ready)| end.since(ready));
    let _ = stop_tx.send(true);
    senders.abort_all();
    if let Some(thread) = storm_thread {
        // Its clients end at the stop signal, and with them its runtime.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    let last_us = shared.last_delivery_us.load(Ordering::Acquire);
    report.measure_secs = last_us.saturating_sub(measure_started_us) as f64 / 1e6;

    let mut latencies = Vec::new();
    let mut storm_latencies = Vec::new();
    while let Some(joined) = clients.join_next().await {
        if let Ok(seen) = joined {
            report.received += seen.distinct;
            report.duplicates += seen.duplicates;
            latencies.extend_from_slice(&seen.latencies_us);
            storm_latencies.extend_from_slice(&seen.storm_latencies_us);
            let worst = &mut report.worst_us_by_tenth;
            if worst.len() < seen.worst_us_by_tenth.len() {
                worst.resize(seen.worst_us_by_tenth.len(), 0);
            }
            for (all, one) in worst.iter_mut().zip(&seen.worst_us_by_tenth) {
                *all = (*all).max(*one);
            }
        }
    }
    if let Some(storm) = report.storm.as_mut() {
        storm_latencies.sort_unstable();
        storm.deliveries_during = storm_latencies.len() as u64;
        storm.p50_during_us = percentile(&storm_latencies, 0.5);
        storm.p99_during_us = percentile(&storm_latencies, 0.99);
    }
    report.lost = report.expected.saturating_sub(report.received);
    if report.measure_secs > 0.0 {
        report.deliveries_per_sec = report.received as f64 / report.measure_secs;
    }
    latencies.sort_unstable();
    report.p50_us = percentile(&latencies, 0.5);
    report.p99_us = percentile(&latencies, 0.99);
    report.p999_us = percentile(&latencies, 0.999);
    report.max_us = latencies.last().copied().map_or(0, u64::from);
    Ok(report)
}

/// The servers' counters summed over [`LoadConfig::metrics`]; `None` without endpoints,
/// or (said on stderr) when one does not answer: the run's deliveries still count.
async fn read_counters(config: &LoadConfig) -> Option<Counters> {
    if config.metrics.is_empty() {
        return None;
    }
    match scrape::scrape_all(&config.metrics).await {
        Ok(counters) => Some(counters),
        Err(error) => {
            eprintln!("wur2-loadgen: {error}");
            None
        }
    }
}

fn validate(config: &LoadConfig) -> Result<(), LoadError> {
    if config.addrs.is_empty() {
        return Err(LoadError::Config("no server address".into()));
    }
    if config.clients == 0 {
        return Err(LoadError::Config("no clients".into()));
    }
    let storm_auth = config.storm.as_ref().map(|storm| storm.auth);
    if config.protocol != Protocol::Wur2 && storm_auth.is_some() {
        return Err(LoadError::Config("a storm needs --protocol wur2".into()));
    }
    if storm_auth == Some(Auth::Register) {
        return Err(LoadError::Config(
            "a storm logs existing accounts in: password or token".into(),
        ));
    }
    if (config.auth == Auth::Token || storm_auth == Some(Auth::Token)) && config.tokens.is_empty() {
        return Err(LoadError::Config(
            "token logins need tokens (--token-file, made by --get-tokens)".into(),
        ));
    }
    if config.senders > 0 && config.senders >= config.clients {
        return Err(LoadError::Config(
            "senders must be fewer than clients (the last client observes)".into(),
        ));
    }
    if config.rate.is_none() && config.window == 0 {
        return Err(LoadError::Config("window must be at least 1".into()));
    }
    if let Some(rate) = config.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        return Err(LoadError::Config("rate must be positive".into()));
    }
    Ok(())
}

/// Deliveries client `index` should see.
fn expected_for(config: &LoadConfig, index: usize) -> u64 {
    let others = if index < config.senders {
        config.senders - 1
    } else {
        config.senders
    };
    (others * config.messages) as u64
}

fn expected_total(config: &LoadConfig) -> u64 {
    (0..config.clients).map(|i| expected_for(config, i)).sum()
}

fn receivers(config: &LoadConfig) -> usize {
    (0..config.clients)
        .filter(|&i| expected_for(config, i) > 0)
        .count()
}

fn percentile(sorted: &[u32], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    u64::from(sorted[rank - 1])
}

fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn nanos_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// A buffered line reader over the read half of a client socket.
struct Lines {
    reader: ReadHalf,
    buf: Vec<u8>,
    start: usize,
}

impl Lines {
    fn new(reader: ReadHalf) -> Lines {
        Lines {
            reader,
            buf: Vec::with_capacity(16 * 1024),
            start: 0,
        }
    }

    /// The next complete line (without its ending), reading as needed; `None` at EOF.
    async fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.buf[self.start..]) {
                let line = trim_cr(&self.buf[self.start..self.start + at]).to_vec();
                self.start += at + 1;
                return Ok(Some(line));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads more; false at EOF.
    async fn fill(&mut self) -> std::io::Result<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 8 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        Ok(self.reader.read_buf(&mut self.buf).await? > 0)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn setup_error(client: usize, reason: impl std::fmt::Display) -> LoadError {
    LoadError::Setup {
        client,
        reason: reason.to_string(),
    }
}

/// One client for the whole run: connect, log in, join, then read and count until told to
/// stop.
async fn client(
    index: usize,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<Result<Ready, LoadError>>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let permit = shared.setup_slots.acquire().await;
    let set_up = tokio::select! {
        result = set_up(index, &shared) => result,
        _ = stop.wait_for(|stopped| *stopped) => return seen,
    };
    drop(permit);
    let (mut lines, writer) = match set_up {
        Ok(connected) => connected,
        Err(error) => {
            let _ = ready.send(Err(error));
            return seen;
        }
    };
    let writer = Arc::new(Mutex::new(writer));
    let _ = ready.send(Ok(Ready {
        index,
        writer: Arc::clone(&writer),
    }));
    drop(ready);

    let config = &shared.config;
    let expected = expected_for(config, index);
    let observer = config.senders > 0 && index == config.clients - 1;
    let messages = config.messages;
    // One bit per (sender, seq): distinct deliveries and duplicates.
    let mut got = vec![0u64; (config.senders * messages).div_ceil(64)];
    seen.latencies_us
        .reserve(usize::try_from(expected).unwrap_or(0));
    let chat_prefix = match config.protocol {
        // The server writes JSON keys in sorted order: a message starts with its channel.
        Protocol::Wur2 if config.json_lines() => {
            format!("{{\"channel\":\"{}\",", config.channel).into_bytes()
        }
        Protocol::Wur2 => format!("[{}] ", config.channel).into_bytes(),
        Protocol::Irc | Protocol::Line => Vec::new(),
    };
    let mut complete = expected == 0;
    loop {
        // Scan every complete line in the buffer.
        let now_us = micros_since(shared.epoch);
        let mut counted = false;
        let mut pongs = Vec::new();
        while let Some(at) = memchr::memchr(b'\n', &lines.buf[lines.start..]) {
            let line = trim_cr(&lines.buf[lines.start..lines.start + at]);
            lines.start += at + 1;
            if config.protocol == Protocol::Irc && line.starts_with(b"PING ") {
                pongs.extend_from_slice(b"PONG ");
                pongs.extend_from_slice(&line[5..]);
                pongs.extend_from_slice(b"\r\n");
                continue;
            }
            if !line.starts_with(&chat_prefix) {
                continue;
            }
            let Some(Stamp {
                sender,
                seq,
                sent_us,
            }) = shared.codec.find(line)
            else {
                continue;
            };
            let (sender, seq) = (sender as usize, seq as usize);
            if sender >= config.senders || seq >= messages || sender == index {
                continue;
            }
            let bit = sender * messages + seq;
            let (word, mask) = (bit / 64, 1u64 << (bit % 64));
            if got[word] & mask != 0 {
                seen.duplicates += 1;
                continue;
            }
            got[word] |= mask;
            seen.distinct += 1;
            counted = true;
            let latency = u32::try_from(now_us.saturating_sub(sent_us)).unwrap_or(u32::MAX);
            seen.latencies_us.push(latency);
            if let Some(since) =
                sent_us.checked_sub(shared.measure_start_us.load(Ordering::Acquire))
            {
                let tenth = (since / 100_000) as usize;
                if seen.worst_us_by_tenth.len() <= tenth {
                    seen.worst_us_by_tenth.resize(tenth + 1, 0);
                }
                seen.worst_us_by_tenth[tenth] = seen.worst_us_by_tenth[tenth].max(latency);
            }
            if sent_us >= shared.storm_start_us.load(Ordering::Acquire)
                && sent_us <= shared.storm_end_us.load(Ordering::Acquire)
            {
                seen.storm_latencies_us.push(latency);
            }
            if observer {
                shared.observed[sender].fetch_max(seq as u64 + 1, Ordering::AcqRel);
            }
        }
        if counted {
            shared.last_delivery_us.fetch_max(now_us, Ordering::AcqRel);
            if observer {
                shared.observed_changed.notify_waiters();
            }
            if !complete && seen.distinct >= expected {
                complete = true;
                shared.complete.fetch_add(1, Ordering::AcqRel);
                shared.all_complete.notify_waiters();
            }
        }
        if !pongs.is_empty() && writer.lock().await.write_all(&pongs).await.is_err() {
            break;
        }
        let more = tokio::select! {
            more = lines.fill() => more,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        if !matches!(more, Ok(true)) {
            break;
        }
    }
    seen
}

/// Connects and logs client `index` in, up to and including the protocol's barrier.
async fn set_up(index: usize, shared: &Shared) -> Result<(Lines, WriteHalf), LoadError> {
    let config = &shared.config;
    let addr = config
        .addr_for(index)
        .ok_or_else(|| setup_error(index, "no server address"))?;
    let (reader, mut writer) = shared
        .connector
        .connect_from(addr, config.source_for(index))
        .await
        .map_err(|e| setup_error(index, format!("connect: {e}")))?;
    let mut lines = Lines::new(reader);
    let user = format!("{}{index}", config.user_prefix);
    let fail = |what: &str| setup_error(index, what);
    let io = |e: std::io::Error| setup_error(index, format!("i/o: {e}"));
    macro_rules! next {
        () => {
            lines
                .next_line()
                .await
                .map_err(io)?
                .ok_or_else(|| fail("the server closed the connection during setup"))?
        };
    }
    match config.protocol {
        Protocol::Line => loop {
            if next!() == crate::relay::GREETING.trim_ascii_end() {
                break;
            }
        },
        Protocol::Wur2 if config.json_lines() => {
            let login = format!("/login {user} {}\n", config.password);
            let mut first = config
                .auth_line(config.auth, &user)
                .ok_or_else(|| fail("no resume token for this user"))?;
            if !config.websocket {
                first.insert_str(0, "/mode json\n");
            }
            writer.write_all(first.as_bytes()).await.map_err(io)?;
            let mut busy_retries = 0;
            loop {
                let line = next!();
                match (json_field(&line, "type"), json_field(&line, "code")) {
                    (Some(b"welcome"), _) => break,
                    (Some(b"error"), Some(b"username_taken")) => {
                        writer.write_all(login.as_bytes()).await.map_err(io)?;
                    }
                    (Some(b"error"), Some(b"busy" | b"storage_unavailable"))
                        if busy_retries < 50 =>
                    {
                        busy_retries += 1;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let again = config
                            .auth_line(config.auth, &user)
                            .ok_or_else(|| fail("no resume token for this user"))?;
                        writer.write_all(again.as_bytes()).await.map_err(io)?;
                    }
                    (Some(b"error"), _) => return Err(fail(&String::from_utf8_lossy(&line))),
                    _ => {}
                }
            }
            let join = if config.join {
                format!("/join {}\n/ping ready\n", config.channel)
            } else {
                "/ping ready\n".to_owned()
            };
            writer.write_all(join.as_bytes()).await.map_err(io)?;
            loop {
                let line = next!();
                match json_field(&line, "type") {
                    Some(b"pong") if json_field(&line, "token") == Some(b"ready") => break,
                    Some(b"error") => return Err(fail(&String::from_utf8_lossy(&line))),
                    _ => {}
                }
            }
        }
        Protocol::Wur2 => {
            let login = format!("/login {user} {}\n", config.password);
            let first = config
                .auth_line(config.auth, &user)
                .ok_or_else(|| fail("no resume token for this user"))?;
            writer.write_all(first.as_bytes()).await.map_err(io)?;
            let welcome = format!("Welcome {user}!");
            let welcome_back = format!("Welcome back {user}!");
            let mut busy_retries = 0;
            loop {
                let line = next!();
                if line == welcome.as_bytes() || line == welcome_back.as_bytes() {
                    break;
                }
                if line.starts_with(b"Error: that username is taken") {
                    writer.write_all(login.as_bytes()).await.map_err(io)?;
                } else if (line.starts_with(b"Error: the server is busy")
                    || line.starts_with(b"Error: storage is unavailable"))
                    && busy_retries < 50
                {
                    // A burst of logins can outrun the hashing pool or the database pool;
                    // setup is not measured, so wait and try again.
                    busy_retries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    writer.write_all(first.as_bytes()).await.map_err(io)?;
                } else if line.starts_with(b"Error: ") {
                    return Err(fail(&String::from_utf8_lossy(&line)));
                }
            }
            let join = if config.join {
                format!("/join {}\n/ping ready\n", config.channel)
            } else {
                "/ping ready\n".to_owned()
            };
            writer.write_all(join.as_bytes()).await.map_err(io)?;
            loop {
                let line = next!();
                if line == b"PONG ready" {
                    break;
                }
                if line.starts_with(b"Error: ") {
                    return Err(fail(&String::from_utf8_lossy(&line)));
                }
            }
        }
        Protocol::Irc => {
            let hello = format!("NICK {user}\r\nUSER {user} 0 * :{user}\r\n");
            writer.write_all(hello.as_bytes()).await.map_err(io)?;
            loop {
                let line = next!();
                if line.starts_with(b"PING ") {
                    let mut pong = b"PONG ".to_vec();
                    pong.extend_from_slice(&line[5..]);
                    pong.extend_from_slice(b"\r\n");
                    writer.write_all(&pong).await.map_err(io)?;
                    continue;
                }
                match irc_numeric(&line) {
                    Some(b"001") => break,
                    Some(b"433" | b"432") => return Err(fail("nickname refused")),
                    _ if line.starts_with(b"ERROR") => {
                        return Err(fail(&String::from_utf8_lossy(&line)));
                    }
                    _ => {}
                }
            }
            let join = if config.join {
                format!("JOIN #{}\r\nPING :ready\r\n", config.channel)
            } else {
                "PING :ready\r\n".to_owned()
            };
            writer.write_all(join.as_bytes()).await.map_err(io)?;
            loop {
                let line = next!();
                if line.starts_with(b"PING ") {
                    let mut pong = b"PONG ".to_vec();
                    pong.extend_from_slice(&line[5..]);
                    pong.extend_from_slice(b"\r\n");
                    writer.write_all(&pong).await.map_err(io)?;
                    continue;
                }
                if line.ends_with(b"ready") && line.windows(6).any(|w| w == b" PONG ") {
                    break;
                }
                if line.starts_with(b"ERROR") {
                    return Err(fail(&String::from_utf8_lossy(&line)));
                }
            }
        }
    }
    Ok((lines, writer))
}

/// The value of the string field `name` in a JSON line from the server, if it has one
/// without escapes (types, codes and tokens never have them): enough for setup, with no
/// JSON parser in the load generator.
fn json_field<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let key = format!("\"{name}\":\"");
    let at = memchr::memmem::find(line, key.as_bytes())? + key.len();
    let len = memchr::memchr2(b'"', b'\\', &line[at..])?;
    (line[at + len] == b'"').then(|| &line[at..at + len])
}

/// The numeric of an IRC reply line (`:server 001 nick …`).
fn irc_numeric(line: &[u8]) -> Option<&[u8]> {
    let mut words = line.split(|&b| b == b' ');
    let first = words.next()?;
    let word = if first.starts_with(b":") {
        words.next()?
    } else {
        first
    };
    (word.len() == 3 && word.iter().all(u8::is_ascii_digit)).then_some(word)
}

/// Sender `index`: its messages, windowed or paced.
async fn send(index: usize, writer: Arc<Mutex<WriteHalf>>, shared: Arc<Shared>) {
    let config = &shared.config;
    let (prefix, suffix): (Vec<u8>, &[u8]) = match config.protocol {
        Protocol::Wur2 | Protocol::Line => (Vec::new(), b"\n"),
        Protocol::Irc => (
            format!("PRIVMSG #{} :", config.channel).into_bytes(),
            b"\r\n",
        ),
    };
    let mut out = Vec::with_capacity(64 * 1024);
    let line = |out: &mut Vec<u8>, seq: usize, sent_us: u64| {
        out.extend_from_slice(&prefix);
        shared.codec.encode(
            Stamp {
                sender: u32::try_from(index).unwrap_or(u32::MAX),
                seq: u32::try_from(seq).unwrap_or(u32::MAX),
                sent_us,
            },
            out,
        );
        out.extend_from_slice(suffix);
    };
    let mut seq = 0;
    match config.rate {
        Some(rate) => {
            let period = Duration::from_secs_f64(1.0 / rate);
            // Senders start spread over one period, as independent users would.
            let offset = period.mul_f64(index as f64 / config.senders.max(1) as f64);
            let start = tokio::time::Instant::now() + offset;
            while seq < config.messages {
                let due = start + period.mul_f64(seq as f64);
                tokio::time::sleep_until(due).await;
                out.clear();
                line(&mut out, seq, micros_since(shared.epoch));
                if writer.lock().await.write_all(&out).await.is_err() {
                    return;
                }
                seq += 1;
            }
        }
        None => {
            let window = config.window as u64;
            while seq < config.messages {
                let notified = shared.observed_changed.notified();
                let observed = shared.observed[index].load(Ordering::Acquire);
                let room = (observed + window).saturating_sub(seq as u64);
                if room == 0 {
                    // Re-checked on a timer too, in case the observer is slow to be woken.
                    let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
                    continue;
                }
                out.clear();
                let sent_us = micros_since(shared.epoch);
                let end = (seq + room as usize).min(config.messages);
                for s in seq..end {
                    line(&mut out, s, sent_us);
                }
                if writer.lock().await.write_all(&out).await.is_err() {
                    return;
                }
                seq = end;
            }
        }
    }
}

/// What one storm client saw on its way in.
#[derive(Debug, Default)]
struct StormOutcome {
    /// When it was welcomed, microseconds since the epoch.
    welcomed_us: Option<u64>,
    busy: u32,
    unavailable: u32,
    reconnects: u32,
    error: Option<String>,
}

/// The wait before a storm client's `attempt`-th retry: 100 ms doubling to 2 s, plus up to
/// 99 ms spread by the client's index so that retries do not come back in one wave.
fn storm_backoff(attempt: u32, index: usize) -> Duration {
    let base = (100u64 << attempt.clamp(1, 6).saturating_sub(1)).min(2000);
    Duration::from_millis(base + (index as u64 * 37) % 100)
}

/// Storm client `index`: connects and logs in when the storm starts, retrying busy and
/// unavailable answers and closed connections (bounded), says how it went, then stays
/// connected (reading and dropping what arrives) until the run ends.
async fn storm_client(
    index: usize,
    shared: Arc<Shared>,
    done: mpsc::UnboundedSender<StormOutcome>,
    mut stop: watch::Receiver<bool>,
) {
    let mut outcome = StormOutcome::default();
    let connected = tokio::select! {
        connected = storm_login(index, &shared, &mut outcome) => connected,
        _ = stop.wait_for(|stopped| *stopped) => None,
    };
    if outcome.welcomed_us.is_none() && outcome.error.is_none() {
        outcome.error = Some("not welcomed by the deadline".to_owned());
    }
    let _ = done.send(outcome);
    drop(done);
    if let Some((mut lines, _writer)) = connected {
        loop {
            let more = tokio::select! {
                more = lines.fill() => more,
                _ = stop.wait_for(|stopped| *stopped) => break,
            };
            if !matches!(more, Ok(true)) {
                break;
            }
            lines.buf.clear();
            lines.start = 0;
        }
    }
}

/// Starts the storm's `count` clients on a runtime and thread of their own: a thousand
/// connects and logins at once (each connect runs the loopback handshake in the caller's
/// thread) would otherwise delay the measured clients' reads and writes, which on real
/// machines the storm's clients would never share. They report on `outcomes` and end at
/// the `stop` signal, and the thread with them.
fn start_storm(
    count: usize,
    shared: &Arc<Shared>,
    outcomes: mpsc::UnboundedSender<StormOutcome>,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (shared, stop) = (Arc::clone(shared), stop.clone());
    std::thread::Builder::new()
        .name("storm".into())
        .spawn(move || {
            runtime.block_on(async {
                let mut clients = tokio::task::JoinSet::new();
                for index in 0..count {
                    let (shared, outcomes, stop) =
                        (Arc::clone(&shared), outcomes.clone(), stop.clone());
                    clients.spawn(storm_client(index, shared, outcomes, stop));
                }
                drop(outcomes);
                while clients.join_next().await.is_some() {}
            });
        })
}

/// One storm client's login, with its retries; the connection once welcomed.
async fn storm_login(
    index: usize,
    shared: &Shared,
    outcome: &mut StormOutcome,
) -> Option<(Lines, WriteHalf)> {
    let config = &shared.config;
    let storm = config.storm.as_ref()?;
    let user = format!("{}{index}", storm.user_prefix);
    let Some(login) = config.auth_line(storm.auth, &user) else {
        outcome.error = Some(format!("{user}: no resume token"));
        return None;
    };
    let welcome = format!("Welcome back {user}!");
    let addr = config.addr_for(index)?;
    let mut retries = 0u32;
    // Counts one more retry; false (and the reason kept) beyond the limit.
    let mut again = |outcome: &mut StormOutcome, why: String| {
        retries += 1;
        if retries > storm.max_retries {
            outcome.error = Some(format!("{user}: gave up after {retries} tries: {why}"));
            return None;
        }
        Some(storm_backoff(retries, index))
    };
    'connect: loop {
        let (reader, mut writer) = match shared
            .connector
            .connect_from(addr, config.source_for(index))
            .await
        {
            Ok(connected) => connected,
            Err(error) => {
                outcome.reconnects += 1;
                tokio::time::sleep(again(outcome, format!("connect: {error}"))?).await;
                continue;
            }
        };
        let mut lines = Lines::new(reader);
        if writer.write_all(login.as_bytes()).await.is_err() {
            outcome.reconnects += 1;
            tokio::time::sleep(again(outcome, "write failed".to_owned())?).await;
            continue;
        }
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) | Err(_) => {
                    outcome.reconnects += 1;
                    let wait = again(outcome, "closed before the welcome".to_owned())?;
                    tokio::time::sleep(wait).await;
                    continue 'connect;
                }
            };
            if line == welcome.as_bytes() {
                outcome.welcomed_us = Some(micros_since(shared.epoch));
                return Some((lines, writer));
            }
            let busy = line.starts_with(b"Error: the server is busy");
            if busy || line.starts_with(b"Error: storage is unavailable") {
                if busy {
                    outcome.busy += 1;
                } else {
                    outcome.unavailable += 1;
                }
                let why = String::from_utf8_lossy(&line).into_owned();
                tokio::time::sleep(again(outcome, why)?).await;
                if writer.write_all(login.as_bytes()).await.is_err() {
                    outcome.reconnects += 1;
                    continue 'connect;
                }
            } else if line.starts_with(b"Error: ") {
                outcome.error = Some(format!("{user}: {}", String::from_utf8_lossy(&line)));
                return None;
            }
        }
    }
}

/// The storm's figures from its clients' outcomes (the latencies during it come later).
fn storm_report(storm: &Storm, outcomes: &[StormOutcome], start_us: u64) -> StormReport {
    let mut welcomes: Vec<u64> = outcomes
        .iter()
        .filter_map(|o| o.welcomed_us)
        .map(|at| at.saturating_sub(start_us))
        .collect();
    welcomes.sort_unstable();
    let median = welcomes.get(welcomes.len() / 2).copied().unwrap_or(0);
    StormReport {
        clients: storm.clients,
        auth: Some(storm.auth),
        welcomed: welcomes.len(),
        failed: storm.clients - welcomes.len(),
        first_error: outcomes.iter().find_map(|o| o.error.clone()),
        busy: outcomes.iter().map(|o| u64::from(o.busy)).sum(),
        busy_clients: outcomes.iter().filter(|o| o.busy > 0).count(),
        unavailable: outcomes.iter().map(|o| u64::from(o.unavailable)).sum(),
        reconnects: outcomes.iter().map(|o| u64::from(o.reconnects)).sum(),
        last_welcome_secs: welcomes.last().copied().unwrap_or(0) as f64 / 1e6,
        median_welcome_secs: median as f64 / 1e6,
        ..StormReport::default()
    }
}

/// What [`get_tokens`] did.
#[derive(Debug, Clone, Default)]
pub struct TokenReport {
    /// Users with a token in the file now.
    pub tokens: usize,
    /// Users that logged in (or registered) and asked for one in this run.
    pub asked: usize,
    /// `busy` answers on the way (retried).
    pub busy: u64,
    /// Seconds it took.
    pub secs: f64,
}

/// The resume token in a `/token` answer (`Your resume token (…): <32 hex> (log in …)`).
pub fn parse_token(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Your resume token")?.split_once("): ")?.1;
    let token = rest.split_whitespace().next()?;
    (token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())).then(|| token.to_owned())
}

/// The tokens of a token file (`<user> <token>` lines); an absent file has none.
pub fn read_tokens(path: &std::path::Path) -> std::io::Result<HashMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(error) => return Err(error),
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let (user, token) = line.split_once(' ')?;
            Some((user.to_owned(), token.trim().to_owned()))
        })
        .collect())
}

/// Setup for token logins, done once per database: every client `config.user_prefix` +
/// `0..config.clients` without a token in `path` registers (or, with [`Auth::Login`], logs
/// in) with its password, asks `/token`, and leaves (`/close`); `path` then holds a token
/// for every one of them (written even when some failed). At most `connect_concurrency`
/// at once; busy answers are retried after a backoff.
pub async fn get_tokens(
    config: &LoadConfig,
    path: &std::path::Path,
) -> Result<TokenReport, LoadError> {
    validate(config)?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.timeout;
    let mut tokens =
        read_tokens(path).map_err(|e| LoadError::Config(format!("{}: {e}", path.display())))?;
    let missing: Vec<usize> = (0..config.clients)
        .filter(|i| !tokens.contains_key(&format!("{}{i}", config.user_prefix)))
        .collect();
    if config.json_lines() {
        return Err(LoadError::Config(
            "resume tokens are collected in text mode over TCP: no --json or --websocket".into(),
        ));
    }
    let connector = Connector::new(config.tls.as_ref(), false).map_err(LoadError::Config)?;
    let slots = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let shared = Arc::new((config.clone(), connector));
    let mut tasks = tokio::task::JoinSet::new();
    for &index in &missing {
        let slots = Arc::clone(&slots);
        let shared = Arc::clone(&shared);
        tasks.spawn(async move {
            let _permit = slots.acquire().await;
            let (config, connector) = &*shared;
            ask_token(index, config, connector).await
        });
    }
    let mut report = TokenReport {
        asked: missing.len(),
        ..TokenReport::default()
    };
    let mut first_error = None;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(Ok(Ok((user, token, busy))))) => {
                report.busy += busy;
                tokens.insert(user, token);
            }
            Ok(Some(Ok(Err(error)))) => {
                first_error.get_or_insert(error);
            }
            Ok(Some(Err(join))) => {
                first_error.get_or_insert(setup_error(0, join));
            }
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                first_error.get_or_insert(LoadError::SetupTimeout {
                    ready: tokens.len(),
                    clients: config.clients,
                });
                break;
            }
        }
    }
    let mut text = String::new();
    let mut users: Vec<_> = tokens.iter().collect();
    users.sort();
    for (user, token) in users {
        text.push_str(user);
        text.push(' ');
        text.push_str(token);
        text.push('\n');
    }
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| LoadError::Config(format!("{}: {e}", path.display())))?;
    report.tokens = tokens.len();
    report.secs = started.elapsed().as_secs_f64();
    match first_error {
        Some(error) => Err(error),
        None => Ok(report),
    }
}

/// Client `index` logs in with its password, asks `/token` and leaves: (user, token,
/// busy answers on the way).
async fn ask_token(
    index: usize,
    config: &LoadConfig,
    connector: &Connector,
) -> Result<(String, String, u64), LoadError> {
    let addr = config
        .addr_for(index)
        .ok_or_else(|| setup_error(index, "no server address"))?;
    let (reader, mut writer) = connector
        .connect_from(addr, config.source_for(index))
        .await
        .map_err(|e| setup_error(index, format!("connect: {e}")))?;
    let mut lines = Lines::new(reader);
    let user = format!("{}{index}", config.user_prefix);
    let io = |e: std::io::Error| setup_error(index, format!("i/o: {e}"));
    let login = format!("/login {user} {}\n", config.password);
    let first = match config.auth {
        Auth::Register => format!("/register {user} {}\n", config.password),
        Auth::Login | Auth::Token => login.clone(),
    };
    writer.write_all(first.as_bytes()).await.map_err(io)?;
    let welcomes = [format!("Welcome {user}!"), format!("Welcome back {user}!")];
    let mut busy = 0u64;
    let mut asked = false;
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(io)?
            .ok_or_else(|| setup_error(index, "the server closed the connection"))?;
        let text = String::from_utf8_lossy(&line);
        if !asked && welcomes.iter().any(|w| *w == text) {
            writer.write_all(b"/token\n").await.map_err(io)?;
            asked = true;
        } else if let Some(token) = parse_token(&text) {
            let _ = writer.write_all(b"/close\n").await;
            return Ok((user, token, busy));
        } else if text.starts_with("Error: that username is taken") {
            writer.write_all(login.as_bytes()).await.map_err(io)?;
        } else if (text.starts_with("Error: the server is busy")
            || text.starts_with("Error: storage is unavailable"))
            && busy < 100
        {
            busy += 1;
            tokio::time::sleep(storm_backoff(busy as u32, index)).await;
            writer.write_all(first.as_bytes()).await.map_err(io)?;
        } else if text.starts_with("Error: ") {
            return Err(setup_error(index, text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reaches_every_other_member() {
        let config = LoadConfig {
            clients: 100,
            senders: 10,
            messages: 1000,
            ..LoadConfig::default()
        };
        assert_eq!(expected_total(&config), 10 * 1000 * 99);
        assert_eq!(receivers(&config), 100);
        let idle = LoadConfig {
            senders: 0,
            ..config
        };
        assert_eq!(expected_total(&idle), 0);
        assert_eq!(receivers(&idle), 0);
    }

    #[test]
    fn clients_spread_round_robin_over_the_addresses() {
        let node = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let cluster = LoadConfig {
            addrs: vec![node(7001), node(7002), node(7003)],
            clients: 1000,
            senders: 10,
            ..LoadConfig::default()
        };
        let at: Vec<SocketAddr> = (0..cluster.clients)
            .filter_map(|i| cluster.addr_for(i))
            .collect();
        assert_eq!(at.len(), 1000);
        let count = |port| at.iter().filter(|&&a| a == node(port)).count();
        assert_eq!((count(7001), count(7002), count(7003)), (334, 333, 333));
        // The senders (the first ten) are on every node, and so are the receivers: every
        // message has recipients on the other nodes.
        let senders: Vec<u16> = at[..10].iter().map(SocketAddr::port).collect();
        assert_eq!(
            senders,
            [7001, 7002, 7003, 7001, 7002, 7003, 7001, 7002, 7003, 7001]
        );
        // The observer, the last client, is on the first node.
        assert_eq!(at[999], node(7001));

        // One address: every client on it, as before there were several.
        let single = LoadConfig::default();
        assert!((0..50).all(|i| single.addr_for(i) == Some(single.addrs[0])));
        let none = LoadConfig {
            addrs: Vec::new(),
            ..LoadConfig::default()
        };
        assert_eq!(none.addr_for(0), None);
        assert!(matches!(validate(&none), Err(LoadError::Config(_))));
    }

    #[test]
    fn cluster_figures_appear_in_the_result_line_only_when_measured() {
        let plain = Report {
            clients_per_addr: vec![10],
            sent: 100,
            ..Report::default()
        };
        let line = plain.to_line();
        assert!(!line.contains("addrs=") && !line.contains("bus_"), "{line}");
        let cluster = Report {
            clients_per_addr: vec![4, 3, 3],
            sent: 2000,
            bus_cpu_secs: Some(0.5),
            bus_syscalls: Some(crate::cpu::Syscalls {
                reads: 1000,
                writes: 3000,
            }),
            counters_measured: Some(Counters {
                bus: true,
                chat_messages: 2000,
                bus_published: 2010,
                bus_sent_bytes: 400_000,
                ..Counters::default()
            }),
            counters_end: Some(Counters {
                bus: true,
                ..Counters::default()
            }),
            ..Report::default()
        };
        let line = cluster.to_line();
        for field in [
            " addrs=3 clients_per_addr=4/3/3",
            " bus_cpu_s=0.50 bus_cpu_us_per_msg=250.0",
            " bus_reads_per_msg=0.500 bus_writes_per_msg=1.500",
            " chat_msgs=2000 ",
            " bus_pub=2010 ",
            " bus_pub_per_msg=1.0050 ",
            " bus_bytes_per_msg=200.0 ",
            " bus_dropped_total=0 bus_gaps_total=0 bus_refused_total=0",
        ] {
            assert!(line.contains(field), "{field:?} missing from {line}");
        }
    }

    #[test]
    fn sources_spread_round_robin_and_tokens_parse() {
        let sources = LoadConfig {
            source_ips: vec![IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])],
            ..LoadConfig::default()
        };
        assert_eq!(sources.source_for(0), Some(IpAddr::from([127, 0, 0, 2])));
        assert_eq!(sources.source_for(5), Some(IpAddr::from([127, 0, 0, 3])));
        assert_eq!(LoadConfig::default().source_for(5), None);
        let line = "Your resume token (shown once; keep it private, like your password): \
                    0123456789abcdef0123456789abcdef (log in with /resume u1 0123456789abcdef0123456789abcdef)";
        assert_eq!(
            parse_token(line).as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(parse_token("Your resume token (x): nothex (log in)"), None);
        let tokens = LoadConfig {
            tokens: Arc::new(HashMap::from([("u1".to_owned(), "ab".repeat(16))])),
            ..LoadConfig::default()
        };
        assert_eq!(
            tokens.auth_line(Auth::Token, "u1").as_deref(),
            Some(format!("/resume u1 {}\n", "ab".repeat(16)).as_str())
        );
        assert_eq!(tokens.auth_line(Auth::Token, "u2"), None);
        // Backoff: 100 ms doubling to 2 s, plus a spread under 100 ms.
        assert_eq!(storm_backoff(1, 0), Duration::from_millis(100));
        assert_eq!(storm_backoff(2, 0), Duration::from_millis(200));
        assert_eq!(storm_backoff(30, 0), Duration::from_millis(2000));
        assert!(storm_backoff(1, 7) < Duration::from_millis(200));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&sorted, 0.5), 500);
        assert_eq!(percentile(&sorted, 0.99), 990);
        assert_eq!(percentile(&sorted, 0.999), 999);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn irc_numerics_are_found_after_the_prefix() {
        assert_eq!(
            irc_numeric(b":irc.local 001 u1 :Welcome"),
            Some(&b"001"[..])
        );
        assert_eq!(irc_numeric(b"PING :x"), None);
    }
}
