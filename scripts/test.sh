#!/usr/bin/env bash
# The one command that runs every check and test of WUR2 (README.md; `.ci/run` calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
# A clean clone gains nothing from incremental caches; in CI they only fill the disk.
if [[ "${CI:-}" == true ]]; then export CARGO_INCREMENTAL=0; fi

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace
# PostgreSQL for the wur2-store suite (exports WUR2_TEST_POSTGRES_URL; fails in CI when it
# cannot start, warns and lets those tests skip elsewhere).
source scripts/postgres.sh
# NATS for the cluster tests (exports WUR2_TEST_NATS_URL and WUR2_TEST_NATS_SERVER; installs
# Debian's nats-server when missing; fails in CI when it cannot start, warns and lets those
# tests skip elsewhere; stops it at exit).
source scripts/nats.sh
# Headless Chromium and chromedriver for the web client's browser test (exports
# WUR2_TEST_CHROMEDRIVER and WUR2_TEST_CHROMIUM; installs Debian's chromium and
# chromium-driver when missing; fails in CI when it cannot, warns and lets the test skip
# elsewhere).
source scripts/chromium.sh
# tmux for the `wur2 chat` end-to-end test (wur2-tokio/tests/chat_tmux.rs).
command -v tmux >/dev/null || { apt-get update -qq && apt-get install -y -qq tmux; } || echo "warning: cannot install tmux" >&2
cargo test --workspace
wur2_pg_drop_test_databases  # what the tests left on PostgreSQL (scripts/postgres.sh)
# The embedding examples run to completion and check themselves (wur2-engine/README.md).
cargo run -q -p wur2-engine --example bot >/dev/null
cargo run -q -p wur2-engine --example blocking_server -- --self-test
cargo run -q -p wur2-tokio --example embed_tokio -- --self-test
# The async-std driver serves, two clients chat, /healthz answers, it shuts down
# (wur2-async-std/README.md).
cargo run -q -p wur2-async-std --example serve -- --self-test
# The libraries carry only what an embedder needs (wur2-tokio/README.md, wur2-host/README.md).
forbidden='^(clap|ratatui|crossterm|dotenvy|tracing-subscriber|anyhow|hyper|axum|sqlx|async-nats) '
if cargo tree -q -p wur2-tokio --no-default-features -e normal --prefix none | grep -E "$forbidden"; then
  echo "error: wur2-tokio without default features depends on the above" >&2; exit 1
fi
if cargo tree -q -p wur2-host -e normal --prefix none | grep -E '^(sqlx|clap) '; then
  echo "error: wur2-host depends on the above" >&2; exit 1
fi
# The library crates package and build from their .crate files (unpublished dependencies
# come from cargo's temporary local registry). Cargo takes registry crates to be immutable,
# so a wur2-* 0.1.0 it extracted or built on an earlier run would be reused as is, stale:
# both are removed first, and the check builds in a target directory of its own.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wur2-*-0.1.0 \
  target/package-check/debug/.fingerprint/wur2-* target/package-check/debug/deps/*wur2_*
CARGO_TARGET_DIR=target/package-check cargo package -q -p wur2-engine -p wur2-store -p wur2-client -p wur2-host -p wur2-tokio -p wur2-async-std --allow-dirty
# MSRV: build with the toolchain of the workspace's rust-version when rustup has it.
msrv="$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml).0"
if rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  cargo "+$msrv" check -q -p wur2-engine -p wur2-store -p wur2-client -p wur2-host -p wur2-tokio -p wur2-async-std --all-targets --target-dir target/msrv
else
  echo "MSRV check skipped: toolchain $msrv not installed (rustup toolchain install $msrv)" >&2
fi
scripts/fuzz-smoke.sh  # every cargo-fuzz target for 30 s from its seeds (fuzz/README.md)
