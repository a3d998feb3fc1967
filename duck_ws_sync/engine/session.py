"""``Session``: one WebSocket connection, whatever host serves it.

A session owns the connection's protocol core (``ServerConnection``), its
inbox (messages on their way to the view), its deadlines (``Clock``), its
rate limit, its outbox of broadcasts and its groups. It is the message path,
once for every host:

- a host's transport reads the socket and gives each read to ``receive``
  (or, on a host whose core is used by one thread only, the common read of
  one whole message to ``receive_message``); the session parses it, writes
  what the core answers (Pongs, a Close), counts the frames against
  ``MAX_MESSAGE_RATE`` and hands the messages to the view (``Inbox``);
- the view sends through ``send``, ``send_text`` and ``send_nowait``: the
  session asks the core for the frames and has the transport write them
  whole, in the core's order, under the write lock.

What a host provides, the ``Transport`` of ``hosts/base.py``, is the I/O and
the clock: write, write without waiting, finish writing elsewhere, run
something that may block, arm the one deadline, close the socket.
``lifecycle.run`` runs a session from its first read to its ``on_close``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..exceptions import LocalProtocolError
from ..protocol import Extension, Message, OpCode, Pong, ServerConnection, State
from .clock import Clock
from .inbox import END, Inbox
from .ratelimit import REASON as RATE_EXCEEDED
from .ratelimit import MessageRate

if TYPE_CHECKING:
    from ..hosts.base import Transport

__all__ = ["Endpoint", "Hooks", "Session", "Upgrade"]

logger = logging.getLogger("duck_ws_sync")

# linux/sockios.h: bytes in a socket's send queue not sent yet.
_SIOCOUTQNSD = 0x894B


class Endpoint(Protocol):
    """What a session reads of its view: the settings (class attributes), the extensions and subprotocol."""

    PING_INTERVAL: ClassVar[float | None]
    PONG_TIMEOUT: ClassVar[float]
    MAX_BACKOFF: ClassVar[float]
    RECEIVE_TIMEOUT: ClassVar[float | None]
    MAX_FRAME_SIZE: ClassVar[int | None]
    MAX_MESSAGE_SIZE: ClassVar[int | None]
    CLOSE_TIMEOUT: ClassVar[float]
    SEND_TIMEOUT: ClassVar[float | None]
    RECEIVE_QUEUE_SIZE: ClassVar[int]
    MAX_MESSAGE_RATE: ClassVar[float | None]
    BROADCAST_BUFFER: ClassVar[int]

    @property
    def extensions(self) -> Sequence[Extension]: ...

    @property
    def subprotocol(self) -> str | None: ...


class Upgrade(Protocol):
    """The upgrade request as the middleware read it: the client's address (behind a trusted proxy, the
    client's it forwarded) and the path, for the logs."""

    @property
    def client_address(self) -> tuple[str, int]: ...

    @property
    def path(self) -> str: ...


class Hooks(Protocol):
    """What runs above a session (``views.py``'s ``VIEW_HOOKS`` runs a view's hooks): one object for every session."""

    def serve(self, session: Session) -> Coroutine[Any, Any, None]:
        """The coroutine that serves the messages: it awaits ``session.inbox.get()`` until ``END``."""

    def closed(self, session: Session) -> Coroutine[Any, Any, None]:
        """The coroutine that runs last, once the connection has ended (``on_close``)."""


