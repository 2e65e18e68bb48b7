//! The SQL of both dialects, behind one [`Db`] type chosen by the URL.
//!
//! Every statement uses bound parameters. Names and channel names are matched through
//! their ASCII-lowercased keys (`username_key`, `name_key`), which carry the unique indexes.
//! Nothing here hashes, queues or retries: that is the job of the callers in `store.rs`
//! and `writer.rs`.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row};
use wur2_engine::{
    AccountChange, Expiry, MessageId, PendingMessage, Role, Sanction, SanctionKind, StoredChannel,
    StoredMessage, username_key,
};

use crate::config::StoreConfig;
use crate::{OpenError, User};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Rows per multi-row `INSERT` on SQLite (7 bound values each, far below its limit of
/// 32 766 variables); one transaction may hold several such statements.
const SQLITE_ROWS_PER_STATEMENT: usize = 1_000;
/// Page cache per SQLite connection, in KiB (SQLite's default is 2 000). Pages it misses
/// come from the operating system's file cache, a system call away; a pool of ten
/// connections with the default cache held ~6 MB after 5 000 logins (1.1 KiB per
/// connected client) for no measurable gain.
const SQLITE_CACHE_KIB: u32 = 128;
/// Page size of a new SQLite database (SQLite's default is 4 096 bytes). A commit writes
/// every page it changes whole to the write-ahead log, and a one-message commit changes
/// five (the table's last page, three indexes' and the row counter's), so with 4 KiB
/// pages each message wrote ~20 KiB to the log, flushed to disk at every checkpoint
/// (~20 MiB a second at 1 000 messages a second). 1 KiB pages cut that to ~5 KiB; L's
/// p99 fell by a fifth (docs/BENCHMARKS.md). An existing database keeps its page size
/// (changing it needs a `VACUUM` outside WAL mode: docs/OPERATIONS.md).
const SQLITE_PAGE_BYTES: u32 = 1_024;
/// Values per `IN (...)` list on SQLite.
const SQLITE_KEYS_PER_STATEMENT: usize = 500;

/// `account_changes.change` of a role change: the account's role is read again.
const CHANGE_ROLE: &str = "role";
/// `account_changes.change` of a purged account.
const CHANGE_PURGE: &str = "purge";
/// `account_changes.change` of a ban set: the account's ban in force is read again.
const CHANGE_BAN: &str = "ban";
/// `account_changes.change` of a mute set or lifted: the account's mute is read again.
const CHANGE_MUTE: &str = "mute";

/// Whether sanction `s` is in force at `$1`, the current time: the one rule every query of
/// sanctions in force uses.
macro_rules! sanction_in_force {
    () => {
        "(s.expires_at_ms IS NULL OR s.expires_at_ms > $1)"
    };
}

/// The columns of a sanction in force, with the account's name as registered; the
/// statement binds the current time as `$1` (`s` is `sanctions`, `u` is `users`).
const SANCTION_COLUMNS: &str = concat!(
    "SELECT s.kind, u.username, s.set_by, s.reason, s.created_at_ms, s.expires_at_ms \
     FROM sanctions s JOIN users u ON u.username_key = s.username_key WHERE ",
    sanction_in_force!()
);
/// How long an account change is kept: far longer than any running server takes to read
/// it (about half a second), and short enough that the table stays small.
const CHANGE_KEEP_MS: i64 = 3_600_000;

/// Records an account change: bound with the username key, the kind and now.
const INSERT_CHANGE: &str =
    "INSERT INTO account_changes (username_key, change, created_at_ms) VALUES ($1, $2, $3)";
/// Forgets account changes written before the bound cutoff (see [`CHANGE_KEEP_MS`]).
const PRUNE_CHANGES: &str = "DELETE FROM account_changes WHERE created_at_ms < $1";

/// A row of `account_changes`, with the account it names as it is now (if it still is).
struct ChangeRow {
    id: i64,
    key: String,
    kind: String,
    username: Option<String>,
    role: Option<String>,
}

/// Resume tokens kept per account: a new one beyond this forgets the oldest.
pub(crate) const MAX_TOKENS_PER_ACCOUNT: i64 = 20;

/// What [`Db::purge_user`] did.
pub(crate) enum Purge {
    /// The account (its name as registered) and this many messages are gone.
    Purged { username: String, messages: u64 },
    /// No account has this name.
    UnknownUser,
    /// The account is the last admin, and was spared: nothing changed.
    LastAdmin,
}

/// What [`Db::set_role`] did.
pub(crate) enum RoleChange {
    /// The account, with its new role.
    Changed(User),
    /// No account has this name.
    UnknownUser,
    /// The account is the last admin, and the new role is not admin: nothing changed.
    LastAdmin,
}

/// What [`Db::invite`] did.
pub(crate) enum Invitation {
    /// The invitee, as registered, may join now.
    Invited(User),
    /// No account has this name: nothing changed.
    UnknownUser,
}

/// A change to a channel's settings, by [`Db::set_channel`].
pub(crate) enum ChannelSetting<'a> {
    Topic(Option<&'a str>),
    Private(bool),
}

/// Registered channels with their owners' names, ordered by key; filtered by `$1` (a key)
/// when `$2` is true.
const SELECT_CHANNELS: &str = "SELECT c.name, c.name_key, u.username AS owner, c.topic, c.private \
                               FROM channels c \
                               LEFT JOIN users u ON u.username_key = c.owner_key \
                               WHERE $2 = FALSE OR c.name_key = $1 \
                               ORDER BY c.name_key";
/// Invitations with the invitees' names, ordered by channel key and name key; filtered as
/// [`SELECT_CHANNELS`].
const SELECT_INVITES: &str = "SELECT i.channel_key, u.username \
                              FROM channel_invites i \
                              JOIN users u ON u.username_key = i.username_key \
                              WHERE $2 = FALSE OR i.channel_key = $1 \
                              ORDER BY i.channel_key, i.username_key";
/// What [`Db::sanction`] or [`Db::lift_sanction`] did.
pub(crate) enum SanctionChange {
    /// Set: the sanction in force now.
    Set(Sanction),
    /// Lifted from the account with this name as registered.
    Lifted(String),
    /// No account has this name.
    UnknownUser,
    /// The account's role is not below the asker's: nothing changed.
    Outranked,
    /// Lift: no sanction of that kind was in force.
    NotSanctioned,
}

/// A sanction to write: who sets it, why, and when it ends (store clock).
pub(crate) struct NewSanction<'a> {
    pub(crate) kind: SanctionKind,
    pub(crate) by: &'a str,
    pub(crate) reason: &'a str,
    /// `None`: until lifted.
    pub(crate) expires_at_ms: Option<i64>,
}

