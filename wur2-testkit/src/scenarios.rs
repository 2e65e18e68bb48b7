//! End-to-end chat scenarios over real TCP, written against a server *address* only, so the
//! same suite runs against any driver (Tokio, async-std) and against the binary, and in
//! either client [`Mode`]: each scenario states what users should see as typed [`Event`]s,
//! which a text client reads from text lines and a JSON client from JSON objects.
//!
//! Every wait is bounded ([`STEP`]); `/ping <token>` → pong is the barrier that says
//! "everything sent before this was handled", so no scenario sleeps to wait for the server.
//! Names are unique per call, so scenarios may share one server and one database.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

pub use crate::client::{Client, Mode, PASSWORD, PRESENCE_DELAY, STEP};
pub use crate::event::{Event, Peer, Prompt};
pub use crate::target::Target;

/// A name no other scenario call uses: `prefix` plus a run-and-call tag (≤ 32 bytes).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = std::process::id() % 10_000;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1000)
        .unwrap_or(0);
    format!("{prefix}{run}x{nanos}x{n}")
}

/// Whether `event` is an error with `code` (text mode has no codes: any error).
pub fn is_error(event: &Event, code: &str) -> bool {
    match event {
        Event::Error { code: got, .. } => got.as_deref().is_none_or(|got| got == code),
        _ => false,
    }
}

/// Whether `events` hold a chat, private or replayed message whose text contains `needle`.
fn any_text(events: &[Event], needle: &str) -> bool {
    events.iter().any(|event| match event {
        Event::Message { text, .. } | Event::Dm { text, .. } | Event::History { text, .. } => {
            text.contains(needle)
        }
        _ => false,
    })
}

/// Three users log in three different ways, then use every command of the seed's table.
pub async fn every_command_with_three_clients(addr: Target, mode: Mode) {
    let (a, b, c) = (unique("al"), unique("bo"), unique("cy"));
    let mut alice = Client::register(addr, mode, &a).await;

    // Bob registers through the interactive flow a person on `nc` sees.
    let mut bob = Client::connect(addr, mode).await;
    bob.name = b.clone();
    bob.expect(Event::Prompt(Prompt::Account)).await;
    bob.send("n").await;
    bob.expect(Event::Prompt(Prompt::Username)).await;
    bob.send(&b).await;
    bob.expect(Event::Prompt(Prompt::Password)).await;
    bob.send(PASSWORD).await;
    bob.expect_welcome(&b, true).await;
    bob.expect(Event::InChannel("Global".into())).await;

    let mut carol = Client::register(addr, mode, &c).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.barrier().await;
    }

    // Plain text reaches everyone else in the channel, not the sender.
    alice.send("hello everyone").await;
    let own = alice.barrier().await;
    assert!(!any_text(&own, "hello everyone"), "the sender: {own:#?}");
    let heard = bob
        .expect(Event::message("Global", &a, "hello everyone"))
        .await;
    let also = carol
        .expect(Event::message("Global", &a, "hello everyone"))
        .await;
    assert_eq!(heard.id(), also.id(), "one stored message, one id");

    // `//text` sends text that starts with a slash.
    bob.send("//shrug").await;
    alice.expect(Event::message("Global", &b, "/shrug")).await;

    // In a cluster, bob's and carol's logins reach alice's node a moment later.
    alice
        .users_seen("all three listed", |users| {
            [&a, &b, &c].iter().all(|name| users.contains(name))
        })
        .await;
    let channels = alice.channels().await;
    assert!(
        channels.iter().any(|(name, _)| name == "Global"),
        "{channels:?}"
    );

    alice.send("/profile").await;
    alice
        .expect(Event::Profile {
            user: a.clone(),
            channel: "Global".into(),
            role: "user".into(),
        })
        .await;
    alice.send("/role").await;
    alice
        .expect(Event::Role {
            role: "user".into(),
            by: None,
        })
        .await;

    let help = alice.help().await;
    assert!(
        help.iter().any(|usage| usage.starts_with("/msg ")),
        "{help:?}"
    );
    assert!(
        !help.iter().any(|usage| usage.starts_with("/kick")),
        "a user's /help: {help:?}"
    );

    // Private message to an online user.
    alice.send(&format!("/msg {b} psst {b}")).await;
    bob.expect(Event::dm(&a, &format!("psst {b}"), false)).await;
    let carol_saw = carol.barrier().await;
    assert!(
        !any_text(&carol_saw, "psst"),
        "a third user: {carol_saw:#?}"
    );

    // A user may not kick or set roles.
    alice.send(&format!("/kick {b}")).await;
    alice.expect_error("forbidden").await;
    alice.send(&format!("/role {b} admin")).await;
    alice.expect_error("forbidden").await;
    alice.send("/nosuchcommand").await;
    alice.expect_error("unknown_command").await;

    // Channels: joining moves a user; messages stay inside a channel.
    let room = unique("room");
    let switched = Event::Switched {
        from: "Global".into(),
        to: room.clone(),
    };
    alice.send(&format!("/join {room}")).await;
    alice.expect(switched.clone()).await;
    carol.send(&format!("/join {room}")).await;
    carol.expect(switched).await;
    carol.barrier().await;
    alice
        .expect(Event::Join {
            user: c.clone(),
            channel: room.clone(),
        })
        .await;
    alice.barrier().await;
    carol.send("in the room").await;
    alice.expect(Event::message(&room, &c, "in the room")).await;
    let bob_saw = bob.barrier().await;
    assert!(
        !any_text(&bob_saw, "in the room"),
        "another channel: {bob_saw:#?}"
    );
    carol.send("/profile").await;
    carol
        .expect(Event::Profile {
            user: c.clone(),
            channel: room.clone(),
            role: "user".into(),
        })
        .await;
    let channels = alice.channels().await;
    assert!(channels.contains(&(room.clone(), 2)), "{channels:?}");

    // /close says goodbye and closes after it.
    bob.send("/close").await;
    let last = bob.expect_closed().await;
    assert!(last.contains(&Event::Goodbye), "bob: {last:#?}");
    alice
        .users_seen("bob gone", |users| !users.contains(&b))
        .await;
}

