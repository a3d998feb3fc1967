"""The one registry of this process's live sessions, and what they counted.

Each connection counts its own messages and bytes in its protocol core
(nothing is shared on the message path, whatever the host). The registry
keeps the sessions that run and the totals of those that ended: a snapshot
(``stats``) adds up both, so it is exact at any moment, for a cost paid by
the one who asks (a health check, a scrape), not by the messages. Shutting
down (``close_all``, each host's exit), ``stats()``, the metrics and the
access log read it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..protocol import Close, ServerConnection, Side, State

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "COUNTS",
    "EXIT_SLACK",
    "close_all",
    "close_code",
    "end",
    "ended",
    "first_close",
    "live",
    "opened",
    "stats",
    "when_opened",
]

#: Beyond CLOSE_TIMEOUT, what ending a session may take at exit: draining
#: TCP after our Close (at most 2 s, ``Transport.linger``) and ``on_close``.
EXIT_SLACK = 3.0

#: The per-connection counts a snapshot sums (the protocol core's attributes).
COUNTS = ("messages_received", "messages_sent", "bytes_received", "bytes_sent")

_lock = threading.Lock()
# The sessions that run (from the 101 to the end of on_close).
_live: set[Session] = set()
_totals = dict.fromkeys(("opened", "closed", *COUNTS), 0)
_close_codes: dict[int, int] = {}
# Called as each session starts (metrics.py starts its publisher from there).
_when_opened: list[Callable[[], None]] = []


def opened(session: Session) -> None:
    """A session starts: it is live and counted."""
    with _lock:
        _live.add(session)
        _totals["opened"] += 1
    for callback in _when_opened:
        callback()


def when_opened(callback: Callable[[], None]) -> None:
    """Call ``callback`` (quick, never failing) whenever a session starts in this process."""
    _when_opened.append(callback)


def ended(session: Session) -> None:
    """A session has ended (its ``on_close`` has run): its counts join the totals."""
    connection = session.connection
    with _lock:
        if session not in _live:
            return
        _live.discard(session)
        _totals["closed"] += 1
        _add_counts(_totals, connection)
        code = close_code(connection)
        _close_codes[code] = _close_codes.get(code, 0) + 1


def _add_counts(totals: dict[str, int], connection: ServerConnection) -> None:
    for name in COUNTS:
        totals[name] += getattr(connection, name)


def first_close(connection: ServerConnection) -> Close | None:
    """The first Close of a connection, whoever sent it: why it ended (None: TCP ended without one)."""
    return connection.close_sent if connection.close_initiator is Side.LOCAL else connection.close_received


def close_code(connection: ServerConnection) -> int:
    """How a connection ended: the code of the first Close, whoever sent it; 1006 when none came.

    The one meaning of "close code" everywhere: a view's ``close_code``,
    the access log's ``close=`` and ``stats()``'s ``close_codes``.
    """
    first = first_close(connection)
    return 1006 if first is None else first.code


def live() -> list[Session]:
    """The sessions that run now, in no order."""
    with _lock:
        return list(_live)


def close_all(code: int = 1001, reason: str = "Server shutting down") -> int:
    """Start the closing handshake on every open connection of this process; return how many."""
    sessions = [session for session in live() if session.state is State.OPEN]
    for session in sessions:
        session.close(code, reason)
    return len(sessions)


def end(
    which: Callable[[], list[Session]],
    sleep: Callable[[float], None],
    code: int = 1001,
    reason: str = "Server shutting down",
) -> list[Session]:
    """Close the sessions ``which()`` gives with ``code`` until they have ended; return those left at the deadline.

    Those that open meanwhile are closed too. The deadline is the longest
    ``CLOSE_TIMEOUT`` among them, and ``EXIT_SLACK``; ``sleep`` is the
    host's (a process's exit, a server that stops).
    """
    left = which()
    if not left:
        return []
    deadline = time.monotonic() + max(session.endpoint.CLOSE_TIMEOUT for session in left) + EXIT_SLACK
    while left and time.monotonic() < deadline:
        for session in left:
            if session.state is State.OPEN:
                session.close(code, reason)
        sleep(0.05)
        left = which()
    return left


def stats() -> dict[str, Any]:
    """A snapshot of this process's WebSockets.

    Returns:
        ``open`` (sessions running now), ``opened`` and ``closed`` (since
        the process started), ``messages_received``, ``messages_sent``
        (text and binary messages), ``bytes_received``, ``bytes_sent``
        (frames on the wire, headers and compression included; the
        handshake is not counted) over every connection, open or ended,
        ``close_codes`` (ended connections by the code of their first
        Close, whoever sent it; 1006 for those that lost TCP without a
        Close), and ``pid``.
    """
    with _lock:
        sessions = list(_live)
        totals = dict(_totals)
        close_codes = dict(sorted(_close_codes.items()))
    for session in sessions:
        _add_counts(totals, session.connection)
    return {
        "open": len(sessions),
        "opened": totals["opened"],
        "closed": totals["closed"],
        **{name: totals[name] for name in COUNTS},
        "close_codes": close_codes,
        "pid": os.getpid(),
    }
