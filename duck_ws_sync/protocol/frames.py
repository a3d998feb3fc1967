"""Frames: the wire format of RFC 6455 §5.2, and Close frame payloads (§5.5.1).

Two audiences share the code here. The connection (``connection.py``) parses
frames straight out of its receive buffer with ``parse_header`` and writes them
with ``serialize_header``; Duck users get the same rules through the ``Frame``
class, whose ``parse`` reads from an ``async`` ``read_exact`` callable as
Duck's does.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..exceptions import InvalidPayloadData, PayloadTooBig, ProtocolError
from .mask import apply_mask
from .opcodes import OpCode, is_valid_close_code

__all__ = [
    "MAX_CLOSE_REASON",
    "MAX_CONTROL_PAYLOAD",
    "Frame",
    "FrameCodec",
    "FrameHeader",
    "check_frame_rules",
    "check_frame_size",
    "parse_close",
    "parse_header",
    "serialize_close",
    "serialize_header",
    "summarize",
    "truncate_reason",
]

#: RFC 6455 §5.5: control frames carry at most 125 bytes of payload.
MAX_CONTROL_PAYLOAD = 125
#: A Close payload is a 2-byte code plus the reason, within those 125 bytes.
MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2

_KNOWN_OPCODES = frozenset(OpCode)
_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack


class FrameCodec(Protocol):
    """What a frame needs of an extension (``extensions.Extension`` is one): the RSV1 rule and the two transforms."""

    def rsv1_allowed(self, opcode: int) -> bool: ...
    def encode(self, frame: Frame) -> Frame: ...
    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame: ...


class FrameHeader(NamedTuple):
    """A parsed frame header (a tuple: it is built once per frame on the hot path).

    Attributes:
        fin: Whether this is the last frame of its message.
        opcode: The frame's opcode.
        rsv1: The RSV1 bit (permessage-deflate's "compressed" flag).
        length: The payload length announced by the header.
        mask: The 4-byte masking key, or None for an unmasked frame.
        size: The length of the header itself in bytes (2 to 14).
    """

    fin: bool
    opcode: int
    rsv1: bool
    length: int
    mask: bytes | None
    size: int


def check_frame_rules(
    opcode: int, fin: bool, length: int, rsv1: bool, rsv2: bool, rsv3: bool, rsv1_allowed: bool
) -> None:
    """Check the rules that a single frame must follow, whatever came before it.

    Raises:
        ProtocolError: For a reserved opcode (§5.2), an RSV bit that no
            negotiated extension defines (§5.2), or a control frame that is
            fragmented or longer than 125 bytes (§5.5).
    """
    if opcode not in _KNOWN_OPCODES:
        raise ProtocolError(f"reserved opcode {opcode:#x}")
    if rsv2 or rsv3 or (rsv1 and not rsv1_allowed):
        raise ProtocolError("reserved bit set without a negotiated extension")
    if opcode >= OpCode.CLOSE:
        if not fin:
            raise ProtocolError("fragmented control frame")
        if length > MAX_CONTROL_PAYLOAD:
            raise ProtocolError("control frame payload over 125 bytes")


def header_size(second_byte: int) -> int:
    """Return the full header length implied by a frame's second byte."""
    code = second_byte & 0x7F
    size = 2 if code < 126 else 4 if code == 126 else 10
    return size + 4 if second_byte & 0x80 else size


def parse_header(
    data: bytes | bytearray | memoryview,
    position: int = 0,
    *,
    mask_required: bool = True,
    rsv1_allowed: Callable[[int], bool] | None = None,
) -> FrameHeader | None:
    """Parse the frame header at ``data[position:]``.

    Every protocol rule that can be checked from the header is checked here,
    before the payload is read or buffered. The caller compares ``length``
    with its size limit, also before reading the payload.

    Args:
        data: The buffer holding the header.
        position: Where the header starts in ``data``.
        mask_required: Refuse unmasked frames (a server's rule, RFC 6455 §5.1).
        rsv1_allowed: Given an opcode, tells whether RSV1 may be set on it; None
            when no extension uses RSV1.

    Returns:
        The header, or None if ``data`` does not hold all of it yet.

    Raises:
        ProtocolError: For any violation of §5.1-§5.5.
    """
    available = len(data) - position
    if available < 2:
        return None
    first, second = data[position], data[position + 1]
    size = header_size(second)
    if available < size:
        return None
    fin = bool(first & 0x80)
    opcode = first & 0x0F
    rsv1 = bool(first & 0x40)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(data[position + 2 : position + 4], "big")
    elif length == 127:
        length = int.from_bytes(data[position + 2 : position + 10], "big")
        if length >> 63:
            # RFC 6455 §5.2: "the most significant bit MUST be 0".
            raise ProtocolError("payload length with the most significant bit set")
    check_frame_rules(
        opcode,
        fin,
        length,
        rsv1,
        bool(first & 0x20),
        bool(first & 0x10),
        rsv1_allowed is not None and rsv1_allowed(opcode),
    )
    if second & 0x80:
        mask: bytes | None = bytes(data[position + size - 4 : position + size])
    elif mask_required:
        raise ProtocolError("client frames must be masked")
    else:
        mask = None
    return FrameHeader(fin, opcode, rsv1, length, mask, size)


def check_frame_size(length: int, max_size: int | None) -> None:
    """Refuse a frame whose announced length is over ``max_size`` (None: no limit).

    Raises:
        PayloadTooBig: If ``length`` exceeds ``max_size``.
    """
    if max_size is not None and length > max_size:
        raise PayloadTooBig(f"frame of {length} bytes exceeds the limit of {max_size} bytes")


def serialize_header(
    opcode: int,
    length: int,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
    rsv2: bool = False,
    rsv3: bool = False,
) -> bytes:
    """Build a frame header (RFC 6455 §5.2), using the shortest length encoding."""
    first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0)
    mask_bit = 0x80 if mask is not None else 0
    if length < 126:
        header = bytes((first, mask_bit | length))
    elif length < 0x10000:
        header = _pack_short(first, mask_bit | 126, length)
    else:
        header = _pack_long(first, mask_bit | 127, length)
    return header + mask if mask is not None else header


