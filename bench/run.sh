#!/usr/bin/env bash
# Side-by-side benchmark (issue 9): WUR2, ngircd, InspIRCd and the bare relay, same load
# generator, same machine, one run. Usage:
#
#   bench/run.sh            # configurations A B L C P, three repetitions interleaved
#   bench/run.sh A B        # only these configurations
#
# Environment: REPS (default 3), SERVERS (default "wur2 wur2-async-std ngircd inspircd relay";
# wur2-async-std is the same server on the async-std driver, its example `serve`),
# SERVERS_<CONFIG> (the servers of one configuration, e.g. SERVERS_C="wur2-base wur2";
# default SERVERS), WINDOW (messages in flight per sender, default 64), WUR2_BIN (a wur2
# binary to test; default: build the working tree into CARGO_TARGET_DIR, default target/;
# WUR2_REV names its revision in the results), OUT (results directory, default target/bench),
# WUR2_BASE_BIN (a second wur2 binary, the server `wur2-base`, e.g. the commit before a
# change, measured interleaved with wur2; WUR2_BASE_REV names its revision),
# PROFILE=1 (after the runs, one extra config-B run of PROFILE_SERVER, by default wur2,
# with 10× the messages under `perf record`; report in $OUT/perf-report.txt;
# PERF_CALL_GRAPH=dwarf for call chains through Rust code, which keeps no frame pointers).
#
# Servers ending in -tls (wur2-tls, wur2-base-tls) are wur2 / wur2-base with a TLS listener
# (a self-signed certificate for localhost made with openssl in the work directory); the
# load generator's clients then connect over TLS.
#
# WebSocket (issue 21): wur2-ws is wur2 with a web listener (--web-listen), its clients on
# the WebSocket (one line per text frame; the server speaks JSON lines there); wur2-json is
# wur2 with clients in JSON lines mode over plain TCP, its same-run baseline (the same
# encoding, so the ratio is the framing's cost alone):
#
#   SERVERS="wur2 wur2-json wur2-ws" bench/run.sh B
#
# Cluster mode (issue 18): `wur2-cluster` is a NATS server (nats-server, or
# WUR2_TEST_NATS_SERVER) and three wur2 nodes a, b, c on one PostgreSQL database, the
# clients spread round-robin over the nodes; `wur2-pg` is one wur2 on PostgreSQL without a
# cluster, its same-run baseline. Both need PostgreSQL (scripts/postgres.sh; each
# configuration and server gets a database of its own, made for the run and dropped at
# its end). Their results add the servers' CPU seconds, the counters of every node's
# /metrics over the measured part (chat messages, bus publications and bytes per chat
# message) and, for the cluster, the NATS process's CPU (measured part and whole life) and
# the bus's drops and gaps. Configurations S and W send B's senders 10× its messages
# (20 000) in a small channel (30 members) and in B's (1 000 members), so the bus's cost per
# message can be compared across channel sizes; SR and WR send them at one fixed rate
# (1 000 messages/s in all):
#
#   SERVERS="wur2-pg wur2-cluster" bench/run.sh B S W SR WR
#
# Scale (issue 20): R, X and W10K, on one SQLite database prepared once per run (accounts
# registered and their resume tokens asked for with /token, by the load generator, on both
# cores: setup, reported apart), then every run on a fresh server pinned to core 0:
#
#   bench/run.sh R X W10K      # R is RL RP RT
#
# RL is L (100 clients, 10 senders × 100 messages/s for 10 s) alone; RP is the same with a
# storm of RP_STORM (default 1000) password logins at its start; RT with a storm of
# RT_STORM (default 10 000) /resume logins. X holds X_CLIENTS (default 19 000) idle
# logged-in connections (no channel) from X_SOURCES loopback addresses (127.0.0.2, …);
# W10K is 10 000 clients in one channel, 10 senders × W10K_MESSAGES (default 50) messages,
# against the relay: 0.5 – 0.8 s measured, in which every server's rate swings by ±30 %;
# W10K_MESSAGES=500 measures 4 – 6 s (and B's shape over 2 s is configuration W).
# Servers: wur2 (W10K: wur2 and relay); SERVERS_<CONFIG> as usual. SCALE_DIR keeps the
# prepared database and tokens for later runs.
#
# Every server runs fresh on 127.0.0.1, pinned to core 0 (a cluster's three nodes and its
# NATS share core 0: the same CPU as one node); the load generator runs on core 1. Each
# load run has a hard timeout; each process is stopped by its pid. Setup time (connecting,
# logging in, joining) is reported apart and never counted in throughput.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
SERVERS=${SERVERS:-"wur2 wur2-async-std ngircd inspircd relay"}
WINDOW=${WINDOW:-64}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${OUT:-$ROOT/target/bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CONFIGS=()
for config in "$@"; do
    # R is the reconnect storm's three runs: L alone, with a password storm, with a token one.
    if [ "$config" = R ]; then CONFIGS+=(RL RP RT); else CONFIGS+=("$config"); fi
done
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(A B L C P)
RP_STORM=${RP_STORM:-1000}
RT_STORM=${RT_STORM:-10000}
X_CLIENTS=${X_CLIENTS:-19000}
X_SOURCES=${X_SOURCES:-4}
W10K_CLIENTS=${W10K_CLIENTS:-10000}
W10K_MESSAGES=${W10K_MESSAGES:-50}

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wur2-bench.XXXXXX")
RESULTS="$OUT/results.txt"
TABLE="$OUT/table.md"
: >"$RESULTS"
# The pids of the processes started and not yet stopped, oldest first.
RUNNING_PIDS=""
# The PostgreSQL databases this run made (dropped at exit).
declare -A PG_MADE

log() { echo "[$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }

cleanup() {
    stop_running
    local url
    for url in "${!PG_MADE[@]}"; do
        psql -q "$WUR2_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS ${url##*/}" >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- tools -------------------------------------------------------------------------------

install_peers() {
    if [[ " $(all_servers) " != *" ngircd "* && " $(all_servers) " != *" inspircd "* ]]; then return; fi
    if command -v ngircd >/dev/null && command -v inspircd >/dev/null; then return; fi
    log "installing ngircd and inspircd"
    # policy-rc.d exit 101 keeps apt from starting their services.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y ngircd inspircd >"$WORK/apt.log" 2>&1 ||
        { cat "$WORK/apt.log" >&2; exit 1; }
    if [ -n "$made_policy" ]; then rm -f "$policy"; fi
    # Should a service have started anyway, stop it and keep it from starting again.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        systemctl disable --now ngircd inspircd >/dev/null 2>&1 || true
    fi
    local pidfile
    for pidfile in /run/ngircd/ngircd.pid /run/inspircd/inspircd.pid; do
        if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
}

build() {
    log "building wur2-bench"
    (cd "$ROOT" && timeout 1800 cargo build --release -p wur2-bench)
    cp "$TARGET/release/wur2-loadgen" "$TARGET/release/wur2-relay" "$WORK/"
    if [ -z "${WUR2_BIN:-}" ]; then
        log "building wur2"
        (cd "$ROOT" && timeout 1800 cargo build --release -p wur2-tokio --bin wur2)
        WUR2_BIN="$TARGET/release/wur2"
    fi
    # Private copies: other builds may replace target/release/wur2 while we run.
    cp "$WUR2_BIN" "$WORK/wur2"
    if [[ " $(all_servers) " == *" wur2-base"* ]]; then
        if [ -z "${WUR2_BASE_BIN:-}" ]; then
            echo "wur2-base and wur2-base-tls need WUR2_BASE_BIN (a wur2 binary)" >&2
            exit 1
        fi
        cp "$WUR2_BASE_BIN" "$WORK/wur2-base"
    fi
    if [[ " $(all_servers) " == *" wur2-async-std "* ]]; then
        log "building the async-std server (wur2-async-std example serve)"
        (cd "$ROOT" && timeout 1800 cargo build --release -p wur2-async-std --example serve)
        cp "$TARGET/release/examples/serve" "$WORK/wur2-async-std"
    fi
}

# --- servers -----------------------------------------------------------------------------

write_configs() {
    cat >"$WORK/ngircd.conf" <<EOF
[Global]
	Name = bench.ngircd
	Info = wur2 bench
	AdminInfo1 = bench
	AdminInfo2 = bench
	AdminEMail = bench@localhost
	Listen = 127.0.0.1
	Ports = 16667
	PidFile = $WORK/ngircd.pid
	MotdPhrase = bench
[Limits]
	MaxConnections = 0
	MaxConnectionsIP = 0
	MaxJoins = 0
	MaxNickLength = 16
	MaxPenaltyTime = 0
	PingTimeout = 600
	PongTimeout = 600
	IdleTimeout = 0
[Options]
	DNS = no
	Ident = no
	PAM = no
EOF
    echo bench >"$WORK/motd.txt"
    cat >"$WORK/inspircd.conf" <<EOF
<server name="bench.inspircd" description="wur2 bench" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<bind address="127.0.0.1" port="16668" type="clients">
<connect name="bench" allow="127.0.0.1" timeout="300" pingfreq="600"
         hardsendq="64M" softsendq="64M" recvq="64M"
         threshold="100000000" commandrate="100000000" fakelag="no"
         localmax="100000" globalmax="100000" limit="100000"
         resolvehostnames="no" useident="no" maxconnwarn="no">
<pid file="$WORK/inspircd.pid">
<performance softlimit="20000" somaxconn="4096" netbuffersize="65536" clonesonconnect="no" quietbursts="yes">
<options prefixquit="Quit: " syntaxhints="no" announcets="yes">
<security hideserver="" userstats="Pu" maxtargets="20">
<channels users="20" opers="60">
<dns server="127.0.0.1" timeout="1">
<files motd="$WORK/motd.txt">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="$WORK/inspircd.log">
EOF
    if [[ " $(all_servers) " == *"-tls "* ]]; then
        # CA:FALSE: rustls refuses a certificate marked as a CA (openssl's default for -x509)
        # as the server's own.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 -subj /CN=localhost \
            -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE \
            >"$WORK/openssl.log" 2>&1 ||
            { cat "$WORK/openssl.log" >&2; exit 1; }
    fi
}

# Waits until something listens on 127.0.0.1:$1 (at most 30 s).
wait_port() {
    local port=$1 pid=$2 i
    for i in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

stop_server() {
    local pid=$1 i
    RUNNING_PIDS=$(tr ' ' '\n' <<<"$RUNNING_PIDS" | grep -vx "$pid" | xargs || true)
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "pid $pid did not stop in 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops every process still running, the newest first (a cluster's nodes before its NATS).
stop_running() {
    local pid
    for pid in $(tr ' ' '\n' <<<"$RUNNING_PIDS" | tac); do stop_server "$pid"; done
}

# spawn LOG PORT COMMAND…: starts COMMAND pinned to the server core, its output appended to
# $WORK/LOG, and waits until it listens on 127.0.0.1:PORT; sets LAST_PID. Exits the script
# if it does not start.
spawn() {
    local logfile=$1 port=$2
    shift 2
    taskset -c "$SERVER_CPU" "$@" >>"$WORK/$logfile" 2>&1 &
    LAST_PID=$!
    RUNNING_PIDS="$RUNNING_PIDS $LAST_PID"
    if ! wait_port "$port" "$LAST_PID"; then
        log "$logfile: $1 did not start; its log:"
        tail -20 "$WORK/$logfile" >&2 || true
        exit 1
    fi
}

# spawn_wur2 LOG WAIT_PORT BIN LISTEN_PORT DB ARGS…: a WUR2 server (wur2, wur2-base, the
# async-std example: they take the same flags) listening on 127.0.0.1:LISTEN_PORT with the
# bench's limits, through spawn; ARGS add a TLS listener, metrics, cluster flags.
spawn_wur2() {
    local logfile=$1 wait_for=$2 bin=$3 listen=$4 db=$5
    shift 5
    spawn "$logfile" "$wait_for" "$bin" --listen "127.0.0.1:$listen" --database-url "$db" "${WUR2_FLAGS[@]}" "$@"
}

# cpu_secs PID: user + system CPU seconds of a running process so far.
cpu_secs() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# The limits every WUR2 server runs with (the async-std example takes them as wur2 does).
WUR2_FLAGS=(--flood-lines-per-second 0 --max-connections 20000 --max-connections-per-ip 100000)
# The load generator registers thousands of accounts from one address: no registration
# limits. Environment, not flags, so a wur2-base binary from before these limits still starts.
export WUR2_MAX_REGISTRATIONS_PER_IP=0 WUR2_MAX_REGISTRATIONS_PER_MINUTE=0

# The cluster's NATS and its nodes' client and metrics ports.
NATS_PORT=16690
CLUSTER_NODES=(a b c)
CLUSTER_PORT=16691
CLUSTER_METRICS_PORT=16694

# start_server NAME DB_URL: starts it fresh, sets PORT (the first address), ADDRS (every
# address the clients spread over, comma-separated), PROTO, CONC, CLIENT_TLS (the load
# generator's transport flags: TLS, JSON lines, WebSocket), SERVER_PIDS (comma-separated), METRICS (the metrics endpoints,
# comma-separated, or empty), BUS_PID (the cluster's NATS, or empty) and RUNNING_PID (the
# first server process).
start_server() {
    local name=$1 db=${2:-}
    CLIENT_TLS=() METRICS="" BUS_PID=""
    case $name in
    wur2-async-std)
        # The same limits and login concurrency as wur2 (both share wur2-store's pools).
        PORT=16671 PROTO=wur2 CONC=16
        spawn_wur2 "$name.log" "$PORT" "$WORK/wur2-async-std" "$PORT" "$db"
        ;;
    wur2-cluster)
        # NATS first (the nodes refuse to start without it), then the nodes, each on the
        # one database; every process on the server core.
        PORT=$CLUSTER_PORT PROTO=wur2 CONC=16
        spawn "$name-nats.log" "$NATS_PORT" "$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT"
        BUS_PID=$LAST_PID
        local i addrs=() metrics=() pids=()
        for i in "${!CLUSTER_NODES[@]}"; do
            local port=$((CLUSTER_PORT + i)) metrics_port=$((CLUSTER_METRICS_PORT + i))
            spawn_wur2 "$name-${CLUSTER_NODES[$i]}.log" "$port" "$WORK/wur2" "$port" "$db" \
                --metrics-listen "127.0.0.1:$metrics_port" \
                --cluster "nats://127.0.0.1:$NATS_PORT" --node-name "${CLUSTER_NODES[$i]}"
            addrs+=("127.0.0.1:$port") metrics+=("127.0.0.1:$metrics_port") pids+=("$LAST_PID")
        done
        ADDRS=$(IFS=,; echo "${addrs[*]}") METRICS=$(IFS=,; echo "${metrics[*]}")
        SERVER_PIDS=$(IFS=,; echo "${pids[*]}") RUNNING_PID=${pids[0]}
        return
        ;;
    wur2*)
        # Setup only: more logins at once than this starve the store's pools (PostgreSQL
        # answers "storage is unavailable") without hashing any faster.
        local bin=$WORK/wur2 own=()
        PORT=16669 PROTO=wur2 CONC=16
        if [[ $name == wur2-base* ]]; then bin=$WORK/wur2-base PORT=16672; fi
        local listen=$PORT
        if [[ $name == *-tls ]]; then
            # The plain listener as usual; the clients use the TLS one beside it.
            PORT=$((PORT + 10))
            own=(--tls-listen "127.0.0.1:$PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
            CLIENT_TLS=(--tls-ca "$WORK/cert.pem" --tls-server-name localhost)
        fi
        if [[ $name == *-json ]]; then CLIENT_TLS=(--json); fi
        if [[ $name == *-ws ]]; then
            # The plain listener as usual; the clients use the web listener beside it.
            PORT=$((PORT + 20))
            own=(--web-listen "127.0.0.1:$PORT")
            CLIENT_TLS=(--websocket)
        fi
        # wur2-pg, the cluster's one-node baseline, has its metrics read as the nodes do.
        if [ "$name" = wur2-pg ]; then
            METRICS=127.0.0.1:16689
            own+=(--metrics-listen "$METRICS")
        fi
        spawn_wur2 "$name.log" "$PORT" "$bin" "$listen" "$db" "${own[@]}"
        ;;
    ngircd)
        # ngircd listens with a backlog of 10.
        PORT=16667 PROTO=irc CONC=8
        spawn ngircd.log "$PORT" ngircd -n -f "$WORK/ngircd.conf"
        ;;
    inspircd)
        # InspIRCd completes registrations on a once-a-second timer: many at once.
        PORT=16668 PROTO=irc CONC=1000
        spawn inspircd.out "$PORT" inspircd --nofork --runasroot --config="$WORK/inspircd.conf"
        ;;
    relay)
        PORT=16670 PROTO=line CONC=64
        spawn relay.log "$PORT" "$WORK/wur2-relay" --listen "127.0.0.1:$PORT"
        ;;
    *) echo "unknown server $name" >&2; exit 1 ;;
    esac
    RUNNING_PID=$LAST_PID SERVER_PIDS=$LAST_PID ADDRS=127.0.0.1:$PORT
}

