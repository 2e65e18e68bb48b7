//! [`Store`]: the handle that answers the engine's store requests.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use futures::channel::oneshot;
use sha2::{Digest, Sha256};
use wur2_engine::{
    AccountChange, ChannelMessage, MessageId, Password, PrivateMessage, Role, Sanction,
    SanctionKind, StoreError, StoreReply, StoreRequest, channel_key, username_key,
};

use crate::config::StoreConfig;
use crate::db::{
    AppendRow, ChannelSetting, Db, Invitation, NewSanction, Purge, RoleChange, SanctionChange,
    StoredUser,
};
use crate::deadline::timed;
use crate::password::{HashPool, Hasher, Place, Priority, Refused as HashRefused};
use crate::writer::{Append, AppendQueue, AppendWriter, Refused};
use crate::{OpenError, User};

/// Account changes read at most per [`Store::account_changes_after`].
pub const ACCOUNT_CHANGES_BATCH: i64 = 256;

/// Who sets the sanctions of the operator's command line, as users are told.
pub const OPERATOR: &str = "the operator";

/// Rows deleted per statement by [`Store::prune_history`].
pub const PRUNE_BATCH: i64 = 10_000;

/// What [`Store::purge_user`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purged {
    /// The username as it was registered.
    pub username: String,
    /// Messages deleted: sent by the user, or sent to them privately.
    pub messages: u64,
}

/// What every handle and the writer share.
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) queue: AppendQueue,
    pub(crate) config: StoreConfig,
    hasher: Hasher,
    hash_pool: HashPool,
    /// Verified against for unknown users, so that answer takes as long as a wrong password.
    dummy_hash: String,
    /// Completion of the latest pending-message read or mark-delivered: each of those waits
    /// for the one before it, so a fetch never overtakes an earlier mark (no DM twice).
    delivery_order: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
    /// Completion of the latest channel catalogue request: each waits for the one before
    /// it, so a registration is in before a topic set after it, and a load sees every
    /// change asked before it.
    channel_order: std::sync::Mutex<Option<oneshot::Receiver<()>>>,
}

impl Shared {
    /// Takes the next place in the delivery order: the previous operation's completion to
    /// wait for, and this one's to signal.
    fn next_in_delivery_order(&self) -> Turn {
        Turn::next(&self.delivery_order)
    }

    /// Takes the next place in the channel order (see [`Shared::channel_order`]).
    fn next_in_channel_order(&self) -> Turn {
        Turn::next(&self.channel_order)
    }
}

/// One place in an order of operations ([`Shared::delivery_order`],
/// [`Shared::channel_order`]).
struct Turn {
    previous: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
}

impl Turn {
    /// The place after the latest one taken in `order`: the previous operation's
    /// completion to wait for, and this one's to signal.
    fn next(order: &std::sync::Mutex<Option<oneshot::Receiver<()>>>) -> Turn {
        let (done, finished) = oneshot::channel();
        let mut latest = order
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Turn {
            previous: latest.replace(finished),
            done,
        }
    }

