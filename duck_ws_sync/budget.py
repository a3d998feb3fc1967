"""The connection budget: how many WebSockets one process holds open at most.

``WebSocketMiddleware(app, urlpatterns, max_connections=...)``. An upgrade
beyond the budget is refused before the 101: ``503 Service Unavailable``
with ``Retry-After`` and a plain reason, and a line in the log.

Where an open WebSocket holds one of the server's threads for its whole
life (gunicorn's gthread worker over TLS: the socket cannot leave the
server's object), a thread held is a thread plain HTTP cannot use. The
worker tells us its thread count, so by default the budget keeps a quarter
of them (at least one) for HTTP: ``--threads 8`` holds at most 6 WebSockets.
Anywhere else the default is no budget: gevent holds thousands of
connections, gthread runs a plain WebSocket in a thread of its own, and
werkzeug's development server starts a thread per request.
"""

from __future__ import annotations

import logging
import threading

from .protocol import InvalidHandshake, Response

__all__ = ["ConnectionBudget", "default_for_threads"]

logger = logging.getLogger("duck_ws_sync")

RETRY_AFTER = 5  # seconds, in the refusal's Retry-After


def default_for_threads(threads: int) -> int:
    """The WebSockets a worker of ``threads`` threads holds by default: a quarter (at least one) stay for HTTP."""
    return max(threads - max(1, threads // 4), 0)


class ConnectionBudget:
    """Counts this process's open WebSockets against a limit (None: no limit).

    Args:
        limit: The most WebSockets open at once; None for the host's default.
    """

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError("max_connections must be None or at least 0")
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()
        self._warned_threads = False

    def take(self, threads: int | None) -> Response | None:
        """Count one more WebSocket; or the refusal, when the budget is spent.

        Args:
            threads: The server's threads for requests, when each WebSocket
                holds one (gunicorn gthread): they set the default budget,
                and the log says when WebSockets hold every one of them.
        """
        limit = self.limit
        if limit is None and threads is not None:
            limit = default_for_threads(threads)
        with self._lock:
            if limit is not None and self.open >= limit:
                refused = self.open
            else:
                self.open += 1
                refused = None
                all_threads = threads is not None and self.open >= threads and not self._warned_threads
                if all_threads:
                    self._warned_threads = True
        if refused is not None:
            logger.warning(
                "WebSocket refused with 503: %d open, the most this process holds (max_connections=%d)",
                refused,
                limit,
            )
            reason = f"Too many WebSocket connections ({refused} open); try again in {RETRY_AFTER} seconds"
            return InvalidHandshake(503, reason, [("Retry-After", str(RETRY_AFTER))]).response()
        if all_threads:
            logger.warning(
                "WebSockets now hold all %d threads of this worker: plain HTTP requests wait until one closes "
                "(set max_connections below the thread count to keep threads for HTTP)",
                threads,
            )
        return None

    def give_back(self) -> None:
        """A WebSocket counted by ``take`` has ended."""
        with self._lock:
            self.open -= 1
