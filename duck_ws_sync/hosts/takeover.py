"""Taking a connection over from the WSGI server that received its upgrade request.

Each server hands over its socket its own way, and each must be told
afterwards that the connection is done and that it must write nothing more:

- gunicorn (every worker): ``environ["gunicorn.socket"]``; a
  ``StopIteration`` raised from the call tells it the connection is done
  (it logs that at debug level and closes its socket object). Its gevent
  worker gives a cooperative socket, served on the gevent host; its gthread
  worker a plain one, served on the thread host in a thread of our own
  (over TLS: in the request's thread). Its sync worker, one request at a
  time, cannot hold a WebSocket at all.
- gevent.pywsgi: for an Upgrade request, ``environ["wsgi.input"]`` is the
  handler's buffered reader of the socket; bytes it read past the request
  (a first frame sent with the upgrade) are carried over, and closing the
  reader tells pywsgi that no request follows.
- werkzeug's development server (``flask run``, ``app.run()``):
  ``environ["werkzeug.socket"]``, served in the request's thread. When the
  call ends, werkzeug writes the status it was given; the socket is shut
  down by then, so the write fails and werkzeug drops the connection
  quietly.

What is found names the host that serves the connection (``host``:
``"gevent"`` or ``"threads"``, ``choice.py``). Under gunicorn and pywsgi the
descriptor is taken out of the server's socket object, so the WSGI call can
end right after the 101 and the server lets go of the request: on gevent
the session goes on in greenlets (``gevent/sessions.py``), on threads in a
thread of its own (``threads/sessions.py``). A TLS socket cannot leave its
object, and werkzeug's server writes to its socket after the call: those
sessions run inside the call, in the request's thread, and the server's
socket object stays the server's.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any, NamedTuple

__all__ = ["Found", "Takeover", "Unsupported", "end_call", "find_socket", "gunicorn_worker", "take"]

SUPPORTED_SERVERS = (
    "gunicorn with the gevent worker (-k gevent) or the gthread worker (-k gthread), "
    "gevent.pywsgi.WSGIServer, or werkzeug's threaded development server (flask run)"
)

# gunicorn's worker in this process, once found (a worker process has one).
_gunicorn_worker: Any = None

# The hosts (``choice.py``).
GEVENT = "gevent"
THREADS = "threads"


class Found(NamedTuple):
    """The connection's socket, found and not taken yet, and how it is to be served."""

    socket: Any
    server: str  # "gunicorn", "pywsgi" or "werkzeug"
    host: str  # "gevent", or "threads": served in the request's own OS thread
    # The server's threads for requests, when a WebSocket holds one of them
    # for its life (gunicorn gthread over TLS): they set the default budget.
    threads: int | None = None


class Takeover(NamedTuple):
    """A connection taken over from the server."""

    socket: Any
    initial_data: bytes  # read by the server past the upgrade request
    server: str
    host: str
    # The socket is ours alone, the server's socket object no longer owning
    # the descriptor (gunicorn, pywsgi); not so for TLS, whose state cannot
    # leave its object, nor under werkzeug.
    detached: bool


class Unsupported(NamedTuple):
    """This server cannot hold a WebSocket: why, in a sentence for the client and the log."""

    reason: str


def find_socket(environ: Mapping[str, Any]) -> Found | Unsupported:
    """Find the client's socket and the host that serves it, changing nothing yet."""
    sock = environ.get("gunicorn.socket")
    if sock is not None and str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn"):
        if _is_gevent_socket(sock):
            return Found(sock, "gunicorn", GEVENT)
        worker = gunicorn_worker()
        kind = type(worker).__module__ if worker is not None else ""
        if kind == "gunicorn.workers.gthread":
            # A plain socket leaves the request's thread for one of ours (``take``); a TLS one cannot.
            return Found(sock, "gunicorn", THREADS, threads=worker.cfg.threads if _is_tls(sock) else None)
        if kind == "gunicorn.workers.sync":
            return Unsupported(
                "gunicorn's sync worker handles one request at a time and cannot hold a WebSocket; "
                "run gunicorn with -k gevent or -k gthread"
            )
        return Unsupported(f"this gunicorn worker cannot hold a WebSocket; use {SUPPORTED_SERVERS}")
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        if not (environ.get("wsgi.multithread") or environ.get("wsgi.multiprocess")):
            return Unsupported(
                "This development server handles one request at a time and cannot hold a WebSocket; "
                "run it threaded (app.run(threaded=True), the default of flask run)"
            )
        return Found(sock, "werkzeug", GEVENT if _is_gevent_socket(sock) else THREADS)
    sock = getattr(getattr(environ.get("wsgi.input"), "raw", None), "_sock", None)
    if sock is not None and _is_gevent_socket(sock):
        return Found(sock, "pywsgi", GEVENT)
    server = environ.get("SERVER_SOFTWARE") or "This server"
    return Unsupported(f"{server} cannot hand over its connections for WebSockets; use {SUPPORTED_SERVERS}")


