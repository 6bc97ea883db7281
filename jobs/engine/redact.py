"""Hide secrets (API keys, passwords, tokens) in job parameters wherever they are shown.

Workers need the real values, so they are stored; pages, the API and the admin show
only that a value is set.
"""

from __future__ import annotations

import re
from typing import Any

# Whole words of a key's name: "api_key", "apiKey", "X-Auth-Token", "db_password" are
# secret; "max_tokens" (a count) is not.
SECRET_WORDS = frozenset(
    {"password", "passwd", "secret", "token", "authorization", "credential", "credentials"}
)
SECRET_JOINED = ("apikey", "privatekey", "accesskey", "secretkey")
MASK = "••••••••"


def is_secret_name(name: Any) -> bool:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name)).lower()
    parts = [part for part in re.split(r"[^a-z0-9]+", words) if part]
    joined = "".join(parts)
    return bool(SECRET_WORDS.intersection(parts)) or any(j in joined for j in SECRET_JOINED)


def redact(value: Any) -> Any:
    """A copy of `value` with every secret-looking key's non-empty value masked."""
    if isinstance(value, dict):
        return {
            key: (MASK if value_ and is_secret_name(key) else redact(value_))
            for key, value_ in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
