//! One 100 MiB file transfer through the real server over loopback, next to piping the
//! same bytes through one loopback TCP connection (the limit), in the same run.
//!
//! Run: `cargo bench -p wur2-tokio --bench transfer` (release build of `wur2`).

#[path = "../tests/server_process/peer.rs"]
mod peer;
#[path = "../tests/server_process/mod.rs"]
mod server_process;

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use peer::Peer;
use server_process::ServerProcess;

const SIZE: usize = 100 * 1024 * 1024;
const ROUNDS: usize = 11;

fn main() {
    let text: Vec<u8> = (0..SIZE)
        .map(|i| {
            if i % 80 == 79 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let binary: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = ServerProcess::start(dir.path(), &["--flood-lines-per-second", "0"], &[]);
    let (mut limit, mut text_runs, mut binary_runs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut text_cpu, mut binary_cpu) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS as u64 {
        limit.push(loopback(&text));
        let (time, cpu) = through_wur2(&server, &text, round * 2 + 1);
        text_runs.push(time);
        text_cpu.push(cpu);
        let (time, cpu) = through_wur2(&server, &binary, round * 2 + 2);
        binary_runs.push(time);
        binary_cpu.push(cpu);
    }
    let rss = server.status_number("VmHWM:");
    server.stop();
    let limit = median(limit);
    let rate = |d: Duration| SIZE as f64 / d.as_secs_f64() / (1024.0 * 1024.0);
    println!("100 MiB over loopback, median of {ROUNDS} interleaved rounds");
    println!(
        "  one TCP connection (the limit):  {:>6.0} MiB/s",
        rate(limit)
    );
    for (name, runs, cpu) in [
        ("wur2, text file (raw chunks)", text_runs, text_cpu),
        ("wur2, binary file (base64)", binary_runs, binary_cpu),
    ] {
        let d = median(runs);
        let ratio = limit.as_secs_f64() / d.as_secs_f64();
        println!(
            "  {name:<31} {:>6.0} MiB/s  ({ratio:.2}x the limit), server CPU {:.0} ms",
            rate(d),
            median(cpu).as_secs_f64() * 1000.0,
        );
    }
    println!("  server peak memory (VmHWM): {} MiB", rss / 1024);
}

fn median<T: Ord + Copy>(mut runs: Vec<T>) -> T {
    runs.sort();
    runs[runs.len() / 2]
}

/// Writes `data` into one loopback connection and reads it all on the other end.
fn loopback(data: &[u8]) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            for piece in data.chunks(64 * 1024) {
                stream.write_all(piece).expect("write");
            }
        });
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        while total < data.len() {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed early");
            total += n;
        }
    });
    started.elapsed()
}

/// Sends `data` from one user to another through the server; the time until the
/// recipient has every byte, and the server's CPU time meanwhile.
fn through_wur2(server: &ServerProcess, data: &[u8], id: u64) -> (Duration, Duration) {
    let mut alice = Peer::register(server.addr, &format!("sender{id}"));
    let mut bob = Peer::register(server.addr, &format!("recipient{id}"));
    let (started, cpu) = (Instant::now(), server.cpu_time());
    std::thread::scope(|scope| {
        let mut stream = alice.stream.try_clone().expect("clone");
        let header = format!("/send recipient{id} f.bin {}\n", data.len());
        scope.spawn(move || {
            stream.write_all(header.as_bytes()).expect("write");
            for piece in data.chunks(64 * 1024) {
                stream.write_all(piece).expect("upload");
            }
        });
        assert_eq!(receive_streaming(&mut bob, id), data.len());
    });
    let (elapsed, cpu) = (started.elapsed(), server.cpu_time() - cpu);
    alice.wait_for(&format!("[file {id} done]"));
    (elapsed, cpu)
}

/// Reads file `id`'s chunks until it is done, as a program streaming the file to disk
/// would, and no more (the limit's reader only reads): raw chunks pass through one
/// reusable buffer, base64 lines are checked for the length their header announces but
/// not decoded, and no line becomes a `String`. Returns the bytes the chunks carry. (The
/// end-to-end tests check transfers byte-exact.)
fn receive_streaming(peer: &mut Peer, id: u64) -> usize {
    let data = format!("[file {id} data ");
    let base64 = format!("[file {id} base64 ");
    let done = format!("[file {id} done]");
    let length = |line: &[u8], prefix: &str| -> Option<usize> {
        let rest = line.strip_prefix(prefix.as_bytes())?;
        let digits = rest.strip_suffix(b"]\n")?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let (mut line, mut sink) = (Vec::new(), vec![0u8; 256 * 1024]);
    let mut total = 0;
    loop {
        line.clear();
        let n = peer.reader.read_until(b'\n', &mut line).expect("read");
        assert!(n > 0, "connection closed during the transfer");
        if let Some(len) = length(&line, &data) {
            let (mut left, mut last) = (len + 1, 0);
            while left > 0 {
                let take = left.min(sink.len());
                peer.reader.read_exact(&mut sink[..take]).expect("chunk");
                last = sink[take - 1];
                left -= take;
            }
            assert_eq!(last, b'\n', "a chunk ends with a line break");
            total += len;
        } else if let Some(len) = length(&line, &base64) {
            line.clear();
            peer.reader
                .read_until(b'\n', &mut line)
                .expect("base64 line");
            let encoded = line.strip_suffix(b"\n").expect("a whole line");
            let padding = encoded.iter().rev().take_while(|&&b| b == b'=').count();
            assert_eq!(
                encoded.len() / 4 * 3 - padding,
                len,
                "base64 of {len} bytes"
            );
            total += len;
        } else if line.starts_with(done.as_bytes()) {
            return total;
        }
    }
}
