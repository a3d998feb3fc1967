"""The gevent host (``Host`` of ``hosts/base.py``): each session in a greenlet of its own, beyond the WSGI call.

After the 101, the server has nothing left to do for the connection. The
middleware takes the descriptor out of the server's socket object
(``socket.detach``), starts the session here (``Connection``, with a copy
of the request's contextvars), and ends the WSGI call as soon as the
session first waits. That lets go of everything the server kept for the
request: its greenlet and saved stack, its parser, request and response
objects, and its slot among gunicorn's ``--worker-connections``. What stays
is what the connection needs: the view, its session, transport and loop.
No greenlet stays: the loop runs in one of the thread's runners
(``runners.py``) while it has work, and is parked while it waits for its
socket.

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
import functools
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
from .runners import runners
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
    """Serve ``session``'s connection beyond the WSGI call, in greenlets while it has work; return once it first waits.

    The session starts at once, so ``on_open`` runs before anything else
    happens in the process, as it would in the request's greenlet; the
    calling greenlet is resumed from the hub when the session first waits.
    From then on a greenlet runs the connection's loop only while it has
    work (``runners.py``): an idle connection holds none.

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
    connection = Connection(session, sock, initial_data, ended)
    session.runner = connection
    connection.hub.loop.run_callback(greenlet.getcurrent().switch)
    runners(connection.hub).run(connection)


def serve(
    session: Session, sock: socket.socket, initial_data: bytes, ended: Callable[[], None], close_on_sigterm: bool
) -> None:
    """Serve ``session``'s connection in the calling greenlet, until it ends (a TLS socket cannot be detached)."""
    _install_hooks(close_on_sigterm)
    _serve(session, sock, initial_data, ended)


class Connection:
    """One connection served beyond the WSGI call: its loop runs in a greenlet of ``runners`` while it has work.

    The first run starts the session; each run of the loop ends with the
    session's task done (then ``finish``) or with the loop parked
    (``GreenletEventLoop.run_parked``), until the hub queues it again for a
    runner (``Runners.resume``). It is the runners' ``Job``.
    """

    __slots__ = (
        "_ended",
        "_killed",
        "_resume",
        "_runner",
        "_task",
        "claim",
        "context",
        "hub",
        "loop",
        "session",
        "sock",
        "transport",
    )

    def __init__(self, session: Session, sock: socket.socket, initial_data: bytes, ended: Callable[[], None]) -> None:
        self.session = session
        self.sock = sock
        self._ended = ended
        self.hub = gevent.get_hub()
        self.loop = GreenletEventLoop()
        self.transport = GeventTransport(sock, initial_data)
        self._task: Any = None
        self._runner: greenlet.greenlet | None = None  # the greenlet that runs the loop now, if any
        self._killed = False
        self.context = contextvars.copy_context()  # the request's, for the session and its hooks
        self.claim = self.loop.claimed_by()
        # Queues the parked loop for a runner, from the hub.
        self._resume = functools.partial(runners(self.hub).resume, self)

    def run(self) -> None:
        """Run the loop in the calling runner until it parks, or until the session's task is done (then end it).

        The first run starts the session.
        """
        if self._task is None:
            try:
                self._task = lifecycle.begin(self.session, self.loop, self.transport)
            except BaseException:
                self._end()
                raise
        self._runner = greenlet.getcurrent()
        try:
            if self._killed:
                self.loop.release()
            elif not self.loop.run_parked(self._task, self._resume):
                self._runner = None
                return  # parked
        except greenlet.GreenletExit:
            pass  # killed (end_sessions): the session ends, its on_close runs
        except BaseException:
            self._runner = None
            self._finish()
            raise
        self._runner = None
        self._finish()
        task = self._task
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.error("WebSocket session of %s failed", self.session.name, exc_info=task.exception())

    def _finish(self) -> None:
        try:
            lifecycle.finish(self.session, self.loop, self.transport)
        finally:
            self._end()

    def _end(self) -> None:
        self.sock.close()
        self._ended()

    def kill(self) -> None:
        """End the session now, as a killed greenlet would: its ``on_close`` runs."""
        if self._runner is not None:
            gevent.kill(self._runner)
        else:
            self._killed = True
            self.loop.call_soon_threadsafe(_nothing)  # resumes the parked loop, which sees it was killed


def _nothing() -> None:
    pass


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
        return [session for session in live() if _served_by(session, hub)]

    left = end(sessions, gevent.sleep)
    if not left:
        return
    logger.warning("%d WebSocket sessions did not end in time: killing them", len(left))
    for session in left:
        runner = session.runner
        if isinstance(runner, Connection):
            runner.kill()
        else:
            gevent.kill(runner)
    deadline = time.monotonic() + _KILL_GRACE
    while sessions() and time.monotonic() < deadline:
        gevent.sleep(0.05)


def _served_by(session: Session, hub: Any) -> bool:
    runner = session.runner
    if isinstance(runner, Connection):
        return runner.hub is hub
    return isinstance(runner, greenlet.greenlet) and runner.parent is hub


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