/// Every way to log in: interactive (y and n), `/register`, `/login`, and the refusals.
pub async fn every_login_path(addr: Target, mode: Mode) {
    let name = unique("lp");
    // Interactive registration, then interactive login.
    for (answer, new) in [("n", true), ("y", false)] {
        let mut client = Client::connect(addr, mode).await;
        client.name = name.clone();
        client.expect(Event::Prompt(Prompt::Account)).await;
        client.send(answer).await;
        client.expect(Event::Prompt(Prompt::Username)).await;
        client.send(&name).await;
        client.expect(Event::Prompt(Prompt::Password)).await;
        client.send(PASSWORD).await;
        client.expect_welcome(&name, new).await;
        if new {
            client.send("/close").await;
            client.expect_closed().await;
        }
    }

    // One-line login, and a second session of the same account.
    let mut third = Client::login(addr, mode, &name).await;
    let users = third.users().await;
    assert_eq!(
        users.iter().filter(|user| **user == name).count(),
        1,
        "each account once: {users:?}"
    );

    // A wrong password and an unknown user get the same answer.
    let mut wrong = Client::connect(addr, mode).await;
    wrong.send(&format!("/login {name} not-the-password")).await;
    let refused = wrong.expect_error("invalid_credentials").await;
    let mut unknown = Client::connect(addr, mode).await;
    unknown
        .send(&format!("/login {} {PASSWORD}", unique("nobody")))
        .await;
    let refused_unknown = unknown.expect_error("invalid_credentials").await;
    assert_eq!(refused, refused_unknown);

    // A taken name cannot be registered again, in any letter case.
    let mut taken = Client::connect(addr, mode).await;
    taken
        .send(&format!("/register {} {PASSWORD}", name.to_uppercase()))
        .await;
    taken.expect_error("username_taken").await;

    // Commands need a login.
    let mut anonymous = Client::connect(addr, mode).await;
    anonymous.send("/list").await;
    anonymous.expect_error("not_logged_in").await;
    // The barrier works before login too.
    anonymous.barrier().await;
}

/// A channel's recent history is replayed to whoever joins it.
pub async fn history_is_replayed_on_join(addr: Target, mode: Mode) {
    let room = unique("hist");
    let mut alice = Client::register(addr, mode, &unique("ha")).await;
    alice.send(&format!("/join {room}")).await;
    alice
        .expect_with("the switch", |event| {
            matches!(event, Event::Switched { to, .. } if *to == room).then_some(())
        })
        .await;
    for n in 1..=3 {
        alice.send(&format!("story part {n}")).await;
    }
    alice.barrier().await;

    let mut bob = Client::register(addr, mode, &unique("hb")).await;
    bob.send(&format!("/join {room}")).await;
    let a = alice.name.clone();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let replayed = bob
            .expect(Event::history(&room, &a, &format!("story part {n}")))
            .await;
        ids.extend(replayed.id().map(str::to_string));
    }
    ids.sort();
    ids.dedup();
    assert!(
        ids.is_empty() || ids.len() == 3,
        "each stored message has its own id: {ids:?}"
    );
}

/// A private message to a registered user who is offline arrives at their next login.
pub async fn offline_message_arrives_at_next_login(addr: Target, mode: Mode) {
    let b = unique("ob");
    let mut bob = Client::register(addr, mode, &b).await;
    bob.send("/close").await;
    bob.expect_closed().await;

    let mut alice = Client::register(addr, mode, &unique("oa")).await;
    // In a cluster, bob's departure reaches alice's node a moment later; a message sent
    // before that is on its way to bob's node (and waits for his next login from there).
    alice
        .users_seen("bob gone", |users| !users.contains(&b))
        .await;
    alice.send(&format!("/msg {b} see you later")).await;
    alice.expect(Event::DmStored { to: b.clone() }).await;
    // To someone who never existed: an error, nothing stored.
    alice
        .send(&format!("/msg {} hello?", unique("ghost")))
        .await;
    alice.expect_error("no_such_user").await;

    let mut bob = Client::login(addr, mode, &b).await;
    bob.expect(Event::dm(&alice.name, "see you later", true))
        .await;
}

