"""A session's life on its host: from the first read to ``on_close``, counted, logged and cleaned up.

Each host runs every connection through ``run``, in whatever carries the
connection there (a greenlet, a thread), on the connection's event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .accesslog import log_session
from .groups import leave_all
from .groups import start as join_recorded
from .registry import ended, opened

if TYPE_CHECKING:
    from ..hosts.base import Transport
    from .session import Session
    from .tasks import TaskCounting

__all__ = ["begin", "finish", "run"]


def run(session: Session, loop: TaskCounting, transport: Transport) -> None:
    """Serve ``session`` on ``loop`` through ``transport``; return when it has ended, its ``on_close`` run.

    A session joins first what ``authorize`` asked for: its user's topic
    (``user_id``) and the groups it joined. Whatever ends it (the client, a failure, even the
    host killing what runs it), the session leaves its groups, TCP is ended without losing
    our last frame, ``on_close`` runs once, the loop's tasks are cancelled,
    and the session is counted and logged (``registry``, ``accesslog``).
    """
    task = begin(session, loop, transport)
    try:
        loop.run_until_complete(task)
    finally:
        finish(session, loop, transport)


def begin(session: Session, loop: TaskCounting, transport: Transport) -> asyncio.Task[None]:
    """Start ``session``: counted, reading, its clock armed, the groups of ``authorize`` joined; its task made.

    ``run``'s first half, for a host that runs the loop its own way: the
    task serves the connection once the loop runs; when it is done, or
    whatever stops it, call ``finish``. If starting fails, ``finish`` has run.
    """
    opened(session)
    try:
        session.start(loop, transport)
        join_recorded(session)  # the user and the groups that ``authorize`` set
        return session.inbox.run(session.hooks.serve(session))
    except BaseException:
        finish(session, loop, transport)
        raise


def finish(session: Session, loop: TaskCounting, transport: Transport) -> None:
    """End ``session``: its groups left, TCP ended, ``on_close`` run, its tasks cancelled, counted and logged.

    ``run``'s second half; the loop must not be running.
    """
    leave_all(session)
    session.stop()
    transport.linger()
    try:
        loop.run_until_complete(session.hooks.closed(session))
        loop.cancel_remaining_tasks(session.endpoint.CLOSE_TIMEOUT)
    finally:
        loop.close()
        ended(session)
        log_session(session, time.monotonic() - session.opened_at)
