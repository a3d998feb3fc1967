"""Identity and presence: what a view may set, and the presence scripts on a real redis-server.

(Served by real servers, across workers: tests/integration/test_users.py and test_users_redis.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from duck_ws_sync import Member, Presence, WebSocketView, send_to_user
from duck_ws_sync.brokers import redis_presence
from duck_ws_sync.brokers.redis_presence import PresenceScripts, decode_members, keys
from duck_ws_sync.engine.groups import group_topic
from duck_ws_sync.engine.presence import MAX_INFO
from duck_ws_sync.request import WebSocketRequest
from tests.integration.redis_service import RedisService


class View(WebSocketView):
    async def on_receive(self, data: bytes, opcode: int) -> None:
        pass


def view() -> View:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/ws", "QUERY_STRING": "", "REMOTE_ADDR": "127.0.0.1"}
    return View(WebSocketRequest(environ))


# What a view may set.


@pytest.mark.parametrize("user_id", ["u1", "", 42, 0, -1, None])
def test_a_user_id_is_a_str_an_int_or_none(user_id: Any) -> None:
    subject = view()
    subject.user_id = user_id
    assert subject.user_id == user_id


@pytest.mark.parametrize("user_id", [3.5, True, b"u1", ("u", 1), object()])
def test_any_other_user_id_is_refused(user_id: Any) -> None:
    subject = view()
    with pytest.raises(TypeError, match="a user_id is a str or an int"):
        subject.user_id = user_id
    assert subject.user_id is None


@pytest.mark.parametrize("user_id", [None, 3.5, False])
def test_send_to_user_needs_a_user(user_id: Any) -> None:
    with pytest.raises(TypeError):
        send_to_user(user_id, "hello")


def test_a_presence_info_is_small_json() -> None:
    subject = view()
    with pytest.raises(TypeError, match="not JSON serializable"):
        subject.join("room", {"when": time})
    with pytest.raises(ValueError, match=f"at most {MAX_INFO} bytes of JSON, not {MAX_INFO + 1}"):
        subject.join("room", "x" * (MAX_INFO - 1))  # with its two quotes
    subject.join("room", "x" * (MAX_INFO - 2))  # no connection yet: a no-op, but a valid info


def test_a_presence_counts_connections_and_distinct_users() -> None:
    found = Presence((Member("a", "u1"), Member("b", "u1", {"tab": 2}), Member("c", 7), Member("d", None)))
    assert found.count == 4
    assert found.users == frozenset({"u1", 7})
    assert Presence().count == 0 and Presence().users == frozenset()


# The presence scripts, on a real redis-server.


@pytest.fixture
def scripts(redis_service: RedisService) -> Iterator[PresenceScripts]:
    client = redis_service.client()
    client.flushall()
    yield PresenceScripts(client)
    client.close()


def test_a_groups_keys_share_one_hash_tag_whatever_its_name() -> None:
    for name in ("room", "", "a}b", "{x}", "ü 🦆"):
        members, expiry = keys(group_topic(name))
        assert members.endswith(":members") and expiry.endswith(":expiry")
        tag = members[members.index("{") + 1 :]
        tag = tag[: tag.index("}")]
        assert tag and expiry[expiry.index("{") + 1 :].startswith(tag + "}")


def test_ten_thousand_members_enter_and_are_read_back(scripts: PresenceScripts) -> None:
    topic = group_topic("big")
    members = [
        Member(f"w-{index:x}", f"u{index % 100}" if index % 3 else index, {"n": index}) for index in range(10_000)
    ]
    scripts.enter(topic, members)  # one call: the script writes in batches of 500
    found = scripts.read(topic)
    assert found.count == 10_000
    assert sorted(found.members, key=lambda member: member.info["n"]) == members
    scripts.depart(topic, ["w-0", "w-1", "nobody"])
    assert scripts.read(topic).count == 9_998


def test_entries_that_are_not_written_again_expire_and_so_do_the_keys(
    scripts: PresenceScripts, redis_service: RedisService, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = group_topic("brief")
    monkeypatch.setattr(redis_presence, "EXPIRE_AFTER", 0.3)
    scripts.enter(topic, [Member("dead", "u1"), Member("alive", "u2")])
    time.sleep(0.2)
    scripts.enter(topic, [Member("alive", "u2")])  # the live worker's refresh
    time.sleep(0.2)
    assert [member.connection_id for member in scripts.read(topic).members] == ["alive"]
    client = redis_service.client()
    assert client.hkeys(keys(topic)[0]) == [b"alive"]  # the reader removed the expired entry
    time.sleep(0.4)
    assert scripts.read(topic).count == 0
    assert client.exists(*keys(topic)) == 0  # nothing left behind


def test_entries_that_are_not_ours_are_left_out(scripts: PresenceScripts, redis_service: RedisService) -> None:
    topic = group_topic("junk")
    scripts.enter(topic, [Member("good", "u1", ["info"])])
    members, expiry = keys(topic)
    client = redis_service.client()
    far = int(time.time() * 1000) + 60_000
    for field, value in (
        ("not-json", b"{"),
        ("not-a-pair", b"[1, 2, 3]"),
        ("a-float-user", b"[1.5, null]"),
        ("a-bool-user", b"[true, null]"),
        ("a-dict", b'{"user": 1}'),
        ("binary", b"\xff\xfe"),
    ):
        client.hset(members, field, value)
        client.zadd(expiry, {field: far})
    assert scripts.read(topic) == Presence((Member("good", "u1", ["info"]),))


def test_decoding_keeps_each_user_ids_type() -> None:
    found = decode_members([(b"a", b'["42", null]'), (b"b", b"[42, {}]"), (b"c", b"[null, 1]")])
    assert [member.user_id for member in found.members] == ["42", 42, None]
