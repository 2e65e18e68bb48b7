//! The rules for usernames and channel names, and the case-folded keys that make them
//! unique without regard to letter case.

/// Longest username or channel name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_BYTES: usize = 32;

/// 1–32 of ASCII letters, digits, `_`, `-`, `.`.
pub fn is_valid_username(name: &str) -> bool {
    valid_name(name, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
    })
}

/// 1–32 of ASCII letters, digits, `_`, `-`, `.`, `#`.
pub fn is_valid_channel_name(name: &str) -> bool {
    valid_name(name, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'#')
    })
}

fn valid_name(name: &str, allowed: impl Fn(u8) -> bool) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len()) && name.bytes().all(allowed)
}

/// The key that makes usernames unique regardless of case (what stores index on).
pub fn username_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The key that makes channel names unique regardless of case.
pub fn channel_key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        assert!(is_valid_username("alice_01.x-y"));
        assert!(!is_valid_username(""));
        assert!(!is_valid_username("has space"));
        assert!(!is_valid_username("émile"));
        assert!(!is_valid_username(&"a".repeat(33)));
        assert!(!is_valid_username("#chan"));
    }

    #[test]
    fn channel_names_allow_hash() {
        assert!(is_valid_channel_name("#rust"));
        assert!(!is_valid_channel_name("a/b"));
        assert_eq!(channel_key("#Rust"), channel_key("#rUST"));
    }
}
