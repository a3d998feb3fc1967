"""The Redis broker over TLS: ``rediss://``, ``rediss+sentinel://`` and ``rediss+cluster://``.

Real processes, started by the tests on 127.0.0.1 (tests/integration/redis_service.py
with ``tls=True``): every redis-server and sentinel listens with TLS only, with a
throwaway CA and a certificate for 127.0.0.1 made with ``openssl``; replicas,
sentinels and cluster nodes speak TLS to each other too. The broker URL names
the CA in its query (``?ssl_ca_certs=...``). gunicorn serves
tests/integration/apps/presence_app.py with ``DUCK_WS_SYNC_BROKER`` set to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from duck_ws_sync.brokers.redis import CHANNEL_PREFIX
from duck_ws_sync.testing import LiveServer, WebSocketClient
from tests.integration.redis_ha import ClusterService, SentinelService
from tests.integration.redis_service import RedisService, running
from tests.integration.test_redis_failover import (
    SENTINEL_BOUND,
    delivered,
    groups_and_users_on_every_master,
    gunicorn,
    until_delivered,
)
from tests.integration.test_users_redis import made, nothing_more, post, presence, spread

__all__ = ["made"]  # a fixture of the other module, used here

USERS = ["u1", "u1", "u2", None, "u3", "u1"]  # u1's connections: 0, 1 and 5


def plain_client_fails(port: int) -> None:
    """A client without TLS gets no answer from ``port``: the server there speaks TLS only, and drops it."""
    plain = redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    started = time.monotonic()
    try:
        with pytest.raises(redis.ConnectionError):
            plain.ping()
    finally:
        plain.close()
    assert time.monotonic() - started < 1.0, "refused only after a timeout"


def no_outage(server: LiveServer) -> None:
    """The workers never found Redis unavailable, and their subscribers never failed."""
    assert "unavailable" not in server.output, server.output
    assert "the Redis subscriber at" not in server.output, server.output


def deliveries(server: LiveServer, room: str, clients: list[WebSocketClient], label: str) -> None:
    """A broadcast reaches every member of ``room``; u1's connections, and theirs only, get a message to u1;
    the presence counts every member."""
    assert delivered(server, room, clients, f"to {room} {label}")
    assert post(server, "/user/u1", f"for u1 {label}".encode()) == (200, b"sent")
    assert [clients[index].receive() for index in (0, 1, 5)] == [f"for u1 {label}"] * 3
    nothing_more([clients[index] for index in (2, 3, 4)])
    found = presence(server, room)
    assert found["count"] == 6 and set(found["users"]) == {"u1", "u2", "u3"}


@pytest.fixture
def tls_redis() -> Iterator[RedisService]:
    with running(RedisService(tls=True)) as service:
        yield service


@pytest.fixture
def tls_sentinel() -> Iterator[SentinelService]:
    """A fresh master, replica and sentinels: the test's failover leaves no replica behind."""
    with running(SentinelService(tls=True)) as service:
        yield service


@pytest.fixture
def tls_cluster() -> Iterator[ClusterService]:
    with running(ClusterService(tls=True)) as service:
        yield service


def test_rediss_one_server_broadcasts_users_and_presence_across_two_workers(
    tls_redis: RedisService, made: list[WebSocketClient]
) -> None:
    assert tls_redis.url.startswith("rediss://") and "?ssl_ca_certs=" in tls_redis.url
    with gunicorn(tls_redis.url) as server:
        assert isinstance(server, LiveServer)
        members = spread(server, "secure", USERS, made)
        clients = [ws for ws, _ in members]
        assert len({pid for _, pid in members}) == 2, "every member is in one worker"
        deliveries(server, "secure", clients, "over TLS")
        # Both workers' subscribers reached this server, which has no port without TLS.
        with tls_redis.client() as client:
            assert client.pubsub_numsub(CHANNEL_PREFIX + "secure") == [((CHANNEL_PREFIX + "secure").encode(), 2)]
        plain_client_fails(tls_redis.port)
        no_outage(server)


def test_rediss_sentinel_delivers_and_comes_back_after_the_master_is_killed(
    tls_sentinel: SentinelService, made: list[WebSocketClient]
) -> None:
    assert tls_sentinel.url.startswith("rediss+sentinel://")
    with gunicorn(tls_sentinel.url) as server:
        assert isinstance(server, LiveServer)
        members = spread(server, "guarded", USERS, made)
        clients = [ws for ws, _ in members]
        assert len({pid for _, pid in members}) == 2, "every member is in one worker"
        deliveries(server, "guarded", clients, "before the failover")
        plain_client_fails(tls_sentinel.master_port())
        plain_client_fails(tls_sentinel.sentinel_ports[0])

        old = tls_sentinel.kill_master()
        killed_at = time.monotonic()
        new = tls_sentinel.wait_for_failover(old, timeout=30)
        failed_over = time.monotonic() - killed_at
        assert new != old
        waited, refusals = until_delivered(server, "guarded", clients, SENTINEL_BOUND)
        print(f"Sentinel over TLS: failover {failed_over:.1f} s after the kill, delivery back {waited:.1f} s after it")
        assert waited < SENTINEL_BOUND, f"delivery resumed {waited:.1f} s after the failover"
        assert not refusals or max(refusals) < 2.0, refusals
        deliveries(server, "guarded", clients, "after the failover")
        plain_client_fails(new)


def test_rediss_cluster_groups_on_every_master_and_users_across_two_gunicorn_masters(
    tls_cluster: ClusterService, made: list[WebSocketClient]
) -> None:
    assert tls_cluster.url.startswith("rediss+cluster://")
    with gunicorn(tls_cluster.url) as first, gunicorn(tls_cluster.url) as second:
        assert isinstance(first, LiveServer) and isinstance(second, LiveServer)
        groups_and_users_on_every_master(tls_cluster, first, second, made)
        for port in tls_cluster.masters():
            plain_client_fails(port)
        for server in (first, second):
            no_outage(server)
