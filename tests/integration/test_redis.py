"""Broadcast across gunicorn workers through a real redis-server (DUCK_WS_SYNC_BROKER).

Three workers (gevent, then gthread) serve tests/integration/apps/groups_app.py;
clients spread over them by the kernel's accept. Junk on the workers'
channels and a subscriber refused by an ACL: two workers, or one.
"""

from __future__ import annotations

import concurrent.futures
import random
import re
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import websocket

from duck_ws_sync.testing import LiveServer, WebSocketClient, serve
from tests.integration import conftest
from tests.integration.redis_service import RedisService

APP = "tests.integration.apps.groups_app:app"
Spread = Callable[[str, int], tuple[list[WebSocketClient], set[int]]]
WORKERS = 3


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def workers(request: pytest.FixtureRequest, redis_service: RedisService) -> Iterator[LiveServer]:
    env = {"DUCK_WS_SYNC_BROKER": redis_service.url}
    # gthread: a worker with 16 upgrades in flight (apps/held.py) stops accepting; the others take the next ones.
    args = ["-w", str(WORKERS), "--threads", "64", "--worker-connections", "16"]
    with serve(APP, "gunicorn", worker=request.param, args=args, env=env) as server:
        yield server


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def two_workers(request: pytest.FixtureRequest, redis_service: RedisService) -> Iterator[LiveServer]:
    env = {"DUCK_WS_SYNC_BROKER": redis_service.url}
    # Six connections at most per worker: eight members spread over both.
    args = ["-w", "2", "--threads", "64", "--worker-connections", "6"]
    with serve(APP, "gunicorn", worker=request.param, args=args, env=env) as server:
        yield server


def join(server: LiveServer, room: str) -> tuple[WebSocketClient, int]:
    """A member of ``room``, and the pid of the worker that serves it."""
    ws = server.connect(f"/ws/room/{room}?hold")
    assert ws.receive() == "joined"
    ws.send("pid")
    return ws, int(ws.receive())


@pytest.fixture
def spread(workers: LiveServer) -> Iterator[Spread]:
    """``spread(room, count)``: members connected all at once, so that the workers share them, and their pids.

    They are closed when the test ends.
    """
    made: list[WebSocketClient] = []

    def connect(room: str, count: int) -> tuple[list[WebSocketClient], set[int]]:
        return spread_over(workers, room, count, made)

    yield connect
    for ws in made:
        ws.close(timeout=1)


def spread_over(
    server: LiveServer, room: str, count: int, made: list[WebSocketClient]
) -> tuple[list[WebSocketClient], set[int]]:
    """``count`` members of ``room`` connected all at once, and their pids; they are added to ``made``."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        members = list(pool.map(lambda _: join(server, room), range(count)))
    made.extend(ws for ws, _ in members)
    return [ws for ws, _ in members], {pid for _, pid in members}


def nothing_more(members: list[WebSocketClient]) -> None:
    """No member has a message waiting: a ping's round trip, then a short wait for a message."""
    for ws in members:
        ws.ping_pong()
        with pytest.raises(AssertionError, match="no message"):
            ws.receive(timeout=0.2)


def post(server: LiveServer, path: str, body: bytes = b"") -> tuple[int, bytes]:
    status, answer, _ = post_to_worker(server, path, body)
    return status, answer


def post_to_worker(server: LiveServer, path: str, body: bytes = b"") -> tuple[int, bytes, int]:
    """POST ``body`` to ``path``: the status, the body, and the pid of the worker that answered (0: not said)."""
    request = urllib.request.Request(server.url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), int(response.headers.get("X-Worker-Pid") or 0)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), int(error.headers.get("X-Worker-Pid") or 0)


def subscribers(redis_service: RedisService, room: str) -> int:
    """How many workers Redis knows as subscribers of ``room``."""
    return int(redis_service.client().pubsub_numsub(f"duck_ws_sync:{room}")[0][1])


def test_a_broadcast_reaches_every_worker_from_a_member_and_from_a_plain_view(
    workers: LiveServer, redis_service: RedisService, spread: Spread
) -> None:
    members, pids = spread("all", 30)
    others, _ = spread("others", 3)
    assert len(pids) >= 2, "the kernel gave every connection to one worker"
    assert subscribers(redis_service, "all") == len(pids)  # one subscription per worker, not per member
    members[0].send("from a member")
    assert [ws.receive() for ws in members[1:]] == ["from a member"] * 29
    assert post(workers, "/notify/all", b"from a plain view") == (200, b"sent")
    assert [ws.receive() for ws in members] == ["from a plain view"] * 30
    for ws in others:  # a group reaches its members only
        ws.ping_pong()
        with pytest.raises(AssertionError, match="no message"):
            ws.receive(timeout=0.2)


