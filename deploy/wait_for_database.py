"""Wait until the database (DATABASE_URL) accepts connections, or give up.

The image's `migrate` role runs this first: compose implementations differ in whether
they wait for a database's health check (podman-compose on podman < 4.6 does not), so
the image waits itself. Polls every second up to CONVEYOR_DB_WAIT_SECONDS (default 60,
at most 600); exit status 1 with the last error when the database never answered.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main() -> int:
    import django
    from django.db import connection

    django.setup()
    try:
        limit = min(float(os.environ.get("CONVEYOR_DB_WAIT_SECONDS") or 60), 600.0)
    except ValueError:
        limit = 60.0
    deadline = time.monotonic() + limit
    while True:
        try:
            connection.ensure_connection()
            connection.close()
            return 0
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if time.monotonic() >= deadline:
                print(f"database not reachable after {limit:.0f} s: {error}", file=sys.stderr)
                return 1
            connection.close()
            time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
