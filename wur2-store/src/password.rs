//! Password hashing on the store's own threads, off every async runtime.
//!
//! argon2 takes tens of milliseconds of CPU per hash on purpose; run on an async runtime's
//! threads it would stall every other task. [`HashPool`] owns a few OS threads (one per core
//! by default) fed through two bounded queues, one for logins of existing accounts and one
//! for registrations: a free thread always takes a waiting login first, so a flood of
//! registrations cannot make logins wait behind it. A caller takes a [`Place`] in a queue
//! before the work its job needs (looking the account up), so no more logins do that work
//! at once than the queue can take; when a queue is full the place is refused at once
//! ([`Refused::Busy`]) instead of piling up, and results come back through
//! a oneshot channel that any runtime can await. Passwords and hashes never reach a log
//! line or `Debug` output.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
    /// The job's queue is full: try again later.
    Busy,
    /// The pool's threads are gone (the pool is being dropped).
    Stopped,
}

/// Which queue a job waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// Checking the password of an existing account (and rehashing it): served first.
    Login,
    /// Hashing the password of a new account: served when no login waits.
    Registration,
}

/// A fixed set of hashing threads behind two bounded queues, logins first.
pub(crate) struct HashPool {
    queues: Arc<Queues>,
    threads: usize,
}

/// What the pool's threads and its callers share.
struct Queues {
    state: Mutex<Waiting>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
    /// Jobs queued and not yet taken by a thread (for metrics, read without the lock).
    waiting: AtomicUsize,
}

struct Waiting {
    logins: Queue,
    registrations: Queue,
    /// Threads waiting for a job: a job they will take at once fits even in a queue of 0.
    idle: usize,
    /// Cleared when the pool is dropped: the threads finish what is queued, then end.
    open: bool,
}

impl Waiting {
    /// `priority`'s queue.
    fn queue(&mut self, priority: Priority) -> &mut Queue {
        match priority {
            Priority::Login => &mut self.logins,
            Priority::Registration => &mut self.registrations,
        }
    }
}

/// One bounded queue of jobs.
struct Queue {
    jobs: VecDeque<Job>,
    /// Places taken and not yet used or given back: they count as queued.
    reserved: usize,
    /// Most jobs and places at once, besides those the idle threads take at once.
    max: usize,
}

impl Queue {
    fn new(max: usize) -> Queue {
        Queue {
            jobs: VecDeque::new(),
            reserved: 0,
            max,
        }
    }
}

impl HashPool {
    /// Starts `threads` hashing threads (0: one per available core), `nice` nice steps
    /// below the calling thread (see [`lower_priority`]), with room for `logins` waiting
    /// login jobs and `registrations` waiting registration jobs. The threads end when the
    /// pool is dropped, after the jobs already queued.
    pub(crate) fn start(
        threads: usize,
        nice: u8,
        logins: usize,
        registrations: usize,
    ) -> std::io::Result<HashPool> {
        let threads = if threads == 0 {
            thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        let queues = Arc::new(Queues {
            state: Mutex::new(Waiting {
                logins: Queue::new(logins),
                registrations: Queue::new(registrations),
                idle: 0,
                open: true,
            }),
            ready: Condvar::new(),
            waiting: AtomicUsize::new(0),
        });
        for index in 0..threads {
            let queues = Arc::clone(&queues);
            thread::Builder::new()
                .name(format!("wur2-argon2-{index}"))
                .spawn(move || {
                    lower_priority(nice);
                    work(&queues);
                })?;
        }
        Ok(HashPool { queues, threads })
    }

    /// How many hashing threads run.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs waiting for a free hashing thread now, logins and registrations.
    pub(crate) fn waiting(&self) -> usize {
        self.queues.waiting.load(Ordering::Relaxed)
    }

    /// A place in `priority`'s queue for a job to come, refused as busy when the queue is
    /// full (places taken count as queued, beyond one per thread waiting for work).
    pub(crate) fn reserve(&self, priority: Priority) -> Result<Place, Refused> {
        let Ok(mut state) = self.queues.state.lock() else {
            return Err(Refused::Stopped);
        };
        if !state.open {
            return Err(Refused::Stopped);
        }
        let idle = state.idle;
        let queue = state.queue(priority);
        // The threads waiting for work take that many of the jobs to come at once: room
        // for them comes on top of the queue's.
        if queue.jobs.len() + queue.reserved >= queue.max + idle {
            return Err(Refused::Busy);
        }
        queue.reserved += 1;
        Ok(Place {
            queues: Arc::clone(&self.queues),
            priority,
            used: false,
        })
    }

    /// Queues `job` with `priority` (a place taken and used at once); its result arrives
    /// on the returned receiver.
    pub(crate) fn run<T, F>(
        &self,
        priority: Priority,
        job: F,
    ) -> Result<oneshot::Receiver<T>, Refused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.reserve(priority)?.run(job)
    }
}

