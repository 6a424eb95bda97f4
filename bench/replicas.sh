#!/usr/bin/env bash
# Throughput and CPU cost of delivery on 1 and 3 replicas sharing one PostgreSQL and one Redis,
# against the fake WhatsApp Cloud API with its limits switched off (issue 22).
#
#   bench/replicas.sh                 # 1 and 3 replicas, 3 runs each, ~6 minutes
#
# Each run: a fresh PostgreSQL database and Redis database, R `serve` processes (HTTP and
# workers) with REDIS_URL set, NUMBERS WhatsApp numbers each allowed 100,000 msg/s, and one
# campaign per number over N / NUMBERS contacts, all started together. The fake sends the
# `sent`, `delivered` and `read` status webhooks of every message, spread over the replicas as a
# load balancer would. A run ends when every campaign is completed and every message is `read`.
#
# Reported per run: delivered messages per second (first campaign started to last message read),
# and the CPU time (user + system, from /proc) spent during the run per delivered message by the
# replicas together, by PostgreSQL (every backend), by Redis and by the fake; and the replicas'
# context switches per message (every thread's, from /proc/<pid>/task/*/status).
#
# Knobs: BENCH_REPLICAS ("1 3"), BENCH_RUNS (3), BENCH_RECIPIENTS (20000), BENCH_NUMBERS (4),
# BENCH_RECEIPTS (on; off: the fake sends no status webhooks and a run ends when the campaigns
# complete), BENCH_REDIS_DB (13: flushed before each run), BENCH_REDIS (on; off: no REDIS_URL, for one
# replica only), BENCH_POSTGRES_ADMIN_URL, BENCH_STATEMENTS (off; on: PostgreSQL logs every
# statement of the bench database and the run reports statements per message from its log,
# BENCH_PG_LOG, default /var/log/postgresql/postgresql-*-main.log; the logging costs PostgreSQL
# CPU, so take CPU figures from runs without it), BENCH_PG_OPTIONS (appended to the replicas'
# DATABASE_URL, e.g. "?sslmode=disable": by default the driver uses TLS when the server offers it).
# Target: <= 100 us of server CPU per delivered message.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pregonero-target}" SQLX_OFFLINE=true
source bench/lib.sh

REPLICAS="${BENCH_REPLICAS:-1 3}"
RUNS="${BENCH_RUNS:-3}"
N="${BENCH_RECIPIENTS:-20000}"
NUMBERS="${BENCH_NUMBERS:-4}"
REDIS_DB="${BENCH_REDIS_DB:-13}"
RECEIPTS="${BENCH_RECEIPTS:-on}"
REDIS_URL_BENCH="redis://127.0.0.1:6379/$REDIS_DB"

if ! postgres_ok; then echo "SKIPPED: no PostgreSQL at $PG_ADMIN"; exit 0; fi
if ! command -v redis-cli >/dev/null || ! redis-cli -n "$REDIS_DB" ping >/dev/null 2>&1; then
  echo "SKIPPED: no Redis at 127.0.0.1:6379 (redis-server --daemonize yes --bind 127.0.0.1 --port 6379)"; exit 0
fi

bench_init
cargo build --release --locked -q -p fakes --bin pregonero-fakes
FAKES="$CARGO_TARGET_DIR/release/pregonero-fakes"
TICK=$(getconf CLK_TCK)
PIDS=()
FAKE_PID=""
cleanup() {
  for p in "${PIDS[@]}" $FAKE_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}" $FAKE_PID; do wait "$p" 2>/dev/null || true; done
  PIDS=(); FAKE_PID=""
  if [ -n "$PG_DB" ]; then psql_admin "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" || true; PG_DB=""; fi
}
trap 'cleanup; bench_cleanup' EXIT

