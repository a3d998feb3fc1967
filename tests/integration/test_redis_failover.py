"""Redis that survives losing a node: a master found through Sentinel, and a Redis Cluster with sharded pub/sub.

Real processes, started by the tests on 127.0.0.1 (tests/integration/redis_service.py):
a master, a replica and three sentinels; six cluster nodes (three masters,
three replicas) made with ``redis-cli --cluster create``. gunicorn serves
tests/integration/apps/presence_app.py with ``DUCK_WS_SYNC_BROKER`` set to
``redis+sentinel://...`` or ``redis+cluster://...``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from duck_ws_sync.brokers.envelope import encode
from duck_ws_sync.brokers.redis import CHANNEL_PREFIX, USER_CHANNEL_PREFIX
from duck_ws_sync.testing import LiveServer, WebSocketClient, serve
from tests.integration.redis_ha import ClusterService, SentinelService
from tests.integration.redis_service import running
from tests.integration.test_users_redis import made, nothing_more, post, presence, spread

__all__ = ["made"]  # a fixture of the other module, used here

APP = "tests.integration.apps.presence_app:app"
# Delivery is back within this many seconds of the failover (Sentinel) or the takeover (Cluster).
SENTINEL_BOUND, CLUSTER_BOUND = 15.0, 20.0


def gunicorn(url: str, workers: int = 2, worker: str = "gevent") -> object:
    args = ["-w", str(workers), "--threads", "64", "--worker-connections", "16"]
    return serve(APP, "gunicorn", worker=worker, args=args, env={"DUCK_WS_SYNC_BROKER": url})


def delivered(server: LiveServer, room: str, members: list[WebSocketClient], text: str) -> bool:
    """Broadcast ``text`` to ``room``: True once every member got it, False if the broker refused it or a member
    missed it (pub/sub is at most once: a worker whose subscriber is still reconnecting misses what is published).

    Messages of earlier attempts that arrive first are skipped.
    """
    status, body = post(server, f"/broadcast/{room}", text.encode())
    if status == 503:
        assert body.startswith(b"unavailable: Redis at redis"), body
        return False
    assert status == 200, (status, body)
    return all(receives(ws, text) for ws in members)


def receives(ws: WebSocketClient, text: str, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            if ws.receive(timeout=left) == text:
                return True
        except AssertionError:  # nothing more within the time
            return False
    return False


def until_delivered(
    server: LiveServer, room: str, members: list[WebSocketClient], bound: float
) -> tuple[float, list[float]]:
    """Broadcast every 0.2 s until one reaches every member: how long it took, and how long each refusal took."""
    started = time.monotonic()
    refusals: list[float] = []
    attempt = 0
    while time.monotonic() - started < bound + 10:
        attempt += 1
        asked = time.monotonic()
        if delivered(server, room, members, f"after the failure #{attempt}"):
            return time.monotonic() - started, refusals
        refusals.append(time.monotonic() - asked)
        time.sleep(0.2)
    raise AssertionError(f"no broadcast reached every member within {bound + 10} s")


# Sentinel.


@pytest.fixture
def sentinel() -> Iterator[SentinelService]:
    """A fresh master, replica and sentinels for each test (about 2 s): a failover leaves no replica behind."""
    with running(SentinelService()) as service:
        yield service


def test_sentinel_a_killed_master_is_replaced_and_delivery_resumes_on_the_same_connections(
    sentinel: SentinelService, made: list[WebSocketClient]
) -> None:
    with gunicorn(sentinel.url) as server:
        assert isinstance(server, LiveServer)
        members = spread(server, "watched", ["u1", "u1", "u2", None, "u3", "u1"], made)
        clients = [ws for ws, _ in members]
        assert len({pid for _, pid in members}) == 2, "every member is in one worker"
        assert delivered(server, "watched", clients, "before")
        assert presence(server, "watched")["count"] == 6

        old = sentinel.kill_master()
        # Meanwhile: refused, and at once (a broadcast either reaches every member or says no).
        asked = time.monotonic()
        assert not delivered(server, "watched", clients, "while the master is down")
        assert time.monotonic() - asked < 2.0
        new = sentinel.wait_for_failover(old)
        failed_over = time.monotonic() - asked
        assert new != old
        waited, refusals = until_delivered(server, "watched", clients, SENTINEL_BOUND)
        print(f"Sentinel: failover {failed_over:.1f} s after the kill, delivery back {waited:.1f} s after it")
        assert waited < SENTINEL_BOUND, f"delivery resumed {waited:.1f} s after the failover"
        assert not refusals or max(refusals) < 2.0, refusals

        # No client reconnected: the same connections get what follows, through any worker.
        assert post(server, "/user/u1", b"for u1 after the failover") == (200, b"sent")
        assert [clients[index].receive() for index in (0, 1, 5)] == ["for u1 after the failover"] * 3
        nothing_more([clients[index] for index in (2, 3, 4)])
        assert presence(server, "watched")["count"] == 6


def test_sentinel_a_failover_the_old_master_survives_moves_subscriber_and_publisher(
    sentinel: SentinelService, made: list[WebSocketClient]
) -> None:
    """The old master keeps its clients for seconds, and takes PUBLISH as a replica: workers ask the sentinels."""
    with gunicorn(sentinel.url) as server:
        assert isinstance(server, LiveServer)
        clients = [ws for ws, _ in spread(server, "moved", ["u1", "u2", "u3", "u4"], made)]
        assert delivered(server, "moved", clients, "before")
        _, new = sentinel.fail_over()
        moved_at = time.monotonic()
        other_machine = redis.Redis(port=new, socket_timeout=5)
        listener = other_machine.pubsub()
        listener.subscribe(CHANNEL_PREFIX + "moved")
        try:
            # What another machine publishes on the new master reaches this worker's members...
            attempt = 0
            while True:
                attempt += 1
                text = f"from the new master #{attempt}"
                other_machine.publish(CHANNEL_PREFIX + "moved", encode(b"0123456789abcdef", text))
                if all(receives(ws, text, 0.5) for ws in clients):
                    break
                assert time.monotonic() - moved_at < 6.0, "the subscriber stayed on the old master"
            # ...and what this worker publishes reaches those listening there.
            heard: list[bytes] = []
            while not any(data.endswith(b"to the new master") for data in heard):
                assert time.monotonic() - moved_at < 8.0, "the publisher stayed on the old master"
                assert post(server, "/broadcast/moved", b"to the new master")[0] in (200, 503)
                while (message := listener.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
                    heard.append(message["data"])
        finally:
            listener.close()
            other_machine.close()
        both_ways = time.monotonic() - moved_at
        print(f"Sentinel: a coordinated failover, both ways on the new master {both_ways:.1f} s after it")
        assert "the master changed (a failover)" in server.output


# Cluster.


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterService]:
    with running(ClusterService()) as service:
        yield service


def rooms_on_each_master(cluster: ClusterService) -> dict[int, str]:
    """A room name per master port, whose channel lives on that master's slots."""
    rooms: dict[int, str] = {}
    for index in range(1000):
        room = f"room{index}"
        rooms.setdefault(cluster.node_for(CHANNEL_PREFIX + room), room)
        if len(rooms) == len(cluster.masters()):
            return rooms
    raise AssertionError("no room lands on some master")


