//! Channels that last, through the engine alone: `/topic`, `/private`, `/invite`,
//! `/names`, `/away`, the catalogue of registered channels and what survives a restart.

mod support;

use support::World;
use wur2_engine::{Config, Role, StoreError};

fn world() -> World {
    World::new(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    })
}

/// `name` logged in as a moderator, its lines taken.
fn moderator(w: &mut World, name: &str) -> wur2_engine::ConnectionId {
    w.store.add_account(name, support::PASSWORD, Role::Mod);
    let connection = w.login(name);
    w.lines(connection);
    connection
}

#[test]
fn the_first_joiner_owns_a_channel_and_sets_its_topic_which_joiners_see() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.send(ann, "/join #rust\n");
    w.send(ann, "/topic\n");
    assert_eq!(w.lines(ann).last().unwrap(), "#rust has no topic");
    w.send(ann, "/topic  All about   crabs \n");
    assert_eq!(
        w.lines(ann),
        ["* ann set the topic of #rust: All about   crabs"]
    );
    assert_eq!(
        w.store.channel("#RUST").map(|c| c.owner.clone()),
        Some(Some("ann".to_string()))
    );
    w.lines(bob);
    w.send(bob, "/join #Rust\n");
    let lines = w.lines(bob);
    assert_eq!(
        lines[..2],
        [
            "Switched from Global to #rust",
            "Topic of #rust: All about   crabs"
        ]
    );
    w.send(bob, "/topic\n");
    assert_eq!(w.lines(bob), ["Topic of #rust: All about   crabs"]);
    w.send(bob, "/channels\n");
    assert_eq!(w.lines(bob), ["Channels: #rust (2) [All about   crabs]"]);
}

#[test]
fn only_the_owner_and_moderators_change_a_channel_and_a_dash_clears_the_topic() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.send(ann, "/join side\n");
    w.send(bob, "/join side\n");
    w.lines(ann);
    w.lines(bob);
    for line in ["/topic mine now\n", "/private on\n", "/invite ann\n"] {
        w.send(bob, line);
        assert_eq!(
            w.lines(bob),
            ["Error: only the owner of side, moderators and admins can do that"],
            "{line}"
        );
    }
    w.send(bob, "/join Global\n");
    w.send(bob, "/topic welcome\n");
    assert!(
        w.saw(bob, "only the owner of Global"),
        "nobody owns the default channel"
    );
    let max = moderator(&mut w, "max");
    w.send(max, "/topic Welcome all\n");
    assert!(w.saw(bob, "* max set the topic of Global: Welcome all"));
    w.lines(max);
    w.send(max, "/private on\n");
    assert_eq!(
        w.lines(max),
        ["Error: Global is where everyone arrives: it cannot be private"]
    );
    w.send(max, "/join side\n");
    w.send(max, "/topic -\n");
    assert!(w.saw(ann, "* max cleared the topic of side"));
    assert_eq!(w.store.channel("side").map(|c| c.topic.clone()), Some(None));
}

#[test]
fn a_private_channel_refuses_the_uninvited_and_admits_the_invited_and_moderators() {
    let mut w = world();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    w.send(ann, "/join #club\n");
    w.send(ann, "/private on\n");
    assert!(w.saw(ann, "* ann made #club private: only invited users may join"));
    w.lines(bob);
    w.send(bob, "/join #CLUB\n");
    assert_eq!(
        w.lines(bob),
        ["Error: #club is private: ask its owner or a moderator for an /invite"]
    );
    w.send(bob, "/channels\n");
    assert_eq!(
        w.lines(bob),
        ["Channels: Global (2)"],
        "a private channel is listed only to those who may join it"
    );
    w.send(ann, "/invite nobody\n");
    assert_eq!(w.lines(ann), ["Error: no such user: nobody"]);
    w.send(ann, "/invite BOB\n");
    assert_eq!(w.lines(ann), ["You invited bob to #club"]);
    assert_eq!(w.lines(bob), ["ann invited you to #club; /join #club"]);
    w.send(bob, "/join #club\n");
    assert_eq!(w.lines(bob)[0], "Switched from Global to #club");
    let max = moderator(&mut w, "max");
    w.send(max, "/join #club\n");
    assert_eq!(w.lines(max)[0], "Switched from Global to #club");
    w.send(ann, "/private off\n");
    w.lines(cat);
    w.send(cat, "/join #club\n");
    assert_eq!(w.lines(cat)[0], "Switched from Global to #club");
}

