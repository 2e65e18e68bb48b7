//! A process's CPU time as the kernel reports it (`/proc/<pid>/stat`): user plus system
//! time, in seconds; and its read and write system calls (`/proc/<pid>/io`). Read-only; a
//! missing process is `None`, not an error. The load generator reads them for the server's
//! processes and the cluster bus (NATS) at the start and the end of the measured part, so a
//! run can say what each message cost them.

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`). The kernel shows
/// user space 100 ticks a second whatever its internal tick rate, on every architecture
/// the benchmark runs on (x86-64, arm64).
pub const USER_HZ: f64 = 100.0;

/// User plus system CPU seconds of `pid` so far; `None` when the process is gone.
pub fn read(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// The CPU seconds of several processes, summed; `None` when there are none or one is
/// gone (a sum missing a process would read as a cheaper run).
pub fn read_all(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| read(pid)).sum()
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its last `)`: there the
/// state is field 3, `utime` field 14 and `stime` field 15.
pub fn parse_stat(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Read and write system calls a process made so far (`syscr`, `syscw`): a server that
/// handles each message alone makes a few per message, one that batches them far fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Syscalls {
    /// `syscr`: `read`-family calls (socket reads among them).
    pub reads: u64,
    /// `syscw`: `write`-family calls.
    pub writes: u64,
}

impl Syscalls {
    /// What happened since an `earlier` reading of the same process.
    pub fn since(self, earlier: Syscalls) -> Syscalls {
        Syscalls {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
        }
    }
}

/// Reads `/proc/<pid>/io` (readable by the process's owner or root); `None` when the
/// process is gone or the file cannot be read.
pub fn syscalls(pid: u32) -> Option<Syscalls> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    parse_io(&io)
}

/// The `syscr` and `syscw` fields of a `/proc/<pid>/io` text.
pub fn parse_io(io: &str) -> Option<Syscalls> {
    let field = |name: &str| {
        io.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            value.trim().parse::<u64>().ok()
        })
    };
    Some(Syscalls {
        reads: field("syscr")?,
        writes: field("syscw")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_calls_are_read_from_proc_io() {
        let io = "rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 3\nread_bytes: 0\n";
        let counted = parse_io(io).expect("both fields");
        assert_eq!(
            counted,
            Syscalls {
                reads: 10,
                writes: 3
            }
        );
        let later = Syscalls {
            reads: 15,
            writes: 3,
        };
        assert_eq!(
            later.since(counted),
            Syscalls {
                reads: 5,
                writes: 0
            }
        );
        assert_eq!(parse_io("rchar: 1\n"), None);
        assert!(syscalls(std::process::id()).is_some());
    }

    #[test]
    fn utime_and_stime_are_found_after_the_command_name() {
        let stat = "4242 (nats server) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 31 0 0 20 0 \
                    9 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(2.81));
        // A name with a closing parenthesis of its own.
        let odd = "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 1 1 1 1";
        assert_eq!(parse_stat(odd), Some(0.1));
        assert_eq!(parse_stat("7 (truncated) R 1"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_missing_one_has_none() {
        let me = std::process::id();
        assert!(read(me).is_some_and(|secs| secs >= 0.0));
        assert!(read_all(&[me, me]).is_some());
        assert_eq!(read_all(&[]), None);
        // Pids above the kernel's pid_max (at most 2^22) never exist.
        assert_eq!(read_all(&[me, 1 << 30]), None);
    }
}
