"""``send_to_user`` and ``presence`` across gunicorn workers and masters, through a real redis-server.

Three workers serve tests/integration/apps/presence_app.py; clients spread
over them by the kernel's accept (``?hold`` holds an upgrade a moment in the
worker that took it: ``apps/held.py``). A worker killed with SIGKILL leaves
its members' presence entries behind, and they expire.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from duck_ws_sync.testing import LiveServer, WebSocketClient, serve
from tests.integration.conftest import ROOT
from tests.integration.redis_service import RedisService

APP = "tests.integration.apps.presence_app:app"
WORKERS = 3
# A dead worker's members are gone from presence() within this many seconds (the bound).
DEAD_WORKER_BOUND = 20.0


def gunicorn(worker: str, redis_url: str, workers: int = WORKERS) -> Any:
    # gthread: a worker with 16 upgrades in flight (apps/held.py) stops accepting; the others take the next ones.
    args = ["-w", str(workers), "--threads", "64", "--worker-connections", "16"]
    return serve(APP, "gunicorn", worker=worker, args=args, env={"DUCK_WS_SYNC_BROKER": redis_url})


@pytest.fixture(scope="module", params=["gevent", "gthread"])
def workers(request: pytest.FixtureRequest, redis_service: RedisService) -> Iterator[LiveServer]:
    with gunicorn(request.param, redis_service.url) as server:
        yield server


@pytest.fixture
def made() -> Iterator[list[WebSocketClient]]:
    """The test's clients, closed when it ends."""
    clients: list[WebSocketClient] = []
    yield clients
    for ws in clients:
        ws.close(timeout=1)


def member(server: LiveServer, room: str, user: str | None, name: str = "") -> tuple[WebSocketClient, int]:
    """A member of ``room`` as ``user``, and the pid of the worker that serves it."""
    query = f"hold&name={name}" + (f"&user={user}" if user else "")
    ws = server.connect(f"/ws/room/{room}?{query}")
    assert ws.receive() == "joined"
    ws.send("pid")
    return ws, int(ws.receive())


def spread(
    server: LiveServer, room: str, users: list[str | None], made: list[WebSocketClient]
) -> list[tuple[WebSocketClient, int]]:
    """One member of ``room`` per entry of ``users``, connected all at once so that the workers share them."""
    with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
        members = list(pool.map(lambda index: member(server, room, users[index], f"m{index}"), range(len(users))))
    made.extend(ws for ws, _ in members)
    return members


def get(server: LiveServer, path: str) -> tuple[int, bytes, int]:
    """GET ``path``: the status, the body, and the pid of the worker that answered."""
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            return response.status, response.read(), int(response.headers.get("X-Worker-Pid") or 0)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), int(error.headers.get("X-Worker-Pid") or 0)


def presence(server: LiveServer, room: str) -> dict[str, Any]:
    status, body, pid = get(server, f"/presence/{room}")
    assert status == 200, body
    found = json.loads(body)
    found["pid"] = pid
    return found


def post(server: LiveServer, path: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(server.url + path, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def nothing_more(clients: list[WebSocketClient]) -> None:
    """No client has a message waiting: a ping's round trip, then a short wait for a message."""
    for ws in clients:
        ws.ping_pong()
        with pytest.raises(AssertionError, match="no message"):
            ws.receive(timeout=0.2)


def users_of(count: int) -> list[str | None]:
    """Thirty members' users: ten "u1", the others each their own (and one anonymous)."""
    return ["u1"] * 10 + [f"other{index}" for index in range(count - 11)] + [None]


def test_presence_spans_the_workers_and_follows_leaves(workers: LiveServer, made: list[WebSocketClient]) -> None:
    members = spread(workers, "lobby", users_of(30), made)
    assert len({pid for _, pid in members}) >= 2, "the kernel gave every connection to one worker"
    answered_by: set[int] = set()
    for _ in range(5):  # batches of requests made at once, answered by whichever workers take them
        if len(answered_by) >= 2:
            break
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: presence(workers, "lobby"), range(12)))
        for found in answers:
            answered_by.add(found["pid"])
            assert found["count"] == 30
            assert set(found["users"]) == {"u1", *(f"other{index}" for index in range(19))}
            names = sorted(info["name"] for _, _, info in found["members"])
            assert names == sorted(f"m{index}" for index in range(30))
    assert len(answered_by) >= 2, "one worker answered every request"
    for ws, _ in members[:10]:  # the ten u1 leave the room
        ws.send("leave")
        assert ws.receive() == "left"
    found = presence(workers, "lobby")
    assert found["count"] == 20 and "u1" not in found["users"]


