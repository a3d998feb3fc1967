"""Writing a list of chunks to a socket a part at a time: what both hosts' transports share."""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["MAX_GATHER", "send_what_fits", "unsent"]

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


def send_what_fits(
    sock: socket.socket, chunks: list[Any], gather: bool, would_block: type[Exception] | tuple[type[Exception], ...]
) -> list[Any]:
    """Write ``chunks`` to the non-blocking ``sock`` in one system call; return what did not fit.

    send() for one chunk, sendmsg() for several when ``gather`` (a large
    frame's header and payload together: one TCP segment less); a socket
    that would block (``would_block``) took nothing.
    """
    if len(chunks) == 1:  # the common write: one frame
        chunk = chunks[0]
        try:
            sent = sock.send(chunk)
        except would_block:
            sent = 0
        return [] if sent == len(chunk) else [memoryview(chunk)[sent:]]
    batch = chunks[:MAX_GATHER] if gather else chunks[:1]
    if not batch:
        return []
    try:
        sent = sock.send(batch[0]) if len(batch) == 1 else sock.sendmsg(batch)
    except would_block:
        sent = 0
    return unsent(chunks, sent)
