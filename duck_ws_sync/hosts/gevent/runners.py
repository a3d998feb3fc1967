"""The greenlets that run connections' loops while they have work: an idle connection holds none.

A greenlet that waits costs about 6 KiB (its saved C stack, its page of
Python frames, the object), more than the rest of an idle connection. So
a connection's loop is run by a greenlet only while it has work
(``GreenletEventLoop.run_parked``); parked, it is its protocol state, its
deadline and its socket's watcher, and the watcher's callback takes a
runner from here. A runner that is done goes back to the thread's pool,
which keeps a few (last in, first out: the one whose stack is warm goes
first); there are as many runners as connections with work at once (a hook
blocked in gevent-cooperative code keeps its own), not one per connection.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any

import greenlet

from .loop import LOOP_ATTRIBUTE

__all__ = ["Runners", "runners"]

logger = logging.getLogger("duck_ws_sync")

_ATTRIBUTE = "_duck_ws_sync_runners"
# Idle runners kept per thread; more are made when more connections have work at once.
SPARE = 16


class Runners:
    """The runners of one hub's thread.

    Args:
        hub: The thread's gevent hub: every runner's parent.
    """

    def __init__(self, hub: Any) -> None:
        self._hub = hub
        self._idle: list[greenlet.greenlet] = []

    def run(self, job: Callable[[], None], claim: tuple[Any, Any], context: contextvars.Context) -> None:
        """Run ``job`` in a runner, in ``context``, now; return when it first waits or is done.

        ``job`` runs a loop: ``claim`` is what the loop's greenlet keeps in
        ``LOOP_ATTRIBUTE`` (``GreenletEventLoop.claimed_by``), set before the
        switch so that the switch tracer makes it the running loop. From
        the hub, or from a greenlet that the hub resumes afterwards
        (``start``): the runner goes back to the hub when it waits.
        """
        idle = self._idle
        runner = idle.pop() if idle else greenlet.greenlet(self._serve, parent=self._hub)
        runner.gr_context = context
        setattr(runner, LOOP_ATTRIBUTE, claim)
        runner.switch(job)

    def _serve(self, job: Callable[[], None]) -> None:
        idle = self._idle
        hub = self._hub
        while True:
            try:
                job()
            except greenlet.GreenletExit:
                pass  # killed at exit: the session has run on_close
            except Exception:
                logger.exception("a WebSocket session failed")
            # SystemExit and KeyboardInterrupt (a signal handler that exits may run
            # in any greenlet) go on to the hub, which hands them to the main greenlet.
            if len(idle) >= SPARE:
                return
            current = greenlet.getcurrent()
            idle.append(current)
            try:
                job = hub.switch()
            except BaseException:
                idle.remove(current)
                raise


def runners(hub: Any) -> Runners:
    """The runners of ``hub``'s thread, made at first use."""
    found: Runners | None = getattr(hub, _ATTRIBUTE, None)
    if found is None:
        found = Runners(hub)
        setattr(hub, _ATTRIBUTE, found)
    return found
