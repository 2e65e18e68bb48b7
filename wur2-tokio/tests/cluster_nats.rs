//! Cluster mode end to end: real `wur2` processes on one PostgreSQL database and one NATS
//! server, clients on real sockets to different nodes. Needs `WUR2_TEST_POSTGRES_URL`
//! (`scripts/postgres.sh`) and `WUR2_TEST_NATS_URL` (`scripts/nats.sh`); without them the
//! tests say loudly that they skip. Each test has its own database and its own NATS
//! subjects (`--cluster-subject-prefix`), so they run side by side.

mod server_process;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use server_process::{BINARY, ServerProcess};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wur2_testkit::scenarios::{Client, Event, Mode, Peer, receive_file, unique};
use wur2_testkit::{Target, TestDb, databases};

/// Starts node `name` of the cluster on `nats` with subjects under `prefix`, on the
/// database `url` (with its metrics listener); waits until it listens.
fn node(dir: &Path, url: &str, nats: &str, prefix: &str, name: &str) -> ServerProcess {
    let args = [
        "--metrics-listen",
        "127.0.0.1:0",
        "--flood-lines-per-second",
        "0",
        "--max-registrations-per-ip",
        "0",
        "--cluster",
        nats,
        "--node-name",
        name,
        "--cluster-subject-prefix",
        prefix,
    ];
    ServerProcess::start(dir, &args, &[("DATABASE_URL", url), ("RUST_LOG", "info")])
}

/// Where a node serves chat.
fn target(node: &ServerProcess) -> Target {
    Target::plain(node.addr)
}

/// Where a node serves metrics and health.
fn metrics(node: &ServerProcess) -> SocketAddr {
    node.metrics.expect("started with --metrics-listen")
}

/// What every cluster test needs: a fresh PostgreSQL database and the shared NATS server;
/// `None` (said loudly) when either is not configured.
async fn cluster_world(test: &str) -> Option<(TestDb, String)> {
    let nats = std::env::var("WUR2_TEST_NATS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let db = databases()
        .await
        .into_iter()
        .find(|db| db.label == "postgres");
    match (db, nats) {
        (Some(db), Some(nats)) => Some((db, nats)),
        (db, nats) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "{test}: PostgreSQL and NATS must be set up in CI (scripts/postgres.sh, scripts/nats.sh)"
            );
            eprintln!(
                "SKIPPED {test}: needs WUR2_TEST_POSTGRES_URL (set: {}) and WUR2_TEST_NATS_URL \
                 (set: {}); source scripts/postgres.sh and scripts/nats.sh",
                db.is_some(),
                nats.is_some()
            );
            None
        }
    }
}

/// Two nodes, `a` and `b`, with alice logged in on `a` and bob on `b`, each seeing the
/// other listed.
struct Pair {
    /// The test's database, kept for the nodes' lifetime (never dropped: see TestDb).
    _db: TestDb,
    _dir: tempfile::TempDir,
    /// Node a, running for the pair's lifetime.
    _a: ServerProcess,
    b: ServerProcess,
    alice: String,
    bob: String,
    alice_a: Client,
    bob_b: Client,
}

impl Pair {
    /// `None` (after saying so) without PostgreSQL and NATS.
    async fn start(test: &str) -> Option<Pair> {
        let (db, nats) = cluster_world(test).await?;
        let dir = tempfile::tempdir().expect("temporary directory");
        let prefix = unique("t");
        let a = node(dir.path(), &db.url, &nats, &prefix, "a");
        let b = node(dir.path(), &db.url, &nats, &prefix, "b");
        let (alice, bob) = (unique("al"), unique("bo"));
        let mut alice_a = Client::register(target(&a), Mode::Text, &alice).await;
        let bob_b = Client::register(target(&b), Mode::Text, &bob).await;
        wait_listed(&mut alice_a, &[&alice, &bob]).await;
        Some(Pair {
            _db: db,
            _dir: dir,
            _a: a,
            b,
            alice,
            bob,
            alice_a,
            bob_b,
        })
    }
}

