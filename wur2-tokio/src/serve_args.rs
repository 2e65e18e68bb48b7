//! The `wur2` binary's chat settings: every flag (and environment variable) that makes the
//! engine's [`Config`], the driver's [`Options`] or the store's [`StoreConfig`]. Each
//! default is read from `Config::default()`, `Options::default()` or
//! `StoreConfig::default()`, so the flags can never drift from the library's defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use wur2_engine::Config;
use wur2_host::{Options, message_id_origin};
use wur2_store::StoreConfig;

/// Settings of the chat server itself.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ServeArgs {
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
    #[arg(long, env = "WUR2_MAX_CONNECTIONS", default_value_t = Config::default().max_connections)]
    pub max_connections: usize,
    /// Connections at once from one IP address.
    #[arg(
        long,
        env = "WUR2_MAX_CONNECTIONS_PER_IP",
        default_value_t = Config::default().max_connections_per_address
    )]
    pub max_connections_per_ip: usize,
    /// Lines per second a connection may send on average; 0 turns flood control off
    /// (trusted bots, benchmarks).
    #[arg(
        long,
        env = "WUR2_FLOOD_LINES_PER_SECOND",
        default_value_t = Config::default().flood_lines_per_second
    )]
    pub flood_lines_per_second: u32,
    /// Lines a connection may send at once before flood control makes it wait.
    #[arg(long, env = "WUR2_FLOOD_BURST", default_value_t = Config::default().flood_burst)]
    pub flood_burst: u32,
    /// Longest line a client may send, in bytes.
    #[arg(long, env = "WUR2_MAX_LINE_BYTES", default_value_t = Config::default().max_line_bytes)]
    pub max_line_bytes: usize,
    /// Longest chat or private message, in bytes.
    #[arg(
        long,
        env = "WUR2_MAX_MESSAGE_BYTES",
        default_value_t = Config::default().max_message_bytes
    )]
    pub max_message_bytes: usize,
    /// Bytes queued for a client that does not read before it is dropped.
    #[arg(
        long,
        env = "WUR2_MAX_QUEUED_BYTES",
        default_value_t = Config::default().max_queued_bytes
    )]
    pub max_queued_bytes: usize,
    /// Seconds a new connection has to log in.
    #[arg(
        long,
        env = "WUR2_LOGIN_TIMEOUT_SECS",
        default_value_t = Config::default().login_timeout.as_secs()
    )]
    pub login_timeout_secs: u64,
    /// Accounts one IP address (an IPv6 /64) may register per `--registration-window-secs`;
    /// 0 is no limit.
    #[arg(
        long,
        env = "WUR2_MAX_REGISTRATIONS_PER_IP",
        default_value_t = Config::default().max_registrations_per_address
    )]
    pub max_registrations_per_ip: u32,
    /// The window of `--max-registrations-per-ip`, in seconds.
    #[arg(
        long,
        env = "WUR2_REGISTRATION_WINDOW_SECS",
        default_value_t = Config::default().registration_window.as_secs()
    )]
    pub registration_window_secs: u64,
    /// Accounts all addresses together may register per minute; 0 is no limit.
    #[arg(
        long,
        env = "WUR2_MAX_REGISTRATIONS_PER_MINUTE",
        default_value_t = Config::default().max_registrations_per_minute
    )]
    pub max_registrations_per_minute: u32,
    /// Messages of a channel's history replayed on `/join`.
    #[arg(long, env = "WUR2_HISTORY_REPLAY", default_value_t = Config::default().history_replay)]
    pub history_replay: usize,
    /// Join and leave notices are sent only in channels of at most this many members (on
    /// every node together); larger channels are quiet about who comes and goes.
    #[arg(
        long,
        env = "WUR2_JOIN_NOTICES_MAX_MEMBERS",
        default_value_t = Config::default().join_notices_max_members
    )]
    pub join_notices_max_members: usize,
    /// Most channels one user (not a mod or admin) may own; beyond it a new channel works
    /// but is not kept when empty.
    #[arg(
        long,
        env = "WUR2_MAX_CHANNELS_PER_OWNER",
        default_value_t = Config::default().max_channels_per_owner
    )]
    pub max_channels_per_owner: usize,
    /// Largest file a user may send, in bytes; an upload announcing more closes its
    /// connection.
    #[arg(long, env = "WUR2_MAX_FILE_BYTES", default_value_t = Config::default().max_file_bytes)]
    pub max_file_bytes: u64,
    /// TLS handshakes in progress at once from one IP address; more are closed at accept.
    #[arg(
        long,
        env = "WUR2_MAX_TLS_HANDSHAKES_PER_IP",
        default_value_t = Options::default().max_handshakes_per_address
    )]
    pub max_tls_handshakes_per_ip: usize,
    /// Seconds a file transfer may move no bytes before it is cancelled; 0 turns the
    /// timeout off.
    #[arg(
        long,
        env = "WUR2_TRANSFER_IDLE_TIMEOUT_SECS",
        default_value_t = Config::default().transfer_idle_timeout.as_secs()
    )]
    pub transfer_idle_timeout_secs: u64,
    /// Usernames no one may register (any letter case), comma-separated: names that would
    /// pass for the server or its staff. Accounts that already have one keep working.
    /// An empty value (`--reserved-names ''`) reserves none.
    #[arg(
        long,
        env = "WUR2_RESERVED_NAMES",
        value_delimiter = ',',
        default_values_t = Config::default().reserved_usernames
    )]
    pub reserved_names: Vec<String>,
    /// Seconds a graceful shutdown (SIGINT, SIGTERM) may take at most.
    #[arg(
        long,
        env = "WUR2_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = Options::default().shutdown_timeout.as_secs()
    )]
    pub shutdown_timeout_secs: u64,
    /// Nice steps the password hashing threads run below the rest of the server (Linux,
    /// 0 – 19): during a login storm connected users' messages go first. 0 when other busy
    /// processes share the server's scheduling group and logins wait too long behind them.
    #[arg(
        long,
        env = "WUR2_HASH_NICE",
        default_value_t = StoreConfig::default().hash_nice,
        value_parser = clap::value_parser!(u8).range(0..=19)
    )]
    pub hash_nice: u8,
}

