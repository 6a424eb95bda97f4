#!/usr/bin/env bash
# POST /events throughput and latency on loopback, bounded in time: durable group commit
# against the one-transaction-per-request baseline, single events and batches of 100, on SQLite
# and (when reachable) PostgreSQL, all in one run.
#
#   bench/events.sh
#
# Knobs: BENCH_DURATION (s per scenario, default 10), BENCH_CONNECTIONS (default 64),
# BENCH_THREADS (wrk threads, default 1), BENCH_DATABASES ("sqlite postgres"),
# BENCH_SCENARIOS ("group:1 group:100 baseline:1 baseline:100"),
# BENCH_POSTGRES_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/test; each scenario gets
# a fresh database there, dropped afterwards).
# Each scenario starts a fresh release server (`serve --no-workers`: an API replica), warms up
# for 2 s, runs wrk, then checks that the database holds at least every acknowledged event.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pregonero-target}" SQLX_OFFLINE=true

source bench/lib.sh
ensure_wrk

DURATION="${BENCH_DURATION:-10}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-1}"
DATABASES="${BENCH_DATABASES:-sqlite postgres}"
SCENARIOS="${BENCH_SCENARIOS:-group:1 group:100 baseline:1 baseline:100}"
PG_ADMIN="${BENCH_POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"

cargo build --release --locked -q --bin pregonero -p pregonero
BIN="$CARGO_TARGET_DIR/release/pregonero"

WORK="$(mktemp -d)"
SERVER_PID=""
PG_DB=""
psql_admin() { psql "$PG_ADMIN" -qAtc "$1" >/dev/null; }
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
  if [ -n "$PG_DB" ]; then psql_admin "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" || true; PG_DB=""; fi
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

# $1 = sqlite|postgres, $2 = true|false (group commit)
start_server() {
  local db="$1" group="$2" dbenv=()
  rm -rf "$WORK/data"
  if [ "$db" = postgres ]; then
    PG_DB="bench_events_$$_$RANDOM"
    psql_admin "CREATE DATABASE $PG_DB"
    dbenv=("DATABASE_URL=${PG_ADMIN%/*}/$PG_DB")
  fi
  SERVER_PORT="$(free_port)"
  env "${dbenv[@]}" PREGONERO_PORT="$SERVER_PORT" PREGONERO_DATA_DIR="$WORK/data" RUST_LOG=warn \
    PREGONERO_SCHEDULE__ENABLED=false PREGONERO_EVENTS__GROUP_COMMIT="$group" \
    "$BIN" serve --no-workers >"$WORK/server.out" 2>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$SERVER_PORT/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server did not start:"; cat "$WORK/server.log"; exit 1
}

postgres_ok() {
  command -v psql >/dev/null && psql "$PG_ADMIN" -qAtc 'select 1' >/dev/null 2>&1
}

export BENCH_TIMESTAMP="$(date -u +%Y-%m-%dT%H:%M:%S.000Z)"
echo "pregonero $(git rev-parse --short HEAD 2>/dev/null || echo '?')  $(nproc) cores  wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
for db in $DATABASES; do
  if [ "$db" = postgres ] && ! postgres_ok; then
    echo "SKIPPED postgres: no PostgreSQL at $PG_ADMIN (psql missing or server down)"
    continue
  fi
  for scenario in $SCENARIOS; do
    mode="${scenario%%:*}" batch="${scenario##*:}"
    group=true; [ "$mode" = baseline ] && group=false
    start_server "$db" "$group"
    base="http://127.0.0.1:$SERVER_PORT"
    BENCH_BATCH="$batch" wrk -t1 -c8 -d2s -s bench/event.lua "$base/events" >/dev/null   # warm-up
    before="$(curl -fsS "$base/events?service=bench&count=true&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
    result="$(BENCH_BATCH="$batch" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/event.lua "$base/events" | grep RESULT)"
    after="$(curl -fsS "$base/events?service=bench&count=true&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
    acked="$(sed -E 's/.*accepted=([0-9]+).*/\1/' <<<"$result")"
    stored=$((after - before))
    check="ok"; [ "$stored" -lt $((acked * batch)) ] && check="LOST $((acked * batch - stored))"
    rss="$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status")"
    printf '%-8s %-8s batch=%-3s %s stored=%d durable_check=%s peak_rss_mib=%s\n' \
      "$db" "$mode" "$batch" "${result#RESULT }" "$stored" "$check" "$rss"
    stop_server
  done
done
