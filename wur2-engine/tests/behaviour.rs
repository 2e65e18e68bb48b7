//! Every chat behaviour of the engine, driven with bytes, store answers and time alone.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{PASSWORD, World};
use wur2_engine::{
    AccountChange, CloseReason, Config, ConnectionId, Engine, Output, Role, StoreError,
};

fn world() -> World {
    World::default_world()
}

// ----- login -----

#[test]
fn interactive_flow_registers_then_logs_in_with_the_seed_questions() {
    let mut w = world();
    let c = w.connect();
    let lines = w.lines(c);
    assert_eq!(
        lines,
        vec!["Welcome to WUR2 chat!", "Do you have an account? (y/n)"]
    );
    w.send(c, "n\n");
    assert_eq!(w.lines(c), vec!["Enter username:"]);
    w.send(c, "Alice\n");
    assert_eq!(w.lines(c), vec!["Enter password:"]);
    w.send(c, &format!("{PASSWORD}\n"));
    let lines = w.lines(c);
    assert_eq!(lines[0], "Welcome Alice!");
    assert!(lines.contains(&"You are in Global".to_string()));

    let d = w.connect();
    w.send(d, "y\r\nalice\r\n");
    w.send(d, &format!("{PASSWORD}\r\n"));
    assert!(
        w.lines(d).contains(&"Welcome back Alice!".to_string()),
        "name as registered"
    );
}

#[test]
fn names_that_pass_for_the_server_cannot_be_registered_but_existing_ones_log_in() {
    let mut w = world();
    w.store.add_account("Root", PASSWORD, Role::Admin);
    let c = w.connect();
    w.lines(c);
    w.send(c, &format!("/register SyStEm {PASSWORD}\n"));
    assert_eq!(
        w.lines(c),
        vec![
            "Error: the username SyStEm is reserved; choose another",
            "Do you have an account? (y/n)"
        ]
    );
    // The interactive flow refuses it before asking for a password.
    w.send(c, "n\nGlobal\n");
    assert_eq!(
        w.lines(c),
        vec![
            "Enter username:",
            "Error: the username Global is reserved; choose another",
            "Enter username:"
        ]
    );
    assert!(!w.store_log.iter().any(|r| r.contains("Register")));
    w.send(c, &format!("serverless\n{PASSWORD}\n"));
    assert!(w.saw(c, "Welcome serverless!"));
    // Channels are another namespace: a channel called admin is just a channel.
    w.send(c, "/join admin\n");
    assert!(w.saw(c, "Switched from Global to admin"));
    // An account made before the name was reserved keeps working.
    let root = w.login("root");
    w.send(root, "/role\n");
    assert_eq!(w.lines(root), vec!["Your role is admin"]);
}