/// `/history` pages back through a channel with the `before` id each full page names,
/// without gaps or repeats, and `/history @user` shows a private conversation both ways.
pub async fn history_pages_back_and_shows_private_conversations(addr: Target, mode: Mode) {
    let mut alice = Client::register(addr, mode, &unique("ha")).await;
    let mut bob = Client::register(addr, mode, &unique("hb")).await;
    let (a, b) = (alice.name.clone(), bob.name.clone());
    let room = unique("hr");
    for client in [&mut alice, &mut bob] {
        client.send(&format!("/join {room}")).await;
        client.barrier().await;
    }
    for i in 0..5 {
        alice.send(&format!("page {i}")).await;
    }
    alice.send(&format!("/msg {b} psst")).await;
    alice.barrier().await;
    bob.send(&format!("/msg {a} hush")).await;
    bob.barrier().await;

    // Pages of two, newest first: [3, 4], [1, 2], [0].
    bob.send("/history 2").await;
    let mut shown = Vec::new();
    loop {
        let page = bob.barrier().await;
        let texts: Vec<String> = page
            .iter()
            .filter_map(|event| match event {
                Event::History { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        shown.splice(0..0, texts);
        let more = page.iter().find_map(|event| match event {
            Event::HistoryMore {
                with: None,
                count: 2,
                before,
            } => Some(before.clone()),
            _ => None,
        });
        let Some(before) = more else { break };
        bob.send(&format!("/history 2 before {before}")).await;
    }
    let expected: Vec<String> = (0..5).map(|i| format!("page {i}")).collect();
    assert_eq!(shown, expected, "{b} paged back through {room}");

    alice.send(&format!("/history @{b} 10")).await;
    for (from, text) in [(&a, "psst"), (&b, "hush")] {
        alice
            .expect(Event::DmHistory {
                with: b.clone(),
                from: from.clone(),
                text: text.into(),
                id: None,
            })
            .await;
    }
}

/// A user changes their password (their other session is logged out, the new one works,
/// the old one not), then deletes their account (closed; the name is free again).
pub async fn a_user_changes_their_password_then_deletes_their_account(addr: Target, mode: Mode) {
    let name = unique("sv");
    let mut first = Client::register(addr, mode, &name).await;
    let mut second = Client::login(addr, mode, &name).await;
    let new_password = "another-good-password";
    first
        .send(&format!("/password {PASSWORD} {new_password}"))
        .await;
    first.expect(Event::PasswordChanged).await;
    expect_logged_out(&mut second).await;

    let mut stale = Client::connect(addr, mode).await;
    stale.send(&format!("/login {name} {PASSWORD}")).await;
    stale.expect_error("invalid_credentials").await;
    let mut again =
        logged_in_with(addr, mode, &name, &format!("/login {name} {new_password}")).await;
    again.send("/close").await;
    again.expect_closed().await;

    first.send("/delete-account wrong-password").await;
    first.expect_error("invalid_credentials").await;
    first.send(&format!("/delete-account {new_password}")).await;
    first.expect(Event::AccountDeleted(name.clone())).await;
    first.expect_closed().await;
    let reborn = Client::register(addr, mode, &name).await;
    assert_eq!(reborn.name, name, "the name may be registered again");
}

/// `moderator` bans or mutes (`kind`) `user` for `duration` and is told it took effect.
async fn sanction(moderator: &mut Client, kind: &str, user: &str, duration: &str, reason: &str) {
    moderator
        .send(&format!("/{kind} {user} {duration} {reason}"))
        .await;
    moderator
        .expect(Event::Sanctioned {
            kind: kind.into(),
            user: user.into(),
            reason: reason.into(),
        })
        .await;
}

/// A new client logged in as `name` with `line` (a `/login` or `/resume`).
async fn logged_in_with(addr: Target, mode: Mode, name: &str, line: &str) -> Client {
    let mut client = Client::connect(addr, mode).await;
    client.name = name.to_string();
    client.send(line).await;
    client.expect_welcome(name, false).await;
    client
}

/// Reads until `client` is told it was logged out, then until it is closed.
async fn expect_logged_out(client: &mut Client) {
    client
        .expect_with("logged out", |event| {
            matches!(event, Event::LoggedOut(_)).then_some(())
        })
        .await;
    client.expect_closed().await;
}

/// A resume token logs its account in without the password until `/logout-everywhere`
/// revokes it (which also logs the other sessions out).
pub async fn a_resume_token_logs_in_until_revoked(addr: Target, mode: Mode) {
    let name = unique("rt");
    let mut first = Client::register(addr, mode, &name).await;
    first.send("/token").await;
    let token = first
        .expect_with("a token", |event| match event {
            Event::Token(token) => Some(token.clone()),
            _ => None,
        })
        .await;
    let mut resumed = logged_in_with(addr, mode, &name, &format!("/resume {name} {token}")).await;

    first.send("/logout-everywhere").await;
    first.expect(Event::LoggedOutEverywhere).await;
    expect_logged_out(&mut resumed).await;
    let mut refused = Client::connect(addr, mode).await;
    refused.send(&format!("/resume {name} {token}")).await;
    refused.expect_error("invalid_credentials").await;
}

/// After the operator made `moderator` a mod (with `grant`), its `/kick` closes every
/// session of the target and tells the channel.
pub async fn kick_closes_every_session_of_the_target<F, Fut>(addr: Target, mode: Mode, grant: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let m = unique("mo");
    let t = unique("tg");
    let mut moderator = Client::register(addr, mode, &m).await;
    let mut first = Client::register(addr, mode, &t).await;
    let mut second = Client::login(addr, mode, &t).await;
    let mut witness = Client::register(addr, mode, &unique("wi")).await;

    grant(m.clone()).await;
    // The live session learns the new role within about a second; a new login reads
    // it at once.
    moderator.send("/close").await;
    moderator.expect_closed().await;
    let mut moderator = Client::login(addr, mode, &m).await;
    moderator.send("/role").await;
    moderator
        .expect(Event::Role {
            role: "mod".into(),
            by: None,
        })
        .await;
    first.barrier().await;
    second.barrier().await;
    witness.barrier().await;

    moderator.send(&format!("/kick {t} spamming")).await;
    moderator.expect(Event::KickDone { user: t.clone() }).await;
    let kicked = Event::Kicked {
        by: m.clone(),
        reason: "spamming".into(),
    };
    for session in [&mut first, &mut second] {
        let last = session.expect_closed().await;
        assert!(last.contains(&kicked), "a kicked session: {last:#?}");
    }
    witness
        .expect(Event::Kick {
            user: t.clone(),
            by: m.clone(),
            reason: "spamming".into(),
        })
        .await;
    witness
        .users_seen("the kicked user gone", |users| !users.contains(&t))
        .await;
}

/// Logs `name` in again after the operator made it a moderator (with `grant`): a new
/// login reads the role at once.
async fn as_moderator<F, Fut>(addr: Target, mode: Mode, name: &str, grant: F) -> Client
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    grant(name.to_owned()).await;
    let mut moderator = Client::login(addr, mode, name).await;
    moderator.send("/role").await;
    moderator
        .expect(Event::Role {
            role: "mod".into(),
            by: None,
        })
        .await;
    moderator
}

/// A login of `name` (with any password) that a ban refuses: one `banned` line, then the
/// close.
async fn expect_banned_login(addr: Target, mode: Mode, name: &str, password: &str, by: &str) {
    let mut client = Client::connect(addr, mode).await;
    client.send(&format!("/login {name} {password}")).await;
    let said = client.expect_closed().await;
    assert!(
        said.iter()
            .any(|event| matches!(event, Event::Banned { by: b, .. } if b == by)),
        "a banned login: {said:#?}"
    );
    assert!(
        !said
            .iter()
            .any(|event| is_error(event, "invalid_credentials")),
        "a banned login says nothing of the password: {said:#?}"
    );
}

/// A moderator (made one by the operator with `grant`) mutes a user: their message and
/// DM are refused and reach nobody; unmuted, they speak again. Then a ban closes both of
/// the user's sessions, refuses their login whatever the password, and `/unban` lets them
/// back in. `/bans` lists what is in force.
pub async fn bans_and_mutes_from_a_moderator<F, Fut>(addr: Target, mode: Mode, grant: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let m = unique("bm");
    let t = unique("bt");
    drop(Client::register(addr, mode, &m).await);
    let mut first = Client::register(addr, mode, &t).await;
    let mut second = Client::login(addr, mode, &t).await;
    let mut witness = Client::register(addr, mode, &unique("bw")).await;
    let mut moderator = as_moderator(addr, mode, &m, grant).await;

    sanction(&mut moderator, "mute", &t, "10m", "too loud").await;
    let muted = Event::Muted {
        by: m.clone(),
        reason: "too loud".into(),
    };
    first.expect(muted.clone()).await;
    second.expect(muted).await;
    first.send("can anyone hear me").await;
    first.expect_error("muted").await;
    first.send(&format!("/msg {} psst", witness.name)).await;
    first.expect_error("muted").await;
    let heard = witness.barrier().await;
    assert!(
        !heard
            .iter()
            .any(|event| matches!(event, Event::Message { .. } | Event::Dm { .. })),
        "a muted user's words reached someone: {heard:#?}"
    );
    assert_eq!(
        moderator.sanctions().await,
        [("mute".to_owned(), t.clone())]
    );

    moderator.send(&format!("/unmute {t}")).await;
    moderator
        .expect(Event::Lifted {
            kind: "mute".into(),
            user: t.clone(),
        })
        .await;
    second.expect(Event::Unmuted).await;
    second.send("back").await;
    witness.expect(Event::message("Global", &t, "back")).await;

    sanction(&mut moderator, "ban", &t, "1h", "spam").await;
    let banned = Event::Banned {
        by: m.clone(),
        reason: "spam".into(),
    };
    for session in [&mut first, &mut second] {
        let last = session.expect_closed().await;
        assert!(last.contains(&banned), "a banned session: {last:#?}");
    }
    expect_banned_login(addr, mode, &t, PASSWORD, &m).await;
    expect_banned_login(addr, mode, &t, "not the password", &m).await;
    moderator.send(&format!("/ban {m}")).await;
    moderator.expect_error("cannot_sanction_self").await;
    assert_eq!(moderator.sanctions().await, [("ban".to_owned(), t.clone())]);

    moderator.send(&format!("/unban {t}")).await;
    moderator
        .expect(Event::Lifted {
            kind: "ban".into(),
            user: t.clone(),
        })
        .await;
    drop(Client::login(addr, mode, &t).await);
}

/// Bans and mutes set before a restart hold after it. Call `before` on the first server
/// (with a `grant` of the moderator role), restart it on the same database, then call
/// `after` with the names: the banned user, the muted user, the moderator.
pub async fn bans_restart_before<F, Fut>(
    addr: Target,
    mode: Mode,
    grant: F,
) -> (String, String, String)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (m, banned, muted) = (unique("rm"), unique("rb"), unique("ru"));
    drop(Client::register(addr, mode, &m).await);
    drop(Client::register(addr, mode, &banned).await);
    drop(Client::register(addr, mode, &muted).await);
    let mut moderator = as_moderator(addr, mode, &m, grant).await;
    moderator.send(&format!("/ban {banned} 1d spam")).await;
    moderator.send(&format!("/mute {muted} noise")).await;
    moderator.barrier().await;
    (banned, muted, m)
}

/// The second half of the bans restart scenario; see [`bans_restart_before`].
pub async fn bans_restart_after(
    addr: Target,
    mode: Mode,
    (banned, muted, m): (String, String, String),
) {
    expect_banned_login(addr, mode, &banned, PASSWORD, &m).await;
    let mut quiet = Client::login(addr, mode, &muted).await;
    quiet
        .expect(Event::Muted {
            by: m.clone(),
            reason: "noise".into(),
        })
        .await;
    quiet.send("hello again").await;
    quiet.expect_error("muted").await;
}

/// Accounts, history and a channel's topic, privacy and invitations written before a
/// restart are there after it. Call `before` on the first server, restart it on the same
/// database, then call `after` with the names.
pub async fn restart_before(addr: Target, mode: Mode) -> (String, String, String) {
    let name = unique("rs");
    let room = unique("rr");
    let guest = unique("rg");
    Client::register(addr, mode, &guest).await;
    let mut alice = Client::register(addr, mode, &name).await;
    alice.send(&format!("/join {room}")).await;
    alice
        .expect(Event::Switched {
            from: "Global".into(),
            to: room.clone(),
        })
        .await;
    alice.send("remember me").await;
    for line in ["/topic kept over restarts", "/private on"] {
        alice.send(line).await;
    }
    alice.send(&format!("/invite {guest}")).await;
    alice
        .expect(Event::Invited {
            channel: room.clone(),
            user: guest.clone(),
        })
        .await;
    alice.barrier().await;
    (name, room, guest)
}

/// The second half of the restart scenario; see [`restart_before`].
pub async fn restart_after(
    addr: Target,
    mode: Mode,
    (name, room, guest): (String, String, String),
) {
    let mut alice = Client::login(addr, mode, &name).await;
    alice.send(&format!("/join {room}")).await;
    alice.expect(topic_of(&room, "kept over restarts")).await;
    alice
        .expect(Event::history(&room, &name, "remember me"))
        .await;
    let mut stranger = Client::register(addr, mode, &unique("rx")).await;
    stranger.send(&format!("/join {room}")).await;
    stranger.expect_error("not_invited").await;
    let mut guest = Client::login(addr, mode, &guest).await;
    guest.send(&format!("/join {room}")).await;
    guest.expect(topic_of(&room, "kept over restarts")).await;
}

/// The topic line a join shows.
fn topic_of(channel: &str, topic: &str) -> Event {
    Event::Topic {
        channel: channel.to_string(),
        topic: Some(topic.to_string()),
        by: None,
    }
}

/// A channel's first joiner owns it: sets its topic (seen at every join and in
/// `/channels`), makes it private (the uninvited are refused, and do not see it listed)
/// and invites; `/names` lists its members; nobody else may change it.
pub async fn channels_keep_topics_and_admit_only_the_invited_when_private(
    addr: Target,
    mode: Mode,
) {
    let mut alice = Client::register(addr, mode, &unique("ca")).await;
    let mut bob = Client::register(addr, mode, &unique("cb")).await;
    let mut carol = Client::register(addr, mode, &unique("cc")).await;
    let (a, b) = (alice.name.clone(), bob.name.clone());
    let room = unique("cr");
    alice.send(&format!("/join {room}")).await;
    alice.send("/topic Rust talk, mostly").await;
    alice
        .expect(Event::Topic {
            channel: room.clone(),
            topic: Some("Rust talk, mostly".into()),
            by: Some(a.clone()),
        })
        .await;
    alice.send("/private on").await;
    alice
        .expect(Event::Private {
            channel: room.clone(),
            private: true,
            by: a.clone(),
        })
        .await;

    let hidden =
        |listed: &[(String, u64, Option<String>)]| !listed.iter().any(|(name, _, _)| *name == room);
    // In a cluster, once the privacy reached bob's node.
    bob.channels_seen(format_args!("{room} hidden"), hidden)
        .await;
    bob.send(&format!("/join {room}")).await;
    bob.expect_error("not_invited").await;
    bob.send("/topic mine now").await;
    bob.expect_error("forbidden").await;

    alice.send(&format!("/invite {b}")).await;
    alice
        .expect(Event::Invited {
            channel: room.clone(),
            user: b.clone(),
        })
        .await;
    bob.expect(Event::Invitation {
        channel: room.clone(),
        by: a.clone(),
    })
    .await;
    bob.send(&format!("/join {room}")).await;
    bob.expect(Event::Switched {
        from: "Global".into(),
        to: room.clone(),
    })
    .await;
    bob.expect(topic_of(&room, "Rust talk, mostly")).await;
    bob.send("/names").await;
    let mut members = vec![a.clone(), b.clone()];
    members.sort();
    bob.expect(Event::Names {
        channel: room.clone(),
        users: members,
    })
    .await;
    let listed = bob.channel_list().await;
    assert!(
        listed.contains(&(room.clone(), 2, Some("Rust talk, mostly".into()))),
        "{b} sees {room} with its topic: {listed:?}"
    );
    bob.send("/topic").await;
    bob.expect(topic_of(&room, "Rust talk, mostly")).await;

    carol
        .channels_seen(format_args!("{room} hidden"), hidden)
        .await;
    carol.send(&format!("/join {room}")).await;
    carol.expect_error("not_invited").await;
    alice.send("/private off").await;
    bob.expect(Event::Private {
        channel: room.clone(),
        private: false,
        by: a.clone(),
    })
    .await;
    carol
        .channels_seen(format_args!("{room} public"), |listed| !hidden(listed))
        .await;
    carol.send(&format!("/join {room}")).await;
    carol
        .expect(Event::Switched {
            from: "Global".into(),
            to: room.clone(),
        })
        .await;
}

/// `/away <text>` shows in `/list` and answers the first private message of each sender
/// (the message is delivered all the same); `/away` alone ends it. In a cluster, alice and
/// bob are on different nodes.
pub async fn away_shows_in_list_and_answers_each_sender_once(addr: Target, mode: Mode) {
    let mut alice = Client::register(addr, mode, &unique("wa")).await;
    let mut bob = Client::register(addr, mode, &unique("wb")).await;
    let (a, b) = (alice.name.clone(), bob.name.clone());
    alice.send("/away out for lunch").await;
    alice
        .expect(Event::AwaySet(Some("out for lunch".into())))
        .await;
    let away = [(a.clone(), "out for lunch".to_string())];
    bob.away_seen("alice's away message", |listed| listed == away)
        .await;
    bob.send(&format!("/msg {a} are you there?")).await;
    bob.expect(Event::Away {
        user: a.clone(),
        text: "out for lunch".into(),
    })
    .await;
    alice
        .expect(Event::Dm {
            from: b.clone(),
            text: "are you there?".into(),
            offline: false,
            id: None,
        })
        .await;
    bob.send(&format!("/msg {a} hello?")).await;
    let after = bob.barrier().await;
    assert!(
        !after.iter().any(|e| matches!(e, Event::Away { .. })),
        "once per sender: {after:?}"
    );
    alice.send("/away").await;
    alice.expect(Event::AwaySet(None)).await;
    bob.away_seen("alice back", |listed| listed.is_empty())
        .await;
}

/// Overlong lines, invalid UTF-8 and terminal escapes get errors or are cleaned; the
/// connection and everyone else carry on.
pub async fn bad_input_is_answered_not_fatal(addr: Target, mode: Mode, max_line_bytes: usize) {
    let mut alice = Client::register(addr, mode, &unique("ba")).await;
    let mut bob = Client::register(addr, mode, &unique("bb")).await;
    bob.barrier().await;
    let a = alice.name.clone();

    // Over WebSocket, a frame over the line limit and a text frame that is not UTF-8
    // close the connection with a close code instead (wur2-tokio's tests/web_socket.rs).
    if !addr.web {
        let long = "x".repeat(max_line_bytes * 3);
        alice.send(&long).await;
        alice.expect_error("line_too_long").await;
        alice.barrier().await;

        alice.send_raw(b"bad \xff\xfe bytes\n").await;
        alice.expect_error("invalid_utf8").await;
        alice.barrier().await;
    }

    alice
        .send("look \x1b[2J\x1b[31mred\x1b[0m \x07bell done")
        .await;
    let text = bob
        .expect_with("the cleaned message", |event| match event {
            Event::Message { from, text, .. } if *from == a => Some(text.clone()),
            _ => None,
        })
        .await;
    assert!(
        !text.contains('\x1b') && !text.contains('\x07'),
        "escapes relayed: {text:?}"
    );
    assert!(
        text.contains("red") && text.ends_with("bell done"),
        "{text:?}"
    );

    // Nobody was hurt: both still chat.
    alice.send("still here").await;
    bob.expect(Event::message("Global", &a, "still here")).await;
    bob.barrier().await;
}

/// With flood control off, a bot writes 300 lines that each wait for the store (`/join`
/// with its history replay, `/history`, `/msg` to an offline user) and a `/ping`, in one
/// write: it gets every answer, in order, then the pong, and stays connected; the offline
/// user gets every message at login, in order.
pub async fn pipelined_lines_are_all_answered_in_order(addr: Target, mode: Mode) {
    let offline = unique("po");
    let mut away = Client::register(addr, mode, &offline).await;
    away.send("/close").await;
    away.expect_closed().await;
    // One message in each room, for the replays (and `/history 2`: a page not full, so
    // no "older messages" line follows it).
    let rooms = [unique("ra"), unique("rb"), unique("rc")];
    let mut author = Client::register(addr, mode, &unique("pa")).await;
    for room in &rooms {
        author.send(&format!("/join {room}")).await;
        author.send(&format!("note in {room}")).await;
    }
    author.barrier().await;
    let a = author.name.clone();

    let mut bot = Client::register(addr, mode, &unique("pb")).await;
    // In a cluster, the offline user's departure reaches the bot's node a moment later.
    bot.users_seen("the offline user gone", |users| !users.contains(&offline))
        .await;
    let mut script = String::new();
    let mut expected = Vec::new();
    let mut previous = "Global".to_string();
    for i in 0..100 {
        let room = &rooms[i % rooms.len()];
        script.push_str(&format!(
            "/join {room}\n/history 2\n/msg {offline} pipelined {i}\n"
        ));
        let note = Event::history(room, &a, &format!("note in {room}"));
        expected.extend([
            Event::Switched {
                from: previous.clone(),
                to: room.clone(),
            },
            note.clone(),
            note,
            Event::DmStored {
                to: offline.clone(),
            },
        ]);
        previous = room.clone();
    }
    script.push_str("/ping pipelined\n");
    expected.push(Event::Pong("pipelined".into()));
    bot.send_raw(script.as_bytes()).await;
    for (n, want) in expected.iter().enumerate() {
        let got = bot.event().await;
        assert_eq!(
            got.portable(),
            want.portable(),
            "answer {n} of the pipeline"
        );
    }
    bot.barrier().await;

    let mut away = Client::login(addr, mode, &offline).await;
    for i in 0..100 {
        away.expect(Event::dm(&bot.name, &format!("pipelined {i}"), true))
            .await;
    }
}

/// With flood control on, a client sending 5 000 lines at once is closed with a reason;
/// the others keep chatting.
pub async fn flooder_is_closed_others_unaffected(addr: Target, mode: Mode) {
    let mut flooder = Client::register(addr, mode, &unique("fl")).await;
    let mut alice = Client::register(addr, mode, &unique("fa")).await;
    let mut bob = Client::register(addr, mode, &unique("fb")).await;
    bob.barrier().await;

    let mut burst = Vec::new();
    for n in 0..5_000 {
        burst.extend_from_slice(format!("flood line {n}\n").as_bytes());
    }
    // The server may close while we are still writing; that is the point.
    flooder.send_raw_until_closed(&burst).await;
    let last = flooder.expect_closed().await;
    assert!(
        last.iter().any(|event| is_error(event, "flooding")),
        "the flooder should be told why: {:#?}",
        &last[last.len().saturating_sub(5)..]
    );

    alice.send("calm message").await;
    bob.expect(Event::message("Global", &alice.name, "calm message"))
        .await;
    alice.barrier().await;
    bob.barrier().await;
}

/// A client that never reads while others chat: the others get every message, and the
/// silent one is dropped once too much is queued for it.
pub async fn slow_reader_is_dropped_others_unaffected(addr: Target, mode: Mode, messages: usize) {
    let mut slow = Client::register(addr, mode, &unique("sl")).await;
    let mut sender = Client::register(addr, mode, &unique("ss")).await;
    let mut reader = Client::register(addr, mode, &unique("sr")).await;
    slow.barrier().await;
    reader.barrier().await;
    let s = sender.name.clone();

    // Sent in rounds the reader keeps up with, so only the silent client falls behind.
    let payload = "p".repeat(1000);
    let mut n = 0;
    while n < messages {
        let round = (n..messages.min(n + 100)).collect::<Vec<_>>();
        let mut batch = Vec::new();
        for i in &round {
            batch.extend_from_slice(format!("{i} {payload}\n").as_bytes());
        }
        sender.send_raw(&batch).await;
        for i in &round {
            reader
                .expect(Event::message("Global", &s, &format!("{i} {payload}")))
                .await;
        }
        n += round.len();
    }
    sender.barrier().await;
    reader.barrier().await;

    // The silent client now finds its connection closed (after what was buffered).
    let bytes = slow.count_bytes_until_closed().await;
    assert!(
        bytes < messages * 1010,
        "the slow reader got everything ({bytes} bytes)"
    );
}

/// Hundreds of connections opened and dropped at once; afterwards the server still serves.
pub async fn many_connections_dropped_at_once(addr: Target, mode: Mode, count: usize) {
    let mut opened = Vec::with_capacity(count);
    for _ in 0..count {
        opened.push(addr.connect().await);
    }
    // Half of them say something first, so the server has state to clean up.
    for (_, write) in opened.iter_mut().step_by(2) {
        let _ = write.write_all(b"/mode json\n/ping x\n").await;
        let _ = write.flush().await;
    }
    drop(opened);

    let mut alice = Client::register(addr, mode, &unique("ma")).await;
    let mut bob = Client::register(addr, mode, &unique("mb")).await;
    bob.barrier().await;
    alice.send("after the storm").await;
    bob.expect(Event::message("Global", &alice.name, "after the storm"))
        .await;
}

/// The operator's role change (made by `grant` through another store on the same
/// database, as `wur2 role` does) reaches a session already logged in within two seconds:
/// it is told, and its new powers work without logging in again.
pub async fn an_operator_role_change_reaches_a_live_session<F, Fut>(
    addr: Target,
    mode: Mode,
    grant: F,
) where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let m = unique("lv");
    let t = unique("tg");
    let mut moderator = Client::register(addr, mode, &m).await;
    let mut target = Client::register(addr, mode, &t).await;
    moderator.barrier().await;

    grant(m.clone()).await;
    let told = Event::Role {
        role: "mod".into(),
        by: Some("the operator".into()),
    };
    let within = std::time::Duration::from_secs(2);
    if tokio::time::timeout(within, moderator.expect(told))
        .await
        .is_err()
    {
        panic!("{m}: the operator's role change did not arrive within {within:?}");
    }
    moderator.send(&format!("/kick {t} bye")).await;
    moderator.expect(Event::KickDone { user: t.clone() }).await;
    target.expect_closed().await;
}

