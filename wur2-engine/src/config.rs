//! Every limit and knob of the engine, each with its default.

use std::time::{Duration, Instant};

/// The engine's settings. Every limit the engine enforces is one field here.
///
/// `Config::default()` is a safe public-server setup; change fields directly.
#[derive(Debug, Clone)]
pub struct Config {
    /// Longest line a client may send, in bytes, without its line ending. A longer line
    /// gets one error line and is discarded; the connection stays.
    pub max_line_bytes: usize,
    /// Longest chat or private message text, in bytes after sanitising.
    pub max_message_bytes: usize,
    /// Unwritten bytes a connection may have queued; past this it is a slow reader and is
    /// dropped, so nobody else waits for it.
    pub max_queued_bytes: usize,
    /// Lines per second a connection may send on average (flood control). `0` turns flood
    /// control off, for trusted bots and benchmarks.
    pub flood_lines_per_second: u32,
    /// Lines a connection may send at once before flood control makes it wait.
    pub flood_burst: u32,
    /// Complete lines held back by flood control for a connection before it is closed for
    /// flooding. Lines waiting for a store answer (a login being checked, history being
    /// replayed, a message stored for an offline user, a role being set) are not counted:
    /// the engine pauses reading the connection instead, so a trusted client may pipeline.
    /// What the engine holds is bounded in bytes either way, by
    /// [`Config::max_held_input_bytes`].
    pub max_pending_lines: usize,
    /// Messages (channel or private) of one connection that may wait for their commit at
    /// once. A message is delivered only once stored; meanwhile its sender may go on
    /// sending messages up to this many, which lets a busy sender's messages share commits,
    /// while any other command waits until the messages accepted before it are delivered
    /// (so what a user does reaches others in the order they did it). Past it the
    /// connection's input waits.
    pub max_uncommitted_messages: usize,
    /// Time from connecting to a successful login before the connection is closed.
    pub login_timeout: Duration,
    /// Failed logins on one connection before it is closed.
    pub max_login_failures_per_connection: u32,
    /// Failed logins for one account from one IP address (an IPv6 /64) within
    /// `login_failure_window` before logins to that account from that address are refused
    /// until the window passes. Other addresses, the owner's among them, are not locked.
    pub max_login_failures_per_account_and_address: u32,
    /// Failed logins from one IP address (an IPv6 /64), to any accounts, within
    /// `login_failure_window` before logins from it are refused until the window passes.
    pub max_login_failures_per_address: u32,
    /// Failed logins for one account, summed over every address, within
    /// `login_failure_window` before the account's logins are slowed down: each login to it
    /// then waits before its password is checked, [`Config::login_slowdown_first`] at this
    /// many failures, doubling with each further failure up to
    /// [`Config::login_slowdown_max`]. A slowed login with the right password still
    /// succeeds; an address that logged in to the account before is not slowed.
    pub login_slowdown_after_failures: u32,
    /// The wait of a slowed login at `login_slowdown_after_failures` failures.
    pub login_slowdown_first: Duration,
    /// The longest wait of a slowed login. `Duration::ZERO` turns the slowdown off.
    pub login_slowdown_max: Duration,
    /// The window over which failed logins are counted.
    pub login_failure_window: Duration,
    /// Accounts, addresses and account-address pairs whose failures are remembered at once
    /// (each of the three bounded on its own); the oldest are forgotten first.
    pub max_tracked_login_failures: usize,
    /// Addresses remembered per account after a successful login or registration from them
    /// (the most recent ones): logins from these skip the account-wide slowdown.
    pub known_addresses_per_account: usize,
    /// Accounts whose known addresses are remembered at once (bounded memory); the account
    /// that logged in least recently is forgotten first.
    pub max_accounts_with_known_addresses: usize,
    /// Registrations from one IP address (an IPv6 /64) within `registration_window`; more
    /// are refused until the oldest leaves the window. Attempts that create no account (a
    /// taken name, a busy store) do not count. `0`: no limit.
    pub max_registrations_per_address: u32,
    /// The window of `max_registrations_per_address`.
    pub registration_window: Duration,
    /// Registrations in total, from all addresses, within one minute. `0`: no limit.
    pub max_registrations_per_minute: u32,
    /// Addresses whose registrations are remembered at once (bounded memory); the one that
    /// registered least recently is forgotten first.
    pub max_tracked_registration_addresses: usize,
    /// Shortest password accepted at registration, in bytes.
    pub min_password_bytes: usize,
    /// Longest password accepted, in bytes.
    pub max_password_bytes: usize,
    /// Connections at once, in total.
    pub max_connections: usize,
    /// Connections at once from one IP address.
    pub max_connections_per_address: usize,
    /// Messages of a channel's history replayed on join.
    pub history_replay: usize,
    /// Join and leave notices are sent in channels of at most this many members (on every
    /// node together); in larger ones they are not, as in an IRC server's "auditorium"
    /// channels: a login storm into a 10 000-member channel would otherwise send each of
    /// them 10 000 notices (10^8 lines in all), holding up every other channel. `/channels`
    /// keeps the counts. `usize::MAX` always sends them.
    pub join_notices_max_members: usize,
    /// Most channels one user (not a mod or admin) may own: the first joiner of a new
    /// channel registers it (it lasts when empty) unless they own this many already; the
    /// channel then works as usual but goes away when its last member leaves. Keeps one
    /// account from filling the database with channels. 0: users register none.
    pub max_channels_per_owner: usize,
    /// Most messages `/history n` may ask for.
    pub max_history: usize,
    /// Most bans and mutes one `/bans` lists.
    pub max_sanctions_listed: usize,
    /// The seed's demo mode: a bare `/role` toggles the caller between user and mod.
    pub demo_roles: bool,
    /// The channel everybody starts in.
    pub default_channel: String,
    /// Usernames no one may register, compared without regard to ASCII case: names that
    /// would pass for the server or its staff in a line such as `[Global] system: …`.
    /// Registering one is refused with `username_reserved`; an account that already has
    /// such a name logs in as before. Channel names are another namespace and are not
    /// checked (`Global` stays a channel; a channel never speaks). Empty: none reserved.
    pub reserved_usernames: Vec<String>,
    /// The first line a new connection sees.
    pub banner: String,
    /// Largest file a user may send, in bytes. A server-side file above it is refused; an
    /// upload that declares more is answered with an error and its connection is closed,
    /// because the bytes it announced could not be skipped in any reasonable time.
    pub max_file_bytes: u64,
    /// File transfers one user may have running at once (as sender).
    pub max_transfers_per_user: usize,
    /// Bytes of one transfer the server holds at most: past this much unwritten data to
    /// the recipient, the sender is paused instead of buffered.
    pub transfer_window_bytes: usize,
    /// Largest chunk of file data in one piece sent to the recipient.
    pub transfer_chunk_bytes: usize,
    /// Time a transfer may go without moving a byte to its recipient before it is
    /// cancelled (both sides told, the sender's slot freed): the sender sent nothing, the
    /// recipient read nothing so the window stayed full, or the server-side file could not
    /// be read. `Duration::ZERO` turns the timeout off.
    pub transfer_idle_timeout: Duration,
    /// Whether the driver serves server-side files (`/send <user> <path>` from the
    /// operator's files directory). Off: that form answers that server-side files are off.
    pub server_files: bool,
    /// Wall-clock time at one instant, so JSON lines can carry a timestamp (milliseconds
    /// since the Unix epoch) without the engine reading a clock. `None`: no timestamps.
    pub wall_clock: Option<WallClock>,
    /// The `origin` of every [`MessageId`](crate::MessageId) this engine makes. Give each
    /// engine run a different value (for example start time in nanoseconds mixed with the
    /// process id) so ids never repeat across restarts. In a cluster it is also this
    /// node's incarnation.
    pub message_id_origin: u64,
    /// Cluster mode: this engine is one node of several sharing one store (see
    /// [`ClusterConfig`](crate::ClusterConfig)). `None` (the default): a single node, no
    /// [`Output::Publish`](crate::Output::Publish) ever.
    pub cluster: Option<crate::ClusterConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_line_bytes: 4096,
            max_message_bytes: 2048,
            max_queued_bytes: 1024 * 1024,
            flood_lines_per_second: 10,
            flood_burst: 20,
            max_pending_lines: 200,
            max_uncommitted_messages: 32,
            login_timeout: Duration::from_secs(60),
            max_login_failures_per_connection: 5,
            max_login_failures_per_account_and_address: 5,
            max_login_failures_per_address: 20,
            login_slowdown_after_failures: 5,
            login_slowdown_first: Duration::from_secs(1),
            login_slowdown_max: Duration::from_secs(10),
            login_failure_window: Duration::from_secs(15 * 60),
            max_tracked_login_failures: 10_000,
            known_addresses_per_account: 8,
            max_accounts_with_known_addresses: 10_000,
            max_registrations_per_address: 5,
            registration_window: Duration::from_secs(10 * 60),
            max_registrations_per_minute: 30,
            max_tracked_registration_addresses: 10_000,
            min_password_bytes: 8,
            max_password_bytes: 1024,
            max_connections: 10_000,
            max_connections_per_address: 100,
            history_replay: 20,
            join_notices_max_members: 500,
            max_channels_per_owner: 20,
            max_history: 200,
            max_sanctions_listed: 200,
            demo_roles: false,
            default_channel: "Global".to_string(),
            reserved_usernames: RESERVED_USERNAMES
                .iter()
                .map(|&name| name.to_owned())
                .collect(),
            banner: "Welcome to WUR2 chat!".to_string(),
            max_file_bytes: 100 * 1024 * 1024,
            max_transfers_per_user: 3,
            transfer_window_bytes: 256 * 1024,
            transfer_chunk_bytes: 16 * 1024,
            transfer_idle_timeout: Duration::from_secs(60),
            server_files: false,
            wall_clock: None,
            message_id_origin: 0,
            cluster: None,
        }
    }
}