    /// Runs `work` in this turn: once the operation before it has finished (or was
    /// dropped), and the next one waits for it.
    async fn run(self, work: impl Future<Output = StoreReply>) -> StoreReply {
        if let Some(previous) = self.previous {
            // A dropped predecessor (its request was abandoned) lets this one go on.
            let _ = previous.await;
        }
        let reply = work.await;
        let _ = self.done.send(());
        reply
    }
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
            Db::Sqlite { .. } => "sqlite",
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
        let hash_pool = HashPool::start(
            config.hash_threads,
            config.hash_nice,
            config.hash_queue,
            config.registration_hash_queue,
        )
        .map_err(OpenError::Threads)?;
        let db = Db::open(url, &config).await?;
        let dummy = {
            let hasher = hasher.clone();
            hash_pool
                .run(Priority::Login, move || {
                    hasher.hash(&Password::new("wur2 dummy password for unknown users"))
                })
                .map_err(|_| OpenError::PasswordParams("the hashing pool refused".to_owned()))?
        };
        let dummy_hash = dummy
            .await
            .map_err(|_| OpenError::PasswordParams("the hashing pool stopped".to_owned()))?
            .map_err(OpenError::PasswordParams)?;
        tracing::info!(
            backend = match db {
                Db::Sqlite { .. } => "sqlite",
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
            delivery_order: std::sync::Mutex::new(None),
            channel_order: std::sync::Mutex::new(None),
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
    /// polled: an append is queued at once (its `Done` comes once it is committed), and a
    /// history or pending-message read sees every append queued by earlier calls. So call
    /// `execute` in the order the engine emitted its requests, then spawn or await the
    /// futures in any order. The future owns what it needs (`'static`) and never blocks.
    pub fn execute(
        &self,
        request: StoreRequest,
    ) -> impl Future<Output = StoreReply> + Send + 'static {
        let shared = Arc::clone(self.shared());
        let step = match request {
            StoreRequest::AppendChannelMessage(message) => self.queue_channel(message),
            StoreRequest::AppendPrivateMessage(message) => self.queue_private(message),
            StoreRequest::FetchHistory {
                channel,
                limit,
                before,
            } => Step::History {
                flushed: Box::pin(shared.queue.flush()),
                of: Past::Channel(channel_key(&channel)),
                limit,
                before,
            },
            StoreRequest::FetchConversation {
                username,
                with,
                limit,
                before,
            } => Step::History {
                flushed: Box::pin(shared.queue.flush()),
                of: Past::Conversation(username_key(&username), username_key(&with)),
                limit,
                before,
            },
            StoreRequest::FetchPending { username } => Step::Pending {
                flushed: Box::pin(shared.queue.flush()),
                username,
                turn: shared.next_in_delivery_order(),
            },
            StoreRequest::MarkDelivered { ids } => Step::MarkDelivered {
                ids,
                delivered: true,
                turn: shared.next_in_delivery_order(),
            },
            StoreRequest::MarkPending { ids } => Step::MarkDelivered {
                ids,
                delivered: false,
                turn: shared.next_in_delivery_order(),
            },
            request @ (StoreRequest::LoadChannels
            | StoreRequest::RegisterChannel { .. }
            | StoreRequest::SetTopic { .. }
            | StoreRequest::SetPrivate { .. }
            | StoreRequest::Invite { .. }) => Step::Channel {
                request,
                turn: shared.next_in_channel_order(),
            },
            other => Step::Later(other),
        };
        async move {
            match step {
                // Every chat message is an append, and its future is spawned in a task of
                // its own: it stays small. The rest (reads, channel requests, logins) wait
                // in a boxed future of their own.
                Step::AfterWrite(written) => after_write(written.await),
                step => Box::pin(run_step(shared, step)).await,
            }
        }
    }

    fn queue_channel(&self, message: ChannelMessage) -> Step {
        let key = channel_key(&message.channel);
        self.queue(AppendRow {
            message_id: message.id.to_string(),
            channel: Some((message.channel, key)),
            recipient_key: None,
            sender: message.sender,
            body: message.text,
            created_at_ms: now_ms(),
            delivered: None,
        })
    }

    fn queue_private(&self, message: PrivateMessage) -> Step {
        // A pending message needs an account to wait for: the writer checks it in the same
        // transaction that stores the message.
        self.queue(AppendRow {
            message_id: message.id.to_string(),
            channel: None,
            recipient_key: Some(username_key(&message.recipient)),
            sender: message.sender,
            body: message.text,
            created_at_ms: now_ms(),
            delivered: Some(message.delivered),
        })
    }

    /// Queues `row`; the step answers once it is committed.
    fn queue(&self, row: AppendRow) -> Step {
        let (tell, told) = oneshot::channel();
        let append = Append { row, reply: tell };
        match self.shared().queue.push(append) {
            Ok(()) => Step::AfterWrite(told),
            Err(refused) => Step::Now(refused_reply(refused)),
        }
    }

    /// Sets a user's role (for the operator's command line), recorded for running servers
    /// on the same database, which apply it to the user's live sessions within about a
    /// second (see [`Store::account_changes_after`]); the account after the change,
    /// `StoreError::UnknownUser`, or `StoreError::LastAdmin` when the account is the last
    /// admin and `role` is not admin.
    pub async fn set_role(&self, username: &str, role: Role) -> Result<User, StoreError> {
        let user = set_role(self.shared(), username, role, Some(now_ms())).await?;
        tracing::info!(username = %user.username, role = %role, "role changed");
        Ok(user)
    }

    /// Bans `username` for `duration` from now (`None`: until lifted), whatever its role,
    /// for the operator's command line (`wur2 ban`); set by `the operator`. Recorded for
    /// running servers on the same database, which close the user's live sessions within
    /// about a second (see [`Store::account_changes_after`]). The ban in force, or
    /// `StoreError::UnknownUser`.
    pub async fn ban(
        &self,
        username: &str,
        duration: Option<Duration>,
        reason: &str,
    ) -> Result<Sanction, StoreError> {
        let kind = SanctionKind::Ban;
        sanction(
            self.shared(),
            kind,
            username,
            OPERATOR,
            None,
            duration,
            reason,
        )
        .await
    }

    /// Lifts the ban of `username` (for `wur2 unban`): its name as registered,
    /// `StoreError::UnknownUser`, or `StoreError::NotSanctioned` when no ban is in force.
    pub async fn unban(&self, username: &str) -> Result<String, StoreError> {
        lift_sanction(self.shared(), SanctionKind::Ban, username, None).await
    }

    /// Every account, ordered by name without regard to case (for the operator).
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let shared = self.shared();
        shared.in_time(shared.db.list_users()).await
    }

