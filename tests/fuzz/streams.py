"""Random client streams: a sequence of segments, each a message, a control frame, or some damage.

A stream is built from segments drawn with weights: whole messages,
fragmented ones (text cut mid-character, control frames between the
fragments, long runs of empty continuation frames), compressed ones when
permessage-deflate was agreed (and sometimes when it was not), Pings, Pongs
and Closes, valid or not, frames that break one rule, headers whose length
lies, large frames that the connection lends a buffer for, and raw garbage.
The builder remembers where each piece starts and whether every header
tells the truth about its payload: the reducer cuts whole pieces, and a
stream whose framing is honest and that ends with a valid Close must close.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from duck_ws_sync.protocol.connection import DIRECT_READ

from .wire import INVALID_UTF8, ClientDeflater, client_frame, close_payload, random_text

__all__ = ["Stream", "StreamBuilder", "build_stream"]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
RESERVED_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)

#: Lengths a lying header announces: small lies, and the edges of each encoding.
LYING_LENGTHS = (125, 126, 65535, 65536, 1 << 31, 1 << 32, 1 << 40, (1 << 62), (1 << 63) - 1, 1 << 63, (1 << 64) - 1)


@dataclass
class Stream:
    """A client's bytes and what the generator knows about them.

    Attributes:
        data: The bytes.
        pieces: Where each frame (or run of garbage) starts, in order.
        honest: Every header announces its payload's true length, and
            nothing was cut or altered afterwards: frame boundaries are where
            the generator put them.
        ends_with_close: The last frame is a valid client Close.
        large: Where the payload of the first large frame starts and ends,
            if the stream has one (a buffer is lent for it).
        notes: What the generator put in, for the description of a finding.
    """

    data: bytes
    pieces: list[int]
    honest: bool
    ends_with_close: bool
    large: tuple[int, int] | None
    notes: list[str] = field(default_factory=list)


class StreamBuilder:
    """Appends frames and notes what they are; ``deflater`` compresses when permessage-deflate was agreed."""

    def __init__(self, rng: random.Random, deflater: ClientDeflater | None) -> None:
        self.rng = rng
        self.deflater = deflater
        self.parts: list[bytes] = []
        self.pieces: list[int] = []
        self.size = 0
        self.honest = True
        self.large: tuple[int, int] | None = None
        self.notes: list[str] = []
        self.last_is_close = False
        self.strict = False  # valid frames only: no broken rule, no lie, no invalid text or compressed data

    def frame(self, opcode: int, payload: bytes = b"", **fields: object) -> tuple[int, int]:
        """Append one frame; return where its payload starts and ends in the stream."""
        rng = self.rng
        fields.setdefault("mask", rng.randbytes(4) if rng.random() < 0.9 else b"\x00\x00\x00\x00")
        if rng.random() < 0.05:
            fields.setdefault("encoding", rng.choice([2, 8]))
        data = client_frame(opcode, payload, **fields)  # type: ignore[arg-type]
        start = self.size + len(data) - len(payload)
        self.raw(data)
        return start, start + len(payload)

    def raw(self, data: bytes) -> None:
        """Append bytes as one piece."""
        self.pieces.append(self.size)
        self.parts.append(data)
        self.size += len(data)
        self.last_is_close = False

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def build(self) -> Stream:
        return Stream(b"".join(self.parts), self.pieces, self.honest, self.last_is_close, self.large, self.notes)


# Payloads.


def draw_size(rng: random.Random) -> int:
    """A payload size: mostly small, sometimes past each length encoding's edge."""
    kind = rng.random()
    if kind < 0.6:
        return rng.randrange(0, 130)
    if kind < 0.9:
        return rng.randrange(0, 3000)
    return rng.choice([125, 126, 127, 65535, 65536, rng.randrange(3000, 20_000)])


def draw_payload(rng: random.Random, opcode: int, size: int, builder: StreamBuilder) -> bytes:
    """A text or binary payload of about ``size`` bytes; text is sometimes invalid UTF-8."""
    if opcode != TEXT:
        kind = rng.random()
        if kind < 0.5:
            return rng.randbytes(size)
        if kind < 0.8:
            return (rng.randbytes(rng.randint(1, 8)) * size)[:size]
        return bytes(size)
    text = random_text(rng, size)
    if builder.strict or rng.random() >= 0.1:
        return text
    builder.note("invalid UTF-8")
    if rng.random() < 0.8:
        cut = rng.randint(0, len(text))
        return text[:cut] + rng.choice(INVALID_UTF8) + text[cut:]
    return text + rng.choice(INVALID_UTF8)[:1]  # a lead byte with nothing after it, or a byte never valid