/// The default of [`Config::reserved_usernames`].
pub const RESERVED_USERNAMES: &[&str] = &[
    "server",
    "system",
    "root",
    "admin",
    "administrator",
    "operator",
    "moderator",
    "mod",
    "staff",
    "support",
    "global",
    "wur2",
];

impl Config {
    /// Whether `username` is one of [`Config::reserved_usernames`] (any letter case).
    pub fn is_reserved_username(&self, username: &str) -> bool {
        self.reserved_usernames
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(username))
    }

    /// Unprocessed input the engine holds for one connection at most, in bytes: room for
    /// `max_pending_lines + 2` lines of `max_line_bytes` with their line endings, or one
    /// `transfer_window_bytes`, whichever is larger (about 808 KiB by default). The engine pauses reading long
    /// before this; a connection that is still fed past it (its driver read ahead of the
    /// pause) is closed for flooding.
    pub fn max_held_input_bytes(&self) -> usize {
        let lines = self.max_pending_lines.saturating_add(2);
        lines
            .saturating_mul(self.max_line_bytes.saturating_add(2))
            .max(self.transfer_window_bytes)
    }
}

/// An instant and the wall-clock time at it, from the caller's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// A monotonic instant.
    pub at: Instant,
    /// Milliseconds since the Unix epoch at `at`.
    pub unix_ms: i64,
}
