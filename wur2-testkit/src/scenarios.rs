//! End-to-end chat scenarios over real TCP, written against a server *address* only, so the
//! same suite runs against any driver (Tokio, async-std) and against the binary.
//!
//! Every wait is bounded ([`STEP`]); `/ping <token>` → `PONG <token>` is the barrier that
//! says "everything sent before this was handled", so no scenario sleeps to wait for the
//! server. Names are unique per call, so scenarios may share one server and one database.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Longest wait for any one expected line.
pub const STEP: Duration = Duration::from_secs(15);
/// A password every scenario account uses.
pub const PASSWORD: &str = "correct-horse-battery";

/// A name no other scenario call uses: `prefix` plus a run-and-call tag (≤ 32 bytes).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = std::process::id() % 10_000;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1000)
        .unwrap_or(0);
    format!("{prefix}{run}x{nanos}x{n}")
}

/// One chat client, line by line, as a script on `nc` would be.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The account this client logged in as, if any.
    pub name: String,
    pings: u64,
}

impl Client {
    /// Connects without logging in.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect failed");
        let (read, write) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer: write,
            name: String::new(),
            pings: 0,
        }
    }

    /// Connects and creates the account `name` with `/register`.
    pub async fn register(addr: SocketAddr, name: &str) -> Client {
        let mut client = Client::connect(addr).await;
        client.send(&format!("/register {name} {PASSWORD}")).await;
        client.expect(&format!("Welcome {name}!")).await;
        client.name = name.to_string();
        client
    }

    /// Connects and logs in as the existing account `name` with `/login`.
    pub async fn login(addr: SocketAddr, name: &str) -> Client {
        let mut client = Client::connect(addr).await;
        client.send(&format!("/login {name} {PASSWORD}")).await;
        client.expect(&format!("Welcome back {name}!")).await;
        client.name = name.to_string();
        client
    }

    /// Sends one line (a `\n` is added).
    pub async fn send(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send_raw(&bytes).await;
    }

    /// Sends bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(STEP, self.writer.write_all(bytes))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// The next line, without its line ending; `None` at end of stream or on a reset.
    pub async fn next_line(&mut self) -> Option<String> {
        match self.try_line().await {
            Ok(line) => line,
            Err(()) => panic!("{}: no line within {STEP:?}", self.name),
        }
    }

    /// Like [`Client::next_line`], but a timeout is an `Err` for the caller to explain.
    async fn try_line(&mut self) -> Result<Option<String>, ()> {
        let mut line = Vec::new();
        let read = tokio::time::timeout(STEP, self.reader.read_until(b'\n', &mut line))
            .await
            .map_err(|_| ())?;
        Ok(match read {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    line.pop();
                }
                Some(String::from_utf8_lossy(&line).into_owned())
            }
        })
    }

    /// The next line; panics at end of stream.
    pub async fn line(&mut self) -> String {
        match self.next_line().await {
            Some(line) => line,
            None => panic!("{}: connection closed while a line was expected", self.name),
        }
    }

    /// Reads lines until one contains `needle`; returns that line.
    pub async fn expect(&mut self, needle: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.try_line().await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(line)) => seen.push(line),
                Ok(None) => panic!("{}: closed before {needle:?}; saw {seen:#?}", self.name),
                Err(()) => panic!(
                    "{}: no {needle:?} within {STEP:?}; saw {seen:#?}",
                    self.name
                ),
            }
        }
    }

    /// Sends `/ping` with a fresh token and returns every line that came before its PONG.
    pub async fn barrier(&mut self) -> Vec<String> {
        self.pings += 1;
        let token = format!("barrier-{}", self.pings);
        self.send(&format!("/ping {token}")).await;
        let pong = format!("PONG {token}");
        let mut seen = Vec::new();
        loop {
            match self.try_line().await {
                Ok(Some(line)) if line == pong => return seen,
                Ok(Some(line)) => seen.push(line),
                Ok(None) => panic!("{}: closed before {pong:?}; saw {seen:#?}", self.name),
                Err(()) => panic!("{}: no {pong:?} within {STEP:?}; saw {seen:#?}", self.name),
            }
        }
    }

    /// Reads until the server closes the connection; returns the lines it sent before.
    pub async fn expect_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.next_line().await {
            seen.push(line);
        }
        seen
    }
}

