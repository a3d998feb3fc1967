"""A real redis-server for the tests, on 127.0.0.1 and a free port, started and stopped by its process id.

Sentinel and a cluster of several such servers are in ``redis_ha.py``, with the helpers here. Each
service takes ``tls=True``: every process then speaks TLS only, with a throwaway CA and a certificate for
127.0.0.1 (``Certificates``), and its ``url`` is the ``rediss`` form that names the CA file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import redis


class Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 (an IP subjectAltName) signed by it, made with
    ``openssl`` in a temporary directory.

    The directory's path is chosen at once, so that a URL can name the CA file before anything is made;
    ``make()`` creates the directory and the files, ``remove()`` deletes them, and ``make()`` again makes a new
    CA and certificate at the same paths. Clients need only the CA: the servers do not ask for theirs.
    """

    def __init__(self) -> None:
        openssl = shutil.which("openssl")
        assert openssl, "openssl is missing (Debian package openssl)"
        self.openssl = openssl
        self.directory = os.path.join(tempfile.gettempdir(), f"redis-tls-{secrets.token_hex(8)}")
        self.ca = os.path.join(self.directory, "ca.crt")
        self.certificate = os.path.join(self.directory, "server.crt")
        self.key = os.path.join(self.directory, "server.key")

    def make(self, timeout: float = 20) -> None:
        """Create the directory (it must not exist) and the CA, the key and the certificate in it."""
        deadline = time.monotonic() + timeout
        os.mkdir(self.directory, 0o700)
        try:
            ca_key = os.path.join(self.directory, "ca.key")
            request = os.path.join(self.directory, "server.csr")
            extensions = os.path.join(self.directory, "server.ext")
            with open(extensions, "w") as file:
                file.write(
                    "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
                )
            new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            self._openssl(
                deadline, "req", "-x509", *new_key, "-keyout", ca_key, "-out", self.ca, "-days", "2",
                "-subj", "/CN=duck_ws_sync test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            )  # fmt: skip
            self._openssl(
                deadline, "req", "-new", *new_key, "-keyout", self.key, "-out", request, "-subj", "/CN=127.0.0.1"
            )
            self._openssl(
                deadline, "x509", "-req", "-in", request, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
                "-out", self.certificate, "-days", "2", "-extfile", extensions,
            )  # fmt: skip
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def server_arguments(self) -> list[str]:
        """A redis-server's TLS options: its certificate and key, the CA, and clients that need no certificate.

        The same certificate serves when the server connects as a client (a replica to its master, a
        cluster node to another).
        """
        return [
            "--tls-cert-file", self.certificate, "--tls-key-file", self.key, "--tls-ca-cert-file", self.ca,
            "--tls-auth-clients", "no", "--tls-replication", "yes",
        ]  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        """redis-py's options for a TLS connection that verifies the server with the CA."""
        return {"ssl": True, "ssl_ca_certs": self.ca}

    def redis_options(self) -> dict[str, Any]:
        """``client_options()`` for a ``redis.Redis``, with the host the certificate names (not "localhost")."""
        return {"host": "127.0.0.1", **self.client_options()}

    def query(self) -> str:
        """The broker URL's query that names the CA file."""
        return "?ssl_ca_certs=" + urllib.parse.quote(self.ca)

    def _openssl(self, deadline: float, *arguments: str) -> None:
        done = subprocess.run(
            [self.openssl, *arguments],
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=max(deadline - time.monotonic(), 1),
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl {arguments[0]} failed: {done.stdout.decode()[-2000:]}")


class Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=Service)


@contextlib.contextmanager
def running(service: S) -> Iterator[S]:
    """``service`` started, and stopped however the block ends, a failed start included."""
    try:
        service.start()
        yield service
    finally:
        service.stop()


class RedisService:
    """``redis-server`` without persistence; ``stop()`` and ``start()`` again keep its port.

    With ``tls``, it listens with TLS only (``rediss://``), and ``stop()`` removes its certificates too:
    ``start()`` again makes new ones at the same paths.
    """

    def __init__(self, tls: bool = False) -> None:
        executable = shutil.which("redis-server")
        assert executable, "redis-server is missing: tests/setup.sh installs it (Debian package redis-server)"
        self.executable = executable
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.certificates = Certificates() if tls else None
        self._tls = self.certificates.redis_options() if self.certificates else {}
        if self.certificates is None:
            self.url = f"redis://127.0.0.1:{self.port}/0"
        else:
            self.url = f"rediss://127.0.0.1:{self.port}/0{self.certificates.query()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        command = [
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--protected-mode", "no",
        ]  # fmt: skip
        if self.certificates is not None:
            if not os.path.isdir(self.certificates.directory):
                self.certificates.make()
            command[1:3] = ["--port", "0", "--tls-port", str(self.port), *self.certificates.server_arguments()]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, **self._tls)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
        if self.certificates is not None:
            self.certificates.remove()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, **self._tls)


def free_ports(count: int) -> list[int]:
    """``count`` different free ports on 127.0.0.1, probed together so that none repeats."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def connect_to(port: int, **options: Any) -> redis.Redis:
    """A client for the quick questions of these services: it fails within a second."""
    return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=0.5, decode_responses=True, **options)


def info_of(port: int, section: str, **options: Any) -> dict[str, str]:
    """The ``key:value`` lines of INFO ``section`` on ``port``, or of CLUSTER INFO for ``cluster``."""
    with connect_to(port, **options) as client:
        fields = client.cluster("INFO") if section == "cluster" else client.info(section)
    return {key: str(value) for key, value in fields.items()}


def role_of(port: int, **options: Any) -> str:
    """``master`` or ``slave``: the first field of ROLE on ``port``."""
    with connect_to(port, **options) as client:
        return str(client.execute_command("ROLE")[0])


def wait_until(deadline: float, what: str, check: Callable[[], str | None], alive: dict[int, Any]) -> None:
    """Poll ``check`` (None when done, else what is missing) until ``deadline``; fail at once if a
    process of ``alive`` has ended."""
    missing: str | None = "nothing checked yet"
    while True:
        ended = [port for port, process in alive.items() if process.poll() is not None]
        if ended:
            raise RuntimeError(f"waiting for {what}: the process on port {ended} ended")
        try:
            missing = check()
        except redis.RedisError as error:
            missing = repr(error)
        if missing is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}: {missing}")
        time.sleep(0.1)


def end_all(processes: dict[int, subprocess.Popen[bytes]]) -> None:
    """Terminate every process of ``processes`` (SIGKILL after 10 s), wait for each, and forget them."""
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    for process in processes.values():
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    processes.clear()


def server_command(executable: str, port: int, directory: str, certificates: Certificates | None = None) -> list[str]:
    """A redis-server without persistence that syncs a new replica at once (the default waits 5 s).

    With ``certificates``: TLS only on ``port`` (no plain port), to its master too when it is a replica.
    """
    ports = ["--port", str(port)]
    if certificates is not None:
        ports = ["--port", "0", "--tls-port", str(port), *certificates.server_arguments()]
    return [
        executable, *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--protected-mode", "no", "--dir", directory, "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip
