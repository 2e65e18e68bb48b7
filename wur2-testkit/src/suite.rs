//! Every end-to-end test, as a function of the [`Driver`] under test and the clients'
//! [`Mode`]; [`suite!`](crate::suite!) turns each into two `#[test]`s, one per mode. Each
//! runs on every test database.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use wur2_engine::{Config, Role};

use crate::scenarios::{self, Client, Event, Mode, STEP, is_error, unique};
use crate::{Driver, Server, block_on, config, databases, on_every_database, within};

/// Three users log in three ways, then use every command.
pub fn every_command_works_with_three_clients(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::every_command_with_three_clients,
    );
}

/// Interactive and one-line login and registration, and their refusals.
pub fn every_login_path_works(driver: &impl Driver, mode: Mode) {
    on_every_database(driver, config(), mode, scenarios::every_login_path);
}

/// A channel's history is replayed on `/join`.
pub fn history_is_replayed_on_join(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::history_is_replayed_on_join,
    );
}

/// `/history` pages and private conversations.
pub fn history_pages_back_and_shows_private_conversations(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::history_pages_back_and_shows_private_conversations,
    );
}

/// `/password` and `/delete-account`.
pub fn a_user_changes_their_password_then_deletes_their_account(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::a_user_changes_their_password_then_deletes_their_account,
    );
}

/// `/token`, `/resume` and `/logout-everywhere`.
pub fn a_resume_token_logs_in_until_revoked(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::a_resume_token_logs_in_until_revoked,
    );
}

/// A private message to an offline user arrives at their next login.
pub fn offline_message_arrives_at_next_login(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::offline_message_arrives_at_next_login,
    );
}

/// A moderator's `/kick` closes every session of its target.
pub fn kick_closes_every_session_of_the_target(driver: &impl Driver, mode: Mode) {
    with_operator_granting(driver, Role::Mod, |addr, grant| {
        scenarios::kick_closes_every_session_of_the_target(addr, mode, grant)
    });
}

/// Gives a user a role from the operator's side, as `wur2 role` does.
type Grant = Box<dyn FnOnce(String) -> Pin<Box<dyn Future<Output = ()>>>>;

/// A [`Grant`] of `role` through a second store on the database at `url`.
fn operator_grant(url: &str, role: Role) -> Grant {
    let url = url.to_owned();
    Box::new(move |user| {
        Box::pin(async move {
            let (store, _writer) = wur2_store::Store::open(&url, crate::store_config())
                .await
                .expect("open");
            store.set_role(&user, role).await.expect("set the role");
            store.close().await;
        })
    })
}

/// Runs `scenario` against a fresh server of `driver` on every test database, with a
/// [`Grant`] of `role` through a second store on the same database.
fn with_operator_granting<Fut: Future<Output = ()>>(
    driver: &impl Driver,
    role: Role,
    scenario: impl Fn(crate::Target, Grant) -> Fut,
) {
    for db in block_on(databases()) {
        let server = driver.start(&db.url, config(), None);
        within(&db, scenario(server.addr(), operator_grant(&db.url, role)));
        server.stop();
    }
}

/// A moderator's mute refuses a user's messages and DMs; a ban closes their sessions and
/// refuses their login whatever the password; both are listed and lifted.
pub fn bans_and_mutes_from_a_moderator(driver: &impl Driver, mode: Mode) {
    with_operator_granting(driver, Role::Mod, |addr, grant| {
        scenarios::bans_and_mutes_from_a_moderator(addr, mode, grant)
    });
}

/// Bans and mutes are still in force after a graceful restart.
pub fn bans_and_mutes_survive_a_restart(driver: &impl Driver, mode: Mode) {
    for db in block_on(databases()) {
        let server = driver.start(&db.url, config(), None);
        let grant = operator_grant(&db.url, Role::Mod);
        let names = within(
            &db,
            scenarios::bans_restart_before(server.addr(), mode, grant),
        );
        server.stop();
        let server = driver.start(&db.url, config(), None);
        within(
            &db,
            scenarios::bans_restart_after(server.addr(), mode, names),
        );
        server.stop();
    }
}

/// A role set from the operator's side reaches a live session within two seconds.
pub fn an_operator_role_change_reaches_a_live_session(driver: &impl Driver, mode: Mode) {
    with_operator_granting(driver, Role::Mod, |addr, grant| {
        scenarios::an_operator_role_change_reaches_a_live_session(addr, mode, grant)
    });
}

/// The last admin cannot take the admin role from themselves.
pub fn the_last_admin_stays_admin(driver: &impl Driver, mode: Mode) {
    with_operator_granting(driver, Role::Admin, |addr, grant| {
        scenarios::the_last_admin_stays_admin(addr, mode, grant)
    });
}

