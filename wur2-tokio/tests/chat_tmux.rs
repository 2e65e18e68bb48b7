//! `wur2 chat` end to end: a real `wur2` server and two full-screen clients, each in its own
//! tmux session on a private tmux socket. Keys go in with `send-keys`, the screen comes out
//! with `capture-pane`: a message typed by one person appears on the other's screen, a file
//! sent by one arrives byte-exact in the other's download directory, and both clients come
//! back by themselves after the server restarts.
//!
//! Needs `tmux` (`scripts/test.sh` installs it). Without it the test is skipped with a
//! warning, except in CI (`CI` set), where it fails.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_wur2");

/// Longest wait for anything to show on a screen.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A `wur2` server process; killed by pid when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `wur2 --listen <listen>` on the SQLite file in `dir` and waits until it listens.
    fn start(dir: &Path, listen: &str) -> Server {
        let mut child = Command::new(BINARY)
            .current_dir(dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("wur2.db").display()),
            )
            .env("RUST_LOG", "info")
            .args(["--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wur2");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(SCREEN_TIMEOUT) {
            Ok(Some(addr)) => Server { child, addr },
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("wur2 did not report its address: {other:?}");
            }
        }
    }

    /// SIGTERM, then wait for the exit (SIGKILL after the timeout).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drop kills it.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A tmux server of our own, on a socket in the test's directory; its panes' processes are
/// killed by pid and the server stopped when dropped.
struct Tmux {
    socket: PathBuf,
    sessions: Vec<String>,
}

impl Tmux {
    /// `None` when tmux is not installed.
    fn new(dir: &Path) -> Option<Tmux> {
        let found = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|out| out.status.success());
        found.then(|| Tmux {
            socket: dir.join("tmux.sock"),
            sessions: Vec::new(),
        })
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-u", "-f", "/dev/null", "-S"])
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// A new 120x36 session running `command` (through `sh -c`); the pane stays after the
    /// command ends, showing its exit status.
    fn start(&mut self, session: &str, command: &str) {
        let shell = format!("{command}; echo \"client exited: $?\"; sleep 300");
        let out = self.run(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "36",
            &shell,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        self.sessions.push(session.to_string());
    }

    /// Presses the key named `key` (tmux's names: `PPage`, `Enter`, …).
    fn press(&self, session: &str, key: &str) {
        let out = self.run(&["send-keys", "-t", session, key]);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    /// Types `text` literally, then Enter.
    fn type_line(&self, session: &str, text: &str) {
        let out = self.run(&["send-keys", "-t", session, "-l", text]);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
        let out = self.run(&["send-keys", "-t", session, "Enter"]);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    fn screen(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", session]).stdout)
            .into_owned()
    }

    /// Waits until `session`'s screen contains `needle`; panics with the screen if not.
    fn wait_for(&self, session: &str, needle: &str) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen(session);
            if screen.contains(needle) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("{session}'s screen never showed {needle:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `wur2 chat` for `user` (with `--register` when asked) in a session named
    /// after the user, and types `password` at its prompt (twice to register).
    fn chat(
        &mut self,
        user: &str,
        password: &str,
        register: bool,
        server: SocketAddr,
        downloads: &Path,
    ) {
        self.start_chat(user, register, server, downloads);
        self.wait_for(user, &format!("Password for {user}:"));
        self.type_line(user, password);
        if register {
            self.wait_for(user, "Repeat the password:");
            self.type_line(user, password);
        }
    }

    /// Starts `wur2 chat` for `user` in a session named after the user, its resume tokens
    /// kept under this tmux's directory (`XDG_STATE_HOME`).
    fn start_chat(&mut self, user: &str, register: bool, server: SocketAddr, downloads: &Path) {
        let flag = if register { " --register" } else { "" };
        let command = format!(
            "XDG_STATE_HOME='{}' '{BINARY}' chat --server {server} --user {user}{flag} \
             --download-dir '{}'",
            self.state_dir().display(),
            downloads.display()
        );
        self.start(user, &command);
    }

    /// Where the clients of this tmux keep their resume tokens.
    fn state_dir(&self) -> PathBuf {
        self.socket.with_file_name("state")
    }

    /// Registers `user` and waits until the client is online.
    fn register(&mut self, user: &str, password: &str, server: SocketAddr, downloads: &Path) {
        self.chat(user, password, true, server, downloads);
        let screen = self.wait_for(user, &format!("online | {user} (user) | Global"));
        assert!(
            !screen.contains(password),
            "the password was echoed:\n{screen}"
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        for session in &self.sessions {
            let out = self.run(&["display-message", "-p", "-t", session, "#{pane_pid}"]);
            let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !pid.is_empty() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
        let _ = self.run(&["kill-server"]);
    }
}

/// Bytes of every value, in an order that is not a simple repetition.
fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 8).wrapping_mul(13)) as u8)
        .collect()
}

/// Polls until `path` holds `len` bytes (or the timeout) and returns its contents.
fn wait_for_file(path: &Path, len: usize) -> Vec<u8> {
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        if let Ok(bytes) = std::fs::read(path)
            && bytes.len() >= len
        {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "{} never arrived with {len} bytes",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tmux server in a fresh directory, or `None` (after a warning) to skip the test.
fn tmux_or_skip(dir: &Path) -> Option<Tmux> {
    let tmux = Tmux::new(dir);
    if tmux.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "tmux is missing (scripts/test.sh installs it)"
        );
        eprintln!("warning: tmux is not installed; skipping a wur2 chat end-to-end test");
    }
    tmux
}

/// tmux servers started at the same moment by parallel tests sometimes exit at once
/// ("server exited unexpectedly"): the tests of this file take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn a_wrong_password_is_one_clear_error_before_the_screen_opens() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(mut tmux) = tmux_or_skip(dir.path()) else {
        return;
    };
    let server = Server::start(dir.path(), "127.0.0.1:0");
    let downloads = dir.path().join("downloads");
    tmux.register("carol", "carol-password", server.addr, &downloads);
    tmux.type_line("carol", "/quit");
    tmux.wait_for("carol", "client exited: 0");
    drop(tmux);

