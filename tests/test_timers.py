"""The deadlines of a thread's connections on one gevent timer (``hosts/gevent/timers.py``), on gevent's real hub."""

from __future__ import annotations

import gc
import logging
import time

import gevent
import pytest

from duck_ws_sync.hosts.gevent.timers import TICK, Deadlines, deadlines


class Owner:
    """Records when its deadline fired; may add another deadline, or fail, from its handler."""

    def __init__(self, table: Deadlines, name: str, fired: list[tuple[str, float]]) -> None:
        self.table, self.name, self.fired = table, name, fired
        self.then: float | None = None  # a next deadline to add when this one fires
        self.fails = False

    def on_timer(self) -> None:
        self.fired.append((self.name, time.monotonic()))
        if self.then is not None:
            at, self.then = self.then, None
            self.table.add(self, at)
        if self.fails:
            raise RuntimeError("handler failed")


def wait_until(condition: object, seconds: float = 2.0) -> None:
    with gevent.Timeout(seconds):
        while not condition():  # type: ignore[operator]
            gevent.sleep(TICK / 2)


@pytest.fixture
def table() -> Deadlines:
    return Deadlines(gevent.get_hub().loop)


def test_one_table_per_hub() -> None:
    hub = gevent.get_hub()
    assert deadlines(hub) is deadlines(hub)


def test_deadlines_fire_in_order_never_early_and_at_most_a_tick_late(table: Deadlines) -> None:
    fired: list[tuple[str, float]] = []
    start = time.monotonic()
    wanted = {"c": start + 0.15, "a": start + 0.03, "b": start + 0.08}
    for name, at in wanted.items():
        table.add(Owner(table, name, fired), at)
    wait_until(lambda: len(fired) == 3)
    assert [name for name, _ in fired] == ["a", "b", "c"]
    for name, at in fired:
        assert wanted[name] <= at < wanted[name] + TICK + 0.05  # the hub's own delay on a busy machine


def test_a_removed_deadline_does_not_fire(table: Deadlines) -> None:
    fired: list[tuple[str, float]] = []
    start = time.monotonic()
    kept, removed = Owner(table, "kept", fired), Owner(table, "removed", fired)
    slot = table.add(removed, start + 0.02)
    table.add(kept, start + 0.02)
    table.add(Owner(table, "later", fired), start + 0.06)
    table.remove(removed, slot)
    wait_until(lambda: len(fired) == 2)
    gevent.sleep(0.05)
    assert [name for name, _ in fired] == ["kept", "later"]


def test_an_earlier_deadline_added_later_rearms_the_timer(table: Deadlines) -> None:
    fired: list[tuple[str, float]] = []
    start = time.monotonic()
    table.add(Owner(table, "late", fired), start + 0.5)
    table.add(Owner(table, "early", fired), start + 0.02)
    wait_until(lambda: fired)
    assert fired[0][0] == "early" and fired[0][1] < start + 0.3


def test_a_handler_may_add_a_deadline_due_at_once_or_later(table: Deadlines) -> None:
    fired: list[tuple[str, float]] = []
    start = time.monotonic()
    owner = Owner(table, "again", fired)
    owner.then = start  # already due when the handler adds it: fires in the same round
    table.add(owner, start + 0.02)
    wait_until(lambda: len(fired) == 2)
    later = owner.then = time.monotonic() + 0.03
    table.add(owner, time.monotonic())
    wait_until(lambda: len(fired) == 4)
    assert fired[3][1] >= later


def test_a_failing_handler_is_logged_and_the_others_still_fire(
    table: Deadlines, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[tuple[str, float]] = []
    start = time.monotonic()
    failing = Owner(table, "failing", fired)
    failing.fails = True
    table.add(failing, start + 0.02)
    table.add(Owner(table, "same slot", fired), start + 0.02)
    table.add(Owner(table, "next slot", fired), start + 0.05)
    with caplog.at_level(logging.ERROR, logger="duck_ws_sync"):
        wait_until(lambda: len(fired) == 3)
    assert {name for name, _ in fired} == {"failing", "same slot", "next slot"}
    assert "a deadline's handler failed" in caplog.text


def test_moving_a_deadline_allocates_nothing_that_lives_on(table: Deadlines) -> None:
    # What a heartbeat does twice per cycle on every connection: at 10,000
    # connections, objects that outlive a move pile up in the collector's old
    # generation and set off full collections.
    owners = [Owner(table, str(index), []) for index in range(100)]
    far = time.monotonic() + 3600
    slots = [table.add(owner, far) for owner in owners]
    gc.collect()
    before = len(gc.get_objects())
    for round_ in range(1, 50):
        for index, owner in enumerate(owners):
            table.remove(owner, slots[index])
            slots[index] = table.add(owner, far + round_)
    gc.collect()
    # One slot dict per distinct deadline (all 100 owners share each), nothing per move.
    assert len(gc.get_objects()) - before <= 5
    for owner, slot in zip(owners, slots, strict=True):
        table.remove(owner, slot)