#[test]
fn the_reserved_names_are_the_operators_to_choose() {
    let mut w = World::new(Config {
        reserved_usernames: vec!["Bob".into()],
        ..Config::default()
    });
    let c = w.connect();
    w.lines(c);
    w.send(c, &format!("/register BOB {PASSWORD}\n"));
    assert!(w.saw(c, "the username BOB is reserved"));
    w.user("system");
    let mut open = World::new(Config {
        reserved_usernames: Vec::new(),
        ..Config::default()
    });
    open.user("admin");
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_words() {
    let mut w = world();
    w.user("bob");
    let c = w.connect();
    w.lines(c);
    w.send(c, "/login bob wrong-password\n");
    let wrong = w.lines(c);
    w.send(c, "/login nobody wrong-password\n");
    let unknown = w.lines(c);
    assert_eq!(wrong, unknown);
    assert!(wrong[0].contains("invalid username or password"));
}

#[test]
fn registration_rules_are_enforced_before_the_store_is_asked() {
    let mut w = world();
    let c = w.connect();
    w.lines(c);
    w.send(c, "/register bad/name long-enough\n");
    assert!(w.saw(c, "usernames are 1 to 32"));
    w.send(c, "/register carol short\n");
    assert!(w.saw(c, "passwords are 8 to 1024 bytes"));
    w.send(c, &format!("/register carol {}\n", "p".repeat(1025)));
    assert!(w.saw(c, "passwords are 8 to 1024 bytes"));
    assert!(w.store_log.iter().all(|r| !r.contains("Register")));
}

#[test]
fn usernames_are_unique_without_regard_to_case() {
    let mut w = world();
    w.user("Dave");
    let c = w.connect();
    w.send(c, &format!("/register dAVE {PASSWORD}\n"));
    assert!(w.saw(c, "that username is taken"));
}

#[test]
fn five_failed_logins_close_the_connection() {
    let mut w = world();
    let c = w.connect();
    for _ in 0..4 {
        w.send(c, "/login eve wrong-password\n");
        assert!(!w.is_closed(c));
    }
    w.send(c, "/login eve wrong-password\n");
    assert_eq!(w.closed[&c].0, CloseReason::TooManyLoginFailures);
}

/// Five wrong passwords for `name` from `address`, each on its own connection.
fn five_wrong_passwords(w: &mut World, name: &str, address: &str) {
    for _ in 0..5 {
        let c = w.connect_from(address);
        w.send(c, &format!("/login {name} wrong-password\n"));
    }
}

#[test]
fn failed_logins_lock_the_attackers_address_not_the_owner() {
    let mut w = world();
    w.user("frank"); // from 127.0.0.1, the owner's address
    five_wrong_passwords(&mut w, "frank", "10.0.0.66");
    let attacker = w.connect_from("10.0.0.66");
    w.lines(attacker);
    w.send(attacker, &format!("/login frank {PASSWORD}\n"));
    assert!(w.saw(attacker, "too many failed logins; try again later"));

    let owner = w.connect();
    w.send(owner, &format!("/login frank {PASSWORD}\n"));
    assert!(
        w.saw(owner, "Welcome back frank!"),
        "the owner's address is neither locked nor slowed"
    );

    // Five more every window keep only the attacker's address locked.
    w.advance(Duration::from_secs(15 * 60));
    five_wrong_passwords(&mut w, "frank", "10.0.0.66");
    let owner = w.connect();
    w.send(owner, &format!("/login frank {PASSWORD}\n"));
    assert!(w.saw(owner, "Welcome back frank!"));
    w.advance(Duration::from_secs(15 * 60));
    let attacker = w.connect_from("10.0.0.66");
    w.send(attacker, &format!("/login frank {PASSWORD}\n"));
    assert!(
        w.saw(attacker, "Welcome back frank!"),
        "the lock ends with its window"
    );
}

#[test]
fn case_variants_of_a_name_count_as_one_account() {
    let mut w = world();
    w.user("frank");
    for name in ["FRANK", "Frank", "fRank", "frank", "franK"] {
        let c = w.connect_from("10.0.0.66");
        w.send(c, &format!("/login {name} wrong-password\n"));
    }
    let attacker = w.connect_from("10.0.0.66");
    w.send(attacker, &format!("/login Frank {PASSWORD}\n"));
    assert!(w.saw(attacker, "too many failed logins"));
}

#[test]
fn failures_from_many_addresses_slow_the_account_but_the_right_password_gets_in() {
    let mut w = world();
    w.user("frank");
    for i in 0..10 {
        let c = w.connect_from(&format!("10.0.1.{i}"));
        w.send(c, "/login frank wrong-password\n");
        // From the sixth on, the attacker waits too.
        w.advance(Duration::from_secs(10));
        assert!(w.saw(c, "invalid username or password"));
    }
    // Ten failures: the wait doubled from 1 s past the 10 s cap.
    let traveller = w.connect_from("192.0.2.50");
    w.lines(traveller);
    w.send(traveller, &format!("/login frank {PASSWORD}\n"));
    assert_eq!(w.lines(traveller), Vec::<String>::new(), "no answer yet");
    w.advance(Duration::from_millis(9_999));
    assert_eq!(w.lines(traveller), Vec::<String>::new(), "still waiting");
    w.advance(Duration::from_millis(1));
    assert!(
        w.saw(traveller, "Welcome back frank!"),
        "slowed, never refused"
    );

    // The address that logged in is the owner's from now on: not slowed.
    let again = w.connect_from("192.0.2.50");
    w.send(again, &format!("/login frank {PASSWORD}\n"));
    assert!(w.saw(again, "Welcome back frank!"));
}

#[test]
fn a_slowed_login_of_an_unknown_user_reads_and_waits_like_a_wrong_password() {
    let mut w = world();
    w.user("frank");
    for name in ["frank", "ghost"] {
        for i in 0..5 {
            let c = w.connect_from(&format!("10.0.2.{i}"));
            w.send(c, &format!("/login {name} wrong-password\n"));
        }
    }
    let (wrong, unknown) = (w.connect_from("192.0.2.1"), w.connect_from("192.0.2.2"));
    w.lines(wrong);
    w.lines(unknown);
    w.send(wrong, "/login frank wrong-password\n");
    w.send(unknown, "/login ghost wrong-password\n");
    let mut answered = Vec::new();
    for tick in 1..=3 {
        w.advance(Duration::from_secs(1));
        for c in [wrong, unknown] {
            let lines = w.lines(c);
            if !lines.is_empty() {
                answered.push((tick, lines));
            }
        }
    }
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert_eq!(answered[0], answered[1], "same time, same words");
    assert_eq!(answered[0].0, 1, "five failures wait 1 s");
}

#[test]
fn a_connection_closed_while_its_login_is_slowed_asks_the_store_nothing() {
    let mut w = world();
    w.user("frank");
    for i in 0..5 {
        let c = w.connect_from(&format!("10.0.3.{i}"));
        w.send(c, "/login frank wrong-password\n");
    }
    let c = w.connect_from("192.0.2.9");
    w.send(c, &format!("/login frank {PASSWORD}\n"));
    let asked = w.store_log.len();
    w.peer_closes(c);
    w.advance(Duration::from_secs(10));
    assert_eq!(w.store_log.len(), asked);
    assert!(
        w.engine.poll_timeout().is_some_and(|at| at > w.now),
        "no timer left due"
    );
}

#[test]
fn registrations_from_one_address_are_limited_with_a_clear_error() {
    let mut w = world();
    for i in 0..5 {
        let c = w.connect_from("10.0.4.1");
        w.send(c, &format!("/register reg{i} {PASSWORD}\n"));
        assert!(w.saw(c, &format!("Welcome reg{i}!")));
        if i == 0 {
            // A taken name makes no account and does not count.
            let c = w.connect_from("10.0.4.1");
            w.send(c, &format!("/register reg0 {PASSWORD}\n"));
            assert!(w.saw(c, "that username is taken"));
        }
    }
    w.advance(Duration::from_secs(60));
    let c = w.connect_from("10.0.4.1");
    w.lines(c);
    w.send(c, &format!("/register reg5 {PASSWORD}\n"));
    assert_eq!(
        w.lines(c),
        [
            "Error: too many new accounts from your address; try again in 540 s",
            "Do you have an account? (y/n)"
        ]
    );
    assert!(!w.store_log.iter().any(|r| r.contains("reg5")));

    let other = w.connect_from("10.0.4.2");
    w.send(other, &format!("/register reg5 {PASSWORD}\n"));
    assert!(
        w.saw(other, "Welcome reg5!"),
        "other addresses are not limited"
    );
    w.advance(Duration::from_secs(540));
    let c = w.connect_from("10.0.4.1");
    w.send(c, &format!("/register reg6 {PASSWORD}\n"));
    assert!(w.saw(c, "Welcome reg6!"), "the window passed");
}

#[test]
fn registrations_in_total_are_limited_per_minute() {
    let mut w = World::new(Config {
        max_registrations_per_minute: 3,
        ..Config::default()
    });
    for i in 0..3 {
        let c = w.connect_from(&format!("10.0.5.{i}"));
        w.send(c, &format!("/register many{i} {PASSWORD}\n"));
        assert!(w.saw(c, &format!("Welcome many{i}!")));
    }
    w.advance(Duration::from_secs(15));
    let c = w.connect_from("10.0.5.9");
    w.lines(c);
    w.send(c, &format!("/register many9 {PASSWORD}\n"));
    assert_eq!(
        w.lines(c),
        [
            "Error: too many new accounts on this server right now; try again in 45 s",
            "Do you have an account? (y/n)"
        ]
    );
    w.advance(Duration::from_secs(45));
    w.send(c, &format!("/register many9 {PASSWORD}\n"));
    assert!(w.saw(c, "Welcome many9!"));
}

#[test]
fn an_address_is_locked_after_twenty_failures() {
    let mut w = world();
    w.user("grace");
    for i in 0..20 {
        let c = w.connect_from("10.0.0.9");
        w.send(c, &format!("/login nobody{i} wrong-password\n"));
    }
    let c = w.connect_from("10.0.0.9");
    w.send(c, &format!("/login grace {PASSWORD}\n"));
    assert!(w.saw(c, "too many failed logins"));
    let other = w.connect_from("10.0.0.10");
    w.send(other, &format!("/login grace {PASSWORD}\n"));
    assert!(w.saw(other, "Welcome back grace!"));
}

#[test]
fn a_connection_that_does_not_log_in_in_time_is_closed_with_a_reason() {
    let mut w = world();
    let c = w.connect();
    w.advance(Duration::from_secs(59));
    assert!(!w.is_closed(c));
    w.advance(Duration::from_secs(1));
    assert!(w.saw(c, "login timed out"));
    assert_eq!(w.closed[&c].0, CloseReason::LoginTimeout);
}

#[test]
fn a_logged_in_connection_is_not_timed_out() {
    let mut w = world();
    let c = w.user("henry");
    w.advance(Duration::from_secs(3600));
    assert!(!w.is_closed(c));
}

#[test]
fn input_during_a_pending_login_waits_and_runs_in_order_afterwards() {
    let mut w = world();
    w.store.set_holding(true);
    let c = w.connect();
    w.lines(c);
    w.send(
        c,
        &format!("/register ivy {PASSWORD}\n/ping one\n/join rust\n/ping two\n"),
    );
    assert!(
        w.lines(c).is_empty(),
        "nothing may be processed before the store answers"
    );
    assert!(w.paused.contains(&c), "reading pauses while lines are held");
    w.release_store();
    w.release_store();
    let lines = w.lines(c);
    let position = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
    assert!(position("Welcome ivy!") < position("PONG one"));
    assert!(position("PONG one") < position("Switched from Global to rust"));
    assert!(position("Switched") < position("PONG two"));
    assert!(
        !w.paused.contains(&c),
        "reading resumes once nothing is held"
    );
}

#[test]
fn passwords_never_reach_any_client() {
    let mut w = world();
    let a = w.user("jack");
    let b = w.connect();
    w.send(b, "y\njack\n");
    w.send(b, &format!("{PASSWORD}\n"));
    w.send(a, "/list\n");
    for bytes in w.transcript.values() {
        assert!(!String::from_utf8_lossy(bytes).contains(PASSWORD));
    }
}

#[test]
fn store_failures_become_an_error_line_not_a_crash() {
    let mut w = world();
    w.store
        .set_failure(Some(StoreError::Unavailable("database down".into())));
    let c = w.connect();
    w.lines(c);
    w.send(c, &format!("/register kim {PASSWORD}\n"));
    let lines = w.lines(c);
    assert!(
        lines
            .iter()
            .any(|l| l == "Error: storage is unavailable; try again later")
    );
    assert!(lines.iter().all(|l| !l.contains("database down")));
    w.store.set_failure(Some(StoreError::Busy));
    w.send(c, &format!("/register kim {PASSWORD}\n"));
    assert!(w.saw(c, "busy"));
}

// ----- chat -----

#[test]
fn chat_reaches_the_other_members_of_the_channel_only() {
    let mut w = world();
    let (a, b, c) = (w.user("ann"), w.user("ben"), w.user("cat"));
    w.send(c, "/join rust\n");
    w.lines(a);
    w.lines(b);
    w.lines(c);
    w.send(a, "hello there\n");
    assert_eq!(w.lines(b), vec!["[Global] ann: hello there"]);
    assert!(w.lines(a).is_empty(), "no echo to the sender");
    assert!(w.lines(c).is_empty(), "other channels hear nothing");
    assert_eq!(w.store.history("Global").len(), 1, "one append per message");
}

#[test]
fn relayed_text_carries_no_terminal_control_sequences() {
    let mut w = world();
    let (a, b) = (w.user("dan"), w.user("eva"));
    w.lines(a);
    w.send(b, "\x1b[2J\x1b]0;owned\x07red\x1b[31m\u{202e}text\0\n");
    assert_eq!(w.lines(a), vec!["[Global] eva: redtext"]);
}

#[test]
fn zero_width_and_line_separator_characters_never_reach_terminal_or_json_clients() {
    let mut w = world();
    let (a, b) = (w.user("dan"), w.user("eva"));
    let j = w.user("jo");
    w.send(j, "/mode json\n");
    w.lines(a);
    w.lines(j);
    w.send(
        b,
        "ad\u{200b}min\u{2060} \u{feff}says:\u{2028} hi\u{2029} \u{1f469}\u{200d}\u{1f4bb}\n",
    );
    assert_eq!(
        w.lines(a),
        vec!["[Global] eva: admin says: hi \u{1f469}\u{200d}\u{1f4bb}"]
    );
    let json = w.lines(j).join("\n");
    assert!(
        json.contains("\"text\":\"admin says: hi \u{1f469}\u{200d}\u{1f4bb}\""),
        "{json}"
    );
    assert_eq!(
        w.store.history("Global").last().map(|m| m.text.as_str()),
        Some("admin says: hi \u{1f469}\u{200d}\u{1f4bb}"),
        "stored as relayed"
    );
}

#[test]
fn a_message_over_the_limit_is_refused() {
    let mut w = world();
    let (a, b) = (w.user("fay"), w.user("gus"));
    w.lines(a);
    w.send(b, &format!("{}\n", "x".repeat(2049)));
    assert!(w.saw(b, "message too long"));
    assert!(w.lines(a).is_empty());
}

#[test]
fn an_overlong_line_gets_one_error_and_the_connection_stays() {
    let mut w = world();
    let (a, b) = (w.user("hal"), w.user("ida"));
    w.lines(a);
    let long = "y".repeat(5000);
    w.send(b, &long[..3000]);
    w.send(b, &format!("{}\nstill here\n", &long[3000..]));
    let lines = w.lines(b);
    assert_eq!(
        lines.iter().filter(|l| l.contains("line too long")).count(),
        1
    );
    assert_eq!(w.lines(a), vec!["[Global] ida: still here"]);
}

#[test]
fn invalid_utf8_gets_an_error_and_the_connection_stays() {
    let mut w = world();
    let (a, b) = (w.user("jon"), w.user("kat"));
    w.lines(a);
    w.send_bytes(b, b"bad \xff\xfe bytes\nfine\n");
    assert!(w.saw(b, "invalid UTF-8"));
    assert_eq!(w.lines(a), vec!["[Global] kat: fine"]);
}

#[test]
fn empty_lines_are_ignored_and_unknown_commands_name_help() {
    let mut w = world();
    let a = w.user("leo");
    w.send(a, "\n   \r\n");
    assert!(w.lines(a).is_empty());
    w.send(a, "/dance\n");
    assert_eq!(
        w.lines(a),
        vec!["Error: unknown command /dance; type /help for the list"]
    );
}

#[test]
fn ping_answers_pong_after_everything_before_it() {
    let mut w = world();
    let a = w.user("max");
    w.send(a, "/list\n/ping t1\n");
    let lines = w.lines(a);
    assert_eq!(lines.last().map(String::as_str), Some("PONG t1"));
    assert!(lines[0].starts_with("Connected users:"));
}

#[test]
fn close_says_goodbye_and_closes_after_the_queue_is_written() {
    let mut w = world();
    let (a, b) = (w.user("ned"), w.user("oli"));
    w.lines(a);
    w.send(b, "/close\n");
    assert_eq!(w.lines(b), vec!["Goodbye!"]);
    assert_eq!(w.closed[&b], (CloseReason::ClientQuit, true));
    assert_eq!(w.lines(a), vec!["* oli left Global"]);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

// ----- sessions, users, channels -----

#[test]
fn one_account_on_several_connections_is_listed_once_and_gets_dms_everywhere() {
    let mut w = world();
    let a1 = w.user("quin");
    let a2 = w.login("quin");
    let b = w.user("rex");
    w.send(a2, "/join other\n");
    w.lines(b);
    w.send(b, "/list\n");
    assert_eq!(w.lines(b), vec!["Connected users: quin, rex"]);
    w.lines(a1);
    w.lines(a2);
    w.send(b, "/msg QUIN psst\n");
    assert_eq!(w.lines(a1), vec!["[DM] rex: psst"]);
    assert_eq!(w.lines(a2), vec!["[DM] rex: psst"]);
    w.send(a1, "/profile\n");
    assert_eq!(
        w.lines(a1),
        vec!["Username: quin | Channel: Global | Role: user"]
    );
    w.send(a2, "/profile\n");
    assert_eq!(
        w.lines(a2),
        vec!["Username: quin | Channel: other | Role: user"]
    );
}

#[test]
fn a_dm_to_an_offline_user_arrives_once_at_their_next_login() {
    let mut w = world();
    let s = w.user("sam");
    let t = w.user("tom");
    w.peer_closes(t);
    w.lines(s);
    w.send(s, "/msg tom see you later\n");
    assert_eq!(
        w.lines(s),
        vec!["tom is offline; the message will be delivered at their next login."]
    );
    let t = w.connect();
    w.send(t, &format!("/login tom {PASSWORD}\n"));
    let lines = w.lines(t);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[offline DM ") && l.ends_with("] sam: see you later")),
        "{lines:?}"
    );
    let t2 = w.connect();
    w.send(t2, &format!("/login tom {PASSWORD}\n"));
    assert!(
        !w.lines(t2).iter().any(|l| l.contains("see you later")),
        "delivered once"
    );
}

#[test]
fn a_dm_to_an_unknown_user_is_an_error() {
    let mut w = world();
    let a = w.user("uma");
    w.send(a, "/msg ghost boo\n");
    assert_eq!(w.lines(a), vec!["Error: no such user: ghost"]);
}

#[test]
fn join_announces_switches_and_replays_history_oldest_first() {
    let mut w = World::new(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    });
    let (a, b) = (w.user("vic"), w.user("wes"));
    w.send(a, "/join Rust\n");
    for i in 0..25 {
        w.send(a, &format!("message {i}\n"));
    }
    w.lines(a);
    w.lines(b);
    w.send(b, "/join rUST\n");
    let lines = w.lines(b);
    assert_eq!(lines[0], "Switched from Global to Rust");
    let history: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("[history "))
        .collect();
    assert_eq!(history.len(), 20);
    assert!(history[0].ends_with("[Rust] vic: message 5"));
    assert!(history[19].ends_with("[Rust] vic: message 24"));
    assert_eq!(w.lines(a), vec!["* wes joined Rust"]);
    w.send(b, "/channels\n");
    assert_eq!(w.lines(b), vec!["Channels: Rust (2)"]);
    w.send(b, "/history 3\n");
    let lines = w.lines(b);
    assert_eq!(lines.len(), 4);
    assert!(lines[2].ends_with("vic: message 24"));
    assert!(
        lines[3].starts_with("Older messages: /history 3 before "),
        "a full page says how to ask for the one before: {lines:?}"
    );
}

