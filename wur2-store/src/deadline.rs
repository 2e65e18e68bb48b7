//! Deadlines of database requests, kept by one thread for the whole process.
//!
//! A request the database does not answer in time fails as unavailable
//! (`StoreConfig::request_timeout`). A timer per request (async-io's, which works under any
//! runtime) woke async-io's reactor thread at every query and every commit: in a storm of
//! 10 000 token logins that was a sixth of the server's CPU. Here a request's deadline is
//! an entry in one ordered map, and one thread wakes the requests whose deadline has
//! passed, [`TICK`] apart: a deadline fires up to a tick late. The thread sleeps once no
//! request has waited for [`IDLE_AFTER`], and the next request wakes it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use futures::future::{Either, select};

/// How often the thread looks for deadlines that have passed.
const TICK: Duration = Duration::from_millis(20);

/// How long the thread goes on ticking with no request waiting before it sleeps (so a
/// steady trickle of requests does not have to wake it each time).
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// `future`'s output, or `None` if it takes longer than `limit` (give or take a [`TICK`]).
pub(crate) async fn timed<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let expiry = Expiry {
        at: Instant::now() + limit,
        id: None,
        timer: None,
    };
    let future = pin!(future);
    match select(future, expiry).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

/// The deadlines waiting, and the thread that wakes them.
struct Deadlines {
    state: Mutex<Waiting>,
    /// Wakes the thread from its sleep when a deadline is added.
    added: Condvar,
}

struct Waiting {
    next_id: u64,
    /// Each waiting request's waker, by deadline (and an id, as deadlines can be equal).
    wakers: BTreeMap<(Instant, u64), Waker>,
    /// The thread sleeps until a deadline is added.
    asleep: bool,
}

impl Deadlines {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing here can be left half-changed by a panic: a poisoned map is still a map.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The process's deadlines, their thread started on first use; `None` if the thread
/// could not be started (then [`Expiry`] falls back to a timer of its own).
fn deadlines() -> Option<&'static Deadlines> {
    static DEADLINES: OnceLock<Option<&'static Deadlines>> = OnceLock::new();
    *DEADLINES.get_or_init(|| {
        let deadlines: &'static Deadlines = Box::leak(Box::new(Deadlines {
            state: Mutex::new(Waiting {
                next_id: 0,
                wakers: BTreeMap::new(),
                asleep: false,
            }),
            added: Condvar::new(),
        }));
        match thread::Builder::new()
            .name("wur2-deadlines".into())
            .spawn(move || wake_when_due(deadlines))
        {
            Ok(_) => Some(deadlines),
            Err(error) => {
                tracing::warn!(%error, "cannot start the deadline thread; requests time out with a timer each");
                None
            }
        }
    })
}

/// The deadline thread: every [`TICK`], wakes the requests whose deadline has passed;
/// sleeps after [`IDLE_AFTER`] with none waiting.
fn wake_when_due(deadlines: &Deadlines) {
    let mut idle_since = Instant::now();
    loop {
        let due = {
            let mut waiting = deadlines.lock();
            if waiting.wakers.is_empty() {
                if idle_since.elapsed() >= IDLE_AFTER {
                    waiting.asleep = true;
                    waiting = deadlines
                        .added
                        .wait_while(waiting, |waiting| waiting.wakers.is_empty())
                        .unwrap_or_else(PoisonError::into_inner);
                    waiting.asleep = false;
                    // Woken by a request: the idle time counts from now, or a request
                    // answered within a tick would send the thread back to sleep at once
                    // and every request of a trickle would have to wake it.
                    idle_since = Instant::now();
                }
            } else {
                idle_since = Instant::now();
            }
            let later = waiting.wakers.split_off(&(Instant::now(), u64::MAX));
            std::mem::replace(&mut waiting.wakers, later)
        };
        for waker in due.into_values() {
            waker.wake();
        }
        thread::sleep(TICK);
    }
}

/// Resolves once `at` has passed.
struct Expiry {
    at: Instant,
    /// Its entry among the deadlines, once polled.
    id: Option<u64>,
    /// A timer of its own, only when the deadline thread could not be started.
    timer: Option<async_io::Timer>,
}

impl Future for Expiry {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let Some(deadlines) = deadlines() else {
            let at = self.at;
            let timer = self.timer.get_or_insert_with(|| async_io::Timer::at(at));
            return Pin::new(timer).poll(cx).map(|_| ());
        };
        let mut waiting = deadlines.lock();
        // The thread may have woken and removed the entry already (a poll before then
        // finds it gone): add it again.
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = waiting.next_id;
                waiting.next_id += 1;
                id
            }
        };
        match waiting.wakers.get_mut(&(self.at, id)) {
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                waiting.wakers.insert((self.at, id), cx.waker().clone());
                if waiting.asleep {
                    deadlines.added.notify_one();
                }
            }
        }
        drop(waiting);
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        // An entry exists only once polled, and then the deadlines exist.
        if let Some(id) = self.id
            && let Some(deadlines) = deadlines()
        {
            deadlines.lock().wakers.remove(&(self.at, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_past_its_limit_gets_none_and_one_in_time_its_answer() {
        let started = Instant::now();
        let late = futures::executor::block_on(timed(
            Duration::from_millis(50),
            std::future::pending::<()>(),
        ));
        assert_eq!(late, None);
        assert!(started.elapsed() >= Duration::from_millis(50));
        let answered = futures::executor::block_on(timed(Duration::from_secs(10), async { 7 }));
        assert_eq!(answered, Some(7));
    }

    #[test]
    fn the_deadline_thread_stays_awake_a_while_after_a_request_wakes_it() {
        let asleep = || deadlines().expect("the thread started").lock().asleep;
        let answered_soon = || {
            let soon = async_io::Timer::after(Duration::from_millis(1));
            futures::executor::block_on(timed(Duration::from_secs(10), soon))
        };
        answered_soon();
        // Asleep once no request has waited for a while (other tests' requests may delay it).
        let patience = Instant::now() + Duration::from_secs(20);
        while !asleep() {
            assert!(Instant::now() < patience, "the thread never went to sleep");
            thread::sleep(TICK);
        }
        assert!(answered_soon().is_some());
        // A few ticks later, with no request waiting, it is still awake for the next one.
        thread::sleep(TICK * 4);
        assert!(
            !asleep(),
            "a request woke the thread, which fell asleep again at once"
        );
    }

    #[test]
    fn a_request_answered_in_time_leaves_no_deadline_behind() {
        let slow_then_done = async {
            async_io::Timer::after(Duration::from_millis(30)).await;
            "done"
        };
        // A limit no other test uses, to find its entry among theirs.
        let limit = Duration::from_secs(3_601);
        let answered = futures::executor::block_on(timed(limit, slow_then_done));
        assert_eq!(answered, Some("done"));
        let deadlines = deadlines().expect("the thread started");
        let left = deadlines
            .lock()
            .wakers
            .keys()
            .filter(|(at, _)| *at > Instant::now() + Duration::from_secs(3_590))
            .count();
        assert_eq!(left, 0, "the deadline is gone with its request");
    }
}