/// Topics, private channels and invitations; `/names`.
pub fn channels_keep_topics_and_admit_only_the_invited_when_private(
    driver: &impl Driver,
    mode: Mode,
) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::channels_keep_topics_and_admit_only_the_invited_when_private,
    );
}

/// `/away` in `/list` and as the answer to a private message.
pub fn away_shows_in_list_and_answers_each_sender_once(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::away_shows_in_list_and_answers_each_sender_once,
    );
}

/// Accounts, history, topics and private channels with their invitations are still there
/// after a graceful restart.
pub fn accounts_history_and_channels_survive_a_restart(driver: &impl Driver, mode: Mode) {
    for db in block_on(databases()) {
        let server = driver.start(&db.url, config(), None);
        let names = within(&db, scenarios::restart_before(server.addr(), mode));
        server.stop();
        let server = driver.start(&db.url, config(), None);
        within(&db, scenarios::restart_after(server.addr(), mode, names));
        server.stop();
    }
}

/// Overlong lines, invalid UTF-8 and terminal escapes are answered, not fatal.
pub fn bad_input_is_answered_not_fatal(driver: &impl Driver, mode: Mode) {
    let config = config();
    let max = config.max_line_bytes;
    on_every_database(driver, config, mode, |addr, mode| {
        scenarios::bad_input_is_answered_not_fatal(addr, mode, max)
    });
}

/// A flooder is closed with a reason; the others keep chatting.
pub fn flooder_is_closed_others_unaffected(driver: &impl Driver, mode: Mode) {
    let config = Config {
        flood_lines_per_second: 10,
        flood_burst: 20,
        ..config()
    };
    on_every_database(
        driver,
        config,
        mode,
        scenarios::flooder_is_closed_others_unaffected,
    );
}

/// With flood control off, a bot pipelining 300 lines that wait for the store is paused,
/// not closed, and gets every answer in order.
pub fn pipelined_lines_waiting_for_the_store_are_all_answered_in_order(
    driver: &impl Driver,
    mode: Mode,
) {
    let config = Config {
        flood_lines_per_second: 0,
        ..config()
    };
    on_every_database(
        driver,
        config,
        mode,
        scenarios::pipelined_lines_are_all_answered_in_order,
    );
}

/// A client that never reads is dropped; nobody else waits for it.
pub fn slow_reader_is_dropped_others_unaffected(driver: &impl Driver, mode: Mode) {
    let config = Config {
        max_queued_bytes: 256 * 1024,
        ..config()
    };
    on_every_database(driver, config, mode, |addr, mode| {
        scenarios::slow_reader_is_dropped_others_unaffected(addr, mode, 10_000)
    });
}

/// 500 connections opened and dropped at once leave a working server.
pub fn server_survives_500_connections_dropped_at_once(driver: &impl Driver, mode: Mode) {
    on_every_database(driver, config(), mode, |addr, mode| {
        scenarios::many_connections_dropped_at_once(addr, mode, 500)
    });
}

/// Past `max_connections`, a new client is told why and closed.
///
/// The refused client is a text client in both modes: the server refuses it as it connects,
/// before it can ask for JSON, so its refusal is text by necessity (`docs/PROTOCOL.md`).
/// The clients that got in use `mode`.
pub fn a_full_server_refuses_with_a_reason(driver: &impl Driver, mode: Mode) {
    let config = Config {
        max_connections: 2,
        ..config()
    };
    on_every_database(driver, config, mode, |addr, mode| async move {
        // `max_connections` is each node's own: in a cluster, all three on one node.
        let addr = addr.first_node();
        let mut first = Client::register(addr, mode, &unique("f1")).await;
        let mut second = Client::connect(addr, mode).await;
        // Taken in (greeted) before the third connects: TLS clients finish their
        // handshakes in tasks of their own, so otherwise the third could be taken in first.
        assert!(second.next_event().await.is_some(), "second: no greeting");
        let mut third = Client::connect(addr, Mode::Text).await;
        let said = third.expect_closed().await;
        assert!(
            said.iter().any(|event| is_error(event, "server_full")),
            "{said:#?}"
        );
        first.barrier().await;
    });
}