fn assert_any(lines: &[String], needle: &str, who: &str) {
    assert!(
        lines.iter().any(|line| line.contains(needle)),
        "{who} should have seen {needle:?}, saw {lines:#?}"
    );
}

fn assert_none(lines: &[String], needle: &str, who: &str) {
    assert!(
        !lines.iter().any(|line| line.contains(needle)),
        "{who} should not have seen {needle:?}, saw {lines:#?}"
    );
}

/// Three users log in three different ways, then use every command of the seed's table.
pub async fn every_command_with_three_clients(addr: SocketAddr) {
    let (a, b, c) = (unique("al"), unique("bo"), unique("cy"));
    let mut alice = Client::register(addr, &a).await;

    // Bob registers through the interactive flow a person on `nc` sees.
    let mut bob = Client::connect(addr).await;
    bob.name = b.clone();
    bob.expect("(y/n)").await;
    bob.send("n").await;
    bob.expect("username").await;
    bob.send(&b).await;
    bob.expect("password").await;
    bob.send(PASSWORD).await;
    bob.expect(&format!("Welcome {b}!")).await;

    let mut carol = Client::register(addr, &c).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.barrier().await;
    }

    // Plain text reaches everyone else in the channel, not the sender.
    alice.send("hello everyone").await;
    let own = alice.barrier().await;
    assert_none(&own, "hello everyone", "the sender");
    bob.expect(&format!("[Global] {a}: hello everyone")).await;
    carol.expect(&format!("[Global] {a}: hello everyone")).await;

    // `//text` sends text that starts with a slash.
    bob.send("//shrug").await;
    alice.expect(&format!("[Global] {b}: /shrug")).await;

    alice.send("/list").await;
    let list = alice.expect("Connected users: ").await;
    for name in [&a, &b, &c] {
        assert!(list.contains(name.as_str()), "{list}");
    }

    alice.send("/channels").await;
    let channels = alice.expect("Channels: ").await;
    assert!(channels.contains("Global ("), "{channels}");

    alice.send("/profile").await;
    alice
        .expect(&format!("Username: {a} | Channel: Global | Role: user"))
        .await;

    alice.send("/role").await;
    alice.expect("Your role is user").await;

    alice.send("/help").await;
    alice.expect("Commands:").await;
    let help = alice.barrier().await;
    assert_any(&help, "/msg", "alice's /help");
    assert_none(&help, "/kick", "a user's /help");

    // Private message to an online user.
    alice.send(&format!("/msg {b} psst {b}")).await;
    bob.expect(&format!("[DM] {a}: psst {b}")).await;
    let carol_saw = carol.barrier().await;
    assert_none(&carol_saw, "psst", "a third user");

    // A user may not kick or set roles.
    alice.send(&format!("/kick {b}")).await;
    alice.expect("Error: ").await;
    alice.send(&format!("/role {b} admin")).await;
    alice.expect("Error: ").await;
    alice.send("/nosuchcommand").await;
    alice.expect("Error: ").await;

    // Channels: joining moves a user; messages stay inside a channel.
    let room = unique("room");
    alice.send(&format!("/join {room}")).await;
    alice.expect(&room).await;
    carol.send(&format!("/join {room}")).await;
    carol.expect(&room).await;
    carol.barrier().await;
    alice.barrier().await;
    carol.send("in the room").await;
    alice.expect(&format!("[{room}] {c}: in the room")).await;
    let bob_saw = bob.barrier().await;
    assert_none(&bob_saw, "in the room", "a user in another channel");
    carol.send("/profile").await;
    carol.expect(&format!("Channel: {room}")).await;
    alice.send("/channels").await;
    let channels = alice.expect("Channels: ").await;
    assert!(channels.contains(&format!("{room} (2)")), "{channels}");

    // /close says goodbye and closes after it.
    bob.send("/close").await;
    let last = bob.expect_closed().await;
    assert_any(&last, "Goodbye!", "bob");
    alice.send("/list").await;
    let list = alice.expect("Connected users: ").await;
    assert!(!list.contains(b.as_str()), "{list}");
}

