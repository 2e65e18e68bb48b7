//! The WUR2 chat server on async-std, with the engine's default limits (but for the
//! connection caps and flood control, which benchmarks lift), optional TLS and optional
//! metrics, served by `wur2-async-std`.
//!
//! ```text
//! cargo run -p wur2-async-std --example serve -- --listen 127.0.0.1:6969
//! cargo run -p wur2-async-std --example serve -- --self-test
//! ```
//!
//! `--self-test` serves a fresh SQLite database on a free port with metrics, connects two
//! clients, checks that a message goes from one to the other and that `/healthz` answers
//! `ok`, shuts down gracefully and exits 0. Otherwise it serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use async_std::io::{BufReader, prelude::BufReadExt};
use async_std::net::{TcpListener, TcpStream};
use async_std::prelude::*;
use clap::Parser;
use tracing::{info, warn};
use wur2_async_std::metrics::{self, Metrics};
use wur2_async_std::{Options, TlsAcceptor, WEBSOCKET_PATH, WebOptions};
use wur2_engine::Config;
use wur2_store::{Store, StoreConfig};

/// The WUR2 chat server, on async-std.
#[derive(Parser, Debug)]
#[command(name = "serve")]
struct Cli {
    /// Where accounts and history live: `sqlite://file.db` or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://wur2.db")]
    database_url: String,
    /// Serve a fresh database on a free port, exchange one message, stop, exit.
    #[arg(long)]
    self_test: bool,
    /// Address and port to listen on.
    #[arg(long, env = "WUR2_LISTEN", default_value = "127.0.0.1:6969")]
    listen: SocketAddr,
    /// The only directory server-side files may be sent from; unset turns them off.
    #[arg(long, env = "WUR2_FILES_DIR")]
    files_dir: Option<PathBuf>,
    /// Also serve chat over TLS on this address; needs --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain, PEM, leaf first.
    #[arg(long, requires = "tls_listen")]
    tls_cert: Option<PathBuf>,
    /// The TLS private key, PEM.
    #[arg(long, requires = "tls_listen")]
    tls_key: Option<PathBuf>,
    /// Also serve the web client and its WebSocket (/ws) on this address; with
    /// --tls-listen, over HTTPS and wss:// with the same certificate.
    #[arg(long)]
    web_listen: Option<SocketAddr>,
    /// Serve Prometheus metrics and /healthz over HTTP on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Connections at once, in total.
    #[arg(long, default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Connections at once from one IP address.
    #[arg(long, default_value_t = Config::default().max_connections_per_address)]
    max_connections_per_ip: usize,
    /// Lines per second a connection may send on average; 0 turns flood control off.
    #[arg(long, default_value_t = Config::default().flood_lines_per_second)]
    flood_lines_per_second: u32,
    /// Accounts one IP address may register per 10 minutes; 0 is no limit.
    #[arg(
        long,
        env = "WUR2_MAX_REGISTRATIONS_PER_IP",
        default_value_t = Config::default().max_registrations_per_address
    )]
    max_registrations_per_ip: u32,
    /// Accounts all addresses together may register per minute; 0 is no limit.
    #[arg(
        long,
        env = "WUR2_MAX_REGISTRATIONS_PER_MINUTE",
        default_value_t = Config::default().max_registrations_per_minute
    )]
    max_registrations_per_minute: u32,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match async_std::task::block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("serve: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> Result<(), Failure> {
    let scratch = if cli.self_test {
        let dir = std::env::temp_dir().join(format!("wur2-async-std-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        cli.database_url = format!("sqlite://{}", dir.join("self-test.db").display());
        cli.listen = "127.0.0.1:0".parse()?;
        cli.metrics_listen = Some("127.0.0.1:0".parse()?);
        Some(dir)
    } else {
        None
    };
    let (store, writer) = Store::open(&cli.database_url, StoreConfig::default()).await?;
    let writer = async_std::task::spawn(writer.run());
    let listener = TcpListener::bind(cli.listen).await?;
    let options = Options {
        files_dir: cli.files_dir.clone(),
        ..Options::default()
    };
    let meter = Metrics::new();
    let mut server = wur2_async_std::serve_with(
        listener,
        meter.meter(store.clone()),
        Config {
            max_connections: cli.max_connections,
            max_connections_per_address: cli.max_connections_per_ip,
            flood_lines_per_second: cli.flood_lines_per_second,
            max_registrations_per_address: cli.max_registrations_per_ip,
            max_registrations_per_minute: cli.max_registrations_per_minute,
            ..Config::default()
        },
        options,
    )?;
    info!("listening on {} (async-std)", server.local_addr());
    let mut tls = None;
    if let (Some(addr), Some(cert), Some(key)) = (cli.tls_listen, &cli.tls_cert, &cli.tls_key) {
        let acceptor = TlsAcceptor::from_pem_files(cert, key)?;
        let addr = server.serve_tls(TcpListener::bind(addr).await?, acceptor.clone())?;
        info!("listening for TLS on {addr}");
        tls = Some(acceptor);
    }
    if let Some(addr) = cli.web_listen {
        let options = WebOptions {
            allowed_origins: Vec::new(),
            tls,
        };
        let addr = server.serve_web(TcpListener::bind(addr).await?, options)?;
        info!("web client on {addr} (WebSocket on {WEBSOCKET_PATH})");
    }
    let exporter = match cli.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await?;
            let exporter = metrics::serve::<wur2_async_std::AsyncStd, _>(
                listener,
                meter,
                server.status(),
                store.clone(),
            )?;
            info!("metrics on http://{}/metrics", exporter.local_addr());
            Some(exporter)
        }
        None => None,
    };
    let outcome = if cli.self_test {
        let metrics_addr = exporter.as_ref().map(|exporter| exporter.local_addr());
        self_test(server.local_addr(), metrics_addr).await
    } else {
        shutdown_signal().await;
        info!("signal received; shutting down");
        Ok(())
    };
    // The server closes the store last, once every pending append is written.
    server.shutdown().await?;
    if let Some(exporter) = exporter {
        exporter.stop();
    }
    drop(store);
    if async_std::future::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        warn!("the store's writer did not stop in time");
    }
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    outcome?;
    if cli.self_test {
        println!("self-test passed: two clients chatted over async-std");
    }
    Ok(())
}

