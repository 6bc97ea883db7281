"""Secrets users type (API keys in a job's options): encrypted at rest, decrypted only
for the worker that runs the job, and scrubbed from every text stored or logged.

A value under a secret-looking key (`redact.is_secret_name`) is sealed at submit with
Fernet (`enc:` + token), the key derived from CONVEYOR_SECRETS_KEY or SECRET_KEY. What a
user gives is sealed unconditionally; only the engine's own stored params go on sealed.
`scrub(text, secrets)` replaces every known secret (the job's own and the server's
configured keys) with a mask before an error, a traceback, an event or a row error is
written, so an upstream that echoes the key back does not leak it into the database.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings

from jobs.engine.redact import MASK, is_secret_name

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

PREFIX = "enc:"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def _fernet() -> Fernet:
    # cryptography costs ~9 MB a process: imported by the processes that seal or unseal.
    from cryptography.fernet import Fernet

    key = settings.CONVEYOR_SECRETS_KEY or settings.SECRET_KEY
    digest = hashlib.sha256(f"conveyor-secrets:{key}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt(value: str) -> str:
    return PREFIX + _fernet().encrypt(value.encode()).decode()


def decrypt(value: str) -> str:
    """The clear value of a sealed one; a value that is not sealed is returned as is."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ValueError("a stored secret cannot be decrypted (was the key changed?)") from None


def _walk(value: Any, on_secret) -> Any:
    if isinstance(value, dict):
        return {
            key: on_secret(item)
            if is_secret_name(key) and isinstance(item, str) and item
            else _walk(item, on_secret)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_walk(item, on_secret) for item in value]
    return value


def seal(params: dict[str, Any]) -> dict[str, Any]:
    """A copy of `params` with every secret value encrypted: always, even a value that
    looks sealed already (a user who types `enc:...` gets that text sealed, so a sealed
    value copied from another job is never decrypted for the copier). Params that were
    sealed before (a schedule's, on each run) are passed on as they are, not resealed."""
    return _walk(params, encrypt)


def unseal(params: dict[str, Any]) -> dict[str, Any]:
    return _walk(params, decrypt)


def secrets_in(params: dict[str, Any]) -> set[str]:
    """The clear secret values of (unsealed) params."""
    found: set[str] = set()
    _walk(params, lambda item: found.add(item) or item)
    return {value for value in found if len(value) >= MIN_SECRET_LENGTH}


def server_secrets() -> set[str]:
    """Keys from the server's own settings that must never be shown or stored."""
    values = [settings.CONVEYOR_LLM_API_KEY, settings.SECRET_KEY]
    return {value for value in values if value and len(value) >= MIN_SECRET_LENGTH}


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret (and the server's keys) masked."""
    if not text:
        return text
    for secret in sorted({*secrets, *server_secrets()}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text