/// Every way to log in: interactive (y and n), `/register`, `/login`, and the refusals.
pub async fn every_login_path(addr: SocketAddr) {
    let name = unique("lp");
    // Interactive registration.
    let mut first = Client::connect(addr).await;
    first.expect("(y/n)").await;
    first.send("n").await;
    first.expect("username").await;
    first.send(&name).await;
    first.expect("password").await;
    first.send(PASSWORD).await;
    first.expect(&format!("Welcome {name}!")).await;
    first.send("/close").await;
    first.expect_closed().await;

    // Interactive login.
    let mut second = Client::connect(addr).await;
    second.expect("(y/n)").await;
    second.send("y").await;
    second.expect("username").await;
    second.send(&name).await;
    second.expect("password").await;
    second.send(PASSWORD).await;
    second.expect(&format!("Welcome back {name}!")).await;

    // One-line login, and a second session of the same account.
    let mut third = Client::login(addr, &name).await;
    third.send("/list").await;
    let list = third.expect("Connected users: ").await;
    assert_eq!(
        list.matches(name.as_str()).count(),
        1,
        "each account once: {list}"
    );

    // A wrong password and an unknown user get the same answer.
    let mut wrong = Client::connect(addr).await;
    wrong.send(&format!("/login {name} not-the-password")).await;
    let refused = wrong.expect("Error: ").await;
    let mut unknown = Client::connect(addr).await;
    unknown
        .send(&format!("/login {} {PASSWORD}", unique("nobody")))
        .await;
    let refused_unknown = unknown.expect("Error: ").await;
    assert_eq!(refused, refused_unknown);

    // A taken name cannot be registered again, in any letter case.
    let mut taken = Client::connect(addr).await;
    taken
        .send(&format!("/register {} {PASSWORD}", name.to_uppercase()))
        .await;
    taken.expect("Error: ").await;

    // Commands need a login.
    let mut anonymous = Client::connect(addr).await;
    anonymous.send("/list").await;
    anonymous.expect("Error: ").await;
    // The barrier works before login too.
    anonymous.barrier().await;
}

/// A channel's recent history is replayed to whoever joins it.
pub async fn history_is_replayed_on_join(addr: SocketAddr) {
    let room = unique("hist");
    let mut alice = Client::register(addr, &unique("ha")).await;
    alice.send(&format!("/join {room}")).await;
    alice.expect(&room).await;
    for n in 1..=3 {
        alice.send(&format!("story part {n}")).await;
    }
    alice.barrier().await;

    let mut bob = Client::register(addr, &unique("hb")).await;
    bob.send(&format!("/join {room}")).await;
    let a = alice.name.clone();
    let mut replay = Vec::new();
    for n in 1..=3 {
        replay.push(bob.expect(&format!("[{room}] {a}: story part {n}")).await);
    }
    assert!(
        replay.iter().all(|line| line.starts_with("[history ")),
        "{replay:#?}"
    );
}

/// A private message to a registered user who is offline arrives at their next login.
pub async fn offline_message_arrives_at_next_login(addr: SocketAddr) {
    let b = unique("ob");
    let mut bob = Client::register(addr, &b).await;
    bob.send("/close").await;
    bob.expect_closed().await;

    let mut alice = Client::register(addr, &unique("oa")).await;
    alice.send(&format!("/msg {b} see you later")).await;
    alice.expect("offline").await;
    // To someone who never existed: an error, nothing stored.
    alice
        .send(&format!("/msg {} hello?", unique("ghost")))
        .await;
    alice.expect("Error: ").await;

    let mut bob = Client::login(addr, &b).await;
    let line = bob.expect("see you later").await;
    assert!(line.contains(&alice.name), "{line}");
}

