//! Cluster mode, simulated: several engines joined by a bus that delays, reorders between
//! publishers, duplicates, loses and partitions, as NATS can (one publisher's messages to
//! one receiver stay in order). Checked against what one node would do: every member on
//! every node gets each channel message once, in each sender's order; `/list` and
//! `/channels` count every node; joins and departures are heard across nodes; a silent
//! node's users leave. Replay one seed of the randomized test with
//! `WUR2_SIM_SEED=<seed> cargo test -p wur2-engine --test cluster_simulation`.

mod support;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use support::{PASSWORD, Rng, World};
use wur2_engine::{ClusterConfig, Config, ConnectionId, Role, Topic};

/// The nodes and the bus between them.
struct Net {
    nodes: Vec<World>,
    rng: Rng,
    /// What is on its way from one node to another, in the order published.
    links: BTreeMap<(usize, usize), VecDeque<Bytes>>,
    /// Chance (in percent) that a publication reaches a node twice.
    duplicate_percent: u64,
    /// Nodes cut off from the bus: what they publish and what is for them is lost.
    cut: BTreeSet<usize>,
}

fn node_name(index: usize) -> String {
    format!("n{index}")
}

impl Net {
    fn new(nodes: usize, seed: u64) -> Net {
        Net::with_config(nodes, seed, Config::default())
    }

    /// Nodes with `config`, each with its own name and message ids.
    fn with_config(nodes: usize, seed: u64, config: Config) -> Net {
        let mut net = Net {
            nodes: (0..nodes)
                .map(|i| {
                    World::new(Config {
                        cluster: Some(ClusterConfig::new(node_name(i))),
                        message_id_origin: i as u64 + 1,
                        flood_lines_per_second: 0,
                        // Every test user registers from 127.0.0.1.
                        max_registrations_per_address: 0,
                        max_registrations_per_minute: 0,
                        ..config.clone()
                    })
                })
                .collect(),
            rng: Rng::new(seed),
            links: BTreeMap::new(),
            duplicate_percent: 0,
            cut: BTreeSet::new(),
        };
        for node in &mut net.nodes {
            let now = node.now;
            node.engine.handle_bus_connected(now);
            node.drain();
        }
        net.settle();
        net
    }

    /// Puts what every node published on its way.
    fn collect(&mut self) {
        for from in 0..self.nodes.len() {
            for (topic, payload) in std::mem::take(&mut self.nodes[from].published) {
                let targets: Vec<usize> = match &topic {
                    // NATS hands a subscriber its own publications too.
                    Topic::All => (0..self.nodes.len()).collect(),
                    Topic::Node(name) => (0..self.nodes.len())
                        .filter(|&i| &node_name(i) == name)
                        .collect(),
                };
                for to in targets {
                    if self.cut.contains(&from) || self.cut.contains(&to) {
                        continue;
                    }
                    let link = self.links.entry((from, to)).or_default();
                    link.push_back(payload.clone());
                    if self.rng.chance(self.duplicate_percent) {
                        link.push_back(payload.clone());
                    }
                }
            }
        }
    }

    /// Delivers one publication from a random link; `false` when none is on its way.
    fn step(&mut self) -> bool {
        self.collect();
        let busy: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(_, queue)| !queue.is_empty())
            .map(|(&pair, _)| pair)
            .collect();
        if busy.is_empty() {
            return false;
        }
        let (from, to) = busy[self.rng.below(busy.len())];
        let Some(payload) = self
            .links
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
            return false;
        };
        let node = &mut self.nodes[to];
        let now = node.now;
        node.engine.handle_published(&payload, now);
        node.drain();
        true
    }

    /// Delivers everything on its way, and what that makes the nodes publish.
    fn settle(&mut self) {
        while self.step() {}
    }

    /// Moves every node's clock on by `by` in steps of 500 ms, settling the bus each time.
    fn advance(&mut self, by: Duration) {
        let step = Duration::from_millis(500);
        let mut done = Duration::ZERO;
        while done < by {
            for node in &mut self.nodes {
                node.advance(step);
            }
            self.settle();
            done += step;
        }
    }

    /// Registers `name` on node `node`; returns its connection there. The nodes share
    /// their accounts as they would one database: the account is added to every other
    /// node's store too (history stays apart, so what each node stored can be counted).
    fn user(&mut self, node: usize, name: &str) -> ConnectionId {
        let connection = self.nodes[node].user(name);
        for (other, world) in self.nodes.iter_mut().enumerate() {
            if other != node {
                world.store.add_account(name, PASSWORD, Role::User);
            }
        }
        self.settle();
        connection
    }

    /// Logs account `name` in (again) on node `node`.
    fn login(&mut self, node: usize, name: &str) -> ConnectionId {
        let connection = self.nodes[node].login(name);
        self.settle();
        connection
    }

    fn send(&mut self, node: usize, connection: ConnectionId, line: &str) {
        self.nodes[node].send(connection, &format!("{line}\n"));
        self.settle();
    }

    fn lines(&mut self, node: usize, connection: ConnectionId) -> Vec<String> {
        self.nodes[node].lines(connection)
    }

    /// The answer to `line` (one line) from `connection` on `node`, earlier lines dropped.
    fn ask(&mut self, node: usize, connection: ConnectionId, line: &str) -> String {
        self.lines(node, connection);
        self.send(node, connection, line);
        let mut lines = self.lines(node, connection);
        assert_eq!(lines.len(), 1, "{line}: {lines:?}");
        lines.remove(0)
    }
}

