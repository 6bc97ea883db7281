"""`make run`'s setup (manage.py conveyor_setup) as `make run` runs it, in a process of its
own on a data dir of the test's: the login it prints logs in on whichever database it
was pointed at last, and a password set by hand is never silently reset."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import require
from tests.support.processes import ROOT, port_open

PG = "postgres://postgres@127.0.0.1:5432"

# Real logins: a POST of each username and password to the login page.
LOGIN = """
import sys, django
django.setup()
from django.test import Client
logins = sys.argv[1:]
for username, password in zip(logins[::2], logins[1::2]):
    response = Client(HTTP_HOST="127.0.0.1").post(
        "/login/", {"username": username, "password": password}
    )
    print(response.status_code, response.get("Location", ""))
"""
SET_PASSWORD = """
import sys, django
django.setup()
from django.contrib.auth import get_user_model
user = get_user_model().objects.get(username=sys.argv[1])
user.set_password(sys.argv[2])
user.save()
"""


def run(data_dir: Path, database_url: str | None, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(CONVEYOR_DATA_DIR=str(data_dir), DJANGO_SETTINGS_MODULE="config.settings")
    if database_url:
        env["DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def setup(data_dir: Path, database_url: str | None = None, *options: str) -> str:
    """`make run`'s setup (after its `migrate`); what it printed."""
    return run(data_dir, database_url, "manage.py", "conveyor_setup", *options)


def printed_login(output: str) -> tuple[str, str]:
    username = re.search(r"log in as: (\S+)", output)
    password = re.search(r"password:  (\S+)", output)
    assert username and password, output
    return username.group(1), password.group(1)


def logs_in(data_dir: Path, database_url: str | None, *logins: tuple[str, str]) -> list[bool]:
    """For each (username, password): does it log in (to the home page)?"""
    args = [part for login in logins for part in login]
    lines = run(data_dir, database_url, "-c", LOGIN, *args).splitlines()
    return [line.split() == ["302", "/"] for line in lines]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A data dir whose SQLite database is migrated (once: a migrate takes seconds)."""
    data_dir = tmp_path_factory.mktemp("migrated") / "var"
    run(data_dir, None, "manage.py", "migrate", "--noinput")
    return data_dir


@pytest.fixture
def data_dir(migrated, tmp_path) -> Path:
    """A fresh copy of the migrated data dir, as after `make run`'s `migrate`."""
    return Path(shutil.copytree(migrated, tmp_path / "var"))


@pytest.fixture
def postgres_database(data_dir) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own (not the suite's test database)."""
    require(port_open("127.0.0.1", 5432), "PostgreSQL on 127.0.0.1:5432")
    name = f"conveyor_setup_{os.getpid()}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    run(data_dir, f"{PG}/{name}", "manage.py", "migrate", "--noinput")
    yield f"{PG}/{name}"
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(f"{PG}/postgres", autocommit=True) as conn,
    ):
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_printed_login_logs_in_on_whichever_database_make_run_used_last(
    data_dir, postgres_database
):
    """SQLite, then PostgreSQL (DATABASE_URL), then SQLite again: each time the printed
    login logs in there (the PostgreSQL run rewrote the kept password, which then no
    longer logged in on SQLite)."""
    for database_url in (None, postgres_database, None):
        output = setup(data_dir, database_url)
        assert logs_in(data_dir, database_url, printed_login(output)) == [True], output


def test_a_password_set_by_hand_is_not_reset_nor_printed_as_if_it_worked(data_dir):
    username, kept = printed_login(setup(data_dir))
    run(data_dir, None, "-c", SET_PASSWORD, username, "mine-and-only-mine")

    output = setup(data_dir)
    assert kept not in output
    assert "not admin's on this database (changed here), and it was left as it is" in output
    assert "conveyor_setup --reset-password" in output
    assert logs_in(data_dir, None, (username, "mine-and-only-mine")) == [True]

    output = setup(data_dir, None, "--reset-password")
    assert "New password set for admin." in output
    new = printed_login(output)
    assert logs_in(data_dir, None, new, (username, "mine-and-only-mine")) == [True, False]


def test_an_admin_made_without_the_kept_login_keeps_its_password(data_dir):
    """A database whose `admin` was made by other means (createsuperuser), with no login
    kept in this data dir: the setup used to give it a new password without a word."""
    setup(data_dir)
    (data_dir / "login.json").unlink()
    run(data_dir, None, "-c", SET_PASSWORD, "admin", "made-by-createsuperuser")

    output = setup(data_dir)
    assert "no password for admin is kept in" in output
    assert "password:" not in output
    assert logs_in(data_dir, None, ("admin", "made-by-createsuperuser")) == [True]