    /// Deletes channel messages, and private messages already delivered, written before
    /// `cutoff`, in batches of [`PRUNE_BATCH`] rows so no single statement holds the
    /// database long. Returns how many messages were deleted. Undelivered private messages
    /// are kept until their recipient logs in.
    pub async fn prune_history(&self, cutoff: SystemTime) -> Result<u64, StoreError> {
        let shared = self.shared();
        let cutoff_ms = cutoff.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
        let mut total = 0;
        loop {
            let deleted = shared
                .in_time(shared.db.prune_before(cutoff_ms, PRUNE_BATCH))
                .await?;
            total += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Removes an account and every message it sent or received (channel and private),
    /// in one transaction; `StoreError::UnknownUser` when there is no such account.
    ///
    /// The purge is recorded for running servers on the same database, which close the
    /// user's sessions within about a second (see [`Store::account_changes_after`]).
    /// Appends still queued in this store are written before the purge.
    pub async fn purge_user(&self, username: &str) -> Result<Purged, StoreError> {
        let shared = self.shared();
        shared.flushed(Box::pin(shared.queue.flush())).await?;
        let purged = shared
            .in_time(
                shared
                    .db
                    .purge_user(&username_key(username), now_ms(), false),
            )
            .await?;
        let Purge::Purged { username, messages } = purged else {
            return Err(StoreError::UnknownUser);
        };
        tracing::info!(%username, messages, "account purged");
        Ok(Purged { username, messages })
    }

    /// Where the record of account changes stands now: the id of the latest change (0
    /// when there is none). A server starts reading after it, so changes made before it
    /// started (its sessions log in with the roles stored now) are not applied again.
    pub async fn latest_account_change(&self) -> Result<i64, StoreError> {
        let shared = self.shared();
        shared.in_time(shared.db.latest_account_change()).await
    }

    /// Account changes recorded after id `after` (by [`Store::set_role`],
    /// [`Store::purge_user`] and [`Store::ban`], the operator's commands, and by every
    /// server's bans and mutes, so a ban or mute set on one node reaches the sessions on
    /// all), at most
    /// [`ACCOUNT_CHANGES_BATCH`], oldest first, each with the username it applies to:
    /// a role change carries the role the account holds now, and a ban or mute the
    /// sanction in force now (a mute gone since is [`AccountChange::Unmuted`], a ban gone
    /// since is skipped), so changes that raced each other end in what the database holds. Returns the id to read after next time
    /// (`after` when nothing was recorded since), and the changes for
    /// [`Engine::handle_account_changed`](wur2_engine::Engine::handle_account_changed).
    /// Changes are kept for an hour.
    pub async fn account_changes_after(
        &self,
        after: i64,
    ) -> Result<(i64, Vec<(String, AccountChange)>), StoreError> {
        let shared = self.shared();
        shared
            .in_time(
                shared
                    .db
                    .account_changes_after(after, ACCOUNT_CHANGES_BATCH, now_ms()),
            )
            .await
    }

    /// Whether the database answers a trivial query within `timeout` (for health checks).
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let shared = self.shared();
        match timed(timeout, shared.db.ping()).await {
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => Err(StoreError::Unavailable(error.to_string())),
            None => Err(too_slow()),
        }
    }

    /// Message appends queued and not yet written: grows while the database is slow.
    pub fn append_queue_len(&self) -> usize {
        self.shared().queue.len()
    }

    /// Password hash or verify jobs waiting for a free hashing thread.
    pub fn hash_queue_len(&self) -> usize {
        self.shared().hash_pool.waiting()
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
            let no_checkpoint = std::sync::atomic::AtomicBool::new(false);
            crate::writer::run_writer(&shared, &no_checkpoint).await;
        }
        shared.queue.writer_finished().await;
        shared.db.close().await;
        tracing::info!("store closed");
    }
}

