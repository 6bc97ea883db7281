"""Django's error handlers (config/urls.py), in JSON under /api/: what escapes a view
(a bug: 500) or is refused before one runs (a bad Host or request: 400) answers a
script in the API's error shape, never with an HTML page. Pages keep Django's own
handlers (templates/404.html, 500.html)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

API_PREFIX = "/api/"


def _json_under_api(status: int, error: str, page: Callable[..., HttpResponse]) -> Callable:
    def handler(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            return JsonResponse({"error": error}, status=status)
        return page(request, *args, **kwargs)

    handler.__name__ = page.__name__
    return handler


bad_request = _json_under_api(400, "Bad request.", defaults.bad_request)
permission_denied = _json_under_api(403, "Permission denied.", defaults.permission_denied)
page_not_found = _json_under_api(404, "Not found.", defaults.page_not_found)
server_error = _json_under_api(
    500, "Internal server error; it has been logged.", defaults.server_error
)
