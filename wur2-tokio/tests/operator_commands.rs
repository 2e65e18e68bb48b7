//! The `wur2` binary's operator commands and flags, run as an operator would.

use std::process::Command;

fn wur2(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wur2"))
        .args(args)
        .current_dir(dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("wur2.db").display()),
        )
        .env("RUST_LOG", "warn")
        .output()
        .expect("run wur2")
}

#[test]
fn purge_user_of_an_unknown_user_fails_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = wur2(dir.path(), &["purge-user", "nobody"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "wur2: error: cannot purge nobody: no such user"
    );
}

#[test]
fn tls_flags_go_together_and_a_bad_retention_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = wur2(dir.path(), &["--tls-listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-cert"));
    let output = wur2(dir.path(), &["--history-retention", "0s"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("longer than zero"));
}

#[test]
fn a_missing_certificate_stops_the_start_with_its_path() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let output = wur2(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            "missing.crt",
            "--tls-key",
            "missing.key",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot use the TLS certificate") && stderr.contains("missing.crt"),
        "{stderr}"
    );
}

#[test]
fn sighup_without_tls_leaves_the_server_running() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wur2"))
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("wur2.db").display()),
        )
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wur2");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let pid = child.id().to_string();
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.clone()])
            .status()
            .expect("run kill");
        assert!(status.success());
    };
    for line in lines.by_ref() {
        if line.expect("a log line").contains("listening on") {
            break;
        }
    }
    signal("HUP");
    for line in lines.by_ref() {
        if line
            .expect("a log line")
            .contains("SIGHUP: nothing to reload")
        {
            break;
        }
    }
    assert!(
        child.try_wait().expect("poll").is_none(),
        "SIGHUP stopped it"
    );
    signal("TERM");
    // Drain the log so the server never blocks on a full pipe while stopping. Its exit
    // status is not checked: a SIGTERM that wins the race with the server's own handler
    // ends it by the default action, which is what SIGTERM means anyway.
    for _ in lines {}
    child.wait().expect("wait");
}