fn refused_reply(refused: Refused) -> StoreReply {
    match refused {
        Refused::Full => {
            tracing::warn!("append buffer full; a message is not stored");
            unavailable("the append buffer is full")
        }
        Refused::Closed => unavailable("the store is closed"),
    }
}

/// Resolves once the appends queued before a read are written.
type Flushed = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Carries out a step of [`Store::execute`] after its order-sensitive part.
async fn run_step(shared: Arc<Shared>, step: Step) -> StoreReply {
    match step {
        Step::Now(reply) => reply,
        Step::AfterWrite(written) => after_write(written.await),
        Step::History {
            flushed,
            of,
            limit,
            before,
        } => {
            answer(async {
                shared.flushed(flushed).await?;
                let messages = match &of {
                    Past::Channel(channel) => {
                        let read = shared.db.history(channel, limit, before);
                        shared.in_time(read).await?
                    }
                    Past::Conversation(a, b) => {
                        let read = shared.db.conversation(a, b, limit, before);
                        shared.in_time(read).await?
                    }
                };
                Ok(StoreReply::History(messages))
            })
            .await
        }
        Step::Pending {
            flushed,
            username,
            turn,
        } => {
            turn.run(answer(async {
                shared.flushed(flushed).await?;
                let messages = shared
                    .in_time(shared.db.pending(&username_key(&username)))
                    .await?;
                Ok(StoreReply::Pending(messages))
            }))
            .await
        }
        Step::MarkDelivered {
            ids,
            delivered,
            turn,
        } => {
            turn.run(answer(async {
                let marked = shared.db.mark_delivered(&ids, delivered);
                shared.in_time(marked).await?;
                Ok(StoreReply::Done)
            }))
            .await
        }
        Step::Channel { request, turn } => {
            turn.run(answer(channel_request(&shared, request))).await
        }
        Step::Later(request) => answer(later(&shared, request)).await,
    }
}

/// The reply to a queued append: the writer's answer once it committed.
///
/// No time limit: a queued append is written sooner or later (the writer retries while
/// the database fails), and answering "unavailable" before that would tell the sender it
/// failed while it is then stored (and a private message stored as delivered that nobody
/// was shown).
fn after_write(written: Result<StoreReply, oneshot::Canceled>) -> StoreReply {
    written.unwrap_or_else(|_| unavailable("the append writer has stopped"))
}

/// What is left to do after the synchronous part of [`Store::execute`].
enum Step {
    Now(StoreReply),
    AfterWrite(oneshot::Receiver<StoreReply>),
    History {
        flushed: Flushed,
        of: Past,
        limit: usize,
        before: Option<MessageId>,
    },
    Pending {
        flushed: Flushed,
        username: String,
        turn: Turn,
    },
    /// `MarkDelivered` (`delivered`) or `MarkPending`.
    MarkDelivered {
        ids: Vec<MessageId>,
        delivered: bool,
        turn: Turn,
    },
    /// A request about registered channels, in the channel order.
    Channel {
        request: StoreRequest,
        turn: Turn,
    },
    Later(StoreRequest),
}

/// Whose messages a history read is of, by key.
enum Past {
    /// A channel's.
    Channel(String),
    /// Two users' private conversation.
    Conversation(String, String),
}

impl Shared {
    /// `query`'s result, bounded by the request timeout, a failure as `Unavailable`.
    async fn in_time<T>(
        &self,
        query: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match timed(self.config.request_timeout, query).await {
            Some(Ok(value)) => Ok(value),
            Some(Err(error)) => Err(StoreError::Unavailable(error.to_string())),
            None => Err(too_slow()),
        }
    }

