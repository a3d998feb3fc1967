"""Broadcasts, users and presence across workers and machines through Redis (the ``redis`` extra).

One subscriber per worker process, not per WebSocket: a topic's channel
is subscribed when the worker gets its first member of the topic and
released with the last. A group's channel is ``duck_ws_sync:<group>``, a
user's ``duck_ws_sync.user:<user_id>``. A broadcast is one ``PUBLISH``
(``SPUBLISH`` on a cluster); the publishing worker delivers to its own
members at once and skips its own message when Redis sends it back (each
message carries the publishing process's origin: ``envelope.py``).

How Redis is reached, one server, a master found through Sentinel or a
Cluster, is ``connections.py``; a group's presence is kept in Redis as
``redis_presence.py`` says, and this worker writes its members' entries again
every ``REFRESH_EVERY`` seconds.

Anything else on a channel (see ``envelope.decode``) is dropped, never
delivered, and logged at most once per ``LOG_EVERY`` seconds with how many
were dropped since the last such line, on which channel the last was, and
why. A message that fails to be delivered here is logged the same way
(with its traceback), and the subscriber goes on with the next one.

Redis down at start or gone mid-flight (a failover, a cluster's master
lost): the worker goes on serving; the subscriber logs once per outage,
reconnects with backoff (0.1 s doubling to 2 s), subscribes again to every
topic it has members of, writes its presence entries again, and says when
Redis is back. Meanwhile ``broadcast``, ``send_to_user`` and ``presence``
raise ``BrokerUnavailable`` at once. Delivery is at most once, as Redis
pub/sub's: a message published while a worker is disconnected never
reaches its members. Any other failure of the subscriber (an error reply
such as an ACL's ``NOPERM`` to ``SUBSCRIBE``, a reply of an unexpected
shape) counts as an outage too: it is logged with its traceback once per
outage, and the subscriber starts over with the same backoff. Only
``GreenletExit``, ``KeyboardInterrupt`` and ``SystemExit`` end it.

The subscriber and the presence refresh run in greenlets where gevent
patched the sockets (gunicorn's gevent worker), else in threads of their
own.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import select
import threading
import time
from typing import Any

import redis

from ..engine.groups import GROUP, USER, deliver, has_members, present_everywhere
from ..engine.presence import Member, Presence, process_id
from ..exceptions import BrokerUnavailable
from .connections import FAILED, UNAVAILABLE, Link, servers
from .envelope import MARKER, Envelope, Malformed, decode, encode, read_reply
from .redis_presence import REFRESH_EVERY, PresenceScripts

__all__ = [
    "CHANNEL_PREFIX",
    "MARKER",
    "USER_CHANNEL_PREFIX",
    "Envelope",
    "Malformed",
    "RedisBroker",
    "channel",
    "decode",
    "encode",
    "read_reply",
    "topic",
]

logger = logging.getLogger("duck_ws_sync")

CHANNEL_PREFIX = "duck_ws_sync:"  # then a group's name
USER_CHANNEL_PREFIX = "duck_ws_sync.user:"  # then a user's id
# How often an idle subscriber checks that Redis still answers.
PING_EVERY = 1.0
# How long a join waits for Redis to confirm its topic's subscription.
SUBSCRIBE_WAIT = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0
# At most one line per this many seconds about dropped or undeliverable messages.
LOG_EVERY = 10.0

_PREFIXES = ((GROUP, CHANNEL_PREFIX), (USER, USER_CHANNEL_PREFIX))


def channel(topic: str) -> str:
    """The Redis channel of a topic (``engine.groups``)."""
    return (CHANNEL_PREFIX if topic[0] == GROUP else USER_CHANNEL_PREFIX) + topic[1:]


def topic(channel: bytes) -> str | None:
    """The topic of a Redis ``channel``; None for a channel that is no group's or user's."""
    name = channel.decode("utf-8", "replace")
    for kind, prefix in _PREFIXES:
        if name.startswith(prefix):
            return kind + name[len(prefix) :]
    return None


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
    """Publishes and keeps presence through a client; a subscriber receives the topics of this process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._shown_url = re.sub(r"//[^@/]*@", "//***@", url)
        self._servers = servers(url)
        self._scripts: PresenceScripts | None = None  # made at first use, as a cluster's client is
        self._subscribe_command = "SSUBSCRIBE" if self._servers.sharded else "SUBSCRIBE"
        self._unsubscribe_command = "SUNSUBSCRIBE" if self._servers.sharded else "UNSUBSCRIBE"
        self._origin = process_id().encode()
        # A channel of our own keeps a connection in pub/sub mode with no topic; nobody publishes to it.
        self._own_channel = CHANNEL_PREFIX + "~" + self._origin.decode()
        self._wanted: set[str] = set()  # the topics with members here
        self._confirmed: dict[str, threading.Event] = {}  # by channel
        self._links: list[Link] = []  # the subscriber's, while connected
        self._write_lock = threading.Lock()  # commands to the subscriber's connections
        self._down_since: float | None = None  # an outage is known
        self._failure_logged = False  # this outage's unexpected failure, with its traceback
        self._subscribed_at: float | None = None  # when Redis confirmed this connection's subscription
        self._back = threading.Event()  # set when Redis is back: write the presence entries again
        self._dropped = RateLimitedLog("dropped messages from Redis that are not broadcasts", LOG_EVERY)
        self._undelivered = RateLimitedLog("could not deliver messages from Redis", LOG_EVERY)
        self._unwritten = RateLimitedLog("could not write presence entries to Redis", LOG_EVERY)
        self._stale = False  # the subscriber's connections reach a master that is one no more
        self._closed = False
        self._spawn(self._subscribe_forever, "duck_ws_sync-redis")
        self._spawn(self._refresh_forever, "duck_ws_sync-presence")

    # Publishing and presence, from anywhere.

    def publish(self, topic: str, message: str | bytes, exclude: Any) -> None:
        payload = encode(self._origin, message)
        self._check_up()
        try:
            self._servers.publish(channel(topic), payload)
        except UNAVAILABLE as exc:
            self._went_down(exc)
            raise BrokerUnavailable(f"Redis at {self._shown_url} is unavailable: {exc}") from exc
        deliver(topic, message, exclude)

    def enter(self, topic: str, member: Member) -> None:
        """Write ``member``'s entry in the group's presence; if Redis cannot take it now, the next refresh does."""
        if self._down_since is None:
            try:
                self._presence().enter(topic, [member])
            except FAILED as exc:  # never the join's failure: logged, written again later
                self._unwritten.note(channel(topic).encode(), f"{type(exc).__name__}: {exc}", time.monotonic())

    def depart(self, topic: str, connection_id: str) -> None:
        """Delete a member's entry; if Redis cannot take it now, the entry expires by itself."""
        if self._down_since is None:
            try:
                self._presence().depart(topic, [connection_id])
            except FAILED as exc:
                self._unwritten.note(channel(topic).encode(), f"{type(exc).__name__}: {exc}", time.monotonic())

    def presence(self, topic: str) -> Presence:
        self._check_up()
        try:
            return self._presence().read(topic)
        except UNAVAILABLE as exc:
            self._went_down(exc)
            raise BrokerUnavailable(f"Redis at {self._shown_url} is unavailable: {exc}") from exc

    def _presence(self) -> PresenceScripts:
        scripts = self._scripts
        if scripts is None:
            scripts = self._scripts = PresenceScripts(self._servers.client)
        return scripts

    def _check_up(self) -> None:
        down_since = self._down_since
        if down_since is not None:
            raise BrokerUnavailable(
                f"Redis at {self._shown_url} is unavailable (for {time.monotonic() - down_since:.1f} s)"
            )

    # Subscriptions, from join and leave (engine/groups.py).

    def subscribe(self, topic: str) -> None:
        """Receive ``topic``'s messages; wait (at most SUBSCRIBE_WAIT) until Redis confirms."""
        confirmed = threading.Event()
        name = channel(topic)
        with self._write_lock:
            self._wanted.add(topic)
            self._confirmed[name] = confirmed
            sent = self._send(self._subscribe_command, name)
        if sent or self._down_since is None:
            # Sent, or the subscriber is connecting (it subscribes to every wanted topic): wait for
            # Redis to confirm, so that a broadcast made after the join reaches this member.
            confirmed.wait(SUBSCRIBE_WAIT)

    def unsubscribe(self, topic: str) -> None:
        name = channel(topic)
        with self._write_lock:
            if has_members(topic):  # someone joined again meanwhile
                return
            self._wanted.discard(topic)
            self._confirmed.pop(name, None)
            self._send(self._unsubscribe_command, name)

    def close(self) -> None:
        self._closed = True
        self._back.set()
        for link in self._links:
            link.connection.disconnect()

    def _send(self, command: str, name: str) -> bool:
        """Send ``command`` for channel ``name`` on its subscriber connection; False if down.

        The caller holds the write lock.
        """
        links = self._links
        if not links:
            return False  # the subscriber sends it when it connects
        try:
            self._servers.link_for(name, links).connection.send_command(command, name)
        except UNAVAILABLE:
            return False  # the subscriber sees the failure too, and reconnects
        return True

    # The subscriber.

    @staticmethod
    def _spawn(function: Any, name: str) -> None:
        from gevent import monkey  # noqa: PLC0415 (only to know whether sockets are cooperative)

        if monkey.is_module_patched("socket"):
            import gevent  # noqa: PLC0415

            gevent.spawn(function)
        else:
            threading.Thread(target=function, name=name, daemon=True).start()

    def _subscribe_forever(self) -> None:
        """Listen, and start over after any failure: a worker whose subscriber ended would miss every broadcast."""
        backoff = BACKOFF_FIRST
        while not self._closed:
            try:
                self._listen()
            except UNAVAILABLE as exc:
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
        links, self._links = self._links, []
        for link in links:
            # Nothing here may end the subscriber; a socket that fails to close is dropped all the same.
            with contextlib.suppress(Exception):
                link.connection.disconnect()

    def _listen(self) -> None:
        self._subscribed_at = None
        self._stale = False
        links = self._servers.links(self._own_channel)
        waiting = {link.own_channel.encode() for link in links}  # each link's first confirmation
        with self._write_lock:
            self._links = links
            for link in links:
                link.connection.send_command(self._subscribe_command, link.own_channel)
            for name in sorted(channel(topic) for topic in self._wanted):
                self._servers.link_for(name, links).connection.send_command(self._subscribe_command, name)
        while not self._closed:
            if self._stale:
                raise redis.ConnectionError("the master changed (a failover): reconnecting to the new one")
            ready = _readable(links, PING_EVERY)
            if not ready:
                now = time.monotonic()
                self._dropped.flush(now)
                self._undelivered.flush(now)
                self._unwritten.flush(now)
                with self._write_lock:
                    for link in links:
                        if link.unanswered >= 2:
                            raise redis.TimeoutError("Redis did not answer two pings")
                        link.connection.send_command("PING")
                        link.unanswered += 1
                continue
            for link in ready:
                kind, subject, payload = read_reply(link.connection.read_response())
                link.unanswered = 0
                if kind == b"message":
                    self._receive(subject, payload)
                elif kind == b"subscribe" and subject in waiting:
                    waiting.discard(subject)
                    if not waiting:  # every connection serves from here on
                        self._subscribed_at = time.monotonic()
                elif kind == b"subscribe":
                    self._confirm(subject)
                elif kind == b"unsubscribe" and self._servers.sharded:
                    self._lost(subject)
            if self._subscribed_at is not None and self._down_since is not None:
                self._back_up(len(self._wanted))

    def _confirm(self, name: bytes) -> None:
        """Redis subscribed a topic's channel ``name``: wake the join that waits for it."""
        confirmed = self._confirmed.get(name.decode("utf-8", "replace"))
        if confirmed is not None:
            confirmed.set()

    def _lost(self, name: bytes) -> None:
        """A cluster unsubscribed us from a channel (its slot moved): start over on the masters of now.

        Our own channels count too: a connection left with none is no longer
        in pub/sub mode. The reply to our own ``SUNSUBSCRIBE`` (a topic no
        longer wanted) is no loss.
        """
        found = topic(name)
        if name.startswith(self._own_channel.encode()) or (found is not None and found in self._wanted):
            raise redis.ConnectionError(f"the cluster moved {name.decode('utf-8', 'replace')} to another master")

    def _receive(self, name: bytes, payload: bytes) -> None:
        """Deliver one message to the topic's members here; whatever goes wrong is logged, and the next one comes."""
        try:
            verdict = decode(payload)
            found = topic(name)
            if isinstance(verdict, Malformed):
                self._dropped.note(name, verdict.reason, time.monotonic())
            elif found is None or name.startswith(self._own_channel.encode()):
                self._dropped.note(name, "a message on a channel of no group or user", time.monotonic())
            elif verdict.origin != self._origin:  # ours was delivered here when published
                deliver(found, verdict.message)
        except Exception as exc:  # one message's failure must not end the subscriber
            self._undelivered.note(name, f"{type(exc).__name__}: {exc}", time.monotonic(), exc)

    # Presence: this worker's entries, written again before they expire.

    def _refresh_forever(self) -> None:
        """Write every member's entry again every REFRESH_EVERY s, and at once when Redis is back."""
        while not self._closed:
            self._back.wait(REFRESH_EVERY)
            self._back.clear()
            if self._closed or self._down_since is not None:
                continue
            self._check_links()
            for group, group_members in present_everywhere().items():
                try:
                    self._presence().enter(group, group_members)
                except UNAVAILABLE as exc:
                    self._went_down(exc)
                    break
                except FAILED as exc:  # this group's; the others, and the next round, go on
                    self._unwritten.note(channel(group).encode(), f"{type(exc).__name__}: {exc}", time.monotonic())

    def _check_links(self) -> None:
        """Have the subscriber start over if its connections reach a master that is one no more."""
        links = self._links
        try:
            stale = bool(links) and self._servers.stale(links)
        except UNAVAILABLE:
            return  # the sentinels cannot say now; the next round asks again
        if stale:
            self._stale = True  # the subscriber starts over within PING_EVERY

    # Outages.

    def _went_down(self, exc: BaseException, unexpected: bool = False) -> None:
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

    def _back_up(self, topics: int) -> None:
        down_since = self._down_since
        if down_since is not None:
            self._down_since = None
            self._failure_logged = False
            self._back.set()
            logger.warning(
                "Redis at %s is back after %.1f s; %d topics subscribed again",
                self._shown_url,
                time.monotonic() - down_since,
                topics,
            )


def _readable(links: list[Link], timeout: float) -> list[Link]:
    """The links with a reply to read, waiting at most ``timeout`` for one (cooperatively under gevent)."""
    if len(links) == 1:
        return links if links[0].connection.can_read(timeout=timeout) else []
    ready = [link for link in links if link.connection.can_read(timeout=0)]
    if ready:
        return ready
    # The parser's buffers are empty: wait on the sockets themselves (redis-py keeps each in ``_sock``).
    sockets = {link.connection._sock: link for link in links}
    readable, _, _ = select.select(list(sockets), [], [], timeout)
    return [sockets[sock] for sock in readable]
