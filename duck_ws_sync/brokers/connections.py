"""How the Redis broker reaches Redis: one server, a master found through Sentinel, or a Cluster.

``servers(url)`` reads the broker URL and answers a ``Servers``: a client
for commands (``PUBLISH`` or ``SPUBLISH``, the presence scripts) and the
subscriber's connections, each made through redis-py's own client for
that kind of deployment:

- ``redis://``, ``rediss://``, ``unix://``: one server (``redis.Redis``).
- ``redis+sentinel://[user:password@]host:port,host:port/service_name[/db]``:
  the master of ``service_name``, asked of the sentinels at each
  connection, so that after a failover the next connection reaches the new
  master (``redis.sentinel.Sentinel``); the password, if any, is the
  master's. ``rediss+sentinel://`` speaks TLS to the sentinels and the
  master.
- ``redis+cluster://[user:password@]host:port,host:port/``: a Redis
  Cluster (``redis.cluster.RedisCluster``), with sharded pub/sub: each
  channel lives on its slot's master, so the subscriber keeps one
  connection per master. ``rediss+cluster://`` speaks TLS to every node.

A ``rediss+`` URL takes redis-py's TLS options in its query, as
``rediss://`` does: ``?ssl_ca_certs=/etc/redis/ca.crt`` (also
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``).

Every client fails fast (one attempt, ``SOCKET_TIMEOUT``): the broker
turns a failure into ``BrokerUnavailable`` and its subscriber reconnects.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry
from redis.sentinel import Sentinel

__all__ = ["FAILED", "SOCKET_TIMEOUT", "UNAVAILABLE", "Link", "Servers", "servers"]

# How long a command or a connection attempt may take before the broker counts as unavailable.
SOCKET_TIMEOUT = 1.0

# What a command raises while Redis cannot serve it: down, failing over, a cluster without a slot's
# master or whose slots are moving (MOVED or ASK to a subscriber: its topology is out of date).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.exceptions.AskError,
    redis.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
    OSError,
)
# What a command may raise at all: unavailable, or an error reply (an ACL's NOPERM, out of memory...).
FAILED: tuple[type[BaseException], ...] = (redis.RedisError, *UNAVAILABLE)


@dataclass(slots=True)
class Link:
    """One subscriber connection, and the channel of our own that keeps it subscribed when it has no topic."""

    connection: Any
    own_channel: str
    unanswered: int = 0


class Servers:
    """One Redis server (``redis://``): a client for commands, one connection for the subscriber."""

    sharded = False  # SSUBSCRIBE and SPUBLISH rather than SUBSCRIBE and PUBLISH
    client: Any

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT, **_options())
        self._subscriber_pool = redis.ConnectionPool.from_url(url, socket_timeout=None, **_options())

    def publish(self, channel: str, payload: bytes) -> None:
        self.client.publish(channel, payload)

    def links(self, own_channel: str) -> list[Link]:
        """The subscriber's connections, connected (each to subscribe to its ``own_channel``)."""
        connection = self._subscriber_pool.make_connection()
        connection.connect()
        return [Link(connection, own_channel)]

    def link_for(self, channel: str, links: list[Link]) -> Link:
        """Which of ``links`` subscribes to ``channel``."""
        return links[0]

    def stale(self, links: list[Link]) -> bool:
        """Whether ``links`` no longer reach the servers they should (a master that is one no more).

        If so, the client's own connections are dropped too: its next
        command connects to the server of now.
        """
        return False

    def close(self) -> None:
        self.client.close()


