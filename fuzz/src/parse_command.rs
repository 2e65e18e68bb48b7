//! The command parser on arbitrary bytes: total, and what parses re-formats and re-parses
//! to the same command.

use wur2_engine::parse_command;

/// Checks the parser on one line of input (ignored unless it is UTF-8, as the engine only
/// parses UTF-8 lines).
pub fn check(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_command(line);
    assert_eq!(parsed, parse_command(line), "parsing is not deterministic");
    if let Ok(command) = parsed {
        let canonical = command.to_line();
        assert_eq!(
            parse_command(&canonical),
            Ok(command.clone()),
            "{command:?} formats as {canonical:?}, which parses differently"
        );
        assert_eq!(
            command.to_line(),
            canonical,
            "formatting is not deterministic"
        );
    }
}
