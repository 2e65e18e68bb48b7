//! A server's memory as the kernel reports it (`/proc/<pid>/status`): resident now
//! (`VmRSS`) and at its peak (`VmHWM`). Read-only; a missing process is `None`, not an error.

/// Resident memory of one process at one moment, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// `VmRSS`: resident set size now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set size so far.
    pub hwm_kib: u64,
}

/// Reads `/proc/<pid>/status`; `None` when the process is gone or the fields are missing.
pub fn read(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

/// The memory of several processes (the nodes of a cluster), summed; `None` when there
/// are none or one is gone. For one process it is [`read`].
pub fn read_all(pids: &[u32]) -> Option<Memory> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(Memory::default(), |sum, &pid| {
        let one = read(pid)?;
        Some(Memory {
            rss_kib: sum.rss_kib + one.rss_kib,
            hwm_kib: sum.hwm_kib + one.hwm_kib,
        })
    })
}

/// The `VmRSS` and `VmHWM` fields of a `/proc/<pid>/status` text.
pub fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some(Memory {
        rss_kib: field("VmRSS")?,
        hwm_kib: field("VmHWM")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\twur2\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(status),
            Some(Memory {
                rss_kib: 10240,
                hwm_kib: 20480
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_memory() {
        let mine = read(std::process::id()).expect("our own status is readable");
        assert!(mine.rss_kib > 0 && mine.hwm_kib >= mine.rss_kib);
    }
}
