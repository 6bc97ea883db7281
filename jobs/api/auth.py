"""Who is calling the JSON API: a browser session, or a script with a bearer token.

Tokens look like `cvy_AbCdEfGh...`; only their sha256 is stored (`ApiToken.digest`),
with the first characters kept as a visible prefix to name them. A request with an
`Authorization` header is judged by its token alone (CSRF does not apply: a browser
never adds that header by itself); without one, the session decides and unsafe
methods must pass Django's CSRF check, exactly as a page form would.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import SuspiciousOperation
from django.db.models import QuerySet
from django.http import HttpRequest, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from jobs.models import ApiToken

TOKEN_START = "cvy_"
PREFIX_LENGTH = 12  # "cvy_" + 8 random characters: enough to tell tokens apart
MAX_TOKEN_LENGTH = 200
TOUCH_INTERVAL = timedelta(minutes=1)  # last_used_at is written at most this often


class AuthError(Exception):
    """The request may not proceed: 401 (who are you?) or 403 (CSRF)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def authenticate(request: HttpRequest) -> AbstractBaseUser:
    """The user behind an API request, or AuthError (401 or 403)."""
    header = request.headers.get("Authorization")
    if header is not None:
        return _bearer_user(header)
    user = request.user
    if not user.is_authenticated or not user.is_active:
        raise AuthError(
            401, "Authentication required: log in, or send 'Authorization: Bearer <token>'."
        )
    if request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
        _check_csrf(request)
    return user


def _bearer_user(header: str) -> AbstractBaseUser:
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthError(401, "Send the token as 'Authorization: Bearer <token>'.")
    user = user_for_token(secret.strip())
    if user is None:
        raise AuthError(401, "Invalid or revoked token.")
    return user


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> str:  # type: ignore[override]
        return reason


def _check_csrf(request: HttpRequest) -> None:
    """Django's own CSRF check, run here because API views are csrf_exempt for tokens."""
    check = _CsrfCheck(lambda request: None)  # type: ignore[arg-type, return-value]
    check.process_request(request)
    try:
        reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    except (MultiPartParserError, SuspiciousOperation, UnreadablePostError):
        reason = "the request body could not be read"
    if isinstance(reason, str):
        raise AuthError(403, f"CSRF check failed: {reason.rstrip('.')}.")
