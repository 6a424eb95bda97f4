#!/usr/bin/env bash
# Makes sure the real services the tests use are running on 127.0.0.1, starting or installing
# them when possible. Prints what it did; prints a reason for anything it has to skip.
# Sourced by scripts/test: exports TEST_POSTGRES_URL, or TEST_SKIP_POSTGRES=<reason>; and
# TEST_OIDC_DIR (the OpenID provider's folder, npm packages installed), or TEST_SKIP_OIDC=<reason>;
# and TEST_E2E_DIR (browser tests: Debian's Chromium + playwright-core), or TEST_SKIP_BROWSER=<reason>;
# and TEST_S3FS_BIN (s3s-fs, the S3-compatible server of the S3 media store tests), or TEST_SKIP_S3=<reason>;
# and TEST_REDIS_URL (Redis, the replicas' shared store), or TEST_SKIP_REDIS=<reason>.
set -uo pipefail

PG_HOST=127.0.0.1
PG_PORT=${TEST_POSTGRES_PORT:-5432}
export TEST_POSTGRES_URL=${TEST_POSTGRES_URL:-postgres://postgres@$PG_HOST:$PG_PORT/test}

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_up; then
    echo "services: PostgreSQL is up on $PG_HOST:$PG_PORT"
    return 0
  fi
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "services: PostgreSQL is not installed; installing it with apt-get"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
        || echo "services: apt-get install postgresql failed"
    fi
  fi
  if ls /etc/postgresql >/dev/null 2>&1; then
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    echo "services: starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  fi
  if ! pg_up; then
    export TEST_SKIP_POSTGRES="PostgreSQL is not running on $PG_HOST:$PG_PORT and could not be started or installed here"
    echo "services: SKIPPING the PostgreSQL variants of the tests: $TEST_SKIP_POSTGRES"
    return 0
  fi
  # Trust auth and a `test` database are what this machine kind provides; make sure of both.
  if ! psql "$TEST_POSTGRES_URL" -qtAc 'select 1' >/dev/null 2>&1; then
    su postgres -c "psql -qc \"ALTER USER postgres PASSWORD NULL\"" >/dev/null 2>&1 || true
    su postgres -c "createdb test" >/dev/null 2>&1 || true
  fi
  if ! psql "$TEST_POSTGRES_URL" -qtAc 'select 1' >/dev/null 2>&1; then
    export TEST_SKIP_POSTGRES="cannot log in to $TEST_POSTGRES_URL (the tests expect trust auth for user postgres)"
    echo "services: SKIPPING the PostgreSQL variants of the tests: $TEST_SKIP_POSTGRES"
    return 0
  fi
  # Databases left behind by earlier runs (each test creates its own).
  local stale
  stale=$(psql "$TEST_POSTGRES_URL" -qtAc "select datname from pg_database where datname like 'pregonero_test_%'")
  if [ -n "$stale" ]; then
    echo "services: dropping $(echo "$stale" | wc -l) test databases left by earlier runs"
    for db in $stale; do psql "$TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
  fi
}

# Installs the locked npm packages of folder $1 unless package $2 is there and the lock file has
# not changed since.
npm_ci() {
  local dir="$1" package="$2"
  if [ -d "$dir/node_modules/$package" ] && [ ! "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    return 0
  fi
  echo "services: installing the locked npm packages of ${dir#"$PWD"/} (npm ci)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

# The OpenID provider the tests start (tests/oidc/provider.mjs: oidc-provider from npm, configured
# like a Keycloak realm) needs Node.js and its locked npm packages.
ensure_oidc() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/oidc" && pwd)"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "services: Node.js is not installed; installing nodejs and npm with apt-get"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) \
        || echo "services: apt-get install nodejs npm failed"
    fi
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    export TEST_SKIP_OIDC="Node.js and npm are not installed and could not be installed here"
    echo "services: SKIPPING the OpenID Connect tests: $TEST_SKIP_OIDC"
    return 0
  fi
  if ! npm_ci "$dir" oidc-provider; then
    export TEST_SKIP_OIDC="npm ci in tests/oidc failed (is the npm registry reachable?)"
    echo "services: SKIPPING the OpenID Connect tests: $TEST_SKIP_OIDC"
    return 0
  fi
  export TEST_OIDC_DIR="$dir"
  echo "services: OpenID provider ready to start from $dir (node $(node --version))"
}

