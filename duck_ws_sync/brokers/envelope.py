"""What a broadcast is on a Redis channel, bytes in and out, and what a subscribed connection receives.

The message on the wire (format 1; this version's workers drop any other)::

    marker   4 bytes   b"DWS\\x01": "DWS", then the format's version
    origin  16 bytes   the publishing process, as 16 lowercase hex digits
    kind     1 byte    b"t": text (UTF-8), b"b": binary
    length   4 bytes   the body's length, big-endian
    body               exactly ``length`` bytes

``decode`` tells a message of ours from anything else that may arrive on
a channel (empty, random bytes, a wrong marker or version, a truncated
message, a body longer or shorter than announced, text that is not UTF-8),
with the reason.
"""

from __future__ import annotations

import string
import struct
from dataclasses import dataclass

import redis

__all__ = ["MARKER", "Envelope", "Malformed", "decode", "encode", "read_reply"]

MARKER = b"DWS\x01"
_HEADER = struct.Struct("!4s16scI")  # marker, origin, kind, body length: 25 bytes
_TEXT, _BINARY = b"t", b"b"
_HEX_DIGITS = frozenset(string.hexdigits.lower().encode())

# Sharded pub/sub's kinds read as the plain ones.
_MESSAGES = {b"message": b"message", b"smessage": b"message"}
_COUNTS = {
    b"subscribe": b"subscribe",
    b"unsubscribe": b"unsubscribe",
    b"ssubscribe": b"subscribe",
    b"sunsubscribe": b"unsubscribe",
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A well-formed message: who published it, and what (``str``: text, ``bytes``: binary)."""

    origin: bytes
    message: str | bytes


@dataclass(frozen=True, slots=True)
class Malformed:
    """A payload that is not a message of ours, and why."""

    reason: str


def encode(origin: bytes, message: str | bytes) -> bytes:
    """The payload that carries ``message`` from the process ``origin`` (16 lowercase hex digits).

    Raises:
        TypeError: ``message`` is neither ``str`` nor bytes-like.
    """
    if isinstance(message, str):
        kind, body = _TEXT, message.encode("utf-8")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        kind, body = _BINARY, bytes(message)
    else:
        raise TypeError(f"a broadcast is str (text) or bytes (binary), not {type(message).__name__}")
    return _HEADER.pack(MARKER, origin, kind, len(body)) + body


def decode(payload: bytes) -> Envelope | Malformed:
    """What ``payload``, received on a group's channel, is: an ``Envelope``, or ``Malformed`` with the reason."""
    if not payload:
        return Malformed("empty")
    if len(payload) < _HEADER.size:
        if not MARKER.startswith(payload[: len(MARKER)]):
            return Malformed(f"no {MARKER!r} marker ({len(payload)} bytes)")
        return Malformed(f"{len(payload)} bytes, shorter than the {_HEADER.size}-byte header")
    marker, origin, kind, length = _HEADER.unpack_from(payload)
    if marker != MARKER:
        if marker[:3] == MARKER[:3]:
            return Malformed(f"format version {marker[3]}, not {MARKER[3]}")
        return Malformed(f"no {MARKER!r} marker")
    if not _HEX_DIGITS.issuperset(origin):
        return Malformed("an origin that is not 16 lowercase hex digits")
    if kind not in (_TEXT, _BINARY):
        return Malformed(f"an unknown kind {kind!r}")
    body = payload[_HEADER.size :]
    if len(body) != length:
        return Malformed(f"a body of {len(body)} bytes where the header says {length} (truncated or padded)")
    if kind == _BINARY:
        return Envelope(origin, body)
    try:
        return Envelope(origin, body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Malformed(f"text that is not UTF-8 ({exc.reason} at byte {exc.start} of the body)")


def read_reply(reply: object) -> tuple[bytes, bytes, bytes]:
    """What a subscribed connection received: its kind, its channel and its payload (``b""`` for none).

    The kinds of sharded pub/sub (``smessage``, ``ssubscribe``,
    ``sunsubscribe``) read as the plain ones.

    Raises:
        redis.InvalidResponse: Not a reply that a subscribed connection gets
            (after a refused ``SUBSCRIBE``, say, Redis answers a ``PING`` with
            a plain ``PONG``).
    """
    if isinstance(reply, list) and reply and isinstance(reply[0], bytes):
        kind = reply[0]
        if len(reply) == 3 and isinstance(reply[1], bytes):
            if kind in _MESSAGES and isinstance(reply[2], bytes):
                return _MESSAGES[kind], reply[1], reply[2]
            if kind in _COUNTS and isinstance(reply[2], int):
                return _COUNTS[kind], reply[1], b""
        elif kind == b"pong" and len(reply) == 2:
            return kind, b"", b""
    raise redis.InvalidResponse(f"not a reply to a subscriber: {reply!r:.200}")