/// A place taken in one of the pool's queues ([`HashPool::reserve`]): used by
/// [`Place::run`], given back when dropped unused.
pub(crate) struct Place {
    queues: Arc<Queues>,
    priority: Priority,
    used: bool,
}

impl Place {
    /// Queues `job` in this place; its result arrives on the returned receiver. Refused
    /// only when the pool has stopped.
    pub(crate) fn run<T, F>(mut self, job: F) -> Result<oneshot::Receiver<T>, Refused>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The asker may have given up; nobody else wants the result.
            let _ = reply.send(job());
        });
        let Ok(mut guard) = self.queues.state.lock() else {
            return Err(Refused::Stopped);
        };
        let state = &mut *guard;
        // The place is used whatever follows: `Drop` must not give it back again.
        self.used = true;
        let open = state.open;
        let queue = state.queue(self.priority);
        queue.reserved -= 1;
        if !open {
            return Err(Refused::Stopped);
        }
        queue.jobs.push_back(job);
        self.queues.waiting.fetch_add(1, Ordering::Relaxed);
        drop(guard);
        self.queues.ready.notify_one();
        Ok(result)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        if let Ok(mut state) = self.queues.state.lock() {
            state.queue(self.priority).reserved -= 1;
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        if let Ok(mut state) = self.queues.state.lock() {
            state.open = false;
        }
        self.queues.ready.notify_all();
    }
}

/// Raises the calling thread's nice value by `steps` (up to the maximum, 19), on Linux
/// where a nice value belongs to one thread: the hashing threads then run that far below
/// the server's other threads, whatever nice value the server was started with, and take
/// the CPU time the engine and the connection tasks leave instead of an equal share.
/// Raising one's own nice value needs no privilege and cannot fail.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lower_priority(steps: u8) {
    if steps == 0 {
        return;
    }
    // SAFETY: `nice` takes one integer and no pointers and touches no memory of ours; on
    // Linux it changes only the calling thread's nice value. Its result (the new value, or
    // -1 on a failure, which a positive step cannot have) is not needed.
    unsafe { libc::nice(libc::c_int::from(steps.min(19))) };
}

/// Elsewhere a nice value is the whole process's: the hashing threads keep theirs.
#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: u8) {}