class Session(Clock):
    """One connection: its protocol core, inbox, deadlines, rate limit, outbox and groups; the message path.

    Args:
        endpoint: The view, for its settings.
        upgrade: The upgrade request, for the client's address and the path in the logs.
        hooks: What serves the messages and runs last (the view's hooks).

    Attributes:
        connection: The protocol core.
        inbox: The messages on their way to ``serve``'s coroutine.
        loop: The connection's event loop, once the session runs.
        groups: The topics this connection is a member of (``groups.py``: its groups, with their presence
            info, and its user's), None before the first.
        user_id: Whose connection this is (``WebSocketView.user_id``), None for nobody's.
        outbox: Broadcasts waiting for this connection (``outbox.py``), None until one has to wait.
        runner: What runs the session on its host (a greenlet, a thread's ident), for shutting down.
        reading: Whether the client's frames are still read.
        expects_pong: Whether a Ping of ours waits for its Pong (``Clock``).
    """

    __slots__ = (
        "_broken",
        "_core_lock",
        "_direct",
        "_rate",
        "_shared_core",
        "_transport",
        "_write_lock",
        "connection",
        "endpoint",
        "groups",
        "hooks",
        "inbox",
        "loop",
        "opened_at",
        "outbox",
        "reading",
        "runner",
        "upgrade",
        "user_id",
    )

    def __init__(self, endpoint: Endpoint, upgrade: Upgrade, hooks: Hooks) -> None:
        self.endpoint = endpoint
        self.upgrade = upgrade
        self.hooks = hooks
        self.connection = ServerConnection(
            max_frame_size=endpoint.MAX_FRAME_SIZE,
            max_message_size=endpoint.MAX_MESSAGE_SIZE,
            extensions=endpoint.extensions,
            answer_close_at_once=False,
        )
        self.groups: dict[str, Any] | None = None
        self.user_id: str | int | None = None
        self.outbox: Any = None  # an Outbox (outbox.py), which imports this module
        self.loop: Any = None
        self.runner: Any = None
        self.opened_at = 0.0
        self._broken = False  # the socket failed or was aborted
        # The client's frames are still read (its Close, the end of TCP or a failure ends it).
        self.reading = True

    def start(self, loop: Any, transport: Transport) -> None:
        """Start serving on the connection's ``loop``, through its host's ``transport``: reading and the clock."""
        endpoint = self.endpoint
        now = self.opened_at = time.monotonic()
        self.loop = loop
        self.inbox = Inbox(loop, endpoint.RECEIVE_QUEUE_SIZE)
        self._transport = transport
        self._write_lock = transport.write_lock
        self._core_lock = transport.core_lock
        self._direct = transport.direct
        self._shared_core = transport.shared_core
        self._start_clock(endpoint, now)
        rate = endpoint.MAX_MESSAGE_RATE
        self._rate = MessageRate(rate, self.where, now) if rate else None
        transport.start(self, loop)
        self.schedule()

    @property
    def name(self) -> str:
        """The view's class name, for the logs."""
        return type(self.endpoint).__name__

    @property
    def where(self) -> tuple[str, int, str]:
        """The client's address and port, and the path, for the logs."""
        host, port = self.upgrade.client_address
        return host, port, self.upgrade.path

    @property
    def state(self) -> State:
        """``OPEN``, ``CLOSING`` (either side's Close, or the client's input ended) or ``CLOSED``."""
        connection = self.connection
        if connection.state is State.OPEN and connection.input_ended:
            return State.CLOSING
        return connection.state

    @property
    def socket(self) -> socket.socket:
        """The client's socket."""
        return self._transport.socket

    # Sending, from any greenlet or thread.

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
                with self._core_lock:
                    action(*args)
            except LocalProtocolError as exc:
                logger.debug("not sending: %s", exc)
                return False
            return self._flush()

    def send_text(self, data: str | bytes, fragment_size: int | None) -> bool:
        """Send a text message, as ``send(connection.send_text, ...)`` does.

        Where the transport writes from the sending greenlet (``direct``) and
        no other send is writing, a short message is framed by the core
        straight into one write: no queue, no ``data_to_send``.
        """
        lock = self._write_lock
        if not self._direct or not lock.acquire(False):
            return self.send(self.connection.send_text, data, fragment_size)
        try:
            if self._broken:
                logger.debug("not sending on a closed connection")
                return False
            try:
                if self._shared_core:
                    core_lock = self._core_lock
                    core_lock.acquire()  # not ``with``: half the cost, on every message
                    try:
                        frame = self.connection.send_text_now(data, fragment_size)
                    finally:
                        core_lock.release()
                else:  # the commonest send: no lock to take
                    frame = self.connection.send_text_now(data, fragment_size)
            except LocalProtocolError as exc:
                logger.debug("not sending: %s", exc)
                return False
            return self._flush() if frame is None else self._transport.write_one(frame)
        finally:
            lock.release()

    def send_message(self, data: str | bytes | bytearray | memoryview, opcode: int) -> bool:
        """Send a text or binary message, in fragments of ``MAX_FRAME_SIZE`` beyond that size."""
        fragment_size = self.endpoint.MAX_FRAME_SIZE
        if opcode == OpCode.TEXT:
            return self.send_text(data, fragment_size)  # type: ignore[arg-type]
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.send(self.connection.send_message, OpCode(opcode), data, fragment_size)

    def send_nowait(self, action: Callable[..., None], *args: Any) -> bool | None:
        """Call a sending method of the core and write its frames without waiting.

        Returns:
            None when nothing was done: another send holds the write lock, or
            the host cannot write from here (send the message later, with
            ``send``). Else whether the frames were taken: what the socket
            could not take at once is finished by the host
            (``Transport.hand_over``), which holds the write lock until it is out.
        """
        lock = self._write_lock
        if not self._transport.can_write_now() or not lock.acquire(False):
            return None
        written = False
        try:
            if self._broken:
                return False
            try:
                with self._core_lock:
                    action(*args)
                    closing = self.connection.close_sent is not None
                    chunks = self.connection.data_to_send()
            except LocalProtocolError as exc:
                logger.debug("not sending: %s", exc)
                return False
            if closing:
                self._closing_starts()
            written = True
            return self._write_nowait(chunks)
        finally:
            if not written:
                lock.release()

    def send_frame_nowait(self, frame: bytes) -> bool | None:
        """Write a whole message's one frame, built by the caller, without waiting (``ServerConnection.take_frame``).

        A broadcast frames its message once for every member that takes it
        this way: one system call per member, no framing. Returns what
        ``send_nowait`` returns, and None too when the core would frame the
        message otherwise (an extension, bytes queued before it): send it
        the usual way then.
        """
        lock = self._write_lock
        if not self._transport.can_write_now() or not lock.acquire(False):
            return None
        connection = self.connection
        with self._core_lock:
            # A client whose Close came gets no more broadcasts (``state`` is CLOSING).
            taken = not self._broken and not connection.input_ended and connection.take_frame(len(frame))
        if not taken:
            lock.release()
            return False if self._broken else None
        return self._write_nowait([frame])

    def _write_nowait(self, chunks: list[Any]) -> bool:
        """Write what the socket takes at once, hand the rest to the host; release the write lock or hand it over."""
        transport = self._transport
        handed_over = False
        try:
            try:
                rest = transport.write_what_fits(chunks)
            except OSError as exc:
                logger.debug("connection lost while sending: %s", exc)
                self.abort()
                return False
            if rest:
                handed_over = transport.hand_over(rest)
                if not handed_over:
                    self.abort()
                    return False
            return True
        finally:
            if not handed_over:
                self._write_lock.release()

    def finish_writing(self, chunks: list[Any]) -> None:
        """Write ``chunks`` and release the write lock, which ``send_nowait`` handed over (``Transport.hand_over``)."""
        try:
            self._transport.write(chunks)
        finally:
            self._write_lock.release()

    def _flush(self) -> bool:
        """Write what the core has queued; the caller holds the write lock."""
        connection = self.connection
        with self._core_lock:
            closing = connection.close_sent is not None
            chunks = connection.data_to_send()
        if closing:
            self._closing_starts()
        return self._transport.write(chunks)

    def close(self, code: int | None = 1000, reason: str = "") -> bool:
        """Send a Close frame (start the closing handshake, or answer the client's)."""
        return self.send(self.connection.send_close, code, reason)

    def fail(self, code: int = 1011, reason: str = "") -> bool:
        """Fail the connection: a Close if none was sent yet, then no more frames."""
        return self.send(self.connection.fail, code, reason)

    def fail_now(self, code: int, reason: str = "") -> None:
        """Fail the connection without writing: the core records our Close (for ``on_close``), TCP is dropped.

        For a client that stopped reading in the middle of a frame, where
        no Close can follow; from the connection's own loop.
        """
        with self._core_lock, contextlib.suppress(LocalProtocolError):
            self.connection.fail(code, reason)
        self.abort()

    def abort(self) -> None:
        """Drop TCP at once; the reader sees the end and stops."""
        if self._broken:
            return
        self._broken = True
        with contextlib.suppress(OSError):
            self._transport.socket.shutdown(socket.SHUT_RDWR)

    def end_writes(self) -> None:
        """Nothing more is written (the transport ends TCP)."""
        self._broken = True

    @property
    def broken(self) -> bool:
        """Whether the socket failed or was dropped: nothing more can be written."""
        return self._broken

    def unsent_bytes(self) -> int:
        """Bytes written to the socket that TCP could not send yet (the client's window is full); 0 where unknown.

        Linux's SIOCOUTQNSD: what is in flight (sent, not yet acknowledged)
        does not count, so a fast client far away is not "behind".
        """
        try:
            answer = fcntl.ioctl(self._transport.socket.fileno(), _SIOCOUTQNSD, b"\0\0\0\0")
        except (OSError, ValueError, AttributeError):
            return 0
        return int(struct.unpack("i", answer)[0])

    # Receiving, from the transport's reader.

    def receive_message(self, data: memoryview | bytes) -> bool:
        """Take one read, the shortest way when it holds one whole message alone (the common read).

        For a reader between two iterations of the session's loop, in its
        thread: the message goes straight to the view (``Inbox.deliver``).
        Any other read goes the general way, as ``receive(data, direct=True)``.
        Where other threads use the core too (``shared_core``), only the one
        call into C is made under the core lock.

        Returns:
            True when the read is known to have ended with a frame (on a
            shared core: it was one whole message, taken in C), so no frame
            is partway and ``connection.receive_buffer()`` is None until the
            next read; False when that is not known.
        """
        connection = self.connection
        if self._shared_core:
            core_lock = self._core_lock
            core_lock.acquire()  # not ``with``: half the cost, on every message
            try:
                message = connection.take_message(data)
            finally:
                core_lock.release()
            if message is None:
                self.act_on(*self.parse(data), direct=True)
                return False
            self.last_frame_at = time.monotonic()
            if self._rate is None:
                self.inbox.deliver([message])
            else:  # one frame, and nothing to write: the C path takes no read that leaves output
                self.act_on([message], 1, False, direct=True)
            return True
        frames = connection.frames_received
        message = connection.receive_message(data)
        if message is not None and self._rate is None:
            self.last_frame_at = time.monotonic()
            self.inbox.deliver([message])
            return False  # the message may have been followed by the start of a frame
        frames = connection.frames_received - frames
        if frames:
            self.last_frame_at = time.monotonic()
        events = connection.events_received() if message is None else [message]
        self.act_on(events, frames, connection.has_data_to_send, direct=True)
        return False

    def receive(self, data: memoryview | bytes | int | None, direct: bool) -> None:
        """Feed one read to the core and act on it.

        Args:
            data: The bytes read; an int: that many bytes read into
                ``connection.receive_buffer()``; None: the end of the stream.
            direct: The reader runs between two iterations of the session's
                loop, in its thread, so messages may go straight to the view
                (``Inbox.deliver``).
        """
        if data is None:
            with self._core_lock:
                self.connection.receive_eof()
            self._end_of_reading()
            return
        self.act_on(*self.parse(data), direct=direct)

    def parse(self, data: memoryview | bytes | int) -> tuple[list[Any], int, bool]:
        """Feed one read to the core: its events, the whole frames it completed, whether frames wait to go out."""
        connection = self.connection
        with self._core_lock:
            frames, frames_sent = connection.frames_received, connection.frames_sent
            if isinstance(data, int):
                connection.received_into(data)
                message = None
            else:
                message = connection.receive_message(data)
            frames = connection.frames_received - frames
            events = connection.events_received() if message is None else [message]
            flush = connection.frames_sent != frames_sent
        if frames:
            self.last_frame_at = time.monotonic()
        return events, frames, flush

    def take_pong(self, data: memoryview | bytes) -> bool:
        """Handle a read that is one Pong frame alone (the heartbeat's answer) here and now; False to ``parse`` it.

        The commonest read of an idle connection, in a few calls: the core
        counts the frame and hands back its payload. Never while
        MAX_MESSAGE_RATE counts frames.
        """
        if self._rate is not None:
            return False
        with self._core_lock:
            payload = self.connection.receive_pong(data)
        if payload is None:
            return False
        self.last_frame_at = time.monotonic()
        self._receive_pong(payload)
        return True

    def take_pongs(self, events: list[Any], flush: bool) -> bool:
        """Handle a parsed read here and now if it holds Pongs only (the heartbeat's answers); False to act on it.

        A read that counts against MAX_MESSAGE_RATE, ends the input or left
        frames to write is never taken here.
        """
        if flush or self._rate is not None or (events and type(events[0]) is not Pong):
            return False
        for event in events:
            if type(event) is not Pong:
                return False
        if self.connection.input_ended:
            return False
        for event in events:
            self._receive_pong(event.payload)
        return True

    def act_on(self, events: list[Any], frames: int, flush: bool, direct: bool) -> None:
        """Act on the events of one read: write what the core queued (``flush``), then hand over the messages.

        ``frames``: how many whole frames the read completed, each of which
        counts against MAX_MESSAGE_RATE (data, continuation, Ping or Pong:
        a flood of any of them costs the worker as much).
        ``direct``: as for ``receive``.
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
        if self.reading:
            self.reading = False
            self._fail_pings()
            self.inbox.put(END)
            self._transport.reading_ended()

    def stop(self) -> None:
        """The session is over: stop reading and the deadlines."""
        self.reading = False
        self._transport.stop()
        self._stop_clock()
