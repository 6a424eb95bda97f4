#!/usr/bin/env bash
# Trading webhook (POST /webhook/u/{token}): answer latency at a fixed offered rate, the
# maximum sustained rate, and the same with chart snapshots queued behind the answers.
#
#   bench/signals.sh                      # SQLite (embedded default)
#   BENCH_DATABASE=postgres bench/signals.sh
#
# Knobs: BENCH_RUNS (paced runs, default 3), BENCH_DURATION (s per run, default 15),
# BENCH_RATE_CONNECTIONS / BENCH_DELAY_MS (paced load: 12 connections pausing ~20 ms each ≈
# 500 req/s), BENCH_CONNECTIONS (saturation, default 32), BENCH_SNAPSHOT_SECS (default 60),
# BENCH_BIN (another build, for A/B). Measures the intake as the seed's service does it: token,
# dedup, parse, plan quota, store (no delivery target, as the seed, whose platform reads signals
# through the API). Prints RESULT lines, min / median / max of the paced runs, the largest answer
# time seen, and the snapshots per minute per browser context.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/pregonero-target}" SQLX_OFFLINE=true

source bench/lib.sh
ensure_wrk

RUNS="${BENCH_RUNS:-3}"
DURATION="${BENCH_DURATION:-15}"
RATE_CONNECTIONS="${BENCH_RATE_CONNECTIONS:-12}"
DELAY_MS="${BENCH_DELAY_MS:-20}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
SNAPSHOT_SECS="${BENCH_SNAPSHOT_SECS:-60}"
DATABASE="${BENCH_DATABASE:-sqlite}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

bench_init
# A chart-like page for the snapshot phase: a canvas drawn by script after 300 ms.
mkdir -p "$WORK/charts/chart"
cat >"$WORK/charts/chart/bench.html" <<'HTML'
<!doctype html><html><body style="margin:0"><script>
setTimeout(() => { const c = document.createElement('canvas'); c.width = innerWidth; c.height = innerHeight;
document.body.appendChild(c); const g = c.getContext('2d'); g.fillStyle = '#131722'; g.fillRect(0, 0, c.width, c.height);
for (let i = 0; i < 60; i++) { g.fillStyle = i % 2 ? '#26a69a' : '#ef5350'; g.fillRect(20 + i * 20, 150 + (i * 37) % 200, 12, 60 + (i * 53) % 120); } }, 300);
</script></body></html>
HTML
CHART_PORT="$(free_port)"
python3 -m http.server "$CHART_PORT" --bind 127.0.0.1 --directory "$WORK/charts" >"$WORK/charts.log" 2>&1 &
CHART_PID=$!
trap 'kill $CHART_PID 2>/dev/null || true; bench_cleanup' EXIT

# $1 = snapshots on (true/false)
serve() {
  SERVE_FLAGS="" start_server "$DATABASE" bench_signals \
    PREGONERO_SIGNALS__PLANS__FREE__QUOTA=100000000 \
    PREGONERO_SIGNALS__SNAPSHOTS__ENABLED="$1" \
    PREGONERO_SIGNALS__SNAPSHOTS__CHROMIUM_PATH="$CHROMIUM" \
    PREGONERO_SIGNALS__SNAPSHOTS__CHART_URL_TEMPLATE="http://127.0.0.1:$CHART_PORT/chart/{chart_id}.html" \
    PREGONERO_SIGNALS__SNAPSHOTS__SETTLE_MS=200
  BASE="http://127.0.0.1:$SERVER_PORT"
  KEY="$(grep -o 'prg_[A-Za-z0-9_-]*' "$WORK/server.out" | head -1)"
  api() { curl -fsS -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@"; }
  SIGNAL_TOKEN="$(api -d '{}' "$BASE/api/v1/signals/profile/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  export SIGNAL_TOKEN
}
# $1 = label, then RESULT lines: min / median / max of each figure.
summarize() {
  local label="$1"
  shift
  printf '%s\n' "$@" | LABEL="$label" python3 -c '
import os, sys
label = os.environ["LABEL"]
rows = [dict(kv.split("=") for kv in l.split()[1:]) for l in sys.stdin if l.strip()]
for key in ("rps", "p50_ms", "p99_ms", "max_ms"):
    v = sorted(float(r[key]) for r in rows)
    print(f"{label} {key}: min {v[0]:g} / median {v[len(v)//2]:g} / max {v[-1]:g}")'
}
# $1 = label: RUNS paced runs of DURATION seconds, each printed, then their summary.
paced_runs() {
  local label="$1" lines=() line run
  for run in $(seq "$RUNS"); do
    line="$(BENCH_DELAY_MS="$DELAY_MS" wrk -t1 -c"$RATE_CONNECTIONS" -d"${DURATION}s" --latency -s bench/signal.lua "$(URL)" | grep RESULT)"
    echo "$label run $run: $line"
    lines+=("$line")
  done
  summarize "$label" "${lines[@]}"
}
rss() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$SERVER_PID/status"; }
URL() { echo "http://127.0.0.1:$SERVER_PORT/"; }

echo "database: $DATABASE  paced: $RATE_CONNECTIONS connections, ~${DELAY_MS} ms pause, ${DURATION}s x $RUNS  saturation: $CONNECTIONS connections"
serve false
export SIGNAL_CHART=""
# Warm-up at the paced rate: the first seconds on a fresh SQLite file are slower (the file and
# its WAL growing); they are not what a running server answers.
BENCH_DELAY_MS="$DELAY_MS" wrk -t1 -c"$RATE_CONNECTIONS" -d5s -s bench/signal.lua "$(URL)" >/dev/null
paced_runs "paced"
echo "saturation: $(BENCH_DELAY_MS= wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/signal.lua "$(URL)" | grep RESULT)"
echo "server peak RSS (VmHWM): $(rss)"
stop_server

if [ ! -x "$CHROMIUM" ]; then
  echo "SKIPPED snapshot phase: no Chromium at $CHROMIUM"
  exit 0
fi
serve true
export SIGNAL_CHART="bench"
echo "snapshots: the queue filled at the paced rate (${DURATION}s x $RUNS, Chromium capturing meanwhile), then captured for up to ${SNAPSHOT_SECS}s more"
paced_runs "snapshots queued, paced"
sleep "$SNAPSHOT_SECS"
curl -fsS "$BASE/metrics" | python3 -c '
import sys
done = 0.0; total = 0.0; secs = 0.0
for line in sys.stdin:
    if line.startswith("pregonero_snapshots_total") and "completed" in line: done = float(line.split()[-1])
    if line.startswith("pregonero_snapshot_seconds_sum"): secs = float(line.split()[-1])
    if line.startswith("pregonero_snapshot_seconds_count"): total = float(line.split()[-1])
print(f"snapshots completed: {done:g}; mean capture {secs / max(total, 1):.2f} s; {60 / max(secs / max(total, 1), 1e-9):.1f} per minute per browser context")'
echo "server peak RSS with Chromium working (VmHWM, server only): $(rss)"
