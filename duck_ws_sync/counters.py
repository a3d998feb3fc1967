"""This process's WebSockets, counted: ``stats()``, and ``stats_app``, a WSGI endpoint that shows them.

Each connection counts its own messages and bytes in its protocol core
(nothing is shared on the message path, whatever the host). The process
keeps the connections that are open and the totals of those that ended: a
snapshot adds up both, so it is exact at any moment, for a cost paid by the
one who asks (a health check, a scrape), not by the messages.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .protocol import Side
from .takeover import gunicorn_worker

if TYPE_CHECKING:
    from .views import WebSocketView

__all__ = ["COUNTS", "close_code", "ended", "live", "opened", "stats", "stats_app", "when_opened"]

#: The per-connection counts a snapshot sums (the protocol core's attributes).
COUNTS = ("messages_received", "messages_sent", "bytes_received", "bytes_sent")

_lock = threading.Lock()
# The views whose session runs (from the 101 to the end of on_close).
_live: set[WebSocketView] = set()
_totals = dict.fromkeys(("opened", "closed", *COUNTS), 0)
_close_codes: dict[int, int] = {}
# Called as each session starts (metrics.py starts its publisher from there).
_when_opened: list[Callable[[], None]] = []


def opened(view: WebSocketView) -> None:
    """A session starts: ``view`` is open and counted live."""
    with _lock:
        _live.add(view)
        _totals["opened"] += 1
    for callback in _when_opened:
        callback()


def when_opened(callback: Callable[[], None]) -> None:
    """Call ``callback`` (quick, never failing) whenever a session starts in this process."""
    _when_opened.append(callback)


def ended(view: WebSocketView) -> None:
    """A session has ended (its ``on_close`` has run): its counts join the totals."""
    connection = view._connection
    with _lock:
        if view not in _live:
            return
        _live.discard(view)
        _totals["closed"] += 1
        _add_counts(_totals, connection)
        code = close_code(view)
        _close_codes[code] = _close_codes.get(code, 0) + 1


def _add_counts(totals: dict[str, int], connection: Any) -> None:
    """Add a connection's counts (its protocol core's) to ``totals``; nothing for a connection never made."""
    if connection is not None:
        for name in COUNTS:
            totals[name] += getattr(connection, name)


def close_code(view: WebSocketView) -> int:
    """How ``view``'s connection ended: the code of the first Close, whoever sent it; 1006 when none came."""
    connection = view._connection
    if connection is not None:
        first = connection.close_sent if connection.close_initiator is Side.LOCAL else connection.close_received
        if first is not None:
            return first.code
    return view.close_code if view.close_code is not None else 1006


def live() -> list[WebSocketView]:
    """The views whose session runs now, in no order."""
    with _lock:
        return list(_live)


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
        views = list(_live)
        totals = dict(_totals)
        close_codes = dict(sorted(_close_codes.items()))
    for view in views:
        _add_counts(totals, view._connection)
    return {
        "open": len(views),
        "opened": totals["opened"],
        "closed": totals["closed"],
        **{name: totals[name] for name in COUNTS},
        "close_codes": close_codes,
        "pid": os.getpid(),
    }


def stats_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI endpoint for a health route: this process's ``stats()`` as JSON.

    ``200 OK`` while the process serves; ``503 Service Unavailable`` once
    its gunicorn worker is stopping (SIGTERM, a reload, ``--max-requests``),
    so that a load balancer stops sending it new connections. Any path and
    method; ``HEAD`` gets the headers only.
    """
    worker = gunicorn_worker()
    stopping = worker is not None and not worker.alive
    snapshot = stats()
    snapshot["status"] = "stopping" if stopping else "ok"
    body = json.dumps(snapshot).encode()
    status = "503 Service Unavailable" if stopping else "200 OK"
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
