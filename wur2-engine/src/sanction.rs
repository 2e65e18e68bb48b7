//! Bans and mutes: what they are, and the durations moderators type for them.
//!
//! A sanction is stored by the store, which owns the wall clock: it stamps when a sanction
//! was set and decides, by its own clock, whether one has expired. The engine never reads
//! a clock; it learns how long a mute still has to run ([`Expiry::remaining`]) and counts
//! that down on the `Instant`s its caller gives it.
//!
//! Durations are one number and one unit: `30s`, `10m`, `2h`, `7d`, `2w`, from one second
//! to [`MAX_SANCTION_DURATION`]. This module only parses and formats them.

use std::fmt;
use std::time::Duration;

/// The longest sanction a duration may ask for: 3 650 days (about ten years). Longer ones
/// are refused rather than wrapped; "until lifted" needs no duration at all.
pub const MAX_SANCTION_DURATION: Duration = Duration::from_secs(3_650 * 86_400);

/// What a sanction forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SanctionKind {
    /// The account may not log in; its live sessions are closed.
    Ban,
    /// The account may log in and read, but its channel messages, private messages and
    /// files are refused.
    Mute,
}

impl SanctionKind {
    /// The lowercase name used on the wire and in the database: `ban`, `mute`.
    pub fn as_str(self) -> &'static str {
        match self {
            SanctionKind::Ban => "ban",
            SanctionKind::Mute => "mute",
        }
    }
}

impl fmt::Display for SanctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a sanction stops applying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// The moment, in milliseconds since the Unix epoch (by the store's clock); shown to
    /// people.
    pub at_unix_ms: i64,
    /// How long it still had to run when the store answered (by the store's clock); the
    /// engine counts it down from the `now` of the answer.
    pub remaining: Duration,
}

/// A ban or a mute in force, as the store holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sanction {
    /// Ban or mute.
    pub kind: SanctionKind,
    /// The sanctioned account's username as registered.
    pub username: String,
    /// Who set it: a moderator's or admin's username, or `the operator` (the shell).
    pub by: String,
    /// Why, as given (possibly empty).
    pub reason: String,
    /// When it was set, in milliseconds since the Unix epoch (by the store's clock).
    pub set_at_unix_ms: i64,
    /// When it ends; `None`: until lifted.
    pub expires: Option<Expiry>,
}

/// A duration that is not one of `<number><s|m|h|d|w>` within the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not digits followed by one unit letter.
    #[error("a duration is a number and a unit: 30s, 10m, 2h, 7d or 2w")]
    Malformed,
    /// Zero of any unit.
    #[error("a duration must be at least 1s")]
    Zero,
    /// More than [`MAX_SANCTION_DURATION`] (or too many digits to count).
    #[error("a duration may not exceed 3650d")]
    TooLong,
}

/// The units, largest first: their letter and length in seconds.
const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses `30s`, `10m`, `2h`, `7d`, `2w` (lowercase units, no sign, no spaces).
///
/// Never panics; a number too large to count, or a duration over
/// [`MAX_SANCTION_DURATION`], is refused with [`DurationError::TooLong`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let unit = text.chars().last().ok_or(DurationError::Malformed)?;
    let digits = &text[..text.len() - unit.len_utf8()];
    let seconds_per_unit = UNITS
        .iter()
        .find(|(letter, _)| *letter == unit)
        .map(|(_, seconds)| *seconds)
        .ok_or(DurationError::Malformed)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DurationError::Malformed);
    }
    let count: u64 = digits.parse().map_err(|_| DurationError::TooLong)?;
    let seconds = count
        .checked_mul(seconds_per_unit)
        .ok_or(DurationError::TooLong)?;
    let duration = Duration::from_secs(seconds);
    if seconds == 0 {
        Err(DurationError::Zero)
    } else if duration > MAX_SANCTION_DURATION {
        Err(DurationError::TooLong)
    } else {
        Ok(duration)
    }
}

/// The shortest form [`parse_duration`] reads back as `duration` (whole seconds; a
/// fraction of a second is dropped): `90m`, `2h`, `7d`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (letter, length) = UNITS
        .iter()
        .copied()
        .find(|(_, length)| seconds > 0 && seconds.is_multiple_of(*length))
        .unwrap_or(('s', 1));
    format!("{}{letter}", seconds / length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_unit_parses() {
        let cases = [
            ("30s", 30),
            ("10m", 600),
            ("2h", 7_200),
            ("7d", 604_800),
            ("2w", 1_209_600),
        ];
        for (text, seconds) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(seconds)));
        }
    }

    #[test]
    fn malformed_zero_and_too_long_durations_are_refused() {
        for text in [
            "", "m", "10", "10x", "-5m", "+5m", "1.5h", "10M", "1h30m", " 5m",
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DurationError::Malformed),
                "{text}"
            );
        }
        assert_eq!(parse_duration("0m"), Err(DurationError::Zero));
        assert_eq!(parse_duration("3651d"), Err(DurationError::TooLong));
        assert_eq!(
            parse_duration("99999999999999999999999s"),
            Err(DurationError::TooLong)
        );
        assert_eq!(
            parse_duration(&format!("{}w", u64::MAX / 2)),
            Err(DurationError::TooLong)
        );
        assert_eq!(parse_duration("3650d"), Ok(MAX_SANCTION_DURATION));
    }

    #[test]
    fn durations_format_in_their_largest_whole_unit() {
        assert_eq!(format_duration(Duration::from_secs(5_400)), "90m");
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(61)), "61s");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in any::<String>()) {
            let _ = parse_duration(&text);
        }

        #[test]
        fn parsing_never_panics_on_duration_like_text(text in "[0-9]{0,25}[smhdwé]?") {
            if let Ok(duration) = parse_duration(&text) {
                prop_assert!(duration >= Duration::from_secs(1));
                prop_assert!(duration <= MAX_SANCTION_DURATION);
            }
        }

        #[test]
        fn formatted_durations_parse_back_the_same(
            seconds in 1..=MAX_SANCTION_DURATION.as_secs(),
        ) {
            let duration = Duration::from_secs(seconds);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn parsed_durations_format_back_to_an_equal_duration(
            count in 1u64..100_000,
            unit in prop::sample::select(vec!['s', 'm', 'h', 'd', 'w']),
        ) {
            let text = format!("{count}{unit}");
            if let Ok(duration) = parse_duration(&text) {
                prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
            }
        }
    }
}