/// Asks `/list` until `present` says the users listed are as wanted.
async fn wait_list(client: &mut Client, what: &str, present: impl Fn(&[String]) -> bool) {
    client
        .list_until(what, Duration::from_secs(15), present)
        .await;
}

async fn wait_listed(client: &mut Client, users: &[&str]) {
    wait_list(client, "all listed", |listed| {
        users.iter().all(|user| listed.iter().any(|l| l == user))
    })
    .await;
}

/// One HTTP GET: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (code, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_message_reaches_every_other_node_once_and_is_in_history_once() {
    let Some((db, nats)) = cluster_world("channel messages").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let prefix = unique("t");
    let nodes: Vec<ServerProcess> = ["a", "b", "c"]
        .iter()
        .map(|name| node(dir.path(), &db.url, &nats, &prefix, name))
        .collect();
    let (alice, bob, carol) = (unique("al"), unique("bo"), unique("ca"));
    let mut alice_a = Client::register(target(&nodes[0]), Mode::Text, &alice).await;
    let mut bob_b = Client::register(target(&nodes[1]), Mode::Json, &bob).await;
    let mut carol_c = Client::register(target(&nodes[2]), Mode::Text, &carol).await;
    for client in [&mut alice_a, &mut bob_b, &mut carol_c] {
        wait_listed(client, &[&alice, &bob, &carol]).await;
    }

    alice_a.send("hello, cluster").await;
    let hello = Event::message("Global", &alice, "hello, cluster");
    alice_a.send("second").await;
    let second = Event::message("Global", &alice, "second");
    assert_eq!(bob_b.count_until(&hello, second.clone()).await, 1);
    assert_eq!(carol_c.count_until(&hello, second).await, 1);

    // History is the store's: a message stored once is replayed once (at login), on any
    // node.
    let mut dave_b = Client::register(target(&nodes[1]), Mode::Text, &unique("da")).await;
    let replayed = |text: &str| Event::history("Global", &alice, text);
    assert_eq!(
        dave_b
            .count_until(&replayed("hello, cluster"), replayed("second"))
            .await,
        1
    );
    let after = dave_b.barrier().await;
    assert!(
        !after
            .iter()
            .any(|event| matches!(event, Event::History { .. })),
        "history is replayed once: {after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_channels_and_join_leave_notices_count_the_users_of_every_node() {
    let Some((db, nats)) = cluster_world("presence").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let prefix = unique("t");
    let a = node(dir.path(), &db.url, &nats, &prefix, "a");
    let b = node(dir.path(), &db.url, &nats, &prefix, "b");
    let (alice, amy, bob) = (unique("al"), unique("am"), unique("bo"));
    let mut alice_a = Client::register(target(&a), Mode::Text, &alice).await;
    let mut amy_a = Client::register(target(&a), Mode::Text, &amy).await;
    let mut bob_b = Client::register(target(&b), Mode::Text, &bob).await;
    wait_listed(&mut bob_b, &[&alice, &amy, &bob]).await;
    // Everyone who logged in on a was announced on b, once each.
    let channels = bob_b.channels().await;
    assert!(
        channels.contains(&("Global".to_owned(), 3)),
        "b counts a's users in Global: {channels:?}"
    );

    // A move on a is a departure and an arrival on b.
    alice_a.send("/join Lounge").await;
    bob_b
        .expect(Event::Part {
            user: alice.clone(),
            channel: "Global".into(),
        })
        .await;
    bob_b.send("/join Lounge").await;
    alice_a
        .expect(Event::Join {
            user: bob.clone(),
            channel: "Lounge".into(),
        })
        .await;
    let channels = amy_a.channels().await;
    assert!(
        channels.contains(&("Lounge".to_owned(), 2))
            && channels.contains(&("Global".to_owned(), 1)),
        "a counts b's user in Lounge: {channels:?}"
    );
    bob_b.send("in the lounge").await;
    alice_a
        .expect(Event::message("Lounge", &bob, "in the lounge"))
        .await;

    // A private message to a user on another node is shown to them live.
    bob_b.send(&format!("/msg {amy} psst")).await;
    amy_a.expect(Event::dm(&bob, "psst", false)).await;

    // A user who closes on b leaves a's lists and channel.
    bob_b.send("/close").await;
    bob_b.expect_closed().await;
    alice_a
        .expect(Event::Part {
            user: bob.clone(),
            channel: "Lounge".into(),
        })
        .await;
    wait_list(&mut amy_a, "without bob", |users| !users.contains(&bob)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_killed_node_leave_the_other_nodes_within_seven_seconds() {
    let Some(pair) = Pair::start("node loss").await else {
        return;
    };
    let Pair {
        mut b,
        alice,
        bob,
        mut alice_a,
        ..
    } = pair;

    b.kill();
    let killed = Instant::now();
    alice_a
        .expect(Event::Part {
            user: bob.clone(),
            channel: "Global".into(),
        })
        .await;
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(7), "bob left after {took:?}");
    let users = alice_a.users().await;
    assert!(!users.contains(&bob), "{users:?}");
    assert!(users.contains(&alice), "{users:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_node_stopped_with_sigterm_leave_the_other_nodes_lists_at_once() {
    let Some(pair) = Pair::start("graceful stop").await else {
        return;
    };
    let Pair {
        mut b,
        bob,
        mut alice_a,
        mut bob_b,
        ..
    } = pair;

    let stopping = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = b.terminate(Duration::from_secs(20));
        (status, b)
    });
    assert!(bob_b.expect_closed().await.contains(&Event::Shutdown));
    // A shutdown's departures are published at once, with their "left" notices: nobody
    // waits for the node timeout.
    alice_a
        .expect(Event::Part {
            user: bob.clone(),
            channel: "Global".into(),
        })
        .await;
    wait_list(&mut alice_a, "without bob", |users| !users.contains(&bob)).await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "a stopping node's users leave without waiting for the node timeout: {took:?}"
    );
    let (status, _b) = status.await.expect("terminate task");
    assert!(status.success(), "wur2 exits 0 after SIGTERM: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_byte_exact_to_a_user_on_another_node_in_text_and_json() {
    let Some(pair) = Pair::start("file between nodes").await else {
        return;
    };
    let Pair {
        b,
        alice,
        bob,
        mut alice_a,
        mut bob_b,
        ..
    } = pair;
    // Four times the transfer window, every byte value: the recipient's node paces the
    // sender through NATS, and text mode sends binary chunks as base64.
    let content: Vec<u8> = (0..1_048_576u32).map(|n| (n % 251) as u8).collect();
    let mut json_b = Client::register(target(&b), Mode::Json, &unique("js")).await;
    wait_listed(&mut alice_a, &[&bob, &json_b.name]).await;
    for recipient in [&mut bob_b, &mut json_b] {
        let name = recipient.name.clone();
        let mut upload = format!("/send {name} big.bin {}\n", content.len()).into_bytes();
        upload.extend_from_slice(&content);
        let receiving = receive_file(recipient, None, &alice, "big.bin");
        let ((), received) = tokio::join!(alice_a.send_raw(&upload), receiving);
        assert_eq!(received.len(), content.len());
        assert!(received == content, "the file arrived changed for {name}");
        alice_a
            .expect_with("the sender's done line", |event| {
                matches!(
                    event,
                    Event::FileDone { name: file, peer: Peer::To(to), .. }
                        if file == "big.bin" && *to == name
                )
                .then_some(())
            })
            .await;
    }
    // The sender's connection reads lines again.
    alice_a.barrier().await;
}