#[test]
fn leaving_a_channel_is_announced_and_an_emptied_channel_stays_listed() {
    let mut w = world();
    let (a, b) = (w.user("xia"), w.user("yul"));
    w.send(a, "/join side\n");
    w.lines(b);
    w.send(b, "/channels\n");
    assert_eq!(w.lines(b), vec!["Channels: Global (1), side (1)"]);
    w.send(a, "/join global\n");
    assert_eq!(w.lines(b), vec!["* xia joined Global"]);
    w.send(b, "/channels\n");
    assert_eq!(w.lines(b), vec!["Channels: Global (2), side (0)"]);
}

#[test]
fn bad_channel_names_are_refused() {
    let mut w = world();
    let a = w.user("zed");
    w.send(a, "/join no/slash\n");
    assert!(w.saw(a, "channel names are 1 to 32"));
}

// ----- roles and kicks -----

#[test]
fn a_moderator_kick_closes_every_session_of_the_target_and_the_channel_hears() {
    let mut w = world();
    w.store.add_account("mia", PASSWORD, Role::Mod);
    let m = w.login("mia");
    let t1 = w.user("troll");
    let t2 = w.login("troll");
    let bystander = w.user("nia");
    w.lines(m);
    w.lines(bystander);
    w.send(m, "/kick troll spamming\n");
    for t in [t1, t2] {
        assert!(
            w.lines(t)
                .contains(&"You were kicked by mia: spamming".to_string())
        );
        assert_eq!(w.closed[&t], (CloseReason::Kicked, true));
    }
    assert_eq!(
        w.lines(bystander),
        vec!["* troll was kicked by mia: spamming"]
    );
    assert!(w.lines(m).contains(&"You kicked troll.".to_string()));
    w.send(bystander, "/list\n");
    assert_eq!(w.lines(bystander), vec!["Connected users: mia, nia"]);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn kick_rules_protect_moderators_admins_and_yourself() {
    let mut w = world();
    w.store.add_account("mod1", PASSWORD, Role::Mod);
    w.store.add_account("mod2", PASSWORD, Role::Mod);
    w.store.add_account("boss", PASSWORD, Role::Admin);
    let (m1, m2, boss, u) = (
        w.login("mod1"),
        w.login("mod2"),
        w.login("boss"),
        w.user("usr"),
    );
    w.send(u, "/kick mod1\n");
    assert!(w.saw(u, "only moderators and admins can kick"));
    w.send(m1, "/kick mod2\n");
    assert!(w.saw(m1, "moderators cannot kick moderators or admins"));
    w.send(m1, "/kick boss\n");
    assert!(w.saw(m1, "moderators cannot kick moderators or admins"));
    w.send(m1, "/kick MOD1\n");
    assert!(w.saw(m1, "you cannot kick yourself"));
    w.send(m1, "/kick nobody\n");
    assert!(w.saw(m1, "nobody is not online"));
    w.send(boss, "/kick mod2 bye\n");
    assert!(w.is_closed(m2));
}

#[test]
fn an_admin_sets_a_role_that_applies_to_live_sessions_at_once() {
    let mut w = world();
    w.store.add_account("root", PASSWORD, Role::Admin);
    let admin = w.login("root");
    let u = w.user("pat");
    w.send(u, "/help\n");
    assert!(!w.lines(u).iter().any(|l| l.contains("/kick")));
    w.send(admin, "/role pat mod\n");
    assert!(w.saw(admin, "pat is now mod"));
    assert!(w.saw(u, "Your role is now mod (set by root)"));
    w.send(u, "/role\n");
    assert_eq!(w.lines(u), vec!["Your role is mod"]);
    w.send(u, "/help\n");
    assert!(w.lines(u).iter().any(|l| l.contains("/kick")));
    assert_eq!(w.store.role("pat"), Some(Role::Mod), "stored");
    w.send(u, "/role root user\n");
    assert!(w.saw(u, "only admins can set roles"));
    w.send(admin, "/role ghost mod\n");
    assert_eq!(
        w.lines(admin),
        ["Error: no such user: ghost"],
        "the one no-such-user text"
    );
}

#[test]
fn an_operator_role_change_applies_to_every_live_session_and_tells_them() {
    let mut w = world();
    w.store.add_account("boss", PASSWORD, Role::Admin);
    let (b1, b2) = (w.login("boss"), w.login("boss"));
    let u = w.user("pat");
    w.lines(b1);
    w.lines(b2);
    w.engine
        .handle_account_changed("BOSS", AccountChange::Role(Role::User), w.now);
    w.drain();
    for b in [b1, b2] {
        assert_eq!(
            w.lines(b),
            vec!["Your role is now user (set by the operator)"]
        );
    }
    w.send(b1, "/kick pat\n");
    assert!(w.saw(b1, "only moderators and admins can kick"));
    w.send(b2, "/role pat mod\n");
    assert!(w.saw(b2, "only admins can set roles"));
    assert!(!w.is_closed(u));
    w.engine
        .handle_account_changed("pat", AccountChange::Role(Role::Mod), w.now);
    w.drain();
    assert_eq!(
        w.lines(u),
        vec!["Your role is now mod (set by the operator)"]
    );
    w.send(u, "/help\n");
    assert!(w.lines(u).iter().any(|l| l.contains("/kick")));
}

#[test]
fn an_operator_role_change_to_the_role_held_or_of_someone_offline_says_nothing() {
    let mut w = world();
    let u = w.user("pat");
    w.lines(u);
    w.engine
        .handle_account_changed("pat", AccountChange::Role(Role::User), w.now);
    w.engine
        .handle_account_changed("ghost", AccountChange::Purged, w.now);
    w.drain();
    assert!(w.lines(u).is_empty());
    assert!(!w.is_closed(u));
}

#[test]
fn a_purged_account_has_every_session_closed_with_a_clear_line() {
    let mut w = world();
    let (p1, p2) = (w.user("pat"), w.login("pat"));
    let bystander = w.user("nia");
    w.lines(bystander);
    w.engine
        .handle_account_changed("Pat", AccountChange::Purged, w.now);
    w.drain();
    for p in [p1, p2] {
        assert!(
            w.lines(p)
                .contains(&"You were kicked by the operator: your account was deleted".to_string())
        );
        assert_eq!(w.closed[&p], (CloseReason::AccountDeleted, true));
    }
    assert!(
        w.lines(bystander)
            .contains(&"* pat left Global".to_string())
    );
    w.send(bystander, "/list\n");
    assert_eq!(w.lines(bystander), vec!["Connected users: nia"]);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn bare_role_toggles_only_in_demo_mode() {
    let mut w = World::new(Config {
        demo_roles: true,
        ..Config::default()
    });
    let u = w.user("demo");
    w.send(u, "/role\n");
    assert!(w.saw(u, "Your role is now mod"));
    w.send(u, "/role\n");
    assert!(w.saw(u, "Your role is now user"));
    let mut w = world();
    let u = w.user("plain");
    w.send(u, "/role\n");
    assert_eq!(w.lines(u), vec!["Your role is user"]);
}

// ----- limits -----

#[test]
fn flood_control_lets_a_burst_through_then_makes_lines_wait_not_vanish() {
    let mut w = world();
    let (a, b) = (w.user("flo"), w.user("gil"));
    w.lines(a);
    let burst: String = (0..30).map(|i| format!("line {i}\n")).collect();
    w.send(b, &burst);
    // The `/register` line took one of the 20 tokens of the burst.
    assert_eq!(w.lines(a).len(), 19, "the burst passes at once");
    assert!(
        !w.paused.contains(&b),
        "reading goes on while flood control holds lines back, so a flood is seen whole"
    );
    w.advance(Duration::from_millis(500));
    assert_eq!(w.lines(a).len(), 5, "10 lines per second after the burst");
    w.advance(Duration::from_millis(600));
    let rest = w.lines(a);
    assert_eq!(rest.len(), 6);
    assert_eq!(
        rest.last().map(String::as_str),
        Some("[Global] gil: line 29"),
        "none vanish"
    );
    assert!(!w.paused.contains(&b));
    assert!(!w.is_closed(b));
}

#[test]
fn flood_control_closes_a_connection_holding_too_many_throttled_lines_with_a_reason() {
    let mut w = world();
    let (a, b) = (w.user("hob"), w.user("ike"));
    let flood: String = (0..5000).map(|i| format!("spam {i}\n")).collect();
    w.send(b, &flood);
    assert!(w.saw(b, "too many lines at once"));
    assert_eq!(w.closed[&b].0, CloseReason::Flood);
    w.send(a, "/ping ok\n");
    assert!(w.saw(a, "PONG ok"), "the server keeps serving others");
}

#[test]
fn a_flood_arriving_in_small_reads_is_closed_once_its_held_lines_pass_the_limit() {
    // However the driver's reads cut a flood, the lines flood control holds back add up:
    // reading is not paused for them, and the limit (200 lines) closes the flooder.
    let mut w = world();
    let b = w.user("lou");
    for chunk in 0..40 {
        let lines: String = (0..10).map(|i| format!("drip {chunk} {i}\n")).collect();
        w.send(b, &lines);
        if w.is_closed(b) {
            break;
        }
        assert!(!w.paused.contains(&b), "read on while throttled");
    }
    assert!(w.saw(b, "too many lines at once"));
    assert_eq!(w.closed[&b].0, CloseReason::Flood);
}

#[test]
fn flood_control_off_lets_everything_through() {
    let mut w = World::new(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    });
    let (a, b) = (w.user("jim"), w.user("kim"));
    w.lines(a);
    let many: String = (0..150).map(|i| format!("m {i}\n")).collect();
    w.send(b, &many);
    assert_eq!(w.lines(a).len(), 150);
}

// ----- pipelining: lines that wait for the store -----

/// Rooms in which `carol` left one message each, for pipelined `/join` and `/history`.
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];

