//! Throughput of wur2-store, against baselines measured in the same run:
//!
//! - appends/s with group commit (`Store::execute`, the writer batching everything queued)
//!   against the naive path, one `INSERT` per transaction (1 connection, then 10 in
//!   parallel), into SQLite and PostgreSQL;
//! - password verifications/s of the store's argon2 pool (default OWASP cost) against one
//!   core hashing alone.
//!
//! Run: `source scripts/postgres.sh && cargo bench -p wur2-store --bench store`
//! (PostgreSQL is skipped when `WUR2_TEST_POSTGRES_URL` is not set).

use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use sqlx::Connection;
use wur2_engine::{ChannelMessage, MessageId, Password, StoreReply, StoreRequest};
use wur2_store::{Store, StoreConfig};

const GROUP_APPENDS: u64 = 200_000;
const NAIVE_APPENDS: u64 = 2_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async {
        println!("## appends (message text 40 bytes)");
        let dir = tempfile::tempdir().expect("a temp dir");
        let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
        appends("SQLite", &sqlite).await;
        match std::env::var("WUR2_TEST_POSTGRES_URL") {
            Ok(admin) => {
                let name = format!("wur2_bench_{}", std::process::id());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL");
                let create = format!("CREATE DATABASE {name}");
                sqlx::query(&create)
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
                appends("PostgreSQL", &format!("{base}/{name}")).await;
                let drop = format!("DROP DATABASE {name} WITH (FORCE)");
                sqlx::query(&drop)
                    .execute(&mut conn)
                    .await
                    .expect("drop database");
            }
            Err(_) => println!("PostgreSQL: SKIPPED (WUR2_TEST_POSTGRES_URL is not set)"),
        }
        println!("## argon2id, default cost (m=19456 KiB, t=2, p=1)");
        hashing(&sqlite).await;
    });
}

fn message(sequence: u64) -> StoreRequest {
    StoreRequest::AppendChannelMessage(ChannelMessage {
        id: MessageId {
            origin: 1,
            sequence,
        },
        channel: "Global".into(),
        sender: "alice".into(),
        text: format!("message {sequence:>32}"),
    })
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Appends/s of `NAIVE_APPENDS` single-row autocommit inserts from `$tasks` tasks sharing
/// `$pool` (a macro: the SQLite and PostgreSQL pools are different types). Message ids use
/// origins from `$origin` on, so runs do not collide.
macro_rules! naive {
    ($pool:expr, $tasks:expr, $origin:expr) => {
        async {
            let per_task = NAIVE_APPENDS / $tasks;
            let started = Instant::now();
            let tasks: Vec<_> = (0..$tasks)
                .map(|task| {
                    let pool = $pool.clone();
                    tokio::spawn(async move {
                        for n in 0..per_task {
                            let id = MessageId {
                                origin: $origin + task,
                                sequence: n,
                            };
                            sqlx::query(
                                "INSERT INTO messages (message_id, channel_key, sender, body, \
                                 created_at_ms) VALUES ($1, 'global', 'alice', $2, 0)",
                            )
                            .bind(id.to_string())
                            .bind(format!("message {n:>32}"))
                            .execute(&pool)
                            .await
                            .expect("insert");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("a task");
            }
            rate(per_task * $tasks, started.elapsed())
        }
    };
}
async fn appends(label: &str, url: &str) {
    let config = StoreConfig {
        append_buffer: GROUP_APPENDS as usize,
        ..StoreConfig::default()
    };
    let (store, writer) = Store::open(url, config).await.expect("the store opens");
    let writer = tokio::spawn(writer.run());

    // Group commit: queue everything, then wait until a read sees it all.
    let started = Instant::now();
    for sequence in 1..=GROUP_APPENDS {
        assert_eq!(store.execute(message(sequence)).await, StoreReply::Done);
    }
    let flushed = store.execute(StoreRequest::FetchHistory {
        channel: "Global".into(),
        limit: 1,
        before: None,
    });
    assert!(matches!(flushed.await, StoreReply::History(_)));
    let group = rate(GROUP_APPENDS, started.elapsed());
    store.close().await;
    writer.await.expect("the writer ends");

    // Naive: one INSERT, one transaction, one commit per message.
    let (naive_one, naive_ten) = if url.starts_with("sqlite:") {
        let options = url
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .expect("a SQLite URL")
            .busy_timeout(Duration::from_secs(30));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(10)
            .connect_with(options)
            .await
            .expect("SQLite");
        (naive!(pool, 1, 2).await, naive!(pool, 10, 100).await)
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await
            .expect("PostgreSQL");
        (naive!(pool, 1, 2).await, naive!(pool, 10, 100).await)
    };
    println!(
        "{label}: group commit {group:.0}/s; one insert per transaction {naive_one:.0}/s \
         (1 connection), {naive_ten:.0}/s (10 connections); ratio {:.1}x and {:.1}x",
        group / naive_one,
        group / naive_ten
    );
}

/// Best of three rounds each, alternating, so other load on the machine hurts both alike.
async fn hashing(sqlite: &str) {
    let (store, writer) = Store::open(sqlite, StoreConfig::default())
        .await
        .expect("the store");
    let writer = tokio::spawn(writer.run());
    let register = StoreRequest::Register {
        username: "bench".into(),
        password: Password::new("pw"),
    };
    assert!(matches!(
        store.execute(register).await,
        StoreReply::Account { .. }
    ));
    let (mut one_core, mut pool) = (0.0_f64, 0.0_f64);
    for _ in 0..3 {
        let single = 30;
        let hasher = argon2::Argon2::default(); // argon2id, m=19456, t=2, p=1
        let started = Instant::now();
        for _ in 0..single {
            let salt = SaltString::generate(&mut OsRng);
            hasher
                .hash_password(b"correct horse", &salt)
                .expect("a hash");
        }
        one_core = one_core.max(rate(single, started.elapsed()));

        let logins = 120;
        let started = Instant::now();
        let replies: Vec<_> = (0..logins)
            .map(|_| {
                store.execute(StoreRequest::Login {
                    username: "bench".into(),
                    password: Password::new("pw"),
                })
            })
            .collect();
        for reply in futures::future::join_all(replies).await {
            assert!(matches!(reply, StoreReply::Account { .. }), "{reply:?}");
        }
        pool = pool.max(rate(logins, started.elapsed()));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "one core: {one_core:.1} hashes/s; store pool ({cores} threads): {pool:.1} logins/s \
         ({:.2}x)",
        pool / one_core
    );
    store.close().await;
    writer.await.expect("the writer ends");
}
