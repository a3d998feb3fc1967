"""One WebSocket connection on a gevent socket: reading, writing, heartbeat, timeouts.

A ``Transport`` drives a sans-I/O ``ServerConnection`` over a socket taken
over from the WSGI server. Three greenlets share it:

- the reader: ``recv``, feed the protocol core, hand messages to an
  ``Inbox`` (a small bounded queue: when the view is slow, the reader stops
  reading and TCP pushes back on the client), and write what the core wants
  written (pongs, close frames);
- the watchdog: heartbeat pings, the receive timeout, and the deadline of a
  closing handshake;
- any greenlet that sends: it takes the write lock, asks the core for the
  frame and writes it whole with ``sendall``.

Calls into the core never yield to the gevent hub (they do no I/O), so under
gevent they need no lock of their own; the write lock keeps frames whole and
in the core's order on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock

from .exceptions import LocalProtocolError
from .protocol import Close, Message, Pong, ServerConnection, State

__all__ = ["END", "Inbox", "Transport"]

logger = logging.getLogger("duck_ws_sync")

RECEIVE_SIZE = 256 * 1024
# Heartbeat misses in a row after which the client is considered gone (Duck's rule).
MAX_MISSED_PONGS = 3
# Ends the inbox: the reader has stopped.
END = object()


class Inbox:
    """A bounded queue from the reader greenlet to the view's asyncio loop.

    ``put`` blocks the reader's greenlet while the queue is full; ``get`` is
    awaited by the dispatcher on the view's loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self._loop = loop
        self._size = size
        self._items: deque[Any] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._space = gevent.event.Event()
        self._space.set()

    def put(self, item: Any, wait: bool = True) -> None:
        """Append ``item``; wait while the queue is full, unless ``wait`` is False."""
        self._items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                # Same thread, another greenlet: the loop's call_soon wakes it.
                getter.set_result(None)
        if wait and len(self._items) >= self._size:
            self._space.clear()
            self._space.wait()

    async def get(self) -> Any:
        """Take the oldest item, waiting for one."""
        while not self._items:
            self._getter = self._loop.create_future()
            await self._getter
        item = self._items.popleft()
        if len(self._items) < self._size:
            self._space.set()
        return item

    @property
    def full(self) -> bool:
        """True when the view is behind: reading should pause."""
        return len(self._items) >= self._size

    def wake_consumer(self) -> None:
        """Wake the loop (a no-op wake-up lets its greenlet reconsider what to wait for)."""
        self._loop.call_soon_threadsafe(_nothing)

    def clear(self) -> None:
        """Drop the queued messages (the view will not read them) and unblock the reader.

        ``END`` stays: the session still has to learn that reading is over.
        """
        ended = END in self._items
        self._items.clear()
        if ended:
            self._items.append(END)
        self._space.set()


def _nothing() -> None:
    pass


