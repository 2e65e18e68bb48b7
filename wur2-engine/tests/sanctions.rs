//! Bans and mutes, driven with bytes, store answers and time alone: who may sanction whom,
//! what a banned login and a muted message get, and expiry by the caller's clocks (the
//! store's wall clock for bans, the engine's `now` for a mute it knows).

mod support;

use std::time::Duration;

use support::{PASSWORD, World};
use wur2_engine::{AccountChange, CloseReason, Role, SanctionKind, StoreReply, StoreRequest};

const MINUTE: Duration = Duration::from_secs(60);
/// 2026-12-07 10:00 UTC, in milliseconds since the Unix epoch.
const DEC_7_10AM: i64 = 1_796_637_600_000;

/// A world with a store clock at [`DEC_7_10AM`] that does not tick, moderator `mo`, and
/// users `bob` and `nia`, all logged in and their welcome lines read.
fn world() -> (World, [wur2_engine::ConnectionId; 3]) {
    let mut w = World::default_world();
    w.store.set_clock(DEC_7_10AM, 0);
    w.store.add_account("mo", PASSWORD, Role::Mod);
    let mo = w.login("mo");
    let bob = w.user("bob");
    let nia = w.user("nia");
    for c in [mo, bob, nia] {
        w.lines(c);
    }
    (w, [mo, bob, nia])
}

/// Moves both clocks on: the engine's `now` and the store's wall clock.
fn advance(w: &mut World, by: Duration, store_ms: &mut i64) {
    *store_ms += i64::try_from(by.as_millis()).expect("a test duration");
    w.store.set_clock(*store_ms, 0);
    w.advance(by);
}

fn login_lines(
    w: &mut World,
    user: &str,
    password: &str,
) -> (wur2_engine::ConnectionId, Vec<String>) {
    let c = w.connect();
    w.lines(c);
    w.send(c, &format!("/login {user} {password}\n"));
    let lines = w.lines(c);
    (c, lines)
}

