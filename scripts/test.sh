#!/usr/bin/env bash
# The one command that runs every check and test of WUR2 (README.md; `.ci/run` calls it).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# PostgreSQL for the wur2-store suite (exports WUR2_TEST_POSTGRES_URL; fails in CI when it
# cannot start, warns and lets those tests skip elsewhere).
source scripts/postgres.sh
cargo test --workspace
