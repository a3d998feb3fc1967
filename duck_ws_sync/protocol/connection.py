"""The server side of an open WebSocket connection, without I/O.

``ServerConnection`` takes the bytes a client sent (``receive_data``,
``receive_eof``) and hands out events (``events_received``) and the bytes to
write (``data_to_send``); ``receive_message`` feeds a read and hands out
its message in one call, for the common read that holds one whole message.
The caller owns the socket, the clock and the locking: one lock must guard
every call into a connection.

The states and the moves between them are in ``states.py``.

Data frames become messages in ``MessageAssembly`` (``assembly.py``): a
frame whose payload has not all arrived is collected as it comes, and the
text of a message is checked for UTF-8 piece by piece (``partial.py``).
What is sent is framed by ``FrameWriter`` (``writer.py``). This class
extends both with the parser, control frames and the closing handshake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..exceptions import LocalProtocolError, PayloadTooBig, ProtocolError
from .assembly import FRAME_COST, MessageAssembly
from .events import Close, Event, Message, Ping, Pong
from .extensions import Extension
from .frames import (
    MAX_CONTROL_PAYLOAD,
    check_frame_size,
    parse_close,
    parse_header,
    serialize_close,
)
from .mask import apply_mask
from .native import speedups
from .opcodes import OpCode, is_sendable_close_code
from .partial import PartialFrame
from .states import CLOSED, CLOSING, OPEN, TRANSITIONS, Side, State

__all__ = ["FRAME_COST", "ServerConnection", "Side", "State"]


# Parses the frames that are whole messages by themselves, and Pongs, at C
# speed (None without the extension); ``_parse`` takes over at any other frame.
_native_parse_messages = getattr(speedups, "parse_messages", None)
# ``receive_message``'s commonest read (one whole simple message, nothing
# else), taken whole in C (None without the extension), which makes the
# events the parsers return without calling their types.
_native_receive_message: Callable[[ServerConnection, bytes | bytearray | memoryview], Message | None] | None = getattr(
    speedups, "receive_message", None
)

MiB = 1024 * 1024
# The least of a frame's payload still to come for which ``receive_buffer``
# offers to read it in place; below, one read into a buffer of the caller's
# may hold the following frames too.
DIRECT_READ = 64 * 1024


def _detached(error: ProtocolError) -> ProtocolError:
    """``error`` without its traceback and the exception it was raised from.

    Both hold the frames the error passed through, and those frames hold
    views of the receive buffer: kept, they would pin it, and resizing it
    afterwards would fail with BufferError.
    """
    error.__traceback__ = error.__context__ = error.__cause__ = None
    return error


class ServerConnection(MessageAssembly):
    """A server's WebSocket connection after a successful opening handshake.

    Args:
        max_frame_size: The largest frame payload accepted, checked from the
            header before the payload is buffered (None: no limit).
        max_message_size: The largest message accepted after reassembly and
            decompression (None: no limit).
        extensions: The extensions agreed in the handshake.
        answer_close_at_once: Answer the client's Close as soon as it is
            parsed, and fail the connection as soon as a protocol error is
            found. When False, the state stays OPEN after either (input
            stops) until the caller answers with ``send_close``, or fails the
            connection with ``fail`` (``failure_pending``): RFC 6455 §5.5.1
            lets an endpoint finish the messages it is sending first, so
            replies to messages that came before are not lost.

    Attributes:
        state: The connection's ``State``.
        close_initiator: Which side sent the first Close frame, if any.
        close_sent: The Close frame we sent, if any.
        close_received: The Close frame the peer sent, if any.
        protocol_error: The peer's violation that made us close, if any.
        frames_received: How many whole frames have been parsed, so a caller
            can time out a client that sends bytes but never a frame.
        frames_sent: How many frames have been written to ``data_to_send``.
        messages_received: How many text and binary messages
            ``events_received`` and ``receive_message`` have handed over.
        bytes_received: How many bytes have been fed to the connection.
        messages_sent, bytes_sent: How many text and binary messages, and
            how many bytes of frames of any kind, have been written to
            ``data_to_send``.
    """

    # Slots: every open WebSocket keeps one of these for its whole life.
    __slots__ = (
        "_buffer",
        "_events",
        "_lent",
        "_reading",
        "_rsv1_allowed",
        "_simple_limit",
        "_skip",
        "answer_close_at_once",
        "bytes_received",
        "close_initiator",
        "close_received",
        "close_sent",
        "extensions",
        "frames_received",
        "max_frame_size",
        "max_message_size",
        "messages_received",
        "protocol_error",
        "state",
    )

    def __init__(
        self,
        *,
        max_frame_size: int | None = MiB,
        max_message_size: int | None = 16 * MiB,
        extensions: Sequence[Extension] = (),
        answer_close_at_once: bool = True,
    ) -> None:
        self.answer_close_at_once = answer_close_at_once
        self.max_frame_size = max_frame_size
        self.max_message_size = max_message_size
        self.extensions = list(extensions)
        self.state = State.OPEN
        self.close_initiator: Side | None = None
        self.close_sent: Close | None = None
        self.close_received: Close | None = None
        self.protocol_error: ProtocolError | None = None
        self.frames_received = 0
        self.frames_sent = 0
        self.messages_received = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self._events: list[Event] = []
        self._output: list[bytes | memoryview] = []
        self._buffer = bytearray()  # the start of a frame, up to its payload
        self._skip = 0  # bytes of an unwanted frame payload still to drop
        self._reading = True  # False once input stops: a Close, a failure, CLOSED
        self._partial = None  # the data frame whose payload is arriving
        self._reset_message()  # no message being reassembled
        # The frame whose ``receive_buffer`` is lent out, until ``received_into``.
        self._lent: PartialFrame | None = None
        # The largest payload of a message read by the native parser (-1: any).
        limits = [limit for limit in (max_frame_size, max_message_size) if limit is not None]
        self._simple_limit = min(limits, default=-1)
        rsv1_users = [extension for extension in self.extensions if extension.rsv1_allowed(OpCode.TEXT)]
        self._rsv1_allowed = rsv1_users[0].rsv1_allowed if rsv1_users else None

    # Reading.

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the client.

        Frames are parsed as soon as they are complete; a protocol violation
        queues the Close frame with the right code and moves to CLOSED (or,
        with ``answer_close_at_once=False``, stops input and leaves the
        failure to the caller). Afterwards at most one frame is incomplete.
        """
        self.bytes_received += len(data)
        if not self._reading:
            return
        if (
            _native_parse_messages is not None
            and self._message_opcode is None
            and self._partial is None
            and not self._buffer
            and not self._skip
            and self.state is OPEN
        ):
            # The common case, whole messages, without the full parser.
            events = self._events
            before = len(events)
            position = _native_parse_messages(
                data, 0, self._simple_limit, Message, OpCode.TEXT, OpCode.BINARY, Pong, events
            )
            self.frames_received += len(events) - before
            if position == len(data):
                return
            data = memoryview(data)[position:]
        if self._partial is not None:
            try:
                used = self._fill_partial(data)
            except ProtocolError as exc:
                self._protocol_failure(exc)
                return
            if used == len(data) or not self._reading:
                return
            data = memoryview(data)[used:]
        buffer = self._buffer
        if buffer:
            buffer += data
            del buffer[: self._parse(buffer)]
        else:
            consumed = self._parse(data)
            if consumed < len(data) and self._reading:
                buffer += memoryview(data)[consumed:]

    def receive_message(self, data: bytes | bytearray | memoryview) -> Message | None:
        """Feed bytes received from the client; return the message they hold when that is all they hold.

        The common read of an echo or a chat: one whole message and nothing
        else parsed (what follows it may be the start of a frame). That
        message is returned rather than queued, so ``events_received`` does
        not hand it out again, and only when nothing is queued to send (a
        Close for a frame too large that followed it, say, goes out at once
        the general way). In any other case this is ``receive_data``: None,
        and the events wait for ``events_received``.
        """
        if _native_receive_message is not None:
            message = _native_receive_message(self, data)
            if message is not None:
                return message
        events = self._events
        waiting = len(events)
        self.receive_data(data)
        if not waiting and len(events) == 1 and type(events[0]) is Message and self._reading and not self._output:
            self.messages_received += 1
            return events.pop()  # type: ignore[return-value]
        return None

    def take_message(self, data: bytes | bytearray | memoryview) -> Message | None:
        """Take a read that is one whole simple message alone, in one call into C; None, having consumed nothing, else.

        ``receive_message``'s shortest way, for a caller that must hold a
        lock around the call: a read it does not take (or any read, without
        the native extension) is still to be fed the general way.
        """
        if _native_receive_message is None:
            return None
        return _native_receive_message(self, data)

    def receive_pong(self, data: bytes | bytearray | memoryview) -> bytes | None:
        """Feed one read that holds one whole Pong frame and nothing else (the heartbeat's answer); return its payload.

        The Pong is counted as ``receive_data`` would count it, but it is not
        queued as an event: the caller acts on the payload. Any other read
        (more than that frame, another frame, a Pong while a frame is
        incomplete or after input ended) returns None and is not consumed:
        feed it to ``receive_data``.
        """
        size = len(data)
        if (
            not 6 <= size <= 6 + MAX_CONTROL_PAYLOAD
            or data[0] != 0x80 | OpCode.PONG  # final, no RSV bit
            or data[1] != 0x80 | (size - 6)  # masked, and the payload is the rest of the read
            or not self._reading
            or self._buffer
            or self._partial is not None
            or self._skip
        ):
            return None
        self.bytes_received += size
        self.frames_received += 1
        return apply_mask(data[6:], bytes(data[2:6]))

    def receive_buffer(self) -> memoryview | None:
        """Where the rest of a large frame can be read straight into, with no copy; None otherwise.

        There is one while more than ``DIRECT_READ`` bytes of a frame's
        payload are still to come (and the native extension is there). Read
        into it, release it, then call ``received_into`` with the count; an
        end of stream is still ``receive_eof``. The read may happen outside
        the lock that guards the connection: whatever another thread does
        meanwhile (``send_close`` drops the frame, ``fail`` ends the
        connection), ``received_into`` accounts for the bytes.
        """
        partial = self._partial
        if partial is None or not self._reading or partial.header.length - partial.filled < DIRECT_READ:
            return None
        buffer = partial.receive_buffer()
        if buffer is not None:
            self._lent = partial
        return buffer

    @property
    def payload_to_come(self) -> int:
        """How many bytes of the payload of the frame being received are still to come (0 between frames).

        While a large frame streams in, a host may read again at once rather
        than wait to be told that the socket is readable.
        """
        partial = self._partial
        return 0 if partial is None else partial.header.length - partial.filled

    def received_into(self, size: int) -> None:
        """Tell the connection that ``size`` bytes were read into the view ``receive_buffer`` returned.

        Raises:
            LocalProtocolError: If no view of ``receive_buffer`` is waiting for its count.
            ValueError: If ``size`` is more than the view could hold.
        """
        partial, self._lent = self._lent, None
        if partial is None:
            raise LocalProtocolError("no buffer of receive_buffer() is waiting for its count")
        self.bytes_received += size
        if not self._reading:
            return  # the connection ended meanwhile: nothing more is parsed
        if partial is not self._partial:
            # Our Close dropped the frame while its bytes were read (§7.1.1):
            # they are the start of what is left to skip of it.
            if not 0 <= size <= self._skip:
                raise ValueError(f"{size} bytes cannot have been read into a buffer of {self._skip}")
            self._skip -= size
            return
        try:
            partial.received(size)
            if partial.complete:
                self._end_partial(partial)
        except ProtocolError as exc:
            self._protocol_failure(exc)

    def receive_eof(self) -> None:
        """Tell the connection that the client closed TCP (or it was lost)."""
        self._transition("receive_eof")
        self._buffer.clear()
        self._partial = None

    def events_received(self) -> list[Event]:
        """Return the events parsed since the last call, in order."""
        # The list stays: a new one per read would outlive the garbage
        # collector's young generations on an idle connection.
        events = self._events
        if not events:
            return []
        received = events.copy()
        events.clear()
        if len(received) == 1:  # the common read: one message
            if type(received[0]) is Message:
                self.messages_received += 1
        else:
            self.messages_received += sum(type(event) is Message for event in received)
        return received

    @property
    def input_ended(self) -> bool:
        """True once nothing more will be read: a Close came, the connection failed, or it is CLOSED."""
        return not self._reading

    @property
    def failure_pending(self) -> bool:
        """True when a protocol error stopped input and the caller is to ``fail`` (``answer_close_at_once=False``)."""
        return self.protocol_error is not None and self.close_sent is None and self.state is OPEN

    def _parse(self, data: bytes | bytearray | memoryview) -> int:
        """Parse every complete frame in ``data``; return how many bytes were used."""
        position, end = 0, len(data)
        events = self._events
        with memoryview(data) as view:
            try:
                while self._reading:
                    if self._skip:
                        dropped = min(self._skip, end - position)
                        self._skip -= dropped
                        position += dropped
                        if self._skip:
                            break
                    if _native_parse_messages is not None and self._message_opcode is None and self.state is OPEN:
                        before = len(events)
                        position = _native_parse_messages(
                            data, position, self._simple_limit, Message, OpCode.TEXT, OpCode.BINARY, Pong, events
                        )
                        self.frames_received += len(events) - before
                    if end - position < 2:
                        break  # not even a header's first two bytes
                    header = parse_header(data, position, rsv1_allowed=self._rsv1_allowed)
                    if header is None:
                        break
                    is_data = header.opcode < OpCode.CLOSE
                    if is_data and self.state is CLOSING:
                        # §7.1.1: after our Close, the peer's data is discarded
                        # unread, so it is never buffered either.
                        position += header.size
                        self._skip = header.length
                        continue
                    start = position + header.size
                    stop = start + header.length
                    if is_data:
                        # The limits are for data: a control frame is 125 bytes
                        # at most (§5.5, checked by parse_header), and a Close
                        # refused for its size would never end the handshake.
                        try:
                            check_frame_size(header.length, self.max_frame_size)
                            self._admit(header, whole=stop <= end)
                        except PayloadTooBig as exc:
                            self._close_for(exc)
                            position = start
                            self._skip = header.length
                            continue
                    if stop > end:
                        if is_data:
                            self._fill_partial(view[start:end])
                            position = end
                        break  # a control frame is small: it waits in the buffer
                    assert header.mask is not None  # parse_header refuses unmasked frames
                    payload = apply_mask(view[start:stop], header.mask)
                    position = stop
                    self.frames_received += 1
                    if not is_data:
                        self._receive_control_frame(header.opcode, payload)
                        continue
                    try:
                        self._receive_data_frame(header.fin, header.opcode, header.rsv1, payload)
                    except PayloadTooBig as exc:
                        self._close_for(exc)
            except ProtocolError as exc:
                self._protocol_failure(exc)
        return position if self._reading else end

    def _protocol_failure(self, error: ProtocolError) -> None:
        """The client broke the protocol: fail now, or stop input and let the caller fail after what came before.

        After our Close there is nothing left to send before failing, so the
        connection fails at once whatever ``answer_close_at_once`` says.
        """
        self.protocol_error = _detached(error)
        self._partial = None
        if self.answer_close_at_once or self.state is not OPEN:
            self.fail(error.close_code, str(error))
        else:
            self._reading = False  # and the parser drops what is left unread

    def _fill_partial(self, data: bytes | bytearray | memoryview) -> int:
        """Add the next bytes of the frame being collected; return how many were used."""
        partial = self._partial
        assert partial is not None
        used = partial.fill(data)
        if partial.complete:
            self._end_partial(partial)
        return used

    def _end_partial(self, partial: PartialFrame) -> None:
        """The frame being collected is whole."""
        self._partial = None
        self.frames_received += 1
        header = partial.header
        try:
            self._end_frame(header.fin, header.opcode, header.rsv1, partial.take(), checked=partial.text is not None)
        except PayloadTooBig as exc:
            self._close_for(exc)

    def _receive_control_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == OpCode.CLOSE:
            code, reason = parse_close(payload)
            self.close_received = Close(code, reason)
            self._reading = False
            self._events.append(self.close_received)
            self._reset_message()
            if self.state is OPEN:
                self.close_initiator = Side.REMOTE
                if not self.answer_close_at_once:
                    return  # the caller answers with send_close
                # §5.5.1: answer with a Close echoing the status code.
                self.close_sent = Close(code, "")
                self._write(OpCode.CLOSE, serialize_close(None if code == 1005 else code))
            self._transition("receive_close")
        elif opcode == OpCode.PING:
            self._events.append(Ping(payload))
            if self.state is OPEN:
                # §5.5.2-§5.5.3: a Pong carries the Ping's payload.
                self._write(OpCode.PONG, payload)
        else:
            self._events.append(Pong(payload))

    def _close_for(self, error: PayloadTooBig) -> None:
        """Start the closing handshake because the peer sent too much.

        A message over the limit is not a broken stream: the frames that
        follow can still be read, so we close politely (1009) and wait for the
        client's Close instead of dropping the connection. Only data frames
        are held to the limits, and they are read only while OPEN (after our
        Close they are skipped unread, §7.1.1).
        """
        self.protocol_error = _detached(error)
        self._reset_message()
        self.send_close(error.close_code, str(error))

    # Writing: the messages and control frames are FrameWriter's.

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        """Start the closing handshake (RFC 6455 §7.1.2), or answer the client's Close.

        The answer is for a connection made with ``answer_close_at_once=False``
        whose client's Close has arrived: it moves straight to CLOSED.
        Otherwise, no data can be sent and the client's data is discarded
        until its Close arrives; the caller closes TCP then, or at a deadline.

        Args:
            code: The close code, or None to send a Close without one. 1005,
                1006 and 1015 are for reporting only and cannot be sent.
            reason: A reason, cut to 123 bytes of UTF-8 if longer.

        Raises:
            LocalProtocolError: If a Close was sent or received already, or
                the code may not be sent.
        """
        if code is not None and not is_sendable_close_code(code):
            raise LocalProtocolError(f"close code {code} cannot be sent")
        if self.close_received is None:
            self._transition("send_close")
            self.close_initiator = Side.LOCAL
            partial = self._partial
            if partial is not None:
                # §7.1.1: the rest of the frame being collected is discarded.
                self._skip = partial.header.length - partial.filled
                self._partial = None
        else:
            self._transition("answer_close")
        self.close_sent = Close(1005 if code is None else code, reason)
        self._write(OpCode.CLOSE, serialize_close(code, reason))
        if not self._reading and self.state is CLOSING:
            # Input had stopped for the client's protocol error (a failure
            # the caller had not sent yet): no Close of its can be read now.
            self._transition("fail")

    def fail(self, code: int = 1011, reason: str = "") -> None:
        """Fail the connection (RFC 6455 §7.1.7): send a Close if still OPEN, then CLOSED.

        Used for protocol errors (1002, 1007) and by the caller for its own
        failures, such as an internal error (1011). Further input is ignored.
        """
        if self.state is OPEN:
            self.close_initiator = Side.LOCAL
            self.close_sent = Close(code, reason)
            self._write(OpCode.CLOSE, serialize_close(code, reason))
        self._transition("fail")

    # State.

    def _transition(self, happened: str) -> None:
        try:
            self.state = state = TRANSITIONS[self.state, happened]
        except KeyError:
            raise LocalProtocolError(
                f"cannot {happened.replace('_', ' ')}: the connection is {self.state.name}"
            ) from None
        if state is CLOSED:
            self._reading = False


# The C shortcuts (``receive_message``, ``send_text_now``) work on these
# types' slots; without the extension there is nothing to bind.
_bind_types = getattr(speedups, "bind_types", lambda *types: None)
_bind_types(ServerConnection, Message, Pong, OpCode.TEXT, OpCode.BINARY, OPEN)
