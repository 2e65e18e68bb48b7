//! Password hashing on the store's own threads, off every async runtime.
//!
//! argon2 takes tens of milliseconds of CPU per hash on purpose; run on an async runtime's
//! threads it would stall every other task. [`HashPool`] owns a few OS threads (one per core
//! by default) fed through a bounded queue: when the queue is full a job is refused at once
//! ([`Refused::Busy`]) instead of piling up, and results come back through a oneshot channel
//! that any runtime can await. Passwords and hashes never reach a log line or `Debug` output.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
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

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A new PHC string for `password` with a fresh random salt. Blocks for the whole hash.
    pub(crate) fn hash(&self, password: &Password) -> Result<String, String> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| format!("argon2 failed: {e}"))
    }

    /// Whether `password` matches the PHC string `stored`. Blocks for the whole hash. A
    /// malformed stored hash never matches.
    pub(crate) fn verify(&self, password: &Password, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(hash) => self
                .argon2()
                .verify_password(password.expose().as_bytes(), &hash)
                .is_ok(),
            Err(_) => {
                tracing::warn!("a stored password hash is not a valid PHC string");
                false
            }
        }
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
