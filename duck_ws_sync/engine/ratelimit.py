"""``MAX_MESSAGE_RATE``: how many frames a second one client may send, checked as they arrive.

A token bucket per connection, made only for views that set the limit: it
holds at most ``MAX_MESSAGE_RATE`` frames (the burst) and refills at that
rate. Every frame counts, whatever it is: a message's, each fragment of a
message, a Ping, a Pong. A client that cuts its messages into many frames,
or floods Pings, costs the worker as much as one that floods messages.
Frames are counted when read, before the view handles their messages, so a
view that is slow to handle them does not hide a flood. A client over the
limit gets a Close 1008 ("Message rate limit exceeded"), its messages from
then on are dropped unhandled (RFC 6455 §7.1.1), and a line is logged.
"""

from __future__ import annotations

import logging

from .addresses import format_address

__all__ = ["MessageRate"]

logger = logging.getLogger("duck_ws_sync")

REASON = "Message rate limit exceeded"


class MessageRate:
    """A connection's bucket of frames.

    Args:
        rate: Frames a second, and the largest burst (at least one frame).
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
        """Take ``count`` frames that arrived at ``now``; False when that is over the limit."""
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
            "closing WebSocket %s of %s with 1008: over MAX_MESSAGE_RATE (%g frames a second)",
            path,
            format_address(host, port),
            self.rate,
        )