#[test]
fn names_lists_the_current_channel_once_per_user() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    let ann_again = w.login("ann");
    let cat = w.user("cat");
    w.send(cat, "/join elsewhere\n");
    w.lines(ann);
    w.send(ann, "/names\n");
    assert_eq!(w.lines(ann), ["Names in Global: ann, bob"]);
    let _ = (bob, ann_again);
}

#[test]
fn away_shows_in_list_and_answers_each_dm_sender_once_until_cleared() {
    let mut w = world();
    let (ann, bob, cat) = (w.user("ann"), w.user("bob"), w.user("cat"));
    let ann_phone = w.login("ann");
    w.lines(ann);
    w.lines(ann_phone);
    w.send(ann, "/away at lunch\n");
    assert_eq!(w.lines(ann), ["You are marked away: at lunch"]);
    assert_eq!(w.lines(ann_phone), ["You are marked away: at lunch"]);
    w.lines(bob);
    w.send(bob, "/list\n");
    assert_eq!(
        w.lines(bob),
        ["Connected users: ann (away: at lunch), bob, cat"]
    );
    w.send(bob, "/msg ann hi\n");
    assert_eq!(w.lines(bob), ["ann is away: at lunch"]);
    assert!(
        w.saw(ann, "[DM] bob: hi"),
        "the message is delivered all the same"
    );
    w.send(bob, "/msg ann hi again\n");
    assert!(w.lines(bob).is_empty(), "once per sender");
    w.lines(cat);
    w.send(cat, "/msg ann hello\n");
    assert_eq!(w.lines(cat), ["ann is away: at lunch"]);
    w.lines(ann);
    w.send(ann, "/away\n");
    assert_eq!(w.lines(ann), ["You are no longer marked away"]);
    w.send(bob, "/msg ann back?\n");
    assert!(w.lines(bob).is_empty());
    w.send(ann, "/away brb\n");
    w.send(bob, "/msg ann now?\n");
    assert_eq!(w.lines(bob), ["ann is away: brb"], "a new away period");
}

#[test]
fn away_ends_when_the_account_logs_out() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.send(ann, "/away gone fishing\n");
    w.send(ann, "/close\n");
    let ann = w.login("ann");
    w.lines(bob);
    w.send(bob, "/list\n");
    assert_eq!(w.lines(bob), ["Connected users: ann, bob"]);
    w.send(bob, "/msg ann hi\n");
    assert!(w.lines(bob).is_empty());
    let _ = ann;
}

#[test]
fn topics_private_channels_and_invitations_survive_a_restart() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.send(ann, "/join #club\n");
    w.send(ann, "/topic members only\n");
    w.send(ann, "/private on\n");
    w.send(ann, "/invite bob\n");
    w.send(ann, "/join Global\n");
    let _ = bob;
    let store = std::mem::take(&mut w.store);

    let mut w = world();
    w.store = store;
    w.store.add_account("eve", support::PASSWORD, Role::User);
    let (bob, eve) = (w.login("bob"), w.login("eve"));
    w.send(eve, "/join #club\n");
    assert!(w.saw(eve, "#club is private"), "empty, and still private");
    w.lines(bob);
    w.send(bob, "/join #club\n");
    let lines = w.lines(bob);
    assert_eq!(
        lines[..2],
        [
            "Switched from Global to #club",
            "Topic of #club: members only"
        ]
    );
    let ann = w.login("ann");
    w.send(ann, "/join #club\n");
    w.send(ann, "/private off\n");
    assert!(w.saw(ann, "made #club public"), "still its owner");
}

#[test]
fn channel_commands_wait_for_the_catalogue_and_fail_cleanly_without_it() {
    let mut w = world();
    let ann = w.user("ann");
    w.send(ann, "/join #club\n");
    w.send(ann, "/private on\n");
    let store = std::mem::take(&mut w.store);

    let mut w = world();
    w.store = store;
    w.store.add_account("bob", support::PASSWORD, Role::User);
    w.store.set_holding(true);
    let bob = w.connect();
    w.send(bob, &format!("/login bob {}\n", support::PASSWORD));
    // Everything but the catalogue, the oldest request: bob logs in.
    while w.store.waiting() > 1 {
        let (id, reply) = w.store.release(1).unwrap();
        w.engine.handle_store_reply(id, reply, w.now);
        w.drain();
    }
    assert!(w.saw(bob, "Welcome back bob!"));
    w.send(bob, "/join #club\n");
    w.send(bob, "/ping after\n");
    assert!(
        !w.saw(bob, "PONG"),
        "the join and what follows it wait for the catalogue"
    );
    w.release_store();
    let lines = w.lines(bob);
    assert_eq!(
        lines,
        [
            "Error: #club is private: ask its owner or a moderator for an /invite",
            "PONG after"
        ]
    );

    let mut w = world();
    w.store
        .set_failure(Some(StoreError::Unavailable("down".into())));
    let c = w.connect();
    w.store.set_failure(None);
    w.send(c, &format!("/register cat {}\n", support::PASSWORD));
    w.lines(c);
    w.send(c, "/join side\n");
    assert_eq!(
        w.lines(c)[0],
        "Switched from Global to side",
        "a failed load is asked again at the next channel command"
    );
}

