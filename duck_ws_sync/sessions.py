"""Where a connection's session runs on gevent: a greenlet of its own, beyond the WSGI call.

After the 101, the server has nothing left to do for the connection. The
middleware takes the descriptor out of the server's socket object
(``socket.detach``), starts the session here, in a plain greenlet (with a
copy of the request's contextvars), and ends the WSGI call as soon as the
session first waits. That lets go of everything the server kept for the
request: its greenlet and saved stack, its parser, request and response
objects, and its slot among gunicorn's ``--worker-connections``. What stays
is what the connection needs: the view, its transport and its loop.

The server no longer waits for these connections when it stops, so the
process does it as it exits (gunicorn's worker after SIGTERM or
``--max-requests``, a pywsgi script after ``serve_forever``): every open
WebSocket gets a Close 1001, and the exit waits until the sessions have
ended and their ``on_close`` has run, for at most the longest
``CLOSE_TIMEOUT`` and the time to drain TCP; sessions still running then
are killed, which runs their ``on_close`` too.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import greenlet

from .protocol import State
from .views import close_all

if TYPE_CHECKING:
    from .views import WebSocketView

__all__ = ["end_sessions", "running", "serve", "start"]

logger = logging.getLogger("duck_ws_sync")

# Beyond CLOSE_TIMEOUT, what ending a session may take at exit: draining TCP
# after our Close (at most 2 s, Transport.linger) and on_close.
_EXIT_SLACK = 3.0
# How long killed sessions get to run their on_close before the process goes.
_KILL_GRACE = 0.5

# The greenlet of every session of this process that has not ended, with its view.
_sessions: dict[greenlet.greenlet, WebSocketView] = {}
_exit_hook_installed = False
_sigterm_hook_installed = False


def start(
    view: WebSocketView, sock: socket.socket, initial_data: bytes, ended: Callable[[], None], close_on_sigterm: bool
) -> None:
    """Serve ``view``'s connection in a greenlet of its own; return once it first waits.

    The session starts at once, so ``on_open`` runs before anything else
    happens in the process, as it would in the request's greenlet; the
    calling greenlet is resumed from the hub when the session first waits.

    Args:
        view: The view, its 101 written.
        sock: The connection's socket, now ours alone: it is closed when the
            session ends.
        initial_data: What the server read past the upgrade request.
        ended: Called when the session has ended.
        close_on_sigterm: Send every WebSocket a Close 1001 as soon as the
            process gets SIGTERM (gunicorn's graceful shutdown), not only at
            its exit.
    """
    _install_hooks(close_on_sigterm)
    hub = gevent.get_hub()
    runner = greenlet.greenlet(_run, parent=hub)
    runner.gr_context = contextvars.copy_context()
    hub.loop.run_callback(greenlet.getcurrent().switch)
    runner.switch(view, sock, initial_data, ended)


def serve(
    view: WebSocketView, sock: socket.socket, initial_data: bytes, ended: Callable[[], None], close_on_sigterm: bool
) -> None:
    """Serve ``view``'s connection in the calling greenlet, until it ends (a TLS socket cannot be detached)."""
    _install_hooks(close_on_sigterm)
    _serve(view, sock, initial_data, ended)


def running() -> int:
    """How many sessions of this process have not ended (their ``on_close`` included)."""
    return len(_sessions)


def _run(view: WebSocketView, sock: socket.socket, initial_data: bytes, ended: Callable[[], None]) -> None:
    try:
        _serve(view, sock, initial_data, ended)
    except greenlet.GreenletExit:
        pass  # killed at exit: serve has run on_close
    except Exception:
        logger.exception("WebSocket session of %s failed", type(view).__name__)
    # SystemExit and KeyboardInterrupt (a signal handler that exits may run
    # in any greenlet) go on to the hub, which hands them to the main greenlet.


def _serve(view: WebSocketView, sock: socket.socket, initial_data: bytes, ended: Callable[[], None]) -> None:
    current = greenlet.getcurrent()
    _sessions[current] = view
    try:
        view.serve(sock, initial_data)
    finally:
        sock.close()
        _sessions.pop(current, None)
        ended()


def _install_hooks(close_on_sigterm: bool) -> None:
    global _exit_hook_installed  # noqa: PLW0603 (once per process)
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(end_sessions)
    if close_on_sigterm:
        _close_sessions_on_sigterm()


def end_sessions(hub: Any = None) -> None:
    """Close the sessions of ``hub``'s thread (this thread's by default) with 1001 and wait until they have ended.

    The wait lasts at most the longest ``CLOSE_TIMEOUT`` and the time to
    drain TCP; sessions still running then are killed, which runs their
    ``on_close`` too. Used at exit, and by ``duck_ws_sync.testing`` as a
    server it runs stops.
    """
    if not _sessions:
        return
    hub = gevent.get_hub() if hub is None else hub

    def views() -> dict[greenlet.greenlet, WebSocketView]:
        return {runner: view for runner, view in list(_sessions.items()) if runner.parent is hub}

    left = views()
    if not left:
        return
    deadline = time.monotonic() + max(view.CLOSE_TIMEOUT for view in left.values()) + _EXIT_SLACK
    while left and time.monotonic() < deadline:
        for view in left.values():  # those that opened meanwhile too
            if view.state is State.OPEN:
                view.send_close(1001, "Server shutting down")
        gevent.sleep(0.05)
        left = views()
    if not left:
        return
    logger.warning("%d WebSocket sessions did not end in time: killing them", len(left))
    for runner in left:
        gevent.kill(runner)
    deadline = time.monotonic() + _KILL_GRACE
    while views() and time.monotonic() < deadline:
        gevent.sleep(0.05)


def _close_sessions_on_sigterm() -> None:
    """On gunicorn's graceful shutdown (SIGTERM), close every WebSocket with 1001 at once.

    Clients answer within a round trip, so the sessions have usually ended
    by the time the worker exits.
    """
    global _sigterm_hook_installed  # noqa: PLW0603 (once per worker process)
    if _sigterm_hook_installed:
        return
    _sigterm_hook_installed = True
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        gevent.spawn(close_all, 1001, "Server shutting down")
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
