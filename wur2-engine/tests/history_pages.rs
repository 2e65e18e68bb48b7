//! `/history` pages: a channel's, a private conversation's (`/history @user`), and the
//! page before a message (`before <id>`), in text and JSON mode.

mod support;

use support::World;
use wur2_engine::Config;

fn world() -> World {
    World::new(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    })
}

/// The `before` id a text-mode "Older messages" hint names.
fn hinted_before(line: &str) -> String {
    let (_, id) = line
        .rsplit_once(" before ")
        .unwrap_or_else(|| panic!("no hint: {line}"));
    id.to_string()
}

#[test]
fn following_the_older_hint_pages_back_through_a_channel_without_gaps_or_repeats() {
    let mut w = world();
    let (a, b) = (w.user("ann"), w.user("ben"));
    for i in 0..10 {
        w.send(a, &format!("message {i}\n"));
    }
    w.lines(b);
    w.send(b, "/history 4\n");
    let mut seen = Vec::new();
    let mut page = w.lines(b);
    loop {
        let hint = page
            .last()
            .filter(|l| l.starts_with("Older messages:"))
            .cloned();
        let texts: Vec<String> = page
            .iter()
            .filter(|l| l.starts_with("[history "))
            .map(|l| {
                l.rsplit_once(": ")
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_default()
            })
            .collect();
        seen.splice(0..0, texts);
        let Some(hint) = hint else { break };
        w.send(b, &format!("/history 4 before {}\n", hinted_before(&hint)));
        page = w.lines(b);
    }
    let expected: Vec<String> = (0..10).map(|i| format!("message {i}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn a_json_history_line_carries_the_id_a_client_pages_with() {
    let mut w = world();
    let (a, b) = (w.user("ann"), w.user("ben"));
    for i in 0..3 {
        w.send(a, &format!("m{i}\n"));
    }
    w.send(b, "/mode json\n");
    w.lines(b);
    w.send(b, "/history 2\n");
    let lines = w.lines(b);
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{lines:?}");
    assert_eq!(events[0]["type"], "history");
    assert_eq!(events[0]["text"], "m1");
    assert_eq!(events[2]["type"], "history_more");
    assert_eq!(events[2]["before"], events[0]["id"]);
    assert_eq!(events[2]["count"], 2);
    w.send(
        b,
        &format!("/history 2 before {}\n", events[0]["id"].as_str().unwrap()),
    );
    let older = w.lines(b);
    assert_eq!(
        older.len(),
        1,
        "only m0 is older, and a short page offers no more"
    );
    assert!(older[0].contains(r#""text":"m0""#), "{older:?}");
}

#[test]
fn an_unknown_before_id_gives_an_empty_page_not_the_latest() {
    let mut w = world();
    let (a, b) = (w.user("ann"), w.user("ben"));
    w.send(a, "hello\n");
    w.lines(b);
    w.send(b, "/history 5 before 0000000000000000000000000000ffff\n");
    assert_eq!(w.lines(b), ["No messages in Global yet."]);
}

#[test]
fn a_private_conversation_shows_both_directions_and_files_from_the_store() {
    let mut w = world();
    let (a, b) = (w.user("ann"), w.user("ben"));
    let c = w.user("cat");
    w.send(a, "/msg ben hi ben\n");
    w.send(b, "/msg ann hi ann\n");
    w.send(c, "/msg ben not ann's business\n");
    w.send(a, "/send ben n.txt 3\nabc");
    w.lines(a);
    w.send(a, "/history @BEN\n");
    let lines = w.lines(a);
    let shown: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once("] ").map_or(l.as_str(), |(_, rest)| rest))
        .collect();
    assert_eq!(
        shown,
        [
            "[@BEN] ann: hi ben",
            "[@BEN] ben: hi ann",
            "[@BEN] ann: [file] n.txt (3 bytes): completed"
        ],
        "{lines:?}"
    );
    w.send(a, "/mode json\n");
    w.lines(a);
    w.send(a, "/history @ben 1\n");
    let lines = w.lines(a);
    assert!(lines[0].contains(r#""type":"dm_history""#), "{lines:?}");
    assert!(lines[0].contains(r#""with":"ben""#), "{lines:?}");
    assert!(lines[1].contains(r#""type":"history_more""#), "{lines:?}");
    assert!(lines[1].contains(r#""with":"ben""#), "{lines:?}");
}

#[test]
fn a_conversation_with_nobody_says_so_and_a_bad_name_is_no_such_user() {
    let mut w = world();
    let a = w.user("ann");
    w.send(a, "/history @ben\n");
    assert_eq!(w.lines(a), ["No private messages with ben yet."]);
    w.send(a, "/history @no\u{1b}pe\n");
    let lines = w.lines(a);
    assert!(lines[0].starts_with("Error: no such user"), "{lines:?}");
}

#[test]
fn at_login_waiting_private_messages_come_after_the_channel_history() {
    let mut w = world();
    let (a, b) = (w.user("ann"), w.user("ben"));
    w.send(a, "in the channel\n");
    w.peer_closes(b);
    w.send(a, "/msg ben while you were away\n");
    w.store.set_holding(true);
    let c = w.connect();
    w.send(c, &format!("/login ben {}\n", support::PASSWORD));
    w.store_log.clear();
    // The login's answer: the history is asked for, the waiting messages not yet.
    let (id, reply) = w.store.release(0).expect("the login, held");
    let now = w.now;
    w.engine.handle_store_reply(id, reply, now);
    w.drain();
    let asked: Vec<&str> = w
        .store_log
        .iter()
        .map(|r| r.split_once(' ').map_or(r.as_str(), |(kind, _)| kind))
        .collect();
    assert_eq!(asked, ["FetchHistory"], "{:?}", w.store_log);
    w.store.set_holding(false);
    w.release_store();
    let lines = w.lines(c);
    let history = lines.iter().position(|l| l.starts_with("[history "));
    let offline = lines.iter().position(|l| l.starts_with("[offline DM "));
    assert!(
        matches!((history, offline), (Some(h), Some(o)) if h < o),
        "{lines:?}"
    );
}