def test_cluster_groups_on_every_master_and_users_across_two_gunicorn_masters(
    cluster: ClusterService, made: list[WebSocketClient]
) -> None:
    with gunicorn(cluster.url) as first, gunicorn(cluster.url) as second:
        assert isinstance(first, LiveServer) and isinstance(second, LiveServer)
        groups_and_users_on_every_master(cluster, first, second, made)


def groups_and_users_on_every_master(
    cluster: ClusterService, first: LiveServer, second: LiveServer, made: list[WebSocketClient]
) -> None:
    """Members of rooms on each master under both gunicorn masters: broadcasts and presence through either, and
    ``send_to_user`` to u1's connections everywhere and nobody else's (test_redis_tls.py runs it over TLS)."""
    rooms = rooms_on_each_master(cluster)
    assert len(rooms) == 3
    assert cluster.node_for(USER_CHANNEL_PREFIX + "u1") in rooms  # a user's channel has a master too
    members: dict[str, list[WebSocketClient]] = {}
    for room in rooms.values():
        here = spread(first, room, ["u1", "u2", None], made)
        there = spread(second, room, ["u1", "u3"], made)
        members[room] = [ws for ws, _ in here + there]
    for room, clients in members.items():
        for server in (first, second):
            assert delivered(server, room, clients, f"to {room} through {server.port}")
            found = presence(server, room)
            assert found["count"] == 5 and set(found["users"]) == {"u1", "u2", "u3"}
    u1 = [clients[index] for clients in members.values() for index in (0, 3)]
    for server in (first, second):
        assert post(server, "/user/u1", f"to u1 through {server.port}".encode()) == (200, b"sent")
        assert [ws.receive() for ws in u1] == [f"to u1 through {server.port}"] * 6
    nothing_more([clients[index] for clients in members.values() for index in (1, 2, 4)])


