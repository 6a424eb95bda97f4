#!/usr/bin/env bash
# Repeats bench/campaign_pacing.sh BENCH_RUNS times (default 20) with BENCH_RECIPIENTS recipients
# each (default 2000) and prints every run plus min / median / max of the delivered share of the
# configured rate and of the limit, and of the 130429 / 131056 answers. Other knobs as in
# campaign_pacing.sh (BENCH_DATABASE, BENCH_MPS, BENCH_JITTER_MS, default 30 here).
#
#   bench/campaign_pacing_runs.sh                       # ~15 minutes on SQLite
#   BENCH_DATABASE=postgres BENCH_RUNS=5 bench/campaign_pacing_runs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${BENCH_RUNS:-20}"
export BENCH_RECIPIENTS="${BENCH_RECIPIENTS:-2000}" BENCH_JITTER_MS="${BENCH_JITTER_MS:-30}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for run in $(seq "$RUNS"); do
  bench/campaign_pacing.sh >"$out" 2>&1 || { cat "$out"; echo "run $run failed"; exit 1; }
  [ "$run" = 1 ] && head -n 1 "$out"
  echo "run $run: $(grep -E '^accepted' "$out" | sed 's/.*=> //'); $(grep -oE '130429 answers: [0-9]+; 131056 answers: [0-9]+' "$out"); $(grep -oE 'peak RSS [0-9]+ MB' "$out")"
done | tee /dev/stderr | python3 -c '
import re, sys
rows = [l for l in sys.stdin if l.startswith("run ")]
def col(pat):
    return sorted(float(re.search(pat, r).group(1)) for r in rows)
def show(name, v):
    print(f"{name}: min {v[0]:g} / median {v[len(v)//2]:g} / max {v[-1]:g}")
show("share of the configured rate", col(r"= ([0-9.]+) of the configured"))
show("share of the limit", col(r"= ([0-9.]+) of the \d+ msg/s limit"))
show("130429 answers", col(r"130429 answers: (\d+)"))
show("131056 answers", col(r"131056 answers: (\d+)"))
show("peak RSS MB", col(r"peak RSS (\d+) MB"))
' 2>&1
