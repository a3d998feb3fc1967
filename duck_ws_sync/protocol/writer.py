"""The writing half of a connection: messages and control frames into the bytes to send.

``FrameWriter`` frames what a ``ServerConnection`` sends (RFC 6455 §5.2):
text and binary messages, compressed when an extension was agreed and split
into fragments on request, Pings and Pongs. The closing handshake's frames
(``send_close``, ``fail``) are the connection's, which moves between states
as it writes them. Nothing here does I/O: ``data_to_send`` hands the bytes
over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from ..exceptions import LocalProtocolError
from .frames import MAX_CONTROL_PAYLOAD, Frame, serialize_header
from .native import speedups
from .opcodes import OpCode
from .states import OPEN

if TYPE_CHECKING:
    from .extensions import Extension
    from .states import State

__all__ = ["FrameWriter"]

# Frames up to this size are written as one bytes object with their header;
# larger payloads are handed over separately, not copied.
_JOIN_LIMIT = 4096
# ``send_text_now``'s commonest case (one short frame, nothing queued) in C,
# None without the extension.
_native_text_frame: Callable[[FrameWriter, str | bytes, int | None], bytes | None] | None = getattr(
    speedups, "text_frame", None
)


class FrameWriter:
    """Frames what a connection sends; ``ServerConnection`` extends it with its state."""

    __slots__ = ("_output", "bytes_sent", "frames_sent", "messages_sent")

    _output: list[bytes | memoryview]  # the bytes to send, in order
    frames_sent: int
    messages_sent: int  # text and binary messages
    bytes_sent: int  # of every frame, as written (headers and compression included)

    if TYPE_CHECKING:  # what the connection provides
        state: State
        extensions: list[Extension]

    def send_text(self, data: str | bytes, fragment_size: int | None = None) -> None:
        """Send a text message.

        Args:
            data: The text; bytes must already be valid UTF-8.
            fragment_size: Split the message into frames of at most this many
                bytes (after compression); None sends one frame.

        Raises:
            LocalProtocolError: If the connection is not OPEN, or bytes are not
                valid UTF-8.
        """
        frame = self.send_text_now(data, fragment_size)
        if frame is not None:
            self._output.append(frame)

    def send_text_now(self, data: str | bytes, fragment_size: int | None = None) -> bytes | None:
        """Send a text message; return its frame, not queued, when the caller may write it at once.

        That is when the message is one short frame (a chat's message) and
        nothing is queued before it: the caller writes the frame itself,
        with no ``data_to_send``. Otherwise the frames are queued as
        ``send_text`` queues them, and None is returned. Arguments and
        errors are ``send_text``'s.
        """
        if _native_text_frame is not None:
            frame = _native_text_frame(self, data, fragment_size)
            if frame is not None:
                return frame
        if isinstance(data, str):
            payload = data.encode("utf-8")
        else:
            payload = data
            if not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise LocalProtocolError("text messages must be valid UTF-8") from None
        length = len(payload)
        fits = fragment_size is None or (fragment_size >= length and fragment_size > 0)
        if length < 126 and fits and self.state is OPEN and not self.extensions:
            # One final frame with a two-byte header (§5.2).
            self.frames_sent += 1
            self.messages_sent += 1
            self.bytes_sent += 2 + length
            frame = bytes((0x81, length)) + payload
            if not self._output:
                return frame
            self._output.append(frame)
            return None
        self.send_message(OpCode.TEXT, payload, fragment_size)
        return None

    def send_binary(self, data: bytes | bytearray | memoryview, fragment_size: int | None = None) -> None:
        """Send a binary message (see ``send_text`` for the arguments)."""
        self.send_message(OpCode.BINARY, data, fragment_size)

    def send_message(
        self, opcode: OpCode, payload: bytes | bytearray | memoryview, fragment_size: int | None = None
    ) -> None:
        """Send a text or binary message, compressed if an extension was agreed.

        Raises:
            LocalProtocolError: If the connection is not OPEN (after a Close,
                no data frame may be sent, RFC 6455 §5.5.1).
            ValueError: If ``fragment_size`` is not positive.
        """
        if self.state is not OPEN:
            self._not_open("send a data message")
        if fragment_size is not None and fragment_size < 1:
            raise ValueError("fragment_size must be positive")
        if not isinstance(payload, bytes):
            # The message is what the buffer holds now, whatever the caller
            # does with its buffer before the bytes are written.
            payload = bytes(payload)
        self.messages_sent += 1
        rsv1 = False
        if self.extensions:
            frame = Frame(opcode, True, payload)
            for extension in self.extensions:
                frame = extension.encode(frame)
            payload, rsv1 = frame.payload, frame.rsv1
        length = len(payload)
        if fragment_size is None or length <= fragment_size:
            self._write(opcode, payload, True, rsv1)
            return
        # RFC 7692 §6.1: only the first frame of a compressed message has RSV1.
        view = memoryview(payload)
        for start in range(0, length, fragment_size):
            stop = start + fragment_size
            first = start == 0
            self._write(opcode if first else OpCode.CONTINUATION, view[start:stop], stop >= length, rsv1 and first)

    def take_frame(self, size: int) -> bool:
        """Count a whole message's one final frame, ``size`` bytes, that the caller built and writes itself.

        For a message sent to many connections (a broadcast), framed once
        for all. A connection takes it when it would have framed the
        message the same way and nothing is queued before it: it is OPEN
        and agreed no extension. The caller makes sure the frame is one it
        may send (a final text or binary frame, unmasked, its payload
        within the connection's fragment size).

        Returns:
            Whether it was taken; if not, send the message the usual way.
        """
        if self.state is not OPEN or self.extensions or self._output:
            return False
        self.frames_sent += 1
        self.messages_sent += 1
        self.bytes_sent += size
        return True

    def send_ping(self, payload: bytes = b"") -> None:
        """Send a Ping frame.

        Raises:
            LocalProtocolError: If the connection is not OPEN or the payload is
                over 125 bytes.
        """
        self._send_control(OpCode.PING, payload)

    def send_pong(self, payload: bytes = b"") -> None:
        """Send an unsolicited Pong frame (a heartbeat that expects no answer)."""
        self._send_control(OpCode.PONG, payload)

    @property
    def has_data_to_send(self) -> bool:
        """True when ``data_to_send`` would return something."""
        return bool(self._output)

    def data_to_send(self) -> list[bytes | memoryview]:
        """Return the bytes to write, in order, since the last call."""
        output = self._output  # kept, as ``_events`` is
        chunks = output.copy()
        output.clear()
        return chunks

    def _send_control(self, opcode: OpCode, payload: bytes) -> None:
        if self.state is not OPEN:
            self._not_open(f"send a {opcode.name.lower()}")
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("control frame payloads are limited to 125 bytes")
        self._write(opcode, payload)

    def _write(self, opcode: int, payload: bytes | memoryview, fin: bool = True, rsv1: bool = False) -> None:
        # ``payload`` is immutable: bytes, or a view of bytes.
        self.frames_sent += 1
        length = len(payload)
        if length < 126 and fin and not rsv1:
            # The most common frame: final, small, a two-byte header (§5.2).
            self.bytes_sent += 2 + length
            self._output.append(bytes((0x80 | opcode, length)) + payload)
            return
        header = serialize_header(opcode, length, fin, rsv1)
        self.bytes_sent += len(header) + length
        if length <= _JOIN_LIMIT:
            self._output.append(header + payload)
        else:
            self._output.append(header)
            self._output.append(payload)

    def _not_open(self, action: str) -> NoReturn:
        raise LocalProtocolError(f"cannot {action}: the connection is {self.state.name}")