/// Two clients register; one's message reaches the other; `/healthz` says ok.
async fn self_test(addr: SocketAddr, metrics: Option<SocketAddr>) -> Result<(), Failure> {
    let step = async {
        let mut alice = Client::register(addr, "alice").await?;
        let mut bob = Client::register(addr, "bob").await?;
        bob.send("/ping ready").await?;
        bob.expect("PONG ready").await?;
        alice.send("hello from async-std").await?;
        bob.expect("alice: hello from async-std").await?;
        if let Some(metrics) = metrics {
            let mut http = TcpStream::connect(metrics).await?;
            http.write_all(b"GET /healthz HTTP/1.1\r\nHost: wur2\r\n\r\n")
                .await?;
            let mut answer = String::new();
            http.read_to_string(&mut answer).await?;
            if !answer.starts_with("HTTP/1.1 200") || !answer.ends_with("ok\n") {
                return Err(format!("/healthz answered {answer:?}").into());
            }
        }
        Ok::<(), Failure>(())
    };
    async_std::future::timeout(Duration::from_secs(30), step)
        .await
        .map_err(|_| "the self-test timed out")?
}

/// A line-by-line chat client for the self-test.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    async fn register(addr: SocketAddr, name: &str) -> Result<Client, Failure> {
        let stream = TcpStream::connect(addr).await?;
        let mut client = Client {
            reader: BufReader::new(stream.clone()),
            writer: stream,
        };
        client
            .send(&format!("/register {name} self-test-password"))
            .await?;
        client.expect(&format!("Welcome {name}!")).await?;
        Ok(client)
    }

    async fn send(&mut self, line: &str) -> Result<(), Failure> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await?;
        Ok(())
    }

    async fn expect(&mut self, needle: &str) -> Result<(), Failure> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(format!("closed before {needle:?}").into());
            }
            if line.contains(needle) {
                return Ok(());
            }
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. async-std has no signal support of its own; a
/// thread waits on `signal-hook` and wakes the server's task.
async fn shutdown_signal() {
    let (tx, rx) = futures::channel::oneshot::channel();
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]);
    match signals {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    let _ = tx.send(());
                }
            });
            let _ = rx.await;
        }
        Err(error) => {
            warn!(%error, "cannot listen for signals; stop the process to stop the server");
            std::future::pending::<()>().await;
        }
    }
}
