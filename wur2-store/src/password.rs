//! Password hashing on the store's own threads, off every async runtime.
//!
//! argon2 takes tens of milliseconds of CPU per hash on purpose; run on an async runtime's
//! threads it would stall every other task. [`HashPool`] owns a few OS threads (one per core
//! by default) fed through a bounded queue: when the queue is full a job is refused at once
//! ([`Refused::Busy`]) instead of piling up, and results come back through a oneshot channel
//! that any runtime can await. Passwords and hashes never reach a log line or `Debug` output.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use futures::channel::oneshot;
use wur2_engine::Password;

use crate::config::PasswordConfig;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why the pool did not take a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is full: try again later.
    Busy,
    /// The pool's threads are gone (only after a panic in argon2).
    Stopped,
}

/// A fixed set of hashing threads behind a bounded queue.
pub(crate) struct HashPool {
    jobs: SyncSender<Job>,
    threads: usize,
    /// Jobs queued and not yet taken by a thread (for metrics).
    waiting: Arc<AtomicUsize>,
}

impl HashPool {
    /// Starts `threads` hashing threads (0: one per available core) with room for `queue`
    /// waiting jobs. The threads end when the pool is dropped.
    pub(crate) fn start(threads: usize, queue: usize) -> std::io::Result<HashPool> {
        let threads = if threads == 0 {
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let (jobs, queued) = sync_channel::<Job>(queue);
        let queued = Arc::new(Mutex::new(queued));
        for index in 0..threads {
            let queued = Arc::clone(&queued);
            thread::Builder::new()
                .name(format!("wur2-argon2-{index}"))
                .spawn(move || work(&queued))?;
        }
        Ok(HashPool {
            jobs,
            threads,
            waiting: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many hashing threads run.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs waiting for a free hashing thread now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Queues `job`; its result arrives on the returned receiver.
    pub(crate) fn run<T, F>(&self, job: F) -> Result<oneshot::Receiver<T>, Refused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let waiting = Arc::clone(&self.waiting);
        let job: Job = Box::new(move || {
            waiting.fetch_sub(1, Ordering::Relaxed);
            // The asker may have given up; nobody else wants the result.
            let _ = reply.send(job());
        });
        // Counted before it is queued, so a thread taking it at once never counts below 0.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let refused = match self.jobs.try_send(job) {
            Ok(()) => return Ok(result),
            Err(TrySendError::Full(_)) => Refused::Busy,
            Err(TrySendError::Disconnected(_)) => Refused::Stopped,
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        Err(refused)
    }
}

fn work(queued: &Mutex<Receiver<Job>>) {
    loop {
        // Hold the lock only to take a job, never while hashing.
        let next = match queued.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match next {
            Ok(job) => {
                // A panicking job drops its reply (the asker sees `Unavailable`); the thread
                // keeps serving the others.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a password hashing job panicked");
                }
            }
            Err(_) => return, // The pool was dropped.
        }
    }
}

/// Hashes and verifies passwords with one argon2id cost.
#[derive(Clone)]
pub(crate) struct Hasher {
    params: Params,
}

/// argon2 rejected the configured cost.
#[derive(Debug)]
pub(crate) struct InvalidParams(pub(crate) String);

impl Hasher {
    pub(crate) fn new(config: PasswordConfig) -> Result<Hasher, InvalidParams> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| InvalidParams(e.to_string()))?;
        Ok(Hasher { params })
    }