/// A graceful shutdown tells every user and loses no message.
pub fn shutdown_tells_everyone_and_keeps_every_message(driver: &impl Driver, mode: Mode) {
    for db in block_on(databases()) {
        let server = driver.start(&db.url, config(), None);
        let addr = server.addr();
        let room = unique("sd");
        let (mut alice, mut bob) = within(&db, async {
            let mut alice = Client::register(addr, mode, &unique("sa")).await;
            let mut bob = Client::register(addr, mode, &unique("sb")).await;
            for client in [&mut alice, &mut bob] {
                client.send(&format!("/join {room}")).await;
                client.barrier().await;
            }
            for n in 0..200 {
                alice.send(&format!("last words {n}")).await;
            }
            alice.barrier().await;
            (alice, bob)
        });
        let stopping = std::thread::spawn(move || server.stop());
        within(&db, async {
            for client in [&mut alice, &mut bob] {
                let last = client.expect_closed().await;
                assert!(last.contains(&Event::Shutdown), "{last:#?}");
            }
        });
        stopping.join().expect("shutdown does not panic");

        // Every message of the channel was written before the server stopped.
        let config = Config {
            history_replay: 200,
            ..config()
        };
        let server = driver.start(&db.url, config, None);
        let addr = server.addr();
        within(&db, async {
            let mut carol = Client::register(addr, mode, &unique("sc")).await;
            carol.send(&format!("/join {room}")).await;
            for n in 0..200 {
                carol
                    .expect(Event::history(
                        &room,
                        &alice.name,
                        &format!("last words {n}"),
                    ))
                    .await;
            }
        });
        server.stop();
    }
}

/// A connection that does not log in is closed with a reason.
pub fn idle_connections_time_out_before_login(driver: &impl Driver, mode: Mode) {
    let config = Config {
        login_timeout: Duration::from_millis(300),
        ..config()
    };
    on_every_database(driver, config, mode, |addr, mode| async move {
        let mut idle = Client::connect(addr, mode).await;
        let said = tokio::time::timeout(STEP, idle.expect_closed())
            .await
            .expect("closed in time");
        assert!(
            said.iter().any(|event| is_error(event, "login_timeout")),
            "{said:#?}"
        );
    });
}

/// Server-side files arrive byte-exact; nothing outside the directory is served, and
/// nothing that is not a regular file (a FIFO) holds up the server.
pub fn server_side_files_stream_byte_exact_and_stay_inside_their_directory(
    driver: &impl Driver,
    mode: Mode,
) {
    let root = tempfile::tempdir().expect("temporary directory");
    let files = root.path().join("files");
    std::fs::create_dir(&files).expect("files directory");
    let mut content = Vec::new();
    for n in 0..20_000 {
        content.extend_from_slice(format!("line {n} of a text file\twith a tab\n").as_bytes());
    }
    std::fs::write(files.join("notes.txt"), &content).expect("a file");
    std::fs::write(root.path().join("secret.txt"), b"not for you").expect("a secret");
    std::os::unix::fs::symlink(root.path().join("secret.txt"), files.join("escape.txt"))
        .expect("a symlink");
    let made = std::process::Command::new("mkfifo")
        .arg(files.join("pipe"))
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    for db in block_on(databases()) {
        let server = driver.start(&db.url, config(), Some(files.clone()));
        within(
            &db,
            scenarios::server_file_arrives_byte_exact(
                server.addr(),
                mode,
                "notes.txt",
                &content,
                "escape.txt",
                "pipe",
            ),
        );
        server.stop();
    }
}

/// A user's upload to another user arrives byte-exact; a refused one is discarded.
pub fn uploads_arrive_byte_exact(driver: &impl Driver, mode: Mode) {
    on_every_database(driver, config(), mode, scenarios::upload_arrives_byte_exact);
}

/// A stalled upload is cancelled after the transfer idle timeout, and its sender (with one
/// transfer slot) can start another.
pub fn stalled_upload_is_cancelled_and_its_sender_can_start_another(
    driver: &impl Driver,
    mode: Mode,
) {
    let config = Config {
        transfer_idle_timeout: Duration::from_millis(300),
        max_transfers_per_user: 1,
        ..config()
    };
    on_every_database(driver, config, mode, scenarios::stalled_upload_is_cancelled);
}

/// An upload announcing more than the file size limit closes the connection with an error.
pub fn oversized_upload_closes_the_connection(driver: &impl Driver, mode: Mode) {
    on_every_database(
        driver,
        config(),
        mode,
        scenarios::oversized_upload_closes_the_connection,
    );
}

/// Wrong passwords from one address lock that address out of the account, not its owner;
/// a new address gets in after the account-wide slowdown.
pub fn failed_logins_lock_the_attackers_address_not_the_owner(driver: &impl Driver, mode: Mode) {
    // Failed logins are counted by each node (per address and per account): in a cluster,
    // every attempt goes to one node.
    on_every_database(driver, config(), mode, |addr, mode| {
        scenarios::failed_logins_lock_the_attacker_not_the_owner(addr.first_node(), mode)
    });
}

/// Registrations past the per-address limit get `too_many_registrations`; other addresses
/// still register.
pub fn registrations_over_the_limit_are_refused_with_a_clear_error(
    driver: &impl Driver,
    mode: Mode,
) {
    let config = Config {
        max_registrations_per_address: 2,
        ..config()
    };
    // Registrations are counted by each node (per address): in a cluster, every attempt
    // goes to one node.
    on_every_database(driver, config, mode, |addr, mode| {
        scenarios::registrations_over_the_limit_are_refused(addr.first_node(), mode, 2)
    });
}
