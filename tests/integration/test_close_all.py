"""``duck_ws_sync.close_all``: on a route of every server, and in docs/deployment.md's gevent.pywsgi script.

The app is tests/integration/apps/close_all_app.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from duck_ws_sync.testing import WebSocketClient
from tests.integration.conftest import ROOT, Server, serve

pytestmark = pytest.mark.timeout(60)

APP = "tests.integration.apps.close_all_app:app"
TIMEOUT = 5.0


def test_close_all_is_exported_by_the_package() -> None:
    import duck_ws_sync
    from duck_ws_sync import close_all
    from duck_ws_sync.engine import registry

    assert close_all is registry.close_all
    assert "close_all" in duck_ws_sync.__all__


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, APP) as running:
        yield running


def connect(port: int) -> WebSocketClient:
    """A client of ``/ws/echo`` that has had one echo back (its session is open)."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws/echo", timeout=TIMEOUT, class_=WebSocketClient)
    assert isinstance(ws, WebSocketClient)
    ws.send("hi")
    assert ws.receive() == "hi"
    return ws


def closed_codes(port: int) -> list[int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/closed", timeout=TIMEOUT) as response:
        return list(json.loads(response.read()))


def wait_for_closed(port: int, before: int, count: int) -> list[int]:
    """The codes of the ``count`` sessions ended since ``before`` were seen (waiting for their ``on_close``)."""
    deadline = time.monotonic() + TIMEOUT
    while len(codes := closed_codes(port)) < before + count and time.monotonic() < deadline:
        time.sleep(0.05)
    return codes[before:]


@pytest.mark.parametrize(
    ("query", "code", "reason"),
    [("", 1001, "Server shutting down"), ("?code=4001&reason=maintenance", 4001, "maintenance")],
)
def test_close_all_on_a_route_closes_every_open_websocket(server: Server, query: str, code: int, reason: str) -> None:
    clients = [connect(server.port) for _ in range(3)]
    try:
        before = len(closed_codes(server.port))
        assert int(server.post(f"/close-all{query}")) == 3
        for ws in clients:
            assert ws.expect_close(code, reason, timeout=TIMEOUT) == (code, reason)
        assert wait_for_closed(server.port, before, 3) == [code] * 3
        # The server still serves: a new WebSocket opens, echoes and ends as usual.
        fresh = connect(server.port)
        fresh.close()
        assert wait_for_closed(server.port, before + 3, 1) == [1000]
    finally:
        for ws in clients:
            ws.close()


# docs/deployment.md, "gevent.pywsgi": the script as it is written there.


def deployment_script() -> str:
    """The gevent.pywsgi script of docs/deployment.md, serving our app on an ephemeral port and printing it."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text.split("## gevent.pywsgi", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no Python block under 'gevent.pywsgi' in docs/deployment.md"
    script = match.group(1)
    replacements = {
        "from myproject.ws import app": "from tests.integration.apps.close_all_app import app",
        '("0.0.0.0", 8000)': '("127.0.0.1", 0)',
        "server.serve_forever(": 'server.start()\nprint(f"LISTENING {server.server_port}", flush=True)\n'
        "server.serve_forever(",
    }
    for old, new in replacements.items():
        assert script.count(old) == 1, f"docs/deployment.md's script no longer has {old!r}"
        script = script.replace(old, new)
    return script


def test_the_deployment_scripts_shutdown_closes_every_websocket_with_1001(tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text(deployment_script())
    process = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    listening = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if line.startswith("LISTENING "):
                listening.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    clients: list[WebSocketClient] = []
    try:
        deadline = time.monotonic() + 20
        while not listening.wait(0.1) and process.poll() is None and time.monotonic() < deadline:
            pass
        if not listening.is_set():
            reader.join(TIMEOUT)  # the rest of its output
        assert listening.is_set(), "".join(output)
        port = int(next(line for line in output if line.startswith("LISTENING ")).split()[1])
        clients = [connect(port) for _ in range(2)]
        process.send_signal(signal.SIGTERM)
        for ws in clients:
            assert ws.expect_close(1001, "Server shutting down", timeout=TIMEOUT)
        assert process.wait(TIMEOUT) == 0, "".join(output)
        reader.join(TIMEOUT)
        assert [line for line in output if line.startswith("CLOSED ")] == ["CLOSED 1001\n"] * 2, "".join(output)
    finally:
        for ws in clients:
            ws.close()
        if process.poll() is None:
            process.kill()
            process.wait(5)