    /// Waits until the appends queued before a read are written (bounded likewise).
    async fn flushed(&self, flushed: Flushed) -> Result<(), StoreError> {
        match timed(self.config.request_timeout, flushed).await {
            Some(result) => result.map_err(StoreError::Unavailable),
            None => Err(too_slow()),
        }
    }

    /// A place in `priority`'s hashing queue, taken before the database work its job
    /// needs: a full queue refuses as busy before any query, so a storm of logins costs no
    /// more lookups at once than the queue holds (queries that would wait beside
    /// everyone's messages).
    fn hash_place(&self, priority: Priority) -> Result<Place, StoreError> {
        self.hash_pool.reserve(priority).map_err(hash_refused)
    }

    /// Runs `job` on the hashing pool in `place` and waits for its result without
    /// blocking.
    async fn hashing<T: Send + 'static>(
        &self,
        place: Place,
        job: impl FnOnce(&Hasher) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let hasher = self.hasher.clone();
        let result = place.run(move || job(&hasher)).map_err(hash_refused)?;
        result.await.map_err(|_| hash_refused(HashRefused::Stopped))
    }
}

/// The store's error for a job the hashing pool did not take or finish.
fn hash_refused(refused: HashRefused) -> StoreError {
    match refused {
        HashRefused::Busy => StoreError::Busy,
        HashRefused::Stopped => {
            StoreError::Unavailable("the password hashing threads stopped".into())
        }
    }
}

/// The reply for `work`'s outcome.
async fn answer(work: impl Future<Output = Result<StoreReply, StoreError>>) -> StoreReply {
    work.await.unwrap_or_else(StoreReply::Failed)
}

/// Sets `username`'s role, unless it is the last admin's and `role` is not admin; with
/// `record_at`, records the change for running servers (see [`Db::set_role`]).
async fn set_role(
    shared: &Shared,
    username: &str,
    role: Role,
    record_at: Option<i64>,
) -> Result<User, StoreError> {
    match shared
        .in_time(shared.db.set_role(&username_key(username), role, record_at))
        .await?
    {
        RoleChange::Changed(user) => Ok(user),
        RoleChange::UnknownUser => Err(StoreError::UnknownUser),
        RoleChange::LastAdmin => Err(StoreError::LastAdmin),
    }
}

/// The requests whose order does not matter.
async fn later(shared: &Shared, request: StoreRequest) -> Result<StoreReply, StoreError> {
    match request {
        StoreRequest::Register { username, password } => register(shared, username, password).await,
        StoreRequest::Login { username, password } => login(shared, username, password).await,
        StoreRequest::SetRole { username, role } => {
            // The engine that asked applies the change itself: not recorded, so it is
            // never applied (and told) twice.
            let user = set_role(shared, &username, role, None).await?;
            Ok(StoreReply::Account {
                username: user.username,
                role: user.role,
                mute: None,
            })
        }
        StoreRequest::Sanction {
            kind,
            username,
            by,
            by_role,
            duration,
            reason,
        } => {
            let sanction = sanction(
                shared,
                kind,
                &username,
                &by,
                Some(by_role),
                duration,
                &reason,
            )
            .await?;
            Ok(StoreReply::Sanctioned(sanction))
        }
        StoreRequest::LiftSanction {
            kind,
            username,
            by_role,
        } => {
            let username = lift_sanction(shared, kind, &username, Some(by_role)).await?;
            Ok(StoreReply::Lifted { username })
        }
        StoreRequest::FetchSanctions { limit } => {
            let sanctions = shared
                .in_time(shared.db.sanctions_in_force(now_ms(), limit))
                .await?;
            Ok(StoreReply::Sanctions(sanctions))
        }
        StoreRequest::ChangePassword { username, old, new } => {
            change_password(shared, &username, old, new).await
        }
        StoreRequest::DeleteAccount { username, password } => {
            delete_account(shared, &username, password).await
        }
        StoreRequest::IssueToken { username } => issue_token(shared, &username).await,
        StoreRequest::Resume { username, token } => resume(shared, &username, &token).await,
        StoreRequest::RevokeTokens { username } => {
            let key = username_key(&username);
            shared.in_time(shared.db.revoke_tokens(&key)).await?;
            tracing::info!(%username, "resume tokens revoked");
            Ok(StoreReply::Done)
        }
        // Handled synchronously in `execute`.
        StoreRequest::AppendChannelMessage(_)
        | StoreRequest::AppendPrivateMessage(_)
        | StoreRequest::FetchHistory { .. }
        | StoreRequest::FetchConversation { .. }
        | StoreRequest::FetchPending { .. }
        | StoreRequest::MarkDelivered { .. }
        | StoreRequest::MarkPending { .. }
        | StoreRequest::LoadChannels
        | StoreRequest::RegisterChannel { .. }
        | StoreRequest::SetTopic { .. }
        | StoreRequest::SetPrivate { .. }
        | StoreRequest::Invite { .. } => Err(routed_twice()),
    }
}

