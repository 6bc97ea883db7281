"""API tokens: created, revoked and checked here, for the API, the admin and the CLI.

Tokens look like `cvy_AbCdEfGh...`; only their sha256 is stored (`ApiToken.digest`),
with the first characters kept as a visible prefix to name them.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from jobs.models import ApiToken

TOKEN_START = "cvy_"
PREFIX_LENGTH = 12  # "cvy_" + 8 random characters: enough to tell tokens apart
MAX_TOKEN_LENGTH = 200
TOUCH_INTERVAL = timedelta(minutes=1)  # last_used_at is written at most this often


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """A new token for `user`; the secret is returned once and never stored."""
    secret = TOKEN_START + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name[:100], prefix=secret[:PREFIX_LENGTH], digest=digest(secret)
    )
    return token, secret


def tokens_matching(text: str) -> QuerySet[ApiToken]:
    """Unrevoked tokens named by their visible prefix or by the whole secret."""
    tokens = ApiToken.objects.filter(revoked_at__isnull=True).select_related("user")
    if len(text) > PREFIX_LENGTH:
        return tokens.filter(digest=digest(text))
    return tokens.filter(prefix=text)


def token_revoke(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def user_for_token(secret: str) -> AbstractBaseUser | None:
    """The active user a token belongs to, or None; notes when it was last used."""
    if not secret or len(secret) > MAX_TOKEN_LENGTH:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(digest=digest(secret), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.user.is_active:
        return None
    _touch(token)
    return token.user


def _touch(token: ApiToken) -> None:
    """Record use, but write at most once a minute: reads must not become writes."""
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