fn kind_from_db(text: &str) -> Result<SanctionKind, sqlx::Error> {
    match text {
        "ban" => Ok(SanctionKind::Ban),
        "mute" => Ok(SanctionKind::Mute),
        other => Err(sqlx::Error::Decode(
            format!("unknown sanction kind {other:?}").into(),
        )),
    }
}

/// A row of [`SANCTION_COLUMNS`] as a sanction, its time remaining reckoned from `now_ms`.
fn sanction_from_row<R: Row>(row: &R, now_ms: i64) -> Result<Sanction, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let expires_at: Option<i64> = row.try_get("expires_at_ms")?;
    Ok(Sanction {
        kind: kind_from_db(&row.try_get::<String, _>("kind")?)?,
        username: row.try_get("username")?,
        by: row.try_get("set_by")?,
        reason: row.try_get("reason")?,
        set_at_unix_ms: row.try_get("created_at_ms")?,
        expires: expires_at.map(|at| Expiry {
            at_unix_ms: at,
            remaining: Duration::from_millis(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0)),
        }),
    })
}

/// A connection pool to one of the two supported databases.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite {
        pool: SqlitePool,
        /// The pool's one connection holds the database (in memory): the append writer
        /// must not keep it.
        single_connection: bool,
    },
    Postgres(PgPool),
}

/// Runs the same code against whichever pool `db` holds: `sqlx::query` and `Row::try_get`
/// are generic, only the pool type differs.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite { pool: $pool, .. } => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// In transaction `$tx` (either backend's): takes the change lock `$lock` where the
/// database has one, records change `$kind` of the account with `$key` for running servers,
/// and forgets changes older than [`CHANGE_KEEP_MS`].
macro_rules! record_change {
    ($tx:ident, $lock:expr, $key:expr, $kind:expr, $now_ms:expr) => {
        if let Some(lock) = $lock {
            sqlx::query(lock).execute(&mut *$tx).await?;
        }
        sqlx::query(INSERT_CHANGE)
            .bind($key)
            .bind($kind)
            .bind($now_ms)
            .execute(&mut *$tx)
            .await?;
        sqlx::query(PRUNE_CHANGES)
            .bind($now_ms.saturating_sub(CHANGE_KEEP_MS))
            .execute(&mut *$tx)
            .await?;
    };
}

/// One message waiting to be written.
#[derive(Debug)]
pub(crate) struct AppendRow {
    pub(crate) message_id: String,
    /// Display name and key, for a channel message.
    pub(crate) channel: Option<(String, String)>,
    /// Key of the recipient, for a private message.
    pub(crate) recipient_key: Option<String>,
    pub(crate) sender: String,
    pub(crate) body: String,
    pub(crate) created_at_ms: i64,
    /// Private messages only.
    pub(crate) delivered: Option<bool>,
}

/// An account as stored, hash included (never logged: no `Debug`).
pub(crate) struct StoredUser {
    pub(crate) username: String,
    pub(crate) role: Role,
    pub(crate) password_hash: String,
}

