"""Who is calling the JSON API: a browser session, or a script with a bearer token.

Tokens look like `cvy_AbCdEfGh...`; only their sha256 is stored (`ApiToken.digest`),
with the first characters kept as a visible prefix to name them. A request with an
`Authorization` header is judged by its token alone (CSRF does not apply: a browser
never adds that header by itself); without one, the session decides and unsafe
methods must pass Django's CSRF check, exactly as a page form would.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, UnreadablePostError
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


def token_or_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A page's GET download (a sheet job's export) that a script may fetch with
    `Authorization: Bearer <token>`, as it calls the API; without that header, the page's
    own `login_required`. Only for safe methods: a token skips no CSRF check here."""
    page = login_required(view)

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        header = request.headers.get("Authorization")
        if header is None or request.method not in ("GET", "HEAD"):
            return page(request, *args, **kwargs)
        try:
            request.user = _bearer_user(header)
        except AuthError as exc:
            response = HttpResponse(exc.message + "\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="conveyor"'
            return response
        return view(request, *args, **kwargs)

    return wrapper


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
