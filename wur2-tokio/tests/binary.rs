//! The real `wur2` binary: chat through it, the operator subcommands on its database,
//! SIGTERM, a restart on the same database, and one-line errors for bad configuration.

#[path = "server_process/peer.rs"]
mod peer;
mod server_process;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use peer::Peer;
use server_process::{BINARY, ServerProcess, address_after};
use wur2_testkit::scenarios::{self, Client, Event, Mode, unique};
use wur2_testkit::{TEST_TIMEOUT, Target, databases};

/// A command for the binary that reads no `.env` of the repository and uses `url`.
fn wur2(dir: &Path, url: &str) -> Command {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

/// Starts `wur2 --listen 127.0.0.1:0 <args>` on the database `url` and waits until it
/// listens.
fn start(dir: &Path, url: &str, args: &[&str]) -> ServerProcess {
    ServerProcess::start(dir, args, &[("DATABASE_URL", url), ("RUST_LOG", "info")])
}

/// Runs an operator subcommand to completion.
fn operator(dir: &Path, url: &str, args: &[&str]) -> Output {
    let child = wur2(dir, url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wur2");
    wait_output(child, Duration::from_secs(30))
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wur2 did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_chat_operator_commands_sigterm_and_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for db in databases().await {
        let url = db.url.clone();
        // The scenarios register many accounts from 127.0.0.1.
        let flags = [
            "--flood-lines-per-second",
            "0",
            "--max-registrations-per-ip",
            "0",
        ];
        let mut server = start(dir.path(), &url, &flags);
        let addr = Target::plain(server.addr);
        tokio::time::timeout(TEST_TIMEOUT, async {
            for mode in Mode::ALL {
                scenarios::every_command_with_three_clients(addr, mode).await;
            }
            scenarios::every_login_path(addr, Mode::Text).await;

            // `wur2 role` on the live server's database, then /kick.
            let grant = |user: String| {
                let (dir, url) = (dir.path().to_path_buf(), url.clone());
                async move {
                    let out = tokio::task::spawn_blocking(move || {
                        operator(&dir, &url, &["role", &user, "mod"])
                    })
                    .await
                    .expect("operator task");
                    let stdout = String::from_utf8_lossy(&out.stdout);
                    assert!(
                        out.status.success(),
                        "{stdout} {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert!(stdout.contains("is now mod"), "{stdout}");
                }
            };
            scenarios::kick_closes_every_session_of_the_target(addr, Mode::Text, grant).await;
        })
        .await
        .unwrap_or_else(|_| panic!("scenarios timed out on {}", db.label));

        let users = operator(dir.path(), &url, &["users"]);
        assert!(users.status.success());
        let listed = String::from_utf8_lossy(&users.stdout);
        assert!(
            listed.lines().any(|line| line.ends_with("\tmod")),
            "{listed}"
        );

        let unknown = operator(dir.path(), &url, &["role", &unique("nobody"), "admin"]);
        assert!(!unknown.status.success());
        let said = String::from_utf8_lossy(&unknown.stderr);
        assert!(
            said.contains("wur2: error:") && said.contains("no such user"),
            "{said}"
        );

        // Before SIGTERM: history to find after the restart, and a client who is told.
        let kept = scenarios::restart_before(addr, Mode::Text).await;
        let mut watcher = Client::register(addr, Mode::Text, &unique("wt")).await;
        watcher.barrier().await;
        let stopping =
            tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(20)));
        let last = watcher.expect_closed().await;
        assert!(last.contains(&Event::Shutdown), "{last:#?}");
        let status = stopping.await.expect("terminate task");
        assert!(status.success(), "wur2 exits 0 after SIGTERM: {status}");

        let mut server = start(dir.path(), &url, &[]);
        tokio::time::timeout(
            TEST_TIMEOUT,
            scenarios::restart_after(Target::plain(server.addr), Mode::Text, kept),
        )
        .await
        .unwrap_or_else(|_| panic!("restart scenario timed out on {}", db.label));
        let status = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(20)))
            .await
            .expect("terminate task");
        assert!(status.success());
    }
}

/// A client of the crash test: logged in, its lines read by a thread that keeps every chat
/// text it receives until the connection ends.
struct CrashClient {
    writer: std::net::TcpStream,
    received: std::thread::JoinHandle<Vec<String>>,
}

