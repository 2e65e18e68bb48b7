//! JSON lines mode: every line a JSON client gets is one JSON object with a `type`, errors
//! carry stable codes, and a broadcast is rendered once per mode.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{PASSWORD, World};
use wur2_engine::{Config, ConnectionId, Output, WallClock};

fn json_lines(w: &mut World, connection: ConnectionId) -> Vec<Value> {
    w.lines(connection)
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect()
}

fn types(values: &[Value]) -> Vec<&str> {
    values
        .iter()
        .map(|v| v["type"].as_str().expect("every object has a type"))
        .collect()
}

fn json_world() -> World {
    let mut w = World::default_world();
    let at = w.now;
    let config = Config {
        wall_clock: Some(WallClock {
            at,
            unix_ms: 1_795_000_000_000,
        }),
        flood_lines_per_second: 0,
        // Every test user registers from 127.0.0.1.
        max_registrations_per_address: 0,
        ..Config::default()
    };
    w.engine = wur2_engine::Engine::new(config);
    w
}

#[test]
fn a_json_client_logs_in_chats_and_gets_only_json_objects() {
    let mut w = json_world();
    let text_user = w.user("tina");
    let c = w.connect();
    w.lines(c);
    w.send(c, "/mode json\n");
    let mode = json_lines(&mut w, c);
    assert_eq!(mode[0]["type"], "mode");
    assert_eq!(mode[0]["mode"], "json");
    w.send(c, &format!("/register jay {PASSWORD}\n"));
    let welcome = json_lines(&mut w, c);
    assert_eq!(types(&welcome)[..2], ["welcome", "channel"]);
    assert_eq!(welcome[0]["user"], "jay");
    assert_eq!(welcome[0]["new"], true);
    assert_eq!(welcome[0]["ts"], 1_795_000_000_000_i64);

    w.send(text_user, "hello \"json\"\n");
    let message = json_lines(&mut w, c);
    assert_eq!(message[0]["type"], "message");
    assert_eq!(message[0]["from"], "tina");
    assert_eq!(message[0]["text"], "hello \"json\"");
    assert_eq!(
        message[0]["id"].as_str().map(str::len),
        Some(32),
        "stored messages carry their id"
    );

    w.advance(Duration::from_secs(2));
    w.send(
        c,
        "/list\n/channels\n/profile\n/msg tina hi\n/join rust\n/ping p\n/help\n/role\n",
    );
    let replies = json_lines(&mut w, c);
    assert_eq!(
        types(&replies),
        [
            "list", "channels", "profile", "switched", "pong", "help", "role"
        ]
    );
    assert_eq!(replies[0]["users"], serde_json::json!(["jay", "tina"]));
    assert_eq!(replies[1]["channels"][0]["members"], 2);
    assert_eq!(replies[4]["token"], "p");
    assert_eq!(
        replies[4]["ts"], 1_795_000_002_000_i64,
        "timestamps follow the caller's clock"
    );
    let tina_saw = w.lines(text_user);
    assert_eq!(
        tina_saw[1..3],
        ["[DM] jay: hi".to_string(), "* jay left Global".to_string()]
    );
}

#[test]
fn departures_and_shutdown_are_stamped_with_the_time_of_the_input_that_caused_them() {
    let mut w = json_world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    for c in [ann, bob] {
        w.lines(c);
        w.send(c, "/mode json\n");
        json_lines(&mut w, c);
    }
    // Time passes with no input; the next inputs bring it.
    w.now += Duration::from_secs(5);
    w.peer_closes(bob);
    let left = json_lines(&mut w, ann);
    assert_eq!(types(&left), ["part"]);
    assert_eq!(left[0]["ts"], 1_795_000_005_000_i64);

    w.now += Duration::from_secs(3);
    w.engine.handle_shutdown(w.now);
    w.drain();
    let bye = json_lines(&mut w, ann);
    assert_eq!(types(&bye), ["shutdown"]);
    assert_eq!(bye[0]["ts"], 1_795_000_008_000_i64);
}

#[test]
fn every_error_has_a_stable_code_in_json_mode() {
    let mut w = json_world();
    let c = w.connect();
    w.send(c, "/mode json\n");
    w.lines(c);
    w.send(c, "/join x\n/login bob wrong-password\n");
    let errors = json_lines(&mut w, c);
    let codes: Vec<_> = errors
        .iter()
        .filter(|v| v["type"] == "error")
        .map(|v| v["code"].clone())
        .collect();
    assert_eq!(codes, ["not_logged_in", "invalid_credentials"]);
    w.send(c, &format!("/register jay {PASSWORD}\n"));
    w.lines(c);
    w.send(
        c,
        "/dance\n/msg ghost hi\n/kick x\n/join bad/name\n/history x\n",
    );
    w.send_bytes(c, b"\xff\n");
    let codes: Vec<_> = json_lines(&mut w, c)
        .iter()
        .map(|v| v["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [
            "unknown_command",
            "no_such_user",
            "forbidden",
            "invalid_channel",
            "usage",
            "invalid_utf8"
        ]
    );
}

