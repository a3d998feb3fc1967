"""``MAX_MESSAGE_RATE``'s bucket (``ratelimit.MessageRate``); a flooding client on real servers: test_security.py."""

from __future__ import annotations

from duck_ws_sync.engine.ratelimit import MessageRate

WHERE = ("203.0.113.7", 4711, "/ws/chat")


def test_a_burst_of_the_rate_then_the_rate_itself() -> None:
    bucket = MessageRate(10, where=WHERE, now=0.0)
    assert bucket.take(10, 0.0)
    assert not bucket.take(1, 0.0)
    assert bucket.take(1, 0.1)  # one refilled every tenth of a second
    assert not bucket.take(1, 0.1)
    assert bucket.take(5, 0.6)


def test_a_client_at_the_rate_forever_is_never_refused() -> None:
    bucket = MessageRate(50, where=WHERE, now=0.0)
    assert all(bucket.take(1, index / 50) for index in range(10_000))


def test_idle_time_refills_no_more_than_one_burst() -> None:
    bucket = MessageRate(5, where=WHERE, now=0.0)
    assert bucket.take(5, 0.0)
    assert bucket.take(5, 3600.0)
    assert not bucket.take(1, 3600.0)


def test_several_messages_of_one_read_count_together() -> None:
    bucket = MessageRate(3, where=WHERE, now=0.0)
    assert not bucket.take(4, 0.0)  # over the burst at once
    assert bucket.take(3, 0.0)  # a refused read took nothing


def test_a_rate_under_one_still_lets_one_message_through() -> None:
    bucket = MessageRate(0.5, where=WHERE, now=0.0)
    assert bucket.take(1, 0.0)
    assert not bucket.take(1, 1.0)
    assert bucket.take(1, 2.0)


def test_the_log_names_the_client_and_the_path(caplog) -> None:
    MessageRate(20, where=WHERE, now=0.0).log_exceeded()
    assert caplog.messages == [
        "closing WebSocket /ws/chat of 203.0.113.7:4711 with 1008: over MAX_MESSAGE_RATE (20 frames a second)"
    ]
