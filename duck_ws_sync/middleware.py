"""``WebSocketMiddleware``: WebSocket routes in front of any WSGI application.

A request whose path matches a WebSocket route is upgraded here: the
client's address is read from a trusted proxy's headers (``proxies.py``),
the handshake is checked (a bad one gets its 4xx with a plain reason), the
view's ``authorize`` hook says whether this client may connect (``Reject``
gets its status, any other exception a 500), the connection budget is
checked (503 beyond it, ``budget.py``), the socket is taken over from the
server (``hosts/takeover.py``), and the 101 is written. The connection's
session then goes to the host that the takeover found (``hosts/choice.py``):
on gevent the WSGI call ends at once and the session runs in greenlets
(``hosts/gevent/``); on a thread-per-connection server it runs in an OS
thread: one of its own beyond the call under gunicorn, the request's
inside the call under werkzeug and over TLS (``hosts/threads/``). Every
other request goes to the wrapped application untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .budget import ConnectionBudget
from .exceptions import Reject
from .hosts.base import Host
from .hosts.choice import host
from .hosts.takeover import Takeover, Unsupported, end_call, find_socket, take
from .protocol import InvalidHandshake, Response, ServerHandshake
from .proxies import TrustedProxies
from .request import WebSocketRequest, wsgi_to_text
from .urls import URLPattern, resolve
from .views import VIEW_HOOKS, ViewHooks, WebSocketView, accept, authorize

__all__ = ["WebSocketMiddleware", "trusting_origins"]

logger = logging.getLogger("duck_ws_sync")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WebSocketMiddleware:
    """Serve WebSocket routes; pass every other request to ``app``.

    Args:
        app: The WSGI application for everything else; None answers 404.
        urlpatterns: ``path`` and ``re_path`` routes to ``WebSocketView``
            subclasses. Duck's own ``duck.urls`` patterns are taken as they
            are: those whose view is one of ours are served here, the others
            are left to ``app``.
        max_connections: The most WebSockets this process holds open at
            once; an upgrade beyond gets ``503 Service Unavailable`` with
            ``Retry-After``. None: no limit, but where a WebSocket holds
            its request's thread for its life (gunicorn's gthread worker
            over TLS) all the worker's threads but a quarter (at least
            one), kept for plain HTTP.
        trusted_proxies: The proxies in front of the server (addresses,
            networks such as ``"10.0.0.0/8"``, ``"unix"``): from them, and
            only from them, the headers of ``proxy_headers`` give the
            client's address, scheme and host for WebSocket upgrades
            (``proxies.py``).
        proxy_headers: What those proxies set: ``"x-forwarded"``
            (``X-Forwarded-For`` and ``X-Forwarded-Proto``, nginx's and
            most load balancers'), ``"forwarded"`` (RFC 7239), or a tuple
            of header names (``X-Forwarded-Host`` is read only when
            listed). Other forwarding headers are ignored.

    Raises:
        ValueError: For a ``trusted_proxies`` entry or ``proxy_headers``
            that cannot be understood.
    """

    # How each session runs its view's hooks: an integration with a
    # framework sets a guard around them (``duck_ws_sync.django``).
    hooks: ViewHooks = VIEW_HOOKS

    def __init__(
        self,
        app: WSGIApp | None,
        urlpatterns: Sequence[URLPattern | Mapping[str, Any]],
        max_connections: int | None = None,
        trusted_proxies: Iterable[str] = (),
        proxy_headers: str | Iterable[str] = "x-forwarded",
    ) -> None:
        self.app = app
        self.urlpatterns = [route for route in map(_websocket_route, urlpatterns) if route is not None]
        self.budget = ConnectionBudget(max_connections)
        self.trusted_proxies = TrustedProxies(trusted_proxies, proxy_headers)

    def prepare(self, view_class: Any, request: WebSocketRequest) -> tuple[Any, ServerHandshake] | Response:
        """Before the handshake: the request the view gets, and the handshake's policy; or a refusal.

        By default the view gets ``request`` and the policy is the view's
        own (``view_class.handshake()``). An integration with a framework
        overrides this to give the view the framework's request, to run the
        framework's own checks first (a ``Response`` refuses the upgrade
        with it), or to widen the origins the view allows from the
        framework's settings (``duck_ws_sync.duck``).
        """
        return request, view_class.handshake()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        found = resolve(self.urlpatterns, wsgi_to_text(environ.get("PATH_INFO", "")))
        if found is None:
            if self.app is None:
                return _respond(start_response, InvalidHandshake(404, "Not Found").response())
            return self.app(environ, start_response)
        upgraded = self._upgrade(environ, start_response, *found)
        if not isinstance(upgraded, _Upgraded):
            return upgraded
        session, taken = upgraded.view.session, upgraded.taken
        del upgraded
        upgraded_host = host(taken.host)
        upgraded_host.serve(session, taken.socket, taken.initial_data, self.budget.give_back, taken)
        return end_call(taken, environ, start_response)

    def _upgrade(
        self, environ: dict[str, Any], start_response: StartResponse, pattern: URLPattern, kwargs: dict[str, Any]
    ) -> _Upgraded | Iterable[bytes]:
        """Check the upgrade, take the socket over and write the 101; or answer why not."""
        view_class = pattern.handler
        if self.trusted_proxies:
            self.trusted_proxies.apply(environ)
        request = WebSocketRequest(environ)
        if pattern.methods is not None and request.method not in pattern.methods:
            allow = [("Allow", ", ".join(pattern.methods))]
            error = InvalidHandshake(405, f"Method {request.method} not allowed", allow)
            return _respond(start_response, error.response())
        prepared = self.prepare(view_class, request)
        if isinstance(prepared, Response):
            return _respond(start_response, prepared)
        view_request, policy = prepared
        handshake = policy.accept(request.to_handshake_request())
        if not handshake.accepted:
            return _respond(start_response, handshake.response)

        found = find_socket(environ)
        if isinstance(found, Unsupported):
            logger.error("cannot serve a WebSocket: %s", found.reason)
            return _respond(start_response, InvalidHandshake(500, found.reason).response())
        view = view_class(view_request, **kwargs)
        accept(view, request, handshake.extensions, handshake.subprotocol, self.hooks)
        refusal = _authorize(view, request, host(found.host))
        if refusal is None:
            refusal = self.budget.take(found.threads)
        if refusal is not None:
            return _respond(start_response, refusal)
        taken = take(found, environ)
        sock = taken.socket
        try:
            sock.sendall(handshake.response.serialize())
        except OSError as exc:
            logger.debug("client left during the handshake: %s", exc)
            self.budget.give_back()
            if taken.detached:
                sock.close()
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return end_call(taken, environ, start_response)
        with contextlib.suppress(OSError):  # not TCP: a Unix socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        view.initiated_upgrade = True
        return _Upgraded(view, taken)


class _Upgraded:
    """A connection upgraded: its view (the 101 written) and the socket taken over."""

    __slots__ = ("taken", "view")

    def __init__(self, view: Any, taken: Takeover) -> None:
        self.view = view
        self.taken = taken


def _authorize(view: Any, request: WebSocketRequest, serving: Host) -> Response | None:
    """Run the view's ``authorize`` hook, if it has one; the refusal, or None to go on.

    An ``async def`` runs on an event loop of its own, of the host's kind,
    closed right after: the connection's loop is made later, where the
    session runs. A plain ``def`` needs none.
    """
    if type(view).authorize is WebSocketView.authorize:
        return None
    try:
        authorize(view, serving.event_loop)
    except Reject as rejection:
        logger.info(
            "WebSocket %s refused by %s.authorize: %d %s",
            request.path,
            type(view).__name__,
            rejection.status,
            rejection.reason,
        )
        return InvalidHandshake(rejection.status, rejection.reason, rejection.headers).response()
    except (Exception, asyncio.CancelledError):
        logger.exception("authorize of WebSocket view %s failed", type(view).__name__)
        return InvalidHandshake(500, "Internal Server Error").response()
    return None


def trusting_origins(
    view_class: type[WebSocketView], request: WebSocketRequest, trusted: Sequence[str]
) -> ServerHandshake:
    """``view_class``'s handshake, whose origins are also ``trusted`` ones (a framework's CSRF_TRUSTED_ORIGINS).

    A view that sets ``ALLOWED_ORIGINS`` keeps its own. Otherwise the
    page's own origin (the ``Host`` header's, either scheme) stays allowed,
    and so are the ``trusted`` origins (globs such as ``https://*.example.com``).
    """
    policy = view_class.handshake()
    if not trusted or view_class.ALLOWED_ORIGINS is not None:
        return policy
    host = (request.get_header("Host") or "").strip()
    own = [f"http://{host}", f"https://{host}"] if host else []
    return ServerHandshake([*trusted, *own], policy.subprotocols, policy.extensions)


def _websocket_route(pattern: URLPattern | Mapping[str, Any]) -> URLPattern | None:
    """Our route for ``pattern``: as it is, or made from Duck's (a dict); None for Duck's routes to other views."""
    if isinstance(pattern, URLPattern):
        return pattern
    if not isinstance(pattern, Mapping) or "url" not in pattern or "handler" not in pattern:
        raise TypeError(f"not a URL pattern: {pattern!r} (use duck_ws_sync.path or duck.urls.path)")
    handler = pattern["handler"]
    if not (isinstance(handler, type) and issubclass(handler, WebSocketView)):
        return None  # an HTTP view, or Duck's own WebSocket view: the wrapped application serves it
    methods = pattern.get("methods")
    return URLPattern(pattern["url"], handler, pattern.get("name"), methods or None, bool(pattern.get("regex")))


def _respond(start_response: StartResponse, response: Response) -> list[bytes]:
    # PEP 3333 leaves hop-by-hop headers such as Connection to the server.
    headers = [(name, value) for name, value in response.headers if name.lower() != "connection"]
    start_response(response.status_line, headers)
    return [response.body]