/// A hashing thread: takes the oldest waiting login, else the oldest registration, until
/// the pool closes and nothing is left.
fn work(queues: &Queues) {
    loop {
        // Hold the lock only to take a job, never while hashing.
        let job = {
            let Ok(mut state) = queues.state.lock() else {
                return;
            };
            loop {
                let next = match state.logins.jobs.pop_front() {
                    Some(job) => Some(job),
                    None => state.registrations.jobs.pop_front(),
                };
                if let Some(job) = next {
                    queues.waiting.fetch_sub(1, Ordering::Relaxed);
                    break job;
                }
                if !state.open {
                    return;
                }
                state.idle += 1;
                state = match queues.ready.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
                state.idle -= 1;
            }
        };
        // A panicking job drops its reply (the asker sees `Unavailable`); the thread keeps
        // serving the others.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hashing job panicked");
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

    /// A pool of one thread, busy (already running) with a job that ends when the returned
    /// sender is used or dropped.
    fn blocked_pool(
        logins: usize,
        registrations: usize,
    ) -> (HashPool, std::sync::mpsc::Sender<()>) {
        let pool = HashPool::start(1, 0, logins, registrations).expect("threads start");
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let blocker = pool.run(Priority::Login, move || {
            let _ = started.send(());
            let _ = gate.recv();
        });
        assert!(blocker.is_ok(), "the first job runs");
        running.recv().expect("the blocker started");
        (pool, release)
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_a_place_taken_counts_as_queued() {
        let (pool, release) = blocked_pool(1, 1);
        // A login takes its place before looking its account up: the next one is refused
        // before any lookup, though no job is queued yet.
        let place = pool.reserve(Priority::Login).expect("room for one login");
        assert_eq!(pool.waiting(), 0, "a place is not a queued job");
        assert_eq!(pool.reserve(Priority::Login).err(), Some(Refused::Busy));
        assert_eq!(
            pool.run(Priority::Login, || true).err(),
            Some(Refused::Busy)
        );
        let registration = pool
            .run(Priority::Registration, || true)
            .expect("each queue on its own: room for one registration");
        assert_eq!(
            pool.reserve(Priority::Registration).err(),
            Some(Refused::Busy)
        );
        let login = place
            .run(|| true)
            .expect("a place taken is never refused as busy");
        assert_eq!(pool.waiting(), 2);
        assert_eq!(
            pool.reserve(Priority::Login).err(),
            Some(Refused::Busy),
            "the used place is the queued job now"
        );
        drop(release);
        assert_eq!(futures::executor::block_on(login), Ok(true));
        assert_eq!(futures::executor::block_on(registration), Ok(true));
    }

    #[test]
    fn a_place_given_back_unused_frees_its_room() {
        let (pool, release) = blocked_pool(1, 1);
        let place = pool.reserve(Priority::Login).expect("room for one login");
        assert_eq!(pool.reserve(Priority::Login).err(), Some(Refused::Busy));
        // The login failed before its hash (say, its lookup timed out).
        drop(place);
        let login = pool
            .run(Priority::Login, || 7)
            .expect("the room is free again");
        drop(release);
        assert_eq!(futures::executor::block_on(login), Ok(7));
    }

    #[test]
    fn logins_are_hashed_before_registrations_that_queued_earlier() {
        let (pool, release) = blocked_pool(8, 8);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut results = Vec::new();
        for (priority, name) in [
            (Priority::Registration, "register-1"),
            (Priority::Registration, "register-2"),
            (Priority::Login, "login-1"),
            (Priority::Registration, "register-3"),
            (Priority::Login, "login-2"),
        ] {
            let order = Arc::clone(&order);
            let job = move || order.lock().expect("not poisoned").push(name);
            results.push(pool.run(priority, job).expect("queued"));
        }
        drop(release);
        for result in results {
            futures::executor::block_on(result).expect("ran");
        }
        assert_eq!(
            *order.lock().expect("not poisoned"),
            [
                "login-1",
                "login-2",
                "register-1",
                "register-2",
                "register-3"
            ]
        );
    }

    #[test]
    fn a_registration_flood_is_refused_while_logins_still_get_in() {
        let (pool, release) = blocked_pool(4, 2);
        let refused = (0..100)
            .filter(|_| pool.run(Priority::Registration, || ()).is_err())
            .count();
        assert_eq!(refused, 98, "two registrations wait, the rest are busy");
        let login = pool
            .run(Priority::Login, || "in")
            .expect("a login still queues");
        drop(release);
        assert_eq!(futures::executor::block_on(login), Ok("in"));
    }

    /// This thread's nice value, from `/proc`.
    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("readable");
        // The nice value is field 19; the fields after the command's ")" start at 3.
        let (_, fields) = stat.rsplit_once(')').expect("a stat line");
        let nice = fields.split_whitespace().nth(16).expect("field 19");
        nice.parse().expect("a number")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn hashing_threads_run_their_steps_below_the_thread_that_started_them() {
        let pool = HashPool::start(1, 7, 1, 1).expect("threads start");
        let nice = pool.run(Priority::Login, own_nice).expect("queued");
        let expected = (own_nice() + 7).min(19);
        assert_eq!(futures::executor::block_on(nice), Ok(expected));
        let unchanged = HashPool::start(1, 0, 1, 1).expect("threads start");
        let nice = unchanged.run(Priority::Login, own_nice).expect("queued");
        assert_eq!(futures::executor::block_on(nice), Ok(own_nice()));
    }

    #[test]
    fn an_idle_thread_takes_a_job_even_with_no_queue() {
        let pool = HashPool::start(1, 0, 0, 0).expect("threads start");
        // The thread may not be waiting yet: retry until it is.
        let job = (0..1_000)
            .find_map(|_| {
                let job = pool.run(Priority::Registration, || 7).ok();
                if job.is_none() {
                    thread::sleep(std::time::Duration::from_millis(1));
                }
                job
            })
            .expect("an idle thread takes the job");
        assert_eq!(futures::executor::block_on(job), Ok(7));
    }
}