def take(found: Found, environ: Mapping[str, Any]) -> Takeover:
    """Take the connection: what the server read past the request, and on gevent the descriptor itself."""
    sock, server = found.socket, found.server
    if server == "gunicorn":
        initial_data = _gunicorn_buffered(environ.get("wsgi.input"))
    else:
        initial_data = _buffered(environ.get("wsgi.input"), sock, close=server == "pywsgi")
    if server == "werkzeug":
        return Takeover(sock, initial_data, server, found.host, detached=False)
    own, detached = _detach(sock)
    return Takeover(own, initial_data, server, found.host, detached=detached)


def gunicorn_worker() -> Any:
    """gunicorn's worker object in this process, found on the calling request's stack; None outside gunicorn."""
    global _gunicorn_worker  # noqa: PLW0603 (one worker per process, found once)
    if _gunicorn_worker is not None:
        return _gunicorn_worker
    base = sys.modules.get("gunicorn.workers.base")
    if base is None:
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, base.Worker):
            _gunicorn_worker = candidate
            return candidate
        frame = frame.f_back
    return None


def _detach(sock: Any) -> tuple[Any, bool]:
    """A socket of our own for ``sock``'s descriptor, ``sock`` left closed without closing it; and whether it is.

    The descriptor keeps its number, so the event loop's registration of it
    stays right (a ``dup`` would leave epoll reporting the old number). A TLS
    socket stays as it is: its state cannot move to another object.
    """
    if _is_tls(sock):
        return sock, False
    timeout = sock.gettimeout()
    own = type(sock)(sock.family, sock.type, sock.proto, fileno=sock.detach())
    own.settimeout(timeout)
    return own, True


def end_call(taken: Takeover, environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """End the WSGI call of a connection taken over: the server must write nothing more on it."""
    # The environ stays with the view's request: it lets go of what only the
    # server's call could use (its body reader and parser, its socket object,
    # gunicorn's early-hints callback and, through it, its request objects).
    environ["wsgi.input"] = io.BytesIO()
    environ.pop("gunicorn.socket", None)
    environ.pop("wsgi.early_hints", None)
    if taken.server == "gunicorn":
        # gunicorn's worker takes it for "connection done": it logs at debug
        # level and closes its socket object (on gevent, it owns nothing
        # any more).
        raise StopIteration("WebSocket taken over")
    if taken.server == "werkzeug":
        # werkzeug writes the status it is given when the call returns; the
        # socket is shut down by now (the session's end), so that write
        # fails and werkzeug drops the connection without a word.
        start_response("101 Switching Protocols", [])
    # pywsgi: its reader is closed, so no request follows, and its socket
    # object owns nothing any more: nothing more is written.
    return []


def _is_tls(sock: Any) -> bool:
    """The standard library's and gevent's TLS sockets (both have ``pending``: decrypted bytes held)."""
    return callable(getattr(sock, "pending", None))


def _is_gevent_socket(sock: Any) -> bool:
    """Only cooperative sockets can be served from a greenlet without blocking the worker."""
    return type(sock).__module__.startswith("gevent")


def _gunicorn_buffered(body: Any) -> bytes:
    """Bytes gunicorn's parser read past the request headers (in its unreader's buffer)."""
    unreader = getattr(getattr(body, "reader", None), "unreader", None)
    buffer = getattr(unreader, "buf", None)
    return buffer.getvalue() if buffer is not None else b""


def _buffered(reader: Any, sock: Any, close: bool) -> bytes:
    """Bytes a server's buffered reader holds past the request, read without blocking.

    pywsgi's reader is closed then (``close``; the socket stays open): it
    frees its 8 KiB buffer, which would otherwise stay with the connection
    for its life, and tells pywsgi's handler that no further request follows.
    """
    if reader is None or not callable(getattr(reader, "read1", None)):
        return b""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        return reader.read1(65536) or b""
    except (OSError, ValueError):
        return b""
    finally:
        sock.settimeout(timeout)
        if close:
            reader.close()
