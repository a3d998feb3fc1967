"""Helpers shared by the tests: raw frame bytes built independently of the package.

Frames are assembled here with ``struct`` and a plain XOR, not with
``duck_ws_sync``'s own serializer, so the tests do not check the code with
itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Coroutine
from typing import Any

from duck_ws_sync.protocol import Close, Frame, Message, Ping, Pong, ServerConnection

MASK = b"\x37\xfa\x21\x3d"

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def xor(data: bytes, mask: bytes) -> bytes:
    """Mask or unmask ``data`` the slow, obvious way (reference implementation)."""
    return bytes(byte ^ mask[index % 4] for index, byte in enumerate(data))


def frame_header(
    opcode: int,
    length: int,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    masked: bool = True,
    encoding: int = 0,
) -> bytes:
    """A client frame's header up to its masking key, announcing ``length`` bytes of payload.

    ``encoding``: 0 for the shortest length encoding, else 2 or 8 bytes of
    extended length even for a length that fits in fewer (RFC 6455 §5.2
    asks for the shortest; servers accept the others).
    """
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if encoding == 8 or length >= 1 << 16:
        return struct.pack("!BBQ", first, mask_bit | 127, length)
    if encoding == 2 or length >= 126:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BB", first, mask_bit | length)


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = MASK,
    length: int | None = None,
) -> bytes:
    """Build one frame as a client would send it (masked unless ``mask=None``).

    ``length`` overrides the announced payload length, to build lying headers.
    """
    announced = len(payload) if length is None else length
    header = frame_header(opcode, announced, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3, masked=mask is not None)
    if mask is None:
        return header + payload
    return header + mask + xor(payload, mask)


def close_frame(code: int | None = 1000, reason: bytes = b"", **kwargs) -> bytes:
    """A client Close frame; ``code=None`` gives an empty payload."""
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(CLOSE, payload, **kwargs)


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv1: bool = False) -> bytes:
    """The exact bytes a server must write for an unmasked frame."""
    return frame(opcode, payload, fin=fin, rsv1=rsv1, mask=None)


def server_close(code: int | None, reason: bytes = b"") -> bytes:
    """The exact bytes of a server Close frame."""
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return server_frame(CLOSE, payload)


def feed(connection: ServerConnection, *chunks: bytes) -> list[Message | Ping | Pong | Close]:
    """Feed chunks to ``connection`` and return the events they produced."""
    for chunk in chunks:
        connection.receive_data(chunk)
    return connection.events_received()


def sent(connection: ServerConnection) -> bytes:
    """Everything the connection wants to write, as one bytes object."""
    return b"".join(bytes(chunk) for chunk in connection.data_to_send())


def parse_server_frames(data: bytes) -> list[tuple[bool, bool, int, bytes]]:
    """Split unmasked server output into ``(fin, rsv1, opcode, payload)`` tuples."""
    frames = []
    position = 0
    while position < len(data):
        first, second = data[position], data[position + 1]
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        position += 2
        if length == 126:
            (length,) = struct.unpack_from("!H", data, position)
            position += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, position)
            position += 8
        frames.append((bool(first & 0x80), bool(first & 0x40), first & 0x0F, data[position : position + length]))
        position += length
    return frames


def close_code_sent(connection: ServerConnection) -> int:
    """The code of the Close frame that ends the connection's output."""
    frames = parse_server_frames(sent(connection))
    assert frames, "no frame was sent"
    _fin, _rsv1, opcode, payload = frames[-1]
    assert opcode == CLOSE
    return int.from_bytes(payload[:2], "big")


class EndOfData(Exception):
    """The bytes ran out before ``read_exact`` could return."""


def bytes_reader(data: bytes) -> Callable[[int], Coroutine[Any, Any, bytes]]:
    """An async ``read_exact`` over ``data`` that never waits."""
    position = 0

    async def read_exact(size: int) -> bytes:
        nonlocal position
        if size > len(data) - position:
            raise EndOfData
        position += size
        return data[position - size : position]

    return read_exact


def run_without_waiting(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (its reads are all in memory)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the coroutine waited for something")


def parse_frame(data: bytes, **kwargs: Any) -> Frame:
    """Run Duck's async ``Frame.parse`` over ``data``."""
    return run_without_waiting(Frame.parse(bytes_reader(data), **kwargs))
