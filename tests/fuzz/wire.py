"""Client bytes, built without the package: frames, Close payloads, text, and permessage-deflate data.

As in ``tests/helpers.py`` (whose ``frame_header`` it uses), frames are
assembled with ``struct`` and a plain XOR, and compressed with zlib
directly, so the fuzz never builds its input with the code it checks. The XOR here works on the whole payload as one
integer: the fuzz masks megabytes per second, where a loop over bytes would
dominate its time.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable

from tests.helpers import frame_header

__all__ = [
    "INVALID_CLOSE_CODES",
    "INVALID_UTF8",
    "MAX_HEADER",
    "VALID_CLOSE_CODES",
    "ClientDeflater",
    "client_frame",
    "close_payload",
    "masked",
    "random_text",
    "read_client_frame",
]

#: RFC 6455 §5.2: 2 bytes, 8 of extended length, 4 of masking key.
MAX_HEADER = 14

#: Close codes a client may send (RFC 6455 §7.4.1-§7.4.2).
VALID_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999)
#: Close codes no Close frame may carry: reserved, or for reporting only.
INVALID_CLOSE_CODES = (0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 0xFFFF)

#: Byte sequences that are never valid UTF-8 (RFC 3629), wherever they appear.
INVALID_UTF8 = (
    b"\xff",  # never a UTF-8 byte
    b"\x80",  # a continuation byte with no lead
    b"\xc0\xaf",  # an overlong "/"
    b"\xe0\x80\xaf",  # an overlong "/" in three bytes
    b"\xed\xa0\x80",  # an encoded surrogate, U+D800
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # a five-byte form
    b"\xe2\x82x",  # a lead byte followed by ASCII
)

# Characters drawn for text: ASCII, then two, three and four bytes of UTF-8.
_ALPHABETS = (
    "hello world 0123456789 {}[]\"':,.",
    "éèàçñøåß¿¡",
    "€中文日本語한국어ไทย\u2028\ufeff\uffff",
    "😀🎉𝄞𐍈\U0010ffff",
)


def masked(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` (masking and unmasking alike)."""
    if not data:
        return b""
    key = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(len(data), "big")


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = b"\x00\x00\x00\x00",
    length: int | None = None,
    encoding: int = 0,
) -> bytes:
    """Build one frame as a client sends it (masked unless ``mask=None``).

    Args:
        opcode: Any 4-bit opcode, reserved ones included.
        payload: The payload, unmasked.
        fin, rsv1, rsv2, rsv3: The header's bits.
        mask: The masking key, or None for an unmasked frame.
        length: The length the header announces, when it lies (0 to 2**64 - 1).
        encoding: The length's encoding: 0 the shortest, else 2 or 8 bytes
            of extended length even for a length that fits in fewer (RFC 6455
            §5.2 asks for the shortest; servers accept the others).
    """
    announced = len(payload) if length is None else length
    header = frame_header(
        opcode, announced, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3, masked=mask is not None, encoding=encoding
    )
    if mask is None:
        return header + payload
    return header + mask + masked(payload, mask)


def random_text(rng: random.Random, size: int) -> bytes:
    """About ``size`` bytes of valid UTF-8 (a little less: the last character is never cut)."""
    weights = [rng.random() for _ in _ALPHABETS]
    pieces: list[str] = []
    total = 0
    while total < min(size, 512):
        alphabet = rng.choices(_ALPHABETS, weights)[0]
        character = rng.choice(alphabet)
        pieces.append(character)
        total += len(character.encode())
    text = "".join(pieces).encode()
    if size > len(text) > 0:
        text *= size // len(text) + 1  # a long text repeats a short one: cheap to draw, and deflate likes it
    return text[:size].decode("utf-8", "ignore").encode()


def close_payload(rng: random.Random, valid: bool) -> bytes:
    """A Close frame's payload: a code and a reason, valid or broken in one way."""
    if valid:
        if rng.random() < 0.15:
            return b""  # no status code: reported as 1005
        reason = random_text(rng, rng.choice([0, 0, 5, 40, 123]))
        return struct.pack("!H", rng.choice(VALID_CLOSE_CODES)) + reason
    damage = rng.choice(["code", "reason", "one byte", "code and reason"])
    if damage == "one byte":
        return bytes([rng.randrange(256)])
    code = rng.choice(INVALID_CLOSE_CODES) if damage != "reason" else rng.choice(VALID_CLOSE_CODES)
    reason = random_text(rng, rng.randrange(20))
    if damage != "code":
        cut = rng.randint(0, len(reason))
        reason = (reason[:cut] + rng.choice(INVALID_UTF8) + reason[cut:])[:123]
    return struct.pack("!H", code) + reason