class SentinelServers(Servers):
    """The master of a service, found through its sentinels (``redis+sentinel://``)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        addresses = _addresses(parts.netloc.rpartition("@")[2])
        path = [part for part in parts.path.split("/") if part]
        if not addresses or not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            form = "redis+sentinel://host:port,host:port/service_name/db"
            raise ValueError(f"a Sentinel broker URL is {form}, not {url!r}")
        service, db = path[0], int(path[1]) if len(path) == 2 else 0
        tls = _tls(parts)
        master_options: dict[str, Any] = {**_options(), "db": db, **_credentials(parts), **tls}
        timeouts: dict[str, Any] = {"socket_timeout": SOCKET_TIMEOUT, "socket_connect_timeout": SOCKET_TIMEOUT}
        sentinel_options = {**timeouts, "retry": Retry(NoBackoff(), 0), **tls}
        sentinel = Sentinel(addresses, sentinel_kwargs=sentinel_options, **timeouts)
        self.client = sentinel.master_for(service, socket_timeout=SOCKET_TIMEOUT, **master_options)
        self._subscriber_pool = sentinel.master_for(service, socket_timeout=None, **master_options).connection_pool
        self._sentinel = sentinel
        self._service = service

    def stale(self, links: list[Link]) -> bool:
        """Whether the sentinels name another master than the subscriber's.

        Neither a subscriber nor a publisher hears of a failover that left
        the old master running (a replica takes ``PUBLISH``; only writes
        get ``READONLY``): both would stay there until Sentinel drops the
        old master's clients, seconds later, while other workers publish
        and listen on the new master.
        """
        master = self._sentinel.discover_master(self._service)
        if all((link.connection.host, link.connection.port) == master for link in links):
            return False
        # A replica takes PUBLISH too: the client would go on publishing where nobody listens.
        self.client.connection_pool.disconnect()
        return True


class ClusterServers(Servers):
    """A Redis Cluster (``redis+cluster://``): sharded pub/sub, one subscriber connection per master."""

    sharded = True

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        addresses = _addresses(parts.netloc.rpartition("@")[2])
        if not addresses or parts.path.strip("/"):
            raise ValueError(f"a Cluster broker URL is redis+cluster://host:port,host:port/, not {url!r}")
        self._options: dict[str, Any] = {
            "startup_nodes": [ClusterNode(host, port) for host, port in addresses],
            "socket_timeout": SOCKET_TIMEOUT,
            "require_full_coverage": False,
            **_options(),
            **_credentials(parts),
            **_tls(parts),
        }
        self._client: RedisCluster | None = None

    @property  # Servers.client is an attribute; this one is made at first use
    def client(self) -> RedisCluster:
        """The cluster's client, made at first use: making it asks a node for the cluster's slots, and a worker
        that starts while no node answers must serve all the same (its broker is unavailable meanwhile).

        Raises:
            redis.exceptions.RedisClusterException: No node answers yet.
        """
        client = self._client
        if client is None:
            client = self._client = RedisCluster(**self._options)
        return client

    def publish(self, channel: str, payload: bytes) -> None:
        self.client.spublish(channel, payload)

    def links(self, own_channel: str) -> list[Link]:
        """A connection to each master, each with a channel of our own on one of that master's slots."""
        manager = self.client.nodes_manager
        manager.initialize()  # the masters of now, after a failover or a resharding
        links: list[Link] = []
        try:
            for node in self.client.get_primaries():
                pool = node.redis_connection.connection_pool
                connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
                links.append(Link(connection, self._channel_on(node, own_channel)))
                connection.connect()
        except BaseException:
            for link in links:
                link.connection.disconnect()
            raise
        return links

    def link_for(self, channel: str, links: list[Link]) -> Link:
        node = self.client.nodes_manager.get_node_from_slot(key_slot(channel.encode()))
        for link in links:
            connection = link.connection
            if (connection.host, connection.port) == (node.host, node.port):
                return link
        raise redis.ConnectionError(f"no subscriber connection to {node.host}:{node.port}, the master of {channel}")

    def _channel_on(self, node: Any, channel: str) -> str:
        """``channel`` with a hash tag that puts it on one of ``node``'s slots."""
        manager = self.client.nodes_manager
        for tag in range(1 << 16):
            tagged = f"{channel}{{{tag}}}"
            if manager.get_node_from_slot(key_slot(tagged.encode())).name == node.name:
                return tagged
        raise redis.ConnectionError(f"the master {node.name} serves no slot")


def servers(url: str) -> Servers:
    """The ``Servers`` of a broker URL, by its scheme."""
    scheme = url.partition("://")[0]
    if scheme.endswith("+sentinel"):
        return SentinelServers(url)
    if scheme.endswith("+cluster"):
        return ClusterServers(url)
    return Servers(url)


def _options() -> dict[str, Any]:
    # One attempt, and RESP2: published messages come back as replies (RESP3 hands them to a push handler).
    return {"socket_connect_timeout": SOCKET_TIMEOUT, "retry": Retry(NoBackoff(), 0), "protocol": 2}


def _addresses(hosts: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as pairs (port 6379 where none is given; 26379 is Sentinel's usual one)."""
    found = []
    for item in hosts.split(","):
        if item:
            parsed = urllib.parse.urlsplit("//" + item)
            found.append((parsed.hostname or "127.0.0.1", parsed.port or 6379))
    return found


# The TLS options a ``rediss+...`` URL may give in its query, as redis-py's ``rediss://`` takes them.
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")


def _tls(parts: urllib.parse.SplitResult) -> dict[str, Any]:
    """``ssl=True`` and the query's TLS options for a ``rediss+`` URL (to the master and the sentinels, or
    to every node); nothing for ``redis+``.

    Raises:
        ValueError: A query option that is not one of them.
    """
    query = urllib.parse.parse_qs(parts.query, strict_parsing=bool(parts.query))
    if unknown := sorted(set(query) - set(_TLS_OPTIONS)):
        raise ValueError(f"a {parts.scheme}:// URL takes {', '.join(_TLS_OPTIONS)} in its query, not {unknown}")
    if not parts.scheme.startswith("rediss"):
        if query:
            raise ValueError(f"TLS options are for rediss+ URLs, not {parts.scheme}://")
        return {}
    options: dict[str, Any] = {"ssl": True}
    for name, values in query.items():
        value: Any = values[-1]
        if name == "ssl_check_hostname":
            value = value.lower() in ("1", "true", "yes")
        options[name] = value
    return options


def _credentials(parts: urllib.parse.SplitResult) -> dict[str, Any]:
    credentials: dict[str, Any] = {}
    if parts.username:
        credentials["username"] = urllib.parse.unquote(parts.username)
    if parts.password:
        credentials["password"] = urllib.parse.unquote(parts.password)
    return credentials