# CPU ticks (user + system) of the given pids; a postmaster's waited-for children count too.
ticks() { local t=0 p; for p in "$@"; do
  [ -r "/proc/$p/stat" ] || continue
  t=$((t + $(awk '{sub(/.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$p/stat")))
done; echo "$t"; }
# Context switches (voluntary + involuntary) of every live thread of the given pids (a thread
# that ended meanwhile takes its count with it).
switches() { local p; for p in "$@"; do cat /proc/"$p"/task/*/status 2>/dev/null; done \
  | awk '/^(non)?voluntary_ctxt_switches/ {t += $2} END {print t + 0}'; }
postgres_pids() { pgrep -x postgres || pgrep -f '^postgres' || true; }
redis_pid() { pgrep -x redis-server | head -n1; }

python3 - "$N" "$NUMBERS" "$WORK/contacts.csv" <<'PY'
import sys
n, numbers, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    f.write("nombre;grupo;telefono\n")
    for i in range(n):
        f.write(f"Persona {i};g{i % numbers};+34{600000000 + i}\n")
PY

# One run: $1 replicas. Prints one result line (python) and appends it to $WORK/results.
run() {
  local r="$1" i fake key="" api port
  redis-cli -n "$REDIS_DB" flushdb >/dev/null
  PG_DB="bench_replicas_$$_$RANDOM"
  psql_admin "CREATE DATABASE $PG_DB"
  [ "${BENCH_STATEMENTS:-off}" = off ] || psql_admin "ALTER DATABASE $PG_DB SET log_min_duration_statement = 0"
  local fake_port numbers=()
  fake_port="$(free_port)"
  for i in $(seq "$NUMBERS"); do numbers+=(--number "10654035224292$i:bench-token-$i:bench-secret-$i"); done
  "$FAKES" whatsapp --port "$fake_port" "${numbers[@]}" --mps 0 --window off \
    >"$WORK/fake.out" 2>"$WORK/fake.log" &
  FAKE_PID=$!
  for _ in $(seq 100); do grep -q listening "$WORK/fake.out" 2>/dev/null && break; sleep 0.1; done
  local fake="http://127.0.0.1:$fake_port" secret ports=() redis_env=()
  [ "${BENCH_REDIS:-on}" = off ] || redis_env=("REDIS_URL=$REDIS_URL_BENCH")
  secret="$(head -c 32 /dev/urandom | base64)"
  for i in $(seq "$r"); do
    port="$(free_port)"; ports+=("$port")
    env DATABASE_URL="${PG_ADMIN%/*}/$PG_DB${BENCH_PG_OPTIONS:-}" PREGONERO_SECRET_KEY="$secret" ${redis_env[@]+"${redis_env[@]}"} \
      PREGONERO_PORT="$port" PREGONERO_DATA_DIR="$WORK/data-$i" RUST_LOG=warn \
      PREGONERO_SCHEDULE__ENABLED=false PREGONERO_WHATSAPP__API_BASE_URL="$fake/v21.0" \
      PREGONERO_RATE_LIMIT__PER_KEY__PER_SECOND=10000000 PREGONERO_RATE_LIMIT__PER_KEY__BURST=10000000 \
      PREGONERO_RATE_LIMIT__PER_IP__PER_SECOND=10000000 PREGONERO_RATE_LIMIT__PER_IP__BURST=10000000 \
      "$BIN" serve >"$WORK/server-$i.out" 2>"$WORK/server-$i.log" &
    PIDS+=($!)
    # The first replica creates the schema and prints the admin key; the others start after it.
    for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fs "http://127.0.0.1:$port/ready" >/dev/null || { echo "replica $i did not start:"; cat "$WORK/server-$i.log"; exit 1; }
    [ -n "$key" ] || key=$(grep -A2 "admin API key" "$WORK/server-$i.out" | grep -o 'prg_[A-Za-z0-9_-]*' | head -n1)
  done
  api="http://127.0.0.1:${ports[0]}/api/v1"
  call() { curl -fsS -H "Authorization: Bearer $key" "$@"; }
  json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

  local import_id channels=() channel
  import_id=$(call -H 'Content-Type: text/csv' --data-binary @"$WORK/contacts.csv" "$api/contacts/imports?filename=bench.csv" | json '["id"]')
  while [ "$(call "$api/contacts/imports/$import_id" | json '["status"]')" = running ]; do sleep 0.2; done
  for i in $(seq "$NUMBERS"); do
    channel=$(call -H 'content-type: application/json' "$api/channels" -d "{\"kind\":\"whatsapp_cloud\",\"name\":\"bench $i\",\"phone_number_id\":\"10654035224292$i\",\"access_token\":\"bench-token-$i\",\"app_secret\":\"bench-secret-$i\",\"limits\":{\"per_second\":100000,\"burst\":1000}}")
    channels+=("$(echo "$channel" | json '["id"]')")
    # Status webhooks reach the replicas in turn, as through a load balancer.
    port="${ports[$(( (i - 1) % r ))]}"
    [ "$RECEIPTS" = on ] || continue
    call -H 'content-type: application/json' "$fake/__control/numbers" \
      -d "{\"phone_number_id\":\"10654035224292$i\",\"access_token\":\"bench-token-$i\",\"app_secret\":\"bench-secret-$i\",\"webhook_url\":\"http://127.0.0.1:$port$(echo "$channel" | json '["webhook_path"]')\"}" >/dev/null
  done
  sleep 1

  local pg_pids t0 s0 p0 d0 f0 c0 campaigns=() log="" log0=0
  if [ "${BENCH_STATEMENTS:-off}" = on ]; then
    log="${BENCH_PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log | head -n1)}"
    log0=$(stat -c %s "$log")
  fi
  pg_pids=$(postgres_pids)
  c0=$(switches "${PIDS[@]}")
  s0=$(ticks "${PIDS[@]}"); p0=$(ticks $pg_pids); d0=$(ticks "$(redis_pid)"); f0=$(ticks "$FAKE_PID")
  t0=$(date +%s.%N)
  for i in $(seq "$NUMBERS"); do
    campaigns+=("$(call -H 'content-type: application/json' "$api/campaigns" \
      -d "{\"name\":\"bench $i\",\"channel_id\":\"${channels[$((i - 1))]}\",\"body\":\"Hola {{ nombre }}, oferta de hoy\",\"audience\":{\"groups\":[\"g$((i - 1))\"]},\"start\":true}" | json '["id"]')")
  done
  local deadline=$(( $(date +%s) + 600 )) done_=0 c
  while :; do
    done_=0
    for c in "${campaigns[@]}"; do
      [ "$(call "$api/campaigns/$c" | json '["status"]')" = completed ] && done_=$((done_ + 1))
    done
    if [ "$done_" = "$NUMBERS" ] && [ "$RECEIPTS" = off ]; then break; fi
    if [ "$done_" = "$NUMBERS" ]; then
      read_=$(psql "${PG_ADMIN%/*}/$PG_DB" -qAtc "SELECT count(*) FROM messages WHERE read_at IS NOT NULL")
      [ "$read_" = "$N" ] && break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { echo "run did not finish in 600 s"; exit 1; }
    sleep 0.2
  done
  local t1 s1 p1 d1 f1 c1 rss=0 p
  t1=$(date +%s.%N)
  c1=$(switches "${PIDS[@]}")
  s1=$(ticks "${PIDS[@]}"); p1=$(ticks $(postgres_pids)); d1=$(ticks "$(redis_pid)"); f1=$(ticks "$FAKE_PID")
  for p in "${PIDS[@]}"; do rss=$(( $(awk '/VmHWM/ {print $2}' "/proc/$p/status") > rss ? $(awk '/VmHWM/ {print $2}' "/proc/$p/status") : rss )); done
  local stats
  stats=$(curl -fsS "$fake/__control/stats")
  if [ -n "$log" ]; then
    # A statement run is a "statement:" line (simple protocol: BEGIN, COMMIT) or an "execute"
    # line (extended protocol, whose parse and bind steps are logged apart and not counted).
    tail -c +"$((log0 + 1))" "$log" | grep "@$PG_DB " | grep -cE 'duration: [0-9.]+ ms +(statement|execute)' \
      | awk -v n="$N" '{printf "statements: %d, %.1f per message\n", $1, $1 / n}' | tee -a "$WORK/statements"
    # The most frequent, by their first words (per message).
    tail -c +"$((log0 + 1))" "$log" | grep "@$PG_DB " | grep -E 'duration: [0-9.]+ ms +(statement|execute)' \
      | sed -E 's/.*duration: [0-9.]+ ms +(statement|execute [^:]*): //' \
      | cut -c1-60 | sort | uniq -c | sort -rn | head -n 15 \
      | awk -v n="$N" '{c=$1; $1=""; printf "  %6.2f %s\n", c / n, $0}'
  fi
  python3 - "$r" "$N" "$(echo "$t1 - $t0" | bc)" "$TICK" "$((s1 - s0))" "$((p1 - p0))" "$((d1 - d0))" "$((f1 - f0))" "$rss" "$stats" "$RECEIPTS" "$((c1 - c0))" <<'PY' | tee -a "$WORK/results"
import json, sys
r, n, secs, tick = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
server, pg, redis, fake = (int(x) * 1e6 / tick / n for x in sys.argv[5:9])
rss, stats = int(sys.argv[9]), json.loads(sys.argv[10])
assert stats["accepted"] == n, f"the fake accepted {stats['accepted']} sends, not {n}: {stats}"
print(f"replicas={r} receipts={sys.argv[11]} delivered={n} in {secs:.1f} s => {n / secs:,.0f} msg/s;"
      f" CPU per message: server {server:.0f} us, postgres {pg:.0f} us, redis {redis:.0f} us,"
      f" fake {fake:.0f} us; server context switches {int(sys.argv[12]) / n:.1f} per message;"
      f" peak RSS of a replica {rss / 1024:.0f} MB")
PY
  cleanup
}

echo "pregonero $(git rev-parse --short HEAD 2>/dev/null || echo '?')  $(nproc) cores  $N recipients over $NUMBERS numbers, unlimited fake, PostgreSQL + Redis"
for r in $REPLICAS; do
  for _ in $(seq "$RUNS"); do run "$r"; done
done
python3 - "$WORK/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = int(re.search(r"replicas=(\d+)", line).group(1))
    rate = float(re.search(r"=> ([\d,]+) msg/s", line).group(1).replace(",", ""))
    cpu = float(re.search(r"server (\d+) us", line).group(1))
    pg = float(re.search(r"postgres (\d+) us", line).group(1))
    rows.setdefault(r, []).append((rate, cpu, pg))
for r, runs in sorted(rows.items()):
    def mmm(i):
        v = sorted(x[i] for x in runs)
        return f"{v[0]:,.0f} / {statistics.median(v):,.0f} / {v[-1]:,.0f}"
    print(f"{r} replica(s), min / median / max of {len(runs)} runs: {mmm(0)} msg/s;"
          f" server CPU {mmm(1)} us per message; PostgreSQL CPU {mmm(2)} us per message")
PY
