"""One WebSocket connection on a gevent socket: reading and writing.

A ``Transport`` drives a sans-I/O ``ServerConnection`` over a socket taken
over from the WSGI server. An idle connection costs one greenlet (the
request's, which runs the view's loop), the protocol state and a deadline:

- reading: while the loop's greenlet has nothing to do it reads the socket
  itself (``read_inline``, from the loop's wait) into a buffer shared by
  every connection of the thread, and hands messages to the session
  (``Inbox.deliver``). While a hook blocks that greenlet in
  gevent-cooperative code, a standby greenlet, started then, reads instead
  and queues the messages; when the queue is full it stops reading, and TCP
  pushes back on the client;
- writing: any greenlet that sends takes the write lock, asks the core for
  the frame and writes it whole;
- heartbeat pings, the receive timeout and the deadline of a closing
  handshake run on deadlines, whose handler runs in the hub and needs no
  greenlet (``Heartbeat``, in ``heartbeat.py``, which
  ``Transport`` extends).

Calls into the core never yield to the gevent hub (they do no I/O), so under
gevent they need no lock of their own; the write lock keeps frames whole and
in the core's order on the wire.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.lock
from gevent._hub_local import get_hub_if_exists
from gevent.hub import Waiter

from .channel import MAX_GATHER, Channel, unsent
from .exceptions import LocalProtocolError
from .inbox import Inbox
from .loop import NOTHING_READ, READ_ALL, READ_SOME
from .protocol import Message, Pong, ServerConnection
from .timers import deadlines

__all__ = ["Transport"]

logger = logging.getLogger("duck_ws_sync")

# The size of the receive buffer that the connections of one thread share.
RECEIVE_SIZE = 256 * 1024
_BUFFER_ATTRIBUTE = "_duck_ws_sync_receive_buffer"


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


class Transport(Channel):
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

    __slots__ = (
        "_buffer",
        "_deadlines",
        "_hub",
        "_hub_reads",
        "_initial_data",
        "_inline",
        "_loop_idle",
        "_raw_socket",
        "_standby",
        "_standby_waiter",
        "_unhandled",
        "_wake_loop",
        "_watching",
        "read_watcher",
    )

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
        self._hub = hub = gevent.get_hub()
        self._buffer = _receive_buffer(hub)
        self._write_lock = gevent.lock.Semaphore()
        self._broken = False  # the socket failed or was aborted
        self._deadlines = deadlines(hub)
        self._start_clock(settings, time.monotonic())
        send_timeout = self._limits.send_timeout
        # Sends block at most SEND_TIMEOUT; reads ignore the socket's timeout.
        sock.settimeout(None if send_timeout == math.inf else send_timeout)
        self._standby: gevent.Greenlet | None = None
        self._standby_waiter: Waiter | None = None
        self._reading_done = False
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
        self._inline = self._raw_socket is not None and not callable(getattr(sock, "pending", None))
        # The socket's own watcher (gevent's sockets have one), else one of ours.
        self.read_watcher: Any = getattr(sock, "_read_event", None) or hub.loop.io(sock.fileno(), 1)

    def start(self, loop: Any) -> None:
        """Start reading and the deadlines.

        Must be called from the loop's greenlet, before the loop runs.
        """
        if self._inline:
            loop.attach_reader(self)
        else:
            self._standby = gevent.spawn(self._read_standby)
        if self._initial_data:
            data, self._initial_data = self._initial_data, b""
            self._receive(data, direct=False)
        self._schedule()

    def stop(self) -> None:
        """Stop reading and the deadlines (the session is over)."""
        self._reading_done = True
        if self._standby is not None:
            self._standby.kill(block=False)
        self._stop_clock()

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
            connection = self.connection
            if self._inline and connection.close_sent is None:
                chunks = connection.data_to_send()
                if len(chunks) == 1:
                    return self._write_one(chunks[0])
                return self._write(chunks)
            return self._flush()

    def send_text(self, data: str | bytes, fragment_size: int | None) -> bool:
        """Send a text message, as ``send(connection.send_text, ...)`` does.

        A chat's message, when no other send is writing, is framed by the
        core straight into one send(): no queue, no ``data_to_send``.
        """
        lock = self._write_lock
        if not self._inline or not lock.acquire(blocking=False):
            return self.send(self.connection.send_text, data, fragment_size)
        try:
            if self._broken:
                logger.debug("not sending on a closed connection")
                return False
            try:
                frame = self.connection.send_text_now(data, fragment_size)
            except LocalProtocolError as exc:
                logger.debug("not sending: %s", exc)
                return False
            return self._flush() if frame is None else self._write_one(frame)
        finally:
            lock.release()

    def _write_one(self, chunk: bytes | memoryview) -> bool:
        """Write one chunk: one send() when it fits in the socket, the common case; the caller holds the write lock."""
        try:
            sent = self._raw_socket.send(chunk)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            logger.debug("connection lost while sending: %s", exc)
            self.abort()
            return False
        return sent == len(chunk) or self._write([memoryview(chunk)[sent:]])

    def _flush(self) -> bool:
        """Write what the core has queued; the caller holds the write lock."""
        connection = self.connection
        if connection.close_sent is not None:
            self._closing_starts()
        return self._write(connection.data_to_send())

    def _write(self, chunks: list[Any]) -> bool:
        """Write ``chunks`` whole, waiting at most SEND_TIMEOUT; the caller holds the write lock."""
        try:
            if self._inline:
                chunks = self._write_what_fits(chunks)
            for chunk in chunks:
                self.socket.sendall(chunk)
        except TimeoutError:
            # The client stopped reading. A frame may be half written, so
            # nothing more can go on this stream: drop TCP.
            logger.info("send timed out after %s s: dropping the connection", self._limits.send_timeout)
            self.abort()
            return False
        except OSError as exc:
            logger.debug("connection lost while sending: %s", exc)
            self.abort()
            return False
        return True

    def _write_what_fits(self, chunks: list[Any]) -> list[Any]:
        """Write without waiting; return what did not fit (usually nothing).

        One system call: send() for one chunk (gevent's sendall would cost a
        getsockopt(SO_SNDBUF) and four Python frames), sendmsg() for a
        large frame's header and payload together (one TCP segment less).
        """
        if not chunks:
            return []
        batch = chunks[:MAX_GATHER]
        try:
            sent = self._raw_socket.send(batch[0]) if len(batch) == 1 else self._raw_socket.sendmsg(batch)
        except BlockingIOError:
            sent = 0
        return unsent(chunks, sent)

    # The clock: one deadline among the thread's (``timers.py``), handled in the hub.

    def _arm(self, wake_at: float) -> None:
        self._timer = self._deadlines.move(self, self._timer, wake_at)

    def _disarm(self) -> None:
        self._deadlines.remove(self, self._timer)
        self._timer = None

    def _in_background(self, function: Callable[..., Any], *args: Any) -> None:
        gevent.spawn(function, *args)

    def _send_from_timer(self, action: Callable[..., None], *args: Any) -> None:
        """Send the heartbeat's Ping from the hub: at once when it fits in the socket, else from a greenlet."""
        if self._watching and not self._hub_reads:
            self._watch(hub_reads=True)  # its Pong is read in the hub, the loop sleeps on
        if self.send_nowait(action, *args) is None:
            gevent.spawn(self.send, action, *args)

    def _can_send_now(self) -> bool:
        # Only from this hub's thread, and not over TLS (its records must go out whole, from one greenlet).
        return self._inline and get_hub_if_exists() is self._hub

    def _hand_over(self, chunks: list[Any]) -> bool:
        # The client is slow to read: a greenlet finishes the frames, holding the write lock until they are out.
        gevent.spawn(self._finish_writing, chunks)
        return True

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
        if self._unhandled is not None:
            self._hub.loop.run_callback(wake, True)
        elif self._standby is None and not self._reading_done and self._inline and not self.inbox.full:
            self._watching = True
            self._wake_loop = wake
            if self._ping_payload is not None or self._pings:
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
        if self._standby is None and not self._reading_done:
            self._standby = gevent.spawn(self._read_standby)

    def read_inline(self) -> int:
        """Read what the socket has, without blocking, in the loop's greenlet (``InlineReader``).

        A read that the hub parsed while the loop waited is acted on first.
        Nothing is read while a standby greenlet reads, after the end, from
        TLS, or while the session is behind (backpressure).
        """
        unhandled = self._unhandled
        if unhandled is not None:
            self._unhandled = None
            self._act_on(*unhandled, direct=True)
            return READ_ALL  # the hub has just read the socket
        if self._standby is not None or self._reading_done or not self._inline or self.inbox.full:
            return NOTHING_READ
        connection = self.connection
        # The rest of a large frame is read straight into its payload.
        target = connection.receive_buffer()
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
            self._receive(None, direct=True)
            return READ_ALL
        if target is not None:
            self._receive(size, direct=True)
            return READ_SOME
        # The common read: one message, handed to the session at once.
        frames = connection.frames_received
        message = connection.receive_message(buffer[:size])
        if message is not None and self._rate is None:
            self.last_frame_at = time.monotonic()
            self.inbox.deliver([message])
        else:
            self._received(message, frames, direct=True)
        # A read that did not fill the buffer most likely took all there was.
        return READ_ALL if size < len(buffer) else READ_SOME

    def _read_standby(self) -> None:
        """Read in a greenlet of its own, until the loop's greenlet is idle again (TLS: until the end)."""
        buffer = self._buffer
        try:
            while not self._reading_done and not (self._inline and self._loop_idle):
                try:
                    size = self._recv_standby(buffer)
                except OSError as exc:
                    logger.debug("connection lost while reading: %s", exc)
                    size = 0
                if size is None:
                    break  # the loop's greenlet is idle: it reads again
                self._receive(buffer[:size] if size else None, direct=False)
        finally:
            self._standby = None
            if not self._reading_done:
                self.inbox.wake_consumer()  # the idle loop was not watching the socket

    def _recv_standby(self, buffer: memoryview) -> int | None:
        """Read into ``buffer``, waiting for data; None when the loop's greenlet went idle meanwhile."""
        if not self._inline:
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

    def _receive(self, data: memoryview | bytes | int | None, direct: bool) -> None:
        """Feed one read to the core (None: end of stream) and act on the events.

        An int is the count of bytes read into ``connection.receive_buffer()``.

        ``direct``: the loop's greenlet reads, between two iterations, and
        may hand messages straight to the session (``Inbox.deliver``).
        """
        connection = self.connection
        if data is None:
            connection.receive_eof()
            self._end_of_reading()
            return
        frames = connection.frames_received
        if isinstance(data, int):
            connection.received_into(data)
            message = None
        else:
            message = connection.receive_message(data)
        self._received(message, frames, direct)

    def _received(self, message: Message | None, frames: int, direct: bool) -> None:
        """Act on a read the core has parsed: ``message`` when it held one alone, else its events.

        ``frames``: the core's count of frames received before the read.
        """
        connection = self.connection
        frames = connection.frames_received - frames
        if frames:
            self.last_frame_at = time.monotonic()
        events = connection.events_received() if message is None else [message]
        self._act_on(events, frames, connection.has_data_to_send, direct)

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
            connection = self.connection
            frames_sent = connection.frames_sent
            frames = self._feed(self._buffer[:size])
            events = connection.events_received()
            flush = connection.frames_sent != frames_sent
            if not flush and self._rate is None and (not events or type(events[0]) is Pong):
                pongs = [event.payload for event in events if type(event) is Pong]
                if len(pongs) == len(events) and not connection.input_ended:
                    for payload in pongs:
                        self._receive_pong(payload)
                    return  # nothing for the loop: it waits on
            self._unhandled = (events, frames, flush)
        wake(True)

    def _end_standby_wait(self) -> None:
        waiter = self._standby_waiter
        if waiter is not None:
            self._standby_waiter = None
            self._hub.loop.run_callback(waiter.switch, False)

    def _reading_ended(self) -> None:
        if self._loop_idle:
            self._end_standby_wait()

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
                with gevent.Timeout(min(self._limits.close_timeout, 2.0), False):
                    while sock.recv_into(self._buffer):
                        pass
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