#[test]
fn a_channel_message_reaches_every_member_on_every_node_once() {
    let mut net = Net::new(3, 1);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    let carol = net.user(2, "carol");
    let dave = net.user(2, "dave");
    net.send(2, dave, "/join rust");
    for (node, connection) in [(0, alice), (1, bob), (2, carol), (2, dave)] {
        net.lines(node, connection);
    }
    net.send(0, alice, "hello everywhere");
    assert_eq!(net.lines(1, bob), ["[Global] alice: hello everywhere"]);
    assert_eq!(net.lines(2, carol), ["[Global] alice: hello everywhere"]);
    assert!(net.lines(2, dave).is_empty(), "not in Global");
    assert!(net.lines(0, alice).is_empty(), "the sender");
    // Stored once, by the node that accepted it.
    let stored: Vec<usize> = net
        .nodes
        .iter()
        .map(|node| node.store.history("Global").len())
        .collect();
    assert_eq!(stored, [1, 0, 0]);
    // One publication for the whole cluster, however many members elsewhere.
    assert_eq!(net.nodes[1].engine.stats().bus_gaps, 0);
}

#[test]
fn list_and_channels_count_the_users_of_every_node() {
    let mut net = Net::new(3, 2);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    let carol = net.user(2, "carol");
    net.nodes[1].login("bob"); // a second session, on the same node
    net.settle();
    net.send(1, bob, "/join rust");
    assert_eq!(
        net.ask(2, carol, "/list"),
        "Connected users: alice, bob, carol"
    );
    assert_eq!(
        net.ask(0, alice, "/channels"),
        "Channels: Global (3), rust (1)"
    );
    assert_eq!(net.nodes[0].engine.stats().peers, 2);
    assert_eq!(net.nodes[0].engine.stats().peer_sessions, 3);
}

#[test]
fn topic_privacy_and_invitations_made_on_one_node_apply_on_the_others() {
    let mut net = Net::new(2, 19);
    let ann = net.user(0, "ann");
    let (bob, cat) = (net.user(1, "bob"), net.user(1, "cat"));
    net.send(0, ann, "/join #club");
    net.send(1, cat, "/join #CLUB");
    net.lines(1, cat);
    net.send(0, ann, "/topic members only");
    assert_eq!(
        net.lines(1, cat),
        ["* ann set the topic of #club: members only"]
    );
    net.send(0, ann, "/private on");
    assert_eq!(
        net.lines(1, cat),
        ["* ann made #club private: only invited users may join"]
    );
    assert_eq!(
        net.ask(1, cat, "/topic something else"),
        "Error: only the owner of #club, moderators and admins can do that",
        "the owner registered on the other node owns it here too"
    );
    assert_eq!(
        net.ask(1, bob, "/join #club"),
        "Error: #club is private: ask its owner or a moderator for an /invite"
    );
    net.send(0, ann, "/invite bob");
    assert_eq!(net.lines(1, bob), ["ann invited you to #club; /join #club"]);
    net.send(1, bob, "/join #club");
    let lines = net.lines(1, bob);
    assert_eq!(
        lines[..2],
        [
            "Switched from Global to #club",
            "Topic of #club: members only"
        ]
    );
    assert_eq!(net.ask(1, bob, "/names"), "Names in #club: ann, bob, cat");
}

