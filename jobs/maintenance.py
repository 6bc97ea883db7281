"""Old dotted path of the maintenance task, kept for one release.

The maintenance `Schedule` row is migrated to `jobs.engine.maintenance.run_periodic`
(migration 0004); a django-q2 task already queued under this path still runs.
"""

from __future__ import annotations

from jobs.engine.maintenance import run_periodic

__all__ = ["run_periodic"]
