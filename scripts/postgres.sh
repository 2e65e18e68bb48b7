# Sourced by scripts/test.sh: starts the local PostgreSQL 15 cluster for the PostgreSQL tests
# and exports WUR2_TEST_POSTGRES_URL (an account that may create databases; each test makes
# its own) and WUR2_TEST_POSTGRES_CTL (the command the restart test appends `restart`,
# `stop` or `start` to).
#
# When PostgreSQL cannot be started: with CI=true this fails the test command; otherwise it
# prints a loud SKIPPED warning and the PostgreSQL tests skip themselves.
# Override by exporting WUR2_TEST_POSTGRES_URL yourself before running scripts/test.sh.
#
# Tests make a database each (wur2_e2e_*, wur2_t_*) and not all of them drop it: the ones
# left by earlier runs are dropped here, and scripts/test.sh calls wur2_pg_drop_test_databases
# again when the tests are done. A database some session still uses (another test run on
# the same machine) is left alone. Thousands of leftovers once made crash recovery at start
# (an fsync of the whole data directory) outlast pg_ctl's default 60 s wait.

source "$(dirname "${BASH_SOURCE[0]}")/service-skip.sh"
wur2_pg_skip() { wur2_skip_service "every PostgreSQL test" "$1" WUR2_TEST_POSTGRES_URL WUR2_TEST_POSTGRES_CTL; }

# Drops the databases tests made (on the cluster WUR2_TEST_POSTGRES_URL names) that no
# session is connected to.
wur2_pg_drop_test_databases() {
    [ -n "${WUR2_TEST_POSTGRES_URL:-}" ] && [ -n "${WUR2_PG_PSQL:-}" ] || return 0
    local names
    names=$(cd / && $WUR2_PG_PSQL -tAc "SELECT datname FROM pg_database
        WHERE datname LIKE 'wur2\_e2e\_%' OR datname LIKE 'wur2\_t\_%'") || return 0
    [ -n "$names" ] || return 0
    local count
    count=$(printf '%s\n' "$names" | wc -l)
    printf '%s\n' "$names" | sed 's/.*/DROP DATABASE IF EXISTS "&";/' |
        (cd / && $WUR2_PG_PSQL -q >/dev/null 2>&1) || true
    echo "Dropped up to $count test databases left on PostgreSQL (those in use stay)" >&2
}

wur2_pg_setup() {
    if [ -n "${WUR2_TEST_POSTGRES_URL:-}" ]; then
        echo "Using WUR2_TEST_POSTGRES_URL from the environment" >&2
        return 0
    fi
    local version=15 cluster=main role=wur2_test password=wur2_test port
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d "/usr/lib/postgresql/$version/bin" ]; then
        wur2_pg_skip "PostgreSQL $version is not installed (no pg_ctlcluster)"
        return
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            wur2_pg_skip "starting PostgreSQL needs root (or password-less sudo)"
            return
        fi
    fi
    if ! $sudo pg_ctlcluster "$version" "$cluster" status >/dev/null 2>&1; then
        # Recovery after an unclean stop may take minutes on a large data directory.
        if ! $sudo pg_ctlcluster "$version" "$cluster" start -- -t 600; then
            wur2_pg_skip "pg_ctlcluster $version $cluster start failed"
            return
        fi
    fi
    port=$($sudo pg_conftool -s "$version" "$cluster" show port 2>/dev/null || echo 5432)
    # A cluster just started (here or by someone else) refuses connections while it starts.
    local waited=0
    until pg_isready -q -h 127.0.0.1 -p "$port" || [ "$waited" -ge 60 ]; do
        sleep 0.5; waited=$((waited + 1))
    done
    # A password-protected role with CREATEDB, reached over TCP on localhost (scram-sha-256
    # is what a fresh Debian pg_hba.conf allows for 127.0.0.1).
    local sql="DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') THEN
            CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password';
        ELSE
            ALTER ROLE $role LOGIN CREATEDB PASSWORD '$password';
        END IF;
    END \$\$;"
    if ! (cd / && printf '%s\n' "$sql" | $sudo su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" >/dev/null); then
        wur2_pg_skip "could not create the $role role"
        return
    fi
    if ! (cd / && $sudo su postgres -c "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname = '$role'\"" | grep -q 1); then
        (cd / && $sudo su postgres -c "createdb -p $port -O $role $role") || {
            wur2_pg_skip "could not create the $role database"
            return
        }
    fi
    export WUR2_TEST_POSTGRES_URL="postgres://$role:$password@127.0.0.1:$port/$role"
    WUR2_PG_PSQL="$sudo runuser -u postgres -- psql -p $port"
    wur2_pg_drop_test_databases
    export WUR2_TEST_POSTGRES_CTL="$sudo pg_ctlcluster $version $cluster"
    echo "PostgreSQL $version running; WUR2_TEST_POSTGRES_URL=$WUR2_TEST_POSTGRES_URL" >&2
}

wur2_pg_setup
