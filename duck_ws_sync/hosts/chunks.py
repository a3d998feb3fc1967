"""Writing a list of chunks to a socket a part at a time: what both hosts' transports share."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_GATHER", "unsent"]

# Chunks written by one sendmsg() (far below any system's IOV_MAX).
MAX_GATHER = 64


def unsent(chunks: list[Any], sent: int) -> list[Any]:
    """What is left of ``chunks`` to write after the first ``sent`` bytes went out."""
    for index, chunk in enumerate(chunks):
        size = len(chunk)
        if sent < size:
            return [memoryview(chunk)[sent:] if sent else chunk, *chunks[index + 1 :]]
        sent -= size
    return []