fn role_from_db(text: &str) -> Result<Role, sqlx::Error> {
    Role::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn message_id_from_db(text: &str) -> Result<MessageId, sqlx::Error> {
    MessageId::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

impl Db {
    /// Connects to `url` (`sqlite:` or `postgres:`/`postgresql:`) and applies the migrations.
    pub(crate) async fn open(url: &str, config: &StoreConfig) -> Result<Db, OpenError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(OpenError::Connect)?
                .create_if_missing(true)
                // Set before WAL mode (sqlx keeps that order): only an empty file takes it.
                .page_size(SQLITE_PAGE_BYTES)
                .journal_mode(SqliteJournalMode::Wal)
                // In WAL mode NORMAL loses no committed data on a crash of the process.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(config.acquire_timeout)
                .pragma("cache_size", format!("-{SQLITE_CACHE_KIB}"))
                // No commit runs a checkpoint (a few milliseconds of copying and syncing
                // that the messages waiting on that commit would share): the append
                // writer's checkpointer does it beside the commits (`Db::checkpoint`).
                .pragma("wal_autocheckpoint", "0");
            // Each connection to an in-memory database has a database of its own: keep one
            // connection, for ever.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory { 1 } else { config.max_connections })
                .min_connections(u32::from(in_memory))
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(1800))
                })
                .acquire_timeout(config.acquire_timeout)
                // A local file does not go stale between uses: no ping (a round trip to
                // the connection's thread) before every statement.
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(OpenError::Connect)?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Ok(Db::Sqlite {
                pool,
                single_connection: in_memory,
            })
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(OpenError::Connect)?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.acquire_timeout)
                .connect_with(options)
                .await
                .map_err(OpenError::Connect)?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(OpenError::UnsupportedUrl)
        }
    }

    /// Whether [`Db::checkpoint`] has work to do: an SQLite file database, whose
    /// connections never checkpoint on commit.
    pub(crate) fn needs_checkpoints(&self) -> bool {
        matches!(
            self,
            Db::Sqlite {
                single_connection: false,
                ..
            }
        )
    }

    /// Copies what SQLite's write-ahead log holds into the database file as far as no
    /// reader needs it (`PASSIVE`: it waits for no lock), on the append writer's own
    /// connection when `writer` is given, else on any. Nothing on PostgreSQL.
    pub(crate) async fn checkpoint(
        &self,
        writer: Option<&mut AppendSession>,
    ) -> Result<(), sqlx::Error> {
        let Db::Sqlite { pool, .. } = self else {
            return Ok(());
        };
        let sql = "PRAGMA wal_checkpoint(PASSIVE)";
        match writer.and_then(|session| session.held.as_mut()) {
            Some(HeldConnection::Sqlite(conn)) => sqlx::query(sql).execute(&mut **conn).await?,
            _ => sqlx::query(sql).execute(pool).await?,
        };
        Ok(())
    }

    /// Closes every connection, waiting for those in use.
    pub(crate) async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }

    pub(crate) async fn find_user(&self, key: &str) -> Result<Option<StoredUser>, sqlx::Error> {
        let sql = "SELECT username, role, password_hash FROM users WHERE username_key = $1";
        let row = on_pool!(self, pool => {
            match sqlx::query(sql).bind(key).fetch_optional(pool).await? {
                None => None,
                Some(row) => Some((
                    row.try_get::<String, _>("username")?,
                    row.try_get::<String, _>("role")?,
                    row.try_get::<String, _>("password_hash")?,
                )),
            }
        });
        match row {
            None => Ok(None),
            Some((username, role, password_hash)) => Ok(Some(StoredUser {
                username,
                role: role_from_db(&role)?,
                password_hash,
            })),
        }
    }

    /// Creates a `user`; `false` when the key is taken.
    pub(crate) async fn insert_user(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let sql = "INSERT INTO users (username, username_key, password_hash, role, created_at_ms) \
                   VALUES ($1, $2, $3, 'user', $4) ON CONFLICT (username_key) DO NOTHING";
        let done = on_pool!(self, pool => sqlx::query(sql)
            .bind(username)
            .bind(username_key(username))
            .bind(password_hash)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    pub(crate) async fn update_hash(&self, key: &str, hash: &str) -> Result<(), sqlx::Error> {
        let sql = "UPDATE users SET password_hash = $1 WHERE username_key = $2";
        on_pool!(self, pool => {
            sqlx::query(sql).bind(hash).bind(key).execute(pool).await?;
        });
        Ok(())
    }

    /// Sets an account's role, unless that would take the admin role from the last admin.
    /// On PostgreSQL the admins' rows are locked first, so two demotions of different
    /// admins take turns and the second counts the first's result (on SQLite one writer
    /// at a time does that already). With
    /// `record_at` (now, for a change made outside the server), the change is recorded for
    /// running servers in the same transaction.
    pub(crate) async fn set_role(
        &self,
        key: &str,
        role: Role,
        record_at: Option<i64>,
    ) -> Result<RoleChange, sqlx::Error> {
        let sql = "UPDATE users SET role = $1 WHERE username_key = $2 \
                   AND ($1 = 'admin' OR role <> 'admin' \
                        OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1) \
                   RETURNING username, role, created_at_ms";
        let exists = "SELECT 1 FROM users WHERE username_key = $1";
        let lock = self.change_lock();
        let lock_admins = match self {
            Db::Sqlite { .. } => None,
            Db::Postgres(_) => Some("SELECT 1 FROM users WHERE role = 'admin' FOR UPDATE"),
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(lock_admins) = lock_admins {
                sqlx::query(lock_admins).execute(&mut *tx).await?;
            }
            match sqlx::query(sql).bind(role.as_str()).bind(key).fetch_optional(&mut *tx).await? {
                Some(row) => {
                    let user = User {
                        username: row.try_get("username")?,
                        role: role_from_db(row.try_get("role")?)?,
                        created_at_unix_ms: row.try_get("created_at_ms")?,
                    };
                    if let Some(now_ms) = record_at {
                        record_change!(tx, lock, key, CHANGE_ROLE, now_ms);
                    }
                    tx.commit().await?;
                    Ok(RoleChange::Changed(user))
                }
                None => match sqlx::query(exists).bind(key).fetch_optional(&mut *tx).await? {
                    Some(_) => Ok(RoleChange::LastAdmin),
                    None => Ok(RoleChange::UnknownUser),
                },
            }
        })
    }

    /// PostgreSQL's statement that makes writers of `account_changes` take turns until
    /// they commit, so ids become visible in order (a reader that has seen id 7 never
    /// misses a 6 committed later). SQLite has one writer at a time anyway.
    fn change_lock(&self) -> Option<&'static str> {
        match self {
            Db::Sqlite { .. } => None,
            Db::Postgres(_) => Some("LOCK TABLE account_changes IN EXCLUSIVE MODE"),
        }
    }

    /// The id of the latest recorded account change (0 when there is none): a server
    /// starts reading after it.
    pub(crate) async fn latest_account_change(&self) -> Result<i64, sqlx::Error> {
        let sql = "SELECT COALESCE(MAX(id), 0) AS latest FROM account_changes";
        on_pool!(self, pool => {
            let row = sqlx::query(sql).fetch_one(pool).await?;
            row.try_get::<i64, _>("latest")
        })
    }

    /// Up to `limit` account changes recorded after id `after`, oldest first: a role
    /// change with the account's role now (so changes that raced each other end in the
    /// role the database holds), a purge as such. Returns the last id read (`after` when
    /// none), and the changes; rows of kinds this version does not know, and role changes
    /// of accounts gone since, are skipped.
    pub(crate) async fn account_changes_after(
        &self,
        after: i64,
        limit: i64,
        now_ms: i64,
    ) -> Result<(i64, Vec<(String, AccountChange)>), sqlx::Error> {
        let sql = "SELECT c.id, c.username_key, c.change, u.username, u.role \
                   FROM account_changes c LEFT JOIN users u ON u.username_key = c.username_key \
                   WHERE c.id > $1 ORDER BY c.id LIMIT $2";
        let rows: Vec<ChangeRow> = on_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(after).bind(limit).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(ChangeRow {
                        id: row.try_get("id")?,
                        key: row.try_get("username_key")?,
                        kind: row.try_get("change")?,
                        username: row.try_get("username")?,
                        role: row.try_get("role")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?
        });
        let mut last = after;
        let mut changes = Vec::with_capacity(rows.len());
        for ChangeRow {
            id,
            key,
            kind,
            username,
            role,
        } in rows
        {
            last = last.max(id);
            match (kind.as_str(), username, role) {
                (CHANGE_ROLE, Some(username), Some(role)) => {
                    changes.push((username, AccountChange::Role(role_from_db(&role)?)));
                }
                // The account was purged since: its purge follows.
                (CHANGE_ROLE, _, _) => {}
                (CHANGE_PURGE, _, _) => changes.push((key, AccountChange::Purged)),
                (CHANGE_BAN, Some(username), _) => {
                    // A ban lifted or expired since has nothing left to do.
                    if let Some(ban) = self.sanction_of(&key, SanctionKind::Ban, now_ms).await? {
                        changes.push((username, AccountChange::Banned(ban)));
                    }
                }
                (CHANGE_MUTE, Some(username), _) => {
                    let change = match self.sanction_of(&key, SanctionKind::Mute, now_ms).await? {
                        Some(mute) => AccountChange::Muted(mute),
                        None => AccountChange::Unmuted,
                    };
                    changes.push((username, change));
                }
                // The account was purged since: its purge follows.
                (CHANGE_BAN | CHANGE_MUTE, None, _) => {}
                (other, _, _) => {
                    tracing::debug!(
                        id,
                        kind = other,
                        "account change of an unknown kind skipped"
                    );
                }
            }
        }
        Ok((last, changes))
    }

    /// The sanctions of account `key` in force at `now_ms`: at most a ban and a mute.
    pub(crate) async fn sanctions_of(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Vec<Sanction>, sqlx::Error> {
        let sql = format!("{SANCTION_COLUMNS} AND s.username_key = $2 ORDER BY s.kind");
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(now_ms).bind(key).fetch_all(pool).await?;
            rows.iter().map(|row| sanction_from_row(row, now_ms)).collect()
        })
    }

    /// The sanction of `kind` of account `key` in force at `now_ms`, if any.
    pub(crate) async fn sanction_of(
        &self,
        key: &str,
        kind: SanctionKind,
        now_ms: i64,
    ) -> Result<Option<Sanction>, sqlx::Error> {
        let all = self.sanctions_of(key, now_ms).await?;
        Ok(all.into_iter().find(|sanction| sanction.kind == kind))
    }

    /// Up to `limit` sanctions in force at `now_ms`, by username key, bans before mutes.
    pub(crate) async fn sanctions_in_force(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<Sanction>, sqlx::Error> {
        let sql = format!("{SANCTION_COLUMNS} ORDER BY s.username_key, s.kind LIMIT $2");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(now_ms).bind(limit).fetch_all(pool).await?;
            rows.iter().map(|row| sanction_from_row(row, now_ms)).collect()
        })
    }

    /// Bans or mutes account `key` (replacing a sanction of the same kind) unless its role
    /// is not below `outranked_by` (`None`: the operator, who may sanction anyone), and
    /// records the change for running servers, in one transaction. Expired sanctions of
    /// every account are deleted on the way.
    pub(crate) async fn sanction(
        &self,
        key: &str,
        new: NewSanction<'_>,
        outranked_by: Option<Role>,
        now_ms: i64,
    ) -> Result<SanctionChange, sqlx::Error> {
        let upsert = "INSERT INTO sanctions \
                        (username_key, kind, set_by, reason, created_at_ms, expires_at_ms) \
                      VALUES ($1, $2, $3, $4, $5, $6) \
                      ON CONFLICT (username_key, kind) DO UPDATE SET set_by = $3, reason = $4, \
                        created_at_ms = $5, expires_at_ms = $6";
        let prune = "DELETE FROM sanctions WHERE expires_at_ms <= $1";
        let lock = self.change_lock();
        let change_kind = match new.kind {
            SanctionKind::Ban => CHANGE_BAN,
            SanctionKind::Mute => CHANGE_MUTE,
        };
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let user = match target(&mut tx, key, outranked_by).await? {
                Ok(user) => user,
                Err(refused) => return Ok(refused),
            };
            sqlx::query(prune).bind(now_ms).execute(&mut *tx).await?;
            sqlx::query(upsert)
                .bind(key)
                .bind(new.kind.as_str())
                .bind(new.by)
                .bind(new.reason)
                .bind(now_ms)
                .bind(new.expires_at_ms)
                .execute(&mut *tx)
                .await?;
            record_change!(tx, lock, key, change_kind, now_ms);
            tx.commit().await?;
            user
        });
        Ok(SanctionChange::Set(Sanction {
            kind: new.kind,
            username: outcome,
            by: new.by.to_owned(),
            reason: new.reason.to_owned(),
            set_at_unix_ms: now_ms,
            expires: new.expires_at_ms.map(|at| Expiry {
                at_unix_ms: at,
                remaining: Duration::from_millis(
                    u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0),
                ),
            }),
        }))
    }

    /// Lifts the sanction of `kind` of account `key` in force at `now_ms`, unless its role
    /// is not below `outranked_by` (`None`: the operator); a lifted mute is recorded for
    /// running servers in the same transaction.
    pub(crate) async fn lift_sanction(
        &self,
        key: &str,
        kind: SanctionKind,
        outranked_by: Option<Role>,
        now_ms: i64,
    ) -> Result<SanctionChange, sqlx::Error> {
        let delete = "DELETE FROM sanctions WHERE username_key = $1 AND kind = $2 \
                      AND (expires_at_ms IS NULL OR expires_at_ms > $3)";
        let lock = self.change_lock();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let username = match target(&mut tx, key, outranked_by).await? {
                Ok(user) => user,
                Err(refused) => return Ok(refused),
            };
            let lifted = sqlx::query(delete)
                .bind(key)
                .bind(kind.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if lifted == 0 {
                return Ok(SanctionChange::NotSanctioned);
            }
            if kind == SanctionKind::Mute {
                record_change!(tx, lock, key, CHANGE_MUTE, now_ms);
            }
            tx.commit().await?;
            Ok(SanctionChange::Lifted(username))
        })
    }

    pub(crate) async fn list_users(&self) -> Result<Vec<User>, sqlx::Error> {
        let sql = "SELECT username, role, created_at_ms FROM users ORDER BY username_key";
        on_pool!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(User {
                        username: row.try_get("username")?,
                        role: role_from_db(row.try_get("role")?)?,
                        created_at_unix_ms: row.try_get("created_at_ms")?,
                    })
                })
                .collect()
        })
    }

    /// Deletes up to `batch` channel messages and delivered private messages written before
    /// `cutoff_ms`; returns how many went. Undelivered private messages stay: their
    /// recipient has not read them yet.
    pub(crate) async fn prune_before(
        &self,
        cutoff_ms: i64,
        batch: i64,
    ) -> Result<u64, sqlx::Error> {
        let sql = "DELETE FROM messages WHERE seq IN ( \
                     SELECT seq FROM messages WHERE created_at_ms < $1 \
                     AND (channel_key IS NOT NULL OR delivered = TRUE) LIMIT $2)";
        on_pool!(self, pool => Ok(sqlx::query(sql)
            .bind(cutoff_ms)
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// Deletes the account with `key` and every message it sent or was sent, and records
    /// the purge for running servers, in one transaction. With `spare_last_admin`, the
    /// only admin is not deleted (admins' rows locked first on PostgreSQL, as for
    /// [`Db::set_role`]).
    pub(crate) async fn purge_user(
        &self,
        key: &str,
        now_ms: i64,
        spare_last_admin: bool,
    ) -> Result<Purge, sqlx::Error> {
        // `sender` holds the name as registered; names match without regard to ASCII case.
        let messages = "DELETE FROM messages WHERE recipient_key = $1 OR LOWER(sender) = $1";
        let tokens = "DELETE FROM resume_tokens WHERE username_key = $1";
        let user = "DELETE FROM users WHERE username_key = $1 \
                    AND ($2 = FALSE OR role <> 'admin' \
                         OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1) \
                    RETURNING username";
        let exists = "SELECT 1 FROM users WHERE username_key = $1";
        let lock = self.change_lock();
        let lock_admins = match self {
            Db::Postgres(_) if spare_last_admin => {
                Some("SELECT 1 FROM users WHERE role = 'admin' FOR UPDATE")
            }
            _ => None,
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some(lock_admins) = lock_admins {
                sqlx::query(lock_admins).execute(&mut *tx).await?;
            }
            let deleted = sqlx::query(user)
                .bind(key)
                .bind(spare_last_admin)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = deleted else {
                return match sqlx::query(exists).bind(key).fetch_optional(&mut *tx).await? {
                    Some(_) => Ok(Purge::LastAdmin),
                    None => Ok(Purge::UnknownUser),
                };
            };
            let username: String = row.try_get("username")?;
            let deleted = sqlx::query(messages).bind(key).execute(&mut *tx).await?.rows_affected();
            // A name registered again later owns and is invited to nothing.
            sqlx::query("DELETE FROM channel_invites WHERE username_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE channels SET owner_key = NULL WHERE owner_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            sqlx::query(tokens).bind(key).execute(&mut *tx).await?;
            // The schema cascades too; said here so the purge does not depend on it.
            sqlx::query("DELETE FROM sanctions WHERE username_key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
            record_change!(tx, lock, key, CHANGE_PURGE, now_ms);
            tx.commit().await?;
            Ok(Purge::Purged { username, messages: deleted })
        })
    }

    /// Registered channels with their invitations, ordered by key: all of them, or (with
    /// `only`, a key) that one.
    pub(crate) async fn channels(
        &self,
        only: Option<&str>,
    ) -> Result<Vec<StoredChannel>, sqlx::Error> {
        let (key, filtered) = (only.unwrap_or_default(), only.is_some());
        let (channels, invites) = on_pool!(self, pool => {
            let mut channels = Vec::new();
            for row in sqlx::query(SELECT_CHANNELS).bind(key).bind(filtered).fetch_all(pool).await? {
                let channel = StoredChannel {
                    name: row.try_get("name")?,
                    owner: row.try_get("owner")?,
                    topic: row.try_get("topic")?,
                    private: row.try_get("private")?,
                    invited: Vec::new(),
                };
                channels.push((row.try_get::<String, _>("name_key")?, channel));
            }
            let mut invites = Vec::new();
            for row in sqlx::query(SELECT_INVITES).bind(key).bind(filtered).fetch_all(pool).await? {
                invites.push((
                    row.try_get::<String, _>("channel_key")?,
                    row.try_get::<String, _>("username")?,
                ));
            }
            (channels, invites)
        });
        let mut by_key: std::collections::BTreeMap<String, StoredChannel> =
            channels.into_iter().collect();
        for (channel, user) in invites {
            if let Some(stored) = by_key.get_mut(&channel) {
                stored.invited.push(user);
            }
        }
        Ok(by_key.into_values().collect())
    }

    /// Registers channel `name` with the owner with key `owner_key`, unless it is
    /// registered already (then it stays as it is). A row that exists unregistered (the
    /// append writer creates one for a channel's first message, which may be committed
    /// before its registration) is claimed.
    pub(crate) async fn register_channel(
        &self,
        name: &str,
        key: &str,
        owner_key: Option<&str>,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let sql = "INSERT INTO channels \
                       (name, name_key, owner_key, registered_at_ms, created_at_ms) \
                   VALUES ($1, $2, $3, $4, $4) \
                   ON CONFLICT (name_key) DO UPDATE \
                   SET owner_key = excluded.owner_key, registered_at_ms = excluded.registered_at_ms \
                   WHERE channels.registered_at_ms IS NULL";
        on_pool!(self, pool => {
            sqlx::query(sql).bind(name).bind(key).bind(owner_key).bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }

    /// Sets a setting of channel `name` (key `key`), registering it without owner first if
    /// needed.
    pub(crate) async fn set_channel(
        &self,
        name: &str,
        key: &str,
        setting: ChannelSetting<'_>,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let (column, topic, private) = match setting {
            ChannelSetting::Topic(topic) => ("topic", topic, false),
            ChannelSetting::Private(private) => ("private", None, private),
        };
        // The column name is one of two constants, never input.
        let sql = format!(
            "INSERT INTO channels (name, name_key, topic, private, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name_key) DO UPDATE SET {column} = excluded.{column}"
        );
        on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(name)
                .bind(key)
                .bind(topic)
                .bind(private)
                .bind(now_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Invites the account with key `user_key` to channel `name` (key `key`), registering
    /// the channel without owner first if needed; inviting twice keeps one invitation.
    pub(crate) async fn invite(
        &self,
        name: &str,
        key: &str,
        user_key: &str,
        now_ms: i64,
    ) -> Result<Invitation, sqlx::Error> {
        let user = "SELECT username, role, created_at_ms FROM users WHERE username_key = $1";
        let channel = "INSERT INTO channels (name, name_key, created_at_ms) VALUES ($1, $2, $3) \
                       ON CONFLICT (name_key) DO NOTHING";
        let invite = "INSERT INTO channel_invites (channel_key, username_key, created_at_ms) \
                      VALUES ($1, $2, $3) ON CONFLICT (channel_key, username_key) DO NOTHING";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let Some(row) = sqlx::query(user).bind(user_key).fetch_optional(&mut *tx).await? else {
                return Ok(Invitation::UnknownUser);
            };
            let invitee = User {
                username: row.try_get("username")?,
                role: role_from_db(row.try_get("role")?)?,
                created_at_unix_ms: row.try_get("created_at_ms")?,
            };
            sqlx::query(channel).bind(name).bind(key).bind(now_ms).execute(&mut *tx).await?;
            sqlx::query(invite).bind(key).bind(user_key).bind(now_ms).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Invitation::Invited(invitee))
        })
    }

    /// Keeps a resume token (by its hash) for the account with `key` until `expires_ms`,
    /// and forgets the tokens expired at `now_ms` and, past [`MAX_TOKENS_PER_ACCOUNT`],
    /// the account's oldest.
    pub(crate) async fn insert_token(
        &self,
        token_hash: &str,
        key: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let expired = "DELETE FROM resume_tokens WHERE expires_at_ms <= $1";
        let excess = "DELETE FROM resume_tokens WHERE username_key = $1 AND id NOT IN \
                      (SELECT id FROM resume_tokens WHERE username_key = $1 \
                       ORDER BY id DESC LIMIT $2)";
        let insert = "INSERT INTO resume_tokens \
                      (token_hash, username_key, created_at_ms, expires_at_ms) \
                      VALUES ($1, $2, $3, $4)";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(expired).bind(now_ms).execute(&mut *tx).await?;
            sqlx::query(insert)
                .bind(token_hash)
                .bind(key)
                .bind(now_ms)
                .bind(expires_ms)
                .execute(&mut *tx)
                .await?;
            sqlx::query(excess)
                .bind(key)
                .bind(MAX_TOKENS_PER_ACCOUNT)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The account a live token (by its hash) of the account with `key` logs in to, with
    /// its sanctions in force at `now_ms` (bans before mutes): a token login's one query.
    pub(crate) async fn token_user(
        &self,
        token_hash: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(User, Vec<Sanction>)>, sqlx::Error> {
        // One row per sanction in force, or one with no sanction (`kind` null).
        let sql = concat!(
            "SELECT u.username, u.role, u.created_at_ms AS user_created_at_ms, \
               s.kind, s.set_by, s.reason, s.created_at_ms, s.expires_at_ms \
             FROM resume_tokens t \
             JOIN users u ON u.username_key = t.username_key \
             LEFT JOIN sanctions s ON s.username_key = u.username_key AND ",
            sanction_in_force!(),
            " WHERE t.token_hash = $2 AND t.username_key = $3 AND t.expires_at_ms > $1 \
             ORDER BY s.kind"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(sql)
                .bind(now_ms)
                .bind(token_hash)
                .bind(key)
                .fetch_all(pool)
                .await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let user = User {
                username: first.try_get("username")?,
                role: role_from_db(&first.try_get::<String, _>("role")?)?,
                created_at_unix_ms: first.try_get("user_created_at_ms")?,
            };
            let mut sanctions = Vec::new();
            for row in &rows {
                if row.try_get::<Option<String>, _>("kind")?.is_some() {
                    sanctions.push(sanction_from_row(row, now_ms)?);
                }
            }
            Ok(Some((user, sanctions)))
        })
    }

    /// Replaces the password hash of the account with `key` and forgets its resume tokens,
    /// in one transaction (a new password never leaves an old token working).
    pub(crate) async fn set_password(&self, key: &str, hash: &str) -> Result<(), sqlx::Error> {
        let update = "UPDATE users SET password_hash = $1 WHERE username_key = $2";
        let revoke = "DELETE FROM resume_tokens WHERE username_key = $1";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(update).bind(hash).bind(key).execute(&mut *tx).await?;
            sqlx::query(revoke).bind(key).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Forgets every resume token of the account with `key`.
    pub(crate) async fn revoke_tokens(&self, key: &str) -> Result<(), sqlx::Error> {
        let sql = "DELETE FROM resume_tokens WHERE username_key = $1";
        on_pool!(self, pool => {
            sqlx::query(sql).bind(key).execute(pool).await?;
        });
        Ok(())
    }

    /// A trivial query: whether the database answers at all.
    pub(crate) async fn ping(&self) -> Result<(), sqlx::Error> {
        on_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// The last `limit` messages of a channel, oldest first; with `before`, those stored
    /// before that message of the channel (none when it is not one).
    pub(crate) async fn history(
        &self,
        channel_key: &str,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<Vec<StoredMessage>, sqlx::Error> {
        let page = "channel_key = $1 AND seq < (SELECT seq FROM messages \
                    WHERE message_id = $3 AND channel_key = $1)";
        let filter = if before.is_some() {
            page
        } else {
            "channel_key = $1"
        };
        self.last_messages(filter, (channel_key, ""), limit, before)
            .await
    }

    /// The last `limit` private messages between the users with keys `a` and `b`, both
    /// ways, oldest first; with `before`, those stored before that message of theirs
    /// (none when it is not one).
    pub(crate) async fn conversation(
        &self,
        a: &str,
        b: &str,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<Vec<StoredMessage>, sqlx::Error> {
        // `sender` holds the name as registered; names match without regard to ASCII case
        // (and are ASCII), so LOWER gives their key (indexed, see the migration).
        let between = "((recipient_key = $1 AND LOWER(sender) = $2) \
                        OR (recipient_key = $2 AND LOWER(sender) = $1))";
        let page = format!(
            "{between} AND seq < (SELECT seq FROM messages \
             WHERE message_id = $3 AND {between})"
        );
        let filter = if before.is_some() {
            page.as_str()
        } else {
            between
        };
        self.last_messages(filter, (a, b), limit, before).await
    }

    /// The last `limit` messages matching `filter` (over `$1`, `$2` = `keys` and `$3` =
    /// `before`), oldest first.
    async fn last_messages(
        &self,
        filter: &str,
        keys: (&str, &str),
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<Vec<StoredMessage>, sqlx::Error> {
        let sql = format!(
            "SELECT message_id, sender, body, created_at_ms FROM ( \
               SELECT seq, message_id, sender, body, created_at_ms FROM messages \
               WHERE {filter} ORDER BY seq DESC LIMIT $4 \
             ) AS recent ORDER BY seq ASC"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let before = before.map(|id| id.to_string()).unwrap_or_default();
        on_pool!(self, pool => {
            // Every placeholder is bound, used by `filter` or not.
            let query = sqlx::query(&sql).bind(keys.0).bind(keys.1).bind(before).bind(limit);
            let rows = query.fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(StoredMessage {
                        id: message_id_from_db(row.try_get("message_id")?)?,
                        sender: row.try_get("sender")?,
                        text: row.try_get("body")?,
                        sent_at_unix_ms: row.try_get("created_at_ms")?,
                    })
                })
                .collect()
        })
    }

    /// Undelivered private messages of a user, oldest first.
    pub(crate) async fn pending(
        &self,
        recipient_key: &str,
    ) -> Result<Vec<PendingMessage>, sqlx::Error> {
        let sql = "SELECT message_id, sender, body, created_at_ms FROM messages \
                   WHERE recipient_key = $1 AND delivered = FALSE ORDER BY seq ASC";
        on_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(recipient_key).fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(PendingMessage {
                        id: message_id_from_db(row.try_get("message_id")?)?,
                        sender: row.try_get("sender")?,
                        text: row.try_get("body")?,
                        sent_at_unix_ms: row.try_get("created_at_ms")?,
                    })
                })
                .collect()
        })
    }

    pub(crate) async fn mark_delivered(
        &self,
        ids: &[MessageId],
        delivered: bool,
    ) -> Result<(), sqlx::Error> {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        match self {
            Db::Sqlite { pool, .. } => {
                let mut tx = pool.begin().await?;
                for chunk in ids.chunks(SQLITE_KEYS_PER_STATEMENT) {
                    let mut query = QueryBuilder::new("UPDATE messages SET delivered = ");
                    query.push_bind(delivered);
                    query.push(" WHERE recipient_key IS NOT NULL AND message_id IN (");
                    let mut list = query.separated(", ");
                    for id in chunk {
                        list.push_bind(id);
                    }
                    query.push(")");
                    query.build().execute(&mut *tx).await?;
                }
                tx.commit().await
            }
            Db::Postgres(pool) => {
                sqlx::query(
                    "UPDATE messages SET delivered = $2 \
                     WHERE recipient_key IS NOT NULL AND message_id = ANY($1)",
                )
                .bind(&ids)
                .bind(delivered)
                .execute(pool)
                .await?;
                Ok(())
            }
        }
    }

    /// Writes `rows` atomically, in order, ignoring ids already stored, on the writer's
    /// `session`. A pending private message (`delivered == Some(false)`) whose recipient
    /// has no account is skipped; the answer says, per row, whether it was kept.
    pub(crate) async fn append(
        &self,
        rows: &[&AppendRow],
        session: &mut AppendSession,
    ) -> Result<Vec<bool>, sqlx::Error> {
        let plan = AppendPlan::new(rows, &session.known_channels);
        let result = match self {
            Db::Sqlite {
                pool,
                single_connection,
            } => {
                let mut conn = match session.held.take() {
                    Some(HeldConnection::Sqlite(conn)) => conn,
                    _ => pool.acquire().await?,
                };
                let result = sqlite_append(&mut conn, rows, &plan).await;
                if result.is_ok() && !single_connection {
                    session.held = Some(HeldConnection::Sqlite(conn));
                }
                result
            }
            Db::Postgres(pool) => {
                let mut conn = match session.held.take() {
                    Some(HeldConnection::Postgres(conn)) => conn,
                    _ => pool.acquire().await?,
                };
                let result = postgres_append(&mut conn, rows, &plan).await;
                if result.is_ok() {
                    session.held = Some(HeldConnection::Postgres(conn));
                }
                result
            }
        };
        match result {
            Ok(kept) => {
                let new_channels = plan.channels.into_keys().map(str::to_owned);
                session.known_channels.extend(new_channels);
                Ok(kept)
            }
            Err(error) => {
                // The connection is not kept after a failure (above); a channel's row may
                // have gone behind our back, so the next batch checks every channel.
                session.known_channels.clear();
                Err(error)
            }
        }
    }
}

/// In a sanction's transaction: the name as registered of account `key`, or why it may
/// not be sanctioned by someone of role `outranked_by` (`None`: anyone may). On
/// PostgreSQL the account's row is locked, so a role change waits for the sanction.
async fn target<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    key: &str,
    outranked_by: Option<Role>,
) -> Result<Result<String, SanctionChange>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    for<'c2> &'c2 str: sqlx::ColumnIndex<DB::Row>,
{
    let sql = if DB::NAME == "PostgreSQL" {
        "SELECT username, role FROM users WHERE username_key = $1 FOR UPDATE"
    } else {
        "SELECT username, role FROM users WHERE username_key = $1"
    };
    let Some(row) = sqlx::query(sql).bind(key).fetch_optional(&mut **tx).await? else {
        return Ok(Err(SanctionChange::UnknownUser));
    };
    let role = role_from_db(&row.try_get::<String, _>("role")?)?;
    if outranked_by.is_some_and(|by| role >= by) {
        return Ok(Err(SanctionChange::Outranked));
    }
    Ok(Ok(row.try_get("username")?))
}

/// What the append writer keeps from batch to batch.
///
/// Its own connection, held instead of taken from the pool per batch: no pool round trip
/// and no ping on release per batch, and on SQLite a page cache that stays valid (any
/// other connection's commit resets a connection's cache). Not kept when the pool's one
/// connection is the database (SQLite in memory), and not kept after a failure or a
/// timeout (it goes with the abandoned statement).
///
/// The keys of channels known to have their row (channels are never deleted): a batch
/// with no pending private message, no new channel and rows for one statement is that one
/// statement, atomic on its own, with no transaction.
#[derive(Default)]
pub(crate) struct AppendSession {
    held: Option<HeldConnection>,
    known_channels: HashSet<String>,
}

enum HeldConnection {
    Sqlite(PoolConnection<sqlx::Sqlite>),
    Postgres(PoolConnection<sqlx::Postgres>),
}

/// What a batch needs besides its messages.
struct AppendPlan<'a> {
    /// Recipients of pending private messages, who must have an account.
    wanted: Vec<&'a str>,
    /// Channels not known to have their row yet: key to display name.
    channels: HashMap<&'a str, &'a str>,
    /// The batch is one `INSERT` of messages and nothing else (if its dialect allows as
    /// many rows in one statement).
    messages_only: bool,
    now_ms: i64,
}

impl<'a> AppendPlan<'a> {
    fn new(rows: &[&'a AppendRow], known_channels: &HashSet<String>) -> AppendPlan<'a> {
        let wanted: HashSet<&str> = rows
            .iter()
            .filter(|row| row.delivered == Some(false))
            .filter_map(|row| row.recipient_key.as_deref())
            .collect();
        let mut channels: HashMap<&str, &str> = HashMap::new();
        for row in rows {
            if let Some((name, key)) = &row.channel
                && !known_channels.contains(key)
            {
                channels.entry(key.as_str()).or_insert(name.as_str());
            }
        }
        AppendPlan {
            messages_only: wanted.is_empty() && channels.is_empty(),
            wanted: wanted.into_iter().collect(),
            channels,
            now_ms: rows.first().map_or(0, |row| row.created_at_ms),
        }
    }
}

/// Writes a batch on SQLite (see [`Db::append`]).
async fn sqlite_append(
    conn: &mut sqlx::SqliteConnection,
    rows: &[&AppendRow],
    plan: &AppendPlan<'_>,
) -> Result<Vec<bool>, sqlx::Error> {
    if plan.messages_only && rows.len() <= SQLITE_ROWS_PER_STATEMENT {
        sqlite_insert_messages(&mut *conn, rows).await?;
        return Ok(vec![true; rows.len()]);
    }
    let mut tx = conn.begin().await?;
    let mut known: HashSet<String> = HashSet::new();
    for chunk in plan.wanted.chunks(SQLITE_KEYS_PER_STATEMENT) {
        let mut query = QueryBuilder::new("SELECT username_key FROM users WHERE username_key IN (");
        let mut list = query.separated(", ");
        for key in chunk {
            list.push_bind(*key);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *tx).await? {
            known.insert(row.try_get("username_key")?);
        }
    }
    let new_channels: Vec<(&str, &str)> = plan.channels.iter().map(|(k, n)| (*k, *n)).collect();
    for chunk in new_channels.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::new("INSERT INTO channels (name, name_key, created_at_ms) ");
        query.push_values(chunk, |mut values, (key, name)| {
            values
                .push_bind(*name)
                .push_bind(*key)
                .push_bind(plan.now_ms);
        });
        query.push(" ON CONFLICT (name_key) DO NOTHING");
        query.build().execute(&mut *tx).await?;
    }
    let (kept, to_write) = keep(rows, &known);
    for chunk in to_write.chunks(SQLITE_ROWS_PER_STATEMENT) {
        sqlite_insert_messages(&mut *tx, chunk).await?;
    }
    tx.commit().await?;
    Ok(kept)
}

/// Writes a batch on PostgreSQL (see [`Db::append`]).
async fn postgres_append(
    conn: &mut sqlx::PgConnection,
    rows: &[&AppendRow],
    plan: &AppendPlan<'_>,
) -> Result<Vec<bool>, sqlx::Error> {
    if plan.messages_only {
        postgres_insert_messages(&mut *conn, rows).await?;
        return Ok(vec![true; rows.len()]);
    }
    let mut tx = conn.begin().await?;
    let known: HashSet<String> = if plan.wanted.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar("SELECT username_key FROM users WHERE username_key = ANY($1)")
            .bind(&plan.wanted)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
    };
    if !plan.channels.is_empty() {
        let (keys, names): (Vec<&str>, Vec<&str>) =
            plan.channels.iter().map(|(k, n)| (*k, *n)).unzip();
        sqlx::query(
            "INSERT INTO channels (name, name_key, created_at_ms) \
             SELECT name, name_key, $3 FROM UNNEST($1::text[], $2::text[]) \
               AS c(name, name_key) \
             ON CONFLICT (name_key) DO NOTHING",
        )
        .bind(&names)
        .bind(&keys)
        .bind(plan.now_ms)
        .execute(&mut *tx)
        .await?;
    }
    let (kept, to_write) = keep(rows, &known);
    if !to_write.is_empty() {
        postgres_insert_messages(&mut *tx, &to_write).await?;
    }
    tx.commit().await?;
    Ok(kept)
}

/// Writes `rows` into SQLite's `messages` with one multi-row `INSERT`, in order, ignoring
/// ids already stored (at most [`SQLITE_ROWS_PER_STATEMENT`] rows).
async fn sqlite_insert_messages<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    rows: &[&AppendRow],
) -> Result<(), sqlx::Error> {
    let mut query = QueryBuilder::new(
        "INSERT INTO messages (message_id, channel_key, recipient_key, sender, \
         body, created_at_ms, delivered) ",
    );
    query.push_values(rows, |mut values, row| {
        values
            .push_bind(&row.message_id)
            .push_bind(row.channel.as_ref().map(|(_, key)| key))
            .push_bind(&row.recipient_key)
            .push_bind(&row.sender)
            .push_bind(&row.body)
            .push_bind(row.created_at_ms)
            .push_bind(row.delivered);
    });
    query.push(" ON CONFLICT (message_id) DO NOTHING");
    query.build().execute(executor).await?;
    Ok(())
}

/// Writes `rows` into PostgreSQL's `messages` with one statement, in order, ignoring ids
/// already stored.
async fn postgres_insert_messages<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Postgres>,
    rows: &[&AppendRow],
) -> Result<(), sqlx::Error> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut channel_keys = Vec::with_capacity(rows.len());
    let mut recipient_keys = Vec::with_capacity(rows.len());
    let mut senders = Vec::with_capacity(rows.len());
    let mut bodies = Vec::with_capacity(rows.len());
    let mut times = Vec::with_capacity(rows.len());
    let mut delivered = Vec::with_capacity(rows.len());
    for row in rows {
        ids.push(row.message_id.as_str());
        channel_keys.push(row.channel.as_ref().map(|(_, key)| key.as_str()));
        recipient_keys.push(row.recipient_key.as_deref());
        senders.push(row.sender.as_str());
        bodies.push(row.body.as_str());
        times.push(row.created_at_ms);
        delivered.push(row.delivered);
    }
    // Arrays instead of one bound value per column and row, ordered by their position so
    // `seq` keeps the order.
    sqlx::query(
        "INSERT INTO messages (message_id, channel_key, recipient_key, sender, \
           body, created_at_ms, delivered) \
         SELECT m.message_id, m.channel_key, m.recipient_key, m.sender, m.body, \
           m.created_at_ms, m.delivered \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
           $6::int8[], $7::bool[]) WITH ORDINALITY \
           AS m(message_id, channel_key, recipient_key, sender, body, \
             created_at_ms, delivered, position) \
         ORDER BY m.position \
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&channel_keys)
    .bind(&recipient_keys)
    .bind(&senders)
    .bind(&bodies)
    .bind(&times)
    .bind(&delivered)
    .execute(executor)
    .await?;
    Ok(())
}

