//! Databases for the suite: a fresh SQLite file per test, and a fresh PostgreSQL database
//! per test when `WUR2_TEST_POSTGRES_URL` is set (see `scripts/postgres.sh`); cheap
//! password hashing and test engine settings.

use std::time::Duration;

use sqlx::Connection;
use wur2_engine::Config;
use wur2_store::{PasswordConfig, StoreConfig};

/// Longest any one test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// One database a test runs against; its files (SQLite) go away with it.
pub struct TestDb {
    /// The URL to open it with.
    pub url: String,
    /// `sqlite` or `postgres`, for messages.
    pub label: &'static str,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh SQLite database, and a fresh PostgreSQL database when one is configured.
pub async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("wur2.db").display());
    let mut dbs = vec![TestDb {
        url,
        label: "sqlite",
        _dir: Some(dir),
    }];
    if let Some(url) = postgres_database().await {
        dbs.push(TestDb {
            url,
            label: "postgres",
            _dir: None,
        });
    }
    dbs
}

/// Creates an empty database on the configured PostgreSQL server; `None` when none is.
async fn postgres_database() -> Option<String> {
    let base = std::env::var("WUR2_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())?;
    let name = format!(
        "wur2_e2e_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    // Concurrent CREATE DATABASE can collide on the template database; retry a little.
    let mut attempt = 0;
    loop {
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .expect("connect to PostgreSQL");
        let created = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await;
        let _ = admin.close().await;
        match created {
            Ok(_) => break,
            Err(error) if attempt < 20 => {
                attempt += 1;
                eprintln!("CREATE DATABASE {name} failed ({error}); retrying");
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            Err(error) => panic!("cannot create a test database: {error}"),
        }
    }
    let (prefix, _) = base.rsplit_once('/').expect("the URL names a database");
    Some(format!("{prefix}/{name}"))
}

/// Cheap password hashing: tests register many accounts and prove nothing about argon2 cost.
pub fn store_config() -> StoreConfig {
    StoreConfig {
        password: PasswordConfig {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..StoreConfig::default()
    }
}

/// Engine settings for tests: flood control and registration limits off unless a test
/// turns them on, and room for many connections (and accounts) from 127.0.0.1.
pub fn config() -> Config {
    Config {
        flood_lines_per_second: 0,
        max_registrations_per_address: 0,
        max_registrations_per_minute: 0,
        max_connections_per_address: 2_000,
        max_connections: 5_000,
        message_id_origin: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
        ..Config::default()
    }
}