# --- configurations ------------------------------------------------------------------------

# load_args CONFIG: the load generator's shape for a configuration.
load_args() {
    case $1 in
    A) echo "--clients 100 --senders 10 --messages 1000 --payload 64 --window $WINDOW --timeout-secs 120" ;;
    B | P) echo "--clients 1000 --senders 10 --messages 200 --payload 64 --window $WINDOW --timeout-secs 300" ;;
    # Cluster (issue 18): the bus's cost per message in a small channel (S) and in B's
    # (W), with the same 20 000 messages, enough for CPU seconds to resolve.
    S) echo "--clients 30 --senders 10 --messages 2000 --payload 64 --window $WINDOW --timeout-secs 120" ;;
    W) echo "--clients 1000 --senders 10 --messages 2000 --payload 64 --window $WINDOW --timeout-secs 600" ;;
    # The same two channels at one fixed rate (10 senders × 100/s for 20 s): the bus's cost
    # per message depends on how many messages share NATS's writes, so only equal rates
    # compare channel sizes alone.
    SR) echo "--clients 30 --senders 10 --messages 2000 --payload 64 --rate 100 --timeout-secs 120" ;;
    WR) echo "--clients 1000 --senders 10 --messages 2000 --payload 64 --rate 100 --timeout-secs 600" ;;
    L) echo "--clients 100 --senders 10 --messages 1000 --payload 64 --rate 100 --timeout-secs 120" ;;
    # Scale (issue 20). L's shape, its 100 clients (l0…l99) logged in with tokens in setup;
    # RP and RT add a storm at the start of the measured part.
    RL) echo "--clients 100 --senders 10 --messages 1000 --payload 64 --rate 100 --timeout-secs 300 $SCALE_AUTH --user-prefix l" ;;
    RP) echo "$(load_args RL) --storm-clients $RP_STORM --storm-auth login --storm-prefix u --timeout-secs 900" ;;
    RT) echo "$(load_args RL) --storm-clients $RT_STORM --storm-auth token --storm-prefix u --source-ip-count $X_SOURCES" ;;
    X) echo "--clients $X_CLIENTS --senders 0 --messages 0 --warmup 200 --settle-ms 3000 --no-join $SCALE_AUTH --source-ip-count $X_SOURCES --connect-concurrency 256 --timeout-secs 900" ;;
    W10K) echo "--clients $W10K_CLIENTS --senders 10 --messages $W10K_MESSAGES --payload 64 --window $WINDOW $SCALE_AUTH --source-ip-count $X_SOURCES --connect-concurrency 256 --timeout-secs 900" ;;
    C) echo "--clients 5000 --senders 0 --messages 0 --payload 64 --warmup 200 --settle-ms 2000 --timeout-secs 600" ;;
    esac
}