#[test]
fn a_broadcast_is_rendered_once_per_mode_not_once_per_recipient() {
    let mut w = json_world();
    let sender = w.user("sam");
    for i in 0..3 {
        let c = w.user(&format!("text{i}"));
        w.lines(c);
    }
    for i in 0..3 {
        let c = w.user(&format!("json{i}"));
        w.send(c, "/mode json\n");
    }
    w.drain();
    w.engine.handle_received(sender, b"one message\n", w.now);
    let mut broadcasts = Vec::new();
    while let Some(output) = w.engine.poll_output() {
        match output {
            Output::Broadcast { recipients, data } => broadcasts.push((recipients.len(), data)),
            // The message goes out once the store has committed it.
            Output::Store { id, request } => {
                let reply = w.store.submit(id, *request).expect("answered at once");
                w.engine.handle_store_reply(id, reply, w.now);
            }
            _ => {}
        }
    }
    assert_eq!(broadcasts.len(), 2, "one shared buffer per mode");
    assert_eq!(broadcasts[0].0, 3);
    assert_eq!(&broadcasts[0].1[..], b"[Global] sam: one message\n");
    let json: Value = serde_json::from_slice(&broadcasts[1].1).unwrap();
    assert_eq!(json["text"], "one message");
}

#[test]
fn file_transfers_arrive_as_json_objects_with_base64_chunks() {
    let mut w = json_world();
    let a = w.user("alice");
    let b = w.user("bob");
    w.send(b, "/mode json\n");
    w.lines(b);
    let data: Vec<u8> = (0..=255).collect();
    w.send(a, &format!("/send bob all.bin {}\n", data.len()));
    w.send_bytes(a, &data);
    let lines = json_lines(&mut w, b);
    assert_eq!(types(&lines), ["file_offer", "file_chunk", "file_done"]);
    assert_eq!(lines[0]["size"], 256);
    let chunk = lines[1]["data"].as_str().unwrap();
    assert_eq!(chunk.len(), 344, "256 bytes in base64");
}

#[test]
fn a_connection_can_switch_back_to_text() {
    let mut w = json_world();
    let c = w.user("tex");
    w.send(c, "/mode json\n/mode text\n/ping t\n");
    let lines = w.lines(c);
    assert!(lines[0].starts_with('{'));
    assert_eq!(lines[1..], ["Mode: text".to_string(), "PONG t".to_string()]);
}

#[test]
fn a_registration_over_the_limit_is_a_too_many_registrations_error_in_json_mode() {
    let mut w = World::new(Config {
        max_registrations_per_address: 1,
        ..Config::default()
    });
    w.user("first");
    let c = w.connect();
    w.send(c, "/mode json\n");
    w.lines(c);
    w.send(c, &format!("/register second {PASSWORD}\n"));
    let error = json_lines(&mut w, c)
        .into_iter()
        .find(|v| v["type"] == "error")
        .expect("an error line");
    assert_eq!(error["code"], "too_many_registrations");
    assert_eq!(
        error["message"],
        "too many new accounts from your address; try again in 600 s"
    );
}

#[test]
fn a_connection_opened_in_json_mode_gets_its_banner_and_refusals_as_json() {
    let mut w = json_world();
    let peer = "127.0.0.1:40000".parse().expect("test address");
    let c = w
        .engine
        .handle_connect_in(peer, wur2_engine::Mode::Json, w.now);
    w.drain();
    let opening = json_lines(&mut w, c);
    assert_eq!(types(&opening), ["info", "prompt"]);
    assert_eq!(opening[1]["prompt"], "account");
    w.send(c, "/msg tina hi\n");
    let refusal = json_lines(&mut w, c);
    assert_eq!(refusal[0]["type"], "error");
    assert_eq!(refusal[0]["code"], "not_logged_in");

    // A full address is refused in the client's mode too.
    w.engine = wur2_engine::Engine::new(Config {
        max_connections_per_address: 0,
        ..Config::default()
    });
    let c = w
        .engine
        .handle_connect_in(peer, wur2_engine::Mode::Json, w.now);
    w.drain();
    let refused = json_lines(&mut w, c);
    assert_eq!(refused[0]["code"], "too_many_connections");
}

/// A new connection in JSON mode, with what it was sent so far taken.
fn json_connection(w: &mut World) -> ConnectionId {
    let c = w.connect();
    w.lines(c);
    w.send(c, "/mode json\n");
    w.lines(c);
    c
}

#[test]
fn a_json_client_gets_a_resume_token_in_its_login_round_trip_and_resumes_with_it() {
    let mut w = json_world();
    w.user("jay");
    let c = json_connection(&mut w);
    // One write: the login and the token request behind it.
    w.send(c, &format!("/login jay {PASSWORD}\n/token\n"));
    let reply = json_lines(&mut w, c);
    assert_eq!(types(&reply)[..2], ["welcome", "channel"]);
    assert_eq!(types(&reply).last(), Some(&"token"), "{reply:?}");
    let token = reply
        .last()
        .and_then(|v| v["token"].as_str())
        .expect("token");
    assert_eq!(token.len(), 32);
    let again = json_connection(&mut w);
    w.send(again, &format!("/resume jay {token}\n"));
    let welcome = json_lines(&mut w, again);
    assert_eq!(welcome[0]["type"], "welcome", "{welcome:?}");
    assert_eq!(welcome[0]["user"], "jay");
    // A login that fails answers the token request too, in order, and gives none.
    let wrong = json_connection(&mut w);
    w.send(wrong, "/login jay not-the-password\n/token\n");
    let refused = json_lines(&mut w, wrong);
    assert!(refused.iter().all(|v| v["type"] != "token"), "{refused:?}");
    assert_eq!(
        refused.last().map(|v| &v["type"]),
        Some(&Value::from("error"))
    );
}
