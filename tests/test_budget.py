"""The connection budget's arithmetic (the servers' behaviour is in tests/integration/test_threads.py)."""

from __future__ import annotations

import logging

import pytest

from duck_ws_sync.budget import ConnectionBudget, default_for_threads


@pytest.mark.parametrize(("threads", "websockets"), [(1, 0), (2, 1), (4, 3), (8, 6), (64, 48), (400, 300)])
def test_the_default_keeps_a_quarter_of_the_threads_at_least_one_for_http(threads: int, websockets: int) -> None:
    assert default_for_threads(threads) == websockets


def test_a_spent_budget_refuses_with_503_and_retry_after_until_one_is_given_back() -> None:
    budget = ConnectionBudget(2)
    assert budget.take(None) is None and budget.take(None) is None
    refusal = budget.take(None)
    assert refusal is not None and refusal.status == 503
    assert ("Retry-After", "5") in refusal.headers
    assert refusal.body.startswith(b"Too many WebSocket connections (2 open)")
    budget.give_back()
    assert budget.take(None) is None


def test_no_limit_and_no_threads_means_no_refusal() -> None:
    budget = ConnectionBudget(None)
    assert all(budget.take(None) is None for _ in range(10_000))


def test_the_log_says_once_when_websockets_hold_every_thread(caplog: pytest.LogCaptureFixture) -> None:
    budget = ConnectionBudget(10)
    with caplog.at_level(logging.WARNING, logger="duck_ws_sync"):
        for _ in range(6):
            assert budget.take(4) is None
    warnings = [record.getMessage() for record in caplog.records if "hold all 4 threads" in record.getMessage()]
    assert len(warnings) == 1


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionBudget(-1)