# Browser tests drive Debian's Chromium with playwright-core (npm); nothing is downloaded by
# playwright itself.
ensure_browser() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e" && pwd)"
  if [ -n "${TEST_SKIP_OIDC:-}" ]; then
    export TEST_SKIP_BROWSER="$TEST_SKIP_OIDC"
    echo "services: SKIPPING the browser tests: $TEST_SKIP_BROWSER"
    return 0
  fi
  local chromium=${CHROMIUM:-/usr/bin/chromium}
  if [ ! -x "$chromium" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "services: Chromium is not installed; installing Debian's chromium with apt-get"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
        || echo "services: apt-get install chromium failed"
    fi
  fi
  if [ ! -x "$chromium" ]; then
    export TEST_SKIP_BROWSER="Chromium is not at $chromium and could not be installed here"
    echo "services: SKIPPING the browser tests: $TEST_SKIP_BROWSER"
    return 0
  fi
  if ! npm_ci "$dir" playwright-core; then
    export TEST_SKIP_BROWSER="npm ci in tests/e2e failed (is the npm registry reachable?)"
    echo "services: SKIPPING the browser tests: $TEST_SKIP_BROWSER"
    return 0
  fi
  export TEST_E2E_DIR="$dir" CHROMIUM="$chromium"
  echo "services: browser tests use $("$chromium" --version 2>/dev/null | head -n1)"
}

# The S3 media store tests run against s3s-fs (crates.io): SigV4 is checked, multipart uploads
# and presigned URLs work. Built once (about 8 minutes) into a folder outside the clone.
S3FS_VERSION=0.14.1
ensure_s3() {
  local root="${PREGONERO_TOOLS_DIR:-/var/tmp/pregonero-tools}/s3s-fs-$S3FS_VERSION"
  local bin="$root/bin/s3s-fs"
  if [ ! -x "$bin" ]; then
    echo "services: building s3s-fs $S3FS_VERSION into $root (once; about 8 minutes on 2 cores)"
    # Its own target dir: the project's must not be shared with an unrelated lock file.
    if ! CARGO_TARGET_DIR="$root/target" cargo install "s3s-fs@$S3FS_VERSION" --features binary \
        --locked --root "$root" --quiet; then
      export TEST_SKIP_S3="cargo install s3s-fs@$S3FS_VERSION failed (is crates.io reachable?)"
      echo "services: SKIPPING the S3 media store tests: $TEST_SKIP_S3"
      return 0
    fi
    rm -rf "$root/target"
  fi
  export TEST_S3FS_BIN="$bin"
  echo "services: S3 media store tests use s3s-fs $S3FS_VERSION ($bin)"
}

# Redis: the replicas' shared store (request limits). Started when installed but stopped; installed
# with apt-get as root when missing.
REDIS_PORT=${TEST_REDIS_PORT:-6379}
export TEST_REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
redis_up() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }
ensure_redis() {
  if command -v redis-cli >/dev/null && redis_up; then
    echo "services: Redis is up on 127.0.0.1:$REDIS_PORT"
    return 0
  fi
  if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "services: Redis is not installed; installing it with apt-get"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || echo "services: apt-get install redis-server failed"
  fi
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do redis_up && break; sleep 0.25; done
  fi
  if ! redis_up; then
    export TEST_SKIP_REDIS="Redis is not running on 127.0.0.1:$REDIS_PORT and could not be started or installed here"
    echo "services: SKIPPING the Redis tests: $TEST_SKIP_REDIS"
    return 0
  fi
  echo "services: started Redis on 127.0.0.1:$REDIS_PORT"
}

ensure_postgres
ensure_redis
ensure_oidc
ensure_browser
ensure_s3
