//! Account self-service through the engine alone: `/password`, `/delete-account`, and the
//! one rule for surrounding spaces in passwords.

mod support;

use std::time::Duration;

use support::{PASSWORD, World};
use wur2_engine::{CloseReason, Config, Role};

fn world() -> World {
    World::new(Config {
        flood_lines_per_second: 0,
        ..Config::default()
    })
}

#[test]
fn a_changed_password_logs_the_other_sessions_out_and_replaces_the_old_one() {
    let mut w = world();
    let a = w.user("ann");
    let other = w.login("ann");
    w.lines(a);
    w.send(a, &format!("/password {PASSWORD} brand-new-secret\n"));
    assert_eq!(
        w.lines(a),
        [
            "Your password was changed; your other sessions were logged out.",
            "* ann left Global"
        ],
        "the other session's departure is announced, as any session's"
    );
    assert_eq!(
        w.lines(other),
        ["You were logged out: the account's password was changed in another session"]
    );
    assert_eq!(w.closed[&other].0, CloseReason::LoggedOut);
    assert!(!w.is_closed(a), "the session that changed it stays");
    let c = w.connect();
    w.send(c, &format!("/login ann {PASSWORD}\n"));
    assert!(
        w.saw(c, "invalid username or password"),
        "the old one is gone"
    );
    w.send(c, "/login ann brand-new-secret\n");
    assert!(w.saw(c, "Welcome back"));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_wrong_old_password_or_a_bad_new_one_changes_nothing_and_wrong_ones_lock_out() {
    let mut w = world();
    let a = w.user("ann");
    w.lines(a);
    w.send(a, &format!("/password {PASSWORD} short\n"));
    assert_eq!(w.lines(a), ["Error: passwords are 8 to 1024 bytes long"]);
    let failures = w.engine.config().max_login_failures_per_account_and_address;
    for _ in 0..failures {
        w.send(a, "/password not-the-one brand-new-secret\n");
        assert_eq!(w.lines(a), ["Error: wrong password"]);
    }
    w.send(a, &format!("/password {PASSWORD} brand-new-secret\n"));
    assert_eq!(
        w.lines(a),
        ["Error: too many wrong passwords; try again later"],
        "wrong passwords count as failed logins"
    );
    // The password is unchanged (checked from another address: this one is locked out).
    let c = w.connect_from("10.0.0.2");
    w.send(c, &format!("/login ann {PASSWORD}\n"));
    // The account's failures slow its logins down everywhere for a while.
    w.advance(Duration::from_secs(2));
    let lines = w.lines(c);
    assert!(
        lines.iter().any(|l| l.starts_with("Welcome back")),
        "{lines:?}"
    );
}

#[test]
fn a_deleted_account_closes_its_sessions_loses_its_messages_and_frees_its_name() {
    let mut w = world();
    let (a, b) = (w.user("ann"), w.user("ben"));
    let other = w.login("ann");
    w.send(a, "hello from ann\n");
    w.send(a, "/msg ben private words\n");
    w.lines(a);
    w.send(a, "/delete-account wrong-password\n");
    assert_eq!(w.lines(a), ["Error: wrong password"]);
    w.send(a, &format!("/delete-account {PASSWORD}\n"));
    assert_eq!(
        w.lines(a),
        ["Your account ann was deleted, with its messages. Goodbye."]
    );
    assert_eq!(w.closed[&a].0, CloseReason::AccountDeleted);
    assert_eq!(w.closed[&other].0, CloseReason::AccountDeleted);
    assert!(
        w.store.history("Global").is_empty(),
        "its messages went with it"
    );
    assert!(w.store.private_messages("ben").is_empty());
    w.lines(b);
    w.send(b, "/history @ann\n");
    assert_eq!(w.lines(b), ["No private messages with ann yet."]);
    let again = w.connect();
    w.send(again, "/register ann another-password\n");
    assert!(
        w.saw(again, "Welcome ann!"),
        "the name may be registered again"
    );
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn the_last_admin_cannot_delete_their_account() {
    let mut w = world();
    w.store.add_account("root", PASSWORD, Role::Admin);
    let root = w.login("root");
    w.lines(root);
    w.send(root, &format!("/delete-account {PASSWORD}\n"));
    assert_eq!(
        w.lines(root),
        ["Error: the last admin cannot delete their account; make another admin first"]
    );
    assert!(!w.is_closed(root));
}

#[test]
fn a_password_typed_at_the_prompt_with_spaces_around_it_works_with_login() {
    let mut w = world();
    let c = w.connect();
    w.lines(c);
    for line in ["n", "spacey", "   spaced-password   "] {
        w.send(c, &format!("{line}\n"));
    }
    assert!(w.saw(c, "Welcome spacey!"));
    let d = w.connect();
    w.send(d, "/login spacey spaced-password\n");
    assert!(
        w.saw(d, "Welcome back"),
        "one rule: surrounding spaces are not part of it"
    );
}

/// The token a `/token` answer shows.
fn token_of(line: &str) -> String {
    let (_, rest) = line
        .split_once("): ")
        .unwrap_or_else(|| panic!("not a token line: {line}"));
    rest.split(' ').next().unwrap_or_default().to_string()
}

/// Asks `connection` (logged in as `ann`) for a resume token.
fn new_token(w: &mut World, connection: wur2_engine::ConnectionId) -> String {
    w.lines(connection);
    w.send(connection, "/token\n");
    let lines = w.lines(connection);
    assert_eq!(lines.len(), 1, "{lines:?}");
    token_of(&lines[0])
}

/// Whether `/resume ann <token>` on a new connection logs in.
fn resumes(w: &mut World, token: &str) -> bool {
    let c = w.connect();
    w.send(c, &format!("/resume ann {token}\n"));
    w.lines(c).iter().any(|l| l.starts_with("Welcome back ann"))
}

#[test]
fn a_resume_token_logs_in_without_the_password_and_never_shows_in_store_requests() {
    let mut w = world();
    let a = w.user("ann");
    let token = new_token(&mut w, a);
    assert_eq!(token.len(), 32);
    w.store_log.clear();
    assert!(resumes(&mut w, &token));
    assert!(
        w.store_log.iter().any(|r| r.starts_with("Resume")),
        "{:?}",
        w.store_log
    );
    assert!(
        !w.store_log.iter().any(|r| r.starts_with("Login")),
        "no password check"
    );
    assert!(
        !w.store_log.iter().any(|r| r.contains(&token)),
        "the token never shows in a request's Debug output: {:?}",
        w.store_log
    );
    // Another account's name with this token is refused.
    w.user("bob");
    let c = w.connect();
    w.send(c, &format!("/resume bob {token}\n"));
    assert!(w.saw(c, "invalid username or password"));
}

#[test]
fn wrong_tokens_count_as_failed_logins() {
    let mut w = world();
    w.user("ann");
    let failures = w.engine.config().max_login_failures_per_account_and_address;
    let c = w.connect();
    for _ in 0..failures {
        w.send(c, "/resume ann 00000000000000000000000000000bad\n");
        // Slowed down after a few failures: let the waits pass.
        w.advance(Duration::from_secs(2));
    }
    let d = w.connect();
    w.send(d, "/resume ann 00000000000000000000000000000bad\n");
    assert!(
        w.saw(d, "too many failed logins"),
        "locked out like passwords"
    );
}

#[test]
fn a_password_change_logout_everywhere_and_expiry_revoke_tokens() {
    let mut w = world();
    let a = w.user("ann");
    let other = w.login("ann");
    let first = new_token(&mut w, a);
    w.send(a, "/logout-everywhere\n");
    assert_eq!(
        w.lines(a),
        [
            "Your resume tokens were revoked and your other sessions logged out.",
            "* ann left Global"
        ]
    );
    assert_eq!(
        w.lines(other),
        ["You were logged out: another session of the account logged out everywhere"]
    );
    assert!(!resumes(&mut w, &first), "revoked by /logout-everywhere");

    let second = new_token(&mut w, a);
    w.send(a, &format!("/password {PASSWORD} brand-new-secret\n"));
    w.lines(a);
    assert!(!resumes(&mut w, &second), "revoked by /password");

    let third = new_token(&mut w, a);
    w.store
        .set_clock(wur2_engine::memory_store::MEMORY_TOKEN_LIFETIME_MS + 1, 1);
    assert!(!resumes(&mut w, &third), "expired by the store's clock");
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_ban_revokes_resume_tokens_and_a_banned_account_cannot_resume() {
    let mut w = world();
    let a = w.user("ann");
    let token = new_token(&mut w, a);
    w.store.add_account("mo", PASSWORD, Role::Mod);
    let mo = w.login("mo");
    w.send(mo, "/ban ann 10m spam\n");
    assert!(w.is_closed(a), "the ban closed the session");
    assert!(!resumes(&mut w, &token), "banned");
    w.send(mo, "/unban ann\n");
    assert!(
        !resumes(&mut w, &token),
        "revoked by the ban, even once it is lifted"
    );
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}
