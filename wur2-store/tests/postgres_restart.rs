//! PostgreSQL restarts while appends stream in: every append is stored exactly once.
//!
//! Its own test binary, so the restart cannot disturb the other tests (cargo runs test
//! binaries one after another). Needs `WUR2_TEST_POSTGRES_URL` and `WUR2_TEST_POSTGRES_CTL`
//! (a command taking `restart`, `stop` or `start`), both set by `scripts/postgres.sh`.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Harness, fast_config};
use sqlx::Connection;
use wur2_engine::{StoreReply, StoreRequest};
use wur2_store::StoreConfig;

const CTL_VAR: &str = "WUR2_TEST_POSTGRES_CTL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_is_stored_once_across_postgres_restarts() {
    let Ok(ctl) = std::env::var(CTL_VAR) else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{CTL_VAR} must be set in CI"
        );
        eprintln!("SKIPPED: PostgreSQL restart test ({CTL_VAR} is not set)");
        return;
    };
    // Shows the writer's retries (`RUST_LOG=wur2_store=debug` for every batch).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wur2_store=warn".into()),
        )
        .with_test_writer()
        .try_init();
    let config = StoreConfig {
        // Short, so the outage shows as failed batches (retried) and refused reads rather
        // than as connections that wait it out.
        acquire_timeout: Duration::from_millis(300),
        retry_backoff_max: Duration::from_millis(200),
        ..fast_config()
    };
    let Some(h) = Harness::open_with(Backend::Postgres, config).await else {
        return;
    };

    let started_at = postmaster_start_time(&h.db.url).await;
    let per_round = 200;
    // A quick restart (the pool may reconnect within one acquire), then an outage longer
    // than the acquire timeout (batches fail and are retried, reads are refused).
    let restarter = tokio::task::spawn_blocking(move || {
        let run = |action: &str| {
            let mut words = ctl.split_whitespace();
            let program = words.next().unwrap();
            let started = Instant::now();
            let status = std::process::Command::new(program)
                .args(words)
                .arg(action)
                .status()
                .unwrap();
            assert!(status.success(), "{ctl} {action}: {status}");
            eprintln!("PostgreSQL {action}: {:?}", started.elapsed());
        };
        std::thread::sleep(Duration::from_millis(500));
        run("restart");
        std::thread::sleep(Duration::from_millis(500));
        run("stop");
        std::thread::sleep(Duration::from_millis(1500));
        run("start");
    });

    let mut refused_reads = 0;
    let mut sent = 0;
    let mut rounds_after_restart = 0;
    // Stream before, during and for a while after the restart.
    for round in 0.. {
        if restarter.is_finished() {
            rounds_after_restart += 1;
            if rounds_after_restart > 10 {
                break;
            }
        }
        for _ in 0..per_round {
            let reply = h
                .run(h.channel_message("Global", "alice", &sent.to_string()))
                .await;
            assert_eq!(reply, StoreReply::Done, "append {sent}");
            sent += 1;
        }
        // Reads fail fast with a clear error while the database is away.
        let started = Instant::now();
        let read = h
            .run(StoreRequest::FetchHistory {
                channel: "Global".into(),
                limit: 1,
                before: None,
            })
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a read hung for {:?}",
            started.elapsed()
        );
        if let StoreReply::Failed(error) = read {
            eprintln!("round {round}: history read refused: {error}");
            refused_reads += 1;
        }
        // Keep the writer busy: an outage then always hits a batch on its way in.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    restarter.await.unwrap();
    eprintln!(
        "{sent} appends sent; {refused_reads} history reads refused while PostgreSQL was away"
    );
    assert!(
        round_trip_ok(&h).await,
        "the store works again after the restart"
    );

    // Closing writes whatever still waits, retrying until the database is back.
    let url = h.db.url.clone();
    assert_ne!(
        postmaster_start_time(&url).await,
        started_at,
        "PostgreSQL did not restart: nothing was tested"
    );
    h.store.close().await;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let texts: Vec<String> = sqlx::query_scalar("SELECT body FROM messages ORDER BY seq")
        .fetch_all(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    let expected: Vec<String> = (0..sent).map(|n| n.to_string()).collect();
    assert_eq!(texts.len(), expected.len(), "appends lost or duplicated");
    assert!(texts == expected, "appends stored out of order");
    h.finish().await;
}

/// When the PostgreSQL server started (changes with every restart).
async fn postmaster_start_time(url: &str) -> String {
    let mut db = sqlx::PgConnection::connect(url).await.unwrap();
    let started = sqlx::query_scalar("SELECT pg_postmaster_start_time()::text")
        .fetch_one(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    started
}

/// A request through the store succeeds (retried for a while: the pool reconnects).
async fn round_trip_ok(h: &Harness) -> bool {
    for _ in 0..50 {
        let read = h.run(StoreRequest::FetchHistory {
            channel: "Global".into(),
            limit: 1,
            before: None,
        });
        if let StoreReply::History(_) = read.await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