#[test]
fn an_away_message_set_on_one_node_shows_and_answers_on_every_node() {
    let mut net = Net::new(3, 23);
    let ann = net.user(0, "ann");
    let ann_laptop = net.login(1, "ann");
    let bob = net.user(1, "bob");
    let cat = net.user(2, "cat");
    net.settle();
    for (node, session) in [(0, ann), (1, ann_laptop), (1, bob), (2, cat)] {
        net.lines(node, session);
    }
    net.send(0, ann, "/away at lunch");
    assert_eq!(net.lines(0, ann), ["You are marked away: at lunch"]);
    assert_eq!(
        net.lines(1, ann_laptop),
        ["You are marked away: at lunch"],
        "her session on another node is told"
    );
    assert_eq!(
        net.ask(2, cat, "/list"),
        "Connected users: ann (away: at lunch), bob, cat"
    );
    // A DM sender on a node where ann has no session hears it once.
    net.send(2, cat, "/msg ann are you there?");
    assert_eq!(net.lines(2, cat), ["ann is away: at lunch"]);
    net.send(2, cat, "/msg ann hello?");
    assert!(net.lines(2, cat).is_empty(), "once per sender");
    // Where she has a session too, the message is hers there.
    net.send(1, bob, "/msg ann ping");
    assert_eq!(net.lines(1, bob), ["ann is away: at lunch"]);
    // A node that starts afresh learns it from the others' state.
    net.cut.insert(2);
    net.advance(Duration::from_secs(7));
    net.cut.clear();
    net.advance(Duration::from_secs(2));
    assert_eq!(
        net.ask(2, cat, "/list"),
        "Connected users: ann (away: at lunch), bob, cat"
    );
    // Back, from the other node: every node sees it.
    net.lines(0, ann);
    net.send(1, ann_laptop, "/away");
    assert_eq!(net.lines(0, ann), ["You are no longer marked away"]);
    assert_eq!(net.ask(2, cat, "/list"), "Connected users: ann, bob, cat");
    // A later login of ann on the third node, while away again, is away there too (the
    // answer now comes from her account on that node).
    net.send(0, ann, "/away brb");
    let ann_phone = net.login(2, "ann");
    net.settle();
    net.lines(2, ann_phone);
    net.lines(2, cat);
    net.send(2, cat, "/msg ann hi");
    assert_eq!(net.lines(2, cat), ["ann is away: brb"], "a new away period");
}

#[test]
fn members_on_other_nodes_hear_joins_and_departures() {
    let mut net = Net::new(2, 3);
    let alice = net.user(0, "alice");
    net.lines(0, alice);
    let bob = net.user(1, "bob");
    assert_eq!(net.lines(0, alice), ["* bob joined Global"]);
    net.send(1, bob, "/join rust");
    assert_eq!(net.lines(0, alice), ["* bob left Global"]);
    net.send(0, alice, "/join RUST");
    net.lines(0, alice);
    net.send(1, bob, "/close");
    assert_eq!(net.lines(0, alice), ["* bob left rust"]);
    assert_eq!(net.ask(0, alice, "/list"), "Connected users: alice");
}

#[test]
fn a_node_that_goes_silent_is_lost_and_its_users_leave_until_it_is_back() {
    let mut net = Net::new(2, 4);
    let alice = net.user(0, "alice");
    net.user(1, "bob");
    net.lines(0, alice);
    net.cut.insert(1);
    net.advance(Duration::from_secs(4));
    assert!(
        net.lines(0, alice).is_empty(),
        "not lost before the timeout"
    );
    net.advance(Duration::from_secs(3));
    assert_eq!(net.lines(0, alice), ["* bob left Global"]);
    assert_eq!(net.ask(0, alice, "/list"), "Connected users: alice");
    // Back on the bus: its next heartbeat makes it a peer again, and its state follows.
    net.cut.clear();
    net.advance(Duration::from_secs(2));
    assert_eq!(net.ask(0, alice, "/list"), "Connected users: alice, bob");
}

#[test]
fn a_lost_publication_is_noticed_and_the_nodes_state_fills_the_gap() {
    let mut net = Net::new(2, 5);
    let alice = net.user(0, "alice");
    net.cut.insert(1);
    net.user(1, "bob"); // its `enter` is lost on the way
    net.cut.clear();
    assert_eq!(net.ask(0, alice, "/list"), "Connected users: alice");
    net.advance(Duration::from_secs(1)); // the next heartbeat shows the gap
    assert_eq!(net.nodes[0].engine.stats().bus_gaps, 1);
    assert_eq!(net.ask(0, alice, "/list"), "Connected users: alice, bob");
}

#[test]
fn a_peers_bad_payload_is_refused_whole() {
    let mut net = Net::new(2, 6);
    let alice = net.user(0, "alice");
    net.lines(0, alice);
    let long_away = format!(
        r#"{{"v":1,"node":"n1","inc":2,"seq":9,"type":"away","user":"bob","text":"{}"}}"#,
        "z".repeat(5000)
    );
    let bad: [&[u8]; 7] = [
        b"not json",
        br#"{"v":2,"node":"n1","inc":2,"seq":9,"type":"chat"}"#,
        br#"{"v":1,"node":"n1","inc":2,"seq":9,"type":"chat","id":"00000000000000020000000000000009","channel":"Global","from":"bob\u001b[2J","text":"x"}"#,
        br#"{"v":1,"node":"n1","inc":2,"seq":9,"type":"enter","session":1,"user":"bob","channel":"no spaces"}"#,
        br#"{"v":1,"node":"n1","inc":2,"seq":9,"type":"away","user":"bob alice","text":"x"}"#,
        long_away.as_bytes(),
        // A node with this node's name but another incarnation.
        br#"{"v":1,"node":"n0","inc":99,"seq":1,"type":"alive"}"#,
    ];
    let node = &mut net.nodes[0];
    let before = node.engine.stats().bus_refused;
    for payload in bad {
        let now = node.now;
        node.engine.handle_published(payload, now);
        node.drain();
    }
    assert_eq!(node.engine.stats().bus_refused - before, bad.len() as u64);
    assert!(node.lines(alice).is_empty());
    assert_eq!(node.engine.stats().peer_sessions, 0);
}