class Transport:
    """Runs a ``ServerConnection`` over a socket.

    Args:
        sock: The client's socket, after the 101 response was written.
        connection: The protocol core, made with ``answer_close_at_once=False``.
        inbox: Where messages go; ``END`` is put there when reading stops.
        initial_data: Bytes the server read past the upgrade request.
        settings: Timeouts and heartbeat settings, by attribute:
            ``PING_INTERVAL``, ``PONG_TIMEOUT``, ``MAX_BACKOFF``,
            ``RECEIVE_TIMEOUT``, ``SEND_TIMEOUT`` and ``CLOSE_TIMEOUT`` (seconds; None or 0
            turns a feature off).
    """

    def __init__(
        self,
        sock: socket.socket,
        connection: ServerConnection,
        inbox: Inbox,
        initial_data: bytes = b"",
        settings: Any = None,
    ) -> None:
        self.socket = sock
        self.connection = connection
        self.inbox = inbox
        self._initial_data = initial_data
        self._settings = settings
        self._write_lock = gevent.lock.Semaphore()
        self._wake_watchdog = gevent.event.Event()
        self._broken = False  # the socket failed or was aborted
        self.last_frame_at = time.monotonic()
        self._closing_since: float | None = None
        self._ping_payload: bytes | None = None  # the heartbeat's
        # The view's own pings, oldest first: payload -> (waiter, sent at).
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._pong_deadline = math.inf
        self._missed_pongs = 0
        send_timeout = self._setting("SEND_TIMEOUT")
        # Sends block at most SEND_TIMEOUT; reads ignore the socket's timeout.
        sock.settimeout(None if send_timeout == math.inf else send_timeout)
        self._ping_interval = self._setting("PING_INTERVAL")
        self._next_ping = time.monotonic() + self._ping_interval
        self._greenlets: list[gevent.Greenlet] = []
        # One buffer for the connection's life: the core copies out what it
        # keeps (payloads are unmasked into new bytes), so nothing aliases it.
        self._buffer = memoryview(bytearray(RECEIVE_SIZE))
        self._reading_done = False
        self._standby_go = gevent.event.Event()
        self._standby_reading = False
        self._loop_idle = False
        # TLS sockets may hold decrypted bytes that polling the descriptor
        # cannot see, so they are always read by the standby greenlet.
        self._raw_socket: Any = getattr(sock, "_sock", None)
        self._inline = self._raw_socket is not None and not callable(getattr(sock, "pending", None))

    def _setting(self, name: str) -> float:
        value = getattr(self._settings, name, None)
        return float(value) if value else math.inf

    def start(self, loop: Any) -> None:
        """Start reading (in ``loop``'s greenlet when it can) and the watchdog greenlet.

        Must be called from the loop's greenlet, before the loop runs.
        """
        self._greenlets = [gevent.spawn(self._standby), gevent.spawn(self._watch)]
        if self._inline:
            loop.attach_reader(self)
        else:
            self._standby_go.set()
        if self._initial_data:
            data, self._initial_data = self._initial_data, b""
            self._receive(data, wait=False)

    def stop(self) -> None:
        """Stop the helper greenlets (the session is over)."""
        self._reading_done = True
        gevent.killall(self._greenlets, block=False)
        pings, self._pings = self._pings, {}
        for waiter, _ in pings.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("the connection closed before the Pong arrived"))

    # Writing.

    def send(self, action: Callable[..., None], *args: Any) -> bool:
        """Call a sending method of the core and write its frames.

        Returns:
            True when the frames were written; False when the connection is
            no longer open or the socket failed (logged at debug level).
        """
        with self._write_lock:
            if self._broken:
                logger.debug("not sending on a closed connection")
                return False
            try:
                action(*args)
            except LocalProtocolError as exc:
                logger.debug("not sending: %s", exc)
                return False
            return self._flush()

    def _flush(self) -> bool:
        """Write what the core has queued; the caller holds the write lock."""
        connection = self.connection
        if connection.close_sent is not None and self._closing_since is None:
            self._closing_since = time.monotonic()
            self._wake_watchdog.set()
        try:
            raw_send = self._raw_socket.send if self._inline else None
            for chunk in connection.data_to_send():
                if raw_send is not None:
                    # One send() is enough for a small frame: gevent's sendall
                    # costs a getsockopt(SO_SNDBUF) and four Python frames.
                    try:
                        sent = raw_send(chunk)
                    except BlockingIOError:
                        sent = 0
                    if sent < len(chunk):
                        self.socket.sendall(memoryview(chunk)[sent:])
                else:
                    self.socket.sendall(chunk)
        except TimeoutError:
            # The client stopped reading. A frame may be half written, so
            # nothing more can go on this stream: drop TCP.
            logger.info("send timed out after %s s: dropping the connection", self._settings.SEND_TIMEOUT)
            self.abort()
            return False
        except OSError as exc:
            logger.debug("connection lost while sending: %s", exc)
            self.abort()
            return False
        return True

    def close(self, code: int | None = 1000, reason: str = "") -> bool:
        """Send a Close frame (start the closing handshake, or answer the client's)."""
        return self.send(self.connection.send_close, code, reason)

    def fail(self, code: int = 1011, reason: str = "") -> bool:
        """Fail the connection: a Close if none was sent yet, then no more frames."""
        return self.send(self.connection.fail, code, reason)

    def abort(self) -> None:
        """Drop TCP at once; the reader sees the end and stops."""
        if self._broken:
            return
        self._broken = True
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)

    # Reading. The loop's greenlet reads while it is idle (``read_inline``,
    # called from the loop's select); a standby greenlet reads while the
    # loop's greenlet is blocked in a hook or a send. They never read at once.

    def fileno(self) -> int:
        """The socket's descriptor, for the loop to watch."""
        return self.socket.fileno()

    def can_read_inline(self) -> bool:
        """Whether the idle loop's greenlet should read now (no backlog, no standby reading)."""
        return self._inline and not self._reading_done and not self._standby_reading and not self.inbox.full

    def set_loop_idle(self, idle: bool) -> None:
        """The loop's greenlet enters (True) or leaves (False) its wait."""
        self._loop_idle = idle

    def loop_blocked(self) -> None:
        """The loop's greenlet blocks outside its wait: the standby greenlet reads meanwhile."""
        if not self._standby_reading and not self._reading_done:
            self._standby_go.set()

    def read_inline(self) -> bool:
        """Read what the socket has, without blocking, in the loop's greenlet; False if nothing was read.

        The caller checked ``can_read_inline`` first.
        """
        try:
            size = self._raw_socket.recv_into(self._buffer)
        except BlockingIOError:
            return False
        except OSError as exc:
            logger.debug("connection lost while reading: %s", exc)
            size = 0
        self._receive(self._buffer[:size] if size else None, wait=False)
        return True

    def _standby(self) -> None:
        while True:
            self._standby_go.wait()
            self._standby_go.clear()
            if self._reading_done:
                return
            self._standby_reading = True
            try:
                while not self._reading_done:
                    try:
                        size = self.socket.recv_into(self._buffer)
                    except TimeoutError:
                        continue  # the socket's timeout is for sends (SEND_TIMEOUT)
                    except OSError as exc:
                        logger.debug("connection lost while reading: %s", exc)
                        size = 0
                    self._receive(self._buffer[:size] if size else None, wait=True)
                    if self._inline and self._loop_idle:
                        break
            finally:
                self._standby_reading = False
            self.inbox.wake_consumer()  # the idle loop was not watching the socket

    def _receive(self, data: memoryview | bytes | None, wait: bool) -> None:
        """Feed one read to the core (None: end of stream) and act on the events."""
        connection = self.connection
        if data is None:
            connection.receive_eof()
            self._end_of_reading()
            return
        frames = connection.frames_received
        connection.receive_data(data)
        if connection.frames_received != frames:
            self.last_frame_at = time.monotonic()
        if not self._dispatch(connection.events_received(), wait):
            self._end_of_reading()

    def _end_of_reading(self) -> None:
        if not self._reading_done:
            self._reading_done = True
            self.inbox.put(END, wait=False)
            self._standby_go.set()

    def _dispatch(self, events: list[Any], wait: bool) -> bool:
        """Act on the events of one read; return False when reading is over."""
        connection = self.connection
        if connection.has_data_to_send:  # pongs, or the Close that fails the connection
            with self._write_lock:
                if not self._broken:
                    self._flush()
        for event in events:
            if type(event) is Message:
                self.inbox.put(event, wait)
            elif type(event) is Pong:
                self._receive_pong(event.payload)
            elif type(event) is Close:
                self._wake_watchdog.set()  # the answer is due within CLOSE_TIMEOUT
                if self._closing_since is None:
                    self._closing_since = time.monotonic()
        return connection.state is not State.CLOSED and connection.close_received is None

    def linger(self) -> None:
        """End TCP without losing our last frame: half-close, drain, then shut both ways (RFC 6455 §7.1.1).

        The socket is shut down, not closed: after this nothing can be written
        on it, and the server that owns the descriptor sees end-of-stream and
        closes it (gunicorn's keep-alive loop would otherwise read from a
        closed descriptor).
        """
        sock = self.socket
        if not self._broken:
            self._broken = True
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
                with gevent.Timeout(min(self._setting("CLOSE_TIMEOUT"), 2.0), False):
                    while sock.recv(RECEIVE_SIZE):
                        pass
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    # Heartbeat and timeouts.

    def ping(self, payload: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[float]:
        """Send a Ping; the future gets the round trip in seconds when its Pong arrives.

        Raises:
            ValueError: If a ping with the same payload is still unanswered.
        """
        if payload in self._pings:
            raise ValueError("a ping with this payload is already waiting for its Pong")
        waiter: asyncio.Future[float] = loop.create_future()
        # Waiting before the Ping is written: the Pong may be read while we write.
        self._pings[payload] = (waiter, time.monotonic())
        try:
            sent = self.send(self.connection.send_ping, payload)
        except BaseException:
            del self._pings[payload]
            raise
        if not sent:
            del self._pings[payload]
            waiter.set_exception(ConnectionError("the connection is not open"))
        return waiter

    def _receive_pong(self, payload: bytes) -> None:
        if payload in self._pings:
            # A Pong answers its Ping and every earlier one: a client may
            # answer only the latest of several (RFC 6455 §5.5.3).
            now = time.monotonic()
            for key in list(self._pings):
                waiter, sent_at = self._pings.pop(key)
                if not waiter.done():
                    waiter.set_result(now - sent_at)
                if key == payload:
                    break
        # Only the Pong that answers our latest Ping counts (RFC 6455 §5.5.3
        # allows unsolicited Pongs, which say nothing about our Ping).
        if self._ping_payload is not None and payload == self._ping_payload:
            self._ping_payload = None
            self._missed_pongs = 0
            self._pong_deadline = math.inf
            self._ping_interval = self._setting("PING_INTERVAL")
            self._next_ping = time.monotonic() + self._ping_interval
            self._wake_watchdog.set()

    def _watch(self) -> None:
        receive_timeout = self._setting("RECEIVE_TIMEOUT")
        close_timeout = self._setting("CLOSE_TIMEOUT")
        pong_timeout = self._setting("PONG_TIMEOUT")
        max_backoff = self._setting("MAX_BACKOFF")
        connection = self.connection
        while not self._broken and connection.state is not State.CLOSED:
            now = time.monotonic()
            if self._closing_since is not None:
                if now >= self._closing_since + close_timeout:
                    if connection.close_received is not None and connection.close_sent is None:
                        self.close(None if connection.close_received.code == 1005 else connection.close_received.code)
                    logger.debug("closing handshake timed out")
                    self.abort()
                    return
                wake_at = self._closing_since + close_timeout
            else:
                if self.inbox.full:
                    # We stopped reading (backpressure): silence is ours, not the client's.
                    self.last_frame_at = now
                    if self._pong_deadline != math.inf:
                        self._pong_deadline = now + pong_timeout
                if now >= self.last_frame_at + receive_timeout:
                    logger.info("no frame received for %s s: closing", receive_timeout)
                    if not self.close(1001, "receive timeout"):
                        self.abort()
                    continue
                if now >= self._pong_deadline:
                    self._missed_pongs += 1
                    self._ping_payload = None
                    self._pong_deadline = math.inf
                    if self._missed_pongs >= MAX_MISSED_PONGS:
                        logger.info("%d pings unanswered: closing", self._missed_pongs)
                        if not self.close(1001, "ping timeout"):
                            self.abort()
                        continue
                    self._ping_interval = min(self._ping_interval * 2, max_backoff)
                    self._next_ping = now + self._ping_interval
                if now >= self._next_ping and self._ping_payload is None:
                    payload = os.urandom(4)
                    if self.send(connection.send_ping, payload):
                        self._ping_payload = payload
                        self._pong_deadline = now + pong_timeout
                    self._next_ping = math.inf
                wake_at = min(self.last_frame_at + receive_timeout, self._pong_deadline, self._next_ping)
            self._wake_watchdog.clear()
            self._wake_watchdog.wait(None if wake_at == math.inf else max(wake_at - time.monotonic(), 0.0))