def test_cluster_a_killed_master_is_taken_over_and_delivery_resumes(
    cluster: ClusterService, made: list[WebSocketClient]
) -> None:
    rooms = rooms_on_each_master(cluster)
    with gunicorn(cluster.url) as first, gunicorn(cluster.url) as second:
        assert isinstance(first, LiveServer) and isinstance(second, LiveServer)
        members: dict[str, list[WebSocketClient]] = {}
        for room in rooms.values():
            here, there = spread(first, room, ["a", "b"], made), spread(second, room, ["c"], made)
            members[room] = [ws for ws, _ in here + there]
        victim, room = next(iter(rooms.items()))
        assert delivered(first, room, members[room], "before")

        cluster.kill(victim)
        killed_at = time.monotonic()
        cluster.wait_for_takeover(victim, timeout=30)
        took_over = time.monotonic() - killed_at
        waited, refusals = until_delivered(second, room, members[room], CLUSTER_BOUND)
        print(f"Cluster: takeover {took_over:.1f} s after the kill, delivery back {waited:.1f} s after it")
        assert waited < CLUSTER_BOUND, f"delivery resumed {waited:.1f} s after the takeover ({took_over:.1f} s)"
        assert not refusals or max(refusals) < 2.0, refusals
        for other in rooms.values():  # and on the masters that lived, through both gunicorn masters
            for server in (first, second):
                waited_too, _ = until_delivered(server, other, members[other], CLUSTER_BOUND)
                assert waited_too < CLUSTER_BOUND
        assert presence(first, room)["count"] == 3


def test_cluster_a_failover_the_old_master_survives_moves_the_subscriptions(
    cluster: ClusterService, made: list[WebSocketClient]
) -> None:
    """The old master stays up as a replica and unsubscribes its channels (``sunsubscribe``): workers follow."""
    rooms = rooms_on_each_master(cluster)
    with gunicorn(cluster.url) as first, gunicorn(cluster.url) as second:
        assert isinstance(first, LiveServer) and isinstance(second, LiveServer)
        master, room = next((port, room) for port, room in rooms.items() if cluster.replica_of(port) is not None)
        clients = [ws for ws, _ in spread(first, room, ["a", "b"], made) + spread(second, room, ["c"], made)]
        assert delivered(first, room, clients, "before")
        started = time.monotonic()
        replica = cluster.fail_over(master)
        assert cluster.node_for(CHANNEL_PREFIX + room) == replica
        for server in (first, second):
            waited, _ = until_delivered(server, room, clients, CLUSTER_BOUND)
            assert waited < CLUSTER_BOUND
        print(f"Cluster: a coordinated failover, delivery back {time.monotonic() - started:.1f} s after it began")
        assert presence(second, room)["count"] == 3
        for server in (first, second):  # followed as a moved slot, not as a subscriber that failed unexpectedly
            assert "the cluster moved duck_ws_sync" in server.output, server.output
            assert "the Redis subscriber at" not in server.output, server.output


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_workers_that_start_before_redis_serve_and_deliver_once_it_is_up(
    kind: str, made: list[WebSocketClient]
) -> None:
    """Sentinel or a cluster not started yet: connections open, broadcasts are refused, and all is well once up."""
    service: SentinelService | ClusterService = SentinelService() if kind == "sentinel" else ClusterService()
    try:
        with gunicorn(service.url) as server:
            assert isinstance(server, LiveServer)
            clients = [ws for ws, _ in spread(server, "early", ["u1", "u2", "u3", "u4"], made)]  # joined: open
            asked = time.monotonic()
            assert not delivered(server, "early", clients, "before Redis")
            assert time.monotonic() - asked < 5.0
            service.start()
            waited, _ = until_delivered(server, "early", clients, CLUSTER_BOUND)
            print(f"{kind}: delivery {waited:.1f} s after it was up")
            # The joins' entries could not be written: the workers write them once Redis is back.
            deadline = time.monotonic() + 5
            while (found := presence(server, "early"))["count"] != 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert found["count"] == 4
            assert "Traceback" not in server.output, server.output
    finally:
        service.stop()