fn routed_twice() -> StoreError {
    StoreError::Unavailable("internal: request routed twice".into())
}

/// The requests about registered channels, carried out in the order the engine made them.
async fn channel_request(shared: &Shared, request: StoreRequest) -> Result<StoreReply, StoreError> {
    let db = &shared.db;
    match request {
        StoreRequest::LoadChannels => Ok(StoreReply::Channels(
            shared.in_time(db.channels(None)).await?,
        )),
        StoreRequest::RegisterChannel { name, owner } => {
            let key = channel_key(&name);
            let owner_key = owner.as_deref().map(username_key);
            let registered = db.register_channel(&name, &key, owner_key.as_deref(), now_ms());
            shared.in_time(registered).await?;
            Ok(StoreReply::Channels(
                shared.in_time(db.channels(Some(&key))).await?,
            ))
        }
        StoreRequest::SetTopic { channel, topic } => {
            let key = channel_key(&channel);
            let setting = ChannelSetting::Topic(topic.as_deref());
            let set = db.set_channel(&channel, &key, setting, now_ms());
            shared.in_time(set).await?;
            Ok(StoreReply::Done)
        }
        StoreRequest::SetPrivate { channel, private } => {
            let key = channel_key(&channel);
            let setting = ChannelSetting::Private(private);
            let set = db.set_channel(&channel, &key, setting, now_ms());
            shared.in_time(set).await?;
            Ok(StoreReply::Done)
        }
        StoreRequest::Invite { channel, username } => {
            let (key, user_key) = (channel_key(&channel), username_key(&username));
            let invite = db.invite(&channel, &key, &user_key, now_ms());
            match shared.in_time(invite).await? {
                Invitation::Invited(user) => Ok(StoreReply::Account {
                    username: user.username,
                    role: user.role,
                    mute: None,
                }),
                Invitation::UnknownUser => Err(StoreError::UnknownUser),
            }
        }
        _ => Err(routed_twice()),
    }
}

async fn register(
    shared: &Shared,
    username: String,
    password: Password,
) -> Result<StoreReply, StoreError> {
    let place = shared.hash_place(Priority::Registration)?;
    // Save a hash when the name is obviously taken; the insert below decides races.
    if shared
        .in_time(shared.db.find_user(&username_key(&username)))
        .await?
        .is_some()
    {
        return Err(StoreError::UsernameTaken);
    }
    let hash = shared
        .hashing(place, move |hasher| hasher.hash(&password))
        .await?;
    let hash = hash.map_err(StoreError::Unavailable)?;
    if !shared
        .in_time(shared.db.insert_user(&username, &hash, now_ms()))
        .await?
    {
        return Err(StoreError::UsernameTaken);
    }
    tracing::info!(%username, "account registered");
    Ok(StoreReply::Account {
        username,
        role: Role::User,
        mute: None,
    })
}