/// Flood control off (as for a trusted bot), `bob` registered and gone offline, `carol`
/// with a message in each of [`ROOMS`], and `alice` logged in; the store then holds every
/// answer until the test releases it.
fn pipelining_world(config: Config) -> (World, ConnectionId) {
    let mut w = World::new(config);
    let bob = w.user("bob");
    w.peer_closes(bob);
    let carol = w.user("carol");
    for room in ROOMS {
        w.send(carol, &format!("/join {room}\nhello {room}\n"));
    }
    let alice = w.user("alice");
    w.lines(alice);
    w.store.set_holding(true);
    (w, alice)
}

/// `connection` sends `script` and `/ping done` in one piece while the store holds its
/// answers, which then come one at a time. Checks on the way that the connection is
/// paused, never closed, and holds no more than it sent (and no more than the limit);
/// returns what it received, history timestamps left out.
fn pipeline_through_a_slow_store(
    w: &mut World,
    connection: ConnectionId,
    script: &str,
) -> Vec<String> {
    let sent = format!("{script}/ping done\n");
    let bound = w.engine.config().max_held_input_bytes();
    w.send(connection, &sent);
    assert!(!w.is_closed(connection), "pipelining is not flooding");
    assert!(
        w.paused.contains(&connection),
        "reading pauses while lines wait"
    );
    let mut held = w.engine.held_input_bytes(connection);
    assert!(
        held > 0 && held < sent.len() && held <= bound,
        "{held} bytes held"
    );
    while let Some((id, reply)) = w.store.release(0) {
        w.now += Duration::from_millis(5);
        w.engine.handle_store_reply(id, reply, w.now);
        w.drain();
        assert!(
            !w.is_closed(connection),
            "closed while waiting for the store"
        );
        let now_held = w.engine.held_input_bytes(connection);
        assert!(
            now_held <= held,
            "held input grew from {held} to {now_held}"
        );
        held = now_held;
        assert_eq!(
            w.paused.contains(&connection),
            held > 0,
            "paused exactly while lines wait ({held} bytes held)"
        );
    }
    let changes: Vec<bool> = w
        .reading_changes
        .iter()
        .filter(|(c, _)| *c == connection)
        .map(|(_, paused)| *paused)
        .collect();
    assert_eq!(changes, vec![true, false], "paused once, resumed once");
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    let lines: Vec<String> = w
        .lines(connection)
        .into_iter()
        .map(|line| match line.strip_prefix("[history ") {
            Some(rest) => rest
                .split_once("] ")
                .map_or(line.clone(), |(_, l)| l.into()),
            None => line,
        })
        .collect();
    assert_eq!(lines.last().map(String::as_str), Some("PONG done"));
    lines
}

