#!/usr/bin/env bash
# Make sure PostgreSQL answers at 127.0.0.1:5432 with trust authentication and a `test` database,
# as the `postgres` tests expect (tests/conftest.py: postgresql://postgres@127.0.0.1:5432/test).
#
#   running, trusted, database present  -> nothing to do (the usual case)
#   installed but stopped               -> start the Debian cluster on that port, wait up to 30 s
#   not installed                       -> apt-get install postgresql, then start it
#   password required / no `test` db    -> put trust rules at the top of pg_hba.conf, reload; createdb
#
# For a test machine only: trust means no passwords on loopback. LOCARD_PG_PORT changes the port.
set -euo pipefail

HOST=127.0.0.1
PORT=${LOCARD_PG_PORT:-5432}
DATABASE="test"
WAIT_SECONDS=30
MARKER="# locard: trust on loopback for the test suite (scripts/ensure_postgres.sh)"
# Checks must not pass thanks to a password from the environment or ~/.pgpass: the tests use none.
export PGPASSFILE=/nonexistent/.pgpass PGCONNECT_TIMEOUT=5  # a missing file is silently ignored
unset PGPASSWORD PGSERVICE PGSERVICEFILE

SCRIPT_NAME=ensure_postgres.sh
# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
apt_install() {
    say "Installing $* from Debian"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

ready() { pg_isready -q -h "$HOST" -p "$PORT"; }
sql() {  # sql DATABASE QUERY: as user postgres over TCP, never prompting for a password
    psql -h "$HOST" -p "$PORT" -U postgres -d "$1" -w -X -A -t -q -c "$2"
}
trusted() { sql postgres 'SELECT 1' >/dev/null 2>&1; }
wait_ready() {
    local waited=0
    until ready; do
        ((waited < WAIT_SECONDS)) || die "PostgreSQL did not answer at $HOST:$PORT within ${WAIT_SECONDS}s"
        sleep 1
        waited=$((waited + 1))
    done
}

# The Debian cluster (version and name) configured for our port; empty when there is none.
cluster_for_port() {
    command -v pg_lsclusters >/dev/null || return 0
    pg_lsclusters --no-header 2>/dev/null | awk -v port="$PORT" '$3 == port { print $1, $2; exit }'
}

# --- The server ---------------------------------------------------------------------------------
if ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null; then
    apt_install postgresql-client
fi

if ready; then
    say "PostgreSQL answers at $HOST:$PORT"
else
    if [[ -z $(cluster_for_port) ]]; then
        if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
            apt_install postgresql  # its postinst creates (and may start) the cluster `main` on 5432
        fi
        if [[ -z $(cluster_for_port) ]]; then
            version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
            [[ -n $version ]] || die "no PostgreSQL server found under /usr/lib/postgresql"
            if [[ $PORT == 5432 ]] && ! pg_lsclusters --no-header 2>/dev/null | awk '$2 == "main" { f = 1 } END { exit !f }'; then
                say "Creating PostgreSQL $version cluster main on port $PORT"
                as_root pg_createcluster "$version" main --port "$PORT"
            else
                die "no PostgreSQL cluster is configured for port $PORT (see pg_lsclusters)"
            fi
        fi
    fi
    read -r version name <<<"$(cluster_for_port)"
    if ! ready; then
        say "Starting PostgreSQL cluster $version/$name on port $PORT"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start || true  # "already running" is fine
    fi
    wait_ready
    say "PostgreSQL answers at $HOST:$PORT"
fi

# --- Trust authentication on loopback -----------------------------------------------------------------
if ! trusted; then
    read -r version name <<<"$(cluster_for_port)"
    [[ -n ${version:-} ]] || die "user postgres cannot connect to $HOST:$PORT without a password, and that server is no local Debian cluster whose pg_hba.conf could be changed"
    hba=/etc/postgresql/$version/$name/pg_hba.conf
    [[ -f $hba ]] || die "$hba not found"
    if ! grep -qxF "$MARKER" "$hba"; then
        say "Trusting loopback connections in $hba (first match wins, so the rules go on top)"
        new_hba=$(mktemp)
        { printf '%s\n' "$MARKER" "local all all trust" "host all all 127.0.0.1/32 trust" \
              "host all all ::1/128 trust" ""
          as_root cat "$hba"; } >"$new_hba"
        as_root cp -p "$hba" "$hba.locard-backup"
        as_root cp "$new_hba" "$hba"  # into the existing file: owner and mode stay
        rm -f "$new_hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" reload
    for _ in $(seq 1 10); do trusted && break; sleep 0.5; done
    trusted || die "user postgres still cannot connect to $HOST:$PORT without a password"
fi

# --- The `test` database --------------------------------------------------------------------------
if [[ $(sql postgres "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'") != 1 ]]; then
    say "Creating database $DATABASE"
    createdb -h "$HOST" -p "$PORT" -U postgres -w "$DATABASE"
fi
sql "$DATABASE" 'SELECT 1' >/dev/null || die "cannot query database $DATABASE at $HOST:$PORT"
say "PostgreSQL ready: postgresql://postgres@$HOST:$PORT/$DATABASE (trust)"