def parse_close(payload: bytes) -> tuple[int, str]:
    """Decode a Close frame's payload (RFC 6455 §5.5.1, §7.1.5-§7.1.6).

    Returns:
        The close code and reason; an empty payload gives code 1005
        (no status received) and an empty reason.

    Raises:
        ProtocolError: For a 1-byte payload or a code not allowed on the wire.
        InvalidPayloadData: For a reason that is not valid UTF-8.
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidPayloadData("close reason is not valid UTF-8") from None
    return code, reason


def truncate_reason(reason: str, limit: int = MAX_CLOSE_REASON) -> bytes:
    """Encode ``reason`` as UTF-8, cut to ``limit`` bytes on a character boundary."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= limit:
        return encoded
    return encoded[:limit].decode("utf-8", "ignore").encode("utf-8")


def serialize_close(code: int | None, reason: str = "") -> bytes:
    """Encode a Close frame's payload; ``code=None`` gives an empty payload.

    A reason longer than 123 bytes is cut on a UTF-8 character boundary so the
    frame stays a valid control frame (§5.5).
    """
    if code is None:
        return b""
    return code.to_bytes(2, "big") + truncate_reason(reason)


def summarize(payload: bytes | bytearray | memoryview, limit: int = 32) -> str:
    """Describe a payload for a repr: its first ``limit`` bytes and its length.

    Reprs end up in logs and in asyncio's debug output, where a whole
    megabyte-long payload would cost milliseconds and drown the line.
    """
    head = repr(bytes(payload[:limit]))
    return f"{head}{'...' if len(payload) > limit else ''} ({len(payload)} bytes)"


ReadExact = Callable[[int], Awaitable[bytes]]


@dataclass(slots=True, repr=False)
class Frame:
    """One WebSocket frame, with Duck's constructor, ``check``, ``parse`` and ``serialize``.

    Attributes:
        opcode: The frame's opcode.
        fin: Whether this is the last frame of its message.
        payload: The payload, unmasked.
        rsv1: The RSV1 bit. rsv2, rsv3: the other reserved bits.
    """

    opcode: int
    fin: bool = True
    payload: bytes = b""
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def __repr__(self) -> str:
        try:
            opcode = OpCode(self.opcode).name
        except ValueError:
            opcode = hex(self.opcode)
        flags = "".join(f", {name}=True" for name in ("rsv1", "rsv2", "rsv3") if getattr(self, name))
        return f"Frame({opcode}, fin={self.fin}, payload={summarize(self.payload)}{flags})"

    def check(self, extensions: Sequence[FrameCodec] | None = None) -> None:
        """Check this frame against the rules that apply to any single frame.

        Args:
            extensions: The negotiated extensions; RSV1 is allowed only where
                one of them defines it.

        Raises:
            ProtocolError: If the frame breaks RFC 6455 §5.2 or §5.5.
        """
        rsv1_allowed = any(extension.rsv1_allowed(self.opcode) for extension in extensions or ())
        check_frame_rules(self.opcode, self.fin, len(self.payload), self.rsv1, self.rsv2, self.rsv3, rsv1_allowed)

    @classmethod
    async def parse(
        cls,
        read_exact: ReadExact,
        mask_required: bool = True,
        max_size: int | None = None,
        extensions: Sequence[FrameCodec] | None = None,
    ) -> Frame:
        """Read one frame with ``read_exact`` and return it unmasked and decoded.

        Args:
            read_exact: An async callable returning exactly n bytes.
            mask_required: Refuse unmasked frames (true for a server).
            max_size: The largest payload accepted, checked from the header
                before the payload is read; for a compressed frame also the
                largest decompressed size.
            extensions: Negotiated extensions, applied in reverse order.

        Raises:
            ProtocolError: If the frame breaks the protocol.
            PayloadTooBig: If the payload exceeds ``max_size``.
        """
        extensions = extensions or ()

        def rsv1_allowed(opcode: int) -> bool:
            return any(extension.rsv1_allowed(opcode) for extension in extensions)

        head = await read_exact(2)
        rest = await read_exact(header_size(head[1]) - 2)
        header = parse_header(head + rest, mask_required=mask_required, rsv1_allowed=rsv1_allowed)
        assert header is not None  # the buffer holds the whole header by construction
        check_frame_size(header.length, max_size)
        payload = await read_exact(header.length)
        if header.mask is not None:
            payload = apply_mask(payload, header.mask)
        frame = cls(header.opcode, header.fin, payload, header.rsv1)
        for extension in reversed(extensions):
            frame = extension.decode(frame, max_size=max_size)
        return frame

    def serialize(self, mask: bool = False, extensions: Sequence[FrameCodec] | None = None) -> bytes:
        """Return this frame's bytes on the wire.

        Unlike Duck, this does not modify the frame: serializing it twice does
        not compress its payload twice.

        Args:
            mask: Mask the payload with a fresh random key (what a client does).
            extensions: Negotiated extensions to encode the frame with.
        """
        frame = self
        for extension in extensions or ():
            frame = extension.encode(frame)
        key = os.urandom(4) if mask else None
        payload = apply_mask(frame.payload, key) if key is not None else frame.payload
        header = serialize_header(frame.opcode, len(payload), frame.fin, frame.rsv1, key, frame.rsv2, frame.rsv3)
        return header + payload
