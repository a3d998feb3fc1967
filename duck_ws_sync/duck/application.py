"""A Duck project's PEP 3333 application: Duck set up once, its routes split between Duck and us.

``wsgi_application`` sets Duck up from the project's settings as Duck's own
server would (without starting that server, its thread pools or its
automations), and serves the project's routes with
``DuckWebSocketMiddleware``: Duck's HTTP views through ``serve_http``, our
WebSocket views here. Before an upgrade, Duck's middlewares check the
request as they would for Duck's own WebSocket views (its allowed hosts
among them: a refused request gets Duck's answer), and the view gets Duck's
request, with the session where Duck's session middleware provides one.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path
from typing import Any

from ..middleware import WebSocketMiddleware, trusting_origins
from ..protocol import InvalidHandshake, Response, ServerHandshake
from ..request import WebSocketRequest
from .http import duck_request, serve_http, wsgi_status_and_headers

__all__ = ["DuckWebSocketMiddleware", "wsgi_application"]


def wsgi_application(settings_module: str | None = None, **options: Any) -> DuckWebSocketMiddleware:
    """The project's WSGI application.

    Args:
        settings_module: The project's settings module (``"web.settings"``);
            None takes ``DUCK_SETTINGS_MODULE`` from the environment, as
            Duck does.
        options: ``WebSocketMiddleware``'s (``max_connections``,
            ``trusted_proxies``, ``proxy_headers``).

    Duck is set up once per process: a second call serves the same routes.
    """
    _set_up_duck(settings_module)
    from duck.settings.loaded import get_user_urlpatterns  # noqa: PLC0415 (after the settings module is chosen)

    return DuckWebSocketMiddleware(serve_http, get_user_urlpatterns(), **options)


def _set_up_duck(settings_module: str | None) -> None:
    if settings_module is not None:
        os.environ["DUCK_SETTINGS_MODULE"] = settings_module
    module = os.environ.get("DUCK_SETTINGS_MODULE", "web.settings")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"Duck's settings module {module!r} cannot be found")
    # Duck keeps its generated secrets under the directory it runs from;
    # its own server runs from the project's, the parent of the settings'
    # package, and so do we, whatever the WSGI server's directory.
    project = Path(spec.origin).resolve().parent.parent
    os.environ.setdefault("DUCK_SECRETS_DIR", str(project / ".duck" / "secrets"))
    _setup_once()


@functools.cache
def _setup_once() -> None:
    """Duck's own set-up (routes, middlewares, blueprints), which refuses to run twice."""
    import duck.setup  # noqa: PLC0415

    duck.setup.setup(make_app_dirs=False)


class DuckWebSocketMiddleware(WebSocketMiddleware):
    """``WebSocketMiddleware`` for a Duck project: Duck checks the upgrade, the view gets Duck's request.

    Origins: a browser's ``Origin`` must be the page's own (same scheme-less
    host and port as ``Host``), as for any of our views, unless the view
    sets ``ALLOWED_ORIGINS``; a ``CSRF_TRUSTED_ORIGINS`` list in Duck's
    settings (Django's name; Duck has none of its own) allows those origins
    too.
    """

    def prepare(self, view_class: Any, request: WebSocketRequest) -> tuple[Any, ServerHandshake] | Response:
        from duck.http.core.processor import RequestProcessor  # noqa: PLC0415
        from duck.settings import SETTINGS  # noqa: PLC0415

        upgrade = duck_request(request.environ, read_body=False)
        error = getattr(upgrade, "error", None)
        if error:
            return InvalidHandshake(400, f"Bad request: {error}").response()
        processor = RequestProcessor(upgrade)
        outcome, middleware = processor.check_middlewares()
        if outcome != "ok":
            refusal = processor.get_middleware_error_response(middleware)
            status, headers = wsgi_status_and_headers(refusal)
            return Response(int(status.split()[0]), headers, refusal.content or b"")
        return upgrade, trusting_origins(view_class, request, list(SETTINGS.get("CSRF_TRUSTED_ORIGINS") or ()))
