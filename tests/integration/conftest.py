"""Real servers for the integration tests: gunicorn's gevent and gthread workers, gevent.pywsgi, werkzeug.

Each server runs as a subprocess on 127.0.0.1 with an ephemeral port, and is
stopped (by its process id) when the test module is done.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from duck_ws_sync.testing.servers import no_control_socket

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 20.0
# gunicorn -k gthread's threads in the tests: HTTP requests and handshakes at
# once, with room (over TLS every WebSocket holds one, and the default budget
# keeps a quarter for HTTP).
GTHREAD_THREADS = 64


@dataclass
class Server:
    """A running server process."""

    kind: str  # "gunicorn" (-k gevent), "pywsgi", "gthread" (gunicorn -k gthread) or "werkzeug"
    port: int
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def post(self, path: str, body: bytes = b"", timeout: float = 10) -> bytes:
        """POST ``body`` to ``path``; the response's body, once it said 200."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=body)
            response = connection.getresponse()
            assert response.status == 200, (response.status, response.read())
            return response.read()
        finally:
            connection.close()

    def log(self) -> str:
        """Everything the server printed so far."""
        return "".join(self.output)


def _start(kind: str, app: str, extra_args: list[str], env_vars: dict[str, str] | None = None) -> Server:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if env_vars:
        env.update(env_vars)
    if kind in ("gunicorn", "gthread"):
        extra_args = [*no_control_socket(), *extra_args]  # no shared socket between test servers
        worker = ["-k", "gevent"] if kind == "gunicorn" else ["-k", "gthread", "--threads", str(GTHREAD_THREADS)]
        command = [
            sys.executable, "-m", "gunicorn", *worker, "-w", "1", "-b", "127.0.0.1:0",
            "--graceful-timeout", "2", "--worker-connections", "2000", "--log-level", "info", *extra_args, app,
        ]  # fmt: skip
        pattern = re.compile(r"Listening at: \w+://127\.0\.0\.1:(\d+)")
        ready = re.compile(r"Booting worker")
    else:
        server_module = "tests.integration.serve_pywsgi" if kind == "pywsgi" else "tests.integration.serve_werkzeug"
        command = [sys.executable, "-m", server_module, app, *extra_args]
        pattern = re.compile(r"LISTENING (\d+)")
        ready = pattern
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    server = Server(kind, 0, process)
    port_found, ready_seen = threading.Event(), threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        with process.stdout:  # closed at the end of the output, when the server has exited
            for line in process.stdout:
                server.output.append(line)
                match = pattern.search(line)
                if match:
                    server.port = int(match.group(1))
                    port_found.set()
                if ready.search(line):
                    ready_seen.set()

    threading.Thread(target=pump, daemon=True).start()
    if not (port_found.wait(STARTUP_TIMEOUT) and ready_seen.wait(STARTUP_TIMEOUT)):
        _stop(server)
        raise RuntimeError(f"{kind} did not start:\n{server.log()}")
    _wait_until_accepting(server)
    return server


def _wait_until_accepting(server: Server) -> None:
    import socket

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{server.kind} does not accept connections:\n{server.log()}")


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)


@contextlib.contextmanager
def serve(kind: str, app: str, *extra_args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``app`` (``module:attribute``) under ``kind`` for the duration of the block (``env``: more variables)."""
    server = _start(kind, app, list(extra_args), env)
    try:
        yield server
    finally:
        _stop(server)


GEVENT_KINDS = ["gunicorn", "pywsgi"]
THREAD_KINDS = ["gthread", "werkzeug"]
SERVER_KINDS = GEVENT_KINDS + THREAD_KINDS


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Each test module that uses it runs once per server."""
    return request.param


def gevent_only(server_kind: str, why: str) -> None:
    """Skip a test that cannot hold on a thread-per-connection server, saying why (docs/deployment.md lists them)."""
    if server_kind in THREAD_KINDS:
        pytest.skip(f"gevent only: {why}")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1: (ca, cert, key) files."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    leaf.private_key_pem.write_to_path(str(key_file))
    return ca_file, cert_file, key_file