impl ServeArgs {
    /// The engine configuration these settings ask for, with a fresh message-id origin.
    pub(crate) fn engine_config(&self) -> Config {
        Config {
            max_line_bytes: self.max_line_bytes,
            max_message_bytes: self.max_message_bytes,
            max_queued_bytes: self.max_queued_bytes,
            flood_lines_per_second: self.flood_lines_per_second,
            flood_burst: self.flood_burst,
            login_timeout: Duration::from_secs(self.login_timeout_secs),
            max_registrations_per_address: self.max_registrations_per_ip,
            registration_window: Duration::from_secs(self.registration_window_secs),
            max_registrations_per_minute: self.max_registrations_per_minute,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_ip,
            history_replay: self.history_replay,
            join_notices_max_members: self.join_notices_max_members,
            max_channels_per_owner: self.max_channels_per_owner,
            demo_roles: self.demo_roles,
            max_file_bytes: self.max_file_bytes,
            transfer_idle_timeout: Duration::from_secs(self.transfer_idle_timeout_secs),
            reserved_usernames: self
                .reserved_names
                .iter()
                .map(|name| name.trim())
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
            server_files: self.files_dir.is_some(),
            message_id_origin: message_id_origin(),
            ..Config::default()
        }
    }

    /// The store configuration these settings ask for.
    pub(crate) fn store_config(&self) -> StoreConfig {
        StoreConfig {
            hash_nice: self.hash_nice,
            ..StoreConfig::default()
        }
    }

    /// The driver options these settings ask for.
    pub(crate) fn options(&self) -> Options {
        Options {
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            max_handshakes_per_address: self.max_tls_handshakes_per_ip,
            files_dir: self.files_dir.clone(),
            ..Options::default()
        }
    }
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
    fn flag_defaults_are_the_library_defaults() {
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
        assert_eq!(
            ours.max_registrations_per_address,
            engine.max_registrations_per_address
        );
        assert_eq!(ours.registration_window, engine.registration_window);
        assert_eq!(
            ours.max_registrations_per_minute,
            engine.max_registrations_per_minute
        );
        assert_eq!(ours.history_replay, engine.history_replay);
        assert_eq!(
            ours.join_notices_max_members,
            engine.join_notices_max_members
        );
        assert_eq!(ours.max_channels_per_owner, engine.max_channels_per_owner);
        assert_eq!(ours.demo_roles, engine.demo_roles);
        assert_eq!(ours.max_file_bytes, engine.max_file_bytes);
        let options = cli.serve.options();
        assert_eq!(ours.transfer_idle_timeout, engine.transfer_idle_timeout);
        assert_eq!(ours.reserved_usernames, engine.reserved_usernames);
        assert_eq!(
            options.shutdown_timeout,
            Options::default().shutdown_timeout
        );
        assert_eq!(
            options.max_handshakes_per_address,
            Options::default().max_handshakes_per_address
        );
        assert_eq!(
            cli.serve.store_config().hash_nice,
            StoreConfig::default().hash_nice
        );
    }

    #[test]
    fn hash_nice_takes_the_nice_range_only() {
        let cli = Cli::try_parse_from(["wur2", "--hash-nice", "0"]).expect("0 parses");
        assert_eq!(cli.serve.store_config().hash_nice, 0);
        assert!(Cli::try_parse_from(["wur2", "--hash-nice", "20"]).is_err());
    }

    #[test]
    fn reserved_names_are_a_comma_separated_list_and_an_empty_one_reserves_none() {
        let cli = Cli::try_parse_from(["wur2", "--reserved-names", "boss, Staff,,"])
            .expect("a list parses");
        assert_eq!(
            cli.serve.engine_config().reserved_usernames,
            ["boss", "Staff"]
        );
        let cli = Cli::try_parse_from(["wur2", "--reserved-names", ""]).expect("empty parses");
        assert!(cli.serve.engine_config().reserved_usernames.is_empty());
    }
}