impl CrashClient {
    fn join(addr: SocketAddr) -> CrashClient {
        use std::io::Write;
        let mut writer = std::net::TcpStream::connect(addr).expect("connect");
        let name = unique("kill");
        let hello = format!("/register {name} correct-horse-battery\n/ping ready\n");
        writer.write_all(hello.as_bytes()).expect("register");
        let mut reader = BufReader::new(writer.try_clone().expect("clone"));
        let mut line = String::new();
        while !line.starts_with("PONG ready") {
            line.clear();
            let read = reader.read_line(&mut line).expect("read");
            assert!(read > 0, "closed before logging in");
        }
        let received = std::thread::spawn(move || {
            // `[Global] <user>: kill-<sender>-<n>`; ends when the server dies.
            let texts = reader.lines().map_while(Result::ok);
            texts
                .filter_map(|line| Some(line.split(": ").nth(1)?.to_owned()))
                .filter(|text| text.starts_with("kill-"))
                .collect()
        });
        CrashClient { writer, received }
    }
}

/// `kill -9` in the middle of a message stream loses nothing anyone saw: a message is
/// delivered only once committed, so every line any client received is in history after
/// the crash, exactly once (on SQLite and PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_message_a_client_received_is_in_history_exactly_once() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temporary directory");
    for db in databases().await {
        let args = [
            "--flood-lines-per-second",
            "0",
            "--max-registrations-per-ip",
            "0",
        ];
        let mut server = start(dir.path(), &db.url, &args);
        let addr = server.addr;
        let clients: Vec<CrashClient> = (0..5).map(|_| CrashClient::join(addr)).collect();
        let mut senders = Vec::new();
        for (number, client) in clients.iter().take(3).enumerate() {
            let mut writer = client.writer.try_clone().expect("clone");
            senders.push(std::thread::spawn(move || {
                for n in 0..1_000_000 {
                    let line = format!("kill-{number}-{n}\n");
                    if writer.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.kill();
        for sender in senders {
            sender.join().expect("sender thread");
        }
        let mut received = Vec::new();
        for client in clients {
            let texts = client.received.join().expect("reader thread");
            let distinct: std::collections::HashSet<&String> = texts.iter().collect();
            assert_eq!(distinct.len(), texts.len(), "a client got a message twice");
            received.extend(texts);
        }
        assert!(
            received.len() > 100,
            "too little traffic to test: {}",
            received.len()
        );

        let (store, writer) = wur2_store::Store::open(&db.url, Default::default())
            .await
            .expect("open the store after the crash");
        let writer = tokio::spawn(writer.run());
        let history = wur2_engine::StoreRequest::FetchHistory {
            channel: "Global".into(),
            limit: 10_000_000,
            before: None,
        };
        let wur2_engine::StoreReply::History(stored) = store.execute(history).await else {
            panic!("history after the crash on {}", db.label)
        };
        let mut copies = std::collections::HashMap::new();
        for message in &stored {
            *copies.entry(message.text.as_str()).or_insert(0) += 1;
        }
        let missing: Vec<&String> = received
            .iter()
            .filter(|text| copies.get(text.as_str()) != Some(&1))
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} received messages are not in {}'s history exactly once: {:?}",
            missing.len(),
            received.len(),
            db.label,
            &missing[..missing.len().min(10)]
        );
        store.close().await;
        writer.await.expect("writer task");
    }
}

/// Runs the binary expecting a configuration error: non-zero exit, no panic, one error
/// line naming the problem.
fn assert_fails_clearly(dir: &Path, url: &str, args: &[&str], needle: &str) {
    let child = wur2(dir, url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wur2");
    let out = wait_output(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("wur2: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(needle), "{stderr}");
}

/// A log nobody reads (stderr a pipe left full, as behind a stuck log collector) does not
/// stop the server: its log lines are written by a thread of their own, and dropped once
/// too many wait. Written on the runtime's threads, the first line beyond the pipe's 64 KiB
/// would block every connection.
#[test]
fn a_server_whose_log_nobody_reads_keeps_serving() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let mut child = wur2(dir.path(), &url)
        .env("WUR2_MAX_REGISTRATIONS_PER_MINUTE", "0")
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wur2");
    let mut log = BufReader::new(child.stderr.take().expect("piped stderr"));
    // Read up to where it listens; never again.
    let addr = loop {
        let mut line = String::new();
        let read = log.read_line(&mut line).expect("read the log");
        assert!(read > 0, "wur2 ended before it listened");
        if let Some(addr) = address_after(&line, "listening on ") {
            break addr;
        }
    };
    // Every connection logs a line of ~100 bytes as it comes and one as it goes: ~1 MiB in
    // all, far more than the pipe holds.
    for _ in 0..5_000 {
        drop(std::net::TcpStream::connect(addr).expect("connect"));
    }
    let mut alice = Peer::register(addr, "alice");
    let mut bob = Peer::register(addr, "bob");
    alice.send("still here with nobody reading the log\n");
    bob.wait_for("still here with nobody reading the log");
    let _ = child.kill();
    let _ = child.wait();
    // The pipe was full (64 KiB on Linux): the log did stop taking lines.
    let mut unread = Vec::new();
    log.read_to_end(&mut unread)
        .expect("read what the log left");
    assert!(
        unread.len() >= 60 * 1024,
        "only {} bytes of log: the pipe never filled",
        unread.len()
    );
}

/// Room for every allowed connection's descriptor is made before the first client comes:
/// growing the table later makes an `accept` wait for the kernel (milliseconds), and every
/// connection served by that thread with it.
#[test]
fn the_server_makes_room_for_its_connections_descriptors_at_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let server = start(dir.path(), &url, &["--max-connections", "3000"]);
    // The server inherits this process's limit on open files.
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read limits");
    let soft_limit: u64 = limits
        .lines()
        .find_map(|line| {
            line.strip_prefix("Max open files")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("a limit on open files");
    let highest = (2 * 3000 + 1024).min(soft_limit - 1);
    let table = server.status_number("FDSize:");
    assert!(table > highest, "room for {highest} descriptors: {table}");
}

#[test]
fn a_taken_port_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    assert_fails_clearly(dir.path(), &url, &["--listen", &addr], "cannot listen on");
}

#[test]
fn an_unreadable_files_dir_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let missing = dir.path().join("no-such-dir");
    let missing = missing.to_str().expect("utf-8 path");
    let args = ["--listen", "127.0.0.1:0", "--files-dir", missing];
    assert_fails_clearly(dir.path(), &url, &args, "--files-dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").expect("write a file");
    let file = file.to_str().expect("utf-8 path");
    let args = ["--listen", "127.0.0.1:0", "--files-dir", file];
    assert_fails_clearly(dir.path(), &url, &args, "not a directory");
}

#[test]
fn an_unreachable_database_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Nothing listens on port 1 of the loopback interface.
    let url = "postgres://wur2:secret@127.0.0.1:1/wur2";
    assert_fails_clearly(
        dir.path(),
        url,
        &["--listen", "127.0.0.1:0"],
        "cannot open the database",
    );
    let out = operator(dir.path(), url, &["users"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("secret"),
        "the password leaked"
    );
}

#[test]
fn the_default_database_is_a_file_in_the_working_directory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(BINARY)
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .arg("users")
        .output()
        .expect("run wur2 users");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("wur2.db").exists());
}

/// Sends one HTTP request to `addr` and reads the answer's head (the status line and
/// headers), or `None` while nothing listens there yet.
fn http_head(addr: &str, request: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn web_listen_serves_the_web_client_and_allows_the_origins_it_is_given() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .to_string();
    let args = [
        "--web-listen",
        &web,
        "--web-allowed-origin",
        "https://chat.example.org",
    ];
    let server = start(dir.path(), &url, &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        if let Some(head) = http_head(&web, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") {
            break head;
        }
        assert!(Instant::now() < deadline, "the web listener never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    let upgrade = |origin: &str| {
        http_head(
            &web,
            &format!(
                "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
            ),
        )
        .expect("an answer")
    };
    assert!(upgrade("https://chat.example.org").starts_with("HTTP/1.1 101 "));
    assert!(upgrade(&format!("http://{web}")).starts_with("HTTP/1.1 101 "));
    assert!(upgrade("http://evil.example").starts_with("HTTP/1.1 403 "));
    server.stop();
}
