//! A blocking line client of the real server, for measurements from outside.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The password every measured account uses.
pub const PASSWORD: &str = "correct-horse-battery";

/// One logged-in connection.
pub struct Peer {
    /// For writing (and cloning into a writer thread).
    pub stream: TcpStream,
    /// For reading lines and raw bytes.
    pub reader: BufReader<TcpStream>,
}

impl Peer {
    /// Registers `name` and waits until the server has processed it.
    pub fn register(addr: SocketAddr, name: &str) -> Peer {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        // Large enough that reading a file's chunks costs the measuring side little.
        let reader = BufReader::with_capacity(256 * 1024, stream.try_clone().expect("clone"));
        let mut peer = Peer { stream, reader };
        peer.send(&format!("/register {name} {PASSWORD}\n/ping ready\n"));
        peer.wait_for("PONG ready");
        peer
    }

    /// Writes `text` as it is.
    pub fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).expect("write");
    }

    /// Reads lines until one contains `needle`; returns it.
    /// Other lines may hold raw file bytes (not UTF-8): they are skipped.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .expect("read a line");
            assert!(n > 0, "connection closed while waiting for {needle:?}");
            let text = String::from_utf8_lossy(&line);
            if text.contains(needle) {
                return text.trim_end().to_string();
            }
        }
    }
}
