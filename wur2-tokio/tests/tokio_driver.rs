//! The shared chat scenarios against the Tokio driver, through its embedder API, on SQLite
//! and (when configured) PostgreSQL.

mod scenarios;
mod support;

use std::time::Duration;

use scenarios::{Client, STEP, unique};
use support::{TEST_TIMEOUT, TestServer, config, databases, on_every_database};
use wur2_engine::{Config, Role};
use wur2_tokio::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_with_three_clients() {
    on_every_database(config(), scenarios::every_command_with_three_clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_path_works() {
    on_every_database(config(), scenarios::every_login_path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_replayed_on_join() {
    on_every_database(config(), scenarios::history_is_replayed_on_join).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_message_arrives_at_next_login() {
    on_every_database(config(), scenarios::offline_message_arrives_at_next_login).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_closes_every_session_of_the_target() {
    for db in databases().await {
        let server = TestServer::start(&db.url, config()).await;
        let url = db.url.clone();
        let grant = |user: String| async move {
            // The operator's side: a second store on the same database, as `wur2 role` does.
            let (store, _writer) = wur2_store::Store::open(&url, support::store_config())
                .await
                .expect("open");
            store
                .set_role(&user, Role::Mod)
                .await
                .expect("set the role");
            store.close().await;
        };
        tokio::time::timeout(
            TEST_TIMEOUT,
            scenarios::kick_closes_every_session_of_the_target(server.addr(), grant),
        )
        .await
        .unwrap_or_else(|_| panic!("timed out on {}", db.label));
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_history_survive_a_restart() {
    for db in databases().await {
        let server = TestServer::start(&db.url, config()).await;
        let names = scenarios::restart_before(server.addr()).await;
        server.stop().await;
        let server = TestServer::start(&db.url, config()).await;
        tokio::time::timeout(TEST_TIMEOUT, scenarios::restart_after(server.addr(), names))
            .await
            .unwrap_or_else(|_| panic!("timed out on {}", db.label));
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_not_fatal() {
    let config = config();
    let max = config.max_line_bytes;
    on_every_database(config, |addr| {
        scenarios::bad_input_is_answered_not_fatal(addr, max)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooder_is_closed_others_unaffected() {
    let config = Config {
        flood_lines_per_second: 10,
        flood_burst: 20,
        ..config()
    };
    on_every_database(config, scenarios::flooder_is_closed_others_unaffected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_dropped_others_unaffected() {
    let config = Config {
        max_queued_bytes: 256 * 1024,
        ..config()
    };
    on_every_database(config, |addr| {
        scenarios::slow_reader_is_dropped_others_unaffected(addr, 10_000)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_survives_500_connections_dropped_at_once() {
    on_every_database(config(), |addr| {
        scenarios::many_connections_dropped_at_once(addr, 500)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_with_a_reason() {
    let config = Config {
        max_connections: 2,
        ..config()
    };
    on_every_database(config, |addr| async move {
        let mut first = Client::register(addr, &unique("f1")).await;
        let _second = Client::connect(addr).await;
        let mut third = Client::connect(addr).await;
        let said = third.expect_closed().await;
        assert!(
            said.iter().any(|line| line.starts_with("Error: ")),
            "{said:#?}"
        );
        first.barrier().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_everyone_and_keeps_every_message() {
    for db in databases().await {
        let server = TestServer::start(&db.url, config()).await;
        let addr = server.addr();
        let room = unique("sd");
        let mut alice = Client::register(addr, &unique("sa")).await;
        let mut bob = Client::register(addr, &unique("sb")).await;
        for client in [&mut alice, &mut bob] {
            client.send(&format!("/join {room}")).await;
            client.barrier().await;
        }
        for n in 0..200 {
            alice.send(&format!("last words {n}")).await;
        }
        alice.barrier().await;
        let stopping = tokio::spawn(server.stop());
        for client in [&mut alice, &mut bob] {
            let last = client.expect_closed().await;
            assert!(
                last.iter().any(|l| l.contains("shutting down")),
                "{last:#?}"
            );
        }
        tokio::time::timeout(Duration::from_secs(15), stopping)
            .await
            .expect("shutdown is bounded")
            .expect("shutdown does not panic");

        // Every message of the channel was written before the server stopped.
        let server = TestServer::start(
            &db.url,
            Config {
                history_replay: 200,
                ..config()
            },
        )
        .await;
        let mut carol = Client::register(server.addr(), &unique("sc")).await;
        carol.send(&format!("/join {room}")).await;
        for n in 0..200 {
            carol.expect(&format!("last words {n}")).await;
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_time_out_before_login() {
    let config = Config {
        login_timeout: Duration::from_millis(300),
        ..config()
    };
    on_every_database(config, |addr| async move {
        let mut idle = Client::connect(addr).await;
        let said = tokio::time::timeout(STEP, idle.expect_closed())
            .await
            .expect("closed in time");
        assert!(
            said.iter().any(|line| line.starts_with("Error: ")),
            "{said:#?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_files_stream_byte_exact_and_stay_inside_their_directory() {
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
    for db in databases().await {
        let options = Options {
            files_dir: Some(files.clone()),
            ..Options::default()
        };
        let server = TestServer::start_with(&db.url, config(), options).await;
        tokio::time::timeout(
            TEST_TIMEOUT,
            scenarios::server_file_arrives_byte_exact(
                server.addr(),
                "notes.txt",
                &content,
                "escape.txt",
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("timed out on {}", db.label));
        server.stop().await;
    }
}
