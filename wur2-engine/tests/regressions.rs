//! Cases the fuzz targets (`fuzz/`, see `docs/FUZZING.md`) found, each reproduced as a test.

mod support;

use support::World;
use wur2_engine::Config;

/// fuzz target `engine`: a server-side file's name reached the recipient with a
/// bidirectional override in it (U+202E shows `\u{202e}txt.exe` as `exe.txt`). Upload names
/// were held to the file-name rules; names taken from a server-side path were not.
#[test]
fn a_server_file_whose_name_breaks_the_file_name_rules_is_refused() {
    let mut w = World::new(Config {
        server_files: true,
        ..Config::default()
    });
    let (a, b) = (w.user("alice"), w.user("bob"));
    let disguised = "docs/\u{202e}txt.exe";
    w.files.insert(disguised.into(), b"MZ".to_vec());
    w.send(a, &format!("/send bob {disguised}\n"));
    assert!(w.saw(a, "Error: file names are 1 to 255 bytes"));
    assert!(w.open_files.is_empty(), "the file is never opened");
    let transcript = String::from_utf8_lossy(&w.transcript[&b]).into_owned();
    assert!(!transcript.contains('\u{202e}'), "{transcript:?}");
    // An ordinary name in the same directory still goes.
    w.files.insert("docs/notes.txt".into(), b"hello".to_vec());
    w.send(a, "/send bob docs/notes.txt\n");
    assert!(w.saw(a, "] notes.txt sent to bob"));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

/// found while writing the fuzz target `engine`'s limits: with `transfer_chunk_bytes` 0 an
/// upload moved empty pieces for ever (each one a `[file 1 data 0]` line to the
/// recipient) and never finished; a server-side file asked for reads of 0 bytes. A chunk
/// is now at least one byte.
#[test]
fn a_chunk_size_of_zero_still_moves_files() {
    let mut w = World::new(Config {
        transfer_chunk_bytes: 0,
        server_files: true,
        ..Config::default()
    });
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob note.txt 5\nhello");
    assert!(w.saw(a, "[file 1 done] note.txt sent to bob"));
    w.files.insert("f.txt".into(), b"abc".to_vec());
    w.send(a, "/send bob f.txt\n");
    assert!(w.saw(a, "[file 2 done] f.txt sent to bob"));
    let transcript = String::from_utf8_lossy(&w.transcript[&b]).into_owned();
    assert!(!transcript.contains(" data 0]"), "{transcript:?}");
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

/// A transfer window of 0 bytes held every upload back for ever; the engine now takes at
/// least one byte of window, as it does for the chunk size.
#[test]
fn a_transfer_window_of_zero_still_moves_files() {
    let mut w = World::new(Config {
        transfer_window_bytes: 0,
        ..Config::default()
    });
    let (a, _b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob note.txt 5\nhello");
    assert!(w.saw(a, "[file 1 done] note.txt sent to bob"));
}
