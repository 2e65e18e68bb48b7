//! `wur2-loadgen`: the load generator of the side-by-side benchmark (see
//! `wur2_bench::load`). Prints a human summary on stderr and one `RESULT key=value …` line
//! on stdout; exits non-zero when setup fails or any delivery is lost.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use wur2_bench::load::{self, Auth, LoadConfig, Protocol, Storm};
use wur2_bench::transport::TlsClient;

/// Connect N clients to one channel, have S of them send M messages of P bytes, count every
/// delivery to every other member: deliveries/s, latency percentiles, lost, server memory.
/// A flag given twice takes its last value (scripts append overrides).
#[derive(Parser, Debug)]
#[command(name = "wur2-loadgen", version, args_override_self = true)]
struct Cli {
    /// The server (loopback only: this is a load test); for a cluster, its nodes
    /// comma-separated (`127.0.0.1:7001,127.0.0.1:7002`): client i connects to the
    /// (i mod n)-th, so clients, senders and the observer spread round-robin.
    #[arg(long, default_value = "127.0.0.1:6969", value_delimiter = ',')]
    addr: Vec<SocketAddr>,
    /// Connect over TLS, trusting only the CA certificates in this PEM file (for example
    /// the server's self-signed certificate). Plain TCP when unset.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: the name the server's certificate must carry.
    #[arg(long, default_value = "localhost", requires = "tls_ca")]
    tls_server_name: String,
    /// WUR2: connect to the server's web listener (`wur2 --web-listen`) and speak over its
    /// WebSocket, one line per text frame; the server speaks JSON lines there.
    #[arg(long, conflicts_with = "tls_ca")]
    websocket: bool,
    /// WUR2: ask for JSON lines mode (`/mode json`) before logging in, as a program would
    /// (the same encoding as over --websocket, over plain TCP).
    #[arg(long)]
    json: bool,
    /// What the server speaks.
    #[arg(long, value_enum, default_value = "wur2")]
    protocol: Protocol,
    /// Clients, all in one channel.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Senders among them (0: idle clients, for memory).
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Messages per second per sender (open loop); unset sends windowed.
    #[arg(long)]
    rate: Option<f64>,
    /// Windowed sending: messages of one sender in flight at most.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Clients connecting and logging in at once.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// The channel (without `#`).
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Usernames are this plus the client's index.
    #[arg(long, default_value = "u")]
    user_prefix: String,
    /// Password of every WUR2 account.
    #[arg(long, default_value = "bench-password")]
    password: String,
    /// WUR2 accounts: register (fresh database) or log in (made by an earlier run).
    #[arg(long, value_enum, default_value = "register")]
    auth: Auth,
    /// Clients logged in before the "before" memory snapshot.
    #[arg(long, default_value_t = 8)]
    warmup: usize,
    /// Milliseconds to wait after setup before the memory snapshot.
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// The server's pid, for VmRSS/VmHWM snapshots and its CPU seconds in the measured
    /// part; for a cluster, its nodes' pids comma-separated (memory and CPU summed).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The cluster bus's pid (NATS), for its CPU seconds and read/write system calls in
    /// the measured part.
    #[arg(long)]
    bus_pid: Option<u32>,
    /// The servers' metrics endpoints (`wur2 --metrics-listen`), comma-separated (loopback
    /// only), read before and after the measured part: chat messages, deliveries and, in
    /// cluster mode, bus publications per chat message.
    #[arg(long, value_delimiter = ',')]
    metrics: Vec<SocketAddr>,
    /// Hard limit on the whole run, setup included, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// A file to create once every client is ready (for starting a profiler).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
    /// Worker threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Local addresses to connect from, comma-separated (loopback only), round-robin over
    /// the clients: each has its own ephemeral ports, so more connections fit than one
    /// address's port range.
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Shorthand for --source-ips 127.0.0.2,127.0.0.3,… (this many addresses).
    #[arg(long, conflicts_with = "source_ips")]
    source_ip_count: Option<u8>,
    /// The clients log in (and answer the barrier) but join no channel.
    #[arg(long)]
    no_join: bool,
    /// Resume tokens, `<user> <token>` lines: read for `--auth token` and the storm's
    /// `--storm-auth token`, written by --get-tokens.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Setup only: every client without a token in --token-file logs in with its
    /// password (registering with --auth register), asks `/token` and leaves; the tokens
    /// are added to the file. Prints `RESULT tokens=… asked=… busy=… setup_s=…`.
    #[arg(long, requires = "token_file")]
    get_tokens: bool,
    /// A reconnect storm: this many more clients log in all at once when the measured part
    /// starts (storm prefix + 0..N; no channel), busy answers retried after a backoff.
    #[arg(long, default_value_t = 0)]
    storm_clients: usize,
    /// How the storm's clients log in: login (password, argon2) or token (`/resume`).
    #[arg(long, value_enum, default_value = "token")]
    storm_auth: Auth,
    /// Usernames of the storm's clients: this plus their index.
    #[arg(long, default_value = "u")]
    storm_prefix: String,
    /// Busy answers and reconnects one storm client retries at most.
    #[arg(long, default_value_t = 50)]
    storm_max_retries: u32,
    /// Also print, on stderr, the worst latency of the messages sent in each 100 ms of the
    /// measured part (`TRACE t_s=… worst_us=…`): when the slow deliveries happened.
    #[arg(long)]
    latency_trace: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let latency_trace = cli.latency_trace;
    if let Some(addr) = cli
        .addr
        .iter()
        .chain(&cli.metrics)
        .find(|addr| !addr.ip().is_loopback())
    {
        eprintln!("wur2-loadgen: error: {addr} is not a loopback address");
        return ExitCode::FAILURE;
    }
    let mut source_ips = cli.source_ips;
    if let Some(count) = cli.source_ip_count {
        source_ips = (0..count)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2u8.saturating_add(i))))
            .collect();
    }
    if let Some(ip) = source_ips.iter().find(|ip| !ip.is_loopback()) {
        eprintln!("wur2-loadgen: error: source {ip} is not a loopback address");
        return ExitCode::FAILURE;
    }
    let needs_tokens = !cli.get_tokens
        && (cli.auth == Auth::Token || (cli.storm_clients > 0 && cli.storm_auth == Auth::Token));
    let tokens = match (&cli.token_file, needs_tokens) {
        (Some(path), true) => match load::read_tokens(path) {
            Ok(tokens) => tokens,
            Err(error) => {
                eprintln!("wur2-loadgen: error: {}: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        _ => Default::default(),
    };
    let config = LoadConfig {
        addrs: cli.addr,
        tls: cli.tls_ca.map(|ca| TlsClient {
            ca,
            server_name: cli.tls_server_name,
        }),
        websocket: cli.websocket,
        json: cli.json,
        protocol: cli.protocol,
        clients: cli.clients,
        senders: cli.senders,
        messages: cli.messages,
        payload: cli.payload,
        rate: cli.rate,
        window: cli.window,
        connect_concurrency: cli.connect_concurrency,
        channel: cli.channel,
        user_prefix: cli.user_prefix,
        password: cli.password,
        auth: cli.auth,
        warmup: cli.warmup,
        settle: Duration::from_millis(cli.settle_ms),
        server_pids: cli.server_pid,
        bus_pid: cli.bus_pid,
        metrics: cli.metrics,
        timeout: Duration::from_secs(cli.timeout_secs),
        ready_file: cli.ready_file,
        source_ips,
        join: !cli.no_join,
        tokens: Arc::new(tokens),
        storm: (cli.storm_clients > 0).then_some(Storm {
            clients: cli.storm_clients,
            auth: cli.storm_auth,
            user_prefix: cli.storm_prefix,
            max_retries: cli.storm_max_retries,
        }),
    };
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wur2-loadgen: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The deadline inside `run` bounds everything; this one is a backstop a little later.
    let backstop = Duration::from_secs(cli.timeout_secs + 10);
    if cli.get_tokens {
        let path = cli.token_file.unwrap_or_default();
        let outcome = runtime.block_on(async {
            tokio::time::timeout(backstop, load::get_tokens(&config, &path)).await
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        return match outcome {
            Ok(Ok(report)) => {
                eprintln!(
                    "wur2-loadgen: {} tokens in {} ({} asked for in {:.1} s, {} busy answers)",
                    report.tokens,
                    path.display(),
                    report.asked,
                    report.secs,
                    report.busy
                );
                println!(
                    "RESULT tokens={} asked={} busy={} setup_s={:.2}",
                    report.tokens, report.asked, report.busy, report.secs
                );
                ExitCode::SUCCESS
            }
            Ok(Err(error)) => {
                eprintln!("wur2-loadgen: error: {error}");
                ExitCode::FAILURE
            }
            Err(_) => {
                eprintln!("wur2-loadgen: error: the run did not stop by its deadline");
                ExitCode::FAILURE
            }
        };
    }
    let outcome =
        runtime.block_on(async { tokio::time::timeout(backstop, load::run(config)).await });
    // Connections still open are dropped with the runtime; do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match outcome {
        Ok(Ok(report)) => {
            eprintln!(
                "wur2-loadgen: {} clients ready in {:.1} s; {} of {} deliveries ({} lost, {} duplicate) in {:.3} s: {:.0}/s; latency p50 {} µs, p99 {} µs, p99.9 {} µs{}",
                report.clients,
                report.setup_secs,
                report.received,
                report.expected,
                report.lost,
                report.duplicates,
                report.measure_secs,
                report.deliveries_per_sec,
                report.p50_us,
                report.p99_us,
                report.p999_us,
                if report.timed_out { " (TIMED OUT)" } else { "" },
            );
            if let Some(storm) = &report.storm {
                eprintln!(
                    "wur2-loadgen: storm: {} of {} welcomed in {:.2} s (median {:.2} s), {} failed{}, {} busy answers ({} clients), {} unavailable, {} reconnects; p99 during it {} µs over {} deliveries",
                    storm.welcomed,
                    storm.clients,
                    storm.last_welcome_secs,
                    storm.median_welcome_secs,
                    storm.failed,
                    storm
                        .first_error
                        .as_ref()
                        .map_or(String::new(), |e| format!(" (first: {e})")),
                    storm.busy,
                    storm.busy_clients,
                    storm.unavailable,
                    storm.reconnects,
                    storm.p99_during_us,
                    storm.deliveries_during,
                );
            }
            if latency_trace {
                for (tenth, worst) in report.worst_us_by_tenth.iter().enumerate() {
                    eprintln!("TRACE t_s={:.1} worst_us={worst}", tenth as f64 / 10.0);
                }
            }
            println!("{}", report.to_line());
            let storm_failed = report.storm.as_ref().is_some_and(|s| s.failed > 0);
            if report.lost > 0 || report.duplicates > 0 || report.timed_out || storm_failed {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(Err(error)) => {
            eprintln!("wur2-loadgen: error: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("wur2-loadgen: error: the run did not stop by its deadline");
            ExitCode::FAILURE
        }
    }
}