/// The only admin (made by `grant`, as the operator's `wur2 role` does, on a database with
/// no other admin) cannot take the admin role from themselves; once they have made
/// someone else admin, they can.
pub async fn the_last_admin_stays_admin<F, Fut>(addr: Target, mode: Mode, grant: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let a = unique("ad");
    let b = unique("nx");
    let admin = Client::register(addr, mode, &a).await;
    let mut other = Client::register(addr, mode, &b).await;
    grant(a.clone()).await;
    // The live session learns the new role within about a second; a new login reads
    // it at once.
    drop(admin);
    let mut admin = Client::login(addr, mode, &a).await;

    admin.send(&format!("/role {a} user")).await;
    admin.expect_error("last_admin").await;
    admin.send("/role").await;
    let admin_role = Event::Role {
        role: "admin".into(),
        by: None,
    };
    admin.expect(admin_role).await;

    admin.send(&format!("/role {b} admin")).await;
    admin
        .expect(Event::RoleSet {
            user: b.clone(),
            role: "admin".into(),
        })
        .await;
    other
        .expect(Event::Role {
            role: "admin".into(),
            by: Some(a.clone()),
        })
        .await;
    admin.send(&format!("/role {a} user")).await;
    admin
        .expect(Event::Role {
            role: "user".into(),
            by: Some(a.clone()),
        })
        .await;
    // Now the other is the last admin.
    other.send(&format!("/role {b} mod")).await;
    other.expect_error("last_admin").await;
}

