"""Shrinking a case that shows a finding, keeping the finding's key.

First what surrounds the bytes goes, where it can (the splits, the host's
actions, the end of stream, the extension, the limits, the expectations),
then whole pieces of the stream (frames, runs of garbage), then the payload
of each frame that is left (the frame rebuilt around a shorter one), then,
unless the finding depends on honest framing, runs of bytes, halving their
length down to one byte. Every step is kept only if the case still shows a
finding with the same key, and the whole stays within a time budget: a
reduced case is smaller, not necessarily minimal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .cases import Case
from .checks import check_case
from .wire import read_client_frame

__all__ = ["reduce_case"]

#: Tells whether a smaller case still shows the finding.
Shows = Callable[[Case], bool]


def reduce_case(case: Case, key: str, seconds: float = 20.0) -> Case:
    """A smaller case that still shows a finding with ``key``, found within about ``seconds``."""
    deadline = time.monotonic() + seconds

    def shows(candidate: Case) -> bool:
        report = check_case(candidate)
        return report.finding is not None and report.finding.key == key and report.known is None

    case = simplify(case, shows, deadline)
    case = drop_pieces(case, shows, deadline)
    case = shorten_payloads(case, shows, deadline)
    if not (case.expect_close or case.race):
        case = drop_bytes(case, shows, deadline)
    return simplify(case, shows, deadline)


def simplify(case: Case, shows: Shows, deadline: float) -> Case:
    """Take away what surrounds the stream, one thing at a time."""
    changes: list[Callable[[Case], dict[str, Any]]] = [
        lambda case: {"python_cuts": ()},
        lambda case: {"native_cuts": ()},
        lambda case: {"native_ways": "d"},
        lambda case: {"native_input": "bytes"},
        lambda case: {"eof": False},
        lambda case: {"actions": ()},
        lambda case: {"parser_starts": (0,), "parser_input": "bytes"},
        lambda case: {"options": replace(case.options, deflate=None, offer=())},
        lambda case: {"options": replace(case.options, max_frame_size=None)},
        lambda case: {"options": replace(case.options, max_message_size=None)},
        lambda case: {"expect_close": False, "race": False},
        lambda case: {"notes": ()},
    ]
    for change in changes:
        if time.monotonic() > deadline:
            break
        candidate = replace(case, **change(case))
        if candidate != case and shows(candidate):
            case = candidate
    return case


def drop_pieces(case: Case, shows: Shows, deadline: float) -> Case:
    """Remove whole pieces (frames, garbage), the last first: fewer and fewer at a time."""
    count = max(len(case.pieces) // 2, 1)
    while count and time.monotonic() < deadline:
        edges = [*case.pieces, len(case.stream)]
        removed = False
        for index in range(len(case.pieces) - count, -1, -count):
            if time.monotonic() > deadline:
                break
            candidate = without(case, edges[index], edges[min(index + count, len(edges) - 1)])
            if shows(candidate):
                case, removed = candidate, True
                break
        if not removed:
            count //= 2
    return case


def shorten_payloads(case: Case, shows: Shows, deadline: float) -> Case:
    """Rebuild each whole frame left with its payload emptied, else halved, as long as that keeps the finding."""
    index = len(case.pieces) - 1
    while index >= 0 and time.monotonic() < deadline:
        start = case.pieces[index]
        stop = case.pieces[index + 1] if index + 1 < len(case.pieces) else len(case.stream)
        frame = read_client_frame(case.stream[start:stop])
        if frame is None:
            index -= 1
            continue
        rebuild, payload = frame
        half = len(payload) // 2
        shorter = [piece for piece in (b"", payload[:half], payload[half:]) if len(piece) < len(payload)]
        for candidate in (spliced(case, start, stop, rebuild(piece)) for piece in shorter):
            if shows(candidate):
                case = candidate
                break
        else:
            index -= 1  # this frame's payload is as short as it gets
    return case


def drop_bytes(case: Case, shows: Shows, deadline: float) -> Case:
    """Remove runs of bytes, halving their length down to one byte."""
    size = max(len(case.stream) // 2, 1)
    while size and time.monotonic() < deadline:
        start = len(case.stream) - size
        while start >= 0 and time.monotonic() < deadline:
            candidate = without(case, start, start + size)
            if shows(candidate):
                case = candidate
            start -= size
        size //= 2
    return case


def without(case: Case, start: int, stop: int) -> Case:
    """``case`` with ``stream[start:stop]`` removed, every offset moved to match."""
    return spliced(case, start, stop, b"")


def spliced(case: Case, start: int, stop: int, data: bytes) -> Case:
    """``case`` with ``stream[start:stop]`` replaced by ``data``, every offset moved to match.

    An offset inside the replaced bytes moves to their start.
    """
    shift = len(data) - (stop - start)
    size = len(case.stream) + shift

    def moved(offset: int) -> int:
        return offset if offset <= start else start if offset < stop else offset + shift

    def cuts(offsets: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted({moved(offset) for offset in offsets} - {0, size}))

    kept = [piece for piece in case.pieces if not start < piece < stop and not (piece == start and not data)]
    return replace(
        case,
        stream=case.stream[:start] + data + case.stream[stop:],
        pieces=tuple(sorted({moved(piece) for piece in kept} - {size})),
        native_cuts=cuts(case.native_cuts),
        python_cuts=cuts(case.python_cuts),
        actions=tuple(replace(action, offset=moved(action.offset)) for action in case.actions),
        parser_starts=tuple(sorted({moved(offset) for offset in case.parser_starts})),
    )
