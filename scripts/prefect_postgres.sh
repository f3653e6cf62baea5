#!/usr/bin/env bash
# Run the Prefect end-to-end test (or any command) against a throwaway PostgreSQL cluster on loopback.
#
#   scripts/prefect_postgres.sh                      # the e2e test: tests/flows/test_deployments.py
#   scripts/prefect_postgres.sh CMD [ARGS...]        # any command; it sees PREFECT_API_DATABASE_CONNECTION_URL
#
# Needs the PostgreSQL server binaries (Debian: `apt-get install -y postgresql`; PG_BIN overrides where they are).
# The cluster lives in a temp folder, listens on 127.0.0.1 only (trust auth for the local test user), and is
# stopped and deleted on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="$ROOT/.venv/bin/python"

find_pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x "$d/postgres" ]] && { echo "$d"; return; }
    done
    command -v pg_ctl >/dev/null && { dirname "$(command -v pg_ctl)"; return; }
    echo "PostgreSQL server binaries not found: apt-get install -y postgresql, or set PG_BIN" >&2
    exit 1
}
PG_BIN="$(find_pg_bin)"

TMP="$(mktemp -d -t sentiflow-pg.XXXXXX)"
PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DB_USER=sentiflow
DB_NAME=prefect

# initdb/postgres refuse to run as root: run them as the `postgres` system user then.
as_pg() {
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [[ "$(id -u)" == 0 ]]; then chown postgres "$TMP"; fi

cleanup() {
    as_pg "$PG_BIN/pg_ctl" -D "$TMP/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

as_pg "$PG_BIN/initdb" -D "$TMP/data" -U "$DB_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >"$TMP/initdb.log" 2>&1 \
    || { cat "$TMP/initdb.log" >&2; exit 1; }
as_pg "$PG_BIN/pg_ctl" -D "$TMP/data" -l "$TMP/postgres.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $TMP -c max_connections=200" start >/dev/null \
    || { cat "$TMP/postgres.log" >&2; exit 1; }
as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" "$DB_NAME"
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (cluster in $TMP)"

export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://$DB_USER@127.0.0.1:$PORT/$DB_NAME"
export SENTIFLOW_TEST_PREFECT_DB_URL="$PREFECT_API_DATABASE_CONNECTION_URL"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

if [[ $# -gt 0 ]]; then
    "$@"
else
    "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider tests/flows/test_deployments.py
fi
