//! Text relayed from one user to others: what may never reach another person's terminal.
//!
//! Removes NUL and every other C0 control character except tab, DEL, C1 controls,
//! ANSI escape sequences (CSI, OSC, DCS and the other string sequences, two-byte escapes)
//! and the bidirectional override and isolate characters. Printable text is untouched.

use std::borrow::Cow;

/// Removes terminal control sequences and dangerous characters from `text`.
///
/// Idempotent: sanitising sanitised text changes nothing. Borrows when nothing is removed.
pub fn sanitize_text(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_removal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    skip_csi(&mut chars);
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    chars.next();
                    skip_string(&mut chars);
                }
                Some(next) if ('\u{20}'..='\u{7e}').contains(&next) => {
                    chars.next();
                }
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if needs_removal(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether `c` is removed from relayed text.
pub(crate) fn needs_removal(c: char) -> bool {
    (c < ' ' && c != '\t')
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Control sequence: parameter and intermediate bytes, then one final byte.
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) || !('\u{20}'..='\u{7e}').contains(&c) {
            return;
        }
    }
}

/// String sequence (OSC, DCS, SOS, PM, APC): up to BEL or the string terminator.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(
            sanitize_text("héllo\tworld"),
            Cow::Borrowed("héllo\tworld")
        ));
    }

    #[test]
    fn colour_and_cursor_sequences_are_removed_whole() {
        assert_eq!(sanitize_text("\x1b[31mred\x1b[0m \x1b[2J\x1b[H!"), "red !");
    }

    #[test]
    fn title_setting_osc_sequences_are_removed_whole() {
        assert_eq!(
            sanitize_text("a\x1b]0;pwned\x07b\x1b]8;;http://x\x1b\\c"),
            "abc"
        );
    }

    #[test]
    fn control_characters_and_bidi_overrides_are_removed() {
        assert_eq!(
            sanitize_text("a\0b\rc\x7fd\u{85}e\u{202e}f\u{2066}g"),
            "abcdefg"
        );
    }

    proptest! {
        #[test]
        fn sanitising_is_idempotent_and_leaves_no_control_or_escape(text in any::<String>()) {
            let once = sanitize_text(&text).into_owned();
            let twice = sanitize_text(&once).into_owned();
            prop_assert_eq!(twice, once.clone());
            prop_assert!(!once.chars().any(needs_removal));
        }

        #[test]
        fn sanitising_removes_escapes_mixed_into_text(
            parts in proptest::collection::vec(prop_oneof![
                Just("\x1b[1;31m".to_string()), Just("\x1b]0;t\x07".to_string()),
                Just("\u{9b}2J".to_string()), Just("\u{202e}".to_string()),
                "[a-z ]{0,5}",
            ], 0..10)
        ) {
            let text: String = parts.concat();
            let clean = sanitize_text(&text);
            prop_assert!(!clean.contains('\x1b'), "escape left in {:?}", clean);
            prop_assert!(!clean.chars().any(needs_removal));
        }
    }
}
