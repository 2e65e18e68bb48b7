//! A large file sent to a recipient that stops reading: the server holds back the sender
//! instead of buffering, so its memory stays flat; when the recipient reads again, the
//! file arrives whole. Measured from outside, on the real binary.

#[path = "server_process/peer.rs"]
mod peer;
mod server_process;

use std::io::{BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use peer::Peer;
use server_process::ServerProcess;

/// Lines of printable text (sent as raw chunks, readable on a terminal).
fn text_file(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 80 == 79 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

#[test]
fn a_recipient_that_stops_reading_does_not_grow_server_memory_and_gets_the_file_later() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = ServerProcess::start(dir.path(), &["--flood-lines-per-second", "0"], &[]);
    let mut alice = Peer::register(server.addr, "alice");
    let mut bob = Peer::register(server.addr, "bob");
    let before = server.status_number("VmRSS:");

    let data = Arc::new(text_file(48 * 1024 * 1024));
    let written = Arc::new(AtomicU64::new(0));
    alice.send(&format!("/send bob big.txt {}\n", data.len()));
    let writer = {
        let (mut stream, data, written) = (
            alice.stream.try_clone().expect("clone"),
            Arc::clone(&data),
            Arc::clone(&written),
        );
        std::thread::spawn(move || {
            for piece in data.chunks(64 * 1024) {
                stream.write_all(piece).expect("upload");
                written.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
        })
    };

    // Bob reads nothing: the upload must stall, with the server's memory flat.
    let mut last = 0;
    let mut still_since = Instant::now();
    let mut peak = before;
    let give_up = Instant::now() + Duration::from_secs(60);
    while still_since.elapsed() < Duration::from_secs(2) {
        assert!(Instant::now() < give_up, "the upload never stalled");
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(server.status_number("VmRSS:"));
        let now = written.load(Ordering::Relaxed);
        if now != last {
            (last, still_since) = (now, Instant::now());
        }
    }
    let stalled_at = written.load(Ordering::Relaxed);
    let growth_kib = peak.saturating_sub(before);
    eprintln!(
        "upload stalled after {} KiB of {} KiB; server VmRSS {before} KiB before, peak {peak} KiB (+{growth_kib} KiB)",
        stalled_at / 1024,
        data.len() / 1024
    );
    assert!(
        stalled_at < data.len() as u64,
        "the sender is held back while bob does not read"
    );
    assert!(
        growth_kib < 8 * 1024,
        "server memory grew by {growth_kib} KiB"
    );

    // Bob reads again: everything arrives, byte-exact, and both hear it is done.
    let received = receive_text_file(&mut bob, 1);
    writer.join().expect("writer thread");
    assert!(
        received == *data,
        "the file arrived byte-exact ({} bytes)",
        received.len()
    );
    alice.wait_for("[file 1 done] big.txt sent to bob");
    server.stop();
}

/// Reads transfer `id`'s raw-text chunks (`[file <id> data <n>]`, n bytes, a line
/// break) until `[file <id> done]`, skipping other lines; returns the file's bytes.
fn receive_text_file(peer: &mut Peer, id: u64) -> Vec<u8> {
    let chunk = format!("[file {id} data ");
    let done = format!("[file {id} done]");
    let mut file = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = peer.reader.read_line(&mut line).expect("read a line");
        assert!(n > 0, "connection closed during the transfer");
        if let Some(len) = line
            .trim_end()
            .strip_prefix(&chunk)
            .and_then(|r| r.strip_suffix(']'))
        {
            let len: usize = len.parse().expect("a chunk length");
            let start = file.len();
            file.resize(start + len + 1, 0);
            peer.reader
                .read_exact(&mut file[start..])
                .expect("chunk bytes");
            assert_eq!(file.pop(), Some(b'\n'), "a chunk ends with a line break");
        } else if line.starts_with(&done) {
            return file;
        }
    }
}