def test_a_thousand_messages_from_one_publisher_arrive_in_order_at_every_member(
    workers: LiveServer, spread: Spread
) -> None:
    members, pids = spread("order", 9)
    assert len(pids) >= 2
    assert post(workers, "/flood/order?count=1000&size=16") == (200, b"sent")
    for ws in members:
        assert [int(bytes(ws.receive())[:8]) for _ in range(1000)] == list(range(1000))


def test_the_last_member_leaving_releases_the_workers_subscription(
    workers: LiveServer, redis_service: RedisService
) -> None:
    ws, _ = join(workers, "brief")
    assert subscribers(redis_service, "brief") == 1
    ws.close()
    deadline = time.monotonic() + 5
    while subscribers(redis_service, "brief") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscribers(redis_service, "brief") == 0


def test_redis_going_away_and_coming_back(workers: LiveServer, redis_service: RedisService, spread: Spread) -> None:
    members, pids = spread("outage", 10)
    redis_service.stop()
    try:
        # Publishing fails fast, in the documented way, from a plain view and from a member.
        started = time.monotonic()
        status, body = post(workers, "/notify/outage", b"lost")
        assert status == 503 and body.startswith(b"unavailable: Redis at redis://127.0.0.1:")
        assert time.monotonic() - started < 2
        members[0].send("lost too")
        assert members[0].receive().startswith("unavailable: Redis at")
        for _ in range(20):  # and keeps failing fast
            started = time.monotonic()
            assert post(workers, "/notify/outage", b"lost")[0] == 503
            assert time.monotonic() - started < 1.5
        for ws in members:  # every connection survives
            ws.ping_pong()
    finally:
        redis_service.start()
    deadline = time.monotonic() + 20
    while subscribers(redis_service, "outage") < len(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert subscribers(redis_service, "outage") == len(pids), "the workers subscribed again"
    while post(workers, "/notify/outage", b"back")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [ws.receive(timeout=max(deadline - time.monotonic(), 0.1)) for ws in members] == ["back"] * 10
    output = workers.output
    # Logged once per outage and worker, not per failed message.
    assert 1 <= output.count("is unavailable (") <= WORKERS, output
    assert output.count("is back after") >= len(pids)


def test_the_chat_example_spans_four_workers(redis_service: RedisService) -> None:
    # gthread with two connections per worker, each upgrade held 300 ms in its call, and eight
    # connections made at once: they are spread over all four workers.
    args = ["-w", "4", "--threads", "8", "--worker-connections", "2"]
    env = {"DUCK_WS_SYNC_BROKER": redis_service.url}
    with serve("tests.integration.apps.held_chat_app:app", "gunicorn", worker="gthread", args=args, env=env) as server:
        # Eight connections, seven users: the second and the sixth share the page's cookie (two tabs).
        cookies = {1: "chat_user=00000000000000aa", 5: "chat_user=00000000000000aa"}

        def enter(n: int) -> tuple[WebSocketClient, str]:
            ws = server.connect("/ws/chat/spanning", cookie=cookies.get(n))
            # A member before its welcome: the other users' lists and notices may come first.
            while not (welcome := ws.receive_json()).get("text", "").startswith("👋 Welcome to the chat, User "):
                assert welcome["type"] in ("online", "system"), welcome
            return ws, welcome["text"].removeprefix("👋 Welcome to the chat, ").removesuffix("!")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            entered = list(pool.map(enter, range(8)))
        users = [ws for ws, _ in entered]
        names = {cookies.get(n, n): name for n, (_, name) in enumerate(entered)}
        assert len(names) == 7
        # The room's presence, read through Redis, has every worker's members: each connection's
        # online lists end with all seven users (the last joiner's list is the last one sent).
        for ws in users:
            while (message := ws.receive_json())["type"] != "online" or message["count"] < 7:
                assert message["type"] != "chat", message
            assert message == {"type": "online", "count": 7, "names": sorted(names.values())}
        users[0].send("hello, all four workers")
        for ws in users[1:]:
            while (message := ws.receive_json())["type"] != "chat":  # notices and lists of later users first
                joined = message["type"] == "system" and message["text"].endswith(" joined")
                assert message["type"] == "online" or joined or message["text"] == "You joined #spanning in another tab"
            assert message["text"] == "hello, all four workers"
        assert subscribers(redis_service, "spanning") == 4


def test_a_pywsgi_server_and_a_gunicorn_server_share_their_groups_through_redis(
    redis_service: RedisService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two machines, as it were: gevent.pywsgi (its subscriber a greenlet) and gunicorn gthread (a thread).
    monkeypatch.setenv("DUCK_WS_SYNC_BROKER", redis_service.url)
    with conftest.serve("pywsgi", APP) as pywsgi, conftest.serve("gthread", APP) as gthread:
        here = websocket.create_connection(pywsgi.url("/ws/room/machines"), timeout=10)
        there = websocket.create_connection(gthread.url("/ws/room/machines"), timeout=10)
        try:
            assert here.recv() == "joined" and there.recv() == "joined"
            here.send("from pywsgi")
            assert there.recv() == "from pywsgi"
            assert gthread.post("/notify/machines", b"from gthread's plain view") == b"sent"
            assert here.recv() == "from gthread's plain view"
            assert there.recv() == "from gthread's plain view"
        finally:
            here.close()
            there.close()


# A message as redis_broker's docstring draws it: marker, origin, kind, body length, body.
HEADER = struct.Struct("!4s16scI")
OTHER = b"0123456789abcdef"  # the origin of no worker


def envelope(
    body: bytes, kind: bytes = b"t", *, marker: bytes = b"DWS\x01", length: int | None = None, origin: bytes = OTHER
) -> bytes:
    return HEADER.pack(marker, origin, kind, len(body) if length is None else length) + body


def as_published(redis_service: RedisService, server: LiveServer, room: str, message: bytes) -> bytes:
    """``message`` as a worker publishes it (broadcast by the plain view, read by a plain subscriber)."""
    with redis_service.client().pubsub() as pubsub:
        pubsub.subscribe(f"duck_ws_sync:{room}")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        assert post(server, f"/notify/{room}?binary", message) == (200, b"sent")
        received = pubsub.get_message(timeout=5)
    assert received is not None and received["type"] == "message"
    return bytes(received["data"])


@pytest.mark.timeout(120)
def test_junk_on_every_channel_reaches_no_one_and_stops_no_worker(
    two_workers: LiveServer, redis_service: RedisService
) -> None:
    made: list[WebSocketClient] = []
    try:
        members, pids = spread_over(two_workers, "junk", 8, made)
        assert len(pids) == 2, "the kernel gave every connection to one worker"
        # Four members per worker at most: a worker that holds six (--worker-connections) takes no request.
        served: dict[int, list[WebSocketClient]] = {}
        for ws in members:
            ws.send("pid")
            served.setdefault(int(ws.receive()), []).append(ws)
        for held in served.values():
            while len(held) > 4:
                held.pop().close(timeout=1)
        members = [ws for held in served.values() for ws in held]
        count = len(members)
        real = as_published(redis_service, two_workers, "junk", b"a real message")
        assert [ws.receive() for ws in members] == [b"a real message"] * count
        generator = random.Random(6455)
        junk = [
            envelope(b"caf\xe9 \xff\xfe"),  # text that is not UTF-8, in a good envelope
            envelope("é".encode()[:1]),  # a character cut in two
            b"",
            *(generator.randbytes(size) for size in (1, 24, 25, 26, 300, 5000)),
            *(real[:end] for end in (1, 4, 5, 20, 24, 25, 26, len(real) - 1)),  # a real message, truncated
            real + b"!",  # and padded
            envelope(b"short", length=50),  # a body length that lies
            envelope(b"a longer body", length=2),
            envelope(b"a wrong marker", marker=b"XYZ\x01"),
            envelope(b"another version", marker=b"DWS\x02"),
            envelope(b"an origin not in hex", origin=b"0123456789ABCDEF"),
            envelope(b"an unknown kind", kind=b"x"),
            OTHER + b"t" + b"the previous format, without marker or length",
            OTHER + b"t" + b"\xff\xfe the previous format, text not UTF-8",
        ]
        client = redis_service.client()
        channels = sorted(client.pubsub_channels("duck_ws_sync:*"))
        assert b"duck_ws_sync:junk" in channels
        assert sum(channel.startswith(b"duck_ws_sync:~") for channel in channels) >= 2  # each worker's own
        started = time.monotonic()
        for payload in junk:
            for channel in channels:
                client.publish(channel, payload)
        # The format is the documented one: a message built by hand reaches every member.
        assert client.publish("duck_ws_sync:junk", envelope(b"from a plain client")) == 2
        assert [ws.receive() for ws in members] == ["from a plain client"] * count

        # Every worker still receives every broadcast: from a member of each worker...
        for pid, held in served.items():
            held[0].send(f"from a member in {pid}")
            assert [ws.receive() for ws in members if ws is not held[0]] == [f"from a member in {pid}"] * (count - 1)
        # ...and from the plain view of each worker (the kernel picks the worker: ask until both answered).
        answered: set[int] = set()
        for number in range(100):
            status, body, pid = post_to_worker(two_workers, "/notify/junk", f"from a plain view {number}".encode())
            assert (status, body) == (200, b"sent")
            assert [ws.receive() for ws in members] == [f"from a plain view {number}"] * count
            answered.add(pid)
            if answered == pids:
                break
        assert answered == pids, "every request went to one worker"
        nothing_more(members)  # and no junk came to anyone

        # Each worker logged its drops on one line (one line per 10 s at most), not one per message.
        pattern = re.compile(
            r"dropped messages from Redis that are not broadcasts: \d+ since the last such line"
            r" \(one line per 10 s at most\); the last, on channel duck_ws_sync:"
        )
        deadline = time.monotonic() + 5
        while len(pattern.findall(two_workers.output)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = pattern.findall(two_workers.output)
        most = 2 * (1 + int((time.monotonic() - started) // 10))
        assert 2 <= len(lines) <= most, two_workers.output
        assert len(junk) * 2 > most  # far fewer lines than junk messages, in each worker
    finally:
        for ws in made:
            ws.close(timeout=1)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("worker", ["gevent", "gthread"])
def test_a_subscriber_refused_by_an_acl_recovers_once_allowed(worker: str, redis_service: RedisService) -> None:
    admin = redis_service.client()
    user, password = "refused_worker", "a-password"
    admin.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", "~*", "&*", "+@all")
    env = {"DUCK_WS_SYNC_BROKER": f"redis://{user}:{password}@127.0.0.1:{redis_service.port}/0"}
    try:
        with serve(APP, "gunicorn", worker=worker, args=["-w", "1", "--threads", "16"], env=env) as server:
            member, _ = join(server, "acl")
            sender, _ = join(server, "acl")
            assert post(server, "/notify/acl", b"allowed") == (200, b"sent")
            assert member.receive() == "allowed" and sender.receive() == "allowed"

            # The user may no longer SUBSCRIBE; its connections are cut, and the subscriber's next
            # SUBSCRIBE gets an error reply (NOPERM): broadcasts fail, as during an outage.
            admin.execute_command("ACL", "SETUSER", user, "-subscribe")
            admin.execute_command("CLIENT", "KILL", "USER", user)
            deadline = time.monotonic() + 10
            while post(server, "/notify/acl", b"refused")[0] != 503:
                assert time.monotonic() < deadline, "broadcasts went on while the subscriber was refused"
                time.sleep(0.05)
            refused = time.monotonic()
            while time.monotonic() - refused < 3:  # the subscriber tries again, and is refused again
                status, body = post(server, "/notify/acl", b"refused")
                assert status == 503 and body.startswith(b"unavailable: Redis at redis://***@127.0.0.1:"), body
                time.sleep(0.1)
            sender.send("refused too")
            assert str(sender.receive()).startswith("unavailable: Redis at")

            admin.execute_command("ACL", "SETUSER", user, "+subscribe")
            deadline = time.monotonic() + 10
            while post(server, "/notify/acl", b"allowed again")[0] != 200:
                assert time.monotonic() < deadline, "the subscriber did not start over once allowed"
                time.sleep(0.05)
            assert member.receive() == "allowed again" and sender.receive() == "allowed again"
            sender.send("from a member")
            assert member.receive() == "from a member"
            # The subscriber is back on the group's channel: what another worker publishes arrives.
            assert admin.publish("duck_ws_sync:acl", envelope(b"through Redis")) == 1
            assert member.receive() == "through Redis" and sender.receive() == "through Redis"
            nothing_more([member, sender])
            output = server.output
        # Logged with its traceback once, not at each refused attempt.
        assert output.count("failed (NoPermissionError: ") == 1, output
        assert "Traceback" in output and "redis.exceptions.NoPermissionError" in output
        assert "is back after" in output
    finally:
        admin.execute_command("ACL", "DELUSER", user)
