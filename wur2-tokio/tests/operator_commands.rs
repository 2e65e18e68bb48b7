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
