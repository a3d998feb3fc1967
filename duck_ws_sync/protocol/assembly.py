"""Messages out of data frames: each frame checked from its header, collected, inflated and validated.

``MessageAssembly`` is the part of a ``ServerConnection`` (``connection.py``)
that turns the data frames its parser finds into messages (RFC 6455 §5.4,
RFC 7692): it admits a frame from its header before any of its payload is
buffered (its place in a message, and the limits), making the
``PartialFrame`` that collects a payload still arriving, and reassembles a
fragmented message in one buffer, each continuation frame costing
``FRAME_COST`` against the message limit. The connection provides the
parser, the events and the closing handshake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import InvalidPayloadData, PayloadTooBig, ProtocolError
from .events import Event, Message
from .frames import Frame, FrameHeader
from .opcodes import OpCode
from .partial import PartialFrame, TextCheck
from .writer import FrameWriter

if TYPE_CHECKING:
    from .extensions import Extension

__all__ = ["FRAME_COST", "MessageAssembly"]

# Opcodes of data frames that start a message, indexed by value.
_MESSAGE_OPCODES = {OpCode.TEXT.value: OpCode.TEXT, OpCode.BINARY.value: OpCode.BINARY}

# What each continuation frame costs its message against max_message_size,
# beyond its payload: about a frame header's weight on the wire. A message
# cut into N frames costs at least N * FRAME_COST, so no run of frames, empty
# ones included, goes on without reaching the limit (with the default 16 MiB,
# at most about a million frames a message).
FRAME_COST = 16


class MessageAssembly(FrameWriter):
    """Data frames into messages; ``ServerConnection`` extends it.

    Attributes (all private):
        _partial: The data frame whose payload is arriving.
        _message_opcode: The opcode of the fragmented message being
            received, None between messages.
        _message_compressed: Whether that message is compressed (RSV1).
        _message_buffer: Its payload so far: the first frame's, then one
            buffer that grows.
        _message_size: What it has cost so far against max_message_size:
            its payload, plus FRAME_COST for each continuation frame.
        _text: The UTF-8 check of a text message being reassembled.
    """

    __slots__ = (
        "_message_buffer",
        "_message_compressed",
        "_message_opcode",
        "_message_size",
        "_partial",
        "_text",
    )

    _partial: PartialFrame | None
    _message_opcode: OpCode | None
    _message_compressed: bool
    _message_buffer: bytes | bytearray | None
    _message_size: int
    _text: TextCheck | None

    if TYPE_CHECKING:  # what the connection provides
        max_message_size: int | None
        extensions: list[Extension]
        _events: list[Event]

    def _admit(self, header: FrameHeader, whole: bool) -> None:
        """Check a data frame from its header, before its payload is read or buffered.

        ``whole``: its payload has arrived too; else it is collected as it
        comes (``PartialFrame``).

        Raises:
            ProtocolError: If the frame may not come now (§5.4).
            PayloadTooBig: If its message would exceed ``max_message_size``.
        """
        limit = self.max_message_size
        if whole and header.fin and header.opcode and self._message_opcode is None and not self.extensions:
            # The common case, one frame holding a whole message, is handled
            # without the reassembly machinery (``_receive_data_frame``).
            if limit is not None and header.length > limit:
                raise _too_big(limit)
            return
        self._start_frame(header.opcode, header.rsv1)
        compressed = self._message_compressed
        if limit is not None:
            # What the message has cost so far (a continuation frame's cost
            # included) and, uncompressed, the frame's length with it;
            # compressed, the frame is at least held whole before it is inflated.
            held = max(self._message_size, header.length) if compressed else self._message_size + header.length
            if held > limit:
                raise _too_big(limit)
        if not whole:
            try:
                # Compressed text can only be checked once it is inflated.
                self._partial = PartialFrame(header, None if compressed else self._text)
            except (MemoryError, OverflowError):
                # Only without a message limit: a length no buffer can have.
                raise PayloadTooBig(f"frame of {header.length} bytes cannot be held in memory") from None

    def _receive_data_frame(self, fin: bool, opcode: int, rsv1: bool, payload: bytes) -> None:
        """A whole data frame has arrived (``_admit`` has checked its header)."""
        if self._message_opcode is None:
            # A message in one frame, admitted as such.
            if opcode == OpCode.TEXT and not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidPayloadData("text message is not valid UTF-8") from None
            self._events.append(Message(_MESSAGE_OPCODES[opcode], payload))
            return
        self._end_frame(fin, opcode, rsv1, payload, checked=False)

    def _start_frame(self, opcode: int, rsv1: bool) -> None:
        """Check that a data frame may come now (§5.4) and start its message if it is the first.

        A continuation frame costs its message ``FRAME_COST`` (``_admit``
        holds the message to its limit).

        Raises:
            ProtocolError: If the frame may not come now.
        """
        # A fragmented message is a first frame then continuations, and no
        # other data frame may come between them.
        if opcode == OpCode.CONTINUATION:
            if self._message_opcode is None:
                raise ProtocolError("continuation frame without a message to continue")
            self._message_size += FRAME_COST
        elif self._message_opcode is not None:
            raise ProtocolError("new data message before the fragmented message ended")
        else:
            self._message_opcode = _MESSAGE_OPCODES[opcode]
            self._message_compressed = rsv1
            self._text = TextCheck() if opcode == OpCode.TEXT else None

    def _end_frame(self, fin: bool, opcode: int, rsv1: bool, payload: bytes, checked: bool) -> None:
        """Add a whole data frame's payload to its message; ``checked``: its text was validated already."""
        if self.extensions:
            frame = Frame(opcode, fin, payload, rsv1)
            remaining = None if self.max_message_size is None else self.max_message_size - self._message_size
            for extension in reversed(self.extensions):
                frame = extension.decode(frame, max_size=remaining)
            payload = frame.payload

        self._message_size += len(payload)
        if self.max_message_size is not None and self._message_size > self.max_message_size:
            raise _too_big(self.max_message_size)
        if self._text is not None and not checked:
            self._text.feed(payload, fin)
        # The pieces go into one buffer as they come: a message costs what
        # it weighs, however finely it is cut (no object per frame).
        buffer = self._message_buffer
        if buffer is None:
            if not fin:
                self._message_buffer = payload  # a second frame makes it a buffer
                return
            data = payload
        else:
            if type(buffer) is bytes:
                buffer = self._message_buffer = bytearray(buffer)
            buffer += payload
            if not fin:
                return
            data = bytes(buffer)
        assert self._message_opcode is not None
        self._events.append(Message(self._message_opcode, data))
        self._reset_message()

    def _reset_message(self) -> None:
        self._message_opcode = None
        self._message_compressed = False
        self._message_buffer = None
        self._message_size = 0
        self._text = None


def _too_big(limit: int) -> PayloadTooBig:
    """The error of a message over ``max_message_size`` (its text is the 1009's reason)."""
    return PayloadTooBig(f"message exceeds the limit of {limit} bytes")
