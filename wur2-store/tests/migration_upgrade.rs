//! Upgrading a database written by the previous release: the migrations before
//! `20261207000002_sanctions` are applied alone, data is written with plain SQL as that
//! release would have, then the store opens it (applying the rest) and everything is still
//! there and works, bans and lasting channels included. Run on SQLite and PostgreSQL
//! (skipped, loudly, without `WUR2_TEST_POSTGRES_URL`).

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

use common::{Backend, Harness, TestDb, fast_config};
use sqlx::migrate::Migrator;
use wur2_engine::{Password, Role, StoreError, StoreReply, StoreRequest, StoredChannel};
use wur2_store::Store;

/// The first migration the previous release did not have.
const FIRST_NEW_MIGRATION: i64 = 20261207000002;

/// The migrations of `backend` before [`FIRST_NEW_MIGRATION`], read from this crate's
/// files as the previous release embedded them.
async fn previous_migrations(backend: Backend) -> Migrator {
    let dialect = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let mut migrator = Migrator::new(dir).await.unwrap();
    let older: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < FIRST_NEW_MIGRATION)
        .cloned()
        .collect();
    assert!(!older.is_empty());
    migrator.migrations = Cow::Owned(older);
    migrator
}

/// What the previous release wrote: an admin and a user (with a real password hash), a
/// channel with history, a pending private message and an account change.
fn previous_data(hash: &str) -> Vec<String> {
    vec![
        format!(
            "INSERT INTO users (username, username_key, password_hash, role, created_at_ms) \
             VALUES ('Bob', 'bob', '{hash}', 'user', 1), ('Root', 'root', '{hash}', 'admin', 1)"
        ),
        "INSERT INTO channels (name, name_key, created_at_ms) VALUES ('Global', 'global', 2)"
            .into(),
        "INSERT INTO messages (message_id, channel_key, recipient_key, sender, body, \
         created_at_ms, delivered) VALUES \
         ('00000000000000010000000000000001', 'global', NULL, 'Root', 'hello from before', 3, NULL), \
         ('00000000000000010000000000000002', NULL, 'bob', 'Root', 'waiting for bob', 4, FALSE)"
            .into(),
        "INSERT INTO account_changes (username_key, change, created_at_ms) VALUES ('root', 'role', 5)"
            .into(),
    ]
}

/// An argon2 hash of `password` as a store makes it, taken from a scratch database.
async fn real_hash(backend: Backend, password: &str) -> Option<String> {
    let scratch = Harness::open(backend).await?;
    scratch.register("scratch", password).await;
    let hash = scratch.db.stored_hash("scratch").await;
    scratch.finish().await;
    Some(hash)
}

async fn upgrade_keeps_the_data_and_adds_bans(backend: Backend) {
    let Some(hash) = real_hash(backend, "old password").await else {
        return;
    };
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let migrator = previous_migrations(backend).await;
    match backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
        }
    }
    for statement in previous_data(&hash) {
        db.execute(&statement).await;
    }

    let (store, writer) = Store::open(&db.url, fast_config()).await.unwrap();
    let writer = tokio::spawn(writer.run());
    let login = |username: &str| StoreRequest::Login {
        username: username.into(),
        password: Password::new("old password"),
    };
    assert_eq!(
        store.execute(login("bob")).await,
        StoreReply::Account {
            username: "Bob".into(),
            role: Role::User,
            mute: None,
        }
    );
    let history = store
        .execute(StoreRequest::FetchHistory {
            channel: "global".into(),
            limit: 10,
            before: None,
        })
        .await;
    assert!(
        matches!(&history, StoreReply::History(m) if m[0].text == "hello from before"),
        "{history:?}"
    );
    let pending = store
        .execute(StoreRequest::FetchPending {
            username: "bob".into(),
        })
        .await;
    assert!(
        matches!(&pending, StoreReply::Pending(m) if m[0].text == "waiting for bob"),
        "{pending:?}"
    );
    let latest = store.latest_account_change().await.unwrap();
    assert!(latest >= 1, "the old account change is still there");
    // The new table works on the old accounts.
    store.ban("bob", None, "after the upgrade").await.unwrap();
    assert!(matches!(
        store.execute(login("Bob")).await,
        StoreReply::Failed(StoreError::Banned(_))
    ));
    let (_, changes) = store.account_changes_after(latest).await.unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    // An old channel is known to the catalogue: public, without owner or topic; and it
    // takes invitations.
    let global = StoredChannel {
        name: "Global".into(),
        ..StoredChannel::default()
    };
    assert_eq!(
        store.execute(StoreRequest::LoadChannels).await,
        StoreReply::Channels(vec![global])
    );
    let invite = StoreRequest::Invite {
        channel: "global".into(),
        username: "bob".into(),
    };
    assert!(matches!(
        store.execute(invite).await,
        StoreReply::Account { username, .. } if username == "Bob"
    ));
    store.close().await;
    writer.await.unwrap();
    db.remove().await;
}

#[tokio::test]
async fn an_sqlite_database_of_the_previous_release_upgrades_with_its_data() {
    upgrade_keeps_the_data_and_adds_bans(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_postgres_database_of_the_previous_release_upgrades_with_its_data() {
    upgrade_keeps_the_data_and_adds_bans(Backend::Postgres).await;
}
