"""Broadcasts across workers and machines through Redis pub/sub (the ``redis`` extra).

One subscriber connection per worker process, not per WebSocket: a group's
channel (``duck_ws_sync:<group>``) is subscribed when the worker gets its
first member of the group and released with the last. A broadcast is one
``PUBLISH``; the publishing worker delivers to its own members at once and
skips its own message when Redis sends it back (each message carries the
publishing process's origin).

The message on the wire (format 1; this version's workers drop any other)::

    marker   4 bytes   b"DWS\\x01": "DWS", then the format's version
    origin  16 bytes   the publishing process, as 16 lowercase hex digits
    kind     1 byte    b"t": text (UTF-8), b"b": binary
    length   4 bytes   the body's length, big-endian
    body               exactly ``length`` bytes

Anything else on a channel (empty, random bytes, a wrong marker or
version, a truncated message, a body longer or shorter than announced,
text that is not UTF-8) is dropped, never delivered, and logged at most
once per ``LOG_EVERY`` seconds with how many were dropped since the last
such line, on which channel the last was, and why. A message that fails
to be delivered here is logged the same way (with its traceback), and the
subscriber goes on with the next one.

Redis down at start or gone mid-flight: the worker goes on serving; the
subscriber logs once per outage, reconnects with backoff (0.1 s doubling to
2 s), subscribes again to every group it has members of, and says when
Redis is back. Meanwhile ``broadcast`` raises ``BrokerUnavailable`` at
once. Delivery is at most once, as Redis pub/sub's: a message published
while a worker is disconnected never reaches its members. Any other
failure of the subscriber (an error reply such as an ACL's ``NOPERM`` to
``SUBSCRIBE``, a reply of an unexpected shape) counts as an outage too: it
is logged with its traceback once per outage, and the subscriber starts
over with the same backoff. Only ``GreenletExit``, ``KeyboardInterrupt``
and ``SystemExit`` end it.

The subscriber runs in a greenlet where gevent patched the sockets
(gunicorn's gevent worker), else in a thread of its own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import string
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..engine.groups import deliver, has_members
from ..exceptions import BrokerUnavailable

__all__ = ["CHANNEL_PREFIX", "MARKER", "Envelope", "Malformed", "RedisBroker", "decode", "encode", "read_reply"]

logger = logging.getLogger("duck_ws_sync")

CHANNEL_PREFIX = "duck_ws_sync:"
# How long a PUBLISH or a connection attempt may take before the broker counts as unavailable.
SOCKET_TIMEOUT = 1.0
# How often an idle subscriber checks that Redis still answers.
PING_EVERY = 1.0
# How long a join waits for Redis to confirm its group's subscription.
SUBSCRIBE_WAIT = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0
# At most one line per this many seconds about dropped or undeliverable messages.
LOG_EVERY = 10.0

MARKER = b"DWS\x01"
_HEADER = struct.Struct("!4s16scI")  # marker, origin, kind, body length: 25 bytes
_TEXT, _BINARY = b"t", b"b"
_HEX_DIGITS = frozenset(string.hexdigits.lower().encode())


# The envelope, bytes in and out.


@dataclass(frozen=True, slots=True)
class Envelope:
    """A well-formed message: who published it, and what (``str``: text, ``bytes``: binary)."""

    origin: bytes
    message: str | bytes


@dataclass(frozen=True, slots=True)
class Malformed:
    """A payload that is not a message of ours, and why."""

    reason: str


def encode(origin: bytes, message: str | bytes) -> bytes:
    """The payload that carries ``message`` from the process ``origin`` (16 lowercase hex digits).

    Raises:
        TypeError: ``message`` is neither ``str`` nor bytes-like.
    """
    if isinstance(message, str):
        kind, body = _TEXT, message.encode("utf-8")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        kind, body = _BINARY, bytes(message)
    else:
        raise TypeError(f"a broadcast is str (text) or bytes (binary), not {type(message).__name__}")
    return _HEADER.pack(MARKER, origin, kind, len(body)) + body


def decode(payload: bytes) -> Envelope | Malformed:
    """What ``payload``, received on a group's channel, is: an ``Envelope``, or ``Malformed`` with the reason."""
    if not payload:
        return Malformed("empty")
    if len(payload) < _HEADER.size:
        if not MARKER.startswith(payload[: len(MARKER)]):
            return Malformed(f"no {MARKER!r} marker ({len(payload)} bytes)")
        return Malformed(f"{len(payload)} bytes, shorter than the {_HEADER.size}-byte header")
    marker, origin, kind, length = _HEADER.unpack_from(payload)
    if marker != MARKER:
        if marker[:3] == MARKER[:3]:
            return Malformed(f"format version {marker[3]}, not {MARKER[3]}")
        return Malformed(f"no {MARKER!r} marker")
    if not _HEX_DIGITS.issuperset(origin):
        return Malformed("an origin that is not 16 lowercase hex digits")
    if kind not in (_TEXT, _BINARY):
        return Malformed(f"an unknown kind {kind!r}")
    body = payload[_HEADER.size :]
    if len(body) != length:
        return Malformed(f"a body of {len(body)} bytes where the header says {length} (truncated or padded)")
    if kind == _BINARY:
        return Envelope(origin, body)
    try:
        return Envelope(origin, body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Malformed(f"text that is not UTF-8 ({exc.reason} at byte {exc.start} of the body)")


def read_reply(reply: object) -> tuple[bytes, bytes, bytes]:
    """What a subscribed connection received: its kind, its channel and its payload (``b""`` for none).

    Raises:
        redis.InvalidResponse: Not a reply that a subscribed connection gets
            (after a refused ``SUBSCRIBE``, say, Redis answers a ``PING`` with
            a plain ``PONG``).
    """
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        kind = reply[0]
        if len(reply) == 3 and isinstance(reply[1], bytes):
            if kind == b"message" and isinstance(reply[2], bytes):
                return kind, reply[1], reply[2]
            if kind in (b"subscribe", b"unsubscribe") and isinstance(reply[2], int):
                return kind, reply[1], b""
        elif kind == b"pong" and len(reply) == 2:
            return kind, b"", b""
    raise redis.InvalidResponse(f"not a reply to a subscriber: {reply!r:.200}")


class RateLimitedLog:
    """Counts one kind of trouble with messages; logs at most one line per ``every`` seconds.

    Each line says how many happened since the previous one, and where and
    why the last did.
    """

    def __init__(self, what: str, every: float) -> None:
        """``what`` starts each line, before the count (``"dropped messages from Redis that are not broadcasts"``)."""
        self.what = what
        self.every = every
        self._count = 0
        self._last: tuple[bytes, str, BaseException | None] = (b"", "", None)
        self._logged_at = -math.inf

    def note(self, channel: bytes, reason: str, now: float, exc: BaseException | None = None) -> None:
        """One more on ``channel``, for ``reason`` (``exc``'s traceback goes into the line); log it if due."""
        self._count += 1
        self._last = (channel, reason, exc)
        self.flush(now)

    def flush(self, now: float) -> None:
        """Log what was counted since the last line, if there is any and a line is due."""
        if not self._count or now - self._logged_at < self.every:
            return
        channel, reason, exc = self._last
        logger.warning(
            "%s: %d since the last such line (one line per %g s at most); the last, on channel %s: %s",
            self.what,
            self._count,
            self.every,
            channel.decode("utf-8", "replace"),
            reason,
            exc_info=exc,
        )
        self._logged_at = now
        self._count = 0
        self._last = (b"", "", None)


class RedisBroker:
    """Publishes with a small connection pool; one subscriber connection receives the groups of this process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._shown_url = re.sub(r"//[^@/]*@", "//***@", url)
        no_retry = Retry(NoBackoff(), 0)
        # RESP2: published messages come back as replies (RESP3 hands them to a push handler).
        options: dict[str, Any] = {"socket_connect_timeout": SOCKET_TIMEOUT, "retry": no_retry, "protocol": 2}
        self._client = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, **options)
        self._subscriber_pool = redis.ConnectionPool.from_url(url, socket_timeout=None, **options)
        self._origin = os.urandom(8).hex().encode()
        # A channel of our own keeps the connection in pub/sub mode with no group; nobody publishes to it.
        self._own_channel = (CHANNEL_PREFIX + "~" + self._origin.decode()).encode()
        self._wanted: set[str] = set()  # the groups with members here
        self._confirmed: dict[str, threading.Event] = {}
        self._connection: Any = None  # the subscriber's, while connected
        self._write_lock = threading.Lock()  # commands to the subscriber's connection
        self._down_since: float | None = None  # an outage is known
        self._failure_logged = False  # this outage's unexpected failure, with its traceback
        self._subscribed_at: float | None = None  # when Redis confirmed this connection's subscription
        self._dropped = RateLimitedLog("dropped messages from Redis that are not broadcasts", LOG_EVERY)
        self._undelivered = RateLimitedLog("could not deliver messages from Redis", LOG_EVERY)
        self._closed = False
        self._start_subscriber()

    # Publishing, from anywhere.

    def publish(self, group: str, message: str | bytes, exclude: Any) -> None:
        payload = encode(self._origin, message)
        down_since = self._down_since
        if down_since is not None:
            raise BrokerUnavailable(
                f"Redis at {self._shown_url} is unavailable (for {time.monotonic() - down_since:.1f} s)"
            )
        try:
            self._client.publish(CHANNEL_PREFIX + group, payload)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._went_down(exc)
            raise BrokerUnavailable(f"Redis at {self._shown_url} is unavailable: {exc}") from exc
        deliver(group, message, exclude)

    # Subscriptions, from groups.join and groups.leave (engine/groups.py).

    def subscribe(self, group: str) -> None:
        """Receive ``group``'s messages; wait (at most SUBSCRIBE_WAIT) until Redis confirms."""
        confirmed = threading.Event()
        with self._write_lock:
            self._wanted.add(group)
            self._confirmed[group] = confirmed
            sent = self._send("SUBSCRIBE", CHANNEL_PREFIX + group)
        if sent or self._down_since is None:
            # Sent, or the subscriber is connecting (it subscribes to every wanted group): wait for
            # Redis to confirm, so that a broadcast made after the join reaches this member.
            confirmed.wait(SUBSCRIBE_WAIT)

    def unsubscribe(self, group: str) -> None:
        with self._write_lock:
            if has_members(group):  # someone joined again meanwhile
                return
            self._wanted.discard(group)
            self._confirmed.pop(group, None)
            self._send("UNSUBSCRIBE", CHANNEL_PREFIX + group)

    def close(self) -> None:
        self._closed = True
        connection = self._connection
        if connection is not None:
            connection.disconnect()

    def _send(self, *command: str) -> bool:
        """Send a command on the subscriber's connection (the caller holds the write lock); False if down."""
        connection = self._connection
        if connection is None:
            return False  # the subscriber sends it when it connects
        try:
            connection.send_command(*command)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False  # the subscriber sees the failure too, and reconnects
        return True

    # The subscriber.

    def _start_subscriber(self) -> None:
        from gevent import monkey  # noqa: PLC0415 (only to know whether sockets are cooperative)

        if monkey.is_module_patched("socket"):
            import gevent  # noqa: PLC0415

            gevent.spawn(self._subscribe_forever)
        else:
            threading.Thread(target=self._subscribe_forever, name="duck_ws_sync-redis", daemon=True).start()

    def _subscribe_forever(self) -> None:
        """Listen, and start over after any failure: a worker whose subscriber ended would miss every broadcast."""
        backoff = BACKOFF_FIRST
        while not self._closed:
            try:
                self._listen()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._went_down(exc)
            except Exception as exc:  # an error reply, a reply of an odd shape...: start over too
                self._went_down(exc, unexpected=True)
            finally:
                self._disconnect()
            subscribed_at = self._subscribed_at
            if subscribed_at is not None and time.monotonic() - subscribed_at >= BACKOFF_MAX:
                backoff = BACKOFF_FIRST  # it served a while: a new outage, not the same one flapping
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Nothing here may end the subscriber; a socket that fails to close is dropped all the same.
            with contextlib.suppress(Exception):
                connection.disconnect()

    def _listen(self) -> None:
        self._subscribed_at = None
        connection = self._subscriber_pool.make_connection()
        connection.connect()
        with self._write_lock:
            self._connection = connection
            groups = sorted(self._wanted)
            connection.send_command(
                "SUBSCRIBE", self._own_channel.decode(), *(CHANNEL_PREFIX + group for group in groups)
            )
        unanswered = 0
        while not self._closed:
            if not connection.can_read(timeout=PING_EVERY):
                now = time.monotonic()
                self._dropped.flush(now)
                self._undelivered.flush(now)
                if unanswered >= 2:
                    raise redis.TimeoutError("Redis did not answer two pings")
                with self._write_lock:
                    connection.send_command("PING")
                unanswered += 1
                continue
            kind, channel, payload = read_reply(connection.read_response())
            unanswered = 0
            if kind == b"message":
                self._receive(channel, payload)
            elif kind == b"subscribe" and channel == self._own_channel:
                # The first channel of the SUBSCRIBE above: the connection serves from here on.
                self._subscribed_at = time.monotonic()
            elif kind == b"subscribe":
                self._confirm(channel)
            if self._subscribed_at is not None:
                self._back_up(len(groups))

    def _confirm(self, channel: bytes) -> None:
        """Redis subscribed a group's ``channel``: wake the join that waits for it."""
        confirmed = self._confirmed.get(channel.decode("utf-8", "replace")[len(CHANNEL_PREFIX) :])
        if confirmed is not None:
            confirmed.set()

    def _receive(self, channel: bytes, payload: bytes) -> None:
        """Deliver one message to the group's members here; whatever goes wrong is logged, and the next one comes."""
        try:
            verdict = decode(payload)
            if isinstance(verdict, Malformed):
                self._dropped.note(channel, verdict.reason, time.monotonic())
            elif channel == self._own_channel or not channel.startswith(CHANNEL_PREFIX.encode()):
                self._dropped.note(channel, "a message on a channel of no group", time.monotonic())
            elif verdict.origin != self._origin:  # ours was delivered here when published
                deliver(channel[len(CHANNEL_PREFIX) :].decode("utf-8", "replace"), verdict.message)
        except Exception as exc:  # one message's failure must not end the subscriber
            self._undelivered.note(channel, f"{type(exc).__name__}: {exc}", time.monotonic(), exc)

    def _went_down(self, exc: Exception, unexpected: bool = False) -> None:
        if self._closed:
            return
        started = self._down_since is None
        if started:
            self._down_since = time.monotonic()
        if unexpected and not self._failure_logged:
            self._failure_logged = True
            logger.error(
                "the Redis subscriber at %s failed (%s: %s): broadcasts fail until it is back; starting it over",
                self._shown_url,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        elif started and not unexpected:
            logger.warning(
                "Redis at %s is unavailable (%s): broadcasts fail until it is back; reconnecting",
                self._shown_url,
                exc,
            )

    def _back_up(self, groups: int) -> None:
        down_since = self._down_since
        if down_since is not None:
            self._down_since = None
            self._failure_logged = False
            logger.warning(
                "Redis at %s is back after %.1f s; %d groups subscribed again",
                self._shown_url,
                time.monotonic() - down_since,
                groups,
            )
