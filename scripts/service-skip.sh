# Sourced by scripts/postgres.sh and scripts/nats.sh: what to do when a server the tests need
# cannot be started.
#
# wur2_skip_service <tests> <reason> <variable>...: with CI=true, says that <tests> cannot
# run and returns 1 (the test command fails); otherwise prints a loud SKIPPED banner, unsets
# the variables (so the tests that need them skip themselves, saying so) and returns 0.
wur2_skip_service() {
    local tests=$1 reason=$2
    shift 2
    if [ "${CI:-}" = "true" ]; then
        echo "ERROR: $tests cannot run: $reason (CI=true, so this fails)" >&2
        return 1
    fi
    echo "" >&2
    echo "######################################################################" >&2
    echo "## SKIPPED: $tests: $reason" >&2
    echo "######################################################################" >&2
    echo "" >&2
    unset "$@"
    return 0
}