async fn login(
    shared: &Shared,
    username: String,
    password: Password,
) -> Result<StoreReply, StoreError> {
    let place = shared.hash_place(Priority::Login)?;
    let user_key = username_key(&username);
    let user = shared.in_time(shared.db.find_user(&user_key)).await?;
    let sanctions = match &user {
        Some(_) => {
            shared
                .in_time(shared.db.sanctions_of(&user_key, now_ms()))
                .await?
        }
        None => Vec::new(),
    };
    let (ban, mute): (Vec<Sanction>, Vec<Sanction>) = sanctions
        .into_iter()
        .partition(|sanction| sanction.kind == SanctionKind::Ban);
    // Before the password is checked: a banned account gets this answer whatever is typed.
    if let Some(ban) = ban.into_iter().next() {
        tracing::debug!("login refused: banned");
        return Err(StoreError::Banned(ban));
    }
    let stored = hash_to_check(shared, user.as_ref());
    // Verify, and when the stored cost is below the current one hash again, in one job.
    let (matches, rehashed) = shared
        .hashing(place, move |hasher| {
            let matches = hasher.verify(&password, &stored);
            let rehashed = if matches && hasher.needs_rehash(&stored) {
                hasher.hash(&password).ok()
            } else {
                None
            };
            (matches, rehashed)
        })
        .await?;
    let Some(user) = user.filter(|_| matches) else {
        tracing::debug!("login refused");
        return Err(StoreError::InvalidCredentials);
    };
    if let Some(hash) = rehashed {
        match shared
            .in_time(shared.db.update_hash(&user_key, &hash))
            .await
        {
            Ok(()) => {
                tracing::info!(username = %user.username, "password rehashed at the current cost")
            }
            Err(error) => tracing::warn!("could not store a rehashed password: {error}"),
        }
    }
    Ok(StoreReply::Account {
        username: user.username,
        role: user.role,
        mute: mute.into_iter().next(),
    })
}

/// Bans or mutes `username` for `duration` from now (`None`: until lifted), unless its
/// role is not below `outranked_by` (`None`: the operator, who may sanction anyone).
async fn sanction(
    shared: &Shared,
    kind: SanctionKind,
    username: &str,
    by: &str,
    outranked_by: Option<Role>,
    duration: Option<Duration>,
    reason: &str,
) -> Result<Sanction, StoreError> {
    let now = now_ms();
    let expires_at_ms = match duration {
        None => None,
        Some(duration) => Some(
            i64::try_from(duration.as_millis())
                .ok()
                .and_then(|ms| now.checked_add(ms))
                .ok_or_else(|| StoreError::Unavailable("a sanction too long to store".into()))?,
        ),
    };
    let new = NewSanction {
        kind,
        by,
        reason,
        expires_at_ms,
    };
    let key = username_key(username);
    let change = shared.db.sanction(&key, new, outranked_by, now);
    match shared.in_time(change).await? {
        SanctionChange::Set(sanction) => {
            if kind == SanctionKind::Ban {
                // A ban revokes the account's resume tokens.
                shared.in_time(shared.db.revoke_tokens(&key)).await?;
            }
            tracing::info!(
                username = %sanction.username,
                %kind,
                by = %sanction.by,
                expires_at_ms = ?expires_at_ms,
                "sanction set"
            );
            Ok(sanction)
        }
        other => Err(refused(other)),
    }
}

/// Lifts the sanction of `kind` of `username`; its name as registered.
async fn lift_sanction(
    shared: &Shared,
    kind: SanctionKind,
    username: &str,
    outranked_by: Option<Role>,
) -> Result<String, StoreError> {
    let key = username_key(username);
    let change = shared.db.lift_sanction(&key, kind, outranked_by, now_ms());
    match shared.in_time(change).await? {
        SanctionChange::Lifted(username) => {
            tracing::info!(%username, %kind, "sanction lifted");
            Ok(username)
        }
        other => Err(refused(other)),
    }
}

/// Why a sanction or lift did not happen.
fn refused(change: SanctionChange) -> StoreError {
    match change {
        SanctionChange::UnknownUser => StoreError::UnknownUser,
        SanctionChange::Outranked => StoreError::Outranked,
        SanctionChange::NotSanctioned => StoreError::NotSanctioned,
        SanctionChange::Set(_) | SanctionChange::Lifted(_) => {
            StoreError::Unavailable("internal: a sanction change mistaken for a refusal".into())
        }
    }
}

/// The hash a password for `user` is checked against: its own, or (no such account) the
/// dummy one, so that an unknown user's answer takes as long as a wrong password's.
fn hash_to_check(shared: &Shared, user: Option<&StoredUser>) -> String {
    user.map_or_else(
        || shared.dummy_hash.clone(),
        |user| user.password_hash.clone(),
    )
}

/// The account with `key`, if any, and the hash a password for it is checked against.
async fn account_and_hash(
    shared: &Shared,
    key: &str,
) -> Result<(Option<StoredUser>, String), StoreError> {
    let user = shared.in_time(shared.db.find_user(key)).await?;
    let hash = hash_to_check(shared, user.as_ref());
    Ok((user, hash))
}