#[test]
fn a_bot_pipelining_join_history_and_msg_without_flood_control_gets_every_answer_in_order() {
    let (mut w, alice) = pipelining_world(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    });
    let mut script = String::new();
    let mut expected = Vec::new();
    let mut previous = "Global";
    for i in 0..100 {
        let room = ROOMS[i % ROOMS.len()];
        script.push_str(&format!("/join {room}\n/history 2\n/msg bob note {i}\n"));
        expected.push(format!("Switched from {previous} to {room}"));
        expected.push(format!("[{room}] carol: hello {room}"));
        expected.push(format!("[{room}] carol: hello {room}"));
        expected.push("bob is offline; the message will be delivered at their next login.".into());
        previous = room;
    }
    expected.push("PONG done".into());
    let lines = pipeline_through_a_slow_store(&mut w, alice, &script);
    assert_eq!(lines, expected);
    let stored = w.store.private_messages("bob");
    assert_eq!(stored.len(), 100);
    assert!(
        stored
            .iter()
            .enumerate()
            .all(|(i, m)| m.text == format!("note {i}"))
    );
}

#[test]
fn every_kind_of_line_that_waits_for_the_store_pauses_reading_instead_of_closing() {
    let config = Config {
        flood_lines_per_second: 0,
        demo_roles: true,
        ..Config::default()
    };

    // Behind a login that the store is still checking.
    let (mut w, _) = pipelining_world(config.clone());
    let late = w.connect();
    w.lines(late);
    let script = format!("/login carol {PASSWORD}\n{}", "/profile\n".repeat(300));
    let lines = pipeline_through_a_slow_store(&mut w, late, &script);
    assert_eq!(lines[0], "Welcome back carol!");
    let profiles = lines
        .iter()
        .filter(|l| l.starts_with("Username: carol |"))
        .count();
    assert_eq!(profiles, 300, "{:?}", &lines[..5]);

    // `/role <user> <role>` from an admin, and the demo mode's bare `/role`.
    let (mut w, alice) = pipelining_world(config.clone());
    w.store.set_holding(false);
    w.store.add_account("boss", PASSWORD, Role::Admin);
    let boss = w.login("boss");
    w.store.set_holding(true);
    let lines = pipeline_through_a_slow_store(&mut w, boss, &"/role bob mod\n".repeat(300));
    assert_eq!(lines.iter().filter(|l| *l == "bob is now mod").count(), 300);
    let lines = pipeline_through_a_slow_store(&mut w, alice, &"/role\n".repeat(300));
    let toggles: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("Your role is now"))
        .collect();
    assert_eq!(toggles.len(), 300);
    assert!(
        toggles[0].starts_with("Your role is now mod")
            && toggles[1].starts_with("Your role is now user")
    );
}

