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
bench_init

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
    start_server "$db" bench_events PREGONERO_EVENTS__GROUP_COMMIT="$group"
    base="http://127.0.0.1:$SERVER_PORT"
    # The first start's admin key has every scope, events:write and events:read among them.
    export BENCH_KEY="$(grep -o 'prg_[A-Za-z0-9_-]*' "$WORK/server.out" | head -1)"
    BENCH_BATCH="$batch" wrk -t1 -c8 -d2s -s bench/event.lua "$base/events" >/dev/null   # warm-up
    before="$(curl -fsS -H "Authorization: Bearer $BENCH_KEY" "$base/events?service=bench&count=true&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
    result="$(BENCH_BATCH="$batch" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/event.lua "$base/events" | grep RESULT)"
    after="$(curl -fsS -H "Authorization: Bearer $BENCH_KEY" "$base/events?service=bench&count=true&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
    acked="$(sed -E 's/.*accepted=([0-9]+).*/\1/' <<<"$result")"
    stored=$((after - before))
    check="ok"; [ "$stored" -lt $((acked * batch)) ] && check="LOST $((acked * batch - stored))"
    rss="$(awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$SERVER_PID/status")"
    printf '%-8s %-8s batch=%-3s %s stored=%d durable_check=%s peak_rss_mib=%s\n' \
      "$db" "$mode" "$batch" "${result#RESULT }" "$stored" "$check" "$rss"
    stop_server
  done
done
