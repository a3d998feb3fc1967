"""Payloads for the interoperability suite: random, incompressible, and described by their SHA-256.

Text payloads mix one- to four-byte UTF-8 characters, so that fragments and
frames split characters, and have an exact size in bytes. Random data does
not compress: a message of N bytes stays about N bytes once deflated, so the
server fragments it as the test intends.
"""

from __future__ import annotations

import functools
import hashlib
import random

KiB = 1024
MiB = 1024 * KiB

# Widths 1, 2, 3 and 4 bytes in UTF-8.
ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789éßøΩжא€✓中あ𝄞😀🦆"
_BLOCK = 1 * MiB  # random bytes, tiled: deflate's window (32 KiB) never sees a repeat


def describe(data: bytes) -> dict[str, object]:
    """What a client reports of a message it sent or received: size and digest."""
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def make(kind: str, size: int) -> bytes:
    """``size`` random bytes; for ``kind == "text"``, valid UTF-8 of exactly that many bytes."""
    block = _text_block() if kind == "text" else _binary_block()
    data = block * (size // len(block)) + block[: size % len(block)]
    if kind == "text" and data:
        # The cut may end inside a character: drop its lead and continuation bytes, pad with ASCII.
        end = len(data)
        while end and data[end - 1] & 0xC0 == 0x80:
            end -= 1
        if end and data[end - 1] >= 0xC0:
            end -= 1
        data = data[:end] + b"x" * (size - end)
    return data


@functools.cache
def _binary_block() -> bytes:
    return random.Random(6455).randbytes(_BLOCK)


@functools.cache
def _text_block() -> bytes:
    # Whole characters, so that blocks tile into valid UTF-8.
    return "".join(random.Random(7692).choices(ALPHABET, k=_BLOCK // 2)).encode()