/// After the operator made `moderator` a mod (with `grant`), its `/kick` closes every
/// session of the target and tells the channel.
pub async fn kick_closes_every_session_of_the_target<F, Fut>(addr: SocketAddr, grant: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let m = unique("mo");
    let t = unique("tg");
    let mut moderator = Client::register(addr, &m).await;
    let mut first = Client::register(addr, &t).await;
    let mut second = Client::login(addr, &t).await;
    let mut witness = Client::register(addr, &unique("wi")).await;

    grant(m.clone()).await;
    // Roles are read at login: log in again to get the new role.
    moderator.send("/close").await;
    moderator.expect_closed().await;
    let mut moderator = Client::login(addr, &m).await;
    moderator.send("/role").await;
    moderator.expect("Your role is mod").await;
    first.barrier().await;
    second.barrier().await;
    witness.barrier().await;

    moderator.send(&format!("/kick {t} spamming")).await;
    moderator.expect(&format!("You kicked {t}")).await;
    for session in [&mut first, &mut second] {
        let last = session.expect_closed().await;
        assert_any(&last, "kicked", "a kicked session");
    }
    witness.expect(&format!("{t} was kicked")).await;
    witness.send("/list").await;
    let list = witness.expect("Connected users: ").await;
    assert!(!list.contains(t.as_str()), "{list}");
}

/// Accounts and history written before a restart are there after it. Call `before` on the
/// first server, restart it on the same database, then call `after` with the names.
pub async fn restart_before(addr: SocketAddr) -> (String, String) {
    let name = unique("rs");
    let room = unique("rr");
    let mut alice = Client::register(addr, &name).await;
    alice.send(&format!("/join {room}")).await;
    alice.expect(&room).await;
    alice.send("remember me").await;
    alice.barrier().await;
    (name, room)
}

/// The second half of the restart scenario; see [`restart_before`].
pub async fn restart_after(addr: SocketAddr, (name, room): (String, String)) {
    let mut alice = Client::login(addr, &name).await;
    alice.send(&format!("/join {room}")).await;
    alice.expect(&format!("[{room}] {name}: remember me")).await;
}

/// Overlong lines, invalid UTF-8 and terminal escapes get errors or are cleaned; the
/// connection and everyone else carry on.
pub async fn bad_input_is_answered_not_fatal(addr: SocketAddr, max_line_bytes: usize) {
    let mut alice = Client::register(addr, &unique("ba")).await;
    let mut bob = Client::register(addr, &unique("bb")).await;
    bob.barrier().await;

    let long = "x".repeat(max_line_bytes * 3);
    alice.send(&long).await;
    alice.expect("Error: ").await;
    alice.barrier().await;

    alice.send_raw(b"bad \xff\xfe bytes\n").await;
    alice.expect("Error: ").await;
    alice.barrier().await;

    alice
        .send("look \x1b[2J\x1b[31mred\x1b[0m \x07bell done")
        .await;
    let line = bob.expect("done").await;
    assert!(
        !line.contains('\x1b') && !line.contains('\x07'),
        "escapes relayed: {line:?}"
    );
    assert!(line.contains("red"), "{line:?}");

    // Nobody was hurt: both still chat.
    alice.send("still here").await;
    bob.expect("still here").await;
    bob.barrier().await;
}

