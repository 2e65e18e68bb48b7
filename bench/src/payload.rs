//! The benchmark's chat text: `~B<run>.<sender>.<seq>.<micros>~` padded with `x` to the
//! payload size. The run tag keeps messages of earlier runs (replayed history, late
//! deliveries) from being counted; the micros are the send time since the run's epoch, so
//! the receiver computes the end-to-end latency without any clock but its own process's.

use memchr::memmem::Finder;

/// One benchmark message as a receiver decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Which sender (0-based).
    pub sender: u32,
    /// Its sequence number at that sender (0-based).
    pub seq: u32,
    /// Send time in microseconds since the run's epoch.
    pub sent_us: u64,
}

/// Encodes and finds the payloads of one run.
#[derive(Debug, Clone)]
pub struct Codec {
    run: u32,
    size: usize,
    finder: Finder<'static>,
}

impl Codec {
    /// A codec for run `run` whose payloads are `size` bytes (longer when the stamp itself
    /// does not fit).
    pub fn new(run: u32, size: usize) -> Codec {
        let marker = format!("~B{run}.").into_bytes();
        Codec {
            run,
            size,
            finder: Finder::new(&marker).into_owned(),
        }
    }

    /// Appends the payload of `stamp` to `out` (no line ending).
    pub fn encode(&self, stamp: Stamp, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(
            format!(
                "~B{}.{}.{}.{}~",
                self.run, stamp.sender, stamp.seq, stamp.sent_us
            )
            .as_bytes(),
        );
        let written = out.len() - start;
        if written < self.size {
            out.resize(start + self.size, b'x');
        }
    }

    /// The stamp inside `line`, if it carries one of this run's payloads.
    pub fn find(&self, line: &[u8]) -> Option<Stamp> {
        let at = self.finder.find(line)? + self.finder.needle().len();
        let mut fields = line[at..].splitn(4, |&b| b == b'.' || b == b'~');
        let sender = parse_digits(fields.next()?)?;
        let seq = parse_digits(fields.next()?)?;
        let sent_us = parse_digits(fields.next()?)?;
        Some(Stamp {
            sender: u32::try_from(sender).ok()?,
            seq: u32::try_from(seq).ok()?,
            sent_us,
        })
    }
}

fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips_and_has_its_size() {
        let codec = Codec::new(42, 64);
        let stamp = Stamp {
            sender: 3,
            seq: 999,
            sent_us: 123_456_789,
        };
        let mut line = b"[bench] u3: ".to_vec();
        codec.encode(stamp, &mut line);
        assert_eq!(line.len(), b"[bench] u3: ".len() + 64);
        assert_eq!(codec.find(&line), Some(stamp));
    }

    #[test]
    fn payloads_of_other_runs_and_garbage_are_not_counted() {
        let mut line = Vec::new();
        Codec::new(1, 64).encode(
            Stamp {
                sender: 0,
                seq: 0,
                sent_us: 1,
            },
            &mut line,
        );
        assert_eq!(Codec::new(2, 64).find(&line), None);
        assert_eq!(Codec::new(2, 64).find(b"~B2.x.1.2~"), None);
        assert_eq!(Codec::new(2, 64).find(b"~B2.1.2"), None);
    }
}
