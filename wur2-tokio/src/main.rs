//! `wur2`: the WUR2 chat server, and its operator commands.
//!
//! `wur2` serves chat over TCP (`nc host 6969`); `wur2 role <user> <role>`, `wur2 ban`,
//! `wur2 unban` and `wur2 users` work on the same database. Every flag is also an environment variable, read from a
//! `.env` file too. Errors are one line on stderr and a non-zero exit.

mod cluster;
mod listener;
mod operator;
mod serve_args;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing::{info, warn};
use wur2_engine::Role;
use wur2_store::{AppendWriter, Store, StoreConfig};

use crate::serve_args::ServeArgs;

/// Log lines that may wait for stderr (a few MiB at most); more are dropped rather than
/// stall the server.
const LOG_LINES_WAITING: usize = 16_384;

/// WUR2 chat server: accounts, channels, private messages and history over plain TCP.
///
/// Connect with `nc <host> 6969` or `telnet`. Run `wur2 role <user> admin` once to make the
/// first admin.
#[derive(Parser, Debug)]
#[command(name = "wur2", version)]
struct Cli {
    /// Where accounts and history live: `sqlite://path/to/file.db` or
    /// `postgres://user:password@host/database`. Default: the SQLite file `wur2.db` in the
    /// working directory (created if missing).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,

    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeArgs,

    #[command(flatten)]
    operator: operator::OperatorArgs,

    #[command(flatten)]
    cluster: cluster::ClusterArgs,

