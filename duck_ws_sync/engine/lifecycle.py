"""A session's life on its host: from the first read to ``on_close``, counted, logged and cleaned up.

Each host runs every connection through ``run``, in whatever carries the
connection there (a greenlet, a thread), on the connection's event loop.
"""

from __future__ import annotations

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

__all__ = ["run"]


def run(session: Session, loop: TaskCounting, transport: Transport) -> None:
    """Serve ``session`` on ``loop`` through ``transport``; return when it has ended, its ``on_close`` run.

    A session joins first what ``authorize`` asked for: its user's topic
    (``user_id``) and the groups it joined. Whatever ends it (the client, a failure, even the
    host killing what runs it), the session leaves its groups, TCP is ended without losing
    our last frame, ``on_close`` runs once, the loop's tasks are cancelled,
    and the session is counted and logged (``registry``, ``accesslog``).
    """
    opened(session)
    try:
        session.start(loop, transport)
        join_recorded(session)  # the user and the groups that ``authorize`` set
        loop.run_until_complete(session.inbox.run(session.hooks.serve(session)))
    finally:
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
