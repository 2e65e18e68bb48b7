//! The two readings of the system clock the engine needs from its driver (it reads no
//! clock itself).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wur2_engine::WallClock;

/// The wall-clock time now, for the engine's timestamps
/// ([`Config::wall_clock`](wur2_engine::Config::wall_clock)).
pub fn wall_clock_now() -> WallClock {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    WallClock {
        at: Instant::now(),
        unix_ms,
    }
}

/// A value unique to this run, so message ids never repeat across restarts
/// ([`Config::message_id_origin`](wur2_engine::Config::message_id_origin)).
pub fn message_id_origin() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Truncation is fine: only uniqueness between runs matters.
    (nanos as u64) ^ (u64::from(std::process::id()) << 48)
}