def cuts_of(rng: random.Random, payload: bytes, count: int, text: bool = False) -> list[bytes]:
    """``payload`` cut at ``count`` places (for ``text``, often inside a character); equal cuts give empty pieces."""
    points = [rng.randint(0, len(payload)) for _ in range(count)]
    inside = [index for index, byte in enumerate(payload[:4096]) if byte >= 0x80] if text and count else []
    if inside and rng.random() < 0.5:
        points[0] = rng.choice(inside)  # before a byte of a multi-byte character, or of an invalid sequence
    points.sort()
    edges = [0, *points, len(payload)]
    return [payload[start:stop] for start, stop in pairwise(edges)]


# Segments.


def whole_message(builder: StreamBuilder) -> None:
    """A text or binary message in one frame."""
    rng = builder.rng
    opcode = rng.choice([TEXT, BINARY])
    builder.frame(opcode, draw_payload(rng, opcode, draw_size(rng), builder))


def control_frames(builder: StreamBuilder, count: int) -> None:
    """Pings and Pongs with payloads the RFC allows (§5.5)."""
    rng = builder.rng
    for _ in range(count):
        builder.frame(rng.choice([PING, PONG]), rng.randbytes(rng.choice([0, 1, 4, rng.randrange(126), 125])))


def one_control_frame(builder: StreamBuilder) -> None:
    """A Ping or a Pong."""
    control_frames(builder, 1)


def fragmented_message(builder: StreamBuilder) -> None:
    """A message in fragments, with control frames, empty continuations, or a rule broken between them."""
    rng = builder.rng
    opcode = rng.choice([TEXT, BINARY])
    payload = draw_payload(rng, opcode, draw_size(rng), builder)
    fragments = cuts_of(rng, payload, rng.randint(1, 8), text=opcode == TEXT)
    if rng.random() < 0.1:
        builder.note("a long run of empty continuation frames")
        at = rng.randrange(1, len(fragments) + 1)
        fragments[at:at] = [b""] * rng.choice([50, 500, 3000])
    for index, fragment in enumerate(fragments):
        last = index == len(fragments) - 1
        builder.frame(opcode if index == 0 else CONTINUATION, fragment, fin=last)
        if not last and rng.random() < 0.2:
            control_frames(builder, rng.randint(1, 2))
        if not last and not builder.strict and rng.random() < 0.03:
            builder.note("a data frame inside a fragmented message")
            builder.frame(rng.choice([TEXT, BINARY]), b"interloper")


def compressed_message(builder: StreamBuilder) -> None:
    """A permessage-deflate message (RFC 7692), valid or corrupt, in one frame or several."""
    rng = builder.rng
    deflater = builder.deflater
    if deflater is None:
        builder.note("RSV1 without permessage-deflate")
        deflater = ClientDeflater(15, context_takeover=False)
    opcode = rng.choice([TEXT, BINARY])
    size = draw_size(rng) if rng.random() < 0.8 else rng.choice([10_000, 100_000, 1_000_000])
    data = draw_payload(rng, opcode, size, builder) if size < 20_000 else bytes(size)  # zeros: a "zip bomb"
    payload, valid = deflater.compress(rng, data, valid=builder.strict)
    builder.note("a compressed message" if valid else "corrupt compressed data")
    fragments = cuts_of(rng, payload, rng.choice([0, 0, 1, 3]))
    for index, fragment in enumerate(fragments):
        last = index == len(fragments) - 1
        # §6.1: only the first frame of a compressed message has RSV1.
        rsv1 = index == 0 or (not builder.strict and rng.random() < 0.02)
        builder.frame(opcode if index == 0 else CONTINUATION, fragment, fin=last, rsv1=rsv1)
        if not last and rng.random() < 0.1:
            control_frames(builder, 1)


def close(builder: StreamBuilder) -> None:
    """A Close frame in the middle of the stream, valid or not."""
    rng = builder.rng
    valid = builder.strict or rng.random() < 0.5
    builder.note("a Close frame" if valid else "an invalid Close frame")
    builder.frame(CLOSE, close_payload(rng, valid))
    builder.last_is_close = valid


def broken_frame(builder: StreamBuilder) -> None:
    """A frame that breaks one rule of RFC 6455 §5."""
    rng = builder.rng
    rule = rng.choice(
        ["reserved opcode", "rsv2", "rsv3", "rsv1", "unmasked", "fragmented control", "long control", "continuation"]
    )
    builder.note(rule)
    if rule == "reserved opcode":
        builder.frame(rng.choice(RESERVED_OPCODES), rng.randbytes(rng.randrange(10)), fin=rng.random() < 0.8)
    elif rule in ("rsv1", "rsv2", "rsv3"):
        opcode = rng.choice([TEXT, BINARY, CONTINUATION, PING, PONG, CLOSE])
        builder.frame(opcode, b"" if opcode == CLOSE else b"payload", **{rule: True})
    elif rule == "unmasked":
        builder.frame(rng.choice([TEXT, BINARY, PING]), b"plain", mask=None)
    elif rule == "fragmented control":
        builder.frame(rng.choice([CLOSE, PING, PONG]), b"", fin=False)
    elif rule == "long control":
        builder.frame(rng.choice([CLOSE, PING, PONG]), rng.randbytes(rng.randint(126, 300)))
    else:
        builder.frame(CONTINUATION, b"orphan", fin=rng.random() < 0.5)


