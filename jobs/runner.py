"""Old dotted path of the slice task, kept for one release.

django-q2 stores the task's dotted path with every queued task: tasks enqueued by the
previous release as `jobs.runner.run_slice` still run after an upgrade.
"""

from __future__ import annotations

from jobs.engine.runner import run_slice

__all__ = ["run_slice"]