# servers_for CONFIG: SERVERS_<CONFIG> when set, else SERVERS (P: the two databases).
servers_for() {
    local own="SERVERS_$1"
    case $1 in
    P) echo "${!own:-wur2-sqlite wur2-postgres}" ;;
    RL | RP | RT | X) echo "${!own:-wur2}" ;;
    W10K) echo "${!own:-wur2 relay}" ;;
    *) echo "${!own:-$SERVERS}" ;;
    esac
}

# Every server some configuration of this run uses.
all_servers() {
    local config
    for config in "${CONFIGS[@]}"; do servers_for "$config"; done | tr ' ' '\n' | sort -u | xargs
}

# on_postgres SERVER: whether it runs on PostgreSQL.
on_postgres() {
    case $1 in wur2-postgres | wur2-pg | wur2-cluster) return 0 ;; *) return 1 ;; esac
}

# db_for CONFIG SERVER: the database a WUR2 run uses; one per configuration and server,
# kept across repetitions so accounts are registered once (argon2 makes registering
# thousands slow): every server registers in its first repetition and logs in after.
# PostgreSQL ones are named after the run (PG_PREFIX) and made by run_one.
db_for() {
    if is_scale "$1"; then
        echo "sqlite://$SCALE_DB"
    elif on_postgres "$2"; then
        echo "$PG_BASE/${PG_PREFIX}_${1,,}_${2//-/_}"
    else
        echo "sqlite://$WORK/$1-$2.db"
    fi
}

