//! Durable delivery: a message reaches anyone only once the store has committed it, so
//! whatever a client received is in history even if the server dies the next moment.

mod support;

use support::{PASSWORD, World};
use wur2_engine::{Config, StoreError};

/// A world whose store answers only when the test releases it.
fn holding_world() -> World {
    let mut w = World::default_world();
    w.store.set_holding(true);
    w
}

/// Registers `name` while the store holds its answers.
fn user(w: &mut World, name: &str) -> wur2_engine::ConnectionId {
    let connection = w.connect();
    w.send(connection, &format!("/register {name} {PASSWORD}\n"));
    w.release_store();
    assert!(w.saw(connection, &format!("Welcome {name}!")));
    connection
}

#[test]
fn a_channel_message_reaches_members_only_once_it_is_committed() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.lines(ann);
    w.send(bob, "hello\n");
    let early = w.lines(ann);
    assert!(early.is_empty(), "nothing before the commit: {early:?}");
    assert!(w.store.history("Global").is_empty());
    w.release_store();
    assert_eq!(w.lines(ann), ["[Global] bob: hello"]);
    assert_eq!(w.store.history("Global").len(), 1);
}

#[test]
fn a_private_message_reaches_its_online_recipient_only_once_it_is_committed() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.lines(ann);
    w.send(bob, "/msg ann psst\n");
    assert!(w.lines(ann).is_empty(), "nothing before the commit");
    w.release_store();
    assert_eq!(w.lines(ann), ["[DM] bob: psst"]);
}

#[test]
fn a_message_the_store_cannot_commit_reaches_nobody_and_its_sender_is_told() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.lines(ann);
    w.lines(bob);
    w.store
        .set_failure(Some(StoreError::Unavailable("disk full".into())));
    w.send(bob, "lost\n");
    w.release_store();
    assert!(w.lines(ann).is_empty());
    let told = w.lines(bob);
    assert!(
        told.iter().any(|l| l.contains("storage is unavailable")),
        "{told:?}"
    );
    assert!(w.store.history("Global").is_empty());
}

#[test]
fn a_senders_next_command_waits_for_their_message_to_be_committed() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.lines(ann);
    w.send(bob, "bye all\n/join elsewhere\n");
    assert!(
        w.lines(ann).is_empty(),
        "bob has not left before his message is out"
    );
    w.release_store();
    assert_eq!(
        w.lines(ann),
        ["[Global] bob: bye all", "* bob left Global"],
        "what bob did reaches ann in the order he did it"
    );
}

#[test]
fn messages_are_delivered_in_the_order_accepted_whatever_order_the_store_answers_in() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    let cat = user(&mut w, "cat");
    w.lines(ann);
    w.send(bob, "first\n");
    w.send(cat, "second\n");
    // The later append is answered first: it waits for the earlier one.
    let (id, reply) = w.store.release(1).expect("cat's append");
    w.engine.handle_store_reply(id, reply, w.now);
    w.drain();
    assert!(w.lines(ann).is_empty());
    w.release_store();
    assert_eq!(
        w.lines(ann),
        ["[Global] bob: first", "[Global] cat: second"]
    );
}

#[test]
fn a_member_who_joins_while_a_message_is_held_reads_it_once_in_history() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.lines(ann);
    w.lines(bob);
    let asked_before = w.store_log.len();
    w.send(bob, "welcome\n");
    let cat = w.connect();
    w.send(cat, &format!("/register cat {PASSWORD}\n"));
    // cat logs in, and so joins Global, while bob's append (the oldest request) is still
    // held; the history of the join is asked after the append, so it is answered after
    // it (as a real store's history waits for the appends queued before it). (A `/join`
    // typed while a message is held waits for it instead: see the tests below.)
    let asked_global = |w: &World| {
        w.store_log[asked_before..]
            .iter()
            .any(|r| r.starts_with("FetchHistory { channel: \"Global\""))
    };
    while !asked_global(&w) {
        let (id, reply) = w.store.release(1).expect("held");
        w.engine.handle_store_reply(id, reply, w.now);
        w.drain();
    }
    assert_eq!(w.lines(ann), ["* cat joined Global"]);
    w.release_store();
    assert_eq!(w.lines(ann), ["[Global] bob: welcome"]);
    let cat_lines = w.lines(cat);
    let copies = cat_lines
        .iter()
        .filter(|l| l.ends_with("bob: welcome"))
        .count();
    assert_eq!(copies, 1, "{cat_lines:?}");
    assert!(
        cat_lines
            .iter()
            .any(|l| l.starts_with("[history") && l.ends_with("bob: welcome")),
        "{cat_lines:?}"
    );
}

