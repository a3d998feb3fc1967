"""One WebSocket connection on a gevent socket: reading, writing and the clock (``Transport`` of ``hosts/base.py``).

A ``GeventTransport`` carries a session's frames over a socket taken over
from the WSGI server. An idle connection costs the session, a deadline and
the socket's watcher, and no greenlet: its loop is parked
(``GreenletEventLoop.run_parked``) and a greenlet of ``runners.py`` runs it
again when the watcher sees the socket readable:

- reading: the greenlet that runs the loop reads the socket itself while
  the loop has nothing else to do (``read_inline``) into a buffer shared by
  every connection of the thread, and gives each read to the session
  (``Session.receive_message``, which hands a message straight to the view).
  While a hook blocks that greenlet in gevent-cooperative code, a standby
  greenlet, started then, reads instead and queues the messages; when the
  queue is full it stops reading, and TCP pushes back on the client;
- writing: any greenlet that sends takes the write lock, asks the core for
  the frame and writes it whole (``Session.send``);
- the session's one deadline (heartbeat, receive timeout, closing
  handshake) is among those of every connection of the thread, on one
  gevent timer (``timers.py``); it is handled in the hub and needs no
  greenlet.

Calls into the core never yield to the gevent hub (they do no I/O), so under
gevent they need no lock of their own (``core_lock`` is a no-op); the write
lock keeps frames whole and in the core's order on the wire.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
from gevent._hub_local import get_hub_if_exists
from gevent.hub import Waiter

from ..base import SessionSide
from ..chunks import send_what_fits
from .loop import NOTHING_READ, READ_ALL, READ_SOME
from .timers import deadlines

__all__ = ["GeventTransport"]

logger = logging.getLogger("duck_ws_sync")

# The size of the receive buffer that the connections of one thread share.
RECEIVE_SIZE = 256 * 1024
_BUFFER_ATTRIBUTE = "_duck_ws_sync_receive_buffer"
# A read at least this large that leaves a frame to come is part of a stream: read on.
STREAMING_READ = 16 * 1024
# The core lock of a gevent connection: calls into the core never yield, so none is needed.
_NO_LOCK = contextlib.nullcontext()


def _receive_buffer(hub: Any) -> memoryview:
    """The receive buffer of ``hub``'s thread.

    Every read is parsed before its greenlet can switch away, and the core
    copies out what it keeps, so one buffer serves every connection.
    """
    buffer: memoryview | None = getattr(hub, _BUFFER_ATTRIBUTE, None)
    if buffer is None:
        buffer = memoryview(bytearray(RECEIVE_SIZE))
        setattr(hub, _BUFFER_ATTRIBUTE, buffer)
    return buffer


class GeventTransport:
    """A session's I/O and clock on a gevent socket.

    Args:
        sock: The client's socket, after the 101 response was written.
        initial_data: Bytes the server read past the upgrade request.
    """

    __slots__ = (
        "_buffer",
        "_deadlines",
        "_hub",
        "_hub_reads",
        "_initial_data",
        "_loop_idle",
        "_raw_socket",
        "_slot",
        "_space",
        "_standby",
        "_standby_waiter",
        "_unhandled",
        "_wake_loop",
        "_watching",
        "direct",
        "read_watcher",
        "session",
        "socket",
        "write_lock",
    )

    core_lock = _NO_LOCK
    shared_core = False

    def __init__(self, sock: socket.socket, initial_data: bytes = b"") -> None:
        self.socket = sock
        self._initial_data = initial_data
        self._hub = hub = gevent.get_hub()
        self._buffer = _receive_buffer(hub)
        self.write_lock = gevent.lock.Semaphore()
        self._deadlines = deadlines(hub)
        self._slot: int | None = None  # the slot of our deadline among the thread's
        self._standby: gevent.Greenlet | None = None
        self._standby_waiter: Waiter | None = None
        self._space: gevent.event.Event | None = None  # a standby reader waits on it while the inbox is full
        self._loop_idle = False
        # While the loop's greenlet waits: how to wake it.
        self._wake_loop: Callable[[bool], None] | None = None
        self._watching = False  # the socket's watcher is started for the waiting loop
        self._hub_reads = False  # ... and calls _read_while_idle, not the loop's wake
        # A read parsed in the hub, for the loop's greenlet: (events, frames, whether output waits).
        self._unhandled: tuple[list[Any], int, bool] | None = None
        # TLS sockets may hold decrypted bytes that polling the descriptor
        # cannot see, so a standby greenlet reads them all along.
        self._raw_socket: Any = getattr(sock, "_sock", None)
        self.direct = self._raw_socket is not None and not callable(getattr(sock, "pending", None))
        # The socket's own watcher (gevent's sockets have one), else one of ours.
        self.read_watcher: Any = getattr(sock, "_read_event", None) or hub.loop.io(sock.fileno(), 1)

    def start(self, session: SessionSide, loop: Any) -> None:
        """Start reading for ``session``; from the loop's greenlet, before the loop runs."""
        self.session = session
        send_timeout = session.limits.send_timeout
        # Sends block at most SEND_TIMEOUT; reads ignore the socket's timeout.
        self.socket.settimeout(None if send_timeout == math.inf else send_timeout)
        session.inbox.on_space = self._space_freed
        if self.direct:
            loop.attach_reader(self)
        else:
            self._standby = gevent.spawn(self._read_standby)
        if self._initial_data:
            data, self._initial_data = self._initial_data, b""
            session.receive(data, direct=False)

    def stop(self) -> None:
        """Stop reading (the session is over)."""
        if self._standby is not None:
            self._standby.kill(block=False)
        self._space_freed()

    # Writing.

    def write_one(self, chunk: bytes | memoryview) -> bool:
        """Write one chunk: one send() when it fits in the socket, the common case; the caller holds the write lock."""
        if not self.direct:
            return self.write([chunk])
        try:
            sent = self._raw_socket.send(chunk)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            logger.debug("connection lost while sending: %s", exc)
            self.session.abort()
            return False
        return sent == len(chunk) or self.write([memoryview(chunk)[sent:]])

    def write(self, chunks: list[Any]) -> bool:
        """Write ``chunks`` whole, waiting at most SEND_TIMEOUT; the caller holds the write lock."""
        try:
            if self.direct:
                if len(chunks) == 1:
                    chunk = chunks[0]
                    sent = self._send_now(chunk)
                    if sent == len(chunk):
                        return True
                    chunks = [memoryview(chunk)[sent:]]
                else:
                    chunks = self.write_what_fits(chunks)
            for chunk in chunks:
                self.socket.sendall(chunk)
        except TimeoutError:
            # The client stopped reading. A frame may be half written, so
            # nothing more can go on this stream: drop TCP.
            logger.info("send timed out after %s s: dropping the connection", self.session.limits.send_timeout)
            self.session.abort()
            return False
        except OSError as exc:
            logger.debug("connection lost while sending: %s", exc)
            self.session.abort()
            return False
        return True

    def _send_now(self, chunk: bytes | memoryview) -> int:
        try:
            return int(self._raw_socket.send(chunk))
        except BlockingIOError:
            return 0

    def write_what_fits(self, chunks: list[Any]) -> list[Any]:
        """Write without waiting; return what did not fit (usually nothing).

        One system call on the raw socket (gevent's sendall would cost a
        getsockopt(SO_SNDBUF) and four Python frames).
        """
        return send_what_fits(self._raw_socket, chunks, True, BlockingIOError)

    def can_write_now(self) -> bool:
        # Only from this hub's thread, and not over TLS (its records must go out whole, from one greenlet).
        return self.direct and get_hub_if_exists() is self._hub

    def hand_over(self, chunks: list[Any]) -> bool:
        # The client is slow to read: a greenlet finishes the frames, holding the write lock until they are out.
        gevent.spawn(self.session.finish_writing, chunks)
        return True

    # The clock: one deadline among the thread's (``timers.py``), handled in the hub.

    def arm(self, wake_at: float) -> None:
        self._slot = self._deadlines.move(self, self._slot, wake_at)

    def on_timer(self) -> None:
        """Our slot came (``Deadlines``)."""
        self._slot = None
        self.session.on_timer()

    def in_background(self, function: Callable[..., Any], *args: Any) -> None:
        gevent.spawn(function, *args)

    def send_from_timer(self, action: Callable[..., None], *args: Any) -> None:
        """Send the heartbeat's Ping from the hub: at once when it fits in the socket, else from a greenlet."""
        if self._watching and not self._hub_reads:
            self._watch(hub_reads=True)  # its Pong is read in the hub, the loop sleeps on
        if self.session.send_nowait(action, *args) is None:
            gevent.spawn(self.session.send, action, *args)

    # Reading. The loop's greenlet reads while it is idle (``read_inline``,
    # called from the loop's wait); a standby greenlet reads while the
    # loop's greenlet is blocked in a hook or a send. They never read at once.

    def loop_idle(self, wake: Callable[[bool], None]) -> None:
        """The loop's greenlet enters its wait: watch the socket for it; ``wake(True)`` when it has work.

        While a Pong is expected (a ping is in flight), the hub reads for
        the waiting loop (``_read_while_idle``) and handles a read of Pongs
        there and then, without a greenlet switch: that is most of what an
        idle connection ever reads. Otherwise the loop's greenlet is woken
        to read itself, the shortest way for messages. An idle loop reads
        again itself: a standby greenlet that waits for the socket ends.
        """
        self._loop_idle = True
        if self._standby_waiter is not None:
            self._end_standby_wait()
        session = self.session
        if self._unhandled is not None:
            self._hub.loop.run_callback(wake, True)
        elif self._standby is None and session.reading and self.direct and not session.inbox.full:
            self._watching = True
            self._wake_loop = wake
            if session.expects_pong:
                self._watch(hub_reads=True)
            else:
                self._hub_reads = False
                self.read_watcher.start(wake, True)

    def _watch(self, hub_reads: bool) -> None:
        """Point the socket's watcher, for the waiting loop, at the hub's read or at the loop's wake."""
        self._hub_reads = hub_reads
        if hub_reads:
            self.read_watcher.start(self._read_while_idle)
        else:
            self.read_watcher.start(self._wake_loop, True)

    def loop_busy(self) -> None:
        """The loop's greenlet leaves its wait."""
        self._loop_idle = False
        if self._watching:
            self._watching = False
            self._hub_reads = False
            self._wake_loop = None
            self.read_watcher.stop()

    def throw(self, *args: Any) -> None:
        """The socket was shut down while the hub read for the idle loop: wake the loop, whose read sees the end.

        gevent cancels the waits on a socket that is shut down by calling
        ``throw`` on the ``__self__`` of its watcher's callback (usually a
        waiting greenlet; here ``_read_while_idle``'s transport).
        """
        if self._hub_reads and self._wake_loop is not None:
            self._wake_loop(True)

    def loop_blocked(self) -> None:
        """The loop's greenlet blocks outside its wait: a standby greenlet reads meanwhile."""
        if self._standby is None and self.session.reading:
            self._standby = gevent.spawn(self._read_standby)

    def read_inline(self) -> int:
        """Read what the socket has, without blocking, in the loop's greenlet (``InlineReader``).

        A read that the hub parsed while the loop waited is acted on first.
        Nothing is read while a standby greenlet reads, after the end, from
        TLS, or while the session is behind (backpressure).
        """
        session = self.session
        unhandled = self._unhandled
        if unhandled is not None:
            self._unhandled = None
            session.act_on(*unhandled, direct=True)
            return READ_ALL  # the hub has just read the socket
        if self._standby is not None or not session.reading or not self.direct or session.inbox.full:
            return NOTHING_READ
        # The rest of a large frame is read straight into its payload.
        target = session.connection.receive_buffer()
        buffer = self._buffer if target is None else target
        try:
            size = self._raw_socket.recv_into(buffer)
        except BlockingIOError:
            return NOTHING_READ
        except OSError as exc:
            logger.debug("connection lost while reading: %s", exc)
            size = 0
        finally:
            if target is not None:
                target.release()
        if not size:
            session.receive(None, direct=True)
            return READ_ALL
        if target is not None:
            session.receive(size, direct=True)
            return READ_SOME
        # The common read: one message, handed to the session at once.
        session.receive_message(buffer[:size])
        # A read that did not fill the buffer most likely took all there was,
        # unless it was a large one that left a frame to come: the client is
        # still writing it, and reading again at once (into its payload)
        # beats a trip through the hub.
        if size == len(buffer) or (size >= STREAMING_READ and session.connection.payload_to_come):
            return READ_SOME
        return READ_ALL

    def _read_standby(self) -> None:
        """Read in a greenlet of its own, until the loop's greenlet is idle again (TLS: until the end)."""
        buffer = self._buffer
        session = self.session
        try:
            while session.reading and not (self.direct and self._loop_idle):
                try:
                    size = self._recv_standby(buffer)
                except OSError as exc:
                    logger.debug("connection lost while reading: %s", exc)
                    size = 0
                if size is None:
                    break  # the loop's greenlet is idle: it reads again
                session.receive(buffer[:size] if size else None, direct=False)
                self._wait_for_space()
        finally:
            self._standby = None
            if session.reading:
                session.inbox.wake_consumer()  # the idle loop was not watching the socket

    def _wait_for_space(self) -> None:
        """While the session is behind, read nothing: TCP pushes back on the client."""
        session = self.session
        while session.inbox.full and session.reading:
            space = self._space
            if space is None:
                space = self._space = gevent.event.Event()
            space.clear()
            space.wait()

    def _space_freed(self) -> None:
        if self._space is not None:
            self._space.set()

    def _recv_standby(self, buffer: memoryview) -> int | None:
        """Read into ``buffer``, waiting for data; None when the loop's greenlet went idle meanwhile."""
        if not self.direct:
            while True:
                try:
                    return self.socket.recv_into(buffer)
                except TimeoutError:
                    continue  # the socket's timeout is for sends (SEND_TIMEOUT)
        while True:
            try:
                return int(self._raw_socket.recv_into(buffer))
            except BlockingIOError:
                pass
            waiter = self._standby_waiter = Waiter(self._hub)
            self.read_watcher.start(waiter.switch, True)
            try:
                readable = waiter.get()
            except OSError:
                readable = True  # the socket was shut down (see ``_Wakeup.select``)
            finally:
                self._standby_waiter = None
                self.read_watcher.stop()
            if not readable:
                return None

    def _read_while_idle(self) -> None:
        """The socket is readable while the loop's greenlet waits (in the hub: nothing here may block).

        A read of Pongs only (the heartbeat's answers) is handled here,
        unless MAX_MESSAGE_RATE counts them; anything else is parsed and
        left to the loop's greenlet, which is woken, as it is for the end
        of the stream.
        """
        wake = self._wake_loop
        assert wake is not None
        try:
            size = self._raw_socket.recv_into(self._buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            logger.debug("connection lost while reading: %s", exc)
            size = 0
        if size:  # else the loop's greenlet reads the end again
            session = self.session
            data = self._buffer[:size]
            if session.take_pong(data):
                return  # the heartbeat's answer: nothing for the loop
            events, frames, flush = session.parse(data)
            if session.take_pongs(events, flush):
                return  # nothing for the loop: it waits on
            self._unhandled = (events, frames, flush)
        wake(True)

    def _end_standby_wait(self) -> None:
        waiter = self._standby_waiter
        if waiter is not None:
            self._standby_waiter = None
            self._hub.loop.run_callback(waiter.switch, False)

    def reading_ended(self) -> None:
        if self._loop_idle:
            self._end_standby_wait()
        self._space_freed()

    def linger(self) -> None:
        """End TCP without losing our last frame: half-close, drain, then shut both ways (RFC 6455 §7.1.1).

        The socket is shut down, not closed: after this nothing can be written
        on it, and the server that owns the descriptor sees end-of-stream and
        closes it (gunicorn's keep-alive loop would otherwise read from a
        closed descriptor).
        """
        sock = self.socket
        if not self.session.broken:
            self.session.end_writes()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
                with gevent.Timeout(min(self.session.limits.close_timeout, 2.0), False):
                    while sock.recv_into(self._buffer):
                        pass
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
