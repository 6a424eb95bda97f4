# Sourced by the bench/*.sh scripts: wrk (installed with apt-get when possible) and free ports.

# Exits 0 with a printed reason when wrk is missing and cannot be installed.
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y wrk >/dev/null
  else
    echo "SKIPPED: wrk is not installed and cannot be installed here (apt-get install wrk)" >&2
    exit 0
  fi
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A fresh release server per scenario, on SQLite or on a fresh PostgreSQL database.
# Call bench_init once; then start_server / stop_server per scenario. Sets BIN, WORK,
# SERVER_PID, SERVER_PORT; the server's stdout is "$WORK/server.out", its log "$WORK/server.log".
PG_ADMIN="${BENCH_POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"

bench_init() {
  # BENCH_BIN: another build of the server to run instead (A/B comparisons); nothing is built.
  [ -n "${BENCH_BIN:-}" ] || cargo build --release --locked -q --bin pregonero -p pregonero
  BIN="${BENCH_BIN:-$CARGO_TARGET_DIR/release/pregonero}"
  WORK="$(mktemp -d)"
  SERVER_PID=""
  PG_DB=""
  trap bench_cleanup EXIT
}

psql_admin() { psql "$PG_ADMIN" -qAtc "$1" >/dev/null; }

postgres_ok() { command -v psql >/dev/null && psql "$PG_ADMIN" -qAtc 'select 1' >/dev/null 2>&1; }

stop_server() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
  if [ -n "$PG_DB" ]; then psql_admin "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" || true; PG_DB=""; fi
}

# Chromium's helpers may still be writing their profile for a moment after the server stops.
bench_cleanup() { stop_server; rm -rf "$WORK" 2>/dev/null || { sleep 2; rm -rf "$WORK"; } || true; }

# $1 = sqlite|postgres, $2 = name prefix of the PostgreSQL database, then any VAR=value settings.
# Starts `serve --no-workers` (an API replica; set SERVE_FLAGS="" for a node with workers) on a
# fresh data folder and waits until it is ready.
start_server() {
  local db="$1" prefix="$2" dbenv=()
  shift 2
  rm -rf "$WORK/data"
  if [ "$db" = postgres ]; then
    PG_DB="${prefix}_$$_$RANDOM"
    psql_admin "CREATE DATABASE $PG_DB"
    dbenv=("DATABASE_URL=${PG_ADMIN%/*}/$PG_DB" "PREGONERO_SECRET_KEY=$(head -c 32 /dev/urandom | base64)")
  fi
  SERVER_PORT="$(free_port)"
  # The request rate limits stay on (their cost is measured) but far above any load here: one
  # client on loopback is what the limits exist to stop (BENCH_RATE_LIMIT=default keeps them).
  local limits=()
  if [ "${BENCH_RATE_LIMIT:-high}" = high ]; then
    for p in PER_KEY PER_IP INGEST; do
      limits+=("PREGONERO_RATE_LIMIT__${p}__PER_SECOND=10000000" "PREGONERO_RATE_LIMIT__${p}__BURST=10000000")
    done
  fi
  env "${dbenv[@]}" PREGONERO_PORT="$SERVER_PORT" PREGONERO_DATA_DIR="$WORK/data" RUST_LOG=warn \
    PREGONERO_SCHEDULE__ENABLED=false "${limits[@]}" "$@" \
    "$BIN" serve ${SERVE_FLAGS---no-workers} >"$WORK/server.out" 2>"$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$SERVER_PORT/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server did not start:"; cat "$WORK/server.log"; exit 1
}
