//! Test helpers shared by the behaviour suite and the restart test: a fresh database per
//! test (a temp SQLite file, or a new PostgreSQL database on the server named by
//! `WUR2_TEST_POSTGRES_URL`), a store with cheap password hashing, and message builders.

#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;
use wur2_engine::{ChannelMessage, MessageId, Password, PrivateMessage, StoreReply, StoreRequest};
use wur2_store::{PasswordConfig, Store, StoreConfig};

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The environment variable naming a PostgreSQL server the tests may create databases on.
pub const POSTGRES_URL_VAR: &str = "WUR2_TEST_POSTGRES_URL";

/// A database of its own for one test; dropped by [`TestDb::remove`].
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

impl TestDb {
    /// A fresh database, or `None` (after saying so) when PostgreSQL is not configured.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/wur2.db", dir.path().display());
                Some(TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
                    assert_ne!(
                        std::env::var("CI").as_deref(),
                        Ok("true"),
                        "{POSTGRES_URL_VAR} must be set in CI (scripts/postgres.sh)"
                    );
                    eprintln!(
                        "SKIPPED: PostgreSQL test ({POSTGRES_URL_VAR} is not set; \
                         scripts/test.sh sets it up)"
                    );
                    return None;
                };
                let name = format!("wur2_t_{}", unique_suffix());
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                let (base, _) = admin_url.rsplit_once('/').unwrap();
                let url = format!("{base}/{name}");
                Some(TestDb {
                    url,
                    backend,
                    _dir: None,
                    postgres: Some((admin_url, name)),
                })
            }
        }
    }

    /// Drops a PostgreSQL database (a temp SQLite file goes with the value).
    pub async fn remove(self) {
        if let Some((admin_url, name)) = &self.postgres {
            let mut admin = sqlx::PgConnection::connect(admin_url).await.unwrap();
            let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            // A connection of the store's pool that is still starting up has no role yet,
            // and PostgreSQL then refuses to terminate it (42501): try again shortly.
            let mut attempts = 0;
            while let Err(error) = sqlx::query(&drop).execute(&mut admin).await {
                attempts += 1;
                assert!(attempts < 50, "cannot drop test database {name}: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            admin.close().await.unwrap();
        }
    }

    /// The stored password hash of `username_key`, read with plain SQL.
    pub async fn stored_hash(&self, username_key: &str) -> String {
        let sql = "SELECT password_hash FROM users WHERE username_key = $1";
        match self.backend {
            Backend::Sqlite => {
                let mut db = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(username_key)
                    .fetch_one(&mut db)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let mut db = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(username_key)
                    .fetch_one(&mut db)
                    .await
                    .unwrap()
            }
        }
    }

    /// Runs `sql` on a connection of its own (as an operator at the database would).
    pub async fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let mut db = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.unwrap();
            }
            Backend::Postgres => {
                let mut db = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&mut db).await.unwrap();
            }
        }
    }

    /// How many messages there are in total.
    pub async fn count_messages(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM messages";
        match self.backend {
            Backend::Sqlite => {
                let mut db = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut db).await.unwrap()
            }
            Backend::Postgres => {
                let mut db = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut db).await.unwrap()
            }
        }
    }
}

/// Cheap argon2 (64 KiB, one pass) so tests stay fast; one test keeps the default.
pub fn fast_config() -> StoreConfig {
    StoreConfig {
        password: PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..StoreConfig::default()
    }
}

/// A store on a fresh database with its writer running on the current Tokio runtime.
pub struct Harness {
    pub store: Store,
    pub writer: tokio::task::JoinHandle<()>,
    pub db: TestDb,
    origin: u64,
    sequence: AtomicU64,
}

impl Harness {
    pub async fn open(backend: Backend) -> Option<Harness> {
        Self::open_with(backend, fast_config()).await
    }

    pub async fn open_with(backend: Backend, config: StoreConfig) -> Option<Harness> {
        let db = TestDb::create(backend).await?;
        let (store, writer) = Store::open(&db.url, config).await.unwrap();
        let writer = tokio::spawn(writer.run());
        let origin = NEXT.fetch_add(1, Ordering::Relaxed);
        Some(Harness {
            store,
            writer,
            db,
            origin,
            sequence: AtomicU64::new(1),
        })
    }

    /// Another store on the same database (as after a restart of the server).
    pub async fn reopen(&self, config: StoreConfig) -> (Store, tokio::task::JoinHandle<()>) {
        let (store, writer) = Store::open(&self.db.url, config).await.unwrap();
        (store, tokio::spawn(writer.run()))
    }

    /// Closes the store (flushing appends) and removes the database.
    pub async fn finish(self) {
        self.store.close().await;
        self.writer.await.unwrap();
        self.db.remove().await;
    }

    pub fn next_id(&self) -> MessageId {
        MessageId {
            origin: self.origin,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub async fn run(&self, request: StoreRequest) -> StoreReply {
        self.store.execute(request).await
    }

    pub async fn register(&self, username: &str, password: &str) -> StoreReply {
        self.run(StoreRequest::Register {
            username: username.to_owned(),
            password: Password::new(password),
        })
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> StoreReply {
        self.run(StoreRequest::Login {
            username: username.to_owned(),
            password: Password::new(password),
        })
        .await
    }

    pub fn channel_message(&self, channel: &str, sender: &str, text: &str) -> StoreRequest {
        StoreRequest::AppendChannelMessage(ChannelMessage {
            id: self.next_id(),
            channel: channel.to_owned(),
            sender: sender.to_owned(),
            text: text.to_owned(),
        })
    }

    pub fn private_message(
        &self,
        sender: &str,
        recipient: &str,
        text: &str,
        delivered: bool,
    ) -> StoreRequest {
        StoreRequest::AppendPrivateMessage(PrivateMessage {
            id: self.next_id(),
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
            text: text.to_owned(),
            delivered,
        })
    }

    /// The texts of a channel's history, oldest first.
    pub async fn history_texts(&self, channel: &str, limit: usize) -> Vec<String> {
        match self
            .run(StoreRequest::FetchHistory {
                channel: channel.to_owned(),
                limit,
                before: None,
            })
            .await
        {
            StoreReply::History(messages) => messages.into_iter().map(|m| m.text).collect(),
            other => panic!("expected history, got {other:?}"),
        }
    }
}
