#!/usr/bin/env bash
# The one command that runs every check and test of WUR2 (README.md; `.ci/run` calls it).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
