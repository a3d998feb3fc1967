"""``WebSocketMiddleware``: WebSocket routes in front of any WSGI application.

A request whose path matches a WebSocket route is upgraded here: the
handshake is checked (a bad one gets its 4xx with a plain reason), the
connection's socket is taken over from the server, and the view serves the
connection in this request's greenlet until it ends. Every other request goes
to the wrapped application untouched.

Servers that hand over their socket:

- gunicorn's gevent worker: ``environ["gunicorn.socket"]``; returning
  ``ALREADY_HANDLED`` tells it the response was written.
- gevent.pywsgi: for an Upgrade request, ``environ["wsgi.input"]`` is the
  handler's buffered reader of the socket; bytes it read past the request
  (a first frame sent with the upgrade) are carried over.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .protocol import InvalidHandshake, Response
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
            subclasses.
    """

    def __init__(self, app: WSGIApp | None, urlpatterns: Sequence[URLPattern]) -> None:
        self.app = app
        self.urlpatterns = list(urlpatterns)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        found = resolve(self.urlpatterns, wsgi_to_text(environ.get("PATH_INFO", "")))
        if found is None:
            if self.app is None:
                return _respond(start_response, InvalidHandshake(404, "Not Found").response())
            return self.app(environ, start_response)
        upgraded = _upgrade(environ, start_response, *found)
        if not isinstance(upgraded, _Upgraded):
            return upgraded
        # Only what the session needs stays referenced while it runs: this
        # frame lives as long as the connection.
        view, taken = upgraded.view, upgraded.taken
        del upgraded
        try:
            view.serve(taken.socket, taken.initial_data)
        finally:
            if taken.close_socket:
                taken.socket.close()
        return taken.result


class _Upgraded:
    """A connection upgraded: its view (the 101 written) and the socket taken over."""

    __slots__ = ("taken", "view")

    def __init__(self, view: Any, taken: _Takeover) -> None:
        self.view = view
        self.taken = taken


def _upgrade(
    environ: dict[str, Any], start_response: StartResponse, pattern: URLPattern, kwargs: dict[str, Any]
) -> _Upgraded | Iterable[bytes]:
    """Check the upgrade, take the socket over and write the 101; or answer why not."""
    view_class = pattern.handler
    request = WebSocketRequest(environ)
    if pattern.methods is not None and request.method not in pattern.methods:
        allow = [("Allow", ", ".join(pattern.methods))]
        error = InvalidHandshake(405, f"Method {request.method} not allowed", allow)
        return _respond(start_response, error.response())
    handshake = view_class.handshake().accept(request.to_handshake_request())
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
    if taken.close_socket is False:
        _close_sessions_on_worker_exit()
    try:
        sock.sendall(handshake.response.serialize())
    except OSError as exc:
        logger.debug("client left during the handshake: %s", exc)
        if taken.close_socket:
            sock.close()
        return taken.result
    with contextlib.suppress(OSError):  # not TCP: a Unix socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    view = view_class(request, **kwargs)
    view.initiated_upgrade = True
    view.extensions = handshake.extensions
    view.subprotocol = handshake.subprotocol
    return _Upgraded(view, taken)


_shutdown_hook_installed = False


def _close_sessions_on_worker_exit() -> None:
    """On gunicorn's graceful shutdown (SIGTERM), close every WebSocket with 1001 first.

    The worker then waits up to ``graceful_timeout`` for the connections to
    end; the sessions end within a round trip, so every ``on_close`` runs.
    """
    global _shutdown_hook_installed  # noqa: PLW0603 (once per worker process)
    if _shutdown_hook_installed:
        return
    _shutdown_hook_installed = True
    import gevent  # noqa: PLC0415 (the view layer has it loaded already)

    from .views import close_all  # noqa: PLC0415

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        gevent.spawn(close_all, 1001, "Server shutting down")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _respond(start_response: StartResponse, response: Response) -> list[bytes]:
    # PEP 3333 leaves hop-by-hop headers such as Connection to the server.
    headers = [(name, value) for name, value in response.headers if name.lower() != "connection"]
    start_response(response.status_line, headers)
    return [response.body]


class _Takeover(NamedTuple):
    """A connection taken over from the server."""

    socket: socket.socket
    initial_data: bytes  # read by the server past the upgrade request
    result: Iterable[bytes]  # what the WSGI call returns to the server afterwards
    close_socket: bool  # whether we close the descriptor, or the server does


def _take_socket(environ: Mapping[str, Any]) -> _Takeover | None:
    """Find the client's socket and what the server already read from it."""
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        try:
            from gunicorn.workers.base_async import ALREADY_HANDLED  # noqa: PLC0415 (gunicorn is optional)
        except ImportError:  # pragma: no cover - gunicorn put its socket there
            return None
        if not str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn") or not _is_gevent_socket(sock):
            return None
        # gunicorn then reads end-of-stream from the shut-down socket, and closes it.
        return _Takeover(sock, _gunicorn_buffered(environ.get("wsgi.input")), ALREADY_HANDLED, False)
    reader = environ.get("wsgi.input")
    raw = getattr(reader, "raw", None)
    sock = getattr(raw, "_sock", None)
    if sock is None or not _is_gevent_socket(sock):
        return None
    # pywsgi writes nothing more on a socket that is closed when the call returns.
    return _Takeover(sock, _pywsgi_buffered(reader, sock), [], True)


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
