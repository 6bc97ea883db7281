"""The data dir and its secrets are the server's alone: var/ 0700; the SQLite database,
its -wal and -shm, secret_key and login.json 0600, whatever the umask, including files
made before this rule."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from tests.support.processes import ROOT

# While a connection is open (so the -wal and -shm files exist), print each file's mode.
MODES_WITH_OPEN_DATABASE = """
import os, stat, django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
get_user_model().objects.create_user("someone")  # a write: SQLite opens its WAL
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
for path in sorted([settings.DATA_DIR, *settings.DATA_DIR.iterdir()]):
    print(path.name, oct(stat.S_IMODE(os.stat(path).st_mode)))
"""


def run(data_dir, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(CONVEYOR_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="config.settings")
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def modes(data_dir) -> dict[str, str]:
    run(data_dir, "manage.py", "migrate", "--noinput")
    run(data_dir, "manage.py", "conveyor_setup")
    lines = run(data_dir, "-c", MODES_WITH_OPEN_DATABASE).split("\n")
    return dict(line.split() for line in lines if line.strip())


def test_a_fresh_data_dir_is_private(tmp_path):
    found = modes(tmp_path / "var")
    assert found["var"] == "0o700"
    for name in ["conveyor.sqlite3", "conveyor.sqlite3-wal", "conveyor.sqlite3-shm"]:
        assert found[name] == "0o600", (name, found)
    assert found["secret_key"] == "0o600"
    assert found["login.json"] == "0o600"


def test_files_made_before_are_tightened(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir(mode=0o755)
    for name in ["secret_key", "login.json", "conveyor.sqlite3"]:
        (data_dir / name).write_text("" if name != "secret_key" else "old-key")
        (data_dir / name).chmod(0o644)
    (data_dir / "login.json").write_text('{"username": "admin", "password": "x"}')
    found = modes(data_dir)
    assert found["var"] == "0o700"
    assert {found[n] for n in ["secret_key", "login.json", "conveyor.sqlite3"]} == {"0o600"}
    assert stat.S_IMODE(os.stat(data_dir / "secret_key").st_mode) == 0o600
