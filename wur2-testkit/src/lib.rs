//! # wur2-testkit
//!
//! The end-to-end suite of WUR2, written once, run against every driver. A driver's tests
//! implement [`Driver`] (start a server on a database, stop it gracefully) and write
//! `wur2_testkit::suite!(TheirDriver);`: every test of [`suite`](mod@suite) becomes two
//! `#[test]`s of that crate, one with text-mode clients and one with JSON-mode clients
//! ([`Mode`]), on SQLite and, when `WUR2_TEST_POSTGRES_URL` is set, on PostgreSQL.
//!
//! The harness is blocking, so any async runtime can sit behind a [`Driver`]; the
//! scenarios' clients run on a Tokio runtime of the kit's own ([`block_on`]), on the test's
//! thread, apart from the server's runtime.

#![forbid(unsafe_code)]

mod client;
mod db;
mod event;
pub mod scenarios;
pub mod suite;
mod target;
mod web;

use std::future::Future;
use std::path::PathBuf;

pub use db::{TEST_TIMEOUT, TestDb, config, databases, store_config};
pub use scenarios::Mode;
pub use target::{Certificate, MAX_NODES, Target, certificate, target, web_target};
use wur2_engine::Config;

/// A way to run the WUR2 server under test.
pub trait Driver {
    /// A running server.
    type Server: Server;

    /// Opens the store at `url` (with [`store_config`]), and serves it with `config` on
    /// 127.0.0.1, port 0; server-side files come from `files_dir` when given. The shutdown
    /// timeout is 10 s.
    fn start(&self, url: &str, config: Config, files_dir: Option<PathBuf>) -> Self::Server;
}

/// A server a [`Driver`] started.
pub trait Server: Send + 'static {
    /// Where clients connect, and whether over TLS.
    fn addr(&self) -> Target;

    /// Graceful shutdown; the store is closed (every append written) when this returns.
    fn stop(self);
}

thread_local! {
    /// The clients' runtime, one per test thread: a client made in one [`block_on`] is
    /// used in the next, so its sockets must stay registered with the same runtime.
    static CLIENTS: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the test clients");
}

/// Runs `future` to completion on this thread's single-threaded Tokio runtime for the
/// clients (not the server's runtime).
pub fn block_on<F: Future>(future: F) -> F::Output {
    CLIENTS.with(|runtime| runtime.block_on(future))
}

/// Shows the server's log beside a failing test when `RUST_LOG` is set.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// Runs `scenario` with clients in `mode` against a fresh server of `driver` on every test
/// database, within [`TEST_TIMEOUT`].
pub fn on_every_database<D, F, Fut>(driver: &D, config: Config, mode: Mode, scenario: F)
where
    D: Driver,
    F: Fn(Target, Mode) -> Fut,
    Fut: Future<Output = ()>,
{
    for db in block_on(databases()) {
        let server = driver.start(&db.url, config.clone(), None);
        let addr = server.addr();
        within(&db, scenario(addr, mode));
        server.stop();
    }
}

/// Runs the clients' `future` within [`TEST_TIMEOUT`], naming the database if it hangs.
pub fn within<T>(db: &TestDb, future: impl Future<Output = T>) -> T {
    block_on(async { tokio::time::timeout(TEST_TIMEOUT, future).await })
        .unwrap_or_else(|_| panic!("scenario timed out on {}", db.label))
}

/// Makes every test of [`suite`](mod@suite) two `#[test]`s against `$driver` (an expression
/// whose type implements [`Driver`]): `text::<name>` with text-mode clients and
/// `json::<name>` with JSON-mode clients, which parse every server line as JSON.
///
/// `suite!(tls: $driver)` makes one more `#[test]` per scenario, `tls::<name>`, with
/// text-mode clients over TLS: for a driver whose servers' [`Server::addr`] is a TLS
/// [`Target`] serving [`certificate`].
///
/// `suite!(web: $driver)` makes one more `#[test]` per scenario, `web::<name>`, with JSON
/// clients over WebSocket: for a driver whose servers' [`Server::addr`] is a web
/// [`Target`] ([`web_target`]).
#[macro_export]
macro_rules! suite {
    (tls: $driver:expr) => {
        $crate::suite!(@scenarios tls, $crate::Mode::Text, $driver);
    };
    (web: $driver:expr) => {
        $crate::suite!(@scenarios web, $crate::Mode::Json, $driver);
    };
    (@scenarios $module:ident, $mode:expr, $driver:expr) => {
        $crate::suite!(@mode $module, $mode, $driver;
            every_command_works_with_three_clients,
            every_login_path_works,
            history_is_replayed_on_join,
            history_pages_back_and_shows_private_conversations,
            a_user_changes_their_password_then_deletes_their_account,
            a_resume_token_logs_in_until_revoked,
            offline_message_arrives_at_next_login,
            kick_closes_every_session_of_the_target,
            the_last_admin_stays_admin,
            an_operator_role_change_reaches_a_live_session,
            accounts_history_and_channels_survive_a_restart,
            channels_keep_topics_and_admit_only_the_invited_when_private,
            away_shows_in_list_and_answers_each_sender_once,
            bans_and_mutes_from_a_moderator,
            bans_and_mutes_survive_a_restart,
            bad_input_is_answered_not_fatal,
            flooder_is_closed_others_unaffected,
            pipelined_lines_waiting_for_the_store_are_all_answered_in_order,
            slow_reader_is_dropped_others_unaffected,
            server_survives_500_connections_dropped_at_once,
            a_full_server_refuses_with_a_reason,
            shutdown_tells_everyone_and_keeps_every_message,
            idle_connections_time_out_before_login,
            server_side_files_stream_byte_exact_and_stay_inside_their_directory,
            uploads_arrive_byte_exact,
            stalled_upload_is_cancelled_and_its_sender_can_start_another,
            oversized_upload_closes_the_connection,
            failed_logins_lock_the_attackers_address_not_the_owner,
            registrations_over_the_limit_are_refused_with_a_clear_error,
        );
    };
    (@mode $module:ident, $mode:expr, $driver:expr; $($name:ident,)*) => {
        /// The suite with clients in one mode.
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $name() {
                    $crate::init_logging();
                    $crate::suite::$name(&$driver, $mode);
                }
            )*
        }
    };
    ($driver:expr) => {
        $crate::suite!(@scenarios text, $crate::Mode::Text, $driver);
        $crate::suite!(@scenarios json, $crate::Mode::Json, $driver);
    };
}