/// A server-side file from the operator's files directory reaches the recipient byte-exact
/// (`path` holds `content`, text); paths that leave the directory are refused, and so is
/// `fifo` (a FIFO in the directory), at once and as often as it is asked for.
pub async fn server_file_arrives_byte_exact(
    addr: Target,
    mode: Mode,
    path: &str,
    content: &[u8],
    escaping_symlink: &str,
    fifo: &str,
) {
    let mut alice = Client::register(addr, mode, &unique("fs")).await;
    let mut bob = Client::register(addr, mode, &unique("fr")).await;
    bob.barrier().await;
    let (a, b) = (alice.name.clone(), bob.name.clone());

    alice.send(&format!("/send {b} {path}")).await;
    let id = alice
        .expect_with("the sending notice", |event| match event {
            Event::FileSending { id, to, name, size }
                if *to == b && name == path && *size == content.len() as u64 =>
            {
                Some(*id)
            }
            _ => None,
        })
        .await;
    let received = receive_file(&mut bob, recipients_id(addr, id), &a, path).await;
    assert_eq!(received.len(), content.len());
    assert!(received == content, "the file arrived changed");
    alice
        .expect(Event::FileDone {
            id,
            name: path.to_string(),
            peer: Peer::To(b.clone()),
        })
        .await;

    for (refused, code) in [
        ("../etc/passwd", "invalid_path"),
        ("/etc/passwd", "invalid_path"),
        (escaping_symlink, "file_not_allowed"),
        ("no-such-file", "no_such_file"),
    ] {
        alice.send(&format!("/send {b} {refused}")).await;
        alice.expect_error(code).await;
    }
    // A FIFO would block whoever opens it until a writer comes: refused at once, every
    // time, and the server's file work goes on.
    for _ in 0..20 {
        alice.send(&format!("/send {b} {fifo}")).await;
        alice.expect_error("file_not_allowed").await;
    }
    alice.send(&format!("/send {b} {path}")).await;
    let again = alice
        .expect_with("the sending notice", |event| match event {
            Event::FileSending { id, .. } => Some(*id),
            _ => None,
        })
        .await;
    let received = receive_file(&mut bob, recipients_id(addr, again), &a, path).await;
    assert!(
        received == content,
        "the file arrived changed after the FIFOs"
    );
    alice.barrier().await;
    let quiet = bob.barrier().await;
    assert!(
        !quiet
            .iter()
            .any(|event| matches!(event, Event::FileOffer { .. })),
        "the recipient of refused files: {quiet:#?}"
    );
}

