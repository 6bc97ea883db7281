"""ASGI entry point: HTTP through Django, websockets through Channels.

`get_asgi_application()` runs before the routing import so the app registry is
ready when consumers (and the models they use) are imported. Request bodies are
bounded before Django reads them (config/body_limit.py), inside daphne too, and daphne's
access log goes through Python logging (config/logs.py: JSON lines, query values masked).
"""

from __future__ import annotations

import os
import sys

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.body_limit import BodyLimitMiddleware, guard_daphne  # noqa: E402
from config.logs import route_daphne_access_log  # noqa: E402
from jobs.web.routing import websocket_urlpatterns  # noqa: E402

if "daphne.http_protocol" in sys.modules:  # served by daphne (its CLI or runserver)
    guard_daphne()
    route_daphne_access_log()

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
