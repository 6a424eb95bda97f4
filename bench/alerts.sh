#!/usr/bin/env bash
# POST /api/alert (or POST /api/v1/messages) throughput and latency on loopback, bounded in time.
#
#   bench/alerts.sh                      # SQLite (embedded default)
#   BENCH_ROUTE=messages bench/alerts.sh # POST /api/v1/messages, a bot allowed 5,000 msg/s
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/<empty db> bench/alerts.sh
#
# Knobs: BENCH_DURATION (s, default 15), BENCH_CONNECTIONS (default 32), BENCH_THREADS (1),
# BENCH_MODE (`serve` = HTTP + workers, default; `http` = API-only replica, `--no-workers`),
# BENCH_DELAY_MS (pause per connection after each answer: a paced, roughly fixed offered rate
# of CONNECTIONS / (delay + latency) instead of saturation; e.g. 60 connections, 10 ms ≈ 5,000/s),
# BENCH_BIN (another build of the server to run instead, for A/B comparisons in one hour).
# Builds release binaries, starts the fake Telegram and the server as separate processes, links
# one integration, warms up, then runs wrk. Prints one RESULT line and the server's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pregonero-target}" SQLX_OFFLINE=true

source bench/lib.sh
ensure_wrk

DURATION="${BENCH_DURATION:-15}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-1}"
MODE="${BENCH_MODE:-serve}"
ROUTE="${BENCH_ROUTE:-alert}"
TOKEN_BOT="110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"

cargo build --release --locked -q --bin pregonero -p pregonero
cargo build --release --locked -q --bin pregonero-fakes -p fakes
BIN="$CARGO_TARGET_DIR/release"

WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

FAKE_PORT="$(free_port)"
"$BIN/pregonero-fakes" telegram --port "$FAKE_PORT" --bot "$TOKEN_BOT:bench_bot" --accept-any-chat \
  >"$WORK/fake.log" 2>&1 &
PIDS+=($!)

DBENV=()
[ -n "${BENCH_DATABASE_URL:-}" ] && DBENV=("DATABASE_URL=$BENCH_DATABASE_URL" "PREGONERO_SECRET_KEY=$(head -c 32 /dev/urandom | base64)")
start_server() { # $1 = extra serve flags
  env "${DBENV[@]}" PREGONERO_PORT="$SERVER_PORT" PREGONERO_DATA_DIR="$WORK/data" RUST_LOG=warn \
  PREGONERO_TELEGRAM__API_BASE_URL="http://127.0.0.1:$FAKE_PORT" \
  PREGONERO_ALERTS__PLANS__FREE__DAILY_QUOTA=100000000 PREGONERO_ALERTS__MAX_PENDING=0 \
  PREGONERO_SCHEDULE__ENABLED=false \
  PREGONERO_RATE_LIMIT__INGEST__PER_SECOND=10000000 PREGONERO_RATE_LIMIT__INGEST__BURST=10000000 \
  "${BENCH_BIN:-$BIN/pregonero}" serve $1 >"$WORK/server.out" 2>"$WORK/server.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$SERVER_PORT/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server did not start:"; cat "$WORK/server.log"; exit 1
}

SERVER_PORT="$(free_port)"
BASE="http://127.0.0.1:$SERVER_PORT"
# The first start links the integration (the bot's poller needs workers).
start_server ""
KEY="$(grep -o 'prg_[A-Za-z0-9_-]*' "$WORK/server.out" | head -1)"
[ -n "$KEY" ] || { echo "no bootstrap key printed (is BENCH_DATABASE_URL an empty database?)"; exit 1; }
api() { curl -fsS -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@"; }
CHANNEL="$(api -d "{\"kind\":\"telegram\",\"name\":\"bench\",\"bot_token\":\"$TOKEN_BOT\"}" "$BASE/api/v1/channels" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
CREATED="$(api -d "{\"channel_id\":\"$CHANNEL\",\"name\":\"bench\"}" "$BASE/api/v1/integrations")"
INTEGRATION="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["integration"]["id"])' "$CREATED")"
export ALERT_TOKEN="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"]["token"])' "$CREATED")"
CODE="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["link"]["url"].split("?start=")[1])' "$CREATED")"
curl -fsS -H 'Content-Type: application/json' -d "{\"token\":\"$TOKEN_BOT\",\"chat_id\":5001,\"text\":\"/start $CODE\"}" \
  "http://127.0.0.1:$FAKE_PORT/__control/updates" >/dev/null
for _ in $(seq 100); do
  api "$BASE/api/v1/integrations/$INTEGRATION" | grep -q '"status":"active"' && break; sleep 0.1
done
api "$BASE/api/v1/integrations/$INTEGRATION" | grep -q '"status":"active"' || { echo "integration not linked"; exit 1; }

if [ "$MODE" = http ]; then
  kill -TERM "$SERVER_PID"; wait "$SERVER_PID" || true
  start_server "--no-workers"
fi

rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$SERVER_PID/status"; }
if [ "$ROUTE" = messages ]; then
  # A bot allowed 5,000 msg/s, so that pacing does not hold the deliveries back.
  export API_KEY="$KEY" CHANNEL_ID="$(api -d "{\"kind\":\"telegram\",\"name\":\"fast\",\"bot_token\":\"$TOKEN_BOT\",\"limits\":{\"per_second\":5000}}" "$BASE/api/v1/channels" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  SCRIPT=bench/message.lua URL="$BASE/api/v1/messages"
else
  SCRIPT=bench/alert.lua URL="$BASE/api/alert"
fi
echo "route: $ROUTE  database: $([ -n "${BENCH_DATABASE_URL:-}" ] && echo postgresql || echo sqlite)  mode: $MODE  connections: $CONNECTIONS  threads: $THREADS  duration: ${DURATION}s  pause: ${BENCH_DELAY_MS:-none} ms"
echo "RSS before: $(rss)"
BENCH_DELAY_MS= wrk -t1 -c8 -d2s -s "$SCRIPT" "$URL" >/dev/null   # warm-up
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$SCRIPT" "$URL" | grep RESULT
echo "RSS after: $(rss)  VmHWM: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$SERVER_PID/status")"
ACCEPTED="$(api "$BASE/health" | python3 -c 'import json,sys; h=json.load(sys.stdin); print(h["queue"]["depth"])')"
echo "queue depth after: $ACCEPTED"
# Starvation or lock time-outs show up here (the delivery workers share SQLite's write lock).
echo "server log: $(grep -c ' ERROR ' "$WORK/server.log" || true) errors, $(grep -ci 'database is locked' "$WORK/server.log" || true) 'database is locked'"
