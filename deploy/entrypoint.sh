#!/bin/sh
# The image's roles (Containerfile): web, worker, migrate; anything else runs as given.
# tini (PID 1) forwards SIGTERM to the process exec'd here. web and worker first wait
# for the database and its schema (deploy/wait_for_database.py), migrate for the database.
set -eu
cd /app
role="${1:-web}"
case "$role" in
  web)
    shift
    python deploy/wait_for_database.py --migrated
    exec daphne -b "${CONVEYOR_HOST:-0.0.0.0}" -p "${CONVEYOR_PORT:-8000}" \
      --proxy-headers "$@" config.asgi:application
    ;;
  worker)
    shift
    python deploy/wait_for_database.py --migrated
    exec python manage.py qcluster "$@"
    ;;
  migrate)
    # Safe on every deploy: applied migrations are skipped; PostgreSQL's DDL is
    # transactional, and Django takes each migration in its own transaction. It waits
    # for the database first. A login for the first user is made once (printed, and
    # kept in the data volume as login.json).
    shift
    python deploy/wait_for_database.py
    python manage.py migrate --noinput "$@"
    exec python manage.py conveyor_setup
    ;;
  *)
    exec "$@"
    ;;
esac
