#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ briefly, from its committed seeds, and fails if any
# of them crashes (fuzz/README.md). WUR2_FUZZ_SECONDS sets the time per target (default 30;
# 0 skips the run). Uses the nightly toolchain when installed (with AddressSanitizer), else
# the default toolchain with `--sanitizer none`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${WUR2_FUZZ_SECONDS:-30}"
if [[ "$seconds" == 0 ]]; then
    echo "fuzz-smoke: skipped (WUR2_FUZZ_SECONDS=0)"
    exit 0
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if cargo +nightly --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
    sanitizer=()
else
    echo "fuzz-smoke: no nightly toolchain; running without a sanitizer"
    fuzz=(cargo fuzz)
    sanitizer=(--sanitizer none)
fi

# The seeds replay through every check without libFuzzer first (any toolchain).
cargo test -q --manifest-path fuzz/Cargo.toml

# libFuzzer adds what it finds to the first corpus directory: keep that out of the tree.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

"${fuzz[@]}" build "${sanitizer[@]}"
failed=()
for target in $("${fuzz[@]}" list); do
    mkdir -p "$scratch/$target"
    echo "fuzz-smoke: $target for ${seconds}s"
    if ! "${fuzz[@]}" run "${sanitizer[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" \
        -- -dict=fuzz/wur2.dict -max_total_time="$seconds" -timeout=10 \
        >"$scratch/$target.log" 2>&1; then
        tail -n 60 "$scratch/$target.log"
        failed+=("$target")
    else
        grep -E '^Done [0-9]+ runs' "$scratch/$target.log" || true
    fi
done

if ((${#failed[@]})); then
    echo "fuzz-smoke: crashed: ${failed[*]} (inputs in fuzz/artifacts/; see fuzz/README.md)" >&2
    exit 1
fi
echo "fuzz-smoke: every target ran ${seconds}s without a crash"
