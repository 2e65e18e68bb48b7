//! [`Store`]: the handle that answers the engine's store requests.

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::channel::oneshot;
use wur2_engine::{
    ChannelMessage, Password, PrivateMessage, Role, StoreError, StoreReply, StoreRequest,
};

use crate::config::StoreConfig;
use crate::db::{AppendRow, Db, key};
use crate::password::{HashPool, Hasher, Refused as HashRefused};
use crate::writer::{Append, AppendQueue, AppendWriter, Refused, timed};
use crate::{OpenError, User};

/// What every handle and the writer share.
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) queue: AppendQueue,
    pub(crate) config: StoreConfig,
    hasher: Hasher,
    hash_pool: HashPool,
    /// Verified against for unknown users, so that answer takes as long as a wrong password.
    dummy_hash: String,
}

/// Closes the queue when the last [`Store`] handle is dropped, so the writer can finish.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.queue.begin_close();
    }
}

/// A cheaply clonable handle to one database and its password hashing pool.
///
/// Open it with [`Store::open`], spawn the returned [`AppendWriter`], then answer every
/// [`StoreRequest`] of the engine with [`Store::execute`]. It works under Tokio and
/// async-std alike: it spawns no tasks and uses no runtime's timers (sqlx picks Tokio when
/// called inside a Tokio runtime, async-std otherwise).
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.shared().db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        };
        f.debug_struct("Store")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn unavailable(error: impl std::fmt::Display) -> StoreReply {
    StoreReply::Failed(StoreError::Unavailable(error.to_string()))
}

fn too_slow() -> StoreError {
    StoreError::Unavailable("the database did not answer in time".to_owned())
}

impl Store {
    /// Connects to `url`, applies the migrations and starts the hashing threads.
    ///
    /// `url` is `sqlite://path/to/file.db` (the file is created when missing; WAL mode and a
    /// busy timeout are set) or `postgres://user:password@host/database`.
    ///
    /// The returned [`AppendWriter`] writes message appends; spawn `writer.run()` on the
    /// same runtime, or appends are queued but never stored.
    pub async fn open(url: &str, config: StoreConfig) -> Result<(Store, AppendWriter), OpenError> {
        let hasher =
            Hasher::new(config.password).map_err(|invalid| OpenError::PasswordParams(invalid.0))?;
        let hash_pool =
            HashPool::start(config.hash_threads, config.hash_queue).map_err(OpenError::Threads)?;
        let db = Db::open(url, &config).await?;
        let dummy = {
            let hasher = hasher.clone();
            hash_pool
                .run(move || hasher.hash(&Password::new("wur2 dummy password for unknown users")))
                .map_err(|_| OpenError::PasswordParams("the hashing pool refused".to_owned()))?
        };
        let dummy_hash = dummy
            .await
            .map_err(|_| OpenError::PasswordParams("the hashing pool stopped".to_owned()))?
            .map_err(OpenError::PasswordParams)?;
        tracing::info!(
            backend = match db {
                Db::Sqlite(_) => "sqlite",
                Db::Postgres(_) => "postgres",
            },
            hash_threads = hash_pool.threads(),
            "store opened"
        );
        let shared = Arc::new(Shared {
            db,
            queue: AppendQueue::new(config.append_buffer),
            config,
            hasher,
            hash_pool,
            dummy_hash,
        });
        let writer = AppendWriter {
            shared: Arc::clone(&shared),
        };
        Ok((
            Store {
                handle: Arc::new(Handle { shared }),
            },
            writer,
        ))
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Answers one request of the engine.
    ///
    /// The order-sensitive part happens when this is *called*, not when the future is first
    /// polled: an append is queued at once (its `Done` means queued, not yet written), and a
    /// history or pending-message read sees every append queued by earlier calls. So call
    /// `execute` in the order the engine emitted its requests, then spawn or await the
    /// futures in any order. The future owns what it needs (`'static`) and never blocks.
    pub fn execute(
        &self,
        request: StoreRequest,
    ) -> impl Future<Output = StoreReply> + Send + 'static {
        let shared = Arc::clone(self.shared());
        let step = match request {
            StoreRequest::AppendChannelMessage(message) => Step::Now(self.queue_channel(message)),
            StoreRequest::AppendPrivateMessage(message) => self.queue_private(message),
            StoreRequest::FetchHistory { channel, limit } => Step::History {
                flushed: Box::pin(shared.queue.flush()),
                channel,
                limit,
            },
            StoreRequest::FetchPending { username } => Step::Pending {
                flushed: Box::pin(shared.queue.flush()),
                username,
            },
            other => Step::Later(other),
        };
        async move {
            match step {
                Step::Now(reply) => reply,
                Step::AfterWrite(written) => written
                    .await
                    .unwrap_or_else(|_| unavailable("the append writer has stopped")),
                Step::History {
                    flushed,
                    channel,
                    limit,
                } => {
                    match timed(shared.config.request_timeout, flushed).await {
                        Some(Ok(())) => {}
                        Some(Err(error)) => return unavailable(error),
                        None => return StoreReply::Failed(too_slow()),
                    }
                    match timed(
                        shared.config.request_timeout,
                        shared.db.history(&key(&channel), limit),
                    )
                    .await
                    {
                        Some(Ok(messages)) => StoreReply::History(messages),
                        Some(Err(error)) => unavailable(error),
                        None => StoreReply::Failed(too_slow()),
                    }
                }
                Step::Pending { flushed, username } => {
                    match timed(shared.config.request_timeout, flushed).await {
                        Some(Ok(())) => {}
                        Some(Err(error)) => return unavailable(error),
                        None => return StoreReply::Failed(too_slow()),
                    }
                    match timed(
                        shared.config.request_timeout,
                        shared.db.pending(&key(&username)),
                    )
                    .await
                    {
                        Some(Ok(messages)) => StoreReply::Pending(messages),
                        Some(Err(error)) => unavailable(error),
                        None => StoreReply::Failed(too_slow()),
                    }
                }
                Step::Later(request) => later(&shared, request).await,
            }
        }
    }