/// With flood control on, a client sending 5 000 lines at once is closed with a reason;
/// the others keep chatting.
pub async fn flooder_is_closed_others_unaffected(addr: SocketAddr) {
    let mut flooder = Client::register(addr, &unique("fl")).await;
    let mut alice = Client::register(addr, &unique("fa")).await;
    let mut bob = Client::register(addr, &unique("fb")).await;
    bob.barrier().await;

    let mut burst = Vec::new();
    for n in 0..5_000 {
        burst.extend_from_slice(format!("flood line {n}\n").as_bytes());
    }
    // The server may close while we are still writing; that is the point.
    let _ = tokio::time::timeout(STEP, flooder.writer.write_all(&burst)).await;
    let last = flooder.expect_closed().await;
    let reason = last.iter().rev().find(|line| line.starts_with("Error: "));
    assert!(
        reason.is_some(),
        "the flooder should be told why: {:#?}",
        &last[last.len().saturating_sub(5)..]
    );

    alice.send("calm message").await;
    bob.expect("calm message").await;
    alice.barrier().await;
    bob.barrier().await;
}

/// A client that never reads while others chat: the others get every message, and the
/// silent one is dropped once too much is queued for it.
pub async fn slow_reader_is_dropped_others_unaffected(addr: SocketAddr, messages: usize) {
    let mut slow = Client::register(addr, &unique("sl")).await;
    let mut sender = Client::register(addr, &unique("ss")).await;
    let mut reader = Client::register(addr, &unique("sr")).await;
    slow.barrier().await;
    reader.barrier().await;

    // Sent in rounds the reader keeps up with, so only the silent client falls behind.
    let payload = "p".repeat(1000);
    let mut n = 0;
    while n < messages {
        let round = (n..messages.min(n + 100)).collect::<Vec<_>>();
        let mut batch = Vec::new();
        for i in &round {
            batch.extend_from_slice(format!("{i} {payload}\n").as_bytes());
        }
        sender.send_raw(&batch).await;
        for i in &round {
            reader.expect(&format!(": {i} {payload}")).await;
        }
        n += round.len();
    }
    sender.barrier().await;
    reader.barrier().await;

    // The silent client now finds its connection closed (after what was buffered).
    let mut bytes = 0usize;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(STEP, slow.reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes += n,
            Err(_) => panic!("the slow reader was not dropped (read {bytes} bytes)"),
        }
    }
    assert!(
        bytes < messages * 1010,
        "the slow reader got everything ({bytes} bytes)"
    );
}

/// Hundreds of connections opened and dropped at once; afterwards the server still serves.
pub async fn many_connections_dropped_at_once(addr: SocketAddr, count: usize) {
    let mut opened = Vec::with_capacity(count);
    for _ in 0..count {
        match tokio::time::timeout(STEP, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => opened.push(stream),
            Ok(Err(error)) => panic!("connect {} failed: {error}", opened.len()),
            Err(_) => panic!("connect {} timed out", opened.len()),
        }
    }
    // Half of them say something first, so the server has state to clean up.
    for stream in opened.iter_mut().step_by(2) {
        let _ = stream.write_all(b"/ping x\n").await;
    }
    drop(opened);

    let mut alice = Client::register(addr, &unique("ma")).await;
    let mut bob = Client::register(addr, &unique("mb")).await;
    bob.barrier().await;
    alice.send("after the storm").await;
    bob.expect("after the storm").await;
}

/// A server-side file from the operator's files directory reaches the recipient byte-exact
/// (`path` holds `content`, text); paths that leave the directory are refused.
pub async fn server_file_arrives_byte_exact(
    addr: SocketAddr,
    path: &str,
    content: &[u8],
    escaping_symlink: &str,
) {
    let mut alice = Client::register(addr, &unique("fs")).await;
    let mut bob = Client::register(addr, &unique("fr")).await;
    bob.barrier().await;
    let b = bob.name.clone();

    alice.send(&format!("/send {b} {path}")).await;
    alice.expect(&format!("] sending {path}")).await;
    let id = transfer_id(&bob.expect(" is sending ").await);
    let received = receive_file(&mut bob, &id).await;
    assert_eq!(received.len(), content.len());
    assert!(received == content, "the file arrived changed");
    alice.expect(&format!("[file {id} done]")).await;

    for refused in [
        "../etc/passwd",
        "/etc/passwd",
        escaping_symlink,
        "no-such-file",
    ] {
        alice.send(&format!("/send {b} {refused}")).await;
        alice.expect("Error: ").await;
    }
    alice.barrier().await;
    let quiet = bob.barrier().await;
    assert_none(&quiet, "is sending", "the recipient of refused files");
}

