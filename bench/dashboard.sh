#!/usr/bin/env bash
# The dashboard's API with 1,000,000 messages in the ledger (issue 23's budget: p95 ≤ 50 ms).
#
# Per database (BENCH_DBS, default "sqlite postgres"): a release server with workers, 10,000
# contacts in 10 groups imported through the API, one real 1,000-recipient campaign sent
# through the fake WhatsApp Cloud API (limits off), then the ledger multiplied by SQL to
# BENCH_MESSAGES rows (default 1,000,000; copies of the real rows spread over the last 60 days,
# one in ten failed). "Limpiar caché" (DELETE /cache/user) then rebuilds the rollups from that
# ledger (timed), and each call the Dashboard page makes is timed BENCH_REQUESTS times (default
# 200, one at a time, keep-alive): min / p50 / p95 / max in ms.
#
#   bench/dashboard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SQLX_OFFLINE=true CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/pregonero-target}
source bench/lib.sh

MESSAGES=${BENCH_MESSAGES:-1000000}
REQUESTS=${BENCH_REQUESTS:-200}
DBS=${BENCH_DBS:-sqlite postgres}

bench_init
cargo build --release --locked -q -p fakes --bin pregonero-fakes
FAKES="$CARGO_TARGET_DIR/release/pregonero-fakes"
NUMBER=106540352242001

python3 - "$WORK/contacts.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("telefono,nombre,grupo\n")
    for i in range(10_000):
        f.write(f"+3461{i:07d},Contacto {i},g{i % 10}\n")
PY

fake_port="$(free_port)"
"$FAKES" whatsapp --port "$fake_port" --number "$NUMBER:bench-token:bench-secret" --mps 0 --window off \
  >"$WORK/fake.out" 2>"$WORK/fake.log" &
FAKE_PID=$!
trap 'kill $FAKE_PID 2>/dev/null || true; bench_cleanup' EXIT
for _ in $(seq 100); do grep -q listening "$WORK/fake.out" 2>/dev/null && break; sleep 0.1; done
FAKE="http://127.0.0.1:$fake_port"

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