    let mut tmux = Tmux::new(dir.path()).expect("tmux was found");
    // Without the resume token the first run kept, the password is asked for.
    std::fs::remove_dir_all(tmux.state_dir()).expect("remove the kept token");
    tmux.chat("carol", "not-her-password", false, server.addr, &downloads);
    let screen = tmux.wait_for("carol", "client exited: 1");
    assert!(
        screen.contains("cannot log in") && screen.contains("invalid username or password"),
        "{screen}"
    );
    assert!(!screen.contains("not-her-password"), "{screen}");
    drop(tmux);
    server.stop();
}

#[test]
fn two_people_chat_send_a_file_and_survive_a_server_restart() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(mut tmux) = tmux_or_skip(dir.path()) else {
        return;
    };
    let server = Server::start(dir.path(), "127.0.0.1:0");
    let addr = server.addr;
    let alice_downloads = dir.path().join("alice-downloads");
    let bob_downloads = dir.path().join("bob-downloads");
    tmux.register("alice", "alice-password", addr, &alice_downloads);
    tmux.register("bob", "bob-password", addr, &bob_downloads);

    // A channel message typed by alice shows on bob's screen, with her name.
    tmux.type_line("alice", "hello from alice");
    tmux.wait_for("bob", "alice: hello from alice");
    // A private message lands in its own conversation, counted as unread.
    tmux.type_line("bob", "/msg alice a private word");
    tmux.wait_for("alice", "@bob [1]");

    // A file with every byte value goes from alice's disk to bob's download directory.
    let bytes = payload(200_000);
    let source = dir.path().join("payload.bin");
    std::fs::write(&source, &bytes).expect("write the payload");
    tmux.type_line("alice", &format!("/send bob {}", source.display()));
    tmux.wait_for("bob", "Received payload.bin from alice: all 200000 bytes");
    tmux.wait_for("alice", "payload.bin sent to bob");
    let arrived = wait_for_file(&bob_downloads.join("payload.bin"), bytes.len());
    assert!(
        arrived == bytes,
        "the received file differs from the sent one"
    );

    // The server goes away and comes back on the same address: both clients log in again.
    server.stop();
    tmux.wait_for("alice", "reconnecting");
    let server = Server::start(dir.path(), &addr.to_string());
    tmux.wait_for("alice", "Reconnected");
    tmux.wait_for("bob", "Reconnected");
    tmux.wait_for("bob", "online | bob");
    tmux.type_line("bob", "back again");
    tmux.wait_for("alice", "bob: back again");

    // /quit leaves cleanly.
    tmux.type_line("alice", "/quit");
    tmux.wait_for("alice", "client exited: 0");
    drop(tmux);
    server.stop();
}

