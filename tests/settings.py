"""Settings for the test suite: the project's own, plus an app that plugs a kind and a
processor in from outside jobs/ and sheets/ (tests/plugin_app), and a capped queue of
Django tasks."""

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.plugin_app"]
# Django Tasks: a second queue, one task at a time (tests/jobs/test_tasks_backend.py);
# one with a 2 s time limit and one that opts into retries (tests/reliability/
# test_task_edges.py).
CONVEYOR_TASK_QUEUES = {
    "default": None,
    "serial": 1,
    "short": {"time_limit": 2},
    "retried": {"retries": 2},
}
# Users are made in nearly every test: the production hasher's ~0.25 s of CPU each cost
# minutes a pass. Tests check who may log in, not how hard a hash is to crack.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