run() {
  local db="$1"
  if [ "$db" = postgres ] && ! postgres_ok; then echo "postgres: SKIPPED (PostgreSQL does not answer at $PG_ADMIN)"; return; fi
  SERVE_FLAGS="" start_server "$db" dash PREGONERO_WHATSAPP__API_BASE_URL="$FAKE/v21.0"
  local base="http://127.0.0.1:$SERVER_PORT" key
  key=$(grep -A2 "admin API key" "$WORK/server.out" | grep -o 'prg_[A-Za-z0-9_-]*' | head -n1)
  call() { curl -fsS -H "Authorization: Bearer $key" "$@"; }

  local import channel campaign status
  import=$(call -H 'Content-Type: text/csv' --data-binary @"$WORK/contacts.csv" "$base/api/v1/contacts/imports?filename=bench.csv" | json '["id"]')
  for _ in $(seq 600); do
    status=$(call "$base/api/v1/contacts/imports/$import" | json '["status"]')
    [ "$status" = running ] || break
    sleep 0.2
  done
  channel=$(call -H 'content-type: application/json' "$base/api/v1/channels" \
    -d "{\"kind\":\"whatsapp_cloud\",\"name\":\"bench\",\"phone_number_id\":\"$NUMBER\",\"access_token\":\"bench-token\",\"app_secret\":\"bench-secret\",\"limits\":{\"per_second\":100000,\"burst\":1000}}")
  call -H 'content-type: application/json' "$FAKE/__control/numbers" \
    -d "{\"phone_number_id\":\"$NUMBER\",\"access_token\":\"bench-token\",\"app_secret\":\"bench-secret\",\"webhook_url\":\"$base$(echo "$channel" | json '["webhook_path"]')\"}" >/dev/null
  campaign=$(call -H 'content-type: application/json' "$base/api/v1/campaigns" \
    -d "{\"name\":\"seed\",\"channel_id\":\"$(echo "$channel" | json '["id"]')\",\"body\":\"Hola {{ nombre }}\",\"audience\":{\"groups\":[\"g0\"]},\"start\":true}" | json '["id"]')
  for _ in $(seq 1200); do
    status=$(call "$base/api/v1/campaigns/$campaign" | json '["status"]')
    [ "$status" = completed ] && break
    sleep 0.25
  done
  [ "$status" = completed ] || { echo "$db: the seed campaign did not complete ($status)"; exit 1; }

  # Multiply the real rows: copies get new ids, no campaign or idempotency key, dates spread
  # over the last 60 days, one in ten failed.
  local t0 t1
  t0=$(date +%s.%N)
  if [ "$db" = sqlite ]; then
    python3 - "$WORK/data/pregonero.db" "$MESSAGES" <<'PY'
import sqlite3, sys
db, target = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db, timeout=60)
have = con.execute("SELECT count(*) FROM messages").fetchone()[0]
copies = max(0, -(-(target - have) // have))
cols = [r[1] for r in con.execute("PRAGMA table_info(messages)")]
shift = lambda c: f"CASE WHEN m.{c} IS NULL THEN NULL ELSE strftime('%Y-%m-%d %H:%M:%f', m.{c}, '-' || (k.i % 60) || ' days') || '+00:00' END"
special = {
    "id": "substr(m.id, 1, 23) || printf('%04d%09d', k.i, m.rowid)",
    "idempotency_key": "NULL", "request_hash": "NULL", "campaign_id": "NULL", "provider_message_id": "NULL",
    "delivered_at": "NULL", "read_at": "NULL",
    "status": "CASE WHEN k.i % 10 = 0 THEN 'failed' ELSE m.status END",
    "last_error_code": "CASE WHEN k.i % 10 = 0 THEN 'bench-failure' ELSE NULL END",
    "sent_at": "CASE WHEN k.i % 10 = 0 THEN NULL ELSE " + shift("sent_at") + " END",
}
for c in ("created_at", "updated_at", "next_attempt_at", "enqueued_at"):
    special[c] = shift(c)
select = ", ".join(special.get(c, f"m.{c}") for c in cols)
con.execute("PRAGMA journal_mode=WAL")
with con:
    con.execute(f"""WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {copies})
        INSERT INTO messages ({", ".join(cols)}) SELECT {select} FROM messages m, k
        WHERE m.rowid IN (SELECT rowid FROM messages LIMIT {have}) LIMIT {target - have}""")
con.execute("ANALYZE")
print(f"ledger: {con.execute('SELECT count(*) FROM messages').fetchone()[0]} messages")
PY
  else
    python3 - "${PG_ADMIN%/*}/$PG_DB" "$MESSAGES" <<'PY'
import subprocess, sys
url, target = sys.argv[1], int(sys.argv[2])
q = lambda sql: subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()
have = int(q("SELECT count(*) FROM messages"))
copies = max(0, -(-(target - have) // have))
cols = q("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'messages' AND table_schema = current_schema()").split(",")
shift = lambda c: f"m.{c} - make_interval(days => k.i % 60)"
special = {
    "id": "substr(m.id, 1, 23) || lpad(k.i::text, 4, '0') || lpad(m.n::text, 9, '0')",
    "idempotency_key": "NULL", "request_hash": "NULL", "campaign_id": "NULL", "provider_message_id": "NULL",
    "delivered_at": "NULL", "read_at": "NULL",
    "status": "CASE WHEN k.i % 10 = 0 THEN 'failed' ELSE m.status END",
    "last_error_code": "CASE WHEN k.i % 10 = 0 THEN 'bench-failure' ELSE NULL END",
    "sent_at": "CASE WHEN k.i % 10 = 0 THEN NULL ELSE " + shift("sent_at") + " END",
}
for c in ("created_at", "updated_at", "next_attempt_at", "enqueued_at"):
    special[c] = shift(c)
select = ", ".join(special.get(c, f"m.{c}") for c in cols)
q(f"""INSERT INTO messages ({", ".join(cols)}) SELECT {select}
      FROM (SELECT *, row_number() OVER () AS n FROM messages) m, generate_series(1, {copies}) k(i)
      LIMIT {target - have}""")
q("ANALYZE")
print(f"ledger: {q('SELECT count(*) FROM messages')} messages")
PY
  fi
  t1=$(date +%s.%N)
  echo "$db: seeded in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"

  # "Limpiar caché": the rollups rebuilt from the whole ledger.
  t0=$(date +%s.%N)
  call -X DELETE "$base/cache/user" >/dev/null
  t1=$(date +%s.%N)
  echo "$db: DELETE /cache/user (rebuild from $MESSAGES messages) took $(python3 -c "print(f'{$t1 - $t0:.2f}')") s"

  python3 - "$SERVER_PORT" "$key" "$REQUESTS" "$db" <<'PY'
import http.client, json, sys, time
port, key, n, db = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", port)
headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
calls = ["/api/v1/dashboard/current-month", "/api/v1/dashboard/by-group", "/api/v1/dashboard/timeline?days=14",
         "/api/v1/dashboard/timeline?days=90", "/api/v1/dashboard/by-contact?limit=10", "/api/v1/campaigns?limit=100",
         "/api/v1/contacts?limit=50", "/api/v1/contacts?q=contacto%2099&limit=50"]
for path in calls:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        res = conn.getresponse()
        body = res.read()
        times.append((time.perf_counter() - t) * 1000)
        assert res.status == 200, (path, res.status, body[:200])
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"{db}: GET {path:45s} min {times[0]:6.1f}  p50 {p(0.5):6.1f}  p95 {p(0.95):6.1f}  max {times[-1]:6.1f} ms")
month = json.loads((conn.request("GET", calls[0], headers=headers), conn.getresponse().read())[1])
print(f"{db}: this month: {month['sent']} sent, {month['errors']} errors")
PY
  stop_server
}

echo "pregonero $(git rev-parse --short HEAD 2>/dev/null || echo '?')  $(nproc) cores  $MESSAGES messages in the ledger, $REQUESTS requests per call"
for db in $DBS; do run "$db"; done