    fn queue_channel(&self, message: ChannelMessage) -> StoreReply {
        let channel_key = key(&message.channel);
        let append = Append {
            row: AppendRow {
                message_id: message.id.to_string(),
                channel: Some((message.channel, channel_key)),
                recipient_key: None,
                sender: message.sender,
                body: message.text,
                created_at_ms: now_ms(),
                delivered: None,
            },
            reply: None,
        };
        queued_reply(self.shared().queue.push(append))
    }

    fn queue_private(&self, message: PrivateMessage) -> Step {
        // A pending message needs an account to wait for: the writer checks it in the same
        // transaction that stores the message, and answers once it is written.
        let (reply, written) = if message.delivered {
            (None, None)
        } else {
            let (tell, told) = oneshot::channel();
            (Some(tell), Some(told))
        };
        let append = Append {
            row: AppendRow {
                message_id: message.id.to_string(),
                channel: None,
                recipient_key: Some(key(&message.recipient)),
                sender: message.sender,
                body: message.text,
                created_at_ms: now_ms(),
                delivered: Some(message.delivered),
            },
            reply,
        };
        match (self.shared().queue.push(append), written) {
            (Ok(()), Some(written)) => Step::AfterWrite(written),
            (result, _) => Step::Now(queued_reply(result)),
        }
    }

    /// Sets a user's role (for the operator's command line); the account after the change,
    /// or `StoreError::UnknownUser`.
    pub async fn set_role(&self, username: &str, role: Role) -> Result<User, StoreError> {
        let shared = self.shared();
        match timed(
            shared.config.request_timeout,
            shared.db.set_role(&key(username), role),
        )
        .await
        {
            Some(Ok(Some(user))) => {
                tracing::info!(username = %user.username, role = %role, "role changed");
                Ok(user)
            }
            Some(Ok(None)) => Err(StoreError::UnknownUser),
            Some(Err(error)) => Err(StoreError::Unavailable(error.to_string())),
            None => Err(too_slow()),
        }
    }

    /// Every account, ordered by name without regard to case (for the operator).
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let shared = self.shared();
        match timed(shared.config.request_timeout, shared.db.list_users()).await {
            Some(Ok(users)) => Ok(users),
            Some(Err(error)) => Err(StoreError::Unavailable(error.to_string())),
            None => Err(too_slow()),
        }
    }

    /// Stops taking appends, waits until every queued append is written, then closes the
    /// database connections. Requests made after this fail with `StoreError::Unavailable`.
    ///
    /// While the database is unreachable this keeps waiting (the writer keeps retrying);
    /// race it against a deadline to give up. If no writer was ever spawned, `close`
    /// writes the queue itself.
    pub async fn close(&self) {
        let shared = Arc::clone(self.shared());
        shared.queue.begin_close();
        if shared.queue.writer_never_started() {
            crate::writer::run_writer(Arc::clone(&shared)).await;
        }
        shared.queue.writer_finished().await;
        shared.db.close().await;
        tracing::info!("store closed");
    }
}

fn queued_reply(result: Result<(), Refused>) -> StoreReply {
    match result {
        Ok(()) => StoreReply::Done,
        Err(Refused::Full) => {
            tracing::warn!("append buffer full; a message is not stored");
            unavailable("the append buffer is full")
        }
        Err(Refused::Closed) => unavailable("the store is closed"),
        Err(Refused::Failing) => unavailable("the database is failing"),
    }
}

/// What is left to do after the synchronous part of [`Store::execute`].
enum Step {
    Now(StoreReply),
    AfterWrite(oneshot::Receiver<StoreReply>),
    History {
        flushed: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
        channel: String,
        limit: usize,
    },
    Pending {
        flushed: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
        username: String,
    },
    Later(StoreRequest),
}

