//! The sanitiser of relayed text: idempotent, borrows when nothing changes, and leaves no
//! character that could drive another person's terminal.

use std::borrow::Cow;

use wur2_engine::sanitize_text;

/// What may never reach another user's terminal: C0 controls but tab, DEL, C1 controls
/// (ESC and CSI among them), the bidirectional override and isolate characters, and the
/// invisible ones. Written out here, independently of the engine, so the check does not
/// trust the code it checks.
pub fn is_forbidden(c: char) -> bool {
    (c < ' ' && c != '\t')
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || is_invisible(c)
}

/// Invisible characters that carry no text (zero-width space, word joiner, byte order
/// mark, line and paragraph separators and their kin); U+200D, which emoji need, is not
/// among them.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{180e}'
            | '\u{200b}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206a}'..='\u{206f}'
            | '\u{3164}'
            | '\u{ffa0}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{1d173}'..='\u{1d17a}'
    )
}

/// Checks the sanitiser on the UTF-8 text of `data` (lossily decoded, so every input counts).
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let once = sanitize_text(&text);
    if let Some(bad) = once.chars().find(|&c| is_forbidden(c)) {
        panic!("{bad:?} survived sanitising {text:?} into {once:?}");
    }
    let twice = sanitize_text(&once);
    assert!(
        matches!(twice, Cow::Borrowed(_)),
        "sanitised text {once:?} changed again into {twice:?}"
    );
    if !text.chars().any(is_forbidden) {
        assert!(
            matches!(once, Cow::Borrowed(_)),
            "clean text {text:?} was copied or changed into {once:?}"
        );
    }
    assert!(once.len() <= text.len(), "sanitising made {text:?} longer");
}
