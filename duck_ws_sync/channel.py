"""What every transport does, whatever its host: feed reads to the core and act on what it says.

``Channel`` is the host-neutral half of a transport. The gevent host's
``Transport`` (``transport.py``) and the thread host's ``ThreadTransport``
(``threads/transport.py``) extend it with their reading, writing and clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .exceptions import LocalProtocolError
from .heartbeat import Heartbeat
from .inbox import END
from .protocol import Message, Pong, State
from .ratelimit import REASON as RATE_EXCEEDED
from .ratelimit import MessageRate

if TYPE_CHECKING:
    from .inbox import Inbox
    from .protocol import ServerConnection

__all__ = ["MAX_GATHER", "Channel", "unsent"]

logger = logging.getLogger("duck_ws_sync")

# linux/sockios.h: bytes in a socket's send queue not sent yet.
_SIOCOUTQNSD = 0x894B
# Chunks written by one sendmsg() (far below any system's IOV_MAX).
MAX_GATHER = 64


def unsent(chunks: list[Any], sent: int) -> list[Any]:
    """What is left of ``chunks`` to write after the first ``sent`` bytes went out."""
    for index, chunk in enumerate(chunks):
        size = len(chunk)
        if sent < size:
            return [memoryview(chunk)[sent:] if sent else chunk, *chunks[index + 1 :]]
        sent -= size
    return []


class Channel(Heartbeat):
    """A socket, its protocol core, the inbox its messages go to, and the deadlines (``Heartbeat``)."""

    __slots__ = ("_broken", "_rate", "_reading_done", "_write_lock", "connection", "inbox", "socket")

    socket: socket.socket
    connection: ServerConnection
    inbox: Inbox
    _write_lock: Any  # held while frames are written: they go out whole, in the core's order

    def _start_clock(self, settings: Any, now: float) -> None:
        super()._start_clock(settings, now)
        rate = getattr(settings, "MAX_MESSAGE_RATE", None)
        self._rate = MessageRate(rate, settings._client_and_path(), now) if rate else None

    def send(self, action: Callable[..., None], *args: Any) -> bool:
        """Call a sending method of the core and write its frames; False when nothing could be sent."""
        raise NotImplementedError

    def send_text(self, data: str | bytes, fragment_size: int | None) -> bool:
        """Send a text message; False when it could not be sent."""
        return self.send(self.connection.send_text, data, fragment_size)

    def _flush(self) -> bool:
        """Write what the core has queued; the caller holds the write lock."""
        raise NotImplementedError

    def send_nowait(self, action: Callable[..., None], *args: Any) -> bool | None:
        """Call a sending method of the core and write its frames without waiting.

        Returns:
            None when nothing was done: another send holds the write lock, or
            the host cannot write from here (send the message later, with
            ``send``). Else whether the frames were taken: what the socket
            could not take at once is finished by the host (``_hand_over``),
            which holds the write lock until it is out.
        """
        lock = self._write_lock
        if not self._can_send_now() or not lock.acquire(blocking=False):
            return None
        handed_over = False
        try:
            if self._broken:
                return False
            try:
                with self._core_guard():
                    action(*args)
                    closing = self.connection.close_sent is not None
                    chunks = self.connection.data_to_send()
            except LocalProtocolError as exc:
                logger.debug("not sending: %s", exc)
                return False
            if closing:
                self._closing_starts()
            try:
                rest = self._write_what_fits(chunks)
            except OSError as exc:
                logger.debug("connection lost while sending: %s", exc)
                self.abort()
                return False
            if rest:
                handed_over = self._hand_over(rest)
                if not handed_over:
                    self.abort()
                    return False
            return True
        finally:
            if not handed_over:
                lock.release()

    def _finish_writing(self, chunks: list[Any]) -> None:
        """Write ``chunks`` and release the write lock, which ``send_nowait`` handed over."""
        try:
            self._write(chunks)
        finally:
            self._write_lock.release()

    def _can_send_now(self) -> bool:
        """Whether ``send_nowait`` may write from the calling thread."""
        raise NotImplementedError

    def _hand_over(self, chunks: list[Any]) -> bool:
        """Have ``chunks`` written (``_finish_writing``) where waiting is allowed; False if that cannot be."""
        raise NotImplementedError

    def _write_what_fits(self, chunks: list[Any]) -> list[Any]:
        """Write without waiting; return what did not fit."""
        raise NotImplementedError

    def _write(self, chunks: list[Any]) -> bool:
        """Write ``chunks`` whole, waiting at most SEND_TIMEOUT; the caller holds the write lock."""
        raise NotImplementedError

    def _reading_ended(self) -> None:
        """Reading is over (the host may have a reader to stop)."""

    def close(self, code: int | None = 1000, reason: str = "") -> bool:
        """Send a Close frame (start the closing handshake, or answer the client's)."""
        return self.send(self.connection.send_close, code, reason)

    def fail(self, code: int = 1011, reason: str = "") -> bool:
        """Fail the connection: a Close if none was sent yet, then no more frames."""
        return self.send(self.connection.fail, code, reason)

    def unsent_bytes(self) -> int:
        """Bytes written to the socket that TCP could not send yet (the client's window is full); 0 where unknown.

        Linux's SIOCOUTQNSD: what is in flight (sent, not yet acknowledged)
        does not count, so a fast client far away is not "behind".
        """
        try:
            answer = fcntl.ioctl(self.socket.fileno(), _SIOCOUTQNSD, b"\0\0\0\0")
        except (OSError, ValueError, AttributeError):
            return 0
        return int(struct.unpack("i", answer)[0])

    def fail_now(self, code: int, reason: str = "") -> None:
        """Fail the connection without writing: the core records our Close (for ``on_close``), TCP is dropped.

        For a client that stopped reading in the middle of a frame, where
        no Close can follow; from the connection's own loop.
        """
        with self._core_guard(), contextlib.suppress(LocalProtocolError):
            self.connection.fail(code, reason)
        self.abort()

    def _core_guard(self) -> Any:
        """What guards the protocol core against other threads (nothing: one thread uses it)."""
        return contextlib.nullcontext()

    def abort(self) -> None:
        """Drop TCP at once; the reader sees the end and stops."""
        if self._broken:
            return
        self._broken = True
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)

    def _feed(self, data: memoryview | bytes | int) -> int:
        """Give one read to the core (an int: that many bytes read into its ``receive_buffer()``).

        Returns:
            How many whole frames the read completed.
        """
        connection = self.connection
        frames = connection.frames_received
        if isinstance(data, int):
            connection.received_into(data)
        else:
            connection.receive_data(data)
        frames = connection.frames_received - frames
        if frames:
            self.last_frame_at = time.monotonic()
        return frames

    def _act_on(self, events: list[Any], frames: int, flush: bool, direct: bool) -> None:
        """Act on the events of one read: write what the core queued (``flush``), then hand over the messages.

        ``frames``: how many whole frames the read completed, each of which
        counts against MAX_MESSAGE_RATE (data, continuation, Ping or Pong:
        a flood of any of them costs the worker as much).
        ``direct``: called between two iterations of the session's loop, in
        its thread, so messages may go straight to the session
        (``Inbox.deliver``).
        """
        connection = self.connection
        if flush:  # pongs, or a Close (1009)
            with self._write_lock:
                if not self._broken:
                    self._flush()
        if len(events) != 1 or type(events[0]) is not Message:
            for event in events:
                if type(event) is Pong:
                    self._receive_pong(event.payload)
            events = [event for event in events if type(event) is Message]
        ended = connection.input_ended
        if ended and connection.state is State.OPEN:
            # The client's Close, or a protocol error: our Close is due
            # within CLOSE_TIMEOUT, after the messages that came before.
            self._closing_starts()
        if frames and self._rate is not None and not self._rate.take(frames, time.monotonic()):
            events = []
            if not ended and connection.close_sent is None:
                self._rate.log_exceeded()
                self.close(1008, RATE_EXCEEDED)  # what follows is dropped until the client's Close
        if events:
            if direct:
                self.inbox.deliver(events)
            else:
                for message in events:
                    self.inbox.put(message)
        if ended:
            self._end_of_reading()

    def _end_of_reading(self) -> None:
        if not self._reading_done:
            self._reading_done = True
            self._fail_pings()
            self.inbox.put(END, wait=False)
            self._reading_ended()
