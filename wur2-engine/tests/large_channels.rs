//! Channels too large for join and leave notices (`Config::join_notices_max_members`):
//! nobody hears who comes and goes there, so a login storm into a big channel does not
//! send every member a notice per newcomer; `/channels` still counts everyone.

mod support;

use support::World;
use wur2_engine::Config;

fn world(limit: usize) -> World {
    World::new(Config {
        flood_lines_per_second: 0,
        join_notices_max_members: limit,
        // Every test user registers from 127.0.0.1.
        max_registrations_per_address: 0,
        max_registrations_per_minute: 0,
        max_connections_per_address: 10_000,
        ..Config::default()
    })
}

#[test]
fn joins_and_departures_are_announced_only_while_the_channel_is_small() {
    let mut w = world(3);
    let (a, b, c, d) = (w.user("ann"), w.user("ben"), w.user("cat"), w.user("dan"));
    w.lines(a);
    w.send(a, "/join room\n");
    w.send(b, "/join room\n");
    w.send(c, "/join room\n");
    assert_eq!(
        w.lines(a),
        [
            "Switched from Global to room",
            "* ben joined room",
            "* cat joined room"
        ]
    );
    w.send(d, "/join room\n");
    assert!(
        w.lines(a).is_empty(),
        "a fourth member is past the limit: no notice"
    );
    w.send(d, "/channels\n");
    assert!(w.saw(d, "room (4)"), "the count is still right");
    w.send(d, "/join Global\n");
    assert!(
        w.lines(a).is_empty(),
        "no notice of a departure from the large channel"
    );
    w.send(c, "/join Global\n");
    assert_eq!(
        w.lines(a),
        ["* cat left room"],
        "small again: departures are heard"
    );
}

#[test]
fn a_storm_of_logins_into_a_large_channel_sends_no_notices() {
    let mut w = world(50);
    let watcher = w.user("watcher");
    w.lines(watcher);
    for n in 0..200 {
        w.user(&format!("user{n}"));
    }
    let heard = w.lines(watcher);
    assert_eq!(
        heard.len(),
        49,
        "notices only while Global had at most 50 members: {} lines",
        heard.len()
    );
}
