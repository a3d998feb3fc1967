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

Connections that have work again are queued (``resume``), and one runner
runs them one after another (``_run_ready``): under load the hub finds
many sockets readable at once, and they cost two greenlet switches (into
the runner and back to the hub) for all of them rather than for each.
Should a hook block in gevent-cooperative code, the hub starts another
runner for the rest of the queue (``_drain``, scheduled before each job
that leaves others waiting), so one view's blocking never holds up the
connections queued behind it.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from asyncio import events
from collections import deque
from typing import Any, Protocol

import greenlet

from .loop import LOOP_ATTRIBUTE

__all__ = ["Job", "Runners", "runners"]

logger = logging.getLogger("duck_ws_sync")

_ATTRIBUTE = "_duck_ws_sync_runners"
# Idle runners kept per thread; more are made when more connections have work at once.
SPARE = 16


class Job(Protocol):
    """A connection's loop with work, for a runner (``sessions.Connection``).

    Attributes:
        claim: What the runner holds in ``LOOP_ATTRIBUTE`` while it runs the
            loop (``GreenletEventLoop.claimed_by``): the switch tracer makes
            that loop the running one.
        context: The contextvars the loop runs in.
    """

    claim: tuple[Any, Any]
    context: contextvars.Context

    def run(self) -> None:
        """Run the loop until it waits (parked) or is done."""


class Runners:
    """The runners of one hub's thread.

    Args:
        hub: The thread's gevent hub: every runner's parent.
    """

    def __init__(self, hub: Any) -> None:
        self._hub = hub
        self._idle: list[greenlet.greenlet] = []
        self._ready: deque[Job] = deque()  # connections with work, for the next runner free
        self._drain_called = False  # ``_drain`` is scheduled on the hub

    def run(self, job: Job) -> None:
        """Run ``job`` in a runner now; return when it first waits or is done.

        From the hub, or from a greenlet that the hub resumes afterwards
        (``start``): the runner goes back to the hub when it waits.
        """
        self._ready.appendleft(job)
        self._switch_to_runner()

    def resume(self, job: Job) -> None:
        """Queue ``job`` for a runner, which runs it soon; from the hub."""
        self._ready.append(job)
        if not self._drain_called:
            self._drain_called = True
            self._hub.loop.run_callback(self._drain)

    def _drain(self) -> None:
        """In the hub: a runner for the queue, if it is not empty.

        Every runner is switched out while the hub runs: any that is in the
        middle of a job is blocked in it, so a free one takes the queue.
        """
        self._drain_called = False
        if self._ready:
            self._switch_to_runner()

    def _switch_to_runner(self) -> None:
        """Switch to a free runner, which runs the queue from its first job on.

        The first job's claim is set before the switch, so that the switch
        tracer makes its loop the running one (``_run_ready`` counts on it).
        """
        idle = self._idle
        runner = idle.pop() if idle else greenlet.greenlet(self._serve, parent=self._hub)
        job = self._ready[0]
        runner.gr_context = job.context
        setattr(runner, LOOP_ATTRIBUTE, job.claim)
        runner.switch()

    def _serve(self) -> None:
        idle = self._idle
        hub = self._hub
        current = greenlet.getcurrent()
        while True:
            self._run_ready(current)
            if len(idle) >= SPARE:
                return
            idle.append(current)
            try:
                hub.switch()
            except BaseException:
                idle.remove(current)
                raise

    def _run_ready(self, current: greenlet.greenlet) -> None:
        """Run the queued jobs, one after another, in the calling runner (just switched into: ``_switch_to_runner``)."""
        ready = self._ready
        claimed = True  # the switch into this runner made the first job's loop the running one
        while ready:
            job = ready.popleft()
            if ready and not self._drain_called:
                # Should this job block, the hub gives the rest to another runner.
                self._drain_called = True
                self._hub.loop.run_callback(self._drain)
            if claimed:
                claimed = False
            else:
                # What the switch tracer does on a switch into a greenlet (``loop.py``), where there is none.
                current.gr_context = job.context
                claim = job.claim
                setattr(current, LOOP_ATTRIBUTE, claim)
                events._set_running_loop(claim[0])
                sys.set_asyncgen_hooks(*claim[1])
            try:
                job.run()
            except greenlet.GreenletExit:
                pass  # killed at exit: the session has run on_close
            except Exception:
                logger.exception("a WebSocket session failed")
            # SystemExit and KeyboardInterrupt (a signal handler that exits may run
            # in any greenlet) go on to the hub, which hands them to the main greenlet.


def runners(hub: Any) -> Runners:
    """The runners of ``hub``'s thread, made at first use."""
    found: Runners | None = getattr(hub, _ATTRIBUTE, None)
    if found is None:
        found = Runners(hub)
        setattr(hub, _ATTRIBUTE, found)
    return found