#[test]
fn a_private_message_whose_recipient_left_before_the_commit_waits_for_their_next_login() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.send(bob, "/msg ann catch you later\n");
    w.peer_closes(ann);
    w.release_store();
    assert!(
        w.store_log.iter().any(|r| r.starts_with("MarkPending")),
        "{:?}",
        w.store_log
    );
    let ann = w.connect();
    w.send(ann, &format!("/login ann {PASSWORD}\n"));
    w.release_store();
    let lines = w.lines(ann);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[offline DM") && l.ends_with("bob: catch you later")),
        "{lines:?}"
    );
}

#[test]
fn a_sender_may_send_messages_up_to_the_limit_before_the_first_is_committed() {
    // Flood control off: the limit under test is the only one.
    let mut w = World::new(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    });
    w.store.set_holding(true);
    let limit = w.engine.config().max_uncommitted_messages;
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.lines(ann);
    let sent: Vec<String> = (0..limit + 8).map(|n| format!("line {n}")).collect();
    let appends = |w: &World| {
        w.store_log
            .iter()
            .filter(|r| r.starts_with("AppendChannelMessage"))
            .count()
    };
    let before = appends(&w);
    w.send(bob, &(sent.join("\n") + "\n"));
    assert_eq!(
        appends(&w) - before,
        limit,
        "the first {limit} go to the store at once"
    );
    assert!(w.paused.contains(&bob), "then bob's input waits");
    assert!(w.lines(ann).is_empty());
    w.release_store();
    let expected: Vec<String> = sent.iter().map(|t| format!("[Global] bob: {t}")).collect();
    assert_eq!(w.lines(ann), expected, "all of them, in order");
    assert!(!w.paused.contains(&bob));
}

#[test]
fn a_command_waits_for_older_messages_of_others_even_when_its_senders_commit_first() {
    let mut w = holding_world();
    let _ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    let cat = user(&mut w, "cat");
    w.lines(bob);
    w.send(cat, "older\n");
    w.send(bob, "mine\n/join elsewhere\n");
    // The store answers bob's append first: his /join must still wait for cat's message.
    let (id, reply) = w.store.release(1).expect("bob's append is held");
    w.engine.handle_store_reply(id, reply, w.now);
    w.drain();
    assert!(w.lines(bob).is_empty(), "bob is still in Global, waiting");
    w.release_store();
    let lines = w.lines(bob);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("[Global] cat: older"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l == "Switched from Global to elsewhere"),
        "{lines:?}"
    );
}

#[test]
fn steady_chat_by_others_does_not_hold_a_command_up_for_ever() {
    let mut w = holding_world();
    let ann = user(&mut w, "ann");
    let bob = user(&mut w, "bob");
    w.lines(bob);
    w.send(ann, "one\n");
    w.send(bob, "/ping waiting\n");
    // ann's first message is committed; newer ones are held, accepted after bob's line.
    let (id, reply) = w.store.release(0).expect("ann's append is held");
    w.send(ann, "two\n");
    w.engine.handle_store_reply(id, reply, w.now);
    w.drain();
    assert!(
        w.saw(bob, "PONG waiting"),
        "answered while ann's later message is still held"
    );
}