/// The requests whose order does not matter.
async fn later(shared: &Arc<Shared>, request: StoreRequest) -> StoreReply {
    let limit = shared.config.request_timeout;
    match request {
        StoreRequest::Register { username, password } => register(shared, username, password).await,
        StoreRequest::Login { username, password } => login(shared, username, password).await,
        StoreRequest::MarkDelivered { ids } => {
            match timed(limit, shared.db.mark_delivered(&ids)).await {
                Some(Ok(())) => StoreReply::Done,
                Some(Err(error)) => unavailable(error),
                None => StoreReply::Failed(too_slow()),
            }
        }
        StoreRequest::SetRole { username, role } => {
            match timed(limit, shared.db.set_role(&key(&username), role)).await {
                Some(Ok(Some(user))) => StoreReply::Account {
                    username: user.username,
                    role: user.role,
                },
                Some(Ok(None)) => StoreReply::Failed(StoreError::UnknownUser),
                Some(Err(error)) => unavailable(error),
                None => StoreReply::Failed(too_slow()),
            }
        }
        // Handled synchronously in `execute`.
        StoreRequest::AppendChannelMessage(_)
        | StoreRequest::AppendPrivateMessage(_)
        | StoreRequest::FetchHistory { .. }
        | StoreRequest::FetchPending { .. } => unavailable("internal: request routed twice"),
    }
}

fn hash_refused(refused: HashRefused) -> StoreReply {
    match refused {
        HashRefused::Busy => StoreReply::Failed(StoreError::Busy),
        HashRefused::Stopped => unavailable("the password hashing threads stopped"),
    }
}

async fn register(shared: &Arc<Shared>, username: String, password: Password) -> StoreReply {
    let limit = shared.config.request_timeout;
    // Save a hash when the name is obviously taken; the insert below decides races.
    match timed(limit, shared.db.find_user(&key(&username))).await {
        Some(Ok(Some(_))) => return StoreReply::Failed(StoreError::UsernameTaken),
        Some(Ok(None)) => {}
        Some(Err(error)) => return unavailable(error),
        None => return StoreReply::Failed(too_slow()),
    }
    let hasher = shared.hasher.clone();
    let hashed = match shared.hash_pool.run(move || hasher.hash(&password)) {
        Ok(hashed) => hashed,
        Err(refused) => return hash_refused(refused),
    };
    let hash = match hashed.await {
        Ok(Ok(hash)) => hash,
        Ok(Err(error)) => return unavailable(error),
        Err(_) => return hash_refused(HashRefused::Stopped),
    };
    match timed(limit, shared.db.insert_user(&username, &hash, now_ms())).await {
        Some(Ok(true)) => {
            tracing::info!(%username, "account registered");
            StoreReply::Account {
                username,
                role: Role::User,
            }
        }
        Some(Ok(false)) => StoreReply::Failed(StoreError::UsernameTaken),
        Some(Err(error)) => unavailable(error),
        None => StoreReply::Failed(too_slow()),
    }
}

async fn login(shared: &Arc<Shared>, username: String, password: Password) -> StoreReply {
    let limit = shared.config.request_timeout;
    let user_key = key(&username);
    let user = match timed(limit, shared.db.find_user(&user_key)).await {
        Some(Ok(user)) => user,
        Some(Err(error)) => return unavailable(error),
        None => return StoreReply::Failed(too_slow()),
    };
    let stored = match &user {
        Some(user) => user.password_hash.clone(),
        None => shared.dummy_hash.clone(),
    };
    let hasher = shared.hasher.clone();
    // Verify, and when the stored cost is below the current one hash again, in one job.
    let checked = shared.hash_pool.run(move || {
        let matches = hasher.verify(&password, &stored);
        let rehashed = if matches && hasher.needs_rehash(&stored) {
            hasher.hash(&password).ok()
        } else {
            None
        };
        (matches, rehashed)
    });
    let (matches, rehashed) = match checked {
        Ok(checked) => match checked.await {
            Ok(outcome) => outcome,
            Err(_) => return hash_refused(HashRefused::Stopped),
        },
        Err(refused) => return hash_refused(refused),
    };
    let Some(user) = user.filter(|_| matches) else {
        tracing::debug!("login refused");
        return StoreReply::Failed(StoreError::InvalidCredentials);
    };
    if let Some(hash) = rehashed {
        match timed(limit, shared.db.update_hash(&user_key, &hash)).await {
            Some(Ok(())) => {
                tracing::info!(username = %user.username, "password rehashed at the current cost")
            }
            Some(Err(error)) => tracing::warn!("could not store a rehashed password: {error}"),
            None => tracing::warn!("could not store a rehashed password: timeout"),
        }
    }
    StoreReply::Account {
        username: user.username,
        role: user.role,
    }
}
