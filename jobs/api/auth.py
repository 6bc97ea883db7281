"""Who is calling the JSON API: a browser session, or a script with a bearer token.

Tokens look like `cvy_AbCdEfGh...`; only their sha256 is stored (`ApiToken.digest`),
with the first characters kept as a visible prefix to name them. A request with an
`Authorization` header is judged by its token alone (CSRF does not apply: a browser
never adds that header by itself); without one, the session decides and unsafe
methods must pass Django's CSRF check, exactly as a page form would.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware

from jobs.tokens import user_for_token


class AuthError(Exception):
    """The request may not proceed: 401 (who are you?) or 403 (CSRF)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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