#[test]
fn lines_waiting_for_the_store_are_not_flooding_when_flood_control_is_on() {
    let (mut w, alice) = pipelining_world(Config {
        flood_lines_per_second: 10,
        flood_burst: 400,
        ..Config::default()
    });
    let lines = pipeline_through_a_slow_store(&mut w, alice, &"/history 1\n".repeat(300));
    assert_eq!(lines.len(), 301, "{:?}", &lines[..3]);
}

#[test]
fn a_paused_pipelining_client_can_be_kicked_or_hang_up_and_late_store_answers_are_ignored() {
    let (mut w, alice) = pipelining_world(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    });
    w.store.set_holding(false);
    w.store.add_account("mod", PASSWORD, Role::Mod);
    let moderator = w.login("mod");
    let dan = w.user("dan");
    w.store.set_holding(true);
    for client in [alice, dan] {
        w.send(client, &"/history 1\n/msg bob hi\n".repeat(150));
        assert!(w.paused.contains(&client) && !w.is_closed(client));
    }
    let connections = w.engine.connection_count();

    w.send(moderator, "/kick alice enough\n");
    assert_eq!(w.closed[&alice].0, CloseReason::Kicked);
    assert!(w.saw(alice, "You were kicked by mod: enough"));
    w.peer_closes(dan);
    w.lines(dan);
    assert_eq!(w.engine.connection_count(), connections - 2);
    for gone in [alice, dan] {
        assert_eq!(w.engine.held_input_bytes(gone), 0, "held lines are dropped");
    }

    w.store.set_holding(false);
    w.release_store();
    assert!(
        w.violations.is_empty(),
        "nothing for a closed connection: {:?}",
        w.violations
    );
    assert!(w.lines(alice).is_empty() && w.lines(dan).is_empty());
    w.send(moderator, "/ping ok\n");
    assert!(w.saw(moderator, "PONG ok"));
}