#[test]
fn a_ban_closes_every_live_session_with_the_reason_and_expiry() {
    let (mut w, [mo, bob, nia]) = world();
    let bob2 = w.login("bob");
    w.lines(bob);
    w.lines(mo);
    w.lines(nia);
    w.send(mo, "/ban bob 2h flooding the channel\n");
    assert_eq!(
        w.lines(mo)[0],
        "bob is banned until 2026-12-07 12:00 UTC: flooding the channel"
    );
    for c in [bob, bob2] {
        assert_eq!(
            w.lines(c),
            vec!["You are banned by mo until 2026-12-07 12:00 UTC: flooding the channel"]
        );
        assert_eq!(w.closed[&c], (CloseReason::Banned, true));
    }
    assert_eq!(w.lines(nia), vec!["* bob left Global"]);
    assert!(w.store.sanction("BOB", SanctionKind::Ban).is_some());
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_banned_login_gets_the_same_line_whatever_the_password() {
    let (mut w, [mo, ..]) = world();
    w.send(mo, "/ban bob\n");
    let ban_line = "You are banned by mo until lifted: no reason given";
    for password in [PASSWORD, "wrong password", "x"] {
        let (c, lines) = login_lines(&mut w, "bob", password);
        assert_eq!(lines, vec![ban_line], "password {password:?}");
        assert_eq!(w.closed[&c], (CloseReason::Banned, true));
    }
    // The interactive flow too, and in any letter case.
    let c = w.connect();
    w.lines(c);
    w.send(c, "y\nBOB\nnot it\n");
    assert_eq!(
        w.lines(c),
        vec!["Enter username:", "Enter password:", ban_line]
    );
    assert!(w.is_closed(c));
}

#[test]
fn a_banned_login_in_json_mode_is_one_banned_object() {
    let (mut w, [mo, ..]) = world();
    w.send(mo, "/ban bob 10m spam\n");
    let c = w.connect();
    w.send(c, "/mode json\n/login bob whatever\n");
    let lines = w.lines(c);
    let last = lines.last().unwrap();
    assert!(last.contains(r#""type":"banned""#), "{lines:?}");
    assert!(last.contains(r#""until":1796638200000"#), "{last}");
    assert!(last.contains(r#""reason":"spam""#), "{last}");
    assert!(w.is_closed(c));
}

#[test]
fn a_ban_expires_by_the_stores_clock() {
    let (mut w, [mo, ..]) = world();
    let mut store_ms = DEC_7_10AM;
    w.send(mo, "/ban bob 10m\n");
    advance(&mut w, 9 * MINUTE, &mut store_ms);
    let (_, lines) = login_lines(&mut w, "bob", PASSWORD);
    assert!(lines[0].starts_with("You are banned"), "{lines:?}");
    advance(&mut w, 2 * MINUTE, &mut store_ms);
    let (_, lines) = login_lines(&mut w, "bob", PASSWORD);
    assert_eq!(lines[0], "Welcome back bob!");
    w.lines(mo);
    w.send(mo, "/bans\n");
    assert_eq!(w.lines(mo), vec!["No bans or mutes."]);
}

#[test]
fn unban_lets_the_user_back_in_and_lifting_nothing_says_so() {
    let (mut w, [mo, ..]) = world();
    w.send(mo, "/ban bob\n");
    w.lines(mo);
    w.send(mo, "/unban Bob\n");
    assert_eq!(w.lines(mo), vec!["bob is no longer banned"]);
    let (_, lines) = login_lines(&mut w, "bob", PASSWORD);
    assert_eq!(lines[0], "Welcome back bob!");
    w.lines(mo);
    w.send(mo, "/unban bob\n");
    assert_eq!(w.lines(mo), vec!["Error: bob is not banned"]);
    w.send(mo, "/unmute nia\n");
    assert_eq!(w.lines(mo), vec!["Error: nia is not muted"]);
}

#[test]
fn users_cannot_ban_mute_or_list() {
    let (mut w, [_, bob, nia]) = world();
    for line in [
        "/ban nia\n",
        "/mute nia 5m\n",
        "/unban nia\n",
        "/unmute nia\n",
    ] {
        w.send(bob, line);
        assert_eq!(
            w.lines(bob),
            vec!["Error: only moderators and admins can ban or mute"]
        );
    }
    w.send(bob, "/bans\n");
    assert_eq!(
        w.lines(bob),
        vec!["Error: only moderators and admins can see bans and mutes"]
    );
    assert!(!w.is_closed(nia));
    assert!(w.store.sanction("nia", SanctionKind::Mute).is_none());
}

#[test]
fn mods_sanction_users_only_and_admins_users_and_mods() {
    let (mut w, [mo, bob, _]) = world();
    w.store.add_account("mo2", PASSWORD, Role::Mod);
    w.store.add_account("boss", PASSWORD, Role::Admin);
    w.store.add_account("root", PASSWORD, Role::Admin);
    let boss = w.login("boss");
    w.lines(boss);
    w.lines(mo);
    let outranked = "Error: moderators can ban and mute users only, admins users and moderators";
    for line in ["/ban mo2\n", "/mute boss\n", "/unban mo2\n"] {
        w.send(mo, line);
        assert_eq!(w.lines(mo), vec![outranked], "{line}");
    }
    w.send(boss, "/ban root\n");
    assert_eq!(w.lines(boss), vec![outranked]);
    w.send(boss, "/ban mo 1d\n");
    assert_eq!(
        w.lines(boss)[0],
        "mo is banned until 2026-12-08 10:00 UTC: no reason given"
    );
    assert_eq!(w.closed[&mo], (CloseReason::Banned, true));
    w.send(boss, "/ban boss\n");
    assert_eq!(
        w.lines(boss),
        vec!["Error: you cannot ban or mute yourself"]
    );
    w.send(boss, "/mute ghost\n");
    assert_eq!(w.lines(boss), vec!["Error: no such user: ghost"]);
    w.send(boss, "/mute no/such\n");
    assert_eq!(w.lines(boss), vec!["Error: no such user: no/such"]);
    w.send(boss, "/ban bob 0m\n");
    assert!(w.lines(boss)[0].starts_with("Error: usage: /ban <user>"));
    assert!(!w.is_closed(bob));
}

#[test]
fn a_muted_users_messages_dms_and_files_are_refused_and_nothing_is_stored_or_delivered() {
    let (mut w, [mo, bob, nia]) = world();
    w.store.add_account("away", PASSWORD, Role::User);
    w.send(mo, "/mute bob 30m shouting\n");
    assert_eq!(
        w.lines(mo),
        vec!["bob is muted until 2026-12-07 10:30 UTC: shouting"]
    );
    assert_eq!(
        w.lines(bob),
        vec!["You are muted by mo until 2026-12-07 10:30 UTC: shouting"]
    );
    let requests_before = w.store_log.len();
    let refusal = "Error: you are muted until 2026-12-07 10:30 UTC (shouting); nothing was sent";
    for line in [
        "hello all\n",
        "/msg nia psst\n",
        "/msg away later\n",
        "/send nia a.txt 0\n",
    ] {
        w.send(bob, line);
        assert_eq!(w.lines(bob), vec![refusal], "{line}");
    }
    assert_eq!(w.store_log.len(), requests_before, "no store round trip");
    assert!(w.lines(nia).is_empty());
    assert!(w.lines(mo).is_empty());
    assert!(w.store.history("Global").is_empty());
    assert!(w.store.private_messages("nia").is_empty());
    assert!(w.store.private_messages("away").is_empty());
    // Reading still works.
    w.send(bob, "/list\n");
    assert_eq!(w.lines(bob), vec!["Connected users: bob, mo, nia"]);
}

#[test]
fn a_mute_ends_by_itself_on_the_engines_clock() {
    let (mut w, [mo, bob, nia]) = world();
    w.send(mo, "/mute bob 10m\n");
    w.lines(bob);
    w.advance(9 * MINUTE);
    w.send(bob, "still?\n");
    assert!(w.saw(bob, "you are muted"));
    w.advance(MINUTE);
    w.send(bob, "free\n");
    assert!(w.lines(bob).is_empty());
    assert_eq!(w.lines(nia), vec!["[Global] bob: free"]);
}

#[test]
fn a_mute_in_force_at_login_applies_at_once() {
    let (mut w, [mo, ..]) = world();
    let reply = w.store.answer(&StoreRequest::Sanction {
        kind: SanctionKind::Mute,
        username: "nia".into(),
        by: "mo".into(),
        by_role: Role::Mod,
        duration: None,
        reason: "cool down".into(),
    });
    assert!(matches!(reply, StoreReply::Sanctioned(_)), "{reply:?}");
    let (c, lines) = login_lines(&mut w, "nia", PASSWORD);
    assert_eq!(lines[0], "Welcome back nia!");
    assert!(
        lines.contains(&"You are muted by mo until lifted: cool down".to_string()),
        "{lines:?}"
    );
    w.lines(mo);
    w.send(c, "hi\n");
    assert!(w.saw(c, "you are muted until lifted (cool down)"));
    assert!(w.lines(mo).is_empty());
}

#[test]
fn unmute_tells_every_session_and_lets_them_speak() {
    let (mut w, [mo, bob, nia]) = world();
    let bob2 = w.login("bob");
    w.lines(bob);
    w.lines(mo);
    w.send(mo, "/mute bob\n");
    w.lines(mo);
    w.send(mo, "/unmute bob\n");
    assert_eq!(w.lines(mo), vec!["bob is no longer muted"]);
    for c in [bob, bob2] {
        assert_eq!(
            w.lines(c),
            vec![
                "You are muted by mo until lifted: no reason given",
                "You are no longer muted."
            ]
        );
    }
    w.lines(nia);
    w.send(bob2, "back\n");
    assert_eq!(w.lines(nia), vec!["[Global] bob: back"]);
}

#[test]
fn bans_lists_the_sanctions_in_force_for_moderators() {
    let (mut w, [mo, ..]) = world();
    w.send(mo, "/mute nia 1h noise\n/ban bob\n");
    w.lines(mo);
    w.send(mo, "/bans\n");
    assert_eq!(
        w.lines(mo),
        vec![
            "Bans and mutes:",
            "  ban bob by mo until lifted: no reason given",
            "  mute nia by mo until 2026-12-07 11:00 UTC: noise",
        ]
    );
}

#[test]
fn sanctions_from_elsewhere_reach_the_live_sessions_once() {
    let (mut w, [_, bob, nia]) = world();
    let mute = w.store.answer(&StoreRequest::Sanction {
        kind: SanctionKind::Mute,
        username: "bob".into(),
        by: "the operator".into(),
        by_role: Role::Admin,
        duration: Some(MINUTE),
        reason: "calm".into(),
    });
    let StoreReply::Sanctioned(mute) = mute else {
        panic!("{mute:?}");
    };
    for _ in 0..2 {
        w.engine
            .handle_account_changed("bob", AccountChange::Muted(mute.clone()), w.now);
        w.drain();
    }
    assert_eq!(
        w.lines(bob),
        vec!["You are muted by the operator until 2026-12-07 10:01 UTC: calm"]
    );
    w.engine
        .handle_account_changed("bob", AccountChange::Unmuted, w.now);
    w.drain();
    assert_eq!(w.lines(bob), vec!["You are no longer muted."]);
    let ban = wur2_engine::Sanction {
        kind: SanctionKind::Ban,
        ..mute
    };
    w.engine
        .handle_account_changed("BOB", AccountChange::Banned(ban), w.now);
    w.drain();
    assert!(w.saw(bob, "You are banned by the operator"));
    assert_eq!(w.closed[&bob], (CloseReason::Banned, true));
    assert!(!w.is_closed(nia));
}
