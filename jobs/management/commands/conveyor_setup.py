"""First-run setup for `make run`: make sure a login exists and say how to use it."""

from __future__ import annotations

import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from config.private_files import write_private


class Command(BaseCommand):
    help = (
        "Ensure an admin login exists (password generated once, kept in the data dir) and print it."
    )

    def handle(self, *args, **options) -> None:
        path = settings.DATA_DIR / "login.json"
        User = get_user_model()
        saved = json.loads(path.read_text()) if path.exists() else None
        if saved is None or not User.objects.filter(username=saved["username"]).exists():
            username = saved["username"] if saved else "admin"
            password = secrets.token_urlsafe(12)
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            saved = {"username": username, "password": password}
            write_private(path, json.dumps(saved))
        path.chmod(0o600)  # a file written before it was made private
        port = settings.CONVEYOR_PORT
        self.stdout.write(
            self.style.SUCCESS(
                f"\nConveyor is starting on http://127.0.0.1:{port}/\n"
                f"  log in as: {saved['username']}\n"
                f"  password:  {saved['password']}   (kept in {path})\n"
            )
        )
