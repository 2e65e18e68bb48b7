//! The store's behaviour, written once and run against SQLite (a temp file) and PostgreSQL
//! (a fresh database on the server named by `WUR2_TEST_POSTGRES_URL`; skipped, loudly, when
//! it is not set — `scripts/test.sh` sets it up and fails in CI when it cannot).

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Harness, TestDb, fast_config};
use wur2_engine::{
    AccountChange, Password, PendingMessage, Role, Sanction, SanctionKind, StoreError, StoreReply,
    StoreRequest, StoredChannel,
};
use wur2_store::{PasswordConfig, Store, StoreConfig};

/// Each scenario becomes one `#[tokio::test]` per backend: `sqlite::name`, `postgres::name`.
macro_rules! behaviour {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::scenarios::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::scenarios::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

behaviour!(
    register_creates_a_user_account,
    a_taken_name_is_refused_in_any_letter_case,
    login_with_the_right_password_returns_the_account_as_registered,
    a_wrong_password_and_an_unknown_user_get_the_same_answer,
    roles_are_changed_and_kept_and_the_last_admin_stays_admin,
    two_admins_demoted_at_once_leave_one_admin,
    history_is_the_last_messages_oldest_first,
    channel_names_match_without_regard_to_case,
    pending_private_messages_are_handed_out_until_marked_delivered,
    a_private_message_stored_as_delivered_is_pending_again_after_mark_pending,
    a_pending_message_to_an_unknown_user_is_refused,
    a_fetch_issued_after_a_mark_delivered_never_sees_those_messages,
    appends_are_stored_in_the_order_they_were_queued,
    an_appends_future_is_small_since_every_chat_message_spawns_one,
    a_repeated_message_id_is_stored_once,
    closing_writes_every_queued_append,
    a_weaker_stored_hash_is_replaced_on_login,
    the_store_works_under_async_std,
    pruning_deletes_old_history_and_keeps_undelivered_private_messages,
    purge_user_removes_the_account_and_every_message_to_or_from_it,
    ping_answers_while_open_and_fails_once_closed,
    a_channel_deleted_behind_the_stores_back_is_recreated_by_the_next_append,
    role_changes_and_purges_are_read_back_in_order_after_the_last_seen,
    a_banned_account_gets_the_same_answer_whatever_the_password,
    bans_end_when_they_expire_or_are_lifted,
    only_accounts_of_a_lower_role_are_sanctioned_and_a_mute_comes_with_the_login,
    sanctions_are_recorded_for_running_servers_and_go_with_a_purged_account,
    bans_survive_a_reopen_of_the_store,
    a_page_before_a_message_is_the_messages_stored_before_it,
    a_conversation_is_both_directions_between_two_users_only,
    a_password_change_needs_the_old_password_and_replaces_it,
    a_deleted_account_is_purged_and_recorded_but_never_the_last_admin,
    a_registered_channel_keeps_its_first_owner_topic_privacy_and_invitations,
    a_deleted_account_owns_and_is_invited_to_nothing_even_when_its_name_returns,
    channels_and_their_settings_survive_reopening_the_store,
    a_resume_token_logs_its_account_in_until_revoked_or_expired,
);

/// The channels of a catalogue reply.
fn channels(reply: StoreReply) -> Vec<StoredChannel> {
    match reply {
        StoreReply::Channels(channels) => channels,
        other => panic!("expected channels, got {other:?}"),
    }
}

fn register_channel(name: &str, owner: Option<&str>) -> StoreRequest {
    StoreRequest::RegisterChannel {
        name: name.into(),
        owner: owner.map(str::to_owned),
    }
}

fn invite(channel: &str, username: &str) -> StoreRequest {
    StoreRequest::Invite {
        channel: channel.into(),
        username: username.into(),
    }
}

/// The texts of a history reply, oldest first, with their ids.
fn page(reply: StoreReply) -> Vec<(wur2_engine::MessageId, String)> {
    match reply {
        StoreReply::History(messages) => messages.into_iter().map(|m| (m.id, m.text)).collect(),
        other => panic!("expected history, got {other:?}"),
    }
}

fn texts(page: &[(wur2_engine::MessageId, String)]) -> Vec<&str> {
    page.iter().map(|(_, text)| text.as_str()).collect()
}

fn account(username: &str, role: Role) -> StoreReply {
    StoreReply::Account {
        username: username.to_owned(),
        role,
        mute: None,
    }
}

fn sanction_request(
    kind: SanctionKind,
    username: &str,
    by_role: Role,
    duration: Option<Duration>,
) -> StoreRequest {
    StoreRequest::Sanction {
        kind,
        username: username.to_owned(),
        by: "mo".to_owned(),
        by_role,
        duration,
        reason: "spam".to_owned(),
    }
}

fn sanctioned(reply: StoreReply) -> Sanction {
    match reply {
        StoreReply::Sanctioned(sanction) => sanction,
        other => panic!("expected a sanction, got {other:?}"),
    }
}

fn pending_texts(reply: StoreReply) -> Vec<(String, String)> {
    match reply {
        StoreReply::Pending(messages) => messages.into_iter().map(|m| (m.sender, m.text)).collect(),
        other => panic!("expected pending messages, got {other:?}"),
    }
}

mod scenarios {
    use super::*;

    pub async fn a_banned_account_gets_the_same_answer_whatever_the_password(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Bob", "right").await;
        let ban = sanctioned(
            h.run(sanction_request(SanctionKind::Ban, "BOB", Role::Mod, None))
                .await,
        );
        assert_eq!(
            (ban.username.as_str(), ban.by.as_str(), ban.reason.as_str()),
            ("Bob", "mo", "spam")
        );
        assert_eq!(ban.expires, None);
        for password in ["right", "wrong"] {
            assert_eq!(
                h.login("bob", password).await,
                StoreReply::Failed(StoreError::Banned(ban.clone())),
                "{password}"
            );
        }
        h.finish().await;
    }

    pub async fn bans_end_when_they_expire_or_are_lifted(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Bob", "pw").await;
        let short = Some(Duration::from_millis(300));
        let ban = sanctioned(
            h.run(sanction_request(
                SanctionKind::Ban,
                "bob",
                Role::Admin,
                short,
            ))
            .await,
        );
        let expiry = ban.expires.unwrap();
        assert_eq!(expiry.at_unix_ms, ban.set_at_unix_ms + 300);
        assert!(expiry.remaining <= Duration::from_millis(300));
        let listed = h.run(StoreRequest::FetchSanctions { limit: 10 }).await;
        assert!(
            matches!(listed, StoreReply::Sanctions(ref s) if s.len() == 1),
            "{listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(h.login("bob", "pw").await, account("Bob", Role::User));
        assert_eq!(
            h.run(StoreRequest::FetchSanctions { limit: 10 }).await,
            StoreReply::Sanctions(Vec::new())
        );
        // An expired ban is not there to lift.
        assert_eq!(h.store.unban("bob").await, Err(StoreError::NotSanctioned));
        let ban = h.store.ban("bob", None, "operator's call").await.unwrap();
        assert_eq!(ban.by, "the operator");
        assert!(matches!(
            h.login("bob", "pw").await,
            StoreReply::Failed(StoreError::Banned(_))
        ));
        assert_eq!(h.store.unban("BOB").await, Ok("Bob".to_owned()));
        assert_eq!(h.login("bob", "pw").await, account("Bob", Role::User));
        assert_eq!(h.store.unban("ghost").await, Err(StoreError::UnknownUser));
        h.finish().await;
    }

    pub async fn only_accounts_of_a_lower_role_are_sanctioned_and_a_mute_comes_with_the_login(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        for name in ["bob", "mo2", "root"] {
            h.register(name, "pw").await;
        }
        h.store.set_role("mo2", Role::Mod).await.unwrap();
        h.store.set_role("root", Role::Admin).await.unwrap();
        let mute = |name: &str, by_role| sanction_request(SanctionKind::Mute, name, by_role, None);
        assert_eq!(
            h.run(mute("mo2", Role::Mod)).await,
            StoreReply::Failed(StoreError::Outranked)
        );
        assert_eq!(
            h.run(mute("root", Role::Admin)).await,
            StoreReply::Failed(StoreError::Outranked)
        );
        assert_eq!(
            h.run(mute("ghost", Role::Admin)).await,
            StoreReply::Failed(StoreError::UnknownUser)
        );
        let mute = sanctioned(h.run(mute("bob", Role::Mod)).await);
        assert_eq!(
            h.login("bob", "pw").await,
            StoreReply::Account {
                username: "bob".into(),
                role: Role::User,
                mute: Some(mute),
            }
        );
        let lift = |by_role| StoreRequest::LiftSanction {
            kind: SanctionKind::Mute,
            username: "BOB".into(),
            by_role,
        };
        assert_eq!(
            h.run(lift(Role::Mod)).await,
            StoreReply::Lifted {
                username: "bob".into()
            }
        );
        assert_eq!(
            h.run(lift(Role::Mod)).await,
            StoreReply::Failed(StoreError::NotSanctioned)
        );
        assert_eq!(h.login("bob", "pw").await, account("bob", Role::User));
        h.finish().await;
    }

    pub async fn sanctions_are_recorded_for_running_servers_and_go_with_a_purged_account(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Bob", "pw").await;
        h.register("Nia", "pw").await;
        let start = h.store.latest_account_change().await.unwrap();
        let ban = sanctioned(
            h.run(sanction_request(SanctionKind::Ban, "bob", Role::Mod, None))
                .await,
        );
        let mute = sanctioned(
            h.run(sanction_request(SanctionKind::Mute, "nia", Role::Mod, None))
                .await,
        );
        let (cursor, changes) = h.store.account_changes_after(start).await.unwrap();
        let read_back = |change: &AccountChange| match change {
            AccountChange::Banned(s) | AccountChange::Muted(s) => Some(s.clone()),
            _ => None,
        };
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(changes[0].0, "Bob");
        assert_eq!(read_back(&changes[0].1).map(|s| s.reason), Some(ban.reason));
        assert!(matches!(changes[0].1, AccountChange::Banned(_)));
        assert!(matches!(changes[1].1, AccountChange::Muted(ref m) if m.by == mute.by));
        let lift = StoreRequest::LiftSanction {
            kind: SanctionKind::Mute,
            username: "nia".into(),
            by_role: Role::Mod,
        };
        h.run(lift).await;
        let (cursor, changes) = h.store.account_changes_after(cursor).await.unwrap();
        assert_eq!(changes, vec![("Nia".to_owned(), AccountChange::Unmuted)]);
        // A ban lifted before anyone read it has nothing left to do.
        h.store.ban("nia", None, "again").await.unwrap();
        h.store.unban("nia").await.unwrap();
        let (_, changes) = h.store.account_changes_after(cursor).await.unwrap();
        assert_eq!(changes, Vec::new());
        // Purged with the account: the name may be registered again, unbanned.
        h.store.purge_user("bob").await.unwrap();
        assert_eq!(
            h.run(StoreRequest::FetchSanctions { limit: 10 }).await,
            StoreReply::Sanctions(Vec::new())
        );
        h.register("bob", "new").await;
        assert_eq!(h.login("bob", "new").await, account("bob", Role::User));
        h.finish().await;
    }

    pub async fn bans_survive_a_reopen_of_the_store(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Bob", "pw").await;
        h.store
            .ban("bob", Some(Duration::from_secs(3_600)), "spam")
            .await
            .unwrap();
        let (store, writer) = h.reopen(fast_config()).await;
        let reply = store
            .execute(StoreRequest::Login {
                username: "bob".into(),
                password: Password::new("pw"),
            })
            .await;
        assert!(
            matches!(&reply, StoreReply::Failed(StoreError::Banned(ban)) if ban.reason == "spam"),
            "{reply:?}"
        );
        store.close().await;
        writer.await.unwrap();
        h.finish().await;
    }

    /// Deletes a channel and its messages with plain SQL, as an operator might.
    async fn remove_channel(db: &TestDb, key: &str) {
        db.execute(&format!("DELETE FROM messages WHERE channel_key = '{key}'"))
            .await;
        db.execute(&format!("DELETE FROM channels WHERE name_key = '{key}'"))
            .await;
    }

    pub async fn a_channel_deleted_behind_the_stores_back_is_recreated_by_the_next_append(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.run(h.channel_message("Global", "alice", "before")).await;
        assert_eq!(h.history_texts("Global", 10).await, ["before"]);
        // The writer now knows the channel's row exists; an operator removes it.
        remove_channel(&h.db, "global").await;
        // Alone in its batch, then in a batch of two.
        h.run(h.channel_message("Global", "alice", "after")).await;
        assert_eq!(h.history_texts("Global", 10).await, ["after"]);
        remove_channel(&h.db, "global").await;
        h.run(h.channel_message("Global", "alice", "again")).await;
        h.run(h.channel_message("Global", "bob", "and more")).await;
        assert_eq!(h.history_texts("Global", 10).await, ["again", "and more"]);
        h.finish().await;
    }

    pub async fn pruning_deletes_old_history_and_keeps_undelivered_private_messages(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Bob", "pw").await;
        h.run(h.channel_message("Global", "alice", "old")).await;
        h.run(h.private_message("alice", "bob", "old read", true))
            .await;
        h.run(h.private_message("alice", "bob", "old unread", false))
            .await;
        h.history_texts("Global", 10).await; // flushes the appends
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cutoff = std::time::SystemTime::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        h.run(h.channel_message("Global", "alice", "new")).await;
        assert_eq!(h.history_texts("Global", 10).await, ["old", "new"]);

        assert_eq!(h.store.prune_history(cutoff).await.unwrap(), 2);
        assert_eq!(h.history_texts("Global", 10).await, ["new"]);
        let pending = h
            .run(StoreRequest::FetchPending {
                username: "bob".into(),
            })
            .await;
        assert_eq!(
            pending_texts(pending),
            [("alice".to_owned(), "old unread".to_owned())]
        );
        assert_eq!(h.db.count_messages().await, 2);
        // Nothing older is left: a second pass deletes nothing.
        assert_eq!(h.store.prune_history(cutoff).await.unwrap(), 0);
        h.finish().await;
    }

    pub async fn role_changes_and_purges_are_read_back_in_order_after_the_last_seen(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Boss", "pw").await;
        h.register("Pat", "pw").await;
        h.store.set_role("boss", Role::Admin).await.unwrap();
        // A server started now reads only what comes after.
        let start = h.store.latest_account_change().await.unwrap();
        assert!(start > 0, "the role change above was recorded");
        assert_eq!(
            h.store.account_changes_after(start).await.unwrap(),
            (start, Vec::new())
        );
        h.store.set_role("PAT", Role::Mod).await.unwrap();
        // The engine's own role requests are not: it applies them itself.
        h.run(StoreRequest::SetRole {
            username: "pat".into(),
            role: Role::User,
        })
        .await;
        h.store.set_role("boss", Role::Admin).await.unwrap();
        // Refused changes are not recorded.
        assert_eq!(
            h.store.set_role("ghost", Role::Mod).await,
            Err(StoreError::UnknownUser)
        );
        let (cursor, changes) = h.store.account_changes_after(start).await.unwrap();
        assert_eq!(
            changes,
            vec![
                // Read as the role held now.
                ("Pat".to_owned(), AccountChange::Role(Role::User)),
                ("Boss".to_owned(), AccountChange::Role(Role::Admin)),
            ]
        );
        // A role change reads the role the account holds now: changes that raced each
        // other end in what the database holds.
        h.store.set_role("pat", Role::User).await.unwrap();
        h.store.set_role("pat", Role::Admin).await.unwrap();
        let (next, changes) = h.store.account_changes_after(cursor).await.unwrap();
        assert!(next > cursor);
        assert_eq!(
            changes,
            vec![("Pat".to_owned(), AccountChange::Role(Role::Admin)); 2]
        );
        // Role changes of an account purged since are skipped: its purge says it all.
        h.store.set_role("pat", Role::Mod).await.unwrap();
        h.store.purge_user("Pat").await.unwrap();
        let (last, changes) = h.store.account_changes_after(next).await.unwrap();
        assert_eq!(changes, vec![("pat".to_owned(), AccountChange::Purged)]);
        assert_eq!(
            h.store.account_changes_after(last).await.unwrap(),
            (last, Vec::new())
        );
        h.finish().await;
    }

    pub async fn a_page_before_a_message_is_the_messages_stored_before_it(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Ann", "pw").await;
        for i in 0..6 {
            h.run(h.channel_message("Global", "Ann", &format!("g{i}")))
                .await;
            h.run(h.channel_message("rust", "Ann", &format!("r{i}")))
                .await;
        }
        let fetch = |limit, before| StoreRequest::FetchHistory {
            channel: "GLOBAL".into(),
            limit,
            before,
        };
        let latest = page(h.run(fetch(2, None)).await);
        assert_eq!(texts(&latest), ["g4", "g5"]);
        let older = page(h.run(fetch(3, Some(latest[0].0))).await);
        assert_eq!(texts(&older), ["g1", "g2", "g3"]);
        let oldest = page(h.run(fetch(3, Some(older[0].0))).await);
        assert_eq!(texts(&oldest), ["g0"]);
        // An id of another channel, or of nothing, gives an empty page.
        let rust = page(
            h.run(StoreRequest::FetchHistory {
                channel: "rust".into(),
                limit: 1,
                before: None,
            })
            .await,
        );
        assert!(page(h.run(fetch(3, Some(rust[0].0))).await).is_empty());
        let nothing = wur2_engine::MessageId {
            origin: 9,
            sequence: 9,
        };
        assert!(page(h.run(fetch(3, Some(nothing))).await).is_empty());
        h.finish().await;
    }

    pub async fn a_conversation_is_both_directions_between_two_users_only(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        for name in ["Ann", "Bob", "Cat"] {
            h.register(name, "pw").await;
        }
        h.run(h.private_message("Ann", "bob", "a1", true)).await;
        h.run(h.private_message("Cat", "bob", "c1", false)).await;
        h.run(h.private_message("Bob", "ANN", "b1", false)).await;
        h.run(h.private_message("Ann", "cat", "a2", true)).await;
        h.run(h.private_message("Ann", "Bob", "a3", true)).await;
        let fetch = |limit, before| StoreRequest::FetchConversation {
            username: "ann".into(),
            with: "BOB".into(),
            limit,
            before,
        };
        let all = page(h.run(fetch(10, None)).await);
        assert_eq!(texts(&all), ["a1", "b1", "a3"]);
        let before_last = page(h.run(fetch(1, Some(all[2].0))).await);
        assert_eq!(texts(&before_last), ["b1"]);
        h.finish().await;
    }

    pub async fn a_password_change_needs_the_old_password_and_replaces_it(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Ann", "old-password").await;
        let change = |old: &str, new: &str| StoreRequest::ChangePassword {
            username: "ANN".into(),
            old: Password::new(old),
            new: Password::new(new),
        };
        assert_eq!(
            h.run(change("wrong", "new-password")).await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        assert_eq!(
            h.login("ann", "old-password").await,
            account("Ann", Role::User)
        );
        assert_eq!(
            h.run(change("old-password", "new-password")).await,
            StoreReply::Done
        );
        assert_eq!(
            h.login("ann", "old-password").await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        assert_eq!(
            h.login("ann", "new-password").await,
            account("Ann", Role::User)
        );
        let nobody = StoreRequest::ChangePassword {
            username: "nobody".into(),
            old: Password::new("x"),
            new: Password::new("new-password"),
        };
        assert_eq!(
            h.run(nobody).await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        h.finish().await;
    }

    pub async fn a_deleted_account_is_purged_and_recorded_but_never_the_last_admin(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Ann", "pw-ann").await;
        h.register("Root", "pw-root").await;
        h.store.set_role("root", Role::Admin).await.unwrap();
        h.run(h.channel_message("Global", "Ann", "from ann")).await;
        h.run(h.private_message("Root", "ann", "to ann", false))
            .await;
        let seen = h.store.latest_account_change().await.unwrap();
        let delete = |username: &str, password: &str| StoreRequest::DeleteAccount {
            username: username.into(),
            password: Password::new(password),
        };
        assert_eq!(
            h.run(delete("ann", "wrong")).await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        assert_eq!(
            h.run(delete("root", "pw-root")).await,
            StoreReply::Failed(StoreError::LastAdmin)
        );
        assert_eq!(h.run(delete("ANN", "pw-ann")).await, StoreReply::Done);
        assert!(h.history_texts("Global", 10).await.is_empty());
        assert_eq!(
            h.login("ann", "pw-ann").await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        let (_, changes) = h.store.account_changes_after(seen).await.unwrap();
        assert_eq!(changes, [("ann".to_string(), AccountChange::Purged)]);
        assert_eq!(
            h.register("ann", "pw-new").await,
            account("ann", Role::User)
        );
        h.finish().await;
    }

    pub async fn a_registered_channel_keeps_its_first_owner_topic_privacy_and_invitations(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Ann", "pw").await;
        h.register("Bob", "pw").await;
        // A channel with messages but no registration has no owner.
        h.run(h.channel_message("Global", "Ann", "hi")).await;
        // A first message may be committed before its channel's registration: the
        // registration still gives it its owner.
        h.run(h.channel_message("#Club", "Ann", "first")).await;
        let club = |owner: Option<&str>| StoredChannel {
            name: "#Club".into(),
            owner: owner.map(str::to_owned),
            ..StoredChannel::default()
        };
        assert_eq!(
            channels(h.run(register_channel("#Club", Some("ann"))).await),
            [club(Some("Ann"))],
            "the owner as registered"
        );
        assert_eq!(
            channels(h.run(register_channel("#CLUB", Some("bob"))).await),
            [club(Some("Ann"))],
            "the first registration wins"
        );
        let topic = |topic: Option<&str>| StoreRequest::SetTopic {
            channel: "#club".into(),
            topic: topic.map(str::to_owned),
        };
        assert_eq!(h.run(topic(Some("crabs"))).await, StoreReply::Done);
        let private = StoreRequest::SetPrivate {
            channel: "#club".into(),
            private: true,
        };
        assert_eq!(h.run(private).await, StoreReply::Done);
        assert_eq!(
            h.run(invite("#club", "nobody")).await,
            StoreReply::Failed(StoreError::UnknownUser)
        );
        for _ in 0..2 {
            assert_eq!(
                h.run(invite("#club", "BOB")).await,
                account("Bob", Role::User)
            );
        }
        let expected = StoredChannel {
            topic: Some("crabs".into()),
            private: true,
            invited: vec!["Bob".into()],
            ..club(Some("Ann"))
        };
        let global = StoredChannel {
            name: "Global".into(),
            ..StoredChannel::default()
        };
        assert_eq!(
            channels(h.run(StoreRequest::LoadChannels).await),
            [expected.clone(), global.clone()]
        );
        assert_eq!(h.run(topic(None)).await, StoreReply::Done);
        let set_elsewhere = StoreRequest::SetTopic {
            channel: "side".into(),
            topic: Some("registered by the change".into()),
        };
        assert_eq!(h.run(set_elsewhere).await, StoreReply::Done);
        let side = StoredChannel {
            name: "side".into(),
            topic: Some("registered by the change".into()),
            ..StoredChannel::default()
        };
        assert_eq!(
            channels(h.run(StoreRequest::LoadChannels).await),
            [
                StoredChannel {
                    topic: None,
                    ..expected
                },
                global,
                side
            ]
        );
        h.finish().await;
    }

    pub async fn a_resume_token_logs_its_account_in_until_revoked_or_expired(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Ann", "pw-ann-1").await;
        h.register("Bob", "pw-bob-1").await;
        let issue = |username: &str| StoreRequest::IssueToken {
            username: username.into(),
        };
        let resume = |username: &str, token: &Password| StoreRequest::Resume {
            username: username.into(),
            token: token.clone(),
        };
        let token = |reply: StoreReply| match reply {
            StoreReply::Token(token) => token,
            other => panic!("expected a token, got {other:?}"),
        };
        let first = token(h.run(issue("ann")).await);
        assert_eq!(first.expose().len(), 32);
        let second = token(h.run(issue("ANN")).await);
        assert_ne!(first, second, "random");
        assert_eq!(
            h.run(resume("ann", &first)).await,
            account("Ann", Role::User)
        );
        assert_eq!(
            h.run(resume("bob", &first)).await,
            StoreReply::Failed(StoreError::InvalidCredentials),
            "another account's token"
        );
        // A mute in force comes with a resume, as with a password login (the same query
        // finds the account and its sanctions); another account's, or one run out, not.
        let mute =
            |name: &str, duration| sanction_request(SanctionKind::Mute, name, Role::Mod, duration);
        sanctioned(h.run(mute("bob", None)).await);
        sanctioned(h.run(mute("ann", Some(Duration::from_millis(1)))).await);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            h.run(resume("ann", &first)).await,
            account("Ann", Role::User),
            "bob's mute, and ann's that ran out"
        );
        let muted = sanctioned(h.run(mute("ann", None)).await);
        assert_eq!(
            h.run(resume("ann", &first)).await,
            StoreReply::Account {
                username: "Ann".into(),
                role: Role::User,
                mute: Some(muted),
            }
        );
        // Revoked, by a password change, then by /logout-everywhere's request.
        let changed = StoreRequest::ChangePassword {
            username: "ann".into(),
            old: Password::new("pw-ann-1"),
            new: Password::new("pw-ann-2"),
        };
        assert_eq!(h.run(changed).await, StoreReply::Done);
        for revoked in [&first, &second] {
            assert_eq!(
                h.run(resume("ann", revoked)).await,
                StoreReply::Failed(StoreError::InvalidCredentials)
            );
        }
        let third = token(h.run(issue("ann")).await);
        let revoke = StoreRequest::RevokeTokens {
            username: "Ann".into(),
        };
        assert_eq!(h.run(revoke).await, StoreReply::Done);
        assert_eq!(
            h.run(resume("ann", &third)).await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        // At most 20 per account: the 21st forgets the oldest.
        let oldest = token(h.run(issue("ann")).await);
        for _ in 0..20 {
            token(h.run(issue("ann")).await);
        }
        assert_eq!(
            h.run(resume("ann", &oldest)).await,
            StoreReply::Failed(StoreError::InvalidCredentials),
            "the oldest of 21 is forgotten"
        );
        // A purge takes them too: the name registered again is not logged in by an old one.
        let fourth = token(h.run(issue("bob")).await);
        h.store.purge_user("bob").await.unwrap();
        h.register("bob", "pw-bob-2").await;
        assert_eq!(
            h.run(resume("bob", &fourth)).await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        h.finish().await;

        // Expired: with a lifetime of zero, a token never logs in.
        let config = StoreConfig {
            resume_token_lifetime: Duration::ZERO,
            ..fast_config()
        };
        let Some(h) = Harness::open_with(backend, config).await else {
            return;
        };
        h.register("Cat", "pw-cat-1").await;
        let expired = token(h.run(issue("cat")).await);
        assert_eq!(
            h.run(resume("cat", &expired)).await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        h.finish().await;
    }

    pub async fn a_deleted_account_owns_and_is_invited_to_nothing_even_when_its_name_returns(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Ann", "pw").await;
        h.register("Bob", "pw").await;
        h.run(register_channel("#ann", Some("Ann"))).await;
        h.run(invite("#ann", "bob")).await;
        h.run(register_channel("#bob", Some("Bob"))).await;
        h.run(invite("#bob", "ann")).await;
        h.store.purge_user("ann").await.unwrap();
        h.register("ann", "pw").await;
        let loaded = channels(h.run(StoreRequest::LoadChannels).await);
        let summary: Vec<(&str, Option<&str>, Vec<&str>)> = loaded
            .iter()
            .map(|c| {
                let invited = c.invited.iter().map(String::as_str).collect();
                (c.name.as_str(), c.owner.as_deref(), invited)
            })
            .collect();
        assert_eq!(
            summary,
            [("#ann", None, vec!["Bob"]), ("#bob", Some("Bob"), vec![])]
        );
        h.finish().await;
    }

    pub async fn channels_and_their_settings_survive_reopening_the_store(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Ann", "pw").await;
        h.register("Bob", "pw").await;
        h.run(register_channel("#club", Some("ann"))).await;
        let topic = StoreRequest::SetTopic {
            channel: "#club".into(),
            topic: Some("members only".into()),
        };
        h.run(topic).await;
        let private = StoreRequest::SetPrivate {
            channel: "#club".into(),
            private: true,
        };
        h.run(private).await;
        h.run(invite("#club", "bob")).await;
        let before = channels(h.run(StoreRequest::LoadChannels).await);
        let (reopened, writer) = h.reopen(fast_config()).await;
        let after = channels(reopened.execute(StoreRequest::LoadChannels).await);
        assert_eq!(after, before);
        assert_eq!(after[0].invited, ["Bob"], "with its invitations: {after:?}");
        reopened.close().await;
        writer.await.unwrap();
        h.finish().await;
    }

    pub async fn purge_user_removes_the_account_and_every_message_to_or_from_it(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Alice", "pw").await;
        h.register("Bob", "pw").await;
        h.run(h.channel_message("Global", "Alice", "from alice"))
            .await;
        h.run(h.channel_message("Global", "Bob", "from bob")).await;
        h.run(h.private_message("Bob", "alice", "to alice", false))
            .await;
        h.run(h.private_message("Alice", "bob", "to bob", true))
            .await;

        let purged = h.store.purge_user("ALICE").await.unwrap();
        assert_eq!(purged.username, "Alice");
        assert_eq!(purged.messages, 3);
        assert_eq!(h.history_texts("Global", 10).await, ["from bob"]);
        let users = h.store.list_users().await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].username, "Bob");
        assert_eq!(
            h.login("Alice", "pw").await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        assert_eq!(
            h.store.purge_user("alice").await,
            Err(StoreError::UnknownUser)
        );
        // The name is free again.
        assert_eq!(
            h.register("alice", "pw2").await,
            account("alice", Role::User)
        );
        h.finish().await;
    }

    pub async fn ping_answers_while_open_and_fails_once_closed(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.store.ping(Duration::from_secs(2)).await.unwrap();
        assert_eq!(h.store.append_queue_len(), 0);
        assert_eq!(h.store.hash_queue_len(), 0);
        h.store.close().await;
        assert!(h.store.ping(Duration::from_secs(2)).await.is_err());
        h.writer.await.unwrap();
        h.db.remove().await;
    }

    pub async fn register_creates_a_user_account(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        assert_eq!(
            h.register("Alice", "correct horse").await,
            account("Alice", Role::User)
        );
        let users = h.store.list_users().await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].username, "Alice");
        assert_eq!(users[0].role, Role::User);
        assert!(users[0].created_at_unix_ms > 1_700_000_000_000);
        h.finish().await;
    }

    pub async fn a_taken_name_is_refused_in_any_letter_case(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        assert_eq!(
            h.register("Alice", "pw1").await,
            account("Alice", Role::User)
        );
        for name in ["Alice", "alice", "ALICE", "aLiCe"] {
            assert_eq!(
                h.register(name, "pw2").await,
                StoreReply::Failed(StoreError::UsernameTaken),
                "{name}"
            );
        }
        assert_eq!(h.store.list_users().await.unwrap().len(), 1);
        h.finish().await;
    }

    pub async fn login_with_the_right_password_returns_the_account_as_registered(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Alice", "correct horse").await;
        assert_eq!(
            h.login("Alice", "correct horse").await,
            account("Alice", Role::User)
        );
        assert_eq!(
            h.login("aLICE", "correct horse").await,
            account("Alice", Role::User)
        );
        h.finish().await;
    }

    pub async fn a_wrong_password_and_an_unknown_user_get_the_same_answer(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Alice", "correct horse").await;
        let refused = StoreReply::Failed(StoreError::InvalidCredentials);
        assert_eq!(h.login("Alice", "Correct horse").await, refused);
        assert_eq!(h.login("Alice", "").await, refused);
        assert_eq!(h.login("Mallory", "correct horse").await, refused);
        h.finish().await;
    }

    /// Two demotions of the only two admins at the same moment (two nodes, or the shell
    /// and a chat): one of them is refused, whatever the timing.
    pub async fn two_admins_demoted_at_once_leave_one_admin(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        for round in 0..10 {
            let (a, b) = (format!("a{round}"), format!("b{round}"));
            h.register(&a, "pw").await;
            h.register(&b, "pw").await;
            h.store.set_role(&a, Role::Admin).await.expect("admin");
            h.store.set_role(&b, Role::Admin).await.expect("admin");
            let (first, second) = futures::future::join(
                h.store.set_role(&a, Role::User),
                h.store.set_role(&b, Role::User),
            )
            .await;
            let admins = h
                .store
                .list_users()
                .await
                .expect("users")
                .into_iter()
                .filter(|user| user.role == Role::Admin)
                .count();
            assert_eq!(admins, 1, "round {round}: {first:?} {second:?}");
            // Back to no admin for the next round: the one left steps down last.
            let left = if first.is_ok() { &b } else { &a };
            let mut db_left = left.clone();
            db_left.make_ascii_lowercase();
            h.db.execute(&format!(
                "UPDATE users SET role = 'user' WHERE username_key = '{db_left}'"
            ))
            .await;
        }
        h.finish().await;
    }

    pub async fn roles_are_changed_and_kept_and_the_last_admin_stays_admin(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Alice", "pw").await;
        h.register("bob", "pw").await;
        let set = |username: &str, role| StoreRequest::SetRole {
            username: username.to_owned(),
            role,
        };
        assert_eq!(
            h.run(set("ALICE", Role::Admin)).await,
            account("Alice", Role::Admin)
        );
        assert_eq!(h.login("alice", "pw").await, account("Alice", Role::Admin));
        assert_eq!(
            h.run(set("nobody", Role::Mod)).await,
            StoreReply::Failed(StoreError::UnknownUser)
        );
        let bob = h.store.set_role("BOB", Role::Mod).await.unwrap();
        assert_eq!((bob.username.as_str(), bob.role), ("bob", Role::Mod));
        assert_eq!(
            h.store.set_role("nobody", Role::Mod).await,
            Err(StoreError::UnknownUser)
        );
        let roles: Vec<(String, Role)> = h
            .store
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.username, u.role))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("Alice".to_owned(), Role::Admin),
                ("bob".to_owned(), Role::Mod)
            ]
        );
        // Alice is the last admin: neither the engine's request nor the operator's command
        // takes the role from her, until someone else is admin.
        assert_eq!(
            h.run(set("alice", Role::User)).await,
            StoreReply::Failed(StoreError::LastAdmin)
        );
        assert_eq!(
            h.store.set_role("alice", Role::Mod).await,
            Err(StoreError::LastAdmin)
        );
        assert_eq!(h.login("alice", "pw").await, account("Alice", Role::Admin));
        assert_eq!(
            h.run(set("alice", Role::Admin)).await,
            account("Alice", Role::Admin),
            "an admin may be made admin again"
        );
        h.store.set_role("bob", Role::Admin).await.unwrap();
        assert_eq!(
            h.run(set("alice", Role::User)).await,
            account("Alice", Role::User)
        );
        assert_eq!(
            h.store.set_role("bob", Role::User).await,
            Err(StoreError::LastAdmin)
        );
        h.finish().await;
    }

    pub async fn history_is_the_last_messages_oldest_first(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        for n in 1..=5 {
            assert_eq!(
                h.run(h.channel_message("Global", "alice", &format!("m{n}")))
                    .await,
                StoreReply::Done
            );
        }
        h.run(h.channel_message("rust", "bob", "elsewhere")).await;
        // Read right after queueing: history must include what was queued before it.
        assert_eq!(h.history_texts("Global", 3).await, ["m3", "m4", "m5"]);
        assert_eq!(
            h.history_texts("Global", 100).await,
            ["m1", "m2", "m3", "m4", "m5"]
        );
        assert_eq!(h.history_texts("Global", 0).await, Vec::<String>::new());
        assert_eq!(h.history_texts("nowhere", 10).await, Vec::<String>::new());
        match h
            .run(StoreRequest::FetchHistory {
                channel: "global".into(),
                limit: 1,
                before: None,
            })
            .await
        {
            StoreReply::History(messages) => {
                assert_eq!(messages[0].sender, "alice");
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64;
                assert!((now - messages[0].sent_at_unix_ms).abs() < 60_000);
            }
            other => panic!("expected history, got {other:?}"),
        }
        h.finish().await;
    }

    pub async fn channel_names_match_without_regard_to_case(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.run(h.channel_message("Rust", "alice", "one")).await;
        h.run(h.channel_message("RUST", "bob", "two")).await;
        assert_eq!(h.history_texts("rust", 10).await, ["one", "two"]);
        h.finish().await;
    }

    /// What the engine asks when a private message's recipient left before its commit.
    pub async fn a_private_message_stored_as_delivered_is_pending_again_after_mark_pending(
        backend: Backend,
    ) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Bob", "pw").await;
        let live = h.private_message("alice", "bob", "missed", true);
        let StoreRequest::AppendPrivateMessage(message) = &live else {
            panic!("a private message append")
        };
        let id = message.id;
        assert_eq!(h.run(live).await, StoreReply::Done);
        let fetch = || StoreRequest::FetchPending {
            username: "bob".into(),
        };
        assert_eq!(pending_texts(h.run(fetch()).await), vec![]);
        assert_eq!(
            h.run(StoreRequest::MarkPending { ids: vec![id] }).await,
            StoreReply::Done
        );
        assert_eq!(
            pending_texts(h.run(fetch()).await),
            vec![("alice".to_owned(), "missed".to_owned())]
        );
        h.finish().await;
    }

    pub async fn pending_private_messages_are_handed_out_until_marked_delivered(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Bob", "pw").await;
        assert_eq!(
            h.run(h.private_message("alice", "bob", "first", false))
                .await,
            StoreReply::Done
        );
        assert_eq!(
            h.run(h.private_message("carol", "BOB", "second", false))
                .await,
            StoreReply::Done
        );
        // Seen live already: never pending.
        assert_eq!(
            h.run(h.private_message("alice", "Bob", "live", true)).await,
            StoreReply::Done
        );
        let fetch = || StoreRequest::FetchPending {
            username: "bob".into(),
        };
        let expected = vec![
            ("alice".to_owned(), "first".to_owned()),
            ("carol".to_owned(), "second".to_owned()),
        ];
        // Fetching does not take them: a connection lost before delivery gets them again.
        assert_eq!(pending_texts(h.run(fetch()).await), expected);
        let StoreReply::Pending(pending) = h.run(fetch()).await else {
            panic!("expected pending")
        };
        assert_eq!(pending.len(), 2);
        let ids = pending.iter().map(|m: &PendingMessage| m.id).collect();
        assert_eq!(
            h.run(StoreRequest::MarkDelivered { ids }).await,
            StoreReply::Done
        );
        assert_eq!(pending_texts(h.run(fetch()).await), vec![]);
        assert_eq!(
            h.run(h.private_message("alice", "bob", "third", false))
                .await,
            StoreReply::Done
        );
        assert_eq!(
            pending_texts(h.run(fetch()).await),
            vec![("alice".into(), "third".into())]
        );
        h.finish().await;
    }

    /// The engine marks a login's pending messages delivered, and a second login right
    /// after fetches again: the fetch must not overtake the mark (no DM shown twice), even
    /// when both run at once.
    pub async fn a_fetch_issued_after_a_mark_delivered_never_sees_those_messages(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("alice", "pw").await;
        h.register("bob", "pw").await;
        for n in 0..20 {
            let message = h.private_message("alice", "bob", &format!("m{n}"), false);
            assert_eq!(h.run(message).await, StoreReply::Done);
        }
        let fetch = || StoreRequest::FetchPending {
            username: "bob".into(),
        };
        let StoreReply::Pending(pending) = h.run(fetch()).await else {
            panic!("expected pending")
        };
        let ids = pending.iter().map(|m: &PendingMessage| m.id).collect();
        // Issued in this order, polled the other way round.
        let mark = h.store.execute(StoreRequest::MarkDelivered { ids });
        let refetch = h.store.execute(fetch());
        let (refetched, marked) = futures::join!(refetch, mark);
        assert_eq!(marked, StoreReply::Done);
        assert_eq!(pending_texts(refetched), vec![]);
        h.finish().await;
    }

    pub async fn a_pending_message_to_an_unknown_user_is_refused(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        assert_eq!(
            h.run(h.private_message("alice", "nobody", "hello?", false))
                .await,
            StoreReply::Failed(StoreError::UnknownUser)
        );
        h.register("Nobody", "pw").await;
        assert_eq!(
            h.run(h.private_message("alice", "nobody", "now?", false))
                .await,
            StoreReply::Done
        );
        assert_eq!(
            pending_texts(
                h.run(StoreRequest::FetchPending {
                    username: "NOBODY".into()
                })
                .await
            ),
            vec![("alice".into(), "now?".into())]
        );
        h.finish().await;
    }

    pub async fn an_appends_future_is_small_since_every_chat_message_spawns_one(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        // The driver spawns each request's future in a task of its own, which copies it:
        // the reads and logins it may also be stay boxed until they are needed (it was
        // 17 000 bytes when they were not).
        let append = h
            .store
            .execute(h.channel_message("Global", "alice", "small"));
        let size = std::mem::size_of_val(&append);
        assert!(size <= 256, "an append's future takes {size} bytes");
        assert_eq!(append.await, StoreReply::Done);
        h.finish().await;
    }

    pub async fn appends_are_stored_in_the_order_they_were_queued(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        let count = 3_000;
        // Queue them all before awaiting any reply (execute queues when called).
        let replies: Vec<_> = (0..count)
            .map(|n| {
                h.store
                    .execute(h.channel_message("Global", "alice", &n.to_string()))
            })
            .collect();
        for reply in futures::future::join_all(replies).await {
            assert_eq!(reply, StoreReply::Done);
        }
        let expected: Vec<String> = (0..count).map(|n| n.to_string()).collect();
        assert_eq!(h.history_texts("Global", count).await, expected);
        h.finish().await;
    }

    pub async fn a_repeated_message_id_is_stored_once(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        let message = h.channel_message("Global", "alice", "once");
        let StoreRequest::AppendChannelMessage(message) = message else {
            unreachable!()
        };
        let again = || StoreRequest::AppendChannelMessage(message.clone());
        // Twice in one batch, then again after it was written.
        h.run(again()).await;
        h.run(again()).await;
        assert_eq!(h.history_texts("Global", 10).await, ["once"]);
        h.run(again()).await;
        h.run(h.channel_message("Global", "alice", "next")).await;
        assert_eq!(h.history_texts("Global", 10).await, ["once", "next"]);
        assert_eq!(h.db.count_messages().await, 2);
        h.finish().await;
    }

    pub async fn closing_writes_every_queued_append(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        for n in 0..500 {
            h.run(h.channel_message("Global", "alice", &n.to_string()))
                .await;
        }
        h.store.close().await;
        assert_eq!(
            h.run(h.channel_message("Global", "alice", "late")).await,
            StoreReply::Failed(StoreError::Unavailable("the store is closed".into()))
        );
        let (again, writer) = h.reopen(fast_config()).await;
        match again
            .execute(StoreRequest::FetchHistory {
                channel: "Global".into(),
                limit: 1000,
                before: None,
            })
            .await
        {
            StoreReply::History(messages) => assert_eq!(messages.len(), 500),
            other => panic!("expected history, got {other:?}"),
        }
        again.close().await;
        writer.await.unwrap();
        h.finish().await;
    }

    pub async fn a_weaker_stored_hash_is_replaced_on_login(backend: Backend) {
        let Some(h) = Harness::open(backend).await else {
            return;
        };
        h.register("Alice", "pw").await;
        let weak = h.db.stored_hash("alice").await;
        assert!(weak.contains("m=64,t=1,p=1"), "{weak}");
        let stronger = StoreConfig {
            password: PasswordConfig {
                memory_kib: 128,
                iterations: 2,
                parallelism: 1,
            },
            ..fast_config()
        };
        let (store, writer) = h.reopen(stronger).await;
        let login = |password: &str| StoreRequest::Login {
            username: "alice".into(),
            password: Password::new(password),
        };
        // A wrong password changes nothing.
        assert_eq!(
            store.execute(login("nope")).await,
            StoreReply::Failed(StoreError::InvalidCredentials)
        );
        assert_eq!(h.db.stored_hash("alice").await, weak);
        assert_eq!(
            store.execute(login("pw")).await,
            account("Alice", Role::User)
        );
        let strong = h.db.stored_hash("alice").await;
        assert!(strong.contains("m=128,t=2,p=1"), "{strong}");
        assert_eq!(
            store.execute(login("pw")).await,
            account("Alice", Role::User)
        );
        assert_eq!(
            h.db.stored_hash("alice").await,
            strong,
            "hashed again needlessly"
        );
        store.close().await;
        writer.await.unwrap();
        h.finish().await;
    }

    /// Everything above runs under Tokio; this runs a whole session under async-std, on a
    /// plain thread with no Tokio runtime anywhere near it.
    pub async fn the_store_works_under_async_std(backend: Backend) {
        let Some(db) = TestDb::create(backend).await else {
            return;
        };
        let url = db.url.clone();
        std::thread::spawn(move || {
            async_std::task::block_on(async {
                let (store, writer) = Store::open(&url, fast_config()).await.unwrap();
                let writer = async_std::task::spawn(writer.run());
                let register = StoreRequest::Register {
                    username: "Alice".into(),
                    password: Password::new("pw"),
                };
                assert_eq!(store.execute(register).await, account("Alice", Role::User));
                let login = StoreRequest::Login {
                    username: "alice".into(),
                    password: Password::new("pw"),
                };
                assert_eq!(store.execute(login).await, account("Alice", Role::User));
                for n in 0..10 {
                    let append = StoreRequest::AppendChannelMessage(wur2_engine::ChannelMessage {
                        id: wur2_engine::MessageId {
                            origin: 7,
                            sequence: n,
                        },
                        channel: "Global".into(),
                        sender: "Alice".into(),
                        text: n.to_string(),
                    });
                    assert_eq!(store.execute(append).await, StoreReply::Done);
                }
                let history = StoreRequest::FetchHistory {
                    channel: "global".into(),
                    limit: 3,
                    before: None,
                };
                let StoreReply::History(messages) = store.execute(history).await else {
                    panic!("expected history")
                };
                let texts: Vec<_> = messages.into_iter().map(|m| m.text).collect();
                assert_eq!(texts, ["7", "8", "9"]);
                store.close().await;
                writer.await;
            });
        })
        .join()
        .unwrap();
        db.remove().await;
    }
}

// ---- Behaviour that does not depend on the database (SQLite only) ----

/// The OWASP default cost is what new hashes get unless configured otherwise.
#[tokio::test]
async fn the_default_cost_is_the_owasp_minimum() {
    let config = StoreConfig::default();
    assert_eq!(
        config.password,
        PasswordConfig {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1
        }
    );
    let h = Harness::open_with(Backend::Sqlite, config).await.unwrap();
    assert_eq!(
        h.register("Alice", "correct horse").await,
        account("Alice", Role::User)
    );
    let hash = h.db.stored_hash("alice").await;
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_eq!(
        h.login("alice", "correct horse").await,
        account("Alice", Role::User)
    );
    assert_eq!(
        h.login("alice", "wrong").await,
        StoreReply::Failed(StoreError::InvalidCredentials)
    );
    h.finish().await;
}

/// Hashing runs on the store's threads: 50 logins at once leave a Tokio timer on the same
/// (single-threaded) runtime on time.
#[tokio::test]
async fn fifty_concurrent_logins_do_not_delay_a_timer() {
    // About 8 MiB per hash: 50 of them keep two cores busy for well over 100 ms, which a
    // blocked runtime would show as a late timer.
    let config = StoreConfig {
        password: PasswordConfig {
            memory_kib: 8_192,
            iterations: 2,
            parallelism: 1,
        },
        ..fast_config()
    };
    let h = Harness::open_with(Backend::Sqlite, config).await.unwrap();
    h.register("Alice", "pw").await;
    let ticker = tokio::spawn(async {
        let mut worst = Duration::ZERO;
        for _ in 0..60 {
            let asked = Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            worst = worst.max(asked.elapsed().saturating_sub(Duration::from_millis(5)));
        }
        worst
    });
    let started = Instant::now();
    let logins: Vec<_> = (0..50)
        .map(|n| {
            let password = if n % 2 == 0 { "pw" } else { "wrong" };
            h.store.execute(StoreRequest::Login {
                username: "alice".into(),
                password: Password::new(password),
            })
        })
        .collect();
    let replies = futures::future::join_all(logins).await;
    let hashing = started.elapsed();
    for (n, reply) in replies.into_iter().enumerate() {
        let expected = if n % 2 == 0 {
            account("Alice", Role::User)
        } else {
            StoreReply::Failed(StoreError::InvalidCredentials)
        };
        assert_eq!(reply, expected);
    }
    let worst = ticker.await.unwrap();
    eprintln!("50 logins took {hashing:?}; the timer was late by at most {worst:?}");
    assert!(
        hashing > Duration::from_millis(60),
        "hashing too cheap to prove anything: {hashing:?}"
    );
    // Hashing on the runtime's one thread would hold the timer back for the whole batch
    // (`hashing`, several hundred ms); scheduling noise on a loaded 2-core machine stays
    // far below a quarter of it.
    assert!(
        worst < hashing / 4,
        "timer late by {worst:?} while hashing took {hashing:?}"
    );
    h.finish().await;
}

/// A full hashing queue refuses at once instead of piling up work.
#[tokio::test]
async fn a_full_hashing_queue_answers_busy() {
    let config = StoreConfig {
        password: PasswordConfig {
            memory_kib: 8_192,
            iterations: 2,
            parallelism: 1,
        },
        hash_threads: 1,
        hash_queue: 2,
        ..fast_config()
    };
    let h = Harness::open_with(Backend::Sqlite, config).await.unwrap();
    h.register("Alice", "pw").await;
    let logins: Vec<_> = (0..20)
        .map(|_| {
            h.store.execute(StoreRequest::Login {
                username: "alice".into(),
                password: Password::new("pw"),
            })
        })
        .collect();
    let replies = futures::future::join_all(logins).await;
    let busy = replies
        .iter()
        .filter(|r| **r == StoreReply::Failed(StoreError::Busy))
        .count();
    let ok = replies
        .iter()
        .filter(|r| **r == account("Alice", Role::User))
        .count();
    assert_eq!(busy + ok, 20, "{replies:?}");
    assert!(busy > 0 && ok >= 3, "busy {busy}, ok {ok}");
    h.finish().await;
}

/// Registrations wait in their own small queue, behind logins: a flood of them is refused
/// with `Busy` while a login of an existing account still gets in.
#[tokio::test]
async fn a_registration_flood_is_refused_busy_while_logins_still_get_in() {
    let config = StoreConfig {
        password: PasswordConfig {
            memory_kib: 8_192,
            iterations: 2,
            parallelism: 1,
        },
        hash_threads: 1,
        hash_queue: 4,
        registration_hash_queue: 2,
        ..fast_config()
    };
    let h = Harness::open_with(Backend::Sqlite, config).await.unwrap();
    h.register("Alice", "pw").await;
    let registrations = (0..30).map(|n| {
        h.store.execute(StoreRequest::Register {
            username: format!("spam{n}"),
            password: Password::new("pw"),
        })
    });
    let login = h.store.execute(StoreRequest::Login {
        username: "alice".into(),
        password: Password::new("pw"),
    });
    let (replies, login) =
        futures::future::join(futures::future::join_all(registrations), login).await;
    assert_eq!(login, account("Alice", Role::User), "the login got in");
    let busy = replies
        .iter()
        .filter(|r| **r == StoreReply::Failed(StoreError::Busy))
        .count();
    assert!(busy >= 20, "at most a few registrations queue: {replies:?}");
    h.finish().await;
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused() {
    let error = Store::open("mysql://localhost/wur2", fast_config())
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("unsupported database URL"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_not_a_hang() {
    let config = StoreConfig {
        acquire_timeout: Duration::from_secs(1),
        ..fast_config()
    };
    let started = Instant::now();
    let result = Store::open("postgres://nobody:pw@127.0.0.1:9/wur2", config).await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn debug_output_shows_no_secret() {
    let h = Harness::open(Backend::Sqlite).await.unwrap();
    let request = StoreRequest::Register {
        username: "Alice".into(),
        password: Password::new("hunter2"),
    };
    assert!(!format!("{request:?}").contains("hunter2"));
    assert!(!format!("{:?}", h.store).contains("argon2"));
    h.finish().await;
}

/// The append buffer is bounded; `close` writes what waits even if no writer was spawned,
/// and each waiting append is answered once it is committed.
#[tokio::test]
async fn a_full_append_buffer_refuses_and_close_still_writes_the_queue() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let config = StoreConfig {
        append_buffer: 3,
        ..fast_config()
    };
    let (store, writer) = Store::open(&db.url, config).await.unwrap();
    drop(writer); // Never run: appends wait in the buffer.
    let append = |n: u64| {
        StoreRequest::AppendChannelMessage(wur2_engine::ChannelMessage {
            id: wur2_engine::MessageId {
                origin: 1,
                sequence: n,
            },
            channel: "Global".into(),
            sender: "alice".into(),
            text: n.to_string(),
        })
    };
    // Each append answers once committed: these three wait in the buffer until `close`.
    let queued: Vec<_> = (0..3).map(|n| store.execute(append(n))).collect();
    assert_eq!(
        store.execute(append(3)).await,
        StoreReply::Failed(StoreError::Unavailable("the append buffer is full".into()))
    );
    store.close().await;
    for reply in futures::future::join_all(queued).await {
        assert_eq!(reply, StoreReply::Done);
    }
    let (again, writer) = Store::open(&db.url, fast_config()).await.unwrap();
    let writer = tokio::spawn(writer.run());
    let history = StoreRequest::FetchHistory {
        channel: "Global".into(),
        limit: 10,
        before: None,
    };
    let StoreReply::History(messages) = again.execute(history).await else {
        panic!("history")
    };
    assert_eq!(
        messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    again.close().await;
    writer.await.unwrap();
}

/// `sqlite::memory:` keeps one database for the store's lifetime (handy for embedders' tests).
#[tokio::test]
async fn an_in_memory_sqlite_store_keeps_its_data() {
    let (store, writer) = Store::open("sqlite::memory:", fast_config()).await.unwrap();
    let writer = tokio::spawn(writer.run());
    let register = StoreRequest::Register {
        username: "Alice".into(),
        password: Password::new("pw"),
    };
    assert_eq!(store.execute(register).await, account("Alice", Role::User));
    let logins: Vec<_> = (0..5)
        .map(|_| {
            store.execute(StoreRequest::Login {
                username: "alice".into(),
                password: Password::new("pw"),
            })
        })
        .collect();
    for reply in futures::future::join_all(logins).await {
        assert_eq!(reply, account("Alice", Role::User));
    }
    // The append writer must not keep the one connection (it holds the database): reads
    // after appends still get it.
    for (sequence, text) in [(1, "one"), (2, "two")] {
        let append = StoreRequest::AppendChannelMessage(wur2_engine::ChannelMessage {
            id: wur2_engine::MessageId {
                origin: 7,
                sequence,
            },
            channel: "Global".into(),
            sender: "alice".into(),
            text: text.into(),
        });
        assert_eq!(store.execute(append).await, StoreReply::Done);
        let history = StoreRequest::FetchHistory {
            channel: "Global".into(),
            limit: 10,
            before: None,
        };
        let StoreReply::History(messages) = store.execute(history).await else {
            panic!("history after an append")
        };
        assert_eq!(messages.last().map(|m| m.text.as_str()), Some(text));
    }
    store.close().await;
    writer.await.unwrap();
}

/// The append writer keeps one connection from batch to batch; when the database closes it
/// (here: PostgreSQL terminates every session of the database), the writer takes a new one
/// and writes what was queued meanwhile.
#[tokio::test]
async fn appends_continue_after_the_database_closes_the_writers_connection() {
    let Some(h) = Harness::open(Backend::Postgres).await else {
        return;
    };
    h.run(h.channel_message("Global", "alice", "before")).await;
    assert_eq!(h.history_texts("Global", 10).await, ["before"]);
    h.db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    h.run(h.channel_message("Global", "alice", "after")).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = h
            .run(StoreRequest::FetchHistory {
                channel: "Global".into(),
                limit: 10,
                before: None,
            })
            .await;
        if let StoreReply::History(messages) = &reply
            && messages
                .iter()
                .map(|m| m.text.as_str())
                .eq(["before", "after"])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not written: last answer {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.finish().await;
}

/// At light load a batch starts no sooner than `commit_interval` after the previous one,
/// so appends of the next moments share its commit; a history read waits for it.
#[tokio::test]
async fn a_batch_waits_out_the_commit_interval_after_the_previous_one() {
    let interval = Duration::from_millis(400);
    let config = StoreConfig {
        commit_interval: interval,
        ..fast_config()
    };
    let Some(h) = Harness::open_with(Backend::Sqlite, config).await else {
        return;
    };
    h.run(h.channel_message("Global", "alice", "first")).await;
    let first_written = Instant::now();
    assert_eq!(h.history_texts("Global", 10).await, ["first"]);
    h.run(h.channel_message("Global", "alice", "second")).await;
    h.run(h.channel_message("Global", "bob", "third")).await;
    assert_eq!(
        h.history_texts("Global", 10).await,
        ["first", "second", "third"]
    );
    assert!(
        first_written.elapsed() >= interval - Duration::from_millis(50),
        "the second batch started {:?} after the first",
        first_written.elapsed()
    );
    h.finish().await;
}

/// On an SQLite file no commit checkpoints the write-ahead log (that would hold up the
/// messages waiting on the commit): the append writer's checkpointer copies the log into
/// the database file beside the commits, within about a second.
#[tokio::test]
async fn the_append_writer_checkpoints_sqlites_write_ahead_log_by_itself() {
    let harness = Harness::open(Backend::Sqlite).await.unwrap();
    let path = harness.db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let file_size = || std::fs::metadata(&path).unwrap().len();
    let before = file_size();
    let text = "a message long enough to fill a few pages of the log ".repeat(4);
    for _ in 0..300 {
        let append = harness.channel_message("Global", "alice", &text);
        assert_eq!(harness.run(append).await, StoreReply::Done);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while file_size() <= before {
        assert!(
            Instant::now() < deadline,
            "the database file is still {before} bytes: the log was never checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(harness.history_texts("Global", 1).await, [text]);
    harness.finish().await;
}
