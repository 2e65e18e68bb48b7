# Sourced by scripts/test.sh: starts a NATS server (Debian's nats-server) on 127.0.0.1 for
# the cluster tests and exports WUR2_TEST_NATS_URL (the server every cluster test shares,
# each on subjects of its own) and WUR2_TEST_NATS_SERVER (the nats-server binary, for the
# test that stops and restarts a NATS of its own). The server runs in the background with
# its own pid file and is stopped when the sourcing shell exits.
#
# nats-server is installed from Debian when missing (as root), without starting its system
# service. When NATS cannot be started: with CI=true this fails the test command; otherwise
# it prints a loud SKIPPED warning and the cluster tests skip themselves.
# Override by exporting WUR2_TEST_NATS_URL yourself before running scripts/test.sh.

source "$(dirname "${BASH_SOURCE[0]}")/service-skip.sh"
wur2_nats_skip() { wur2_skip_service "every NATS cluster test" "$1" WUR2_TEST_NATS_URL WUR2_TEST_NATS_SERVER; }

# Installs Debian's nats-server; policy-rc.d (exit 101) keeps apt from starting its service.
wur2_nats_install() {
    [ "$(id -u)" = 0 ] || return 1
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    local status=0
    { apt-get install -y -qq nats-server >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null 2>&1; }; } ||
        status=1
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
    # Should the service have started anyway, stop it and keep it from starting again.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now nats-server >/dev/null 2>&1 || true
    fi
    return "$status"
}

wur2_nats_stop() {
    if [ -n "${WUR2_NATS_DIR:-}" ] && [ -f "$WUR2_NATS_DIR/nats.pid" ]; then
        kill "$(cat "$WUR2_NATS_DIR/nats.pid")" 2>/dev/null || true
    fi
    if [ -n "${WUR2_NATS_DIR:-}" ]; then rm -rf "$WUR2_NATS_DIR"; fi
}

wur2_nats_setup() {
    if [ -n "${WUR2_TEST_NATS_URL:-}" ]; then
        echo "Using WUR2_TEST_NATS_URL from the environment" >&2
        # The NATS-restart test runs a server of its own: name the binary when there is one.
        if [ -z "${WUR2_TEST_NATS_SERVER:-}" ] && command -v nats-server >/dev/null; then
            export WUR2_TEST_NATS_SERVER="$(command -v nats-server)"
        fi
        return 0
    fi
    local server
    server=$(command -v nats-server || true)
    if [ -z "$server" ]; then
        if ! DEBIAN_FRONTEND=noninteractive wur2_nats_install; then
            wur2_nats_skip "nats-server is not installed and could not be (apt-get install nats-server, as root)"
            return
        fi
        server=$(command -v nats-server || true)
        if [ -z "$server" ]; then
            wur2_nats_skip "nats-server installed but not found on PATH"
            return
        fi
    fi
    WUR2_NATS_DIR=$(mktemp -d)
    # -p -1: a free port, which the server then names in its log.
    "$server" -a 127.0.0.1 -p -1 -P "$WUR2_NATS_DIR/nats.pid" -l "$WUR2_NATS_DIR/nats.log" \
        </dev/null >/dev/null 2>&1 &
    trap wur2_nats_stop EXIT
    local waited=0 port=""
    until [ -n "$port" ] || [ "$waited" -ge 100 ]; do
        sleep 0.1; waited=$((waited + 1))
        port=$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' \
            "$WUR2_NATS_DIR/nats.log" 2>/dev/null | head -n 1)
    done
    if [ -z "$port" ]; then
        cat "$WUR2_NATS_DIR/nats.log" >&2 2>/dev/null || true
        wur2_nats_stop
        wur2_nats_skip "nats-server did not start on 127.0.0.1"
        return
    fi
    export WUR2_TEST_NATS_URL="nats://127.0.0.1:$port"
    export WUR2_TEST_NATS_SERVER="$server"
    echo "NATS running (pid $(cat "$WUR2_NATS_DIR/nats.pid")); WUR2_TEST_NATS_URL=$WUR2_TEST_NATS_URL" >&2
}

wur2_nats_setup