# arg_of CONFIG FLAG: a number of the configuration's load (arg_of B --messages: 200).
arg_of() {
    local args
    read -ra args <<<"$(load_args "$1")"
    local i
    for i in "${!args[@]}"; do
        if [ "${args[$i]}" = "$2" ]; then echo "${args[$((i + 1))]}"; return; fi
    done
    echo 0
}

# history_check RUN_TAG DB_URL EXPECTED: every message of the run stored exactly once.
history_check() {
    local tag=$1 url=$2 expected=$3 counts
    local sql="SELECT count(*) || ' ' || count(DISTINCT body) FROM messages WHERE channel_key = 'bench' AND body LIKE '~B$tag.%'"
    case $url in
    sqlite://*) counts=$(sqlite3 "${url#sqlite://}" "$sql") ;;
    postgres://*) counts=$(psql -tA "$url" -c "$sql") ;;
    esac
    if [ "$counts" = "$expected $expected" ]; then echo "history=ok"; else echo "history=BAD:${counts// /,distinct=}/$expected"; fi
}

declare -A REGISTERED

# is_scale CONFIG: a configuration of issue 20, on the prepared database.
is_scale() {
    case $1 in RL | RP | RT | X | W10K) return 0 ;; *) return 1 ;; esac
}

# SCALE_DIR keeps the prepared database and tokens across runs (default: the run's work
# directory, removed at its end); preparing again only registers what is missing.
SCALE_DIR=${SCALE_DIR:-$WORK}
mkdir -p "$SCALE_DIR"
SCALE_DB=$SCALE_DIR/scale.db
SCALE_TOKENS=$SCALE_DIR/scale.tokens
SCALE_AUTH="--auth token --token-file $SCALE_TOKENS"