/// A NATS server of the test's own, on a fixed port so it can come back there.
struct OwnNats {
    child: Child,
    port: u16,
}

impl OwnNats {
    /// Starts `server` on `port`, logging into `dir`.
    fn start(server: &str, port: u16, dir: &Path) -> OwnNats {
        let child = Command::new(server)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-l")
            .arg(dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnNats { child, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops it abruptly (by its own pid).
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_nats_restart_local_chat_goes_on_and_cross_node_chat_resumes_by_itself() {
    let Some((db, _shared)) = cluster_world("NATS restart").await else {
        return;
    };
    let Ok(server) = std::env::var("WUR2_TEST_NATS_SERVER") else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "WUR2_TEST_NATS_SERVER must be set in CI (scripts/nats.sh)"
        );
        eprintln!("SKIPPED NATS restart: WUR2_TEST_NATS_SERVER is not set (scripts/nats.sh)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let nats_dir = tempfile::tempdir().expect("temporary directory");
    let nats = OwnNats::start(&server, port, nats_dir.path());
    let dir = tempfile::tempdir().expect("temporary directory");
    let a = node(dir.path(), &db.url, &nats.url(), "wur2", "a");
    let b = node(dir.path(), &db.url, &nats.url(), "wur2", "b");
    let (alice, amy, bob) = (unique("al"), unique("am"), unique("bo"));
    let mut alice_a = Client::register(target(&a), Mode::Text, &alice).await;
    let mut amy_a = Client::register(target(&a), Mode::Text, &amy).await;
    let mut bob_b = Client::register(target(&b), Mode::Text, &bob).await;
    wait_listed(&mut bob_b, &[&alice, &amy, &bob]).await;
    assert_eq!(get(metrics(&a), "/healthz").await, (200, "ok\n".to_owned()));

    nats.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = get(metrics(&a), "/healthz").await;
        if body.starts_with("degraded: cluster bus down") {
            assert_eq!(code, 200, "a node without its bus still serves its users");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "healthz never said degraded: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Local chat does not wait for the bus.
    alice_a.send("while the bus is down").await;
    amy_a
        .expect(Event::message("Global", &alice, "while the bus is down"))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let _nats = OwnNats::start(&server, port, nats_dir.path());
    // What alice said while the bus was down waited for it, and comes first.
    bob_b
        .expect(Event::message("Global", &alice, "while the bus is down"))
        .await;
    alice_a.send("after the restart").await;
    bob_b
        .expect(Event::message("Global", &alice, "after the restart"))
        .await;
    bob_b.send("heard you").await;
    alice_a
        .expect(Event::message("Global", &bob, "heard you"))
        .await;
    wait_listed(&mut bob_b, &[&alice, &amy, &bob]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(metrics(&a), "/healthz").await != (200, "ok\n".to_owned()) {
        assert!(Instant::now() < deadline, "healthz never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = get(metrics(&a), "/metrics").await;
    assert!(metrics.contains("\nwur2_bus_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("\nwur2_bus_dropped_total 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\nwur2_peers 1\n"), "{metrics}");
}

/// A PostgreSQL server of the test's own, made by `initdb` in a temporary directory and
/// served on a fixed port so it comes back there after a crash: the shared server, which
/// other tests use, is never stopped. Its programs run as the `postgres` user when the
/// test runs as root (PostgreSQL refuses to run as root).
struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    /// The server programs (`initdb`, `pg_ctl`) of the newest PostgreSQL installed the
    /// Debian way, under `/usr/lib/postgresql/<version>/bin`.
    fn programs() -> Option<PathBuf> {
        let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
        versions
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version: u32 = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                (bin.join("initdb").exists() && bin.join("pg_ctl").exists())
                    .then_some((version, bin))
            })
            .max()
            .map(|(_, bin)| bin)
    }

    /// A fresh database cluster (trusting connections from this host) served on `port`.
    fn start(bin: PathBuf, port: u16) -> OwnPostgres {
        let dir = tempfile::tempdir().expect("temporary directory");
        if as_root() {
            let owned = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .expect("run chown");
            assert!(owned.success(), "chown postgres {}", dir.path().display());
        }
        let postgres = OwnPostgres { bin, dir, port };
        let data = postgres.data();
        let data = data.to_string_lossy();
        postgres.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        postgres.serve();
        postgres
    }

    /// Its data directory.
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The command that runs `program` of the server's, as `postgres` when the test is
    /// root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match as_root() {
            true => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(path);
                command
            }
            false => Command::new(path),
        };
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        command
    }

    /// Runs `program` with `args`; it must succeed.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server on its port (listening on 127.0.0.1 only, its socket in its
    /// directory) and waits until it accepts connections.
    fn serve(&self) {
        let (data, log) = (self.data(), self.dir.path().join("postgres.log"));
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let (data, log) = (data.to_string_lossy(), log.to_string_lossy());
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
    }

    /// Stops the server the way a crash would: `pg_ctl stop -m immediate` (every server
    /// process quits at once, without a checkpoint; the next start recovers from the WAL).
    fn crash(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// The `postgres` database, as its superuser, over TCP.
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether this test process runs as root.
fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|proc| proc.uid() == 0)
}

/// A port no one listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until `done` holds, checking every 10 ms for up to 15 s.
async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads `client`'s events up to `last` (expected); returns them, `last` included.
async fn events_until(client: &mut Client, last: Event) -> Vec<Event> {
    let mut events = Vec::new();
    let wanted = last.portable();
    client
        .expect_with(format_args!("{last:?}"), |event| {
            events.push(event.clone());
            (event.portable() == wanted).then_some(())
        })
        .await;
    events
}

/// The numbers `n` of `from`'s channel messages `<prefix> <n>` in `events`, in the order
/// they came.
fn numbered(events: &[Event], from: &str, prefix: &str) -> Vec<usize> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Message {
                from: sender, text, ..
            } if sender == from => text.strip_prefix(prefix)?.trim().parse().ok(),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_postgres_crash_every_message_is_acknowledged_delivered_and_stored_once() {
    let test = "PostgreSQL crash";
    let nats = std::env::var("WUR2_TEST_NATS_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let programs = OwnPostgres::programs();
    let (Some(nats), Some(bin)) = (nats.clone(), programs.clone()) else {
        // Required in CI, and wherever the PostgreSQL and NATS tests run (both URLs set):
        // then missing programs are a failure, not a skip.
        let in_ci = std::env::var("CI").as_deref() == Ok("true");
        let services = nats.is_some()
            && std::env::var("WUR2_TEST_POSTGRES_URL").is_ok_and(|url| !url.is_empty());
        let missing = format!(
            "WUR2_TEST_NATS_URL set: {}; PostgreSQL's initdb and pg_ctl under \
             /usr/lib/postgresql/<version>/bin: {programs:?}",
            nats.is_some()
        );
        assert!(!in_ci && !services, "{test} cannot run: {missing}");
        eprintln!("SKIPPED {test}: {missing}; source scripts/nats.sh and scripts/postgres.sh");
        return;
    };
    let postgres = Arc::new(OwnPostgres::start(bin, free_port()));
    let dir = tempfile::tempdir().expect("temporary directory");
    let prefix = unique("t");
    let a = node(dir.path(), &postgres.url(), &nats, &prefix, "a");
    let b = node(dir.path(), &postgres.url(), &nats, &prefix, "b");
    let (alice, bob) = (unique("al"), unique("bo"));
    let mut alice_a = Client::register(target(&a), Mode::Text, &alice).await;
    let mut bob_b = Client::register(target(&b), Mode::Json, &bob).await;
    wait_listed(&mut alice_a, &[&alice, &bob]).await;
    wait_listed(&mut bob_b, &[&alice, &bob]).await;

    // Traffic: alice on a and bob on b each send a numbered message every 10 ms, from
    // before PostgreSQL dies until 30 rounds after it is back.
    let sent = AtomicUsize::new(0);
    let back = AtomicBool::new(false);
    let traffic = async {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut rounds_after = 0;
        while rounds_after < 30 {
            tick.tick().await;
            let n = sent.load(Ordering::Relaxed);
            alice_a.send(&format!("from a {n}")).await;
            bob_b.send(&format!("from b {n}")).await;
            if n == 40 {
                alice_a
                    .send(&format!("/msg {bob} private while down"))
                    .await;
            }
            sent.store(n + 1, Ordering::Relaxed);
            if back.load(Ordering::Relaxed) {
                rounds_after += 1;
            }
        }
    };
    let outage = async {
        // Once traffic flows, PostgreSQL dies; appends in flight at that instant fail.
        wait_for("traffic", || sent.load(Ordering::Relaxed) >= 30).await;
        let pg = Arc::clone(&postgres);
        tokio::task::spawn_blocking(move || pg.crash())
            .await
            .expect("crash PostgreSQL");
        // Messages wait in each node's append buffer (the writer retries). What cannot
        // wait is refused with an error, not silence: a registration needs the database
        // now (the pool tries for its acquire timeout, 5 s).
        let mut carol = Client::connect(target(&b), Mode::Json).await;
        carol
            .send(&format!("/register {} correct-horse-battery", unique("ca")))
            .await;
        carol.expect_error("storage_unavailable").await;
        let (code, body) = get(metrics(&a), "/healthz").await;
        assert_eq!(code, 503, "healthz while the store is down: {body}");
        assert!(body.starts_with("store: "), "{body}");
        let pg = Arc::clone(&postgres);
        tokio::task::spawn_blocking(move || pg.serve())
            .await
            .expect("start PostgreSQL again");
        back.store(true, Ordering::Relaxed);
    };
    tokio::join!(traffic, outage);
    let count = sent.load(Ordering::Relaxed);

    // The pongs answer once every message before them is committed and delivered: the
    // senders' acknowledgments. Nothing was refused.
    let mut alice_saw = alice_a.barrier().await;
    let mut bob_saw = bob_b.barrier().await;
    let refused = |events: &[Event]| {
        let errors = events
            .iter()
            .filter(|event| matches!(event, Event::Error { .. }));
        errors.cloned().collect::<Vec<_>>()
    };
    assert_eq!(refused(&alice_saw), [], "{alice}'s messages");
    assert_eq!(refused(&bob_saw), [], "{bob}'s messages");
    alice_a.send("end").await;
    bob_b.send("end").await;
    alice_saw.extend(events_until(&mut alice_a, Event::message("Global", &bob, "end")).await);
    bob_saw.extend(events_until(&mut bob_b, Event::message("Global", &alice, "end")).await);

    // Every message reached the other node once, in order; the private message too.
    let in_order: Vec<usize> = (0..count).collect();
    assert_eq!(numbered(&bob_saw, &alice, "from a "), in_order);
    assert_eq!(numbered(&alice_saw, &bob, "from b "), in_order);
    let private = Event::dm(&alice, "private while down", false).portable();
    let privates = bob_saw.iter().filter(|event| event.portable() == private);
    assert_eq!(privates.count(), 1, "{bob_saw:#?}");

    // And each is stored once.
    let mut db = sqlx::PgConnection::connect(&postgres.url())
        .await
        .expect("connect to the test's PostgreSQL");
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT body, count(*) FROM messages GROUP BY body ORDER BY body")
            .fetch_all(&mut db)
            .await
            .expect("read the messages");
    db.close().await.expect("close");
    let mut expected: Vec<(String, i64)> = ["from a", "from b"]
        .iter()
        .flat_map(|prefix| (0..count).map(move |n| (format!("{prefix} {n}"), 1)))
        .chain([("private while down".to_owned(), 1), ("end".to_owned(), 2)])
        .collect();
    expected.sort();
    assert_eq!(stored, expected, "what is stored, each once");

    // Both nodes serve again: an account made on one logs in on the other.
    let dave = unique("da");
    Client::register(target(&a), Mode::Text, &dave).await;
    Client::login(target(&b), Mode::Text, &dave).await;
}

#[test]
fn cluster_mode_on_an_sqlite_database_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(BINARY)
        .current_dir(dir.path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("x.db").display()),
        )
        .args(["--listen", "127.0.0.1:0", "--cluster", "nats://127.0.0.1:1"])
        .args(["--node-name", "a"])
        .stdin(Stdio::null())
        .output()
        .expect("run wur2");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains(
            "wur2: error: cluster mode needs PostgreSQL: every node must share one store"
        ),
        "{said}"
    );
    assert!(!dir.path().join("x.db").exists(), "no store was opened");
}
