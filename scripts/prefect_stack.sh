#!/usr/bin/env bash
# Start / stop / inspect a local Prefect stack for SentiFlow: one server (loopback) and process workers.
#
#   scripts/prefect_stack.sh start     # server + `local` process work pool + deployments + automations + workers
#   scripts/prefect_stack.sh status
#   scripts/prefect_stack.sh stop      # stops only what `start` started (by the process ids it recorded)
#
# Settings (environment):
#   PREFECT_HOME                   Prefect's state (default ~/.prefect); the SQLite database lives here
#   SENTIFLOW_PREFECT_PORT         server port on 127.0.0.1 (default 4200)
#   SENTIFLOW_WORK_POOL            work pool name (default local; prefect.yaml's deployments use `local`)
#   SENTIFLOW_WORKERS              how many workers to start on this machine (default 1)
#   SENTIFLOW_WORKER_LIMIT         flow runs one worker runs at once (default 1: a second worker, here or on
#                                  another machine, takes the next run instead of this one queueing it)
#   SENTIFLOW_DEPLOY               1 (default) runs `prefect deploy --all` and creates automations.yaml's
#                                  automations (those not there yet) after the server is up; 0 skips both
#   PREFECT_API_DATABASE_CONNECTION_URL   e.g. postgresql+asyncpg://user:pass@127.0.0.1:5432/prefect for
#                                  PostgreSQL instead of SQLite (see scripts/prefect_postgres.sh)
# Quiet: telemetry is off and the server/worker logs go to $PREFECT_HOME/sentiflow-stack/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PREFECT="${PREFECT_BIN:-$ROOT/.venv/bin/prefect}"
[[ -x "$PREFECT" ]] || PREFECT="$(command -v prefect)"
export PREFECT_HOME="${PREFECT_HOME:-$HOME/.prefect}"
PORT="${SENTIFLOW_PREFECT_PORT:-4200}"
POOL="${SENTIFLOW_WORK_POOL:-local}"
WORKERS="${SENTIFLOW_WORKERS:-1}"
WORKER_LIMIT="${SENTIFLOW_WORKER_LIMIT:-1}"
STATE="$PREFECT_HOME/sentiflow-stack"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
# the server streams the runs' logs out, so `prefect deployment run --watch` shows them (a failure's reason too)
export PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED=true PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED=true
export PREFECT_LOGGING_LEVEL="${PREFECT_LOGGING_LEVEL:-WARNING}"
export PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$PORT"
mkdir -p "$STATE"

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_healthy() {
    local i
    for i in $(seq 1 "${SENTIFLOW_PREFECT_START_TIMEOUT:-180}"); do
        if "$ROOT/.venv/bin/python" - "$PREFECT_API_URL" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).read().strip() == b"true" else 1)
EOF
        alive "$STATE/server.pid" || { echo "prefect server exited; see $STATE/server.log" >&2; tail -20 "$STATE/server.log" >&2; return 1; }
        sleep 1
    done
    echo "prefect server did not answer on $PREFECT_API_URL; see $STATE/server.log" >&2
    return 1
}

start() {
    if alive "$STATE/server.pid"; then
        echo "server already running (pid $(cat "$STATE/server.pid")) on $PREFECT_API_URL"
    else
        setsid "$PREFECT" server start --host 127.0.0.1 --port "$PORT" >"$STATE/server.log" 2>&1 </dev/null &
        echo $! >"$STATE/server.pid"
        wait_healthy
        echo "server up on $PREFECT_API_URL (pid $(cat "$STATE/server.pid"))"
    fi
    if ! "$PREFECT" work-pool inspect "$POOL" >/dev/null 2>&1; then
        "$PREFECT" work-pool create "$POOL" --type process >/dev/null
        echo "work pool $POOL (process) created"
    fi
    if [[ "${SENTIFLOW_DEPLOY:-1}" == 1 ]]; then
        "$PREFECT" --no-prompt deploy --all >"$STATE/deploy.log" 2>&1 || { cat "$STATE/deploy.log" >&2; exit 1; }
        echo "deployments created from prefect.yaml (log: $STATE/deploy.log)"
        if ! "$PREFECT" automation inspect sentiflow-crashed-host >/dev/null 2>&1; then
            "$PREFECT" automation create --from-file "$ROOT/automations.yaml" >"$STATE/automations.log" 2>&1 \
                || { cat "$STATE/automations.log" >&2; exit 1; }
            echo "automations created from automations.yaml"
        fi
    fi
    local n
    for n in $(seq 1 "$WORKERS"); do
        if alive "$STATE/worker-$n.pid"; then continue; fi
        setsid "$PREFECT" worker start --pool "$POOL" --type process --name "$(hostname)-$n" \
            --limit "$WORKER_LIMIT" >"$STATE/worker-$n.log" 2>&1 </dev/null &
        echo $! >"$STATE/worker-$n.pid"
        echo "worker $n started (pid $!, log $STATE/worker-$n.log)"
    done
    echo "export PREFECT_API_URL=$PREFECT_API_URL"
}

stop_pidfile() {
    local f="$1" pid i
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        echo "stopped $(basename "$f" .pid) (pid $pid)"
    fi
    rm -f "$f"
}

stop() {
    local f
    for f in "$STATE"/worker-*.pid; do [[ -e "$f" ]] && stop_pidfile "$f"; done
    stop_pidfile "$STATE/server.pid"
}

status() {
    local f
    for f in "$STATE"/server.pid "$STATE"/worker-*.pid; do
        [[ -e "$f" ]] || continue
        if alive "$f"; then echo "$(basename "$f" .pid): running (pid $(cat "$f"))"; else echo "$(basename "$f" .pid): dead"; fi
    done
    echo "PREFECT_API_URL=$PREFECT_API_URL"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