/// Writes `count` channel messages as a new user over a plain connection, and waits until
/// the server has handled them all.
fn post_messages(server: SocketAddr, user: &str, count: usize) {
    use std::io::Write;
    let stream = std::net::TcpStream::connect(server).expect("connect");
    stream
        .set_read_timeout(Some(SCREEN_TIMEOUT))
        .expect("a read timeout");
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut script = format!("/register {user} {user}-password\n");
    for n in 0..count {
        script.push_str(&format!("old message {n:03}\n"));
    }
    script.push_str("/ping posted\n");
    writer.write_all(script.as_bytes()).expect("write");
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line == "PONG posted" => return,
            Some(Ok(_)) => {}
            other => panic!("no PONG from the server: {other:?}"),
        }
    }
}

#[test]
fn scrolling_past_the_top_loads_older_messages_from_the_server() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(mut tmux) = tmux_or_skip(dir.path()) else {
        return;
    };
    let server = Server::start(dir.path(), "127.0.0.1:0");
    // More than the 20 a login replays.
    post_messages(server.addr, "dave", 45);
    let downloads = dir.path().join("downloads");
    tmux.register("erin", "erin-password", server.addr, &downloads);
    tmux.wait_for("erin", "old message 044");
    assert!(
        !tmux.screen("erin").contains("old message 000"),
        "only the replay is shown at first"
    );
    // Up past the top: the client asks for the page before, and shows it above.
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    while !tmux.screen("erin").contains("old message 000") {
        assert!(
            Instant::now() < deadline,
            "older messages never showed:\n{}",
            tmux.screen("erin")
        );
        tmux.press("erin", "PPage");
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.type_line("erin", "/quit");
    tmux.wait_for("erin", "client exited: 0");
    drop(tmux);
    server.stop();
}

#[test]
fn the_next_start_logs_in_with_the_kept_resume_token_without_asking_the_password() {
    let _turn = take_turn();
    let dir = tempfile::tempdir().expect("temporary directory");
    let Some(mut tmux) = tmux_or_skip(dir.path()) else {
        return;
    };
    let server = Server::start(dir.path(), "127.0.0.1:0");
    let downloads = dir.path().join("downloads");
    tmux.register("fay", "fay-password", server.addr, &downloads);
    tmux.type_line("fay", "/quit");
    tmux.wait_for("fay", "client exited: 0");
    let kept: Vec<PathBuf> = walk(&tmux.state_dir());
    assert_eq!(kept.len(), 1, "one token file: {kept:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept[0])
            .expect("the token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its user only");
    }
    drop(tmux);

    let mut tmux = Tmux::new(dir.path()).expect("tmux was found");
    tmux.start_chat("fay", false, server.addr, &downloads);
    let screen = tmux.wait_for("fay", "online | fay (user) | Global");
    assert!(!screen.contains("Password for fay:"), "{screen}");
    tmux.type_line("fay", "/quit");
    tmux.wait_for("fay", "client exited: 0");
    drop(tmux);
    server.stop();
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