#[test]
fn a_channel_registered_elsewhere_first_keeps_its_stored_owner() {
    let mut w = world();
    w.store.add_account("zed", support::PASSWORD, Role::User);
    let ann = w.user("ann");
    // Another server registered it after this one loaded its catalogue.
    let _ = w.store.answer(&wur2_engine::StoreRequest::RegisterChannel {
        name: "#Club".into(),
        owner: Some("zed".into()),
    });
    w.send(ann, "/join #club\n");
    assert_eq!(w.lines(ann)[0], "Switched from Global to #club");
    w.send(ann, "/topic mine\n");
    assert_eq!(
        w.lines(ann),
        ["Error: only the owner of #club, moderators and admins can do that"]
    );
}

#[test]
fn a_muted_owner_sets_no_topic_and_a_muted_user_no_away_message() {
    let mut w = world();
    let ann = w.user("ann");
    w.send(ann, "/join #club\n");
    let max = moderator(&mut w, "max");
    w.send(max, "/mute ann 10m noise\n");
    w.lines(ann);
    w.send(ann, "/topic look at me\n");
    assert!(w.saw(ann, "you are muted"));
    w.send(ann, "/away shouting elsewhere\n");
    assert!(w.saw(ann, "you are muted"));
    w.send(ann, "/topic\n");
    assert_eq!(w.lines(ann), ["#club has no topic"], "reading it is fine");
    assert_eq!(
        w.store.channel("#club").map(|c| c.topic.clone()),
        Some(None)
    );
}

#[test]
fn a_registration_answered_after_a_topic_change_keeps_the_topic() {
    let mut w = world();
    let (ann, bob) = (w.user("ann"), w.user("bob"));
    w.store.set_holding(true);
    w.send(ann, "/join #club\n");
    // The registration is answered now, before the topic is set, and arrives last.
    let (registration, request) = w.store.take_held(0).unwrap();
    let early = w.store.answer(&request);
    w.release_store();
    w.send(ann, "/topic crabs\n");
    w.release_store();
    assert!(w.saw(ann, "* ann set the topic of #club: crabs"));
    w.engine.handle_store_reply(registration, early, w.now);
    w.drain();
    w.store.set_holding(false);
    w.lines(bob);
    w.send(bob, "/join #club\n");
    assert_eq!(w.lines(bob)[1], "Topic of #club: crabs");
    w.send(bob, "/topic mine\n");
    assert!(w.saw(bob, "only the owner of #club"), "ann still owns it");
}

#[test]
fn a_user_owns_at_most_the_configured_channels_and_further_ones_go_when_empty() {
    let mut w = World::new(Config {
        flood_lines_per_second: 0,
        max_channels_per_owner: 2,
        ..Config::default()
    });
    let ann = w.user("ann");
    let boss = moderator(&mut w, "boss");
    for channel in ["one", "two"] {
        w.send(ann, &format!("/join {channel}\n"));
    }
    w.lines(ann);
    w.send(ann, "/join three\n");
    assert!(
        w.lines(ann).contains(
            &"three is not registered: you own 2 channels already (the most a user may); \
              it goes away when its last member leaves"
                .to_string()
        )
    );
    assert!(w.store.channel("three").is_none(), "not stored");
    assert_eq!(
        w.store.channel("two").map(|c| c.owner.clone()),
        Some(Some("ann".into()))
    );
    w.send(ann, "/join Global\n");
    w.lines(ann);
    w.send(ann, "/channels\n");
    assert_eq!(w.lines(ann), ["Channels: Global (2), one (0), two (0)"]);
    // Moderators and admins are not held to it.
    for channel in ["m1", "m2", "m3"] {
        w.send(boss, &format!("/join {channel}\n"));
    }
    assert!(w.lines(boss).iter().all(|l| !l.contains("not registered")));
    assert_eq!(
        w.store.channel("m3").map(|c| c.owner.clone()),
        Some(Some("boss".into()))
    );
}
