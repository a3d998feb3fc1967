"""The thread host (``Host`` of ``hosts/base.py``): each session in an OS thread of its own.

Under gunicorn's gthread worker the descriptor is taken out of the server's
socket object (``takeover.py``) and the session runs in a thread started
for it (``start``): the WSGI call ends right after the 101, so the worker's
thread goes back to its pool and lets go of everything it kept for the
request (its parser, request and response objects, its frames). Open
WebSockets therefore hold none of the worker's ``--threads``, which stay
for plain HTTP, and an idle connection costs its thread (a touched stack of
about 12 KiB) and its session. Over TLS (the socket's state cannot leave its
object) and under werkzeug's server (which writes to its socket when the
call ends) the request's thread runs the session from the 101 to
``on_close`` instead (``serve``), and only then returns to the server,
which therefore holds one of its threads per open WebSocket (``budget.py``
keeps some of gthread's for plain HTTP).

Shutting down: a gunicorn gthread worker that stops (SIGTERM, the old
workers of a SIGHUP reload, ``--max-requests``) stops accepting and waits
for its requests in flight, up to the graceful timeout (a session inside
its call is one of them), then exits. A watcher thread sees the worker stop
and sends every open WebSocket a Close 1001 at once, so the clients answer
and the sessions end (``on_close`` included) right away; the exit waits for
those still open, at most the longest ``CLOSE_TIMEOUT`` and the time to
drain TCP. A process that exits otherwise (werkzeug's server on Ctrl-C)
does the same at exit.

The session threads are daemon threads: the process's exit does not wait
for them but for the sessions themselves (``_end_sessions``, bounded), as
above. Their stack size is left to the process: ``threading.stack_size``
applies to every thread made afterwards, and would save nothing: RSS counts
the stack pages a thread has touched (12 KiB for an idle WebSocket), not
the 8 MiB it reserved, and 1,000 idle WebSockets measured the same with
stacks of 8 MiB, 256 KiB and 64 KiB.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ...engine import lifecycle
from ...engine.registry import close_all, end, live
from ...engine.session import Session
from ..takeover import Takeover, gunicorn_worker
from .loop import ThreadEventLoop
from .transport import ThreadTransport

__all__ = ["HOST", "serve", "start"]

logger = logging.getLogger("duck_ws_sync")

# How often the watcher looks whether the gunicorn worker is stopping.
_WATCH_EVERY = 0.1

_lock = threading.Lock()
_hooks_installed = False


class ThreadHost:
    """Sessions in the threads of a thread-per-connection server: gunicorn's gthread worker, werkzeug."""

    name = "threads"

    def event_loop(self) -> ThreadEventLoop:
        return ThreadEventLoop()

    def serve(
        self, session: Session, sock: Any, initial_data: bytes, ended: Callable[[], None], takeover: Takeover
    ) -> None:
        serving = start if takeover.detached else serve
        serving(session, sock, initial_data, ended)


HOST = ThreadHost()


def start(session: Session, sock: Any, initial_data: bytes, ended: Callable[[], None]) -> None:
    """Serve ``session`` (its 101 written) in a thread of its own; the socket is ours, closed when the session ends.

    Returns at once. When no thread can be started (the process is at its
    limit), the session is served in the calling thread instead.
    """
    _install_hooks()
    thread = threading.Thread(
        target=serve, args=(session, sock, initial_data, ended, True), name="duck_ws_sync session", daemon=True
    )
    try:
        thread.start()
    except RuntimeError as exc:  # "can't start new thread"
        logger.warning("no thread for the WebSocket of %s (%s): serving it in the request's thread", session.name, exc)
        serve(session, sock, initial_data, ended, True)


def serve(session: Session, sock: Any, initial_data: bytes, ended: Callable[[], None], close: bool = False) -> None:
    """Serve ``session`` (its 101 written) in the calling thread until it has ended; then call ``ended``.

    ``close``: the socket is ours (taken out of the server's object), and is
    closed when the session ends; else the server closes it.
    """
    _install_hooks()
    session.runner = threading.get_ident()
    try:
        lifecycle.run(session, ThreadEventLoop(), ThreadTransport(sock, initial_data))
    except Exception:
        logger.exception("WebSocket session of %s failed", session.name)
    finally:
        if close:
            sock.close()
        ended()


def _install_hooks() -> None:
    global _hooks_installed  # noqa: PLW0603 (once per process)
    with _lock:
        if _hooks_installed:
            return
        _hooks_installed = True
    atexit.register(_end_sessions)
    worker = gunicorn_worker()
    if worker is not None:
        threading.Thread(target=_watch_worker, args=(worker,), name="duck_ws_sync-shutdown", daemon=True).start()


def _watch_worker(worker: Any) -> None:
    """Close every WebSocket with 1001 as soon as the gunicorn worker stops (it stops accepting, then waits).

    A session whose 101 went out just before the worker stopped may not be
    open yet when it stops, and a request in flight may still upgrade: the
    watcher goes on closing what opens until the process ends.
    """
    while worker.alive:
        time.sleep(_WATCH_EVERY)
    while True:
        closed = close_all(1001, "Server shutting down")
        if closed:
            logger.info("worker stopping: closed %d WebSockets with 1001", closed)
        time.sleep(_WATCH_EVERY)


def _threads_sessions() -> list[Session]:
    return [session for session in live() if isinstance(session.runner, int)]


def _end_sessions() -> None:
    """Close every open WebSocket with 1001 and wait for the sessions to end (at exit)."""
    left = end(_threads_sessions, time.sleep)
    if left:
        logger.warning("%d WebSocket sessions did not end in time at exit", len(left))
