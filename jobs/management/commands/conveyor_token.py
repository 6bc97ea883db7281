"""`manage.py conveyor_token create|list|revoke`: API tokens for scripts.

The secret is printed once, at creation; afterwards only its prefix is known, which
is enough to list and revoke it (see `jobs.api.auth`).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.models import ApiToken
from jobs.tokens import token_create, token_revoke, tokens_matching


class Command(BaseCommand):
    help = "Create, list or revoke the API tokens scripts use to call /api/ as a user."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a token and print it once.")
        create.add_argument("username")
        create.add_argument("--name", default="", help="What the token is for.")
        listing = actions.add_parser("list", help="List a user's tokens (prefixes only).")
        listing.add_argument("username")
        revoke = actions.add_parser("revoke", help="Revoke a token by its prefix.")
        revoke.add_argument("prefix", help="The prefix shown by `list`, or the whole token.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            self._create(options["username"], options["name"])
        elif action == "list":
            self._list(options["username"])
        else:
            self._revoke(options["prefix"])

    def _user(self, username: str):
        User = get_user_model()
        try:
            return User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None

    def _create(self, username: str, name: str) -> None:
        user = self._user(username)
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; a token would not work.")
        token, secret = token_create(user=user, name=name)
        self.stdout.write(secret)
        self.stderr.write(
            f"Token {token.prefix}… created for {username}. It is shown only now; "
            "send it as 'Authorization: Bearer <token>'."
        )

    def _list(self, username: str) -> None:
        tokens = ApiToken.objects.filter(user=self._user(username))
        if not tokens:
            self.stdout.write(f"{username} has no API tokens.")
            return
        for token in tokens:
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.is_revoked else "active"
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            self.stdout.write(
                f"{token.prefix}  {state:<24}  created {token.created_at:%Y-%m-%d %H:%M}  "
                f"last used {used}  {token.name}"
            )

    def _revoke(self, prefix: str) -> None:
        tokens = list(tokens_matching(prefix.strip()))
        if not tokens:
            raise CommandError(f"No active token matches {prefix!r}.")
        if len(tokens) > 1:
            raise CommandError(
                f"{len(tokens)} active tokens start with {prefix!r}; pass the whole token."
            )
        token = tokens[0]
        token_revoke(token)
        self.stdout.write(f"Revoked {token.prefix}… of {token.user.get_username()}.")