#[test]
fn a_pipelined_close_answers_the_lines_before_it_and_drops_the_rest() {
    let (mut w, alice) = pipelining_world(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    });
    let script = format!(
        "{}/close\n{}",
        "/history 1\n".repeat(250),
        "/ping after\n".repeat(50)
    );
    w.send(alice, &script);
    assert!(w.paused.contains(&alice) && !w.is_closed(alice));
    w.release_store();
    let lines = w.lines(alice);
    assert_eq!(
        lines.len(),
        251,
        "{:?}",
        &lines[lines.len().saturating_sub(3)..]
    );
    assert_eq!(lines.last().map(String::as_str), Some("Goodbye!"));
    assert_eq!(w.closed[&alice], (CloseReason::ClientQuit, true));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_paused_client_still_fed_past_the_held_input_bound_is_closed_for_flooding() {
    let config = Config {
        flood_lines_per_second: 0,
        max_pending_lines: 10,
        max_line_bytes: 64,
        transfer_window_bytes: 1,
        ..Config::default()
    };
    let bound = config.max_held_input_bytes();
    assert_eq!(bound, 12 * 66);
    let (mut w, alice) = pipelining_world(config);
    // What a driver reads ahead of the pause still reaches the engine, up to the bound.
    let half = "/history 1\n".repeat(bound / 2 / 11);
    w.send(alice, &half);
    w.send(alice, &half);
    assert!(
        w.paused.contains(&alice) && !w.is_closed(alice),
        "within the bound"
    );
    assert!(w.engine.held_input_bytes(alice) <= bound);
    w.send(alice, &half);
    assert!(w.saw(alice, "too many lines at once"));
    assert_eq!(w.closed[&alice].0, CloseReason::Flood);
}

