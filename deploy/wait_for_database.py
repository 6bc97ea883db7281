"""Wait until the database (DATABASE_URL) accepts connections, or give up; with
`--migrated`, also until every migration of this code is applied.

The image's roles run this first. `migrate` waits for the database: compose
implementations differ in whether they wait for a database's health check (podman-compose
on podman < 4.6 does not). `web` and `worker` wait for the schema: they never run against
a schema older than their code (a new image's containers started before `migrate` has
run simply wait for it), and compose needs no dependency on the one-shot `migrate`
service (podman 4.3 cannot start a container whose required container has exited).

Polls every second, in one process, up to CONVEYOR_DB_WAIT_SECONDS (default 120, at most
3600); exit status 1 naming what it waited for when the time is up.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

DEFAULT_SECONDS = 120.0
MAX_SECONDS = 3600.0


def wait_seconds() -> float:
    try:
        seconds = float(os.environ.get("CONVEYOR_DB_WAIT_SECONDS") or DEFAULT_SECONDS)
    except ValueError:
        return DEFAULT_SECONDS
    return min(max(seconds, 0.0), MAX_SECONDS)


def unapplied() -> int:
    """Migrations of this code not applied to the database yet."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def main() -> int:
    import django
    from django.db import connection

    django.setup()
    migrated = "--migrated" in sys.argv[1:]
    limit = wait_seconds()
    deadline = time.monotonic() + limit
    said = False
    while True:
        try:
            connection.ensure_connection()
            waiting = unapplied() if migrated else 0
            problem = f"{waiting} migration(s) not applied yet (run the migrate role)"
            if not waiting:
                connection.close()
                return 0
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            text = str(exc).strip()
            problem = f"database not reachable: {text.splitlines()[0] if text else exc!r}"
        connection.close()
        if time.monotonic() >= deadline:
            print(f"gave up after {limit:.0f} s: {problem}", file=sys.stderr, flush=True)
            return 1
        if not said:
            print(f"waiting: {problem}", file=sys.stderr, flush=True)
            said = True
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
