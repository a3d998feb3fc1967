"""Redis that survives losing a node, for the tests: a master, a replica and three sentinels
(``SentinelService``), and a cluster of three masters and three replicas (``ClusterService``).

Real processes on 127.0.0.1 and free ports, ended by their own process handles; ``tls=True`` as for
``redis_service.RedisService``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import redis
from redis.cluster import ClusterNode
from redis.crc import key_slot

from tests.integration.redis_service import (
    Certificates,
    connect_to,
    end_all,
    free_ports,
    info_of,
    role_of,
    server_command,
    wait_until,
)


class Processes:
    """Redis processes by port, the temporary directory they write in, and their certificates, if any."""

    processes: dict[int, subprocess.Popen[bytes]]
    directory: str | None
    certificates: Certificates | None

    def stop(self) -> None:
        """Terminate every process this service started, by its Popen, and remove the temporary directory
        and the certificates."""
        end_all(self.processes)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        if self.certificates is not None:
            self.certificates.remove()


class SentinelService(Processes):
    """One master, one replica and three sentinels watching them as ``mymaster`` (quorum 2), without persistence.

    Each process on its own free port of 127.0.0.1; the sentinels write their configuration files in a
    temporary directory. ``stop()`` ends them all; ``start()`` again keeps the ports and starts afresh.
    With ``tls``, every process speaks TLS only, the sentinels to the master, the replica and each other
    too, and the URL is ``rediss+sentinel://``; ``stop()`` removes the certificates.
    """

    service = "mymaster"

    def __init__(self, tls: bool = False) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is missing: tests/setup.sh installs it (Debian package redis-server)"
        self.executable = executable
        # Debian's redis-sentinel is redis-server under another name, as is ``redis-server <conf> --sentinel``.
        sentinel = shutil.which("redis-sentinel")
        self.sentinel_command = [sentinel, "{conf}"] if sentinel else [executable, "{conf}", "--sentinel"]
        self.first_master_port, self.replica_port, *self.sentinel_ports = free_ports(5)
        self.sentinel_addresses = [("127.0.0.1", port) for port in self.sentinel_ports]
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        self.certificates = Certificates() if tls else None
        self._tls = self.certificates.redis_options() if self.certificates else {}
        if self.certificates is None:
            self.url = f"redis+sentinel://{hosts}/{self.service}/0"
        else:
            self.url = f"rediss+sentinel://{hosts}/{self.service}/0{self.certificates.query()}"
        self.processes: dict[int, subprocess.Popen[bytes]] = {}  # by port
        self.directory: str | None = None

    def start(self, timeout: float = 30) -> None:
        """Start the master and the replica, then the sentinels; wait until the replica is in sync and
        every sentinel reports the master, sees the replica linked and knows the two other sentinels.
        Ends what it started if that fails."""
        deadline = time.monotonic() + timeout
        try:
            self.directory = tempfile.mkdtemp(prefix="redis-sentinel-")
            if self.certificates is not None:
                self.certificates.make()
            master = server_command(self.executable, self.first_master_port, self.directory, self.certificates)
            self._spawn(self.first_master_port, master)
            replica = server_command(self.executable, self.replica_port, self.directory, self.certificates)
            self._spawn(self.replica_port, [*replica, "--replicaof", "127.0.0.1", str(self.first_master_port)])
            wait_until(deadline, "the replica in sync", self._replica_synced, self.processes)
            for port in self.sentinel_ports:
                self._spawn(port, [part.format(conf=self._configuration(port)) for part in self.sentinel_command])
            wait_until(deadline, "the sentinels", self._sentinels_ready, self.processes)
        except BaseException:
            self.stop()
            raise

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers ``SENTINEL get-master-addr-by-name`` tells."""
        for port in self.sentinel_ports:
            address = self._ask(port)
            if address is not None:
                return address[1]
        raise RuntimeError(f"no sentinel knows {self.service}")

    def kill_master(self) -> int:
        """SIGKILL the process serving as master now, by its pid; return its port."""
        port = self.master_port()
        process = self.processes[port]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 30) -> int:
        """Wait until every sentinel reports one master other than ``old_port`` and that one answers ROLE
        as master; return its port."""
        promoted: list[int] = []

        def check() -> str | None:
            addresses = {self._ask(port) for port in self.sentinel_ports}
            address = addresses.pop() if len(addresses) == 1 else None
            if address is None:
                return f"the sentinels report {addresses or None}"
            port = address[1]
            if port == old_port:
                return f"the sentinels still report {old_port}"
            if role_of(port, **self._tls) != "master":
                return f"{port} is not master yet"
            promoted.append(port)
            return None

        alive = {port: process for port, process in self.processes.items() if port != old_port}
        wait_until(time.monotonic() + timeout, f"a master other than {old_port}", check, alive)
        return promoted[0]

    def fail_over(self, timeout: float = 30) -> tuple[int, int]:
        """``SENTINEL FAILOVER``: the replica becomes the master and the old master lives on, as a replica.
        Wait until every sentinel agrees; return the old master's port and the new one's."""
        old = self.master_port()
        with connect_to(self.sentinel_ports[0], **self._tls) as sentinel:
            sentinel.execute_command("SENTINEL FAILOVER", self.service)
        return old, self.wait_for_failover(old, timeout)

    def client(self) -> redis.Redis:
        """A client of the current master (a plain one: it does not follow a failover)."""
        return redis.Redis(port=self.master_port(), socket_timeout=5, **self._tls)

    def _spawn(self, port: int, command: list[str]) -> None:
        self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def _configuration(self, port: int) -> str:
        """A sentinel's configuration file, which it rewrites as it learns."""
        assert self.directory is not None
        path = os.path.join(self.directory, f"sentinel-{port}.conf")
        ports = f"port {port}\n"
        if self.certificates is not None:
            ports = (
                f"port 0\ntls-port {port}\ntls-cert-file {self.certificates.certificate}\n"
                f"tls-key-file {self.certificates.key}\ntls-ca-cert-file {self.certificates.ca}\n"
                "tls-auth-clients no\ntls-replication yes\n"
            )
        with open(path, "w") as file:
            file.write(
                f"{ports}bind 127.0.0.1\nprotected-mode no\ndir {self.directory}\n"
                "sentinel resolve-hostnames no\nsentinel announce-ip 127.0.0.1\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.first_master_port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 3000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
        return path

    def _ask(self, port: int) -> tuple[str, int] | None:
        """The master's address according to the sentinel on ``port``, None if it does not answer."""
        try:
            with connect_to(port, **self._tls) as sentinel:
                address = sentinel.sentinel_get_master_addr_by_name(self.service)
        except redis.RedisError:
            return None
        return None if address is None else (str(address[0]), int(address[1]))

    def _replica_synced(self) -> str | None:
        status = info_of(self.replica_port, "replication", **self._tls).get("master_link_status")
        return None if status == "up" else f"replica master_link_status:{status}"

    def _sentinels_ready(self) -> str | None:
        for port in self.sentinel_ports:
            if self._ask(port) != ("127.0.0.1", self.first_master_port):
                return f"sentinel {port} does not report master {self.first_master_port} yet"
            with connect_to(port, **self._tls) as sentinel:
                replicas = sentinel.sentinel_slaves(self.service)
                others = sentinel.sentinel_sentinels(self.service)
            if not any(r["port"] == self.replica_port and r["master-link-status"] == "ok" for r in replicas):
                return f"sentinel {port} does not see the replica linked yet"
            if sorted(other["port"] for other in others if not other["is_sdown"]) != sorted(
                set(self.sentinel_ports) - {port}
            ):
                return f"sentinel {port} knows {len(others)} other sentinels"
        return self._replica_synced()


class ClusterService(Processes):
    """Six cluster nodes, three masters with a replica each, without persistence; node timeout 1 s.

    Each node on its own free port of 127.0.0.1 (its cluster bus on another), with its
    ``nodes.conf`` in a temporary directory. ``stop()`` ends them all; ``start()`` again keeps the
    ports and creates a new cluster. With ``tls``, every node speaks TLS only, on its cluster bus and to
    its master too, and the URL is ``rediss+cluster://``; ``stop()`` removes the certificates.
    """

    def __init__(self, tls: bool = False) -> None:
        executable, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        assert executable and cli, "redis-server is missing: tests/setup.sh installs it (Debian package redis-server)"
        self.executable, self.cli = executable, cli
        ports = free_ports(12)
        self.ports, self.bus_ports = ports[:6], ports[6:]
        # redis-cli --cluster create makes the first three nodes the masters.
        hosts = f"127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"
        self.certificates = Certificates() if tls else None
        self._tls = self.certificates.redis_options() if self.certificates else {}
        if self.certificates is None:
            self.url = f"redis+cluster://{hosts}/"
        else:
            self.url = f"rediss+cluster://{hosts}/{self.certificates.query()}"
        self.processes: dict[int, subprocess.Popen[bytes]] = {}  # by port
        self.directory: str | None = None

    def start(self, timeout: float = 60) -> None:
        """Start the nodes, create the cluster with ``redis-cli --cluster create`` and wait until every
        node says ``cluster_state:ok``, sees three masters with slots and three replicas, all connected,
        and lists a replica for each slot range in CLUSTER SLOTS; every replica is in sync.
        Ends what it started if that fails."""
        deadline = time.monotonic() + timeout
        try:
            self.directory = tempfile.mkdtemp(prefix="redis-cluster-")
            if self.certificates is not None:
                self.certificates.make()
            for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
                command = [
                    *server_command(self.executable, port, self.directory, self.certificates),
                    "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                    "--cluster-node-timeout", "1000", "--cluster-port", str(bus_port),
                    "--repl-ping-replica-period", "1",
                ]  # fmt: skip
                if self.certificates is not None:
                    command += ["--tls-cluster", "yes"]
                self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            wait_until(deadline, "the nodes", self._all_answer, self.processes)
            create = [self.cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in self.ports)]
            if self.certificates is not None:
                create += ["--tls", "--cacert", self.certificates.ca]
            created = subprocess.run(
                [*create, "--cluster-replicas", "1", "--cluster-yes"],
                check=False,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=max(deadline - time.monotonic(), 1),
            )
            if created.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout.decode()[-2000:]}")
            wait_until(deadline, "the cluster", self._settled, self.processes)
            masters = self.masters()
            assert self.ports[0] in masters and self.ports[1] in masters, masters
        except BaseException:
            self.stop()
            raise

    def masters(self) -> list[int]:
        """The ports of the masters serving slots, as ``CLUSTER SLOTS`` on a live node tells."""
        return sorted({port for _slots, port in self._slots()})

    def node_for(self, key: str | bytes) -> int:
        """The port of the master serving the slot of ``key`` (or shard channel)."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for (first, last), port in self._slots():
            if first <= slot <= last:
                return port
        raise RuntimeError(f"no master serves slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``, by its pid."""
        process = self.processes[port]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)

    def wait_for_takeover(self, killed_port: int, timeout: float = 30) -> None:
        """Wait until every surviving node says ``cluster_state:ok`` and none gives a slot to ``killed_port``:
        its replica has taken its slots over."""
        alive = {port: process for port, process in self.processes.items() if process.poll() is None}

        def check() -> str | None:
            for port in alive:
                state = info_of(port, "cluster", **self._tls).get("cluster_state")
                if state != "ok":
                    return f"node {port} says cluster_state:{state}"
                with connect_to(port, **self._tls) as client:
                    ranges = client.execute_command("CLUSTER SLOTS")
                if any(served[2][1] == killed_port for served in ranges):
                    return f"node {port} still gives slots to {killed_port}"
                if sum(served[1] - served[0] + 1 for served in ranges) != 16384:
                    return f"node {port} does not cover every slot"
            return None

        wait_until(time.monotonic() + timeout, f"a replica taking over from {killed_port}", check, alive)

    def replica_of(self, master_port: int) -> int | None:
        """The port of a replica of the master on ``master_port`` (None if it has none, after a takeover)."""
        with connect_to(master_port, **self._tls) as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        found = [int(served[3][1]) for served in ranges if int(served[2][1]) == master_port and len(served) > 3]
        return found[0] if found else None

    def fail_over(self, master_port: int, timeout: float = 30) -> int:
        """Have the replica of ``master_port`` take its slots over with ``CLUSTER FAILOVER`` (the old master
        lives on, as a replica); wait until every node gives those slots to it, and return its port."""
        replica = self.replica_of(master_port)
        assert replica is not None, f"{master_port} has no replica"
        with connect_to(replica, **self._tls) as client:
            client.execute_command("CLUSTER FAILOVER")

        alive = {port: process for port, process in self.processes.items() if process.poll() is None}

        def check() -> str | None:
            for port in alive:
                with connect_to(port, **self._tls) as client:
                    masters = {int(served[2][1]) for served in client.execute_command("CLUSTER SLOTS")}
                if master_port in masters or replica not in masters:
                    return f"node {port} still gives the slots to {master_port}"
            return None

        wait_until(time.monotonic() + timeout, f"{replica} taking over from {master_port}", check, alive)
        return replica

    def client(self) -> redis.RedisCluster:
        """A cluster client, started from the live nodes."""
        nodes = [ClusterNode("127.0.0.1", port) for port, process in self.processes.items() if process.poll() is None]
        tls = self.certificates.client_options() if self.certificates else {}
        return redis.RedisCluster(startup_nodes=nodes, socket_timeout=5, **tls)

    def _slots(self) -> list[tuple[tuple[int, int], int]]:
        """``((first slot, last slot), master port)`` for each range of ``CLUSTER SLOTS`` on the first live node."""
        for port, process in self.processes.items():
            if process.poll() is None:
                with connect_to(port, **self._tls) as client:
                    ranges = client.execute_command("CLUSTER SLOTS")
                return [((served[0], served[1]), int(served[2][1])) for served in ranges]
        raise RuntimeError("no cluster node is running")

    def _all_answer(self) -> str | None:
        for port in self.ports:
            with connect_to(port, **self._tls) as client:
                client.ping()
        return None

    def _settled(self) -> str | None:
        for port in self.ports:
            state = info_of(port, "cluster", **self._tls).get("cluster_state")
            if state != "ok":
                return f"node {port} says cluster_state:{state}"
            with connect_to(port, **self._tls) as client:
                nodes = [(set(node["flags"].split(",")), node) for node in client.cluster("NODES").values()]
            masters = [node for flags, node in nodes if "master" in flags and node["slots"]]
            replicas = [node for flags, node in nodes if "slave" in flags]
            if len(masters) != 3 or len(replicas) != 3:
                return f"node {port} sees {len(masters)} masters with slots and {len(replicas)} replicas"
            if any(not node["connected"] or {"fail", "fail?", "handshake", "noaddr"} & flags for flags, node in nodes):
                return f"node {port} does not see every node connected"
            myself = next(flags for flags, _node in nodes if "myself" in flags)
            if "slave" in myself and info_of(port, "replication", **self._tls).get("master_link_status") != "up":
                return f"replica {port} is not in sync"
            # CLUSTER SLOTS leaves out a replica until its replication offset is above 0: the master's
            # first PING (every second here, not every 10) moves it.
            with connect_to(port, **self._tls) as client:
                if any(len(served) < 4 for served in client.execute_command("CLUSTER SLOTS")):
                    return f"node {port} does not list a replica for every slot range yet"
        return None