    /// Threads running chat I/O: 0 means one per core; 1 runs everything on one thread
    /// (the least memory per connection, and no cross-thread hand-offs when the server is
    /// pinned to one core).
    #[arg(long, env = "WUR2_WORKER_THREADS", default_value_t = 0)]
    worker_threads: usize,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Set a user's role (this is how the first admin is made). A running server on the
    /// same database applies it to the user's live sessions within about a second.
    Role {
        /// The username (matched without regard to case).
        user: String,
        /// The new role: user, mod or admin.
        role: Role,
    },
    /// List every account with its role.
    Users,
    /// Delete an account and every message it sent or received (a user leaving for good).
    /// A running server on the same database closes their sessions within about a second.
    PurgeUser {
        /// The username (matched without regard to case).
        user: String,
    },
    /// Ban a user: they cannot log in until the ban ends or is lifted, whatever their
    /// role. A running server on the same database closes their sessions within about a
    /// second.
    Ban {
        /// The username (matched without regard to case).
        user: String,
        /// An optional duration first (30s, 10m, 2h, 7d, 2w, at most 3650d; `forever` or
        /// none: until lifted), then the reason.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    /// Lift a user's ban.
    Unban {
        /// The username (matched without regard to case).
        user: String,
    },
    /// Chat from this terminal: a full-screen client of a WUR2 server.
    Chat(wur2_client::ChatArgs),
}

fn main() -> ExitCode {
    // A missing `.env` is normal; a broken one is worth saying.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("wur2: error: .env: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    // Log lines go to stderr from a thread of their own: a write there can block (a pipe
    // nobody reads, a log file behind a disk busy syncing the database), and on the
    // runtime's threads it would stop every connection with it. Beyond
    // `LOG_LINES_WAITING` unwritten lines, new ones are dropped. The guard writes what is
    // left when dropped.
    let (log_writer, log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_WAITING)
        .lossy(true)
        .thread_name("wur2-log")
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut builder = match cli.worker_threads {
        0 => tokio::runtime::Builder::new_multi_thread(),
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("wur2: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A blocking job still running (a server-side file read on a stuck disk) must not keep
    // the process alive after the server has stopped.
    runtime.shutdown_timeout(Duration::from_secs(2));
    // The log's last lines before the error line, in order.
    drop(log_guard);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wur2: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (url, location) = database_url(cli.database_url.as_deref())?;
    match cli.command {
        None => serve(cli.serve, cli.operator, cli.cluster, &url, &location).await,
        Some(Command::Chat(args)) => wur2_client::run(args).await,
        Some(Command::Role { user, role }) => {
            let (store, _writer) = open_store(&url, &location, StoreConfig::default()).await?;
            let result = store.set_role(&user, role).await;
            store.close().await;
            let account = result.with_context(|| format!("cannot set the role of {user}"))?;
            println!(
                "{} is now {} (a running server applies it to their sessions within about a second)",
                account.username, account.role
            );
            Ok(())
        }
        Some(Command::PurgeUser { user }) => {
            let (store, _writer) = open_store(&url, &location, StoreConfig::default()).await?;
            let result = store.purge_user(&user).await;
            store.close().await;
            let purged = result.with_context(|| format!("cannot purge {user}"))?;
            println!(
                "{} purged: the account and its {} message(s) are deleted (a running server \
                 closes their sessions within about a second)",
                purged.username, purged.messages
            );
            Ok(())
        }
        Some(Command::Ban { user, rest }) => {
            // The chat command's own parser: the same durations and rules as `/ban`.
            let line = format!("/ban {user} {}", rest.join(" "));
            let Ok(wur2_engine::Command::Sanction {
                duration, reason, ..
            }) = wur2_engine::parse_command(&line)
            else {
                bail!(
                    "usage: wur2 ban <user> [30s|10m|2h|7d|2w|forever] [reason] \
                     (durations up to 3650d)"
                );
            };
            let reason = reason.unwrap_or_else(|| "no reason given".to_owned());
            let (store, _writer) = open_store(&url, &location, StoreConfig::default()).await?;
            let result = store.ban(&user, duration, &reason).await;
            store.close().await;
            let ban = result.with_context(|| format!("cannot ban {user}"))?;
            let until = match ban.expires {
                Some(expiry) => {
                    let at = std::time::UNIX_EPOCH
                        + Duration::from_millis(u64::try_from(expiry.at_unix_ms).unwrap_or(0));
                    format!("until {}", humantime::format_rfc3339_seconds(at))
                }
                None => "until lifted".to_owned(),
            };
            println!(
                "{} is banned {until}: {} (a running server closes their sessions within \
                 about a second)",
                ban.username, ban.reason
            );
            Ok(())
        }
        Some(Command::Unban { user }) => {
            let (store, _writer) = open_store(&url, &location, StoreConfig::default()).await?;
            let result = store.unban(&user).await;
            store.close().await;
            let username = result.with_context(|| format!("cannot unban {user}"))?;
            println!("{username} is no longer banned");
            Ok(())
        }
        Some(Command::Users) => {
            let (store, _writer) = open_store(&url, &location, StoreConfig::default()).await?;
            let result = store.list_users().await;
            store.close().await;
            for account in result.context("cannot list users")? {
                println!("{}\t{}", account.username, account.role);
            }
            Ok(())
        }
    }
}

/// The database URL to use, and a description of where the data lives that never shows
/// a password.
fn database_url(given: Option<&str>) -> anyhow::Result<(String, String)> {
    match given.map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => Ok((url.to_string(), redact(url))),
        None => {
            let cwd = std::env::current_dir().context("cannot read the working directory")?;
            let file = cwd.join("wur2.db");
            Ok((
                format!("sqlite://{}", file.display()),
                format!("SQLite file {}", file.display()),
            ))
        }
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

async fn open_store(
    url: &str,
    location: &str,
    config: StoreConfig,
) -> anyhow::Result<(Store, AppendWriter)> {
    Store::open(url, config)
        .await
        .with_context(|| format!("cannot open the database ({location})"))
}

async fn serve(
    args: ServeArgs,
    operator: operator::OperatorArgs,
    cluster: cluster::ClusterArgs,
    url: &str,
    location: &str,
) -> anyhow::Result<()> {
    if let Some(dir) = &args.files_dir {
        check_files_dir(dir)?;
    }
    let started = std::time::Instant::now();
    let mut config = args.engine_config();
    let cluster = cluster.cluster(url, location)?;
    // The bus first: a node that cannot meet its cluster says so before touching the store.
    let nats = match &cluster {
        Some(cluster) => {
            config.cluster = Some(cluster.config());
            Some(cluster.connect().await?)
        }
        None => None,
    };
    let (store, writer) = open_store(url, location, args.store_config()).await?;
    let writer = tokio::spawn(writer.run());
    info!("data lives in {location}");
    let listener = match listener::chat_listener(args.listen) {
        Ok(listener) => listener,
        Err(error) => {
            store.close().await;
            bail!("cannot listen on {}: {error}", args.listen);
        }
    };
    let prepared = match operator.prepare().await {
        Ok(prepared) => prepared,
        Err(error) => {
            store.close().await;
            return Err(error);
        }
    };
    match &args.files_dir {
        Some(dir) => info!("server-side files are sent from {}", dir.display()),
        None => info!("server-side files are off (no --files-dir)"),
    }
    let metrics = wur2_tokio::metrics::Metrics::new();
    let metered = metrics.meter(store.clone());
    let (mut server, bus) = match nats {
        Some(nats) => {
            let (link, port) = wur2_tokio::bus();
            let server =
                wur2_tokio::serve_with_bus(listener, metered, config, args.options(), link)?;
            (server, Some(nats.carry(port).await))
        }
        None => (
            wur2_tokio::serve_with(listener, metered, config, args.options())?,
            None,
        ),
    };
    let running = prepared.start(&mut server, metrics, &store)?;
    info!(
        "listening on {} (ready in {} ms)",
        server.local_addr(),
        started.elapsed().as_millis()
    );
    shutdown_signal().await;
    info!("signal received; shutting down");
    // The server closes the store last, once every pending append is written.
    server.shutdown().await?;
    if let Some(bus) = bus {
        bus.stop().await;
    }
    running.stop();
    drop(store);
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        warn!("the store's writer did not stop in time");
    }
    Ok(())
}

/// Checks that `--files-dir` names a directory this process can read.
fn check_files_dir(dir: &Path) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(dir)
        .with_context(|| format!("--files-dir {}: cannot read it", dir.display()))?;
    if !metadata.is_dir() {
        bail!("--files-dir {}: not a directory", dir.display());
    }
    std::fs::read_dir(dir)
        .with_context(|| format!("--files-dir {}: cannot list it", dir.display()))?;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(error) = result {
                warn!(%error, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact("postgres://wur2:secret@db/wur2"),
            "postgres://wur2:***@db/wur2"
        );
        assert_eq!(redact("sqlite://wur2.db"), "sqlite://wur2.db");
    }

    #[test]
    fn role_subcommand_parses_role_names() {
        let cli = Cli::try_parse_from(["wur2", "role", "alice", "mod"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Role {
                role: Role::Mod,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["wur2", "role", "alice", "king"]).is_err());
    }

    #[test]
    fn ban_subcommand_takes_a_duration_and_a_reason_of_several_words() {
        let cli = Cli::try_parse_from(["wur2", "ban", "bob", "7d", "spam", "-", "again"])
            .expect("parses");
        let Some(Command::Ban { user, rest }) = cli.command else {
            panic!("not a ban");
        };
        assert_eq!(
            (user.as_str(), rest.join(" ").as_str()),
            ("bob", "7d spam - again")
        );
        assert!(Cli::try_parse_from(["wur2", "ban"]).is_err());
    }
}
