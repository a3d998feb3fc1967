"""Broadcast across gunicorn workers through a real redis-server (DUCK_WS_SYNC_BROKER).

Three workers (gevent, then gthread) serve tests/integration/apps/groups_app.py;
clients spread over them by the kernel's accept.
"""

from __future__ import annotations

import concurrent.futures
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


@pytest.fixture(scope="module")
def redis_service() -> Iterator[RedisService]:
    service = RedisService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def workers(request: pytest.FixtureRequest, redis_service: RedisService) -> Iterator[LiveServer]:
    env = {"DUCK_WS_SYNC_BROKER": redis_service.url}
    # gthread: a worker holding 16 connections stops accepting, and the others take the next ones.
    args = ["-w", str(WORKERS), "--threads", "64", "--worker-connections", "16"]
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
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            members = list(pool.map(lambda _: join(workers, room), range(count)))
        made.extend(ws for ws, _ in members)
        return [ws for ws, _ in members], {pid for _, pid in members}

    yield connect
    for ws in made:
        ws.close(timeout=1)


def post(server: LiveServer, path: str, body: bytes = b"") -> tuple[int, bytes]:
    request = urllib.request.Request(server.url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


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
    # gthread with two connections per worker: eight users are spread over all four workers.
    args = ["-w", "4", "--threads", "8", "--worker-connections", "2"]
    env = {"DUCK_WS_SYNC_BROKER": redis_service.url}
    with serve("examples.chat:app", "gunicorn", worker="gthread", args=args, env=env) as server:
        users = []
        for _ in range(8):
            ws = server.connect("/ws/chat/spanning")
            assert ws.receive_json()["text"].startswith("👋 Welcome to the chat, User ")
            users.append(ws)
        users[0].send("hello, all four workers")
        for ws in users[1:]:
            while (message := ws.receive_json())["type"] != "chat":  # join notices of later users first
                assert message["text"].endswith(" joined")
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
