"""``MAX_MESSAGE_RATE``: how many messages a second one client may send, checked as they arrive.

A token bucket per connection, made only for views that set the limit: it
holds at most ``MAX_MESSAGE_RATE`` messages (the burst) and refills at that
rate. Messages are counted when read, before the view handles them, so a
view that is slow to handle them does not hide a flood. A client over the
limit gets a Close 1008 ("Message rate limit exceeded"), its messages from
then on are dropped unhandled (RFC 6455 §7.1.1), and a line is logged.
"""

from __future__ import annotations

import logging

from .accesslog import format_address

__all__ = ["MessageRate"]

logger = logging.getLogger("duck_ws_sync")

REASON = "Message rate limit exceeded"


class MessageRate:
    """A connection's bucket of messages.

    Args:
        rate: Messages a second, and the largest burst (at least one message).
        where: The client's address and port and the path, for the log line.
    """

    __slots__ = ("_at", "_tokens", "burst", "rate", "where")

    def __init__(self, rate: float, where: tuple[str, int, str], now: float) -> None:
        self.rate = float(rate)
        self.burst = max(self.rate, 1.0)
        self.where = where
        self._tokens = self.burst
        self._at = now

    def take(self, count: int, now: float) -> bool:
        """Take ``count`` messages that arrived at ``now``; False when that is over the limit."""
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if tokens < count:
            self._tokens = tokens
            return False
        self._tokens = tokens - count
        return True

    def log_exceeded(self) -> None:
        """Say in the log which client went over the limit."""
        host, port, path = self.where
        logger.warning(
            "closing WebSocket %s of %s with 1008: over MAX_MESSAGE_RATE (%g messages a second)",
            path,
            format_address(host, port),
            self.rate,
        )
