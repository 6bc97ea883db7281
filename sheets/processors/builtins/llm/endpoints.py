"""Where rows may go: the operator's endpoint (OPENAI_BASE_URL, with OPENAI_API_KEY) and
the ones listed in CONVEYOR_LLM_ALLOWED_BASE_URLS, compared in one spelling. The server's
key goes only to the server's endpoint, never to a URL a user typed."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

NO_ENDPOINT_HELP = (
    "No LLM endpoint is configured. Set OPENAI_BASE_URL (and OPENAI_API_KEY for a hosted "
    "API) in the server's environment, or list endpoints users may type below in "
    "CONVEYOR_LLM_ALLOWED_BASE_URLS. "
    "A local OpenAI-compatible server works too: Ollama at http://127.0.0.1:11434/v1, "
    "LM Studio at http://127.0.0.1:1234/v1, vLLM at http://127.0.0.1:8000/v1. "
    "For OpenAI itself use https://api.openai.com/v1 with an API key."
)


def endpoint(url: str) -> str:
    """A base URL in one spelling (scheme, host, port, path), "" if it is not a plain
    http(s) URL: user:password@ and odd ports could make one URL look like another."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path.rstrip('/')}"


def is_server_endpoint(url: str) -> bool:
    server = endpoint(settings.CONVEYOR_LLM_BASE_URL)
    return bool(server) and endpoint(url) == server


def allowed_endpoints() -> list[str]:
    return [
        u for u in [settings.CONVEYOR_LLM_BASE_URL, *settings.CONVEYOR_LLM_ALLOWED_BASE_URLS] if u
    ]


def endpoint_error(url: str) -> str:
    if endpoint(url) and endpoint(url) in {endpoint(u) for u in allowed_endpoints()}:
        return ""
    allowed = ", ".join(allowed_endpoints()) or "none yet (the operator sets OPENAI_BASE_URL)"
    return (
        "This server only sends rows to the LLM endpoints its operator allows "
        f"(CONVEYOR_LLM_ALLOWED_BASE_URLS): {allowed}."
    )


def server_key(base_url: str) -> str:
    """OPENAI_API_KEY, for OPENAI_BASE_URL only: never sent to a URL a user typed."""
    return settings.CONVEYOR_LLM_API_KEY if is_server_endpoint(base_url) else ""
