//! Room in the process's descriptor table for every connection the server may hold, made
//! once when it starts.
//!
//! Linux grows a process's descriptor table by doubling it when a new descriptor does not
//! fit, and in a process with several threads it first waits for an RCU grace period
//! (`synchronize_rcu`: several milliseconds, more on a busy or virtual machine) inside the
//! system call that needed the descriptor. Here that call is an `accept` on a runtime
//! thread, and every connection served by that thread waits with it: a burst of new
//! clients crossed 256, 512, 1 024… descriptors in a fraction of a second and stalled
//! chat for 5 – 15 ms at each doubling (found with `perf record -e sched:sched_switch -g`:
//! the runtime's thread asleep in `accept4` → `expand_files` → `synchronize_rcu`).
//! Opening one descriptor at the highest number the server may need, and closing it again,
//! grows the table to that size at once; it never shrinks.

/// Descriptors to make room for when at most `max_connections` clients are allowed: two
/// per connection (a TLS handshake holds more than one for a moment) and room for the
/// listeners, the database pool, files being sent and the runtime's own.
pub(crate) fn wanted(max_connections: usize) -> usize {
    max_connections.saturating_mul(2).saturating_add(1024)
}

/// Grows the descriptor table to hold `descriptors` (fewer when the soft `RLIMIT_NOFILE`
/// is lower: no descriptor beyond it can be opened anyway). Returns the highest descriptor
/// number made room for, or `None` when nothing was done.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn reserve(descriptors: usize) -> Option<usize> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` into `limit`, which is valid and ours for the
    // whole call; it touches no other memory.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let allowed = usize::try_from(limit.rlim_cur.saturating_sub(1)).unwrap_or(usize::MAX);
    let highest = libc::c_int::try_from(descriptors.min(allowed)).ok()?;
    let file = std::fs::File::open("/dev/null").ok()?;
    // SAFETY: `fcntl(F_DUPFD_CLOEXEC)` duplicates `file`'s descriptor, open for the whole
    // call, to the lowest free number at or above `highest`; it reads and writes no memory
    // of ours. On failure it returns -1 and makes nothing.
    let duplicate = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest) };
    if duplicate < 0 {
        return None;
    }
    // SAFETY: `duplicate` was just made by `fcntl` and nothing else refers to it: the
    // `OwnedFd` closes it exactly once, here.
    drop(unsafe { OwnedFd::from_raw_fd(duplicate) });
    usize::try_from(duplicate).ok()
}

/// Elsewhere descriptor tables grow without making `accept` wait: nothing to do.
#[cfg(not(target_os = "linux"))]
pub(crate) fn reserve(_descriptors: usize) -> Option<usize> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The descriptor table's size (`FDSize` in `/proc/self/status`).
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("read status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("FDSize:")?.trim().parse().ok())
            .expect("an FDSize line")
    }

    #[test]
    fn the_descriptor_table_is_grown_at_once_to_hold_what_is_reserved() {
        let highest = reserve(5_000).expect("room made (the soft limit here is above 3)");
        assert!(highest <= 5_000);
        assert!(
            table_size() > highest,
            "the table holds descriptor {highest}: {}",
            table_size()
        );
    }

    #[test]
    fn room_is_made_for_two_descriptors_per_connection_and_more() {
        assert_eq!(wanted(10_000), 21_024);
        assert_eq!(wanted(usize::MAX), usize::MAX);
    }
}