/// `/password`: the new password's hash replaces the old one's, if `old` is right.
async fn change_password(
    shared: &Shared,
    username: &str,
    old: Password,
    new: Password,
) -> Result<StoreReply, StoreError> {
    let place = shared.hash_place(Priority::Login)?;
    let key = username_key(username);
    let (user, stored) = account_and_hash(shared, &key).await?;
    // Verify, then hash the new one, in one job on the login queue.
    let hashed = shared
        .hashing(place, move |hasher| {
            hasher.verify(&old, &stored).then(|| hasher.hash(&new))
        })
        .await?;
    let (Some(_), Some(hash)) = (user, hashed) else {
        tracing::debug!("password change refused");
        return Err(StoreError::InvalidCredentials);
    };
    let hash = hash.map_err(StoreError::Unavailable)?;
    shared.in_time(shared.db.set_password(&key, &hash)).await?;
    tracing::info!(%username, "password changed; resume tokens revoked");
    Ok(StoreReply::Done)
}

/// `/delete-account`: the operator's purge, if `password` is right and the account is not
/// the last admin.
async fn delete_account(
    shared: &Shared,
    username: &str,
    password: Password,
) -> Result<StoreReply, StoreError> {
    let place = shared.hash_place(Priority::Login)?;
    let key = username_key(username);
    let (user, stored) = account_and_hash(shared, &key).await?;
    let matches = shared
        .hashing(place, move |hasher| hasher.verify(&password, &stored))
        .await?;
    if user.is_none() || !matches {
        tracing::debug!("account deletion refused");
        return Err(StoreError::InvalidCredentials);
    }
    // Appends queued before the request are written first, so none outlives the purge.
    shared.flushed(Box::pin(shared.queue.flush())).await?;
    match shared
        .in_time(shared.db.purge_user(&key, now_ms(), true))
        .await?
    {
        Purge::Purged { username, messages } => {
            tracing::info!(%username, messages, "account deleted by its user");
            Ok(StoreReply::Done)
        }
        Purge::LastAdmin => Err(StoreError::LastAdmin),
        Purge::UnknownUser => Err(StoreError::InvalidCredentials),
    }
}

/// `/token`: 128 random bits from the OS, as 32 hex digits; only their SHA-256 is stored.
async fn issue_token(shared: &Shared, username: &str) -> Result<StoreReply, StoreError> {
    let key = username_key(username);
    if shared.in_time(shared.db.find_user(&key)).await?.is_none() {
        return Err(StoreError::UnknownUser);
    }
    let mut bits = [0u8; 16];
    OsRng.fill_bytes(&mut bits);
    let token: String = bits.iter().map(|b| format!("{b:02x}")).collect();
    let now = now_ms();
    let lifetime =
        i64::try_from(shared.config.resume_token_lifetime.as_millis()).unwrap_or(i64::MAX);
    let hash = token_hash(&token);
    let insert = shared
        .db
        .insert_token(&hash, &key, now, now.saturating_add(lifetime));
    shared.in_time(insert).await?;
    tracing::info!(%username, "resume token issued");
    Ok(StoreReply::Token(Password::new(token)))
}

/// `/resume`: one hash lookup.
async fn resume(
    shared: &Shared,
    username: &str,
    token: &Password,
) -> Result<StoreReply, StoreError> {
    let key = username_key(username);
    let found = shared
        .in_time(
            shared
                .db
                .token_user(&token_hash(token.expose()), &key, now_ms()),
        )
        .await?;
    let Some((user, sanctions)) = found else {
        tracing::debug!("resume refused");
        return Err(StoreError::InvalidCredentials);
    };
    let (ban, mute): (Vec<Sanction>, Vec<Sanction>) = sanctions
        .into_iter()
        .partition(|sanction| sanction.kind == SanctionKind::Ban);
    if let Some(ban) = ban.into_iter().next() {
        return Err(StoreError::Banned(ban));
    }
    Ok(StoreReply::Account {
        username: user.username,
        role: user.role,
        mute: mute.into_iter().next(),
    })
}

/// The stored form of a resume token: its SHA-256, as 64 hex digits.
fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
