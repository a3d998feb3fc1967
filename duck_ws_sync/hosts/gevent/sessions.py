"""The gevent host (``Host`` of ``hosts/base.py``): each session in a greenlet of its own, beyond the WSGI call.

After the 101, the server has nothing left to do for the connection. The
middleware takes the descriptor out of the server's socket object
(``socket.detach``), starts the session here, in a plain greenlet (with a
copy of the request's contextvars), and ends the WSGI call as soon as the
session first waits. That lets go of everything the server kept for the
request: its greenlet and saved stack, its parser, request and response
objects, and its slot among gunicorn's ``--worker-connections``. What stays
is what the connection needs: the view, its session, transport and loop.

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
from typing import Any

import gevent
import greenlet

from ...engine import lifecycle
from ...engine.registry import close_all, end, live
from ...engine.session import Session
from ..takeover import Takeover
from .loop import GreenletEventLoop
from .transport import GeventTransport

__all__ = ["HOST", "end_sessions", "serve", "serve_here", "start"]

logger = logging.getLogger("duck_ws_sync")

# How long killed sessions get to run their on_close before the process goes.
_KILL_GRACE = 0.5

_exit_hook_installed = False
_sigterm_hook_installed = False


class GeventHost:
    """Sessions in greenlets: gunicorn's gevent worker, gevent.pywsgi, werkzeug under gevent."""

    name = "gevent"

    def event_loop(self) -> GreenletEventLoop:
        return GreenletEventLoop()

    def serve(
        self, session: Session, sock: socket.socket, initial_data: bytes, ended: Callable[[], None], takeover: Takeover
    ) -> None:
        serving = start if takeover.detached else serve
        serving(session, sock, initial_data, ended, close_on_sigterm=takeover.server == "gunicorn")


HOST = GeventHost()


def start(
    session: Session, sock: socket.socket, initial_data: bytes, ended: Callable[[], None], close_on_sigterm: bool
) -> None:
    """Serve ``session``'s connection in a greenlet of its own; return once it first waits.

    The session starts at once, so ``on_open`` runs before anything else
    happens in the process, as it would in the request's greenlet; the
    calling greenlet is resumed from the hub when the session first waits.

    Args:
        session: The connection's session, its 101 written.
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
    runner.switch(session, sock, initial_data, ended)


def serve(
    session: Session, sock: socket.socket, initial_data: bytes, ended: Callable[[], None], close_on_sigterm: bool
) -> None:
    """Serve ``session``'s connection in the calling greenlet, until it ends (a TLS socket cannot be detached)."""
    _install_hooks(close_on_sigterm)
    _serve(session, sock, initial_data, ended)


def _run(session: Session, sock: socket.socket, initial_data: bytes, ended: Callable[[], None]) -> None:
    try:
        _serve(session, sock, initial_data, ended)
    except greenlet.GreenletExit:
        pass  # killed at exit: the session has run on_close
    except Exception:
        logger.exception("WebSocket session of %s failed", session.name)
    # SystemExit and KeyboardInterrupt (a signal handler that exits may run
    # in any greenlet) go on to the hub, which hands them to the main greenlet.


def serve_here(session: Session, sock: socket.socket, initial_data: bytes = b"") -> None:
    """Serve ``session`` in the calling greenlet until it has ended; the socket stays the caller's to close."""
    session.runner = greenlet.getcurrent()
    lifecycle.run(session, GreenletEventLoop(), GeventTransport(sock, initial_data))


def _serve(session: Session, sock: socket.socket, initial_data: bytes, ended: Callable[[], None]) -> None:
    try:
        serve_here(session, sock, initial_data)
    finally:
        sock.close()
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
    if not live():
        return
    hub = gevent.get_hub() if hub is None else hub

    def sessions() -> list[Session]:
        return [
            session
            for session in live()
            if isinstance(session.runner, greenlet.greenlet) and session.runner.parent is hub
        ]

    left = end(sessions, gevent.sleep)
    if not left:
        return
    logger.warning("%d WebSocket sessions did not end in time: killing them", len(left))
    for session in left:
        gevent.kill(session.runner)
    deadline = time.monotonic() + _KILL_GRACE
    while sessions() and time.monotonic() < deadline:
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