/// A user uploads a file with bytes of every value to another; it arrives byte-exact
/// (text chunks and base64 chunks alike in text mode; base64 `file_chunk` objects in JSON
/// mode). An upload that is refused has its bytes read and dropped, never run as commands.
pub async fn upload_arrives_byte_exact(addr: Target, mode: Mode) {
    let mut alice = Client::register(addr, mode, &unique("ua")).await;
    let mut bob = Client::register(addr, mode, &unique("ub")).await;
    bob.barrier().await;
    let (a, b) = (alice.name.clone(), bob.name.clone());

    let mut content = Vec::new();
    for n in 0..3_000 {
        content.extend_from_slice(format!("text line {n}\n").as_bytes());
    }
    for n in 0..200_000u32 {
        content.push((n % 251) as u8);
    }
    let mut upload = format!("/send {b} blob.bin {}\n", content.len()).into_bytes();
    upload.extend_from_slice(&content);
    // The recipient reads while the sender writes: the server holds only so much of a
    // transfer and stops reading the sender until the recipient catches up.
    let receiving = receive_file(&mut bob, None, &a, "blob.bin");
    let ((), received) = tokio::join!(alice.send_raw(&upload), receiving);
    assert_eq!(received.len(), content.len());
    assert!(received == content, "the upload arrived changed");
    alice
        .expect_with("the sender's done line", |event| {
            matches!(
                event,
                Event::FileDone { name, peer: Peer::To(to), .. } if name == "blob.bin" && *to == b
            )
            .then_some(())
        })
        .await;

    let discarded = b"/close\n/close\n";
    let mut refused = format!("/send {} x.bin {}\n", unique("gone"), discarded.len()).into_bytes();
    refused.extend_from_slice(discarded);
    alice.send_raw(&refused).await;
    let said = alice.expect_error("not_online").await;
    assert!(said.contains("discarded"), "{said}");
    // Still connected: the `/close` lines were file bytes, not commands.
    alice.barrier().await;
}

