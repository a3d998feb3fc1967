"""``WebSocketMiddleware``: WebSocket routes in front of any WSGI application.

A request whose path matches a WebSocket route is upgraded here: the
handshake is checked (a bad one gets its 4xx with a plain reason), the
connection's descriptor is taken out of the server's socket object, the 101
is written, and the WSGI call ends at once; the view serves the connection
in a greenlet of its own (``sessions.py``). Every other request goes to the
wrapped application untouched.

Servers that hand over their socket:

- gunicorn's gevent worker: ``environ["gunicorn.socket"]``; a
  ``StopIteration`` raised from the call tells it the connection is done
  (it then closes its socket object, which no longer owns the descriptor).
- gevent.pywsgi: for an Upgrade request, ``environ["wsgi.input"]`` is the
  handler's buffered reader of the socket; bytes it read past the request
  (a first frame sent with the upgrade) are carried over, and closing the
  reader tells pywsgi that no request follows.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .protocol import InvalidHandshake, Response, ServerHandshake
from .request import WebSocketRequest, wsgi_to_text
from .urls import URLPattern, resolve

__all__ = ["WebSocketMiddleware"]

logger = logging.getLogger("duck_ws_sync")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

SUPPORTED_SERVERS = "gunicorn with the gevent worker (-k gevent) or gevent.pywsgi.WSGIServer"


class WebSocketMiddleware:
    """Serve WebSocket routes; pass every other request to ``app``.

    Args:
        app: The WSGI application for everything else; None answers 404.
        urlpatterns: ``path`` and ``re_path`` routes to ``WebSocketView``
            subclasses. Duck's own ``duck.urls`` patterns are taken as they
            are: those whose view is one of ours are served here, the others
            are left to ``app``.
    """

    def __init__(self, app: WSGIApp | None, urlpatterns: Sequence[URLPattern | Mapping[str, Any]]) -> None:
        self.app = app
        self.urlpatterns = [route for route in map(_websocket_route, urlpatterns) if route is not None]

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
        from . import sessions  # noqa: PLC0415 (the view layer has gevent loaded already)

        view, taken = upgraded.view, upgraded.taken
        del upgraded
        if taken.detached:
            sessions.start(view, taken.socket, taken.initial_data, close_on_sigterm=taken.gunicorn)
        else:
            sessions.serve(view, taken.socket, taken.initial_data, close_on_sigterm=taken.gunicorn)
        return _end_call(taken, environ)

    def _upgrade(
        self, environ: dict[str, Any], start_response: StartResponse, pattern: URLPattern, kwargs: dict[str, Any]
    ) -> _Upgraded | Iterable[bytes]:
        """Check the upgrade, take the socket over and write the 101; or answer why not."""
        view_class = pattern.handler
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

        taken = _take_socket(environ)
        if taken is None:
            logger.error(
                "cannot take over the connection's socket from %s: WebSockets need %s",
                environ.get("SERVER_SOFTWARE", "this server"),
                SUPPORTED_SERVERS,
            )
            error = InvalidHandshake(500, f"This server cannot serve WebSockets; use {SUPPORTED_SERVERS}")
            return _respond(start_response, error.response())
        sock = taken.socket
        try:
            sock.sendall(handshake.response.serialize())
        except OSError as exc:
            logger.debug("client left during the handshake: %s", exc)
            sock.close()
            return _end_call(taken, environ)
        with contextlib.suppress(OSError):  # not TCP: a Unix socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        view = view_class(view_request, **kwargs)
        view.initiated_upgrade = True
        view.extensions = handshake.extensions
        view.subprotocol = handshake.subprotocol
        return _Upgraded(view, taken)


class _Upgraded:
    """A connection upgraded: its view (the 101 written) and the socket taken over."""

    __slots__ = ("taken", "view")

    def __init__(self, view: Any, taken: _Takeover) -> None:
        self.view = view
        self.taken = taken


def _websocket_route(pattern: URLPattern | Mapping[str, Any]) -> URLPattern | None:
    """Our route for ``pattern``: as it is, or made from Duck's (a dict); None for Duck's routes to other views."""
    if isinstance(pattern, URLPattern):
        return pattern
    if not isinstance(pattern, Mapping) or "url" not in pattern or "handler" not in pattern:
        raise TypeError(f"not a URL pattern: {pattern!r} (use duck_ws_sync.path or duck.urls.path)")
    from .views import WebSocketView  # noqa: PLC0415 (only Duck's patterns need the view layer here)

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


class _Takeover(NamedTuple):
    """A connection taken over from the server."""

    socket: socket.socket
    initial_data: bytes  # read by the server past the upgrade request
    gunicorn: bool  # gunicorn's gevent worker (else gevent.pywsgi)
    # The socket is ours alone, the server's socket object no longer owning
    # the descriptor; not so for TLS, whose state cannot leave its object.
    detached: bool


def _take_socket(environ: Mapping[str, Any]) -> _Takeover | None:
    """Find the client's socket and what the server already read from it, and take the descriptor."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        if not str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn") or not _is_gevent_socket(sock):
            return None
        initial_data = _gunicorn_buffered(environ.get("wsgi.input"))
        own, detached = _detach(sock)
        return _Takeover(own, initial_data, gunicorn=True, detached=detached)
    reader = environ.get("wsgi.input")
    raw = getattr(reader, "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is None or not _is_gevent_socket(sock):
        return None
    initial_data = _pywsgi_buffered(reader, sock)
    own, detached = _detach(sock)
    return _Takeover(own, initial_data, gunicorn=False, detached=detached)


def _detach(sock: socket.socket) -> tuple[socket.socket, bool]:
    """A socket of our own for ``sock``'s descriptor, ``sock`` left closed without closing it; and whether it is.

    The descriptor keeps its number, so the event loop's registration of it
    stays right (a ``dup`` would leave epoll reporting the old number). A TLS
    socket stays as it is: its state cannot move to another object.
    """
    from gevent.ssl import SSLSocket  # noqa: PLC0415 (only gevent's sockets come here)

    if isinstance(sock, SSLSocket):
        return sock, False
    timeout = sock.gettimeout()
    own = type(sock)(sock.family, sock.type, sock.proto, fileno=sock.detach())
    own.settimeout(timeout)
    return own, True


def _end_call(taken: _Takeover, environ: dict[str, Any]) -> list[bytes]:
    """End the WSGI call of a connection taken over: the server must write nothing more on it."""
    # The environ stays with the view's request: it lets go of what only the
    # server's call could use (its body reader and parser, its socket object,
    # gunicorn's early-hints callback and, through it, its request objects).
    environ["wsgi.input"] = io.BytesIO()
    environ.pop("gunicorn.socket", None)
    environ.pop("wsgi.early_hints", None)
    if taken.gunicorn:
        # gunicorn's worker takes it for "connection done": it logs at debug
        # level and closes its socket object, which owns nothing any more.
        raise StopIteration("WebSocket taken over")
    # pywsgi: its reader is closed, so no request follows, and its socket
    # object owns nothing any more: nothing more is written.
    return []


def _is_gevent_socket(sock: Any) -> bool:
    """Only cooperative sockets can be served from a greenlet without blocking the worker."""
    return type(sock).__module__.startswith("gevent")


def _gunicorn_buffered(body: Any) -> bytes:
    """Bytes gunicorn's parser read past the request headers (in its unreader's buffer)."""
    unreader = getattr(getattr(body, "reader", None), "unreader", None)
    buffer = getattr(unreader, "buf", None)
    return buffer.getvalue() if buffer is not None else b""


def _pywsgi_buffered(reader: Any, sock: Any) -> bytes:
    """Bytes pywsgi's buffered reader holds past the request, read without blocking.

    The reader is closed then (the socket stays open): it frees its 8 KiB
    buffer, which would otherwise stay with the connection for its life,
    and tells pywsgi's handler that no further request follows.
    """
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return reader.read1(65536) or b""
    except OSError:
        return b""
    finally:
        sock.settimeout(timeout)
        reader.close()
