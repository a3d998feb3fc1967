"""``user_id``, ``send_to_user`` and ``presence`` within one worker, on every server (in-process broker).

(Across workers and machines, through Redis: test_users_redis.py.)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from tests.integration.conftest import Server, serve
from tests.integration.test_groups import closed_codes, nothing_comes
from tests.integration.wire import RawClient

TIMEOUT = 10


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, "tests.integration.apps.presence_app:app") as running:
        yield running


@pytest.fixture
def connect(server: Server) -> Iterator[Any]:
    """``connect(room, user=None, name="", kind="room")``: an open member of ``room``; closed after the test."""
    made: list[websocket.WebSocket] = []

    def member(room: str, user: str | None = None, name: str = "", kind: str = "room") -> websocket.WebSocket:
        query = "&".join(part for part in (f"user={user}" if user else "", f"name={name}" if name else "") if part)
        ws = websocket.create_connection(server.url(f"/ws/{kind}/{room}?{query}"), timeout=TIMEOUT)
        made.append(ws)
        assert ws.recv() == "joined"
        return ws

    yield member
    for ws in made:
        ws.close(timeout=1)


def ask(ws: websocket.WebSocket, text: str) -> str:
    ws.send(text)
    answer = ws.recv()
    assert isinstance(answer, str)
    return answer


def presence(server: Server, room: str) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", f"/presence/{room}")
        response = connection.getresponse()
        assert response.status == 200, response.read()
        return json.loads(response.read())
    finally:
        connection.close()


def wait_for_count(server: Server, room: str, count: int) -> dict[str, Any]:
    """The room's presence once it counts ``count`` (a closed connection leaves it when its server sees the end)."""
    deadline = time.monotonic() + TIMEOUT
    found = presence(server, room)
    while found["count"] != count and time.monotonic() < deadline:
        time.sleep(0.05)
        found = presence(server, room)
    return found


def test_presence_counts_connections_names_users_and_carries_each_info(server: Server, connect: Any) -> None:
    connect("lobby", "alice", "Alice")
    connect("lobby", "alice", "Alice-phone")
    connect("lobby", "bob", "Bob")
    connect("lobby", None, "guest")
    connect("elsewhere", "carol", "Carol")
    found = presence(server, "lobby")
    assert found["count"] == 4
    assert found["users"] == ["alice", "bob"]  # the guest has no user_id
    assert sorted(((user, info["name"]) for _, user, info in found["members"]), key=repr) == [
        ("alice", "Alice"),
        ("alice", "Alice-phone"),
        ("bob", "Bob"),
        (None, "guest"),
    ]
    assert len({connection_id for connection_id, _, _ in found["members"]}) == 4
    assert presence(server, "nobody-here") == {"count": 0, "users": [], "members": []}


def test_leaving_closing_and_joining_again_update_the_presence(server: Server, connect: Any) -> None:
    stays = connect("hall", "u1", "first")
    leaves = connect("hall", "u2", "second")
    closes = connect("hall", "u3", "third")
    assert presence(server, "hall")["count"] == 3
    assert ask(leaves, "leave") == "left"
    assert presence(server, "hall")["users"] == ["u1", "u3"]
    closes.close()
    found = wait_for_count(server, "hall", 1)
    assert [(user, info) for _, user, info in found["members"]] == [("u1", {"name": "first"})]
    assert ask(stays, "rename:renamed") == "renamed"  # joining again replaces the info, one entry still
    assert [(user, info) for _, user, info in presence(server, "hall")["members"]] == [("u1", {"name": "renamed"})]


def test_changing_the_user_id_renames_the_member_and_moves_its_deliveries(server: Server, connect: Any) -> None:
    ws = connect("ids", "before")
    assert ask(ws, "user:after") == "identified"
    assert presence(server, "ids")["users"] == ["after"]
    server.post("/user/before", b"to the old id")
    server.post("/user/after", b"to the new id")
    assert ws.recv() == "to the new id"
    assert ask(ws, "user:") == "identified"  # nobody's now
    assert presence(server, "ids")["users"] == []
    server.post("/user/after", b"nobody")
    assert nothing_comes(ws)


def test_send_to_user_reaches_every_tab_of_the_user_and_nobody_else(server: Server, connect: Any) -> None:
    tabs = [connect("a", "u42"), connect("b", "u42"), connect("c", "u42", kind="plain")]
    others = [connect("a", "u4"), connect("a", "u420"), connect("a")]
    assert server.post("/user/u42", "héllo".encode()) == b"sent"
    assert [tab.recv() for tab in tabs] == ["héllo"] * 3
    server.post("/user/u42?binary", b"\x00\xff")
    assert [tab.recv_data()[1] for tab in tabs] == [b"\x00\xff"] * 3
    assert all(nothing_comes(other, 0.2) for other in others)
    server.post("/user/nobody", b"into the void")  # no connection: not an error


