"""Groups and ``broadcast`` within one worker, on every server: membership, senders anywhere, slow members.

(Across workers, through Redis: test_redis.py.)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
import websocket

from tests.integration.conftest import Server, serve
from tests.integration.wire import RawClient

TIMEOUT = 10


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, "tests.integration.apps.groups_app:app") as running:
        yield running


def join(server: Server, room: str) -> websocket.WebSocket:
    ws = websocket.create_connection(server.url(f"/ws/room/{room}"), timeout=TIMEOUT)
    assert ws.recv() == "joined"
    return ws


def closed_codes(server: Server) -> list[int]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/closed")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def nothing_comes(ws: websocket.WebSocket, seconds: float = 0.3) -> bool:
    ws.settimeout(seconds)
    try:
        ws.recv()
    except websocket.WebSocketTimeoutException:
        return True
    finally:
        ws.settimeout(TIMEOUT)
    return False


def test_a_broadcast_reaches_the_groups_members_only_and_not_the_excluded_sender(server: Server) -> None:
    sender, a, b = (join(server, "red") for _ in range(3))
    other = join(server, "blue")
    try:
        sender.send("hello red")
        assert a.recv() == "hello red"
        assert b.recv() == "hello red"
        assert nothing_comes(sender)
        assert nothing_comes(other)
    finally:
        for ws in (sender, a, b, other):
            ws.close()


def test_a_plain_http_view_broadcasts_text_and_binary(server: Server) -> None:
    members = [join(server, "news") for _ in range(5)]
    try:
        assert server.post("/notify/news", "extra édition".encode()) == b"sent"
        assert [ws.recv() for ws in members] == ["extra édition"] * 5
        server.post("/notify/news?binary", b"\x00\x01\xff")
        assert [ws.recv() for ws in members] == [b"\x00\x01\xff"] * 5
    finally:
        for ws in members:
            ws.close()


def read_fragments(client: RawClient) -> list[tuple[bool, bool, int, bytes]]:
    """The frames of one message."""
    fragments = [client.read_frame()]
    while not fragments[-1][0]:
        fragments.append(client.read_frame())
    return fragments


def test_one_broadcast_goes_to_each_member_as_its_connection_frames_it(server: Server) -> None:
    """The frame built once goes to plain members; a compressing member and one with small frames frame their own."""
    plain_member = RawClient(server.port)
    compressing = RawClient(server.port)
    small = RawClient(server.port)
    deflate = {"Sec-WebSocket-Extensions": "permessage-deflate"}
    assert plain_member.handshake("/ws/room/mixed") == 101
    assert compressing.handshake("/ws/room/mixed", deflate) == 101
    assert "permessage-deflate" in compressing.headers["sec-websocket-extensions"]
    assert small.handshake("/ws/small/mixed") == 101
    try:
        for client in (plain_member, compressing, small):
            read_fragments(client)  # "joined"
        message = "hello, " * 20
        assert server.post("/notify/mixed", message.encode()) == b"sent"
        assert plain_member.read_frame() == (True, False, 1, message.encode())
        fin, rsv1, opcode, payload = compressing.read_frame()
        assert (fin, rsv1, opcode) == (True, True, 1)
        assert zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == message.encode()
        fragments = read_fragments(small)
        assert len(fragments) == len(message) // 4 + (len(message) % 4 > 0)
        assert b"".join(fragment[3] for fragment in fragments) == message.encode()
        assert [fragment[2] for fragment in fragments] == [1] + [0] * (len(fragments) - 1)
    finally:
        for client in (plain_member, compressing, small):
            client.sock.close()


def test_leaving_a_group_and_closing_end_membership(server: Server) -> None:
    stays, leaves, closes = (join(server, "green") for _ in range(3))
    try:
        leaves.send("leave")
        assert leaves.recv() == "left"
        closes.close()
        server.post("/notify/green", b"after")
        assert stays.recv() == "after"
        assert nothing_comes(leaves)
        leaves.send("join:green")
        assert leaves.recv() == "joined green"
        server.post("/notify/green", b"again")
        assert stays.recv() == "again"
        assert leaves.recv() == "again"
    finally:
        stays.close()
        leaves.close()


def test_a_thousand_numbered_messages_arrive_in_order(server: Server) -> None:
    members = [join(server, "order") for _ in range(3)]
    try:
        server.post("/flood/order?count=1000&size=16")
        for ws in members:
            numbers = [int(ws.recv()[:8]) for _ in range(1000)]
            assert numbers == list(range(1000))
    finally:
        for ws in members:
            ws.close()


def test_a_member_that_never_reads_is_closed_with_1013_and_holds_up_no_one(server: Server) -> None:
    stalled = RawClient(server.port, receive_buffer=64 * 1024)  # a phone on a bad network
    assert stalled.handshake("/ws/room/flood") == 101
    assert stalled.read_frame()[3] == b"joined"
    healthy = [join(server, "flood") for _ in range(5)]
    sender = websocket.create_connection(server.url("/ws/room/flood"), timeout=TIMEOUT)
    received: list[list[int]] = [[] for _ in healthy]

    def read(index: int) -> None:
        for _ in range(64):
            received[index].append(int(healthy[index].recv()[:8].decode()))

    readers = [threading.Thread(target=read, args=(index,)) for index in range(len(healthy))]
    try:
        assert sender.recv() == "joined"
        for reader in readers:
            reader.start()
        started = time.monotonic()
        # 4 MiB to every member, the sender excluded. Binary: websocket-client
        # checks text's UTF-8 in Python, slower than the 6.4 MB/s sent here.
        for number in range(64):
            sender.send_binary(f"{number:08d}".encode() + b"x" * (65536 - 8))
            time.sleep(0.01)
        for reader in readers:
            reader.join(10)
        assert received == [list(range(64))] * 5  # every message, in order
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 10
        while 1013 not in closed_codes(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert closed_codes(server).count(1013) == 1  # the stalled member, and no one else
        assert "closing Room with 1013" in server.log()
    finally:
        for ws in (*healthy, sender):
            ws.close()
        stalled.sock.close()
