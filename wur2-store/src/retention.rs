//! History retention: deletes messages older than the operator's retention period, again
//! and again, so history does not grow without bound and old conversations go away on
//! schedule.
//!
//! It owns only its timer (`async-io`'s, so it runs under any runtime). The deletion itself
//! is [`Store::prune_history`] (batched, so the database is never held for long); a failed
//! pass is logged and retried at the next one, never fatal.

use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use crate::Store;

/// How often retention prunes, at most; shorter retentions prune more often (a tenth of
/// the retention, at least once a minute).
pub const MAX_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// How long to wait between two pruning passes for a retention of `retention`.
pub fn prune_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(60), MAX_PRUNE_INTERVAL)
}

impl Store {
    /// Prunes history for ever: one pass now, then one every [`prune_interval`]. Channel
    /// messages and delivered private messages older than `retention` are deleted;
    /// undelivered private messages wait for their recipient. Spawn it on any runtime;
    /// drop (abort) the task to stop.
    pub async fn keep_history_for(self, retention: Duration) {
        let interval = prune_interval(retention);
        loop {
            if let Some(cutoff) = SystemTime::now().checked_sub(retention) {
                match self.prune_history(cutoff).await {
                    Ok(0) => {}
                    Ok(deleted) => info!(deleted, "old history pruned"),
                    Err(error) => warn!(%error, "pruning old history failed; retrying later"),
                }
            }
            async_io::Timer::after(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_the_retention_within_bounds() {
        assert_eq!(
            prune_interval(Duration::from_secs(30 * 86_400)),
            MAX_PRUNE_INTERVAL
        );
        assert_eq!(
            prune_interval(Duration::from_secs(1800)),
            Duration::from_secs(180)
        );
        assert_eq!(
            prune_interval(Duration::from_secs(5)),
            Duration::from_secs(60)
        );
    }
}
