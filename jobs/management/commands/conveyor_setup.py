"""First-run setup for `make run`: make sure a login exists and say how to use it.

One login per data dir (`login.json`: a username and a password generated once), the
same on every database `make run` is pointed at: a database without that user gets it
with the kept password, so switching `DATABASE_URL` back and forth never leaves the
printed password wrong. A password changed on a database is never reset by this
command unless asked (`--reset-password`); it says that the kept one no longer works.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from config.private_files import write_private

DEFAULT_USERNAME = "admin"


def read_login(path: Path) -> dict | None:
    """The kept login, or None when there is none (or it is not a login)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or not all(
        isinstance(saved.get(key), str) and saved.get(key) for key in ("username", "password")
    ):
        return None
    return saved


def database_in_use() -> str:
    """The database's engine and name, for the user to see which one this is."""
    conf = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"SQLite {conf['NAME']}"
    return f"{connection.display_name} {conf['NAME']} on {conf['HOST'] or 'localhost'}"


class Command(BaseCommand):
    help = (
        "Ensure an admin login exists on the database in use (its password generated once, "
        "kept in the data dir, the same on every database) and print it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-password",
            action="store_true",
            help="Set a new generated password for the kept login on this database (and "
            "keep it), even when one was set there by hand; a deactivated login is "
            "activated.",
        )

    def handle(self, *args, reset_password: bool = False, **options) -> None:
        path = settings.DATA_DIR / "login.json"
        saved = read_login(path)
        username = saved["username"] if saved else DEFAULT_USERNAME
        user = get_user_model()._default_manager.filter(username=username).first()
        if reset_password:
            password = secrets.token_urlsafe(12)
            self.set_login(path, username, password, user)
            self.say_login(path, username, password, f"New password set for {username}.")
        elif user is None:
            password = saved["password"] if saved else secrets.token_urlsafe(12)
            self.set_login(path, username, password, user)
            self.say_login(path, username, password)
        elif saved and user.is_active and user.check_password(saved["password"]):
            self.say_login(path, username, saved["password"])
        else:
            self.say_not_kept(path, username, saved, user)
        if path.exists():
            path.chmod(0o600)  # a file written before it was made private

    def set_login(self, path: Path, username: str, password: str, user) -> None:
        """Create the staff login (or set its password) and keep it in the data dir."""
        if user is None:
            user = get_user_model()(username=username, is_staff=True, is_superuser=True)
        user.is_active = True
        user.set_password(password)
        user.save()
        write_private(path, json.dumps({"username": username, "password": password}))

    def say_login(self, path: Path, username: str, password: str, news: str = "") -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"\nConveyor is starting on http://127.0.0.1:{settings.CONVEYOR_PORT}/\n"
                f"  database:  {database_in_use()}\n"
                + (f"  {news}\n" if news else "")
                + f"  log in as: {username}\n"
                f"  password:  {password}   (kept in {path})\n"
            )
        )

    def say_not_kept(self, path: Path, username: str, saved: dict | None, user) -> None:
        """The user exists here but the kept password does not log in: it was set on
        this database by hand (or the user was made here by other means). Not reset."""
        if saved is None:
            why = f"no password for {username} is kept in {path}"
        elif not user.is_active:
            why = f"{username} is deactivated on this database"
        else:
            why = f"the password kept in {path} is not {username}'s on this database (changed here)"
        self.stdout.write(
            self.style.WARNING(
                f"\nConveyor is starting on http://127.0.0.1:{settings.CONVEYOR_PORT}/\n"
                f"  database:  {database_in_use()}\n"
                f"  log in as: {username}, with the password set on this database:\n"
                f"  {why}, and it was left as it is.\n"
                f"  For a new one: python manage.py conveyor_setup --reset-password\n"
            )
        )
