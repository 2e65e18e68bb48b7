//! The settings an operator can tune, each with its default.

use std::time::Duration;

/// How a [`Store`](crate::Store) connects, hashes and buffers.
///
/// Build it from [`StoreConfig::default`] and change the fields that matter:
///
/// ```
/// # use wur2_store::StoreConfig;
/// let config = StoreConfig { max_connections: 20, ..StoreConfig::default() };
/// ```
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Most database connections the pool opens. Default 10.
    pub max_connections: u32,
    /// How long a request waits for a free connection (or a new one) before failing with
    /// `StoreError::Unavailable`. Default 5 s: a database that stops answering becomes a
    /// clear error, never a request that waits forever.
    pub acquire_timeout: Duration,
    /// Longest a single request may take in the database (lookups, history, a batch of
    /// appends) before it is abandoned as unavailable. Default 10 s.
    pub request_timeout: Duration,
    /// argon2id cost of new password hashes.
    pub password: PasswordConfig,
    /// Threads of the password hashing pool; `0` means one per available core. Default 0.
    pub hash_threads: usize,
    /// How many nice steps the hashing threads run below the server's other threads, on
    /// Linux (the result is at most 19). Default 19, the lowest priority: during a login
    /// storm connected users' messages go first and argon2 takes the CPU they leave, so
    /// logins are as fast as before on an otherwise idle host. Nice values weigh threads
    /// against others in the same scheduling group (the server's own threads under
    /// systemd or in a container); where other busy processes share the server's group,
    /// they can slow logins down, and 0 puts hashing on a par with everything else.
    /// Unused elsewhere than Linux.
    pub hash_nice: u8,
    /// Login checks (verify jobs of existing accounts) that may wait for a free hashing
    /// thread; more fail at once with `StoreError::Busy`. Default 256.
    pub hash_queue: usize,
    /// Registrations (hash jobs of new accounts) that may wait for a free hashing thread;
    /// more fail at once with `StoreError::Busy`. A free thread takes every waiting login
    /// before any registration, so a registration flood cannot make logins wait behind it.
    /// Default 32.
    pub registration_hash_queue: usize,
    /// Appends that may wait to be written (while the database is slow or unreachable);
    /// more are refused with `StoreError::Unavailable`. Default 100 000.
    pub append_buffer: usize,
    /// Most appends written in one transaction. Default 10 000.
    pub max_batch: usize,
    /// Least time from the start of one batch of appends to the start of the next (unless
    /// `max_batch` appends wait). A message is delivered only once its batch is committed,
    /// so this is added to chat latency at light load. Default zero: an idle writer commits
    /// at once, and under load the appends that arrive while one batch is being committed
    /// share the next commit.
    pub commit_interval: Duration,
    /// First wait before retrying a failed batch of appends; it doubles on each failure.
    /// Default 50 ms.
    pub retry_backoff_min: Duration,
    /// Longest wait between retries of a failed batch of appends. Default 2 s.
    pub retry_backoff_max: Duration,
    /// How long a resume token (`/token`) lets its account log in. Default 30 days.
    pub resume_token_lifetime: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            password: PasswordConfig::default(),
            hash_threads: 0,
            hash_nice: 19,
            hash_queue: 256,
            registration_hash_queue: 32,
            append_buffer: 100_000,
            max_batch: 10_000,
            commit_interval: Duration::ZERO,
            retry_backoff_min: Duration::from_millis(50),
            retry_backoff_max: Duration::from_secs(2),
            resume_token_lifetime: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The argon2id cost parameters of new password hashes.
///
/// The default is the OWASP minimum (m = 19 MiB, t = 2, p = 1). A stored hash whose cost is
/// lower than these in any parameter is replaced on the user's next successful login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordConfig {
    /// Memory cost in KiB. Default 19 456 (19 MiB).
    pub memory_kib: u32,
    /// Passes over the memory. Default 2.
    pub iterations: u32,
    /// Lanes. Default 1.
    pub parallelism: u32,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}
