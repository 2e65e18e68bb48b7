//! The server's settings: [`ServeArgs`], the flags and environment variables of every WUR2
//! server, which make the engine's [`Config`]; and [`Options`], the driver settings that
//! are not chat rules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use wur2_engine::Config;

use crate::PrepareError;
use crate::clock::{message_id_origin, wall_clock_now};

/// Settings of the server itself; defaults are the engine's defaults. Flatten it into a
/// binary's `clap` parser.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "WUR2_LISTEN", default_value = "0.0.0.0:6969")]
    pub listen: SocketAddr,
    /// The only directory server-side files may be sent from; unset turns them off.
    #[arg(long, env = "WUR2_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// Demo mode of the original server: a bare `/role` toggles the caller between user and mod.
    #[arg(long, env = "WUR2_DEMO_ROLES")]
    pub demo_roles: bool,
    /// Connections at once, in total.
    #[arg(long, env = "WUR2_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Connections at once from one IP address.
    #[arg(long, env = "WUR2_MAX_CONNECTIONS_PER_IP", default_value_t = 100)]
    pub max_connections_per_ip: usize,
    /// Lines per second a connection may send on average; 0 turns flood control off
    /// (trusted bots, benchmarks).
    #[arg(long, env = "WUR2_FLOOD_LINES_PER_SECOND", default_value_t = 10)]
    pub flood_lines_per_second: u32,
    /// Lines a connection may send at once before flood control makes it wait.
    #[arg(long, env = "WUR2_FLOOD_BURST", default_value_t = 20)]
    pub flood_burst: u32,
    /// Longest line a client may send, in bytes.
    #[arg(long, env = "WUR2_MAX_LINE_BYTES", default_value_t = 4096)]
    pub max_line_bytes: usize,
    /// Longest chat or private message, in bytes.
    #[arg(long, env = "WUR2_MAX_MESSAGE_BYTES", default_value_t = 2048)]
    pub max_message_bytes: usize,
    /// Bytes queued for a client that does not read before it is dropped.
    #[arg(long, env = "WUR2_MAX_QUEUED_BYTES", default_value_t = 1024 * 1024)]
    pub max_queued_bytes: usize,
    /// Seconds a new connection has to log in.
    #[arg(long, env = "WUR2_LOGIN_TIMEOUT_SECS", default_value_t = 60)]
    pub login_timeout_secs: u64,
    /// Messages of a channel's history replayed on `/join`.
    #[arg(long, env = "WUR2_HISTORY_REPLAY", default_value_t = 20)]
    pub history_replay: usize,
    /// Largest file a user may send, in bytes.
    #[arg(long, env = "WUR2_MAX_FILE_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Seconds a graceful shutdown (SIGINT, SIGTERM) may take at most.
    #[arg(long, env = "WUR2_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
}

impl ServeArgs {
    /// The engine configuration these settings ask for, with a fresh message-id origin.
    pub fn engine_config(&self) -> Config {
        Config {
            max_line_bytes: self.max_line_bytes,
            max_message_bytes: self.max_message_bytes,
            max_queued_bytes: self.max_queued_bytes,
            flood_lines_per_second: self.flood_lines_per_second,
            flood_burst: self.flood_burst,
            login_timeout: Duration::from_secs(self.login_timeout_secs),
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_ip,
            history_replay: self.history_replay,
            demo_roles: self.demo_roles,
            max_file_bytes: self.max_file_bytes,
            server_files: self.files_dir.is_some(),
            message_id_origin: message_id_origin(),
            ..Config::default()
        }
    }

    /// The driver options these settings ask for.
    pub fn options(&self) -> Options {
        Options {
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            files_dir: self.files_dir.clone(),
            ..Options::default()
        }
    }
}

/// Driver settings that are not chat rules (those are in [`Config`]).
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a graceful shutdown may take in total: telling every client, writing what
    /// is queued, waiting for store requests in flight and flushing the store's appends.
    pub shutdown_timeout: Duration,
    /// How long a connection closed with "flush" may take to write what is queued to it;
    /// a client that does not read is cut off after that.
    pub close_flush_timeout: Duration,
    /// Pause after a failed `accept` (for example out of file descriptors), so the loop
    /// does not spin.
    pub accept_backoff: Duration,
    /// The only directory `/send <user> <path>` may read from; `None` turns server-side
    /// files off. [`prepare`] sets [`Config::server_files`] to match.
    pub files_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            shutdown_timeout: Duration::from_secs(10),
            close_flush_timeout: Duration::from_secs(5),
            accept_backoff: Duration::from_millis(100),
            files_dir: None,
        }
    }
}

/// Makes `config` and `options` ready to serve with: the files directory canonical (symlinks
/// inside it are judged against its real path), [`Config::server_files`] set to match it,
/// and [`Config::wall_clock`] read from the system clock when `None`.
pub fn prepare(config: &mut Config, options: &mut Options) -> Result<(), PrepareError> {
    if let Some(dir) = options.files_dir.take() {
        let canonical = dir
            .canonicalize()
            .map_err(|source| PrepareError::FilesDir { path: dir, source })?;
        options.files_dir = Some(canonical);
    }
    config.server_files = options.files_dir.is_some();
    if config.wall_clock.is_none() {
        config.wall_clock = Some(wall_clock_now());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn flag_defaults_are_the_engine_defaults() {
        let cli = Cli::try_parse_from(["wur2"]).expect("no flags parse");
        let ours = cli.serve.engine_config();
        let engine = Config::default();
        assert_eq!(ours.max_connections, engine.max_connections);
        assert_eq!(
            ours.max_connections_per_address,
            engine.max_connections_per_address
        );
        assert_eq!(ours.flood_lines_per_second, engine.flood_lines_per_second);
        assert_eq!(ours.flood_burst, engine.flood_burst);
        assert_eq!(ours.max_line_bytes, engine.max_line_bytes);
        assert_eq!(ours.max_message_bytes, engine.max_message_bytes);
        assert_eq!(ours.max_queued_bytes, engine.max_queued_bytes);
        assert_eq!(ours.login_timeout, engine.login_timeout);
        assert_eq!(ours.history_replay, engine.history_replay);
        assert_eq!(ours.demo_roles, engine.demo_roles);
        assert_eq!(ours.max_file_bytes, engine.max_file_bytes);
    }

    #[test]
    fn a_missing_files_directory_is_refused() {
        let mut config = Config::default();
        let mut options = Options {
            files_dir: Some(PathBuf::from("/no/such/wur2/dir")),
            ..Options::default()
        };
        assert!(prepare(&mut config, &mut options).is_err());
        let mut options = Options::default();
        prepare(&mut config, &mut options).expect("no files directory is fine");
        assert!(!config.server_files);
        assert!(config.wall_clock.is_some());
    }
}