# prepare_scale: the scale configurations' database: the accounts l0…l99 (R's connected
# clients) and u0…u(N-1) (storms, X, W10K) registered, and a resume token of each asked
# for with /token, into $SCALE_TOKENS. The server runs on both cores here (two argon2
# threads): setup, timed and reported apart, never part of a measurement.
prepare_scale() {
    local users=$X_CLIENTS config
    for n in "$RP_STORM" "$RT_STORM" "$W10K_CLIENTS"; do if [ "$n" -gt "$users" ]; then users=$n; fi; done
    log "scale setup: registering l0…l99 and u0…u$((users - 1)) and asking their tokens"
    local started=$SECONDS line
    SERVER_CPU=0,1 start_server wur2 "sqlite://$SCALE_DB"
    for spec in "l 100" "u $users"; do
        read -r prefix count <<<"$spec"
        line=$(timeout 3600 taskset -c "$LOAD_CPU" "$WORK/wur2-loadgen" --protocol wur2 --addr "$ADDRS" \
            --auth register --connect-concurrency 16 --clients "$count" --senders 0 --user-prefix "$prefix" \
            --get-tokens --token-file "$SCALE_TOKENS" --timeout-secs 3500 2>>"$WORK/loadgen.log") ||
            { log "scale setup failed:"; tail -3 "$WORK/loadgen.log" >&2; exit 1; }
        echo "# scale setup ($prefix×$count): ${line#RESULT }" | tee -a "$RESULTS" >&2
    done
    stop_running
    echo "# scale setup: $((SECONDS - started)) s in all (server on cores 0,1); $(wc -l <"$SCALE_TOKENS") tokens" | tee -a "$RESULTS" >&2
}

# server_warnings SERVER: WARN lines in its logs so far (a cluster's: every node's).
server_warnings() {
    cat "$WORK/$1.log" "$WORK/$1"-{a,b,c}.log 2>/dev/null | grep -c WARN || true
}