def test_an_int_user_id_and_its_str_are_one_user(server: Server, connect: Any) -> None:
    as_int = connect("n", "int:7")
    as_str = connect("n", "7")
    server.post("/user/7?int", b"seven")
    assert (as_int.recv(), as_str.recv()) == ("seven", "seven")
    users = presence(server, "n")["users"]
    assert len(users) == 2 and set(users) == {7, "7"}  # presence keeps each as the view gave it


def test_send_to_user_from_a_hook_skips_the_sending_tab(server: Server, connect: Any) -> None:
    sender = connect("s", "me")
    other_tab = connect("s", "me")
    friend = connect("s", "friend")
    assert ask(sender, "to:me:from my other tab") == "sent"
    assert other_tab.recv() == "from my other tab"
    assert nothing_comes(sender)
    assert ask(sender, "to:friend:hi") == "sent"
    assert friend.recv() == "hi"


def test_a_closed_connection_gets_nothing_and_the_users_other_tabs_still_do(server: Server, connect: Any) -> None:
    first, second = connect("z", "u9"), connect("z", "u9")
    first.close()
    wait_for_count(server, "z", 1)
    server.post("/user/u9", b"after one closed")
    assert second.recv() == "after one closed"


def test_a_join_in_authorize_takes_effect_at_open_and_never_for_a_refused_connection(
    server: Server, connect: Any
) -> None:
    for _ in range(3):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(server.url("/ws/early/door?user=gone&reject"), timeout=TIMEOUT)
        assert refused.value.status_code == 403
    assert presence(server, "door")["count"] == 0  # nothing left behind by the refused ones
    ws = websocket.create_connection(server.url("/ws/early/door?user=kept"), timeout=TIMEOUT)
    try:
        assert ws.recv() == "open"
        assert [(user, info) for _, user, info in presence(server, "door")["members"]] == [("kept", "early")]
        server.post("/user/kept", b"reached")
        server.post("/user/gone", b"nobody")
        assert ws.recv() == "reached"
        assert nothing_comes(ws)
    finally:
        ws.close()
    assert wait_for_count(server, "door", 0)["count"] == 0


def test_a_join_after_the_end_is_a_no_op(server: Server, connect: Any) -> None:
    """``on_close`` runs after the connection left its groups: joining there must leave nothing behind."""
    ws = connect("early-leaver", "u77")
    assert ask(ws, "late:after-the-end") == "later"
    ws.close()
    wait_for_count(server, "early-leaver", 0)
    time.sleep(0.2)  # on_close has run by now
    assert presence(server, "after-the-end")["count"] == 0
    witness = connect("after-the-end", "witness")
    server.post("/user/too-late", b"to nobody")
    assert nothing_comes(witness)
    assert presence(server, "after-the-end")["count"] == 1


def test_a_users_tab_that_never_reads_is_closed_with_1013_and_holds_up_no_other_tab(server: Server) -> None:
    """``send_to_user`` keeps ``broadcast``'s slow-member policy: 4 MiB to a user with a stalled tab."""
    stalled = RawClient(server.port, receive_buffer=64 * 1024)  # the user's phone, on a bad network
    assert stalled.handshake("/ws/room/flood?user=fl") == 101
    assert stalled.read_frame()[3] == b"joined"
    tabs = [websocket.create_connection(server.url("/ws/room/flood?user=fl"), timeout=TIMEOUT) for _ in range(3)]
    received: list[list[int]] = [[] for _ in tabs]

    def read(index: int) -> None:
        assert tabs[index].recv() == "joined"
        for _ in range(64):
            received[index].append(int(tabs[index].recv()[:8].decode()))

    readers = [threading.Thread(target=read, args=(index,)) for index in range(len(tabs))]
    try:
        for reader in readers:
            reader.start()
        closed_before = closed_codes(server).count(1013)
        # 4 MiB at 6.4 MB/s, as fast as the readers here keep up with (a burst beyond BROADCAST_BUFFER
        # would close a reading tab too: the policy is per connection, whatever its reason to lag).
        assert server.post("/flood-user/fl?count=64&size=65536&pause=0.01", timeout=30) == b"sent"
        for reader in readers:
            reader.join(10)
        assert received == [list(range(64))] * 3  # every message, in order, to every tab that reads
        deadline = time.monotonic() + 10
        while closed_codes(server).count(1013) == closed_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert closed_codes(server).count(1013) == closed_before + 1  # the stalled tab, and no other
    finally:
        for ws in tabs:
            ws.close()
        stalled.sock.close()