/// An upload that stops sending is cancelled on both sides once the server's transfer idle
/// timeout (short, in the server's config) passes, and the recipient is never told the
/// partial file is complete. The sender's slot is free again: once it has sent the bytes it
/// announced (read and dropped), its next upload on the same connection arrives.
pub async fn stalled_upload_is_cancelled(addr: Target, mode: Mode) {
    let mut alice = Client::register(addr, mode, &unique("sa")).await;
    let mut bob = Client::register(addr, mode, &unique("sb")).await;
    bob.barrier().await;
    let (a, b) = (alice.name.clone(), bob.name.clone());

    let mut stalled = format!("/send {b} stalled.bin 100\n").into_bytes();
    stalled.extend_from_slice(&[b'x'; 10]);
    alice.send_raw(&stalled).await;
    let id = alice
        .expect_with("the sending notice", |event| match event {
            Event::FileSending { id, name, .. } if name == "stalled.bin" => Some(*id),
            _ => None,
        })
        .await;
    let reason = alice
        .expect_with("the cancellation", |event| match event {
            Event::FileCancelled { id: of, reason } if *of == id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(reason.starts_with("idle for "), "{reason}");
    let offered = bob
        .expect_with("the offer", |event| match event {
            Event::FileOffer { id, from, name, .. } if *from == a && name == "stalled.bin" => {
                Some(*id)
            }
            _ => None,
        })
        .await;
    if let Some(same) = recipients_id(addr, id) {
        assert_eq!(
            offered, same,
            "one server: both sides name the transfer alike"
        );
    }
    let told = bob
        .expect_with("the cancellation", |event| match event {
            Event::FileDone { id: of, .. } if *of == offered => Some(None),
            Event::FileCancelled { id: of, reason } if *of == offered => Some(Some(reason.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        told,
        Some(reason),
        "the recipient hears why, not that it is done"
    );

    let mut rest = vec![b'x'; 90];
    rest.extend_from_slice(format!("/send {b} next.txt 6\nhello\n").as_bytes());
    alice.send_raw(&rest).await;
    let received = receive_file(&mut bob, None, &a, "next.txt").await;
    assert_eq!(received, b"hello\n");
}

/// An upload announcing more bytes than the file size limit (here 2^64 − 1) is answered
/// with `file_too_large` and the connection closes at once, instead of reading and dropping
/// bytes that would never end; the lines sent before it were answered.
pub async fn oversized_upload_closes_the_connection(addr: Target, mode: Mode) {
    let mut alice = Client::register(addr, mode, &unique("oa")).await;
    let mut bob = Client::register(addr, mode, &unique("ob")).await;
    bob.barrier().await;
    let (a, b) = (alice.name.clone(), bob.name.clone());
    alice
        .send_raw(format!("/msg {b} before\n/send {b} huge.bin {}\n", u64::MAX).as_bytes())
        .await;
    let said = alice.expect_closed().await;
    assert!(
        said.iter().any(|event| is_error(event, "file_too_large")),
        "{said:#?}"
    );
    bob.expect_with("the message sent before the upload", |event| match event {
        Event::Dm { from, text, .. } if *from == a && text == "before" => Some(()),
        _ => None,
    })
    .await;
}

/// The id the recipient of the sender's transfer `id` sees, when it is known: on one
/// server the same; in a cluster the recipient's node numbers the transfers it shows
/// itself (docs/PROTOCOL.md, "Between nodes"), so it is known only from the offer.
fn recipients_id(addr: Target, id: u64) -> Option<u64> {
    (!addr.is_cluster()).then_some(id)
}

/// Reads a transfer from `from` of the file `name` (transfer `id` when known): its offer,
/// every chunk in order (other lines may arrive between them) and its done line; returns
/// the file.
pub async fn receive_file(
    client: &mut Client,
    known: Option<u64>,
    from: &str,
    name: &str,
) -> Vec<u8> {
    let (id, size) = client
        .expect_with(format_args!("the offer of {name}"), |event| match event {
            Event::FileOffer {
                id,
                from: sender,
                name: offered,
                size,
            } if sender == from && offered == name && known.is_none_or(|k| k == *id) => {
                Some((*id, *size))
            }
            _ => None,
        })
        .await;
    let mut received = Vec::new();
    loop {
        match client.event().await {
            Event::FileChunk { id: of, data } if of == id => received.extend_from_slice(&data),
            Event::FileDone {
                id: of,
                name: done,
                peer,
            } if of == id => {
                assert_eq!(done, name);
                assert_eq!(
                    peer,
                    Peer::From {
                        user: from.to_string(),
                        size
                    }
                );
                assert_eq!(received.len() as u64, size, "the offered size arrived");
                return received;
            }
            Event::FileCancelled { id: of, reason } if of == id => {
                panic!("transfer {id} cancelled: {reason}")
            }
            _ => {}
        }
    }
}

/// A client at another loopback address, `127.0.0.<host>`.
fn from_host(host: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, host])
}

/// Wrong passwords from an attacker's address lock that address out of the account; its
/// owner (at the address it registered from) logs in at once, and a third address with the
/// right password gets in too, after the account-wide slowdown.
pub async fn failed_logins_lock_the_attacker_not_the_owner(addr: Target, mode: Mode) {
    let name = unique("owner");
    Client::register(addr, mode, &name).await;
    let attacker = from_host(66);
    for _ in 0..5 {
        let mut guess = Client::connect_from(addr, mode, attacker).await;
        guess.send(&format!("/login {name} not-the-password")).await;
        guess.expect_error("invalid_credentials").await;
    }
    let mut locked = Client::connect_from(addr, mode, attacker).await;
    locked.send(&format!("/login {name} {PASSWORD}")).await;
    let said = locked.expect_error("locked_out").await;
    assert!(said.contains("too many failed logins"), "{said}");

    let started = std::time::Instant::now();
    let mut owner = Client::login(addr, mode, &name).await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "the owner's address is not slowed: {:?}",
        started.elapsed()
    );
    owner.barrier().await;

    let started = std::time::Instant::now();
    let mut elsewhere = Client::connect_from(addr, mode, from_host(67)).await;
    elsewhere.name = name.clone();
    elsewhere.send(&format!("/login {name} {PASSWORD}")).await;
    elsewhere.expect_welcome(&name, false).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "a new address waits about 1 s after 5 failures: {:?}",
        started.elapsed()
    );
}

/// Past the registrations allowed per address, a registration is refused with a clear
/// error; another address can still register, and the limited one can still log in.
pub async fn registrations_over_the_limit_are_refused(addr: Target, mode: Mode, per_address: u32) {
    let busy = from_host(77);
    let mut names = Vec::new();
    for _ in 0..per_address {
        let name = unique("reg");
        let mut client = Client::connect_from(addr, mode, busy).await;
        client.name = name.clone();
        client.send(&format!("/register {name} {PASSWORD}")).await;
        client.expect_welcome(&name, true).await;
        names.push(name);
    }
    let mut refused = Client::connect_from(addr, mode, busy).await;
    refused
        .send(&format!("/register {} {PASSWORD}", unique("reg")))
        .await;
    let said = refused.expect_error("too_many_registrations").await;
    assert!(
        said.starts_with("too many new accounts from your address; try again in "),
        "{said}"
    );
    // The same connection may still log in to an account it has.
    refused.name = names[0].clone();
    refused
        .send(&format!("/login {} {PASSWORD}", names[0]))
        .await;
    refused.expect_welcome(&names[0], false).await;

    let other = unique("reg");
    let mut elsewhere = Client::connect_from(addr, mode, from_host(78)).await;
    elsewhere.name = other.clone();
    elsewhere
        .send(&format!("/register {other} {PASSWORD}"))
        .await;
    elsewhere.expect_welcome(&other, true).await;
}