/// What the randomized run checks: each message reached each member of its channel on
/// every node once, and each receiver saw each sender's messages in the order sent.
#[test]
fn randomized_traffic_over_a_bus_that_reorders_and_duplicates_is_delivered_once_in_order() {
    let seeds: Vec<u64> = match std::env::var("WUR2_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("WUR2_SIM_SEED is a number")],
        Err(_) => (100..120).collect(),
    };
    for seed in seeds {
        run_randomized(seed);
    }
}

fn run_randomized(seed: u64) {
    const CHANNELS: [&str; 3] = ["Global", "rust", "#ops"];
    let mut net = Net::new(3, seed);
    net.duplicate_percent = 15;
    let mut rng = Rng::new(seed ^ 0xC1u64);
    // (node, connection, name, channel)
    let mut clients = Vec::new();
    for i in 0..12 {
        let node = i % 3;
        let name = format!("u{i}");
        let connection = net.user(node, &name);
        let channel = CHANNELS[rng.below(CHANNELS.len())];
        if channel != "Global" {
            net.send(node, connection, &format!("/join {channel}"));
        }
        clients.push((node, connection, name, channel));
    }
    for &(node, connection, _, _) in &clients {
        net.lines(node, connection);
    }
    // Messages go out while the bus is busy: several before anything is carried.
    let mut sent: Vec<(usize, String)> = Vec::new(); // (sender index, text)
    let mut direct: Vec<(usize, usize, String)> = Vec::new(); // (sender, recipient, text)
    for k in 0..150 {
        let who = rng.below(clients.len());
        let (node, connection, _, _) = clients[who];
        if rng.chance(20) {
            let to = (who + 1 + rng.below(clients.len() - 1)) % clients.len();
            let text = format!("d{k}");
            let line = format!("/msg {} {text}\n", clients[to].2);
            net.nodes[node].send(connection, &line);
            direct.push((who, to, text));
        } else {
            let text = format!("m{k}");
            net.nodes[node].send(connection, &format!("{text}\n"));
            sent.push((who, text));
        }
        for _ in 0..rng.below(4) {
            net.step();
        }
    }
    net.settle();
    for (receiver, &(node, connection, _, channel)) in clients.iter().enumerate() {
        let lines = net.lines(node, connection);
        let mut expected = Vec::new();
        for (who, text) in &sent {
            let (_, _, from, from_channel) = &clients[*who];
            if *who != receiver && *from_channel == channel {
                expected.push(format!("[{channel}] {from}: {text}"));
            }
        }
        for (who, to, text) in &direct {
            if *to == receiver {
                expected.push(format!("[DM] {}: {text}", clients[*who].2));
            }
        }
        assert_eq!(
            sorted(&lines),
            sorted(&expected),
            "seed {seed}: what u{receiver} on n{node} got"
        );
        // Each sender's messages in the order sent.
        for (who, (_, _, from, _)) in clients.iter().enumerate() {
            let prefix = format!("] {from}: m");
            let theirs = |all: &[String]| -> Vec<String> {
                all.iter()
                    .filter(|l| l.contains(&prefix))
                    .cloned()
                    .collect()
            };
            assert_eq!(
                theirs(&lines),
                theirs(&expected),
                "seed {seed}: order of u{who}'s messages at u{receiver}"
            );
        }
    }
    // Every node stored what it accepted, once.
    let stored: usize = net
        .nodes
        .iter()
        .map(|node| {
            CHANNELS
                .iter()
                .map(|c| node.store.history(c).len())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(stored, sent.len(), "seed {seed}");
    for (who, to, _) in &direct {
        let (from_node, _, _, _) = clients[*who];
        assert!(
            !marked_pending(&net, from_node),
            "seed {seed}: u{to} was online, yet a message to them was put back"
        );
    }
}

fn sorted(lines: &[String]) -> Vec<String> {
    let mut lines = lines.to_vec();
    lines.sort();
    lines
}

/// Whether node `node` asked its store to put a private message back for a later login.
fn marked_pending(net: &Net, node: usize) -> bool {
    net.nodes[node]
        .store_log
        .iter()
        .any(|request| request.starts_with("MarkPending"))
}

#[test]
fn a_private_message_reaches_the_recipients_sessions_on_every_node_live() {
    let mut net = Net::new(3, 7);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    let bob_too = net.login(2, "bob");
    net.lines(1, bob);
    net.lines(2, bob_too);
    net.send(0, alice, "/msg bob psst");
    assert_eq!(net.lines(1, bob), ["[DM] alice: psst"]);
    assert_eq!(net.lines(2, bob_too), ["[DM] alice: psst"]);
    assert!(!marked_pending(&net, 0), "shown live: not put back");
    // Stored once, as delivered, by the sender's node.
    assert_eq!(net.nodes[0].store.private_messages("bob").len(), 1);
}

#[test]
fn a_private_message_whose_recipient_left_before_it_arrived_waits_for_their_login() {
    let mut net = Net::new(2, 8);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    // Sent while bob is online on n1; bob leaves before the bus carries it.
    net.nodes[0].send(alice, "/msg bob are you there\n");
    net.nodes[1].send(bob, "/close\n");
    net.settle();
    assert!(
        marked_pending(&net, 0),
        "n1 had no session to show it: put back"
    );
}

#[test]
fn a_private_message_for_a_node_that_is_then_lost_waits_for_the_recipients_login() {
    let mut net = Net::new(2, 9);
    let alice = net.user(0, "alice");
    net.user(1, "bob");
    net.cut.insert(1);
    net.send(0, alice, "/msg bob hello");
    assert!(!marked_pending(&net, 0), "n1 may still answer");
    net.advance(Duration::from_secs(7));
    assert!(marked_pending(&net, 0), "n1 was lost without answering");
}

#[test]
fn a_kick_closes_the_users_sessions_on_every_node_and_each_of_their_channels_hears_it() {
    let mut net = Net::new(3, 10);
    net.nodes[0].store.add_account("boss", PASSWORD, Role::Mod);
    let boss = net.nodes[0].login("boss");
    net.settle();
    let bob = net.user(1, "bob");
    let bob_too = net.login(2, "bob");
    let carol = net.user(2, "carol");
    net.send(2, bob_too, "/join rust");
    net.send(2, carol, "/join rust");
    net.lines(2, carol);
    net.lines(0, boss);
    net.lines(1, bob);
    net.send(0, boss, "/kick bob spam");
    assert_eq!(
        net.lines(0, boss),
        ["* bob was kicked by boss: spam", "You kicked bob."]
    );
    assert_eq!(net.lines(1, bob), ["You were kicked by boss: spam"]);
    assert!(net.nodes[1].is_closed(bob) && net.nodes[2].is_closed(bob_too));
    assert_eq!(net.lines(2, carol), ["* bob was kicked by boss: spam"]);
    assert_eq!(net.ask(0, boss, "/list"), "Connected users: boss, carol");
}

#[test]
fn a_moderator_cannot_kick_a_moderator_on_another_node() {
    let mut net = Net::new(2, 11);
    net.nodes[0].store.add_account("boss", PASSWORD, Role::Mod);
    net.nodes[1].store.add_account("other", PASSWORD, Role::Mod);
    let boss = net.nodes[0].login("boss");
    let other = net.nodes[1].login("other");
    net.settle();
    assert_eq!(
        net.ask(0, boss, "/kick other"),
        "Error: moderators cannot kick moderators or admins"
    );
    assert!(!net.nodes[1].is_closed(other));
}

#[test]
fn a_role_set_on_one_node_reaches_the_accounts_sessions_on_every_node() {
    let mut net = Net::new(2, 12);
    let admin_store = &mut net.nodes[0].store;
    admin_store.add_account("root2", PASSWORD, Role::Admin);
    admin_store.add_account("bob", PASSWORD, Role::User);
    let admin = net.nodes[0].login("root2");
    net.nodes[1].store.add_account("bob", PASSWORD, Role::User);
    let bob = net.nodes[1].login("bob");
    net.settle();
    net.lines(1, bob);
    assert_eq!(net.ask(0, admin, "/role bob mod"), "bob is now mod");
    assert_eq!(net.lines(1, bob), ["Your role is now mod (set by root2)"]);
    // Every node's view has the new role: a moderator may not kick bob any more.
    net.nodes[0]
        .store
        .add_account("modest", PASSWORD, Role::Mod);
    let modest = net.nodes[0].login("modest");
    net.settle();
    assert_eq!(
        net.ask(0, modest, "/kick bob"),
        "Error: moderators cannot kick moderators or admins"
    );
}

/// A file of `size` bytes, every byte value in turn.
fn file_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

impl Net {
    /// `connection` on `node` sends `data` as the bytes of its upload the way a client
    /// does, 64 KiB at a time while its node reads; returns how many it sent in all.
    fn upload_while_read(
        &mut self,
        node: usize,
        connection: ConnectionId,
        data: &[u8],
        mut sent: usize,
    ) -> usize {
        while sent < data.len() && !self.nodes[node].paused.contains(&connection) {
            let end = (sent + 64 * 1024).min(data.len());
            self.nodes[node].send_bytes(connection, &data[sent..end]);
            self.settle();
            sent = end;
        }
        sent
    }

    /// What `connection` on `node` received so far: its lines and files.
    fn received(&self, node: usize, connection: ConnectionId) -> support::Received {
        let transcript = self.nodes[node].transcript.get(&connection);
        support::parse_received(transcript.map_or(&[][..], Vec::as_slice))
    }
}

#[test]
fn a_file_goes_byte_exact_to_a_user_on_another_node_and_no_node_holds_more_than_the_window() {
    let mut net = Net::new(2, 13);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    net.lines(0, alice);
    net.lines(1, bob);
    // Bob reads only when the test says: what waits for him is what his node holds.
    net.nodes[1].not_reading.insert(bob);
    let data = file_bytes(1024 * 1024);
    net.send(0, alice, &format!("/send bob big.bin {}", data.len()));
    let window = net.nodes[1].engine.config().transfer_window_bytes;
    let chunk = net.nodes[1].engine.config().transfer_chunk_bytes;
    let mut sent = net.upload_while_read(0, alice, &data, 0);
    assert!(
        sent < data.len(),
        "the sender waits for the recipient's node"
    );
    let mut reads = 0;
    while net.nodes[1].engine.queued_bytes(bob) > 0 {
        assert!(
            net.nodes[1].engine.queued_bytes(bob) <= window + chunk,
            "the recipient's node holds {} bytes",
            net.nodes[1].engine.queued_bytes(bob)
        );
        net.nodes[1].start_reading(bob);
        net.nodes[1].not_reading.insert(bob);
        net.settle();
        sent = net.upload_while_read(0, alice, &data, sent);
        reads += 1;
    }
    assert_eq!(sent, data.len());
    assert!(reads >= 4, "the window held the file back ({reads} reads)");
    let received = net.received(1, bob);
    assert_eq!(received.files[&1], data, "byte-exact");
    let size = data.len();
    assert!(
        received
            .lines
            .contains(&format!("[file 1] alice is sending big.bin ({size} bytes)")),
        "{:?}",
        received.lines
    );
    assert!(
        received
            .lines
            .contains(&format!("[file 1 done] big.bin ({size} bytes) from alice"))
    );
    let lines = net.lines(0, alice);
    assert_eq!(
        lines,
        [
            format!("[file 1] sending big.bin ({size} bytes) to bob"),
            "[file 1 done] big.bin sent to bob".to_string()
        ]
    );
    // The sender's node records it, once.
    let recorded = |node: usize| {
        let store = &net.nodes[node].store;
        store
            .private_messages("bob")
            .iter()
            .filter(|m| m.text.starts_with("[file] big.bin"))
            .count()
    };
    assert_eq!((recorded(0), recorded(1)), (1, 0));
    assert_eq!(net.ask(0, alice, "/ping 1"), "PONG 1", "lines again after");
}

#[test]
fn files_from_several_senders_on_another_node_share_one_window_for_their_recipient() {
    let mut net = Net::new(2, 17);
    let alice = net.user(0, "alice");
    let carol = net.user(0, "carol");
    let bob = net.user(1, "bob");
    net.nodes[1].not_reading.insert(bob);
    let data = file_bytes(600_000);
    for sender in [alice, carol] {
        net.send(0, sender, &format!("/send bob f.bin {}", data.len()));
    }
    let window = net.nodes[1].engine.config().transfer_window_bytes;
    let chunk = net.nodes[1].engine.config().transfer_chunk_bytes;
    let mut sent = [0, 0];
    loop {
        for (n, sender) in [alice, carol].into_iter().enumerate() {
            sent[n] = net.upload_while_read(0, sender, &data, sent[n]);
        }
        let queued = net.nodes[1].engine.queued_bytes(bob);
        assert!(
            queued <= window + 2 * chunk,
            "two transfers' credit overfilled the recipient: {queued} bytes queued"
        );
        if queued == 0 {
            break;
        }
        net.nodes[1].start_reading(bob);
        net.nodes[1].not_reading.insert(bob);
        net.settle();
    }
    assert_eq!(sent, [data.len(), data.len()]);
    let received = net.received(1, bob);
    assert_eq!(received.files[&1], data);
    assert_eq!(received.files[&2], data);
    assert!(!net.nodes[1].is_closed(bob), "never a slow reader");
}

#[test]
fn a_lost_nodes_users_leaving_a_large_channel_send_no_notices() {
    let config = Config {
        join_notices_max_members: 5,
        ..Config::default()
    };
    let mut net = Net::with_config(2, 18, config);
    let here: Vec<ConnectionId> = ["ann", "ben", "cat"]
        .into_iter()
        .map(|name| net.user(0, name))
        .collect();
    for name in ["dan", "eve", "fay", "gus"] {
        net.user(1, name);
    }
    for &connection in &here {
        net.lines(0, connection);
    }
    // Seven members in Global: too many for notices. Node 1 goes silent and is lost.
    net.cut.insert(1);
    net.advance(Duration::from_secs(6));
    for &connection in &here {
        let lines = net.lines(0, connection);
        assert!(
            !lines.iter().any(|l| l.contains(" left Global")),
            "the channel was large when they left: {lines:?}"
        );
    }
    assert_eq!(
        net.ask(0, here[0], "/channels"),
        "Channels: Global (3)",
        "they are gone all the same"
    );
}

#[test]
fn a_state_overtaken_by_a_later_login_does_not_undo_it() {
    let mut net = Net::new(2, 19);
    let bob = net.user(1, "bob");
    // Node 1 asks node 0 for its state (as after reconnecting to the bus)...
    let now = net.nodes[1].now;
    net.nodes[1].engine.handle_bus_connected(now);
    net.nodes[1].drain();
    net.collect();
    let hello = net.links.get_mut(&(1, 0)).and_then(VecDeque::pop_front);
    let hello = hello.expect("node 1's hello for node 0");
    let now = net.nodes[0].now;
    net.nodes[0].engine.handle_published(&hello, now);
    net.nodes[0].drain();
    // ...node 0 answers, then alice logs in there: her arrival is published after the
    // state, on the all-nodes topic, and reaches node 1 first.
    net.nodes[0].user("alice");
    net.collect();
    let link = net
        .links
        .get_mut(&(0, 1))
        .expect("node 0's publications for node 1");
    let state = link
        .iter()
        .position(|p| String::from_utf8_lossy(p).contains(r#""type":"state""#))
        .expect("the state");
    let state = link.remove(state).expect("the state");
    link.push_back(state);
    net.settle();
    net.lines(1, bob);
    let listed = net.ask(1, bob, "/list");
    assert!(listed.contains("alice"), "{listed}");
}

#[test]
fn an_empty_file_and_one_in_json_mode_reach_a_user_on_another_node() {
    let mut net = Net::new(2, 14);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    net.send(1, bob, "/mode json");
    net.lines(0, alice);
    net.lines(1, bob);
    net.send(0, alice, "/send bob empty.txt 0");
    net.send(0, alice, "/send bob three.txt 3\nabc");
    let lines = net.lines(1, bob);
    for expected in [
        r#""data":"YWJj","id":2,"type":"file_chunk""#,
        r#""from":"alice","id":1,"name":"empty.txt","size":0,"type":"file_done""#,
        r#""from":"alice","id":2,"name":"three.txt","size":3,"type":"file_done""#,
    ] {
        assert!(lines.iter().any(|l| l.contains(expected)), "{lines:?}");
    }
    assert_eq!(
        net.lines(0, alice)
            .iter()
            .filter(|l| l.contains("done]"))
            .count(),
        2
    );
}

#[test]
fn a_server_side_file_reaches_a_user_on_another_node_read_only_as_credit_allows() {
    let config = Config {
        server_files: true,
        ..Config::default()
    };
    let mut net = Net::with_config(2, 16, config);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    net.lines(0, alice);
    let data = file_bytes(700_000);
    net.nodes[0].files.insert("big.bin".into(), data.clone());
    net.nodes[1].not_reading.insert(bob);
    net.send(0, alice, "/send bob big.bin");
    let window = net.nodes[1].engine.config().transfer_window_bytes;
    let chunk = net.nodes[1].engine.config().transfer_chunk_bytes;
    while net.nodes[1].engine.queued_bytes(bob) > 0 {
        assert!(net.nodes[1].engine.queued_bytes(bob) <= window + chunk);
        net.nodes[1].start_reading(bob);
        net.nodes[1].not_reading.insert(bob);
        net.settle();
    }
    assert_eq!(net.received(1, bob).files[&1], data);
    assert!(
        net.lines(0, alice)
            .contains(&"[file 1 done] big.bin sent to bob".to_string())
    );
    assert!(net.nodes[0].open_files.is_empty(), "the file is closed");
}

#[test]
fn a_transfer_between_nodes_ends_on_both_when_either_side_stops_or_a_node_is_lost() {
    let mut net = Net::new(3, 15);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    let carol = net.user(2, "carol");
    for (node, connection) in [(0, alice), (1, bob), (2, carol)] {
        net.lines(node, connection);
    }
    // The recipient cancels: the sender hears why, the rest of its upload is dropped.
    net.send(0, alice, "/send bob one.bin 100");
    net.send(1, bob, "/cancel 1");
    assert!(
        net.lines(1, bob)
            .contains(&"[file 1 cancelled] cancelled by bob".to_string())
    );
    assert!(
        net.lines(0, alice)
            .contains(&"[file 1 cancelled] cancelled by bob".to_string())
    );
    net.nodes[0].send_bytes(alice, &[b'x'; 100]);
    net.settle();
    assert_eq!(net.ask(0, alice, "/ping 2"), "PONG 2");
    // The sender cancels (from another session: this one's next bytes are the file's).
    net.send(0, alice, "/send bob two.bin 100");
    let alice_again = net.login(0, "alice");
    net.send(0, alice_again, "/cancel 2");
    assert!(
        net.lines(1, bob)
            .contains(&"[file 2 cancelled] cancelled by alice".to_string())
    );
    net.nodes[0].send_bytes(alice, &[b'x'; 100]);
    net.settle();
    net.lines(0, alice);
    // The sender leaves.
    let dave = net.user(0, "dave");
    net.send(0, dave, "/send bob three.bin 100");
    net.nodes[0].peer_closes(dave);
    net.settle();
    assert!(
        net.lines(1, bob)
            .contains(&"[file 3 cancelled] the sender disconnected".to_string())
    );
    // The recipient's node is lost.
    net.send(0, alice, "/send carol four.bin 100");
    net.lines(0, alice);
    net.cut.insert(2);
    net.advance(Duration::from_secs(6));
    assert!(
        net.lines(0, alice)
            .iter()
            .any(|l| l.ends_with("cancelled] the recipient's node left the cluster")),
    );
    // The cut-off node loses the sender's node, and ends its side too.
    assert!(
        net.lines(2, carol)
            .iter()
            .any(|l| l.ends_with("cancelled] the sender's node left the cluster")),
    );
    for node in 0..3 {
        let stats = net.nodes[node].engine.stats();
        assert_eq!(
            stats.transfers_active, 0,
            "node {node} still runs a transfer"
        );
    }
}

#[test]
fn a_node_back_on_the_bus_after_being_lost_is_whole_again_at_once() {
    let mut net = Net::new(2, 14);
    let alice = net.user(0, "alice");
    net.user(1, "bob");
    net.cut.insert(1);
    net.advance(Duration::from_secs(7));
    assert_eq!(net.ask(0, alice, "/list"), "Connected users: alice");
    // Its bus connection comes back: its `hello` is the first thing n0 hears from it.
    net.cut.clear();
    let node = &mut net.nodes[1];
    let now = node.now;
    node.engine.handle_bus_connected(now);
    node.drain();
    net.settle();
    assert_eq!(net.ask(0, alice, "/list"), "Connected users: alice, bob");
}

#[test]
fn a_state_that_overtakes_the_nodes_earlier_broadcasts_does_not_swallow_them() {
    let mut net = Net::new(2, 15);
    let alice = net.user(0, "alice");
    let bob = net.user(1, "bob");
    net.lines(0, alice);
    // n1 publishes a chat message, then (asked by n0) its state: the state reaches n0
    // first, as when a driver's two subscriptions are read apart.
    net.nodes[1].send(bob, "before the state\n");
    let hello = br#"{"v":1,"node":"n0","inc":1,"seq":1000,"to":"n1","type":"hello"}"#;
    let node = &mut net.nodes[1];
    let now = node.now;
    node.engine.handle_published(hello, now);
    node.drain();
    let mut published = std::mem::take(&mut net.nodes[1].published);
    assert_eq!(published.len(), 2, "the chat message, then the state");
    published.reverse();
    let n0 = &mut net.nodes[0];
    for (_, payload) in published {
        let now = n0.now;
        n0.engine.handle_published(&payload, now);
        n0.drain();
    }
    assert_eq!(n0.lines(alice), ["[Global] bob: before the state"]);
}

#[test]
fn users_of_a_node_that_shuts_down_are_seen_leaving_on_the_other_nodes() {
    let mut net = Net::new(2, 16);
    let alice = net.user(0, "alice");
    net.user(1, "bob");
    net.lines(0, alice);
    let node = &mut net.nodes[1];
    let now = node.now;
    node.engine.handle_shutdown(now);
    node.drain();
    net.settle();
    assert_eq!(net.lines(0, alice), ["* bob left Global"]);
}

#[test]
fn no_heartbeat_is_published_while_the_bus_is_down() {
    let mut net = Net::new(2, 17);
    let node = &mut net.nodes[0];
    let now = node.now;
    node.engine.handle_bus_disconnected(now);
    node.drain();
    let before = node.engine.stats().bus_published;
    node.advance(Duration::from_secs(30));
    assert_eq!(
        node.engine.stats().bus_published,
        before,
        "silent while down"
    );
    assert_eq!(
        node.engine.stats().peers,
        0,
        "n1, unheard, is lost meanwhile"
    );
    let now = node.now;
    node.engine.handle_bus_connected(now);
    node.advance(Duration::from_secs(2));
    assert!(
        node.engine.stats().bus_published >= before + 2,
        "hello, then heartbeats"
    );
}

#[test]
fn a_channel_message_is_one_publication_whatever_the_number_of_members_elsewhere() {
    let mut net = Net::new(3, 18);
    let sender = net.user(0, "sender");
    for i in 0..60 {
        net.user(1 + i % 2, &format!("member{i}"));
    }
    let before = net.nodes[0].engine.stats().bus_published;
    for k in 0..25 {
        net.send(0, sender, &format!("to all {k}"));
    }
    assert_eq!(net.nodes[0].engine.stats().bus_published - before, 25);
    // And every member elsewhere got every one.
    let delivered: u64 = net.nodes[1..]
        .iter()
        .map(|node| node.engine.stats().deliveries)
        .sum();
    assert!(delivered >= 60 * 25, "{delivered}");
}
