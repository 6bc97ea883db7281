#!/usr/bin/env bash
# Runs the whole suite on SQLite, then again on PostgreSQL when one is reachable.
# With CI=true a missing PostgreSQL, Redis or Chromium is an error, not a skip.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

pytest_pass() {
  local label=$1; shift
  echo "=== tests on $label ==="
  env "$@" "$PY" -m pytest "${PYTEST_ARGS[@]}"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "(no tests collected on $label)"; rc=0; fi
  return $rc
}

# The slowest tests of each pass are listed at its end: where CI time goes.
PYTEST_ARGS=(--durations=25 "$@")
ci=${CI:-false}

pg_url=${TEST_POSTGRES_URL:-}
if [ -z "$pg_url" ] && [[ "${DATABASE_URL:-}" == postgres* ]]; then pg_url=$DATABASE_URL; fi
if [ -z "$pg_url" ] && "$PY" -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then
  pg_url="postgres://postgres@127.0.0.1:5432/conveyor"
fi
if [ "$ci" = "true" ] && [ -z "$pg_url" ]; then
  echo "CI=true but no PostgreSQL is reachable (set DATABASE_URL or start it on 127.0.0.1:5432)" >&2
  exit 1
fi

# Each pass has a data dir and a Redis database of its own, so the two can run side by
# side: most of a pass waits on worker processes, sockets and the browser, not the CPU.
# CONVEYOR_TEST_PASSES=sequential runs one after the other.
sqlite_env=(DATABASE_URL= CONVEYOR_DATA_DIR="$PWD/var/test-sqlite" CONVEYOR_TEST_REDIS_DB=0)
# Commits don't wait for the WAL flush in the test database (libpq reads PGOPTIONS,
# cluster processes inherit it): the same visibility, no durability across a crash of
# PostgreSQL, which no test does; the pass runs minutes faster.
pg_env=(DATABASE_URL="$pg_url" PGOPTIONS="-c synchronous_commit=off"
        CONVEYOR_DATA_DIR="$PWD/var/test-postgres" CONVEYOR_TEST_REDIS_DB=1)

status=0
if [ -z "$pg_url" ]; then
  pytest_pass SQLite "${sqlite_env[@]}" || status=1
  echo "=== PostgreSQL not reachable: skipped the PostgreSQL pass ==="
elif [ "${CONVEYOR_TEST_PASSES:-parallel}" = "sequential" ]; then
  pytest_pass SQLite "${sqlite_env[@]}" || status=1
  pytest_pass PostgreSQL "${pg_env[@]}" || status=1
else
  # The SQLite pass prints as it goes; the PostgreSQL pass's output follows it whole.
  mkdir -p var
  pg_log=var/test-postgres.log
  pytest_pass PostgreSQL "${pg_env[@]}" > "$pg_log" 2>&1 &
  pg_pid=$!
  pytest_pass SQLite "${sqlite_env[@]}" || status=1
  wait "$pg_pid" || status=1
  cat "$pg_log"
fi
exit $status