def test_send_to_user_reaches_the_users_connections_in_every_worker_and_nobody_else(
    workers: LiveServer, made: list[WebSocketClient]
) -> None:
    members = spread(workers, "mail", users_of(30), made)
    u1 = [ws for ws, _ in members[:10]]
    assert len({pid for _, pid in members[:10]}) >= 2, "every u1 connection is in one worker"
    for _ in range(3):  # from whichever worker takes the request
        assert post(workers, "/user/u1", "for u1 ✓".encode()) == (200, b"sent")
        assert [ws.receive() for ws in u1] == ["for u1 ✓"] * 10
    nothing_more([ws for ws, _ in members[10:]])
    u1[0].send("to:u1:from a tab")  # from a hook, this tab excluded
    assert u1[0].receive() == "sent"
    assert [ws.receive() for ws in u1[1:]] == ["from a tab"] * 9
    nothing_more(u1[:1])


def test_a_killed_workers_members_leave_the_presence_and_the_others_stay(
    redis_service: RedisService, made: list[WebSocketClient]
) -> None:
    with gunicorn("gevent", redis_service.url) as server:
        members = spread(server, "crash", users_of(30), made)
        by_worker: dict[int, int] = {}
        for _, pid in members:
            by_worker[pid] = by_worker.get(pid, 0) + 1
        assert len(by_worker) >= 2
        victim = min(by_worker, key=lambda pid: by_worker[pid])  # a worker with members, not every one
        survivors = 30 - by_worker[victim]
        assert presence(server, "crash")["count"] == 30
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        found = presence(server, "crash")
        while found["count"] != survivors and time.monotonic() - killed_at < DEAD_WORKER_BOUND + 5:
            time.sleep(0.25)
            found = presence(server, "crash")
        gone_after = time.monotonic() - killed_at
        print(f"presence: {by_worker[victim]} members of a killed worker gone {gone_after:.1f} s after the SIGKILL")
        assert found["count"] == survivors, f"{found['count']} members after {gone_after:.1f} s"
        assert gone_after < DEAD_WORKER_BOUND
        surviving_names = sorted(f"m{index}" for index, (_, pid) in enumerate(members) if pid != victim)
        assert sorted(info["name"] for _, _, info in found["members"]) == surviving_names
        time.sleep(5)  # the survivors' entries outlive their expiry: their workers refresh them
        assert presence(server, "crash")["count"] == survivors


@pytest.mark.parametrize("worker", ["gevent", "gthread"])
def test_two_gunicorn_masters_share_users_and_presence_through_redis(
    worker: str, redis_service: RedisService, made: list[WebSocketClient]
) -> None:
    with gunicorn(worker, redis_service.url, workers=2) as first, gunicorn(worker, redis_service.url, 2) as second:
        here = spread(first, "both", ["u7", "u7", "x", None], made)
        there = spread(second, "both", ["u7", "u7", "y"], made)
        for server in (first, second):
            found = presence(server, "both")
            assert found["count"] == 7 and set(found["users"]) == {"u7", "x", "y"}
        assert post(second, "/user/u7", b"across machines") == (200, b"sent")
        u7 = [ws for ws, _ in here[:2] + there[:2]]
        assert [ws.receive() for ws in u7] == ["across machines"] * 4
        nothing_more([ws for ws, _ in here[2:] + there[2:]])


def test_a_background_job_reaches_a_user_and_reads_the_presence(
    workers: LiveServer, redis_service: RedisService, made: list[WebSocketClient]
) -> None:
    """A process that serves nothing, with the broker configured: a cron job, a task queue's worker."""
    members = spread(workers, "jobs", ["u5", "u5", "u6"], made)
    job = (
        "from duck_ws_sync import presence, send_to_user\n"
        "send_to_user('u5', 'from a job')\n"
        "print(presence('jobs').count, sorted(presence('jobs').users))\n"
    )
    env = {**os.environ, "DUCK_WS_SYNC_BROKER": redis_service.url, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, "-c", job], check=False, env=env, capture_output=True, text=True, timeout=30)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[0] == "3 ['u5', 'u6']"
    assert [ws.receive() for ws, _ in members[:2]] == ["from a job"] * 2
    nothing_more([members[2][0]])


def test_presence_is_whole_again_after_redis_lost_everything(
    redis_service: RedisService, made: list[WebSocketClient]
) -> None:
    """Redis restarted without persistence: the workers write their members' entries again once it is back."""
    with gunicorn("gevent", redis_service.url) as server:
        spread(server, "kept", users_of(12), made)
        assert presence(server, "kept")["count"] == 12
        redis_service.stop()
        status, body, _ = get(server, "/presence/kept")
        assert status == 503 and body.startswith(b"unavailable: Redis at"), body
        redis_service.start()  # empty: no persistence
        started = time.monotonic()
        while (found := get(server, "/presence/kept"))[0] != 200 or json.loads(found[1])["count"] != 12:
            assert time.monotonic() - started < 10, found
            time.sleep(0.1)
        print(f"presence: whole again {time.monotonic() - started:.1f} s after Redis came back empty")
        assert post(server, "/user/u1", b"after the restart") == (200, b"sent")
        assert all(ws.receive() == "after the restart" for ws in made[:10])