run_one() {
    local config=$1 server=$2 rep=$3 db="" auth=register line rc=0
    case $server in wur2*)
        db=$(db_for "$config" "$server")
        if [ -n "${REGISTERED[$config/$server]:-}" ]; then auth=login; fi
        ;;
    esac
    if [[ $db == postgres://* ]] && [ -z "${PG_MADE[$db]:-}" ]; then
        psql -q "$WUR2_TEST_POSTGRES_URL" -c "CREATE DATABASE ${db##*/}" >/dev/null
        PG_MADE[$db]=1
    fi
    if is_scale "$config"; then auth=token; fi
    local warnings_before
    warnings_before=$(server_warnings "$server")
    start_server "$server" "$db"
    local extra_args=()
    if [ -n "$METRICS" ]; then extra_args+=(--metrics "$METRICS"); fi
    if [ -n "$BUS_PID" ]; then extra_args+=(--bus-pid "$BUS_PID"); fi
    log "$config $server rep $rep (pids $SERVER_PIDS${BUS_PID:+, NATS $BUS_PID}, $auth)"
    # shellcheck disable=SC2046
    line=$(timeout 900 taskset -c "$LOAD_CPU" "$WORK/wur2-loadgen" --protocol "$PROTO" \
        --addr "$ADDRS" --connect-concurrency "$CONC" --auth "$auth" \
        "${CLIENT_TLS[@]}" --server-pid "$SERVER_PIDS" "${extra_args[@]}" $(load_args "$config") \
        2>>"$WORK/loadgen.log") || rc=$?
    local extra=""
    if [ -n "$BUS_PID" ]; then
        # The nodes first, so the NATS figure covers their goodbyes; then NATS's whole life.
        local pid
        for pid in ${SERVER_PIDS//,/ }; do stop_server "$pid"; done
        extra="nats_cpu_total_s=$(cpu_secs "$BUS_PID") "
    fi
    stop_running
    if [[ $server == wur2* ]]; then
        # Warnings the server logged in this run (the cluster bus's among them).
        extra+="warnings=$(($(server_warnings "$server") - warnings_before)) "
    fi
    if [ -z "$line" ]; then
        log "$config $server rep $rep: no result (exit $rc); loadgen log:"
        tail -3 "$WORK/loadgen.log" >&2
        line="RESULT failed=1"
    else
        REGISTERED[$config/$server]=1
    fi
    if [[ $config == P || $db == postgres://* ]] && [ "$line" != "RESULT failed=1" ]; then
        local tag
        tag=$(sed -n 's/.* run=\([0-9]*\).*/\1/p' <<<"$line")
        extra+=$(history_check "$tag" "$db" $(($(arg_of "$config" --senders) * $(arg_of "$config" --messages))))
    fi
    echo "config=$config server=$server rep=$rep load=$(cut -d' ' -f1 /proc/loadavg) ${line#RESULT } $extra" | tee -a "$RESULTS" >&2
}

# --- main --------------------------------------------------------------------------------

install_peers
build
write_configs
# Open files: as many as the machine allows, for the server and the load generator alike
# (each holds one descriptor per connection). Raising the hard limit needs
# CAP_SYS_RESOURCE; without it the hard limit stays (20 000 on the bench machine).
ulimit -Hn 1048576 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt 12000 ]; then log "warning: ulimit -n is $(ulimit -n); config C needs ~10 000"; fi
if [ "$(ulimit -n)" -le "$X_CLIENTS" ] && [[ " ${CONFIGS[*]} " == *" X "* ]]; then
    log "warning: ulimit -n is $(ulimit -n), X_CLIENTS $X_CLIENTS: X will fail; lower X_CLIENTS"
fi

PG_BASE="" PG_PREFIX="wur2_bench_$(date +%s)"
if [[ " $(all_servers) " =~ \ (wur2-postgres|wur2-pg|wur2-cluster)\  ]]; then
    # shellcheck source=/dev/null
    source "$ROOT/scripts/postgres.sh"
    if [ -n "${WUR2_TEST_POSTGRES_URL:-}" ]; then
        PG_BASE=${WUR2_TEST_POSTGRES_URL%/*}
    else
        log "no PostgreSQL: the servers on PostgreSQL are left out"
    fi
fi
NATS_BIN=${WUR2_TEST_NATS_SERVER:-$(command -v nats-server || true)}
if [[ " $(all_servers) " == *" wur2-cluster "* ]] && [ -z "$NATS_BIN" ]; then
    echo "wur2-cluster needs nats-server (apt-get install nats-server, or WUR2_TEST_NATS_SERVER)" >&2
    exit 1
fi

{
    echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "# wur2 ${WUR2_REV:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')}, window $WINDOW, reps $REPS, ulimit -n $(ulimit -n)"
    if [ -n "${WUR2_BASE_BIN:-}" ]; then echo "# wur2-base ${WUR2_BASE_REV:-$WUR2_BASE_BIN}"; fi
} | tee -a "$RESULTS" >&2

for config in "${CONFIGS[@]}"; do
    if is_scale "$config"; then prepare_scale; break; fi
done

for rep in $(seq "$REPS"); do
    for config in "${CONFIGS[@]}"; do
        for server in $(servers_for "$config"); do
            if on_postgres "$server" && [ -z "$PG_BASE" ]; then continue; fi
            run_one "$config" "$server" "$rep"
        done
    done
done

if [ "${PROFILE:-}" = 1 ]; then
    profiled=${PROFILE_SERVER:-wur2}
    log "profiling $profiled in config B"
    start_server "$profiled" "$(db_for B "$profiled")"
    pid=$RUNNING_PID
    auth=register
    if [ -n "${REGISTERED[B/$profiled]:-}" ]; then auth=login; fi
    # Log in first (argon2 would dominate the profile), then record only the messages.
    rm -f "$WORK/ready"
    # shellcheck disable=SC2046
    timeout 900 taskset -c "$LOAD_CPU" "$WORK/wur2-loadgen" --protocol "$PROTO" --addr "$ADDRS" \
        --connect-concurrency "$CONC" --auth "$auth" "${CLIENT_TLS[@]}" --server-pid "$pid" $(load_args B) \
        --messages 2000 --settle-ms 2000 --ready-file "$WORK/ready" >"$OUT/profile-load.txt" 2>>"$WORK/loadgen.log" &
    loadgen=$!
    while kill -0 "$loadgen" 2>/dev/null && [ ! -e "$WORK/ready" ]; do sleep 0.2; done
    timeout 120 perf record -e cpu-clock --call-graph "${PERF_CALL_GRAPH:-fp}" -p "$pid" -o "$OUT/perf.data" >/dev/null 2>&1 &
    perfpid=$!
    wait "$loadgen" || true
    kill -INT "$perfpid" 2>/dev/null || true
    wait "$perfpid" 2>/dev/null || true
    stop_server "$pid"
    perf report -i "$OUT/perf.data" --no-children --stdio --percent-limit 1 2>/dev/null >"$OUT/perf-report.txt" || true
    log "profile: $OUT/perf-report.txt"
fi

# --- the median table ----------------------------------------------------------------------

python3 - "$RESULTS" "$TABLE" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    rows.setdefault((kv["config"], kv["server"]), []).append(kv)

def med(runs, key):
    vals = [float(r[key]) for r in runs if key in r]
    return statistics.median(vals) if vals else None

def fmt_us(v):
    return "–" if v is None else (f"{v/1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs")

out = []
out.append("| config | server | runs | deliveries/s | p50 | p99 | p99.9 | lost (all runs) | setup s | server memory | load avg |")
out.append("|---|---|---|---|---|---|---|---|---|---|---|")
order = {"A": 0, "B": 1, "S": 2, "W": 3, "SR": 4, "WR": 5, "L": 6, "C": 7, "P": 8,
         "RL": 10, "RP": 11, "RT": 12, "X": 13, "W10K": 14}
for (config, server), runs in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
    failed = sum(1 for r in runs if "failed" in r)
    lost = sum(int(r.get("lost", 0)) + int(r.get("dup", 0)) for r in runs)
    ok = len(runs) - failed
    lat = lambda key: "–" if config in ("C", "X") else fmt_us(med(runs, key))
    if config in ("C", "X"):
        bpc = med(runs, "bytes_per_conn")
        mem = "–" if bpc is None else f"{bpc:.0f} B/conn (RSS {med(runs, 'rss_ready_kib')/1024:.1f} MiB)"
        dps = "–"
    else:
        rss, hwm = med(runs, "rss_after_kib"), med(runs, "hwm_after_kib")
        mem = "–" if rss is None else f"RSS {rss/1024:.1f} MiB, HWM {hwm/1024:.1f} MiB"
        d = med(runs, "deliveries_per_s")
        dps = "–" if d is None else f"{d/1e6:.2f} M"
    hist = [r.get("history") for r in runs if "history" in r]
    if hist:
        mem += "; history " + ("exactly once" if all(h == "ok" for h in hist) else ",".join(hist))
    setup = med(runs, "setup_s")
    out.append(
        f"| {config} | {server} | {ok}{' (+' + str(failed) + ' failed)' if failed else ''} | {dps} "
        f"| {lat('p50_us')} | {lat('p99_us')} | {lat('p999_us')} | {lost} "
        f"| {'–' if setup is None else f'{setup:.1f}'} | {mem} | {med(runs, 'load'):.1f} |"
    )

def ratio(config, a, b, key):
    x, y = med(rows.get((config, a), []), key), med(rows.get((config, b), []), key)
    return None if not x or not y else x / y

issue9 = any(c in ("A", "B", "L", "C") for c, _ in rows)
if issue9:
    out.append("")
    out.append("Ratios against the goals of issue 9 (medians):")
best = max(
    (s for s in ("ngircd", "inspircd") if (("B", s) in rows)),
    key=lambda s: med(rows[("B", s)], "deliveries_per_s") or 0,
    default=None,
)
if best:
    r = ratio("B", "wur2", best, "deliveries_per_s")
    out.append(f"- B: wur2 / {best} deliveries/s = {r:.2f}× (goal ≥ 2×)" if r else "- B: n/a")
r = ratio("B", "wur2", "relay", "deliveries_per_s")
if issue9:
    out.append(f"- B: wur2 / relay deliveries/s = {r:.2f}× (goal ≥ 0.7×)" if r else "- B vs relay: n/a")
r = ratio("L", "wur2", "relay", "p99_us")
if issue9:
    out.append(f"- L: wur2 p99 / relay p99 = {r:.2f}× (goal ≤ 2×)" if r else "- L: n/a")
c = med(rows.get(("C", "wur2"), []), "bytes_per_conn")
if issue9:
    out.append(f"- C: wur2 {c:.0f} B per idle logged-in connection (goal ≤ 2048 B)" if c is not None else "- C: n/a")
r = ratio("B", "wur2-async-std", "wur2", "deliveries_per_s")
if r:
    out.append(f"- B: async-std driver / Tokio driver deliveries/s = {r:.2f}×")
r = ratio("B", "wur2-ws", "wur2-json", "deliveries_per_s")
if r:
    out.append(f"- B: WebSocket / TCP, both JSON lines (wur2-ws / wur2-json) deliveries/s = {r:.3f}× (goal ≥ 0.8×)")
r = ratio("B", "wur2-json", "wur2", "deliveries_per_s")
if r:
    out.append(f"- B: JSON lines / text over TCP (wur2-json / wur2) deliveries/s = {r:.3f}×")
compare = [
    ("B", "wur2", "wur2-base", "deliveries_per_s", "after / before deliveries/s"),
    ("L", "wur2", "wur2-base", "p50_us", "after / before p50"),
    ("L", "wur2", "wur2-base", "p99_us", "after / before p99"),
    ("C", "wur2", "wur2-base", "bytes_per_conn", "after / before bytes per idle connection"),
    ("B", "wur2-tls", "wur2", "deliveries_per_s", "TLS / plain deliveries/s"),
    ("B", "wur2-base-tls", "wur2-base", "deliveries_per_s", "before: TLS (loopback bridge) / plain deliveries/s"),
    ("B", "wur2-tls", "wur2-base-tls", "deliveries_per_s", "TLS after / TLS before deliveries/s"),
    ("L", "wur2-tls", "wur2-base-tls", "p99_us", "TLS after / TLS before p99"),
    ("C", "wur2-tls", "wur2-base-tls", "bytes_per_conn", "TLS after / TLS before bytes per idle connection"),
]
lines = [(c, a, b, k, what, ratio(c, a, b, k)) for c, a, b, k, what in compare]
if any(r for *_, r in lines):
    out.append("")
    out.append("Before (wur2-base) and after (wur2), medians:")
    for c, a, b, k, what, r in lines:
        if r:
            out.append(f"- {c}: {what} ({a} / {b}) = {r:.3f}×")

# Cluster mode (issue 18): every repetition, the cluster against one node on PostgreSQL.
cluster = [(c, s) for (c, s) in rows if s in ("wur2-cluster", "wur2-pg")]
if cluster:
    out.append("")
    out.append("Cluster (wur2-cluster: 3 nodes + NATS) against one node (wur2-pg), every repetition:")
    out.append("")
    out.append("| config | server | rep | deliveries/s | cluster / one node | p50 | p99 | lost | dup | history "
               "| bus pub. per chat msg | bus bytes per chat msg | NATS CPU s measured (µs/msg) | NATS reads, writes per msg | NATS CPU s whole run "
               "| servers' CPU µs/msg | bus dropped, gaps | warnings | clients per node | load |")
    out.append("|" + "---|" * 20)
    def f(r, key, fmt="{}"):
        return fmt.format(float(r[key])) if key in r else "–"
    for config, server in sorted(cluster, key=lambda cs: (order.get(cs[0], 9), cs[1] != "wur2-pg")):
        for r in rows[(config, server)]:
            base = [b for b in rows.get((config, "wur2-pg"), []) if b.get("rep") == r.get("rep")]
            ratio_text = "–"
            if server == "wur2-cluster" and base and "deliveries_per_s" in r and float(base[0].get("deliveries_per_s", 0)) > 0:
                ratio_text = f"{float(r['deliveries_per_s']) / float(base[0]['deliveries_per_s']):.2f}×"
            d = r.get("deliveries_per_s")
            nats = "–" if "bus_cpu_s" not in r else f"{float(r['bus_cpu_s']):.2f} ({float(r['bus_cpu_us_per_msg']):.0f})"
            calls = "–" if "bus_reads_per_msg" not in r else f"{float(r['bus_reads_per_msg']):.2f}, {float(r['bus_writes_per_msg']):.2f}"
            drops = "–" if "bus_dropped_total" not in r else f"{r['bus_dropped_total']}, {r['bus_gaps_total']}"
            out.append(
                f"| {config} | {server} | {r.get('rep')} | {'failed' if d is None else f'{float(d)/1e6:.3f} M'} | {ratio_text} "
                f"| {fmt_us(med([r], 'p50_us'))} | {fmt_us(med([r], 'p99_us'))} | {r.get('lost', '–')} | {r.get('dup', '–')} "
                f"| {r.get('history', '–')} | {f(r, 'bus_pub_per_msg', '{:.4f}')} | {f(r, 'bus_bytes_per_msg', '{:.0f}')} "
                f"| {nats} | {calls} | {f(r, 'nats_cpu_total_s', '{:.2f}')} | {f(r, 'server_cpu_us_per_msg', '{:.0f}')} "
                f"| {drops} | {r.get('warnings', '–')} | {r.get('clients_per_addr', '–')} | {r.get('load')} |"
            )
    for config in sorted({c for c, _ in cluster}, key=lambda c: order.get(c, 9)):
        r = ratio(config, "wur2-cluster", "wur2-pg", "deliveries_per_s")
        bus = med(rows.get((config, "wur2-cluster"), []), "bus_pub_per_msg")
        if r:
            out.append(f"- {config}: cluster / one node deliveries/s = {r:.2f}× (medians); "
                       f"bus publications per chat message {bus:.4f} (median)")
# Scale (issue 20): every repetition, the ratios within it.
def by_rep(config, server="wur2"):
    return {r.get("rep"): r for r in rows.get((config, server), [])}
if any(c in order and order[c] >= 10 for c, _ in rows):
    out.append("")
    out.append("Scale (issue 20), every repetition:")
    rl, rp, rt = by_rep("RL"), by_rep("RP"), by_rep("RT")
    if rl or rp or rt:
        out.append("")
        out.append("| rep | storm | clients | welcomed | failed | last welcome s | median s | busy answers (clients) | unavailable | reconnects "
                   "| L p99 without storm (RL) | L p99 during storm | during / without | L p99 whole run |")
        out.append("|" + "---|" * 14)
        for rep in sorted(set(rl) | set(rp) | set(rt)):
            base = rl.get(rep, {})
            for r in (rp.get(rep), rt.get(rep)):
                if not r:
                    continue
                if "storm_clients" not in r:
                    out.append(f"| {rep} | {r['config']} | failed | | | | | | | | | | | |")
                    continue
                ratio_text = "–"
                if base.get("p99_us") and float(r.get("p99_storm_us", 0)) > 0:
                    ratio_text = f"{float(r['p99_storm_us']) / float(base['p99_us']):.2f}×"
                out.append(
                    f"| {rep} | {r['storm_auth']} ({r['config']}) | {r['storm_clients']} | {r['storm_welcomed']} | {r['storm_failed']} "
                    f"| {float(r['storm_s']):.2f} | {float(r['storm_median_s']):.2f} | {r['storm_busy']} ({r['storm_busy_clients']}) "
                    f"| {r['storm_unavailable']} | {r['storm_reconnects']} | {fmt_us(med([base], 'p99_us')) if base else '–'} "
                    f"| {fmt_us(float(r['p99_storm_us']))} over {r['storm_deliveries']} | {ratio_text} | {fmt_us(float(r['p99_us']))} |"
                )
    x = by_rep("X")
    if x:
        out.append("")
        out.append("| rep | X connections | server RSS idle | after 200 warm-up | all logged in | bytes per connection | login with tokens s | load |")
        out.append("|" + "---|" * 8)
        for rep, r in sorted(x.items()):
            if "rss_ready_kib" not in r:
                out.append(f"| {rep} | failed | | | | | | |")
                continue
            out.append(
                f"| {rep} | {r['clients']} | {int(r.get('rss_start_kib', 0))/1024:.1f} MiB | {int(r['rss_before_kib'])/1024:.1f} MiB "
                f"| {int(r['rss_ready_kib'])/1024:.1f} MiB | {float(r['bytes_per_conn']):.0f} B | {float(r['setup_s']):.2f} | {r['load']} |"
            )
    w, relay = by_rep("W10K"), by_rep("W10K", "relay")
    if w or relay:
        out.append("")
        out.append("| rep | W10K wur2 deliveries/s | relay deliveries/s | wur2 / relay | wur2 lost | relay lost | wur2 p99 | relay p99 | setup s (wur2, relay) |")
        out.append("|" + "---|" * 9)
        for rep in sorted(set(w) | set(relay)):
            a, b = w.get(rep, {}), relay.get(rep, {})
            da, db = float(a.get("deliveries_per_s", 0)), float(b.get("deliveries_per_s", 0))
            out.append(
                f"| {rep} | {da/1e6:.2f} M | {db/1e6:.2f} M | {f'{da/db:.2f}×' if da and db else '–'} | {a.get('lost', 'failed')} "
                f"| {b.get('lost', 'failed')} | {fmt_us(med([a], 'p99_us'))} | {fmt_us(med([b], 'p99_us'))} | {a.get('setup_s', '–')}, {b.get('setup_s', '–')} |"
            )
text = "\n".join(out)
print(text)
open(sys.argv[2], "w").write(text + "\n")
EOF
log "results: $RESULTS; table: $TABLE"
