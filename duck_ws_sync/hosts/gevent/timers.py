"""The deadlines of every connection of a thread, on one gevent timer.

A connection has one deadline at a time (its next heartbeat Ping, the Pong
it waits for, its receive timeout or its closing handshake's end;
``Clock._schedule``), and it moves twice per heartbeat. A gevent timer
per connection cannot be moved, only replaced, and each replacement
allocated objects that lived until the next one: at 10,000 connections
that churn set off full collections of the garbage collector over every
connection's objects, which cost more CPU than the heartbeat itself.

Here deadlines are rounded up to slots of ``TICK`` seconds. Each slot is a
dict of the connections due then, and one timer of the thread's hub is
armed for the earliest slot; moving a deadline moves a dict entry. A
deadline fires up to ``TICK`` late, never early.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from typing import Any, Protocol

__all__ = ["TICK", "Deadlines", "deadlines"]

logger = logging.getLogger("duck_ws_sync")

TICK = 0.01
_ATTRIBUTE = "_duck_ws_sync_deadlines"


class Timed(Protocol):
    def on_timer(self) -> None: ...


def deadlines(hub: Any) -> Deadlines:
    """The deadlines of ``hub``'s thread."""
    found: Deadlines | None = getattr(hub, _ATTRIBUTE, None)
    if found is None:
        found = Deadlines(hub.loop)
        setattr(hub, _ATTRIBUTE, found)
    return found


class Deadlines:
    """Connections by the slot of their deadline; ``on_timer`` is called on each as its slot comes."""

    __slots__ = ("_armed", "_heap", "_loop", "_slots", "_timer")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._slots: dict[int, dict[Timed, None]] = {}
        self._heap: list[int] = []  # slot numbers, earliest first; a slot emptied since stays until it comes up
        self._timer: Any = None
        self._armed: int | None = None  # the slot the timer is armed for

    def add(self, owner: Timed, at: float) -> int:
        """Call ``owner.on_timer()`` once, from the hub, at or after ``at`` (``time.monotonic()``); return its slot."""
        slot = self.move(owner, None, at)
        assert slot is not None, "a deadline at infinity is none"
        return slot

    def remove(self, owner: Timed, slot: int) -> None:
        """Cancel ``owner``'s deadline in ``slot``."""
        self.move(owner, slot, math.inf)

    def move(self, owner: Timed, slot: int | None, at: float) -> int | None:
        """Move ``owner``'s deadline from ``slot`` (None: none) to ``at`` (``inf``: none); return its new slot.

        Twice per heartbeat for every connection: one call, no other.
        """
        new = None if at == math.inf else math.ceil(at / TICK)
        if new == slot:
            return slot
        slots = self._slots
        if slot is not None:
            members = slots.get(slot)
            if members is not None:
                members.pop(owner, None)
                if not members:
                    del slots[slot]
        if new is not None:
            members = slots.get(new)
            if members is None:
                members = slots[new] = {}
                heapq.heappush(self._heap, new)
                if self._armed is None or new < self._armed:
                    self._arm(new)
            members[owner] = None
        return new

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.close()
        self._armed = slot
        self._timer = self._loop.timer(max(slot * TICK - time.monotonic(), 0.0))
        # The loop's clock is updated first: from a stale one the timer would wake early.
        self._timer.start(self._fire, update=True)

    def _fire(self) -> None:
        self._timer.close()
        self._timer = self._armed = None
        heap, slots = self._heap, self._slots
        now = time.monotonic() / TICK
        while heap and heap[0] <= now:
            members = slots.pop(heapq.heappop(heap), None)
            for owner in members or ():
                try:
                    owner.on_timer()
                except Exception:
                    logger.exception("a deadline's handler failed")
        while heap and heap[0] not in slots:
            heapq.heappop(heap)
        if heap:
            self._arm(heap[0])