    /// A new PHC string for `password` with a fresh random salt. Blocks for the whole hash.
    pub(crate) fn hash(&self, password: &Password) -> Result<String, String> {
        let salt = SaltString::generate(&mut OsRng);
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let failed = |e: argon2::password_hash::Error| format!("argon2 failed: {e}");
        let output = digest(&argon2, &self.params, password, salt.as_salt()).map_err(failed)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).map_err(failed)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` matches the PHC string `stored` (compared in constant time).
    /// Blocks for the whole hash. A malformed stored hash never matches.
    pub(crate) fn verify(&self, password: &Password, stored: &str) -> bool {
        let matches = || -> Result<bool, argon2::password_hash::Error> {
            let hash = PasswordHash::new(stored)?;
            let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
                return Ok(false);
            };
            let algorithm = Algorithm::try_from(hash.algorithm)?;
            let version = hash
                .version
                .map(Version::try_from)
                .transpose()?
                .unwrap_or_default();
            let params = Params::try_from(&hash)?;
            let argon2 = Argon2::new(algorithm, version, params.clone());
            // `Output`'s equality is constant-time.
            Ok(digest(&argon2, &params, password, salt)? == expected)
        };
        matches().unwrap_or_else(|_| {
            tracing::warn!("a stored password hash is not a valid argon2 PHC string");
            false
        })
    }

    /// Whether `stored` was made with a weaker algorithm or cost than the current one.
    pub(crate) fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return true;
        };
        if hash.algorithm != Algorithm::Argon2id.ident()
            || hash.version != Some(Version::V0x13.into())
        {
            return true;
        }
        match Params::try_from(&hash) {
            Ok(old) => {
                old.m_cost() < self.params.m_cost()
                    || old.t_cost() < self.params.t_cost()
                    || old.p_cost() < self.params.p_cost()
            }
            Err(_) => true,
        }
    }
}

thread_local! {
    /// This hashing thread's argon2 working memory (19 MiB at the default cost), reused
    /// from hash to hash. A fresh allocation per hash is kept by glibc's allocator once
    /// freed (it raises its mmap threshold), so every login grew the server by megabytes.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 of `password` with `salt`, in this thread's reused memory, which is wiped after.
fn digest(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &Password,
    salt: Salt<'_>,
) -> Result<Output, argon2::password_hash::Error> {
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    MEMORY.with(|memory| {
        let mut blocks = memory.borrow_mut();
        blocks.resize(params.block_count(), Block::default());
        let output = Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(
                    password.expose().as_bytes(),
                    salt,
                    out,
                    &mut blocks[..],
                )
                .map_err(Into::into)
        });
        // Nothing derived from a password stays in memory between hashes.
        blocks.fill(Block::default());
        output
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weak() -> Hasher {
        Hasher::new(PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .expect("valid test parameters")
    }

    #[test]
    fn a_hash_verifies_its_own_password_only() {
        let hasher = weak();
        let hash = hasher
            .hash(&Password::new("hunter2"))
            .expect("hashing works");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(hasher.verify(&Password::new("hunter2"), &hash));
        assert!(!hasher.verify(&Password::new("hunter3"), &hash));
        assert!(!hasher.verify(&Password::new("hunter2"), "not a hash"));
    }

    #[test]
    fn hashes_match_the_argon2_crates_own_hashing_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let hasher = weak();
        let ours = hasher.hash(&Password::new("pw-1")).expect("hashing works");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        let standard = Argon2::new(Algorithm::Argon2id, Version::V0x13, hasher.params.clone());
        assert!(standard.verify_password(b"pw-1", &parsed).is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = standard
            .hash_password(b"pw-2", &salt)
            .expect("hashing works")
            .to_string();
        assert!(hasher.verify(&Password::new("pw-2"), &theirs));
        assert!(!hasher.verify(&Password::new("pw-1"), &theirs));
    }

    #[test]
    fn a_hashing_thread_reuses_one_wiped_working_memory() {
        let hasher = weak();
        hasher.hash(&Password::new("first")).expect("hashing works");
        let (capacity, wiped) = MEMORY.with(|m| {
            let blocks = m.borrow();
            (
                blocks.capacity(),
                blocks.iter().all(|b| b.as_ref().iter().all(|&w| w == 0)),
            )
        });
        assert_eq!(capacity, hasher.params.block_count());
        assert!(wiped, "nothing derived from a password stays in memory");
        hasher
            .hash(&Password::new("second"))
            .expect("hashing works");
        assert_eq!(
            MEMORY.with(|m| m.borrow().capacity()),
            capacity,
            "no new allocation"
        );
    }

    #[test]
    fn a_weaker_hash_needs_rehashing_and_an_equal_one_does_not() {
        let hash = weak().hash(&Password::new("pw")).expect("hashing works");
        assert!(!weak().needs_rehash(&hash));
        let stronger = Hasher::new(PasswordConfig {
            memory_kib: 128,
            iterations: 1,
            parallelism: 1,
        })
        .expect("valid test parameters");
        assert!(stronger.needs_rehash(&hash));
        assert!(stronger.needs_rehash("garbage"));
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let pool = HashPool::start(1, 1).expect("threads start");
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let blocker = pool
            .run(move || gate.recv().is_ok())
            .expect("first job runs");
        // The thread may not have taken the first job yet: fill until refused.
        let mut accepted = Vec::new();
        let refused = loop {
            match pool.run(|| true) {
                Ok(job) => accepted.push(job),
                Err(refused) => break refused,
            }
            assert!(
                accepted.len() <= 2,
                "a queue of one took {} jobs",
                accepted.len()
            );
        };
        assert_eq!(refused, Refused::Busy);
        release.send(()).expect("the blocker waits");
        assert_eq!(futures::executor::block_on(blocker), Ok(true));
        for job in accepted {
            assert_eq!(futures::executor::block_on(job), Ok(true));
        }
    }
}