class ClientDeflater:
    """A client's permessage-deflate compressor (RFC 7692 §7.2.1), right or deliberately wrong.

    Args:
        window_bits: The window the client agreed to compress with (9-15).
        context_takeover: Keep the compression context from one message to
            the next (allowed unless ``client_no_context_takeover`` was agreed).
    """

    def __init__(self, window_bits: int, context_takeover: bool) -> None:
        self.window_bits = window_bits
        self.context_takeover = context_takeover
        self._compressor: zlib._Compress | None = None

    def compress(self, rng: random.Random, data: bytes, valid: bool = False) -> tuple[bytes, bool]:
        """Compress one message; return its payload and whether it is a valid one.

        Mostly a message as RFC 7692 wants it: raw deflate, sync-flushed,
        the 4-byte tail removed. Sometimes another valid form (the tail kept,
        a full flush, a finished stream) or, unless ``valid``, a corrupt one.
        """
        form = rng.choices(
            ["flushed", "tail kept", "full flush", "finished", "wide window", "corrupt", "garbage"],
            [60, 5, 5, 8, 0 if valid else 3, 0 if valid else 12, 0 if valid else 3],
        )[0]
        if form == "garbage":
            return rng.randbytes(rng.randrange(1, 40)), False
        if form == "finished":
            # A final block (BFINAL) ends the stream: both sides start afresh after it.
            self._compressor = None
            return zlib.compress(data, rng.randrange(10), wbits=-self.window_bits), True
        bits = 15 if form == "wide window" else self.window_bits
        compressor = self._compressor
        if compressor is None or not self.context_takeover or form == "wide window":
            compressor = zlib.compressobj(rng.randrange(10), zlib.DEFLATED, -bits, rng.randint(1, 9))
        self._compressor = compressor if self.context_takeover and form != "wide window" else None
        mode = zlib.Z_FULL_FLUSH if form == "full flush" else zlib.Z_SYNC_FLUSH
        payload = compressor.compress(data) + compressor.flush(mode)
        if form != "tail kept":
            payload = payload[:-4]  # §7.2.1: the empty stored block's 00 00 ff ff
        if form == "corrupt":
            self._compressor = None  # the server fails on it, or is out of step from here on
            return _corrupt(rng, payload), False
        # A wider window than agreed is only wrong when a match reaches that far back.
        return payload, form != "wide window" or bits == self.window_bits


def _corrupt(rng: random.Random, payload: bytes) -> bytes:
    """Damage deflate data: a flipped byte, a cut, or bytes added."""
    damage = rng.choice(["flip", "cut", "append", "prepend"])
    if damage == "flip" and payload:
        position = rng.randrange(len(payload))
        return payload[:position] + bytes([payload[position] ^ rng.randrange(1, 256)]) + payload[position + 1 :]
    if damage == "cut" and payload:
        return payload[: rng.randrange(len(payload))]
    if damage == "prepend":
        return rng.randbytes(rng.randint(1, 4)) + payload
    return payload + rng.randbytes(rng.randint(1, 8))


def read_client_frame(data: bytes) -> tuple[Callable[[bytes], bytes], bytes] | None:
    """Read ``data`` as exactly one masked frame: a function that rebuilds it around another payload, and its payload.

    None when ``data`` is not one whole masked frame whose header tells its length.
    """
    if len(data) < 2 or not data[1] & 0x80:
        return None
    first, code = data[0], data[1] & 0x7F
    size = 2 + {126: 2, 127: 8}.get(code, 0)
    length = code if code < 126 else int.from_bytes(data[2:size], "big")
    if len(data) != size + 4 + length:
        return None
    mask = data[size : size + 4]

    def rebuild(payload: bytes) -> bytes:
        return client_frame(
            first & 0x0F,
            payload,
            fin=bool(first & 0x80),
            rsv1=bool(first & 0x40),
            rsv2=bool(first & 0x20),
            rsv3=bool(first & 0x10),
            mask=mask,
        )

    return rebuild, masked(data[size + 4 :], mask)
