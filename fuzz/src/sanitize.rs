//! The sanitiser of relayed text: idempotent, borrows when nothing changes, and leaves no
//! character that could drive another person's terminal.

use std::borrow::Cow;

use wur2_engine::sanitize_text;

/// What may never reach another user's terminal: C0 controls but tab, DEL, C1 controls
/// (ESC and CSI among them) and the bidirectional override and isolate characters. Written
/// out here, independently of the engine, so the check does not trust the code it checks.
pub fn is_forbidden(c: char) -> bool {
    (c < ' ' && c != '\t')
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
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
