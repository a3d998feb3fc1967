"""Broadcasts across workers and machines through Redis pub/sub (the ``redis`` extra).

One subscriber connection per worker process, not per WebSocket: a group's
channel (``duck_ws_sync:<group>``) is subscribed when the worker gets its
first member of the group and released with the last. A broadcast is one
``PUBLISH``; the publishing worker delivers to its own members at once and
skips its own message when Redis sends it back (each message carries the
publishing process's origin).

Redis down at start or gone mid-flight: the worker goes on serving; the
subscriber logs once per outage, reconnects with backoff (0.1 s doubling to
2 s), subscribes again to every group it has members of, and says when
Redis is back. Meanwhile ``broadcast`` raises ``BrokerUnavailable`` at
once. Delivery is at most once, as Redis pub/sub's: a message published
while a worker is disconnected never reaches its members.

The subscriber runs in a greenlet where gevent patched the sockets
(gunicorn's gevent worker), else in a thread of its own.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import fanout
from .exceptions import BrokerUnavailable

__all__ = ["CHANNEL_PREFIX", "RedisBroker"]

logger = logging.getLogger("duck_ws_sync")

CHANNEL_PREFIX = "duck_ws_sync:"
# How long a PUBLISH or a connection attempt may take before the broker counts as unavailable.
SOCKET_TIMEOUT = 1.0
# How often an idle subscriber checks that Redis still answers.
PING_EVERY = 1.0
# How long a join waits for Redis to confirm its group's subscription.
SUBSCRIBE_WAIT = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0

_TEXT, _BINARY = b"t", b"b"


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
        self._wanted: set[str] = set()  # the groups with members here
        self._confirmed: dict[str, threading.Event] = {}
        self._connection: Any = None  # the subscriber's, while connected
        self._write_lock = threading.Lock()  # commands to the subscriber's connection
        self._down_since: float | None = None  # an outage is known
        self._closed = False
        self._start_subscriber()

    # Publishing, from anywhere.

    def publish(self, group: str, message: str | bytes, exclude: Any) -> None:
        if isinstance(message, str):
            payload = self._origin + _TEXT + message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            payload = self._origin + _BINARY + bytes(message)
        else:
            raise TypeError(f"a broadcast is str (text) or bytes (binary), not {type(message).__name__}")
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
        fanout.deliver(group, message, exclude)

    # Subscriptions, from fanout.join and fanout.leave.

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
            if fanout.has_members(group):  # someone joined again meanwhile
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
        backoff = BACKOFF_FIRST
        while not self._closed:
            try:
                self._listen()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._went_down(exc)
            finally:
                connection, self._connection = self._connection, None
                if connection is not None:
                    connection.disconnect()
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX) if self._down_since is not None else BACKOFF_FIRST

    def _listen(self) -> None:
        connection = self._subscriber_pool.make_connection()
        connection.connect()
        with self._write_lock:
            self._connection = connection
            groups = sorted(self._wanted)
            # A channel of our own keeps the connection in pub/sub mode with no group.
            connection.send_command(
                "SUBSCRIBE", CHANNEL_PREFIX + "~" + self._origin.decode(), *(CHANNEL_PREFIX + group for group in groups)
            )
        unanswered = 0
        while not self._closed:
            if not connection.can_read(timeout=PING_EVERY):
                if unanswered >= 2:
                    raise redis.TimeoutError("Redis did not answer two pings")
                with self._write_lock:
                    connection.send_command("PING")
                unanswered += 1
                continue
            reply = connection.read_response()
            unanswered = 0
            self._back_up(len(groups))
            self._handle(reply)

    def _handle(self, reply: Any) -> None:
        kind = reply[0]
        if kind == b"message":
            group = reply[1].decode("utf-8", "replace")[len(CHANNEL_PREFIX) :]
            data = reply[2]
            if data[:16] == self._origin:  # ours: delivered here when published
                return
            body = data[17:]
            fanout.deliver(group, body.decode("utf-8") if data[16:17] == _TEXT else body)
        elif kind == b"subscribe":
            confirmed = self._confirmed.get(reply[1].decode("utf-8", "replace")[len(CHANNEL_PREFIX) :])
            if confirmed is not None:
                confirmed.set()

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None and not self._closed:
            self._down_since = time.monotonic()
            logger.warning(
                "Redis at %s is unavailable (%s): broadcasts fail until it is back; reconnecting",
                self._shown_url,
                exc,
            )

    def _back_up(self, groups: int) -> None:
        down_since = self._down_since
        if down_since is not None:
            self._down_since = None
            logger.warning(
                "Redis at %s is back after %.1f s; %d groups subscribed again",
                self._shown_url,
                time.monotonic() - down_since,
                groups,
            )