#[test]
fn a_reader_that_falls_behind_is_dropped_and_nobody_else_waits() {
    let config = Config {
        max_queued_bytes: 10_000,
        flood_lines_per_second: 0,
        ..Config::default()
    };
    let mut w = World::new(config);
    let (a, b, slow) = (w.user("lou"), w.user("mo"), w.user("nod"));
    w.not_reading.insert(slow);
    w.lines(b);
    for i in 0..400 {
        w.send(a, &format!("chatter number {i}\n"));
    }
    let chat = w
        .lines(b)
        .iter()
        .filter(|l| l.starts_with("[Global] lou: "))
        .count();
    assert_eq!(chat, 400, "others get every message");
    assert_eq!(w.closed[&slow], (CloseReason::SlowReader, false));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn the_per_address_connection_limit_counts_an_ipv6_64_as_one_address() {
    let config = Config {
        max_connections_per_address: 2,
        ..Config::default()
    };
    let mut w = World::new(config);
    let _a = w.connect_from("[2001:db8:1:2::1]");
    let _b = w.connect_from("[2001:db8:1:2::2]");
    let c = w.connect_from("[2001:db8:1:2:ffff::3]");
    assert!(w.saw(c, "too many connections from your address"));
    let d = w.connect_from("[2001:db8:1:3::1]");
    assert!(!w.is_closed(d), "another /64 is another address");
}

#[test]
fn connection_limits_in_total_and_per_address_hold() {
    let config = Config {
        max_connections: 3,
        max_connections_per_address: 2,
        ..Config::default()
    };
    let mut w = World::new(config);
    let _a = w.connect_from("10.1.1.1");
    let _b = w.connect_from("10.1.1.1");
    let c = w.connect_from("10.1.1.1");
    assert!(w.saw(c, "too many connections from your address"));
    assert_eq!(w.closed[&c].0, CloseReason::TooManyFromAddress);
    let _d = w.connect_from("10.1.1.2");
    let e = w.connect_from("10.1.1.3");
    assert!(w.saw(e, "server is full"));
    assert_eq!(w.closed[&e].0, CloseReason::ServerFull);
    assert_eq!(w.engine.connection_count(), 3);
}

#[test]
fn shutdown_tells_everyone_and_refuses_newcomers() {
    let mut w = world();
    let (a, b) = (w.user("ola"), w.connect());
    w.engine.handle_shutdown(w.now);
    w.drain();
    for c in [a, b] {
        assert!(w.saw(c, "Server is shutting down"));
        assert_eq!(w.closed[&c], (CloseReason::Shutdown, true));
    }
    let late = w.connect();
    assert_eq!(w.closed[&late].0, CloseReason::Shutdown);
    assert_eq!(w.engine.connection_count(), 0);
}

/// Polls `engine` until it hands out the `Close` of `connection` (outputs after it stay
/// queued).
fn poll_until_close_of(engine: &mut Engine, connection: ConnectionId) {
    loop {
        match engine.poll_output() {
            Some(Output::Close { connection: c, .. }) if c == connection => return,
            Some(_) => {}
            None => panic!("no close for {connection}"),
        }
    }
}

#[test]
fn a_closed_connections_slot_is_not_handed_out_before_its_close_is_polled() {
    let now = Instant::now();
    let peer: SocketAddr = "127.0.0.1:4000".parse().expect("address");
    let mut engine = Engine::new(Config::default());
    let first = engine.handle_connect(peer, now);
    while engine.poll_output().is_some() {}

    // Closed by the engine: its slot waits behind the `Close`.
    engine.handle_received(first, b"/close\n", now);
    let second = engine.handle_connect(peer, now);
    assert_ne!(second.slot(), first.slot(), "Close not polled yet");
    poll_until_close_of(&mut engine, first);
    let third = engine.handle_connect(peer, now);
    assert_ne!(third.slot(), first.slot(), "the drain is not finished yet");
    while engine.poll_output().is_some() {}
    let fourth = engine.handle_connect(peer, now);
    assert_eq!(fourth.slot(), first.slot(), "a drained slot is reused");
    assert_ne!(fourth, first, "with a new id");

    // Closed by the peer: its slot waits for the next full drain too.
    engine.handle_peer_closed(second, now);
    let fifth = engine.handle_connect(peer, now);
    assert_ne!(fifth.slot(), second.slot());
    while engine.poll_output().is_some() {}
    assert_eq!(engine.handle_connect(peer, now).slot(), second.slot());
}

#[test]
fn events_for_forgotten_connections_and_stale_replies_are_ignored() {
    let mut w = world();
    w.store.set_holding(true);
    let c = w.connect();
    w.send(c, &format!("/register ghosty {PASSWORD}\n"));
    w.peer_closes(c);
    w.release_store();
    w.send_bytes(c, b"hello\n");
    w.engine.handle_written(c, 100, w.now);
    assert_eq!(w.engine.online_user_count(), 0);
    assert!(
        w.violations.iter().all(|v| v.starts_with("test sent")),
        "{:?}",
        w.violations
    );
}

#[test]
fn stats_count_what_the_engine_did_and_what_it_holds() {
    let config = Config {
        max_queued_bytes: 2_000,
        ..Config::default()
    };
    let mut w = World::new(config);
    let (a, b, slow) = (w.user("sta"), w.user("stb"), w.user("stc"));
    w.not_reading.insert(slow);
    w.send(a, "hello\n/msg stb hi\n");
    let before = w.engine.stats();
    assert_eq!((before.connections, before.users_online), (3, 3));
    assert_eq!((before.channel_messages, before.direct_messages), (1, 1));
    assert!(
        before.bytes_queued > 0,
        "the slow reader's bytes are still queued"
    );
    let c = w.connect();
    w.send(c, "/login sta wrong-password\n");
    for i in 0..100 {
        w.send(b, &format!("filler message {i}\n"));
        w.advance(Duration::from_millis(200));
    }
    let after = w.engine.stats();
    assert_eq!(after.login_failures, 1);
    assert_eq!(after.logins, 3);
    assert_eq!(after.slow_readers_dropped, 1);
    assert_eq!(after.connections, 3);
    assert_eq!(
        after.bytes_queued, 0,
        "a dropped reader's queue is forgotten"
    );
    assert!(after.deliveries > before.deliveries + 100);
}
