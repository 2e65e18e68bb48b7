//! Giving freed heap memory back to the system once the server goes quiet.
//!
//! glibc's malloc keeps what its threads freed in their arenas and only returns the top of
//! each one, so after a burst (a join storm that sent thousands of announcements, a run of
//! logins) the freed buffers, scattered between long-lived connection state, stay resident
//! for as long as the server runs: about a kilobyte per idle connection in the
//! 5 000-connection measurement. `malloc_trim` walks every arena and returns each whole
//! free page. It briefly locks the arenas, so the host calls it only after the engine has
//! had nothing to do for [`QUIET`].

use std::time::{Duration, Instant};

/// How long the server must have been idle before freed memory is given back.
pub const QUIET: Duration = Duration::from_secs(1);

/// When to give freed memory back: [`QUIET`] after the last busy turn.
#[derive(Debug, Default)]
pub(crate) struct Release {
    at: Option<Instant>,
}

impl Release {
    /// Something happened at `now`: release once it has been quiet for [`QUIET`].
    pub(crate) fn busy(&mut self, now: Instant) {
        self.at = Some(now + QUIET);
    }

    /// When the release is due, if one is pending.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Releases freed memory if it is due at `now`.
    pub(crate) fn poll(&mut self, now: Instant) {
        if self.at.is_some_and(|at| at <= now) {
            self.at = None;
            release_free_memory();
        }
    }
}

/// Asks the C allocator to return the free pages it holds (glibc: `malloc_trim`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointers and touches only free memory that glibc's
    // allocator owns, under that allocator's own locks; it is safe to call from any thread
    // at any time (glibc documents it MT-Safe). Rust's global allocator is glibc's malloc
    // here, so no live allocation of ours is affected.
    let released = unsafe { libc::malloc_trim(0) } != 0;
    tracing::debug!(released, "returned free heap memory to the system");
}

/// Other allocators (musl, macOS, Windows) have no such call, and do not keep freed pages
/// the way glibc does.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_is_due_only_after_a_quiet_spell_and_only_once() {
        let start = Instant::now();
        let mut release = Release::default();
        assert_eq!(release.deadline(), None);
        release.busy(start);
        release.busy(start + Duration::from_millis(500));
        assert_eq!(
            release.deadline(),
            Some(start + Duration::from_millis(500) + QUIET)
        );
        release.poll(start + QUIET);
        assert!(release.deadline().is_some(), "not quiet long enough yet");
        release.poll(start + Duration::from_millis(500) + QUIET);
        assert_eq!(release.deadline(), None);
    }
}