def lying_length(builder: StreamBuilder) -> None:
    """A header whose length is not its payload's: what follows is read as payload, or the reverse."""
    rng = builder.rng
    builder.honest = False
    builder.note("a length that lies")
    payload = rng.randbytes(rng.randrange(40))
    length = rng.choice(LYING_LENGTHS) if rng.random() < 0.5 else rng.randrange(0, 200)
    opcode = rng.choice([TEXT, BINARY, CONTINUATION, PING, PONG, CLOSE])
    builder.frame(opcode, payload, length=length, fin=rng.random() < 0.9, rsv1=rng.random() < 0.2)


def large_frame(builder: StreamBuilder) -> None:
    """A frame long enough for the connection to lend a buffer to read its payload into."""
    rng = builder.rng
    opcode = rng.choice([TEXT, BINARY])
    size = DIRECT_READ + rng.randrange(1, 2 * DIRECT_READ)
    payload = draw_payload(rng, opcode, size, builder)
    compressed = builder.deflater is not None and not builder.strict and rng.random() < 0.3
    if compressed:
        assert builder.deflater is not None
        payload, valid = builder.deflater.compress(rng, payload + rng.randbytes(size))  # random: it stays large
        builder.note("a large compressed frame" if valid else "a large frame of corrupt compressed data")
    fin = rng.random() < 0.8
    start, stop = builder.frame(opcode, payload, fin=fin, rsv1=compressed)
    if builder.large is None:
        builder.large = (start, stop)
    builder.note("a large frame")
    if not fin:
        builder.frame(CONTINUATION, b"end", fin=True)


def garbage(builder: StreamBuilder) -> None:
    """Random bytes where a frame should start."""
    builder.honest = False
    builder.note("garbage")
    builder.raw(builder.rng.randbytes(builder.rng.randint(1, 64)))


Segment = Callable[[StreamBuilder], None]

# How often each segment is drawn, per segment of a stream.
SEGMENTS: dict[Segment, int] = {
    whole_message: 25,
    fragmented_message: 14,
    compressed_message: 12,
    close: 1,
    broken_frame: 6,
    lying_length: 3,
    garbage: 2,
}


# Segments that break a rule or lie: drawn only into hostile streams.
HOSTILE = (broken_frame, lying_length, garbage)


def draw_segments(builder: StreamBuilder, count: int) -> None:
    rng = builder.rng
    weights = dict(SEGMENTS)
    if builder.strict:
        weights.update(dict.fromkeys(HOSTILE, 0))
    if builder.deflater is None:
        weights[compressed_message] = 0 if builder.strict else 2
    segments = list(weights)
    for _ in range(count):
        segment = rng.choices(segments, [weights[segment] for segment in segments])[0]
        if segment is whole_message and rng.random() < 0.3:
            segment = one_control_frame
        segment(builder)


def build_stream(
    rng: random.Random, deflater: ClientDeflater | None, *, hostile: bool, large: bool = False, race: bool = False
) -> Stream:
    """Draw a stream of a few segments, maybe with one large frame, mostly ending with a valid Close.

    Args:
        rng: The case's random numbers.
        deflater: The client's compressor, when permessage-deflate was agreed.
        hostile: Draw invalid frames, lies and garbage too; else only valid
            frames (the messages may still be over the limits).
        large: Put a large frame among the segments.
        race: A few valid frames, a large one and maybe a data frame (a host
            closes while the large one is read), then the client's Close.
    """
    builder = StreamBuilder(rng, deflater)
    builder.strict = not hostile
    if race:
        for _ in range(rng.randrange(4)):
            rng.choice([whole_message, one_control_frame])(builder)
        large_frame(builder)
        if rng.random() < 0.5:
            builder.frame(rng.choice([TEXT, BINARY]), b"dropped after our Close")
    else:
        count = rng.choice([1, 2, 4, 8, 16, 32])
        large_at = rng.randrange(count + 1) if large else -1
        for index in range(count + 1):
            if index == large_at:
                large_frame(builder)
            if index < count:
                draw_segments(builder, 1)
    if race or rng.random() < 0.75:
        builder.frame(CLOSE, close_payload(rng, valid=True))
        builder.last_is_close = True
    return builder.build()