/// A user uploads a file with bytes of every value to another; it arrives byte-exact
/// (text chunks and base64 chunks alike). An upload that is refused has its bytes read and
/// dropped, never run as commands.
pub async fn upload_arrives_byte_exact(addr: SocketAddr) {
    let mut alice = Client::register(addr, &unique("ua")).await;
    let mut bob = Client::register(addr, &unique("ub")).await;
    bob.barrier().await;
    let b = bob.name.clone();

    let mut content = Vec::new();
    for n in 0..3_000 {
        content.extend_from_slice(format!("text line {n}\n").as_bytes());
    }
    for n in 0..200_000u32 {
        content.push((n % 251) as u8);
    }
    let mut upload = format!("/send {b} blob.bin {}\n", content.len()).into_bytes();
    upload.extend_from_slice(&content);
    // The recipient reads while the sender writes: the server holds only so much of a
    // transfer and stops reading the sender until the recipient catches up.
    let receiving = async {
        let id = transfer_id(&bob.expect(" is sending blob.bin").await);
        let received = receive_file(&mut bob, &id).await;
        (id, received)
    };
    let ((), (id, received)) = tokio::join!(alice.send_raw(&upload), receiving);
    assert_eq!(received.len(), content.len());
    assert!(received == content, "the upload arrived changed");
    alice.expect(&format!("[file {id} done]")).await;

    let discarded = b"/close\n/close\n";
    let mut refused = format!("/send {} x.bin {}\n", unique("gone"), discarded.len()).into_bytes();
    refused.extend_from_slice(discarded);
    alice.send_raw(&refused).await;
    alice.expect("discarded").await;
    // Still connected: the `/close` lines were file bytes, not commands.
    alice.barrier().await;
}

/// The id in a `[file <id>] ...` line.
fn transfer_id(announce: &str) -> String {
    announce
        .strip_prefix("[file ")
        .and_then(|rest| rest.split(']').next())
        .expect("a transfer id")
        .to_string()
}

/// Reads transfer `id`'s chunks (raw `data` and `base64` alike) until its `done` line;
/// returns the file. Other lines may arrive between chunks.
async fn receive_file(client: &mut Client, id: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let data = format!("[file {id} data ");
    let base64 = format!("[file {id} base64 ");
    loop {
        let line = client.line().await;
        if line.starts_with(&format!("[file {id} done]")) {
            return received;
        }
        if let Some(n) = line.strip_prefix(&data) {
            let n: usize = n.trim_end_matches(']').parse().expect("a chunk size");
            let mut chunk = vec![0u8; n + 1];
            tokio::time::timeout(STEP, client.reader.read_exact(&mut chunk))
                .await
                .expect("chunk in time")
                .expect("chunk read");
            assert_eq!(chunk.pop(), Some(b'\n'), "a chunk ends with a line break");
            received.extend_from_slice(&chunk);
        } else if let Some(n) = line.strip_prefix(&base64) {
            let n: usize = n.trim_end_matches(']').parse().expect("a chunk size");
            let chunk = base64::engine::general_purpose::STANDARD
                .decode(client.line().await)
                .expect("a base64 chunk is standard base64");
            assert_eq!(chunk.len(), n, "a base64 chunk decodes to its size");
            received.extend_from_slice(&chunk);
        } else {
            assert!(
                !line.starts_with(&format!("[file {id} cancelled]")),
                "{line}"
            );
        }
    }
}
