"""The thread host (``Host`` of ``hosts/base.py``): each session inside its WSGI call, in the request's thread.

The request's thread runs the session from the 101 to ``on_close`` and only
then returns to the server, which therefore holds one thread per open
WebSocket (``budget.py`` keeps some for plain HTTP).

Shutting down: a gunicorn gthread worker that stops (SIGTERM, the old
workers of a SIGHUP reload, ``--max-requests``) stops accepting and waits
for its requests to end, up to the graceful timeout. A watcher thread sees
the worker stop and sends every open WebSocket a Close 1001 at once, so
the clients answer and the sessions end (``on_close`` included) well
before that. A process that exits otherwise (werkzeug's server on Ctrl-C)
does the same at exit, waiting for at most the longest ``CLOSE_TIMEOUT``
and the time to drain TCP.

The threads' stack size is left to the process. The server made the
request's thread before any of our code ran, so ``threading.stack_size``
could only shrink the threads made after it, every thread of the process
alike, and would save nothing: RSS counts the stack pages a thread has
touched (12 KiB for an idle WebSocket under gunicorn's gthread worker), not
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

__all__ = ["HOST", "serve"]

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
        serve(session, sock, initial_data, ended)


HOST = ThreadHost()


def serve(session: Session, sock: Any, initial_data: bytes, ended: Callable[[], None]) -> None:
    """Serve ``session`` (its 101 written) in the calling thread until it has ended; then call ``ended``."""
    _install_hooks()
    session.runner = threading.get_ident()
    try:
        lifecycle.run(session, ThreadEventLoop(), ThreadTransport(sock, initial_data))
    except Exception:
        logger.exception("WebSocket session of %s failed", session.name)
    finally:
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
