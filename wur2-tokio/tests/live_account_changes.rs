//! `wur2 role`, `wur2 purge-user` and `wur2 ban`, run from the operator's shell as separate processes
//! on the database of a running `wur2`, reach the sessions already logged in within two
//! seconds: on SQLite, and on PostgreSQL when `WUR2_TEST_POSTGRES_URL` names a server.

#[path = "server_process/peer.rs"]
mod peer;
mod server_process;

use std::io::BufRead;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use peer::Peer;
use server_process::{BINARY, ServerProcess};
use wur2_testkit::{TestDb, databases};

/// How long a change made in the shell may take to reach a live session.
const WITHIN: Duration = Duration::from_secs(2);

/// A fresh PostgreSQL database, or `None` (said on stderr) when none is configured.
fn postgres() -> Option<TestDb> {
    let db = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(databases())
        .into_iter()
        .find(|db| db.label == "postgres");
    if db.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "WUR2_TEST_POSTGRES_URL must be set in CI (scripts/postgres.sh)"
        );
        eprintln!("SKIPPED: WUR2_TEST_POSTGRES_URL is not set");
    }
    db
}

/// A fresh SQLite database in `dir`.
fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("wur2.db").display())
}

/// Runs `wur2 <args>` as the operator would, on `url`; returns its standard output.
fn operator(dir: &Path, url: &str, args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .args(args)
        .current_dir(dir)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run wur2");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wur2 {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Reads `peer`'s lines until one contains `needle`, for at most [`WITHIN`].
fn sees_within(peer: &mut Peer, needle: &str) {
    let deadline = Instant::now() + WITHIN;
    let mut line = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {needle:?} within {WITHIN:?}");
        peer.stream.set_read_timeout(Some(left)).expect("timeout");
        line.clear();
        match peer.reader.read_line(&mut line) {
            Ok(0) => panic!("closed before {needle:?}"),
            Ok(_) if line.contains(needle) => return,
            Ok(_) => {}
            Err(error) => panic!("no {needle:?} within {WITHIN:?}: {error}"),
        }
    }
}

/// Whether the server closes `peer`'s connection within [`WITHIN`] (other lines skipped).
fn closed_within(peer: &mut Peer) -> bool {
    let deadline = Instant::now() + WITHIN;
    let mut line = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        peer.stream.set_read_timeout(Some(left)).expect("timeout");
        line.clear();
        match peer.reader.read_line(&mut line) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A server on the database at `url`, and the directory it runs in.
fn start(url: &str) -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = ServerProcess::start(dir.path(), &[], &[("DATABASE_URL", url)]);
    (server, dir)
}

fn a_demoted_admin_cannot_kick_within_two_seconds_of_wur2_role(url: &str) {
    let (server, dir) = start(url);
    let mut boss = Peer::register(server.addr, "boss");
    let mut pat = Peer::register(server.addr, "pat");
    drop(Peer::register(server.addr, "chief"));
    // A promotion reaches the live session too.
    let said = operator(dir.path(), url, &["role", "boss", "admin"]);
    assert!(said.contains("within about a second"), "{said}");
    sees_within(&mut boss, "Your role is now admin (set by the operator)");
    operator(dir.path(), url, &["role", "chief", "admin"]);

    operator(dir.path(), url, &["role", "BOSS", "user"]);
    sees_within(&mut boss, "Your role is now user (set by the operator)");
    boss.send("/kick pat\n");
    sees_within(&mut boss, "only moderators and admins can kick");
    boss.send("/role pat admin\n");
    sees_within(&mut boss, "only admins can set roles");
    pat.send("/ping still here\n");
    sees_within(&mut pat, "PONG still here");
    server.stop();
}

fn a_purged_user_is_disconnected_within_two_seconds_of_wur2_purge_user(url: &str) {
    let (server, dir) = start(url);
    let mut pat = Peer::register(server.addr, "pat");
    let mut nia = Peer::register(server.addr, "nia");
    let said = operator(dir.path(), url, &["purge-user", "Pat"]);
    assert!(said.contains("within about a second"), "{said}");
    sees_within(
        &mut pat,
        "You were kicked by the operator: your account was deleted",
    );
    assert!(
        closed_within(&mut pat),
        "the purged user's session stays open"
    );
    sees_within(&mut nia, "* pat left Global");
    nia.send("/ping still here\n");
    sees_within(&mut nia, "PONG still here");
    server.stop();
}

fn a_banned_user_is_disconnected_within_two_seconds_of_wur2_ban(url: &str) {
    let (server, dir) = start(url);
    let mut pat = Peer::register(server.addr, "pat");
    let mut nia = Peer::register(server.addr, "nia");
    let said = operator(dir.path(), url, &["ban", "Pat", "2h", "spam", "links"]);
    assert!(said.contains("pat is banned until"), "{said}");
    sees_within(&mut pat, "You are banned by the operator until");
    assert!(
        closed_within(&mut pat),
        "the banned user's session stays open"
    );
    sees_within(&mut nia, "* pat left Global");
    let stream = std::net::TcpStream::connect(server.addr).expect("connect");
    let reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    let mut again = Peer { stream, reader };
    again.send("/login pat not-even-the-password\n");
    sees_within(&mut again, "You are banned by the operator until");
    assert!(closed_within(&mut again), "a banned login stays open");
    let said = operator(dir.path(), url, &["unban", "pat"]);
    assert!(said.contains("pat is no longer banned"), "{said}");
    server.stop();
}

#[test]
fn a_banned_user_is_disconnected_within_two_seconds_of_wur2_ban_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    a_banned_user_is_disconnected_within_two_seconds_of_wur2_ban(&sqlite(&dir));
}

#[test]
fn a_banned_user_is_disconnected_within_two_seconds_of_wur2_ban_on_postgres() {
    if let Some(db) = postgres() {
        a_banned_user_is_disconnected_within_two_seconds_of_wur2_ban(&db.url);
    }
}

#[test]
fn a_demoted_admin_cannot_kick_within_two_seconds_of_wur2_role_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    a_demoted_admin_cannot_kick_within_two_seconds_of_wur2_role(&sqlite(&dir));
}

#[test]
fn a_demoted_admin_cannot_kick_within_two_seconds_of_wur2_role_on_postgres() {
    if let Some(db) = postgres() {
        a_demoted_admin_cannot_kick_within_two_seconds_of_wur2_role(&db.url);
    }
}

#[test]
fn a_purged_user_is_disconnected_within_two_seconds_of_wur2_purge_user_on_sqlite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    a_purged_user_is_disconnected_within_two_seconds_of_wur2_purge_user(&sqlite(&dir));
}

#[test]
fn a_purged_user_is_disconnected_within_two_seconds_of_wur2_purge_user_on_postgres() {
    if let Some(db) = postgres() {
        a_purged_user_is_disconnected_within_two_seconds_of_wur2_purge_user(&db.url);
    }
}
