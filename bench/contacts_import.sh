#!/usr/bin/env bash
# CSV contact import: rows per second and the server's peak memory for a 1,000,000-row file
# (the seed's columns, 1 % bad phones, 1 % duplicates), on SQLite and (when reachable) PostgreSQL.
#
#   bench/contacts_import.sh
#
# Knobs: BENCH_ROWS (default 1000000), BENCH_DATABASES ("sqlite postgres"),
# BENCH_POSTGRES_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/test; a fresh database per
# run, dropped afterwards), BENCH_PG_FLOOR (default 1: after the PostgreSQL import, time a plain
# COPY of the same rows into the same table, what PostgreSQL needs on this machine to store them at
# all). Each run starts a fresh release server, uploads the file with curl,
# polls the import until it ends, and reads the server's peak RSS (VmHWM) from /proc.
# Targets (issue 5): >= 200,000 rows/s, peak RSS <= 150 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pregonero-target}" SQLX_OFFLINE=true
source bench/lib.sh

ROWS="${BENCH_ROWS:-1000000}"
DATABASES="${BENCH_DATABASES:-sqlite postgres}"
bench_init

# The file: nombre;sustantivo;grupo;telefono;ciudad with Spanish mobile numbers in mixed formats.
python3 - "$ROWS" "$WORK/contacts.csv" <<'PY'
import random, sys
rows, path = int(sys.argv[1]), sys.argv[2]
random.seed(7)
groups = ["VIP", "General", "Proveedores", "Prensa"]
with open(path, "w", encoding="utf-8") as f:
    f.write("nombre;sustantivo;grupo;telefono;ciudad\n")
    for i in range(rows):
        n = 600000000 + i
        if i % 100 == 17:
            phone = "12"                      # invalid
        elif i % 100 == 42 and i > 0:
            phone = f"+34{n - 1}"             # duplicate of the previous row
        elif i % 3 == 0:
            phone = f"+34 {n}"
        elif i % 3 == 1:
            phone = f"{str(n)[:3]} {str(n)[3:6]} {str(n)[6:]}"
        else:
            phone = f"0034{n}"
        f.write(f"Persona {i};{'Sr.' if i % 2 else 'Sra.'};{groups[i % 4]};{phone};Ciudad {i % 50}\n")
PY
SIZE=$(stat -c %s "$WORK/contacts.csv")

echo "pregonero $(git rev-parse --short HEAD 2>/dev/null || echo '?')  $(nproc) cores  $ROWS rows, $((SIZE / 1024 / 1024)) MiB"
for db in $DATABASES; do
  if [ "$db" = postgres ] && ! postgres_ok; then
    echo "SKIPPED postgres: no PostgreSQL at $PG_ADMIN"
    continue
  fi
  start_server "$db" bench_contacts
  KEY=$(grep -A2 "admin API key" "$WORK/server.out" | grep -o 'prg_[A-Za-z0-9_-]*' | head -n1)
  [ -n "$KEY" ] || { echo "no admin key printed:"; cat "$WORK/server.out" "$WORK/server.log"; exit 1; }
  base="http://127.0.0.1:$SERVER_PORT/api/v1"
  rss_before=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
  t0=$(date +%s.%N)
  id=$(curl -fsS -H "Authorization: Bearer $KEY" -H 'Content-Type: text/csv' \
    --data-binary @"$WORK/contacts.csv" "$base/contacts/imports?filename=bench.csv" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  t_upload=$(date +%s.%N)
  while :; do
    state=$(curl -fsS -H "Authorization: Bearer $KEY" "$base/contacts/imports/$id")
    status=$(echo "$state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$status" != running ] && break
    sleep 0.2
  done
  t1=$(date +%s.%N)
  rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
  echo "$state" | python3 -c '
import json, sys
s = json.load(sys.stdin)
rows, total, t_upload, t_import = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
status, total_rows, imported, failed = s["status"], s["total_rows"], s["imported"], s["failed"]
print(f"{sys.argv[5]:8s} status={status} rows={total_rows} imported={imported} failed={failed}"
      f"  upload {t_upload:.2f} s, import {t_import:.2f} s, total {total:.2f} s"
      f"  => {rows / total:,.0f} rows/s end to end ({rows / t_import:,.0f} rows/s after the upload)"
      f"  peak RSS {int(sys.argv[6]) / 1024:.0f} MB (at start {int(sys.argv[7]) / 1024:.0f} MB)")
assert s["status"] == "completed" and s["total_rows"] == rows, s
' "$ROWS" "$(echo "$t1 - $t0" | bc)" "$(echo "$t_upload - $t0" | bc)" "$(echo "$t1 - $t_upload" | bc)" "$db" "$rss_peak" "$rss_before"
  if [ "$db" = postgres ] && [ "${BENCH_PG_FLOOR:-1}" = 1 ]; then
    # What writing these rows costs PostgreSQL at all on this machine: the imported rows copied
    # out, the table emptied, and the same rows loaded back with COPY (one backend, no upsert).
    url="${PG_ADMIN%/*}/$PG_DB"
    psql "$url" -qAtc "\copy contacts to '$WORK/contacts.tsv'"
    psql "$url" -qAtc "TRUNCATE contacts CASCADE"
    c0=$(date +%s.%N)
    psql "$url" -qAtc "\copy contacts from '$WORK/contacts.tsv'"
    c1=$(date +%s.%N)
    n=$(psql "$url" -qAtc "SELECT count(*) FROM contacts")
    python3 -c 'import sys; n, s = int(sys.argv[1]), float(sys.argv[2]); print(f"postgres COPY of the same {n:,} rows into the same table and indexes (psql, one backend): {s:.2f} s => {n / s:,.0f} rows/s")' "$n" "$(echo "$c1 - $c0" | bc)"
  fi
  stop_server
done
