#!/usr/bin/env bash
# What the campaign runner's reads cost as a campaign goes on, on PostgreSQL, without the server:
# a copy of the ledger (messages(id, campaign_id, status, …) with its (campaign_id, status, id)
# index) of BENCH_ROWS pending rows, released BENCH_STEP at a time and moved
# queued → sending → sent as deliveries do, and after every BENCH_PROBE released, EXPLAIN
# (ANALYZE, BUFFERS) of the runner's reads: the next 60 pending read from the start (as before
# the runner kept its place) and from the last released id (as it does now), and the in-flight
# count over the whole range and from the lowest id in flight.
#
#   bench/ledger_index.sh            # 1,000,000 rows, up to 300,000 released, ~2 minutes
#
# Autovacuum matters: with it off (this machine's PostgreSQL), nothing removes the index entries
# of the statuses a message has left. The scratch database is dropped at the end.
# Knobs: BENCH_ROWS (1000000), BENCH_STEP (5000), BENCH_PROBE (50000), BENCH_UNTIL (300000),
# BENCH_POSTGRES_ADMIN_URL.
set -euo pipefail
ADMIN="${BENCH_POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
ROWS="${BENCH_ROWS:-1000000}" STEP="${BENCH_STEP:-5000}"
PROBE="${BENCH_PROBE:-50000}" UNTIL="${BENCH_UNTIL:-300000}"
if ! psql "$ADMIN" -qAtc 'SELECT 1' >/dev/null 2>&1; then
  echo "SKIPPED: no PostgreSQL at $ADMIN" >&2
  exit 0
fi
DB="bench_ledger_$$"
URL="${ADMIN%/*}/$DB"
psql "$ADMIN" -qc "CREATE DATABASE $DB"
trap 'psql "$ADMIN" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
q() { psql "$URL" -qAtX "$@"; }
echo "autovacuum: $(q -c 'SHOW autovacuum')"
q <<SQL
CREATE TABLE m (id text PRIMARY KEY, campaign_id text NOT NULL, status text NOT NULL,
                body text, updated_at timestamptz);
INSERT INTO m SELECT lpad(i::text, 12, '0'), 'c1', 'pending', repeat('x', 150), now()
  FROM generate_series(1, $ROWS) i;
CREATE INDEX ix_m_cs ON m (campaign_id, status, id);
VACUUM ANALYZE m;
SQL
# "<ms> ms, <buffers> buffers" of one EXPLAIN (ANALYZE, BUFFERS).
probe() {
  q -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, FORMAT JSON) $1" | python3 -c '
import json, sys
p = json.load(sys.stdin)[0]
plan = p["Plan"]
b = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
ms = p["Execution Time"]
print(f"{ms:.2f} ms, {b} buffers")'
}
printf '| released | next 60 pending, from the start | from the last released | in flight, whole range | from the lowest in flight | dead rows |\n|---|---|---|---|---|---|\n'
released=0
while :; do
  last=$(q -c "SELECT coalesce(max(id), '') FROM m WHERE status <> 'pending'")
  low=$(q -c "SELECT coalesce(min(id), '$last') FROM m WHERE status IN ('queued', 'sending')")
  dead=$(q -c "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'm'")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$released" \
    "$(probe "SELECT id FROM m WHERE campaign_id = 'c1' AND status = 'pending' ORDER BY id LIMIT 60")" \
    "$(probe "SELECT id FROM m WHERE campaign_id = 'c1' AND status = 'pending' AND id > '$last' ORDER BY id LIMIT 60")" \
    "$(probe "SELECT count(*), min(id) FROM m WHERE campaign_id = 'c1' AND status IN ('queued', 'sending')")" \
    "$(probe "SELECT count(*), min(id) FROM m WHERE campaign_id = 'c1' AND status IN ('queued', 'sending') AND id >= '$low'")" \
    "$dead"
  [ "$released" -lt "$UNTIL" ] || break
  for _ in $(seq 1 $((PROBE / STEP))); do
    q <<SQL
WITH r AS (SELECT id FROM m WHERE campaign_id = 'c1' AND status = 'pending' ORDER BY id LIMIT $STEP)
UPDATE m SET status = 'queued', updated_at = now() FROM r WHERE m.id = r.id;
UPDATE m SET status = 'sending', updated_at = now() WHERE campaign_id = 'c1' AND status = 'queued';
UPDATE m SET status = 'sent', updated_at = now() WHERE campaign_id = 'c1' AND status = 'sending';
SQL
  done
  released=$((released + PROBE))
done
