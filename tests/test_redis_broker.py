"""The Redis broker's envelope and replies (bytes in, verdict out), and its subscriber on a real redis-server.

Envelopes are built here with ``struct``, as the module's docstring draws
them, not with ``redis_broker.encode``, so that the format is checked
against its description. Across gunicorn workers: integration/test_redis.py.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from duck_ws_sync import BrokerUnavailable
from duck_ws_sync.brokers import redis as redis_broker
from duck_ws_sync.brokers.redis import Envelope, Malformed, RateLimitedLog, RedisBroker, decode, encode, read_reply
from duck_ws_sync.engine.groups import group_topic, user_topic
from tests.integration.redis_service import RedisService

HEADER = struct.Struct("!4s16scI")  # marker, origin, kind, body length
OTHER = b"0123456789abcdef"  # the origin of a process that is not the one under test


def envelope(
    body: bytes, kind: bytes = b"t", *, marker: bytes = b"DWS\x01", origin: bytes = OTHER, length: int | None = None
) -> bytes:
    """A message as the module's docstring draws it; ``length`` overrides the body's, to build lying headers."""
    return HEADER.pack(marker, origin, kind, len(body) if length is None else length) + body


def reason(payload: bytes) -> str:
    verdict = decode(payload)
    assert isinstance(verdict, Malformed), f"{payload!r} passed for a message: {verdict!r}"
    return verdict.reason


# The envelope.


@pytest.mark.parametrize("message", ["", "hello", "👋 é\x00", b"", b"\x00\xff" * 100, bytes(range(256))])
def test_a_message_comes_out_as_it_went_in(message: str | bytes) -> None:
    assert decode(encode(OTHER, message)) == Envelope(OTHER, message)


def test_the_wire_format_is_the_documented_one() -> None:
    assert encode(OTHER, "hé") == b"DWS\x01" + OTHER + b"t" + b"\x00\x00\x00\x03" + "hé".encode()
    assert encode(OTHER, b"\x01") == b"DWS\x01" + OTHER + b"b\x00\x00\x00\x01\x01"
    assert decode(envelope(b"\xff", b"b")) == Envelope(OTHER, b"\xff")


def test_a_broadcast_is_text_or_bytes() -> None:
    with pytest.raises(TypeError, match="not int"):
        encode(OTHER, 5)  # type: ignore[arg-type]


def test_empty_and_short_payloads_are_not_messages() -> None:
    assert reason(b"") == "empty"
    assert reason(b"hello") == "no b'DWS\\x01' marker (5 bytes)"
    assert reason(b"DWS") == "3 bytes, shorter than the 25-byte header"


def test_text_that_is_not_utf8_is_dropped() -> None:
    assert reason(envelope(b"caf\xe9!")) == "text that is not UTF-8 (invalid continuation byte at byte 3 of the body)"
    assert reason(envelope("é".encode()[:1])).startswith("text that is not UTF-8 (unexpected end of data")
    assert reason(envelope(b"\xed\xa0\x80")).startswith("text that is not UTF-8")  # a surrogate
    assert decode(envelope(b"caf\xe9", b"b")) == Envelope(OTHER, b"caf\xe9")  # binary may hold anything


def test_every_truncation_of_a_message_is_detected() -> None:
    for message in ("a message of some length", b"\x00" * 40, "é" * 7):
        whole = encode(OTHER, message)
        for end in range(len(whole)):
            reason(whole[:end])


def test_a_body_length_that_lies_is_detected() -> None:
    assert reason(envelope(b"short", length=50)) == ("a body of 5 bytes where the header says 50 (truncated or padded)")
    assert reason(envelope(b"a longer body", length=2)).startswith("a body of 13 bytes where the header says 2")
    assert reason(envelope(b"", length=2**32 - 1)).startswith("a body of 0 bytes")


def test_a_wrong_marker_version_origin_or_kind_is_rejected() -> None:
    assert reason(envelope(b"x", marker=b"XYZ\x01")) == "no b'DWS\\x01' marker"
    assert reason(envelope(b"x", marker=b"DWS\x02")) == "format version 2, not 1"
    assert reason(envelope(b"x", origin=b"0123456789ABCDEF")) == "an origin that is not 16 lowercase hex digits"
    assert reason(envelope(b"x", origin=b"0123456789abcde\xff")) == "an origin that is not 16 lowercase hex digits"
    assert reason(envelope(b"x", kind=b"T")) == "an unknown kind b'T'"


def test_the_previous_format_is_rejected() -> None:
    # Before format 1: the origin, the kind and the body, nothing else.
    reason(OTHER + b"t" + b"a text long enough to fill a header")
    reason(OTHER + b"b" + bytes(40))


def test_random_bytes_are_rejected() -> None:
    generator = random.Random(6455)
    for size in [*range(1, 64), *range(64, 70_000, 997)]:
        reason(generator.randbytes(size))
        # Random bytes behind a good marker too: a random origin is not hex, a random length not the body's.
        reason(b"DWS\x01" + generator.randbytes(size))


# Replies on the subscriber's connection.


def test_the_replies_of_a_subscribed_connection() -> None:
    assert read_reply([b"message", b"duck_ws_sync:room", b"data"]) == (b"message", b"duck_ws_sync:room", b"data")
    assert read_reply([b"subscribe", b"duck_ws_sync:room", 2]) == (b"subscribe", b"duck_ws_sync:room", b"")
    assert read_reply([b"unsubscribe", b"duck_ws_sync:room", 1]) == (b"unsubscribe", b"duck_ws_sync:room", b"")
    assert read_reply([b"pong", b""]) == (b"pong", b"", b"")


@pytest.mark.parametrize(
    "reply",
    [
        b"PONG",  # PING on a connection that is not subscribed (a SUBSCRIBE was refused)
        None,
        [],
        5,
        [b"message", b"duck_ws_sync:room"],
        [b"message", b"duck_ws_sync:room", 5],
        [b"message", None, b"data"],
        [b"message", b"duck_ws_sync:room", b"data", b"more"],
        [b"subscribe", b"duck_ws_sync:room", b"1"],
        [b"pmessage", b"duck_ws_sync:*", b"duck_ws_sync:room", b"data"],
        [b"something new", b"duck_ws_sync:room", 1],
        ["message", "duck_ws_sync:room", "data"],
    ],
)
def test_other_replies_are_unexpected(reply: Any) -> None:
    with pytest.raises(redis.InvalidResponse, match="not a reply to a subscriber"):
        read_reply(reply)


# The rate-limited log.


def test_one_line_per_interval_with_the_count_since_the_last(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog("dropped junk", every=10)
    for index in range(100):
        log.note(b"duck_ws_sync:room", f"reason {index}", now=index / 100)
    log.flush(now=9.9)
    assert caplog.messages == [
        "dropped junk: 1 since the last such line (one line per 10 s at most); "
        "the last, on channel duck_ws_sync:room: reason 0"
    ]
    log.flush(now=10.0)
    assert caplog.messages[1].startswith("dropped junk: 99 since the last such line")
    assert caplog.messages[1].endswith("the last, on channel duck_ws_sync:room: reason 99")
    log.flush(now=100.0)  # nothing new: nothing to say
    log.note(b"duck_ws_sync:other", "late", now=100.0)
    assert len(caplog.messages) == 3 and caplog.messages[2].startswith("dropped junk: 1 since")


def test_a_failure_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise RuntimeError("a member's outbox broke")
    except RuntimeError as exc:
        RateLimitedLog("could not deliver", every=10).note(b"duck_ws_sync:room", "RuntimeError", now=0.0, exc=exc)
    assert caplog.records[0].exc_info is not None
    assert "RuntimeError: a member's outbox broke" in caplog.text


# The subscriber, in this process, on a real redis-server.


@pytest.fixture
def make_broker() -> Iterator[Callable[[str], RedisBroker]]:
    """``make_broker(url)``: a ``RedisBroker`` of this process, closed when the test ends."""
    made: list[RedisBroker] = []

    def make(url: str) -> RedisBroker:
        made.append(RedisBroker(url))
        return made[-1]

    yield make
    for broker in made:
        broker.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def publishes(broker: RedisBroker) -> bool:
    """Whether ``broker`` takes a broadcast now."""
    try:
        broker.publish(group_topic("refused"), "allowed", None)
    except BrokerUnavailable:
        return False
    return True


def test_a_message_that_fails_to_be_delivered_does_not_stop_the_next(
    redis_service: RedisService,
    make_broker: Callable[[str], RedisBroker],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered: list[tuple[str, str | bytes]] = []

    def deliver(group: str, message: str | bytes, exclude: Any = None) -> int:
        delivered.append((group, message))
        if message == "first":
            raise RuntimeError("a member's outbox broke")
        return 0

    monkeypatch.setattr(redis_broker, "deliver", deliver)
    broker = make_broker(redis_service.url)
    broker.subscribe(group_topic("failing"))
    client = redis_service.client()
    for body, kind in ((b"first", b"t"), (b"second", b"t"), (b"third", b"b")):
        assert client.publish("duck_ws_sync:failing", envelope(body, kind)) == 1
    wait_for(lambda: len(delivered) == 3)
    failing = group_topic("failing")
    assert delivered == [(failing, "first"), (failing, "second"), (failing, b"third")]
    assert "could not deliver messages from Redis: 1 since the last such line" in caplog.text
    assert "RuntimeError: a member's outbox broke" in caplog.text  # the traceback
    broker.publish(group_topic("failing"), "still publishing", None)  # not an outage


def test_junk_is_dropped_and_logged_once_and_the_next_message_arrives(
    redis_service: RedisService,
    make_broker: Callable[[str], RedisBroker],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered: list[tuple[str, str | bytes]] = []
    real_deliver = redis_broker.deliver

    def deliver(group: str, message: str | bytes, exclude: Any = None) -> int:
        delivered.append((group, message))
        return real_deliver(group, message, exclude)

    monkeypatch.setattr(redis_broker, "deliver", deliver)
    broker = make_broker(redis_service.url)
    broker.subscribe(group_topic("junk"))
    broker.subscribe(user_topic("u1"))
    client = redis_service.client()
    junk = [b"", b"\xff\xfe", envelope(b"caf\xe9"), envelope(b"short", length=9), random.Random(1).randbytes(99)]
    for payload in junk * 10:
        client.publish("duck_ws_sync.user:u1", payload)  # a user's channel is read as a group's
        client.publish("duck_ws_sync:junk", payload)
    (own,) = client.pubsub_channels("duck_ws_sync:~*")  # the broker's own channel carries no group
    assert client.publish(own, envelope(b"on a channel of no group")) == 1
    client.publish("duck_ws_sync.user:u1", envelope(b"after the junk, to u1"))
    client.publish("duck_ws_sync:junk", envelope(b"after the junk"))
    wait_for(lambda: len(delivered) == 2)
    assert delivered == [(user_topic("u1"), "after the junk, to u1"), (group_topic("junk"), "after the junk")]
    lines = [message for message in caplog.messages if message.startswith("dropped ")]
    assert lines == [
        "dropped messages from Redis that are not broadcasts: 1 since the last such line "
        "(one line per 10 s at most); the last, on channel duck_ws_sync.user:u1: empty"
    ]


def test_a_subscriber_refused_by_redis_starts_over_until_allowed(
    redis_service: RedisService, make_broker: Callable[[str], RedisBroker], caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis_service.client()
    user, password = "refused_in_process", "a-password"
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", "~*", "&*", "+@all", "-subscribe")
    try:
        broker = make_broker(f"redis://{user}:{password}@127.0.0.1:{redis_service.port}/0")
        deadline = time.monotonic() + 10
        while True:  # the subscriber's first SUBSCRIBE is refused: from then on, broadcasts fail
            try:
                broker.publish(group_topic("refused"), "early", None)
            except BrokerUnavailable as exc:
                assert str(exc).startswith("Redis at redis://***@127.0.0.1:")
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(2)  # several attempts, each refused
        with pytest.raises(BrokerUnavailable):
            broker.publish(group_topic("refused"), "still refused", None)
        admin.execute_command("ACL", "SETUSER", user, "+subscribe")
        wait_for(lambda: publishes(broker))
    finally:
        admin.execute_command("ACL", "DELUSER", user)
    failures = [record for record in caplog.records if "failed (NoPermissionError" in record.getMessage()]
    assert len(failures) == 1, caplog.text  # once per outage, not once per attempt
    assert failures[0].levelno == logging.ERROR and failures[0].exc_info is not None
    assert "is back after" in caplog.text