/// Which rows to write: all but pending private messages to a recipient not in `known`.
/// Returns a flag per row and the rows to write, in order.
fn keep<'a>(rows: &[&'a AppendRow], known: &HashSet<String>) -> (Vec<bool>, Vec<&'a AppendRow>) {
    let kept: Vec<bool> = rows
        .iter()
        .map(|row| match (&row.recipient_key, row.delivered) {
            (Some(key), Some(false)) => known.contains(key),
            _ => true,
        })
        .collect();
    let to_write = rows
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| **kept)
        .map(|(row, _)| *row)
        .collect();
    (kept, to_write)
}

/// Whether retrying `error` unchanged can never succeed (bad data, not a lost connection).
pub(crate) fn is_permanent(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                // SQLSTATE classes 22 (data exception) and 23 (integrity violation).
                code.starts_with("22") || code.starts_with("23")
            } else {
                // SQLite primary result codes TOOBIG, CONSTRAINT and MISMATCH.
                code.parse::<u32>()
                    .is_ok_and(|c| matches!(c & 0xff, 18..=20))
            }
        }
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Opens (making it if missing) the SQLite database `name` in `dir`.
    async fn open_sqlite(dir: &tempfile::TempDir, name: &str) -> Db {
        let url = format!("sqlite://{}/{name}", dir.path().display());
        Db::open(&url, &StoreConfig::default()).await.unwrap()
    }

    #[tokio::test]
    async fn sqlite_connections_keep_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_sqlite(&dir, "wur2.db").await;
        assert_eq!(
            scalar(&db, "PRAGMA cache_size").await,
            -i64::from(SQLITE_CACHE_KIB)
        );
        db.close().await;
    }

    /// The one number `sql` answers on SQLite database `db`.
    async fn scalar(db: &Db, sql: &'static str) -> i64 {
        let Db::Sqlite { pool, .. } = db else {
            panic!("an SQLite URL opens SQLite");
        };
        sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
    }

    #[tokio::test]
    async fn a_new_sqlite_database_has_small_pages_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_sqlite(&dir, "new.db").await;
        assert_eq!(
            scalar(&db, "PRAGMA page_size").await,
            i64::from(SQLITE_PAGE_BYTES)
        );
        db.close().await;

        // A database made with SQLite's default pages, in WAL mode, before this server.
        let old = format!("sqlite://{}/old.db", dir.path().display());
        let options = SqliteConnectOptions::from_str(&old)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE before_us (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let db = open_sqlite(&dir, "old.db").await;
        assert_eq!(
            scalar(&db, "PRAGMA page_size").await,
            4_096,
            "an existing database is not rebuilt"
        );
        let migrated = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages'";
        assert_eq!(scalar(&db, migrated).await, 1, "it takes the schema");
        db.close().await;
    }
}
