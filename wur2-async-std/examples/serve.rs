//! The WUR2 chat server on async-std: the same flags and environment variables as `wur2`
//! (`--listen`, `--database-url`, `--files-dir`, the limits), served by `wur2-async-std`.
//!
//! ```text
//! cargo run -p wur2-async-std --example serve -- --listen 127.0.0.1:6969
//! cargo run -p wur2-async-std --example serve -- --self-test
//! ```
//!
//! `--self-test` serves a fresh SQLite database on a free port, connects two clients,
//! checks that a message goes from one to the other, shuts down gracefully and exits 0.
//! Otherwise it serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use async_std::io::{BufReader, prelude::BufReadExt};
use async_std::net::{TcpListener, TcpStream};
use async_std::prelude::*;
use clap::Parser;
use tracing::{info, warn};
use wur2_host::ServeArgs;
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
    #[command(flatten)]
    serve: ServeArgs,
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
        cli.serve.listen = "127.0.0.1:0".parse()?;
        Some(dir)
    } else {
        None
    };
    let (store, writer) = Store::open(&cli.database_url, StoreConfig::default()).await?;
    let writer = async_std::task::spawn(writer.run());
    let listener = TcpListener::bind(cli.serve.listen).await?;
    let server = wur2_async_std::serve_with(
        listener,
        store.clone(),
        cli.serve.engine_config(),
        cli.serve.options(),
    )?;
    info!("listening on {} (async-std)", server.local_addr());
    let outcome = if cli.self_test {
        self_test(server.local_addr()).await
    } else {
        shutdown_signal().await;
        info!("signal received; shutting down");
        Ok(())
    };
    // The server closes the store last, once every pending append is written.
    server.shutdown().await?;
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

/// Two clients register; one's message reaches the other.
async fn self_test(addr: SocketAddr) -> Result<(), Failure> {
    let step = async {
        let mut alice = Client::register(addr, "alice").await?;
        let mut bob = Client::register(addr, "bob").await?;
        bob.send("/ping ready").await?;
        bob.expect("PONG ready").await?;
        alice.send("hello from async-std").await?;
        bob.expect("alice: hello from async-std").await?;
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
