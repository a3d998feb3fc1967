"""The deadlines of a session: heartbeat, receive timeout, closing handshake.

``Clock`` is the part of a ``Session`` that keeps time. Each connection has
one deadline at a time, its earliest, which the session hands to its
transport (``Transport.arm``, ``hosts/base.py``): on gevent, with those of
every connection of the thread under one gevent timer; on a thread of its
own, as the timeout of the thread's wait on its socket. The transport
calls ``on_timer`` when it comes.

- the heartbeat: a Ping every PING_INTERVAL of silence; a Pong that does not
  come within PONG_TIMEOUT is a miss, the interval doubles (up to
  MAX_BACKOFF), and three misses in a row close the connection (1001);
- the receive timeout: no frame for RECEIVE_TIMEOUT closes it (1001);
- the closing handshake: the client's Close must come within CLOSE_TIMEOUT
  of ours, and our answer within CLOSE_TIMEOUT of its.

On gevent ``on_timer`` runs in the hub, so an idle connection needs no
greenlet for any of this: nothing here blocks, and what might (a Close
that may have to wait for the socket) goes to ``Transport.in_background``.
The view's own pings (``ping``) wait here for their Pongs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..protocol import State

if TYPE_CHECKING:
    from ..hosts.base import Transport
    from ..protocol import ServerConnection
    from .inbox import Inbox

__all__ = ["Clock", "Limits"]

logger = logging.getLogger("duck_ws_sync")

# Heartbeat misses in a row after which the client is considered gone (Duck's rule).
MAX_MISSED_PONGS = 3
# A timer event this close to a deadline counts as reaching it: the event
# loop's clock and ours may differ by a rounding, and a timer that wakes a
# hair early must not cost a second wake-up.
_TIMER_SLACK = 0.001
# Heartbeat Pings fall due on a grid of PING_INTERVAL / 16, at most this many
# seconds apart: the Pings of many connections then go out together, and
# their Pongs come back together, in one wake-up of the host instead of one
# each (at 10,000 idle connections a quarter of the heartbeat's CPU).
HEARTBEAT_GRID = 0.1


class Limits(NamedTuple):
    """A view's heartbeat and timeout settings in seconds, ``inf`` for off.

    Connections with the same settings share one: it is read on every
    timer event, and an idle connection should not carry a copy.
    """

    ping_interval: float
    pong_timeout: float
    max_backoff: float
    receive_timeout: float
    send_timeout: float
    close_timeout: float

    @classmethod
    def of(cls, settings: Any) -> Limits:
        def seconds(name: str) -> float:
            value = getattr(settings, name, None)
            return float(value) if value else math.inf

        limits = cls(*(seconds(name.upper()) for name in cls._fields))
        if len(_SHARED_LIMITS) >= 256:  # settings made per connection: share nothing
            return _SHARED_LIMITS.get(limits, limits)
        return _SHARED_LIMITS.setdefault(limits, limits)


_SHARED_LIMITS: dict[Limits, Limits] = {}


class Clock:
    """Timekeeping for a ``Session``, whose transport keeps the one deadline (see the module's docstring)."""

    __slots__ = (
        "_closing_since",
        "_limits",
        "_missed_pongs",
        "_next_ping",
        "_ping_interval",
        "_ping_payload",
        "_pings",
        "_pings_sent",
        "_pong_deadline",
        "expects_pong",
        "last_frame_at",
    )

    if TYPE_CHECKING:  # what the session provides
        connection: ServerConnection
        inbox: Inbox
        _transport: Transport
        _broken: bool
        reading: bool

        def send(self, action: Callable[..., None], *args: Any) -> bool: ...
        def close(self, code: int | None = 1000, reason: str = "") -> bool: ...
        def fail(self, code: int = 1011, reason: str = "") -> bool: ...
        def abort(self) -> None: ...

    def _start_clock(self, settings: Any, now: float) -> None:
        """Set the deadlines of a connection opened at ``now``, from a view's ``settings``."""
        self.last_frame_at = now  # the last whole frame from the client (the receive timeout's start)
        self._limits = limits = Limits.of(settings)
        self._closing_since: float | None = None
        self._ping_payload: bytes | None = None  # the heartbeat's
        self._pings_sent = 0  # by the heartbeat, which numbers its payloads
        # The view's own pings, oldest first: payload -> (waiter, sent at).
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] | None = None
        self.expects_pong = False  # a Ping of ours, the heartbeat's or the view's, waits for its Pong
        self._pong_deadline = math.inf
        self._missed_pongs = 0
        self._ping_interval = limits.ping_interval
        self._next_ping = _on_grid(now + limits.ping_interval, limits.ping_interval)

    def _stop_clock(self) -> None:
        """Cancel the deadline; the view's pings waiting for a Pong fail."""
        self._transport.arm(math.inf)
        self._fail_pings()

    def _fail_pings(self) -> None:
        """No Pong can come any more: the view's pings waiting for one fail."""
        pings, self._pings = self._pings, None
        self._pongs_changed()
        for waiter, _ in (pings or {}).values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the connection closed before the Pong arrived"))

    def _closing_starts(self) -> None:
        """The closing handshake started (either side's Close, or input ended): its deadline runs."""
        if self._closing_since is None:
            self._closing_since = time.monotonic()
            self.schedule()

    def ping(self, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[float]:
        """Send a Ping; the future gets the round trip in seconds when its Pong arrives.

        Raises:
            ValueError: If a ping with the same payload is still unanswered.
        """
        if self._pings is None:
            self._pings = {}
        if payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its Pong")
        waiter: asyncio.Future[float] = loop.create_future()
        # Waiting before the Ping is written: the Pong may be read while we write.
        self._pings[payload] = (waiter, time.monotonic())
        self.expects_pong = True
        try:
            sent = self.send(self.connection.send_ping, payload)
        except BaseException:
            del self._pings[payload]
            self._pongs_changed()
            raise
        if not sent:
            del self._pings[payload]
            self._pongs_changed()
            waiter.set_exception(ConnectionError("the connection is not open"))
        return waiter

    def _receive_pong(self, payload: bytes) -> None:
        pings = self._pings
        if pings and payload in pings:
            # A Pong answers its Ping and every earlier one: a client may
            # answer only the latest of several (RFC 6455 §5.5.3).
            now = time.monotonic()
            for key in list(pings):
                waiter, sent_at = pings.pop(key)
                if not waiter.done():
                    waiter.set_result(now - sent_at)
                if key == payload:
                    break
            self._pongs_changed()
        # Only the Pong that answers our latest Ping counts (RFC 6455 §5.5.3
        # allows unsolicited Pongs, which say nothing about our Ping).
        if self._ping_payload is not None and payload == self._ping_payload:
            self._ping_payload = None
            self._pongs_changed()
            self._missed_pongs = 0
            self._pong_deadline = math.inf
            self._ping_interval = self._limits.ping_interval
            self._next_ping = _on_grid(self.last_frame_at + self._ping_interval, self._ping_interval)  # from the Pong
            self.schedule()

    def schedule(self) -> None:
        """Arm the timer for the earliest deadline.

        That is the closing handshake's, or while reading the heartbeat's and
        the receive timeout's.
        """
        if self._broken or self.connection.state is State.CLOSED:
            wake_at = math.inf
        elif self._closing_since is not None:
            wake_at = self._closing_since + self._limits.close_timeout
        elif not self.reading:
            wake_at = math.inf
        else:
            receive_timeout = self._limits.receive_timeout
            wake_at = min(self.last_frame_at + receive_timeout, self._pong_deadline, self._next_ping)
        self._transport.arm(wake_at)

    @property
    def limits(self) -> Limits:
        """The connection's timeouts and heartbeat settings, in seconds (``inf``: off)."""
        return self._limits

    def _pongs_changed(self) -> None:
        # An attribute, not a property: the gevent host asks before every wait.
        self.expects_pong = self._ping_payload is not None or bool(self._pings)

    def on_timer(self) -> None:
        """The deadline passed (in the hub on gevent: nothing here may block; what could goes to the background)."""
        connection = self.connection
        if self._broken or connection.state is State.CLOSED:
            return
        now = time.monotonic() + _TIMER_SLACK
        if self._closing_since is not None:
            if now >= self._closing_since + self._limits.close_timeout:
                logger.debug("closing handshake timed out")
                if connection.close_sent is None:
                    self._transport.in_background(self._answer_and_abort)
                else:
                    self.abort()
                return
        else:
            if self.inbox.full:
                # We stopped reading (backpressure): silence is ours, not the client's.
                self.last_frame_at = now
                if self._pong_deadline != math.inf:
                    self._pong_deadline = now + self._limits.pong_timeout
            receive_timeout = self._limits.receive_timeout
            if now >= self.last_frame_at + receive_timeout:
                logger.info("no frame received for %s s: closing", receive_timeout)
                self._transport.in_background(self._close_or_abort, 1001, "receive timeout")
                return
            if now >= self._pong_deadline:
                self._missed_pongs += 1
                self._ping_payload = None
                self._pongs_changed()
                self._pong_deadline = math.inf
                if self._missed_pongs >= MAX_MISSED_PONGS:
                    logger.info("%d pings unanswered: closing", self._missed_pongs)
                    self._transport.in_background(self._close_or_abort, 1001, "ping timeout")
                    return
                self._ping_interval = min(self._ping_interval * 2, self._limits.max_backoff)
                self._next_ping = _on_grid(now + self._ping_interval, self._ping_interval)
            if now >= self._next_ping and self._ping_payload is None:
                # Unique among the pings in flight is all a heartbeat payload needs.
                self._pings_sent = (self._pings_sent + 1) & 0xFFFFFFFF
                payload = self._ping_payload = self._pings_sent.to_bytes(4, "big")
                self.expects_pong = True
                self._pong_deadline = now + self._limits.pong_timeout
                self._next_ping = math.inf
                self._transport.send_from_timer(connection.send_ping, payload)
        self.schedule()

    def answer(self) -> bool:
        """Send the Close that input ended for: the echo of the client's, or the failure for its protocol error."""
        connection = self.connection
        error = connection.protocol_error
        if connection.failure_pending and error is not None:
            return self.fail(error.close_code, str(error))
        received = connection.close_received
        if received is not None and connection.close_sent is None:
            # RFC 6455 §5.5.1: echo the client's code.
            return self.close(None if received.code == 1005 else received.code)
        return False

    def _close_or_abort(self, code: int, reason: str) -> None:
        if not self.close(code, reason):
            self.abort()

    def _answer_and_abort(self) -> None:
        self.answer()
        self.abort()


def _on_grid(due: float, interval: float) -> float:
    """``due``, put off to the heartbeat's next grid point (``HEARTBEAT_GRID``); ``inf`` stays."""
    if due == math.inf:
        return due
    grid = min(interval / 16, HEARTBEAT_GRID)
    return math.ceil(due / grid) * grid
