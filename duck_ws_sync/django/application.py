"""A Django project's PEP 3333 application, and the upgrade checked and seen as Django would."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..middleware import WebSocketMiddleware, trusting_origins
from ..protocol import InvalidHandshake, Response, ServerHandshake
from ..request import WebSocketRequest
from .database import DJANGO_HOOKS, run_thread_sensitive_code_here

__all__ = ["DjangoWebSocketMiddleware", "wsgi_application"]


def wsgi_application(**options: Any) -> DjangoWebSocketMiddleware:
    """The project's WSGI application, for its ``wsgi.py``: ``application = wsgi_application()``.

    Django is set up from ``DJANGO_SETTINGS_MODULE`` as
    ``django.core.wsgi.get_wsgi_application`` does, and its ``WSGIHandler``
    serves every request that is not a WebSocket route.

    Args:
        options: ``WebSocketMiddleware``'s (``max_connections``,
            ``trusted_proxies``, ``proxy_headers``).

    Raises:
        django.core.exceptions.ImproperlyConfigured: As Django's own does,
            for missing settings.
    """
    from django.core.wsgi import get_wsgi_application  # noqa: PLC0415 (Django only where a project runs)

    handler = get_wsgi_application()
    run_thread_sensitive_code_here()
    return DjangoWebSocketMiddleware(handler, websocket_urlpatterns(), **options)


def websocket_urlpatterns() -> list[Any]:
    """The ``websocket_urlpatterns`` of the ``ROOT_URLCONF`` module (none if it has no such list)."""
    from django.conf import settings  # noqa: PLC0415

    module = importlib.import_module(settings.ROOT_URLCONF)
    return list(getattr(module, "websocket_urlpatterns", ()))


class DjangoWebSocketMiddleware(WebSocketMiddleware):
    """``WebSocketMiddleware`` for a Django project: the view gets Django's request, hooks run as requests do.

    Before the handshake, the ``Host`` must be in ``ALLOWED_HOSTS`` (400
    otherwise, as Django answers). A browser's ``Origin`` must be the
    page's own or one of ``CSRF_TRUSTED_ORIGINS`` (403), unless the view
    sets ``ALLOWED_ORIGINS``. The view's ``self.request`` is a
    ``WSGIRequest`` with ``session`` and ``user`` set, lazily, by Django's
    session and authentication middleware when ``MIDDLEWARE`` has them.
    """

    hooks = DJANGO_HOOKS

    def prepare(self, view_class: Any, request: WebSocketRequest) -> tuple[Any, ServerHandshake] | Response:
        from django.conf import settings  # noqa: PLC0415
        from django.core.exceptions import DisallowedHost  # noqa: PLC0415
        from django.core.handlers.wsgi import WSGIRequest  # noqa: PLC0415

        upgrade = WSGIRequest(request.environ)
        try:
            upgrade.get_host()
        except DisallowedHost as refusal:
            return InvalidHandshake(400, f"Bad Request: {refusal}").response()
        for process_request in _request_middleware():
            process_request(upgrade)
        return upgrade, trusting_origins(view_class, request, list(settings.CSRF_TRUSTED_ORIGINS))


def _request_middleware() -> list[Callable[[Any], None]]:
    """``process_request`` of the project's session and authentication middleware, in ``MIDDLEWARE``'s order.

    They only set ``request.session`` and a lazy ``request.user``: nothing
    is read from the database until a hook asks.
    """
    from django.conf import settings  # noqa: PLC0415
    from django.contrib.auth.middleware import AuthenticationMiddleware  # noqa: PLC0415
    from django.contrib.sessions.middleware import SessionMiddleware  # noqa: PLC0415
    from django.utils.module_loading import import_string  # noqa: PLC0415

    found: list[Callable[[Any], None]] = []
    for name in settings.MIDDLEWARE:
        middleware_class = import_string(name)
        if issubclass(middleware_class, AuthenticationMiddleware):
            found.append(_LazyUser(middleware_class(_no_response)).process_request)
        elif issubclass(middleware_class, SessionMiddleware):
            found.append(middleware_class(_no_response).process_request)
    return found


def _no_response(request: Any) -> None:
    return None


class _LazyUser:
    """Django's ``AuthenticationMiddleware``, whose lazy ``request.user`` may be read in an ``async def`` hook.

    Reading it loads the session and the user from the database: outside the
    connection's running loop (``call_outside``), as in a ``def`` hook.
    """

    def __init__(self, middleware: Any) -> None:
        self.middleware = middleware

    def process_request(self, request: Any) -> None:
        from django.utils.functional import SimpleLazyObject  # noqa: PLC0415

        self.middleware.process_request(request)
        lazy = request.user
        request.user = SimpleLazyObject(lambda: outside_loop(_resolve, lazy))


def _resolve(lazy: Any) -> Any:
    lazy._setup()
    return lazy._wrapped


def outside_loop(function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function``, outside the running loop if a connection's loop runs here (``call_outside``)."""
    import asyncio  # noqa: PLC0415

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return function(*args)
    call_outside = getattr(loop, "call_outside", None)
    return call_outside(function, *args) if call_outside is not None else function(*args)
