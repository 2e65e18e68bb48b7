//! File streaming between users, through the engine alone.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use support::{PASSWORD, World, parse_received};
use wur2_engine::{CloseReason, Config, ConnectionId};

fn world() -> World {
    World::new(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    })
}

fn every_byte_value(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

/// The recipient's whole transcript, parsed as a program would.
fn received(w: &World, connection: ConnectionId) -> support::Received {
    parse_received(w.transcript.get(&connection).map_or(&[][..], Vec::as_slice))
}

fn upload(w: &mut World, from: ConnectionId, to: &str, name: &str, data: &[u8]) {
    w.send(from, &format!("/send {to} {name} {}\n", data.len()));
    w.send_bytes(from, data);
}

#[test]
fn an_upload_arrives_byte_exact_and_both_sides_hear_it_is_done() {
    let mut w = world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    let data = every_byte_value(100_000);
    upload(&mut w, a, "bob", "blob.bin", &data);
    let got = received(&w, b);
    assert_eq!(got.files[&1], data);
    assert!(
        got.lines
            .contains(&"[file 1] alice is sending blob.bin (100000 bytes)".to_string())
    );
    assert!(
        got.lines
            .contains(&"[file 1 done] blob.bin (100000 bytes) from alice".to_string())
    );
    let sender = w.lines(a);
    assert!(sender.contains(&"[file 1] sending blob.bin (100000 bytes) to bob".to_string()));
    assert!(sender.contains(&"[file 1 done] blob.bin sent to bob".to_string()));
    let record = w
        .store
        .private_messages("bob")
        .into_iter()
        .find(|m| m.text.starts_with("[file]"));
    assert_eq!(
        record.unwrap().text,
        "[file] blob.bin (100000 bytes): completed"
    );
}

#[test]
fn a_text_file_reaches_a_person_on_nc_as_readable_text() {
    let mut w = world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.lines(b);
    upload(&mut w, a, "bob", "notes.txt", b"first line\nsecond line\n");
    let text = String::from_utf8(w.inbox.remove(&b).unwrap()).unwrap();
    assert!(
        text.contains("[file 1 data 23]\nfirst line\nsecond line\n\n"),
        "{text}"
    );
}

#[test]
fn chat_keeps_flowing_between_chunks_of_a_transfer() {
    let mut w = world();
    let (a, b, c) = (w.user("alice"), w.user("bob"), w.user("carl"));
    let data = every_byte_value(64 * 1024);
    w.send(a, &format!("/send bob big.bin {}\n", data.len()));
    for (i, piece) in data.chunks(16 * 1024).enumerate() {
        w.send_bytes(a, piece);
        w.send(c, &format!("chat {i}\n"));
    }
    let got = received(&w, b);
    assert_eq!(got.files[&1], data);
    let first_chunk = got.chunk_positions.first().unwrap().0;
    let last_chunk = got.chunk_positions.last().unwrap().0;
    let chat_between = got.lines[first_chunk..last_chunk]
        .iter()
        .filter(|l| l.contains("carl: chat"))
        .count();
    assert!(
        chat_between >= 2,
        "chat arrives during the transfer: {:?}",
        got.lines
    );
}

#[test]
fn the_line_after_an_upload_is_a_command_again() {
    let mut w = world();
    let (a, _b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob x.txt 5\nhello/ping after\n");
    assert!(w.lines(a).contains(&"PONG after".to_string()));
}

#[test]
fn refused_uploads_drop_their_bytes_instead_of_reading_them_as_commands() {
    let mut w = world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    let payload = "/msg bob injected\n";
    w.send(
        a,
        &format!(
            "/send nobody evil.txt {}\n{payload}/ping next\n",
            payload.len()
        ),
    );
    let lines = w.lines(a);
    assert!(
        lines.contains(
            &"Error: nobody is not online; the 18 bytes that follow are discarded".to_string()
        ),
        "{lines:?}"
    );
    assert!(lines.contains(&"PONG next".to_string()));
    assert!(!w.lines(b).iter().any(|l| l.contains("injected")));
}

#[test]
fn transfer_limits_are_enforced_with_clear_errors() {
    let config = Config {
        max_file_bytes: 1000,
        max_transfers_per_user: 1,
        flood_lines_per_second: 0,
        ..Config::default()
    };
    let mut w = World::new(config);
    let (a, _b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob big.bin 1000\n");
    w.send_bytes(a, &[0; 1000]);
    assert!(w.saw(a, "[file 1 done] big.bin sent to bob"));
    w.send(a, "/send alice me.txt 0\n");
    assert!(w.saw(a, "you cannot send a file to yourself"));
    w.send(a, "/send bob bad/name 3\nabc");
    assert!(w.saw(a, "file names are 1 to 255 bytes"));
    w.send(a, "/send bob one.bin 10\n");
    let other = w.login("alice");
    w.send(other, "/send bob two.bin 5\nabcde/ping x\n");
    let lines = w.lines(other);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("you already have 1 transfers running")),
        "{lines:?}"
    );
}

#[test]
fn a_slow_recipient_pauses_the_sender_instead_of_filling_memory() {
    let mut w = world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.not_reading.insert(b);
    let data = every_byte_value(2 * 1024 * 1024);
    w.send(a, &format!("/send bob big.bin {}\n", data.len()));
    // The driver reads 64 KiB at a time and stops when told to pause.
    let mut sent = 0;
    while sent < data.len() && !w.paused.contains(&a) {
        let end = (sent + 64 * 1024).min(data.len());
        w.send_bytes(a, &data[sent..end]);
        sent = end;
    }
    assert!(w.paused.contains(&a), "the sender is paused");
    assert!(sent < 512 * 1024, "paused after {sent} bytes");
    let window = w.engine.config().transfer_window_bytes;
    assert!(w.engine.queued_bytes(b) <= window + 16 * 1024 + 64);
    // The recipient reads; the sender resumes; repeat until done.
    while sent < data.len() || w.engine.queued_bytes(b) > 0 {
        w.start_reading(b);
        w.not_reading.insert(b);
        while sent < data.len() && !w.paused.contains(&a) {
            let end = (sent + 64 * 1024).min(data.len());
            w.send_bytes(a, &data[sent..end]);
            sent = end;
        }
        assert!(w.engine.queued_bytes(b) <= window + 16 * 1024 + 64);
    }
    assert_eq!(received(&w, b).files[&1], data);
    assert!(
        !w.is_closed(b),
        "the window keeps the recipient under the slow-reader limit"
    );
}

#[test]
fn the_recipient_can_cancel_and_the_rest_of_the_upload_is_dropped() {
    let mut w = world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob f.bin 100\n");
    w.send_bytes(a, &[1; 40]);
    w.send(b, "/cancel 1\n");
    assert!(w.saw(b, "[file 1 cancelled] cancelled by bob"));
    assert!(w.saw(a, "[file 1 cancelled] cancelled by bob"));
    w.send_bytes(a, &[2; 60]);
    w.send(a, "/ping ok\n");
    assert!(w.lines(a).contains(&"PONG ok".to_string()));
    assert_eq!(received(&w, b).files[&1].len(), 40);
    let record = w
        .store
        .private_messages("bob")
        .into_iter()
        .find(|m| m.text.starts_with("[file]"));
    assert!(
        record
            .unwrap()
            .text
            .ends_with("cancelled (cancelled by bob)")
    );
    w.send(b, "/cancel 1\n");
    assert!(
        w.saw(b, "no such transfer: 1"),
        "an ended transfer cannot be cancelled again"
    );
}

#[test]
fn a_stranger_cannot_cancel_someone_elses_transfer() {
    let mut w = world();
    let (a, _b, c) = (w.user("alice"), w.user("bob"), w.user("carl"));
    w.send(a, "/send bob f.bin 100\n");
    w.send(c, "/cancel 1\n");
    assert!(w.saw(c, "no such transfer: 1"));
}

#[test]
fn a_disconnect_on_either_side_ends_the_transfer_and_tells_the_other() {
    let mut w = world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob f.bin 100\n");
    w.send_bytes(a, &[1; 10]);
    w.peer_closes(b);
    assert!(w.saw(a, "[file 1 cancelled] the recipient disconnected"));
    w.send_bytes(a, &[1; 90]);
    w.send(a, "/ping ok\n");
    assert!(w.saw(a, "PONG ok"));

    let b = w.login("bob");
    w.send(a, "/send bob g.bin 100\n");
    w.send_bytes(a, &[1; 10]);
    w.peer_closes(a);
    assert!(w.saw(b, "[file 2 cancelled] the sender disconnected"));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_kicked_sender_ends_the_transfer_too() {
    let mut w = world();
    w.store.add_account("mod", PASSWORD, wur2_engine::Role::Mod);
    let (a, b, m) = (w.user("alice"), w.user("bob"), w.login("mod"));
    w.send(a, "/send bob f.bin 100\n");
    w.send(m, "/kick alice\n");
    assert!(w.saw(b, "[file 1 cancelled] the sender disconnected"));
    assert_eq!(w.closed[&a].0, CloseReason::Kicked);
}

#[test]
fn server_side_files_stream_from_the_files_directory_only() {
    let mut w = World::new(Config {
        server_files: true,
        ..Config::default()
    });
    let (a, b) = (w.user("alice"), w.user("bob"));
    let data = every_byte_value(50_000);
    w.files.insert("docs/manual.bin".into(), data.clone());
    w.send(a, "/send bob docs/manual.bin\n");
    assert!(w.saw(a, "[file 1 done] manual.bin sent to bob"));
    assert_eq!(received(&w, b).files[&1], data);
    assert!(w.open_files.is_empty(), "the file is closed when done");
    for (path, error) in [
        ("/etc/passwd", "absolute paths are not allowed"),
        ("../outside", "'..' is not allowed in paths"),
        ("docs/../../x", "'..' is not allowed in paths"),
        ("a\u{1}b", "control characters are not allowed in paths"),
        ("missing.txt", "no such file in the files directory"),
    ] {
        w.send(a, &format!("/send bob {path}\n"));
        assert!(w.saw(a, error), "{path}");
    }
    let long = "x".repeat(1100);
    w.send(a, &format!("/send bob {long}\n"));
    assert!(w.saw(a, "too long"));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn without_a_files_directory_the_server_form_says_files_are_off() {
    let mut w = world();
    let (a, _b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob notes.txt\n");
    assert!(w.saw(a, "server-side files are off on this server"));
}

#[test]
fn a_server_file_that_shrinks_while_sent_fails_cleanly() {
    let mut w = World::new(Config {
        server_files: true,
        ..Config::default()
    });
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.files.insert("f".into(), vec![7; 40_000]);
    w.store.set_holding(false);
    // Shrink the file after it was opened: the fake driver reads what is there.
    w.send(a, "/send bob f\n");
    assert!(w.saw(b, "[file 1 done]"), "a file read whole completes");
    w.files.insert("g".into(), vec![7; 400_000]);
    w.not_reading.insert(b);
    w.send(a, "/send bob g\n");
    w.files.insert("g".into(), vec![7; 10]);
    w.start_reading(b);
    assert!(w.saw(
        a,
        "[file 2 cancelled] the file changed while it was being sent"
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn an_upload_survives_any_split_of_its_bytes(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(0usize..3200, 0..8),
    ) {
        let mut w = world();
        let (a, b) = (w.user("alice"), w.user("bob"));
        let mut stream = format!("/send bob f.bin {}\n", data.len()).into_bytes();
        stream.extend_from_slice(&data);
        stream.extend_from_slice(b"/ping after\n");
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
        cuts.sort_unstable();
        let mut from = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            w.send_bytes(a, &stream[from..cut]);
            from = cut;
        }
        let got = received(&w, b);
        prop_assert_eq!(got.files.get(&1).cloned().unwrap_or_default(), data);
        prop_assert!(w.lines(a).contains(&"PONG after".to_string()));
    }
}

#[test]
fn an_upload_sent_while_the_login_is_checked_is_not_taken_for_a_flood() {
    let mut w = world();
    let b = w.user("bob");
    w.store.set_holding(true);
    let a = w.connect();
    // Binary data full of line breaks, sent right behind the login line in one piece.
    let data: Vec<u8> = (0..20_000)
        .map(|i| if i % 3 == 0 { b'\n' } else { b'x' })
        .collect();
    let login = format!("/register alice {}\n", support::PASSWORD);
    let mut stream = format!("{login}/send bob f.bin {}\n", data.len()).into_bytes();
    stream.extend_from_slice(&data);
    stream.extend_from_slice(b"/ping after\n");
    w.send_bytes(a, &stream);
    assert!(
        !w.is_closed(a),
        "waiting lines before the upload are few; the rest is file data"
    );
    w.store.set_holding(false);
    w.release_store();
    w.release_store();
    assert_eq!(received(&w, b).files[&1], data);
    assert!(w.lines(a).contains(&"PONG after".to_string()));
}

// ----- idle transfers and absurd sizes -----

/// A world whose transfers time out after a minute without progress, one per sender.
fn timed_world() -> World {
    World::new(Config {
        flood_lines_per_second: 0,
        max_transfers_per_user: 1,
        transfer_idle_timeout: Duration::from_secs(60),
        ..Config::default()
    })
}

/// The history record of the transfer to bob (there is one).
fn transfer_record(w: &World) -> String {
    w.store
        .private_messages("bob")
        .into_iter()
        .find(|m| m.text.starts_with("[file]"))
        .map(|m| m.text.clone())
        .unwrap_or_default()
}

#[test]
fn a_stalled_upload_is_cancelled_on_both_sides_after_the_idle_timeout_and_frees_its_slot() {
    let mut w = timed_world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob stalled.bin 100\n");
    w.send_bytes(a, &[1; 10]);
    w.advance(Duration::from_secs(59));
    assert!(!w.saw(a, "cancelled"), "not idle for a minute yet");
    w.advance(Duration::from_secs(1));
    let cancelled = "[file 1 cancelled] idle for 60s: the sender sent nothing";
    assert!(w.saw(a, cancelled));
    let got = received(&w, b);
    assert!(
        got.lines.contains(&cancelled.to_string()),
        "{:?}",
        got.lines
    );
    assert!(
        !got.lines.iter().any(|l| l.starts_with("[file 1 done]")),
        "the partial file is not presented as complete"
    );
    assert_eq!(got.files[&1].len(), 10);
    assert_eq!(
        transfer_record(&w),
        "[file] stalled.bin (100 bytes): cancelled (idle for 60s: the sender sent nothing)"
    );
    assert_eq!(w.engine.stats().transfers_active, 0);
    assert_eq!(w.engine.poll_timeout(), None, "no timer is left behind");

    // The slot is free again: another session of the sender starts a transfer at once.
    let other = w.login("alice");
    w.send(other, "/send bob next.txt 3\nabc");
    assert!(w.saw(other, "[file 2 done] next.txt sent to bob"));
    // The stalled connection still owes its announced bytes; they are dropped, then it
    // reads commands again.
    w.send_bytes(a, &[2; 90]);
    w.send(a, "/ping back\n");
    assert!(w.lines(a).contains(&"PONG back".to_string()));
    assert!(!w.is_closed(a));

    // With the timeout off, the same stall waits.
    let mut w = World::new(Config {
        flood_lines_per_second: 0,
        transfer_idle_timeout: Duration::ZERO,
        ..Config::default()
    });
    let (a, _b) = (w.user("alice"), w.user("bob"));
    w.send(a, "/send bob stalled.bin 100\n");
    w.advance(Duration::from_secs(3600));
    assert!(!w.saw(a, "cancelled"));
    assert_eq!(w.engine.stats().transfers_active, 1);
}

#[test]
fn progress_resets_the_idle_timer_so_a_slow_but_steady_upload_completes() {
    let mut w = timed_world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    let data = every_byte_value(100);
    w.send(a, "/send bob slow.bin 100\n");
    // Ten bytes every 50 s: 500 s in all, never a minute without progress.
    for piece in data.chunks(10) {
        w.advance(Duration::from_secs(50));
        w.send_bytes(a, piece);
    }
    assert!(w.saw(a, "[file 1 done] slow.bin sent to bob"));
    assert_eq!(received(&w, b).files[&1], data);

    // The minute counts from the last byte, not from the start.
    w.send(a, "/send bob second.bin 100\n");
    for _ in 0..3 {
        w.advance(Duration::from_secs(50));
        w.send_bytes(a, &[3; 10]);
    }
    w.advance(Duration::from_secs(59));
    assert!(!w.saw(a, "cancelled"), "59 s after the last byte");
    w.advance(Duration::from_secs(1));
    assert!(w.saw(
        a,
        "[file 2 cancelled] idle for 60s: the sender sent nothing"
    ));
}

#[test]
fn an_upload_announcing_more_than_the_file_limit_gets_an_error_and_a_close_at_once() {
    let mut w = world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.lines(a);
    w.lines(b);
    // Everything in one read: the line before is answered, the close comes right at the
    // `/send` line, and what follows is neither run nor swallowed waiting for bytes.
    w.send(
        a,
        &format!(
            "/ping before\n/send bob huge.bin {}\n/ping after\n",
            u64::MAX
        ),
    );
    let lines = w.lines(a);
    assert_eq!(
        lines,
        vec![
            "PONG before".to_string(),
            format!(
                "Error: file too large (max 104857600 bytes); closing the connection rather \
                 than reading the {} bytes announced",
                u64::MAX
            ),
        ]
    );
    assert_eq!(w.closed[&a], (CloseReason::UploadTooLarge, true));
    assert!(!w.saw(b, "huge.bin"), "the recipient hears of no transfer");
    assert!(w.violations.is_empty(), "{:?}", w.violations);

    // Just above the limit is the same; at the limit, a refusal still drops the bytes.
    let mut w = World::new(Config {
        max_file_bytes: 1000,
        flood_lines_per_second: 0,
        ..Config::default()
    });
    let a = w.user("alice");
    w.send(a, "/send nobody big.bin 1001\n");
    assert!(w.saw(a, "file too large (max 1000 bytes)"));
    assert_eq!(w.closed[&a].0, CloseReason::UploadTooLarge);
    let a = w.login("alice");
    w.send(a, "/send nobody big.bin 1000\n");
    assert!(w.saw(
        a,
        "nobody is not online; the 1000 bytes that follow are discarded"
    ));
    w.send_bytes(a, &[b'/'; 1000]);
    w.send(a, "/ping still here\n");
    assert!(w.lines(a).contains(&"PONG still here".to_string()));
}

#[test]
fn a_server_file_whose_recipient_never_reads_is_cancelled_when_idle() {
    let mut w = World::new(Config {
        server_files: true,
        max_transfers_per_user: 1,
        transfer_idle_timeout: Duration::from_secs(60),
        ..Config::default()
    });
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.files.insert("big.bin".into(), vec![7; 1024 * 1024]);
    w.files.insert("small.txt".into(), b"hello\n".to_vec());
    w.not_reading.insert(b);
    w.send(a, "/send bob big.bin\n");
    assert!(w.saw(a, "[file 1] sending big.bin"));
    w.advance(Duration::from_secs(60));
    assert!(w.saw(
        a,
        "[file 1 cancelled] idle for 60s: the recipient read nothing"
    ));
    assert!(w.open_files.is_empty(), "the file is closed");
    w.start_reading(b);
    let got = received(&w, b);
    assert!(
        got.lines
            .contains(&"[file 1 cancelled] idle for 60s: the recipient read nothing".to_string())
    );
    assert!(got.files[&1].len() < 1024 * 1024);
    // The sender's only slot is free again.
    w.send(a, "/send bob small.txt\n");
    assert!(w.saw(a, "[file 2 done] small.txt sent to bob"));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn an_upload_whose_recipient_never_reads_is_cancelled_and_its_sender_reads_again() {
    let mut w = timed_world();
    let (a, b) = (w.user("alice"), w.user("bob"));
    w.not_reading.insert(b);
    let size = 1024 * 1024;
    w.send(a, &format!("/send bob big.bin {size}\n"));
    let mut sent = 0;
    while !w.paused.contains(&a) {
        w.send_bytes(a, &[b'x'; 64 * 1024]);
        sent += 64 * 1024;
    }
    w.advance(Duration::from_secs(60));
    assert!(w.saw(
        a,
        "[file 1 cancelled] idle for 60s: the recipient read nothing"
    ));
    assert!(!w.paused.contains(&a), "the sender is read again");
    // What it still owes is dropped, then its lines are commands again.
    w.send_bytes(a, &vec![b'x'; size - sent]);
    w.send(a, "/ping free\n");
    assert!(w.lines(a).contains(&"PONG free".to_string()));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_paused_sender_is_read_again_when_the_recipient_cancels_or_leaves() {
    for leaves in [false, true] {
        let mut w = world();
        let (a, b) = (w.user("alice"), w.user("bob"));
        w.not_reading.insert(b);
        let size = 1024 * 1024;
        w.send(a, &format!("/send bob big.bin {size}\n"));
        let mut sent = 0;
        while !w.paused.contains(&a) {
            w.send_bytes(a, &[b'x'; 64 * 1024]);
            sent += 64 * 1024;
        }
        if leaves {
            w.peer_closes(b);
        } else {
            w.send(b, "/cancel 1\n");
        }
        assert!(w.saw(a, "[file 1 cancelled]"));
        assert!(
            !w.paused.contains(&a),
            "the sender is read again (leaves: {leaves})"
        );
        w.send_bytes(a, &vec![b'x'; size - sent]);
        w.send(a, "/ping free\n");
        assert!(w.lines(a).contains(&"PONG free".to_string()));
        assert!(w.violations.is_empty(), "{:?}", w.violations);
    }
}
