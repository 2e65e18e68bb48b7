//! What the engine knows of files without touching any: the rules for names and paths a
//! user may give, and the errors a driver reports when it opens or reads a file.

/// Longest file name shown to a recipient, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Longest server-side path a user may ask for, in bytes.
pub const MAX_FILE_PATH_BYTES: usize = 1024;

/// Why a driver could not serve a server-side file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// Nothing by that name in the files directory.
    #[error("no such file")]
    NotFound,
    /// The path leads outside the files directory (a symlink, say) or is not a regular file.
    #[error("that file may not be sent")]
    NotAllowed,
    /// Reading failed; the text is for logs, never for users.
    #[error("the file could not be read: {0}")]
    Io(String),
}

/// Checks a file name given with an upload: 1–255 bytes, no path separators, no control
/// characters, not `.` or `..`.
pub fn is_valid_file_name(name: &str) -> bool {
    (1..=MAX_FILE_NAME_BYTES).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
        && crate::sanitize::sanitize_text(name) == name
}

/// Why a server-side path is refused before any file is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// Empty, or longer than [`MAX_FILE_PATH_BYTES`] (or a part longer than 255 bytes).
    #[error("the path is empty or too long")]
    Length,
    /// Starts at the root (`/`) instead of inside the files directory.
    #[error("absolute paths are not allowed")]
    Absolute,
    /// Has a `..` (or `.`) part, or a backslash.
    #[error("'..' is not allowed in paths")]
    Escapes,
    /// Has NUL or another control character.
    #[error("control characters are not allowed in paths")]
    ControlCharacter,
}

/// Checks a path relative to the files directory: not absolute, no `.` or `..` parts, no
/// backslashes, no control characters, bounded length. (Symlinks leading out are the
/// driver's to refuse when it opens the file.)
pub fn check_relative_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() || path.len() > MAX_FILE_PATH_BYTES {
        return Err(PathProblem::Length);
    }
    if path.chars().any(char::is_control) {
        return Err(PathProblem::ControlCharacter);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    if path.contains('\\') {
        return Err(PathProblem::Escapes);
    }
    for part in path.split('/') {
        if part == ".." || part == "." {
            return Err(PathProblem::Escapes);
        }
        if part.len() > MAX_FILE_NAME_BYTES {
            return Err(PathProblem::Length);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_paths_are_refused() {
        assert_eq!(
            check_relative_path("/etc/passwd"),
            Err(PathProblem::Absolute)
        );
        assert_eq!(check_relative_path("../secret"), Err(PathProblem::Escapes));
        assert_eq!(check_relative_path("a/../../b"), Err(PathProblem::Escapes));
        assert_eq!(check_relative_path("a\\..\\b"), Err(PathProblem::Escapes));
        assert_eq!(
            check_relative_path("a\0b"),
            Err(PathProblem::ControlCharacter)
        );
        assert_eq!(
            check_relative_path("a\x1b[2Jb"),
            Err(PathProblem::ControlCharacter)
        );
        assert_eq!(
            check_relative_path(&"a".repeat(1025)),
            Err(PathProblem::Length)
        );
        assert_eq!(check_relative_path(""), Err(PathProblem::Length));
        assert_eq!(check_relative_path("docs/readme.txt"), Ok(()));
        assert_eq!(
            check_relative_path("..hidden"),
            Ok(()),
            "a name that starts with dots"
        );
    }

    #[test]
    fn file_names_are_single_safe_parts() {
        assert!(is_valid_file_name("notes.txt"));
        assert!(is_valid_file_name("résumé v2.pdf"));
        assert!(!is_valid_file_name("a/b"));
        assert!(!is_valid_file_name(".."));
        assert!(!is_valid_file_name("bad\u{202e}txt.exe"));
        assert!(!is_valid_file_name("report\u{200b}.pdf"));
        assert!(!is_valid_file_name("line\u{2028}break.txt"));
        assert!(is_valid_file_name("\u{1f469}\u{200d}\u{1f4bb}.png"));
        assert!(!is_valid_file_name(&"n".repeat(256)));
    }
}
