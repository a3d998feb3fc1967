"""The examples as a newcomer runs them: a dashboard that is sent a message, the access log, Ctrl-C.

Servers are real subprocesses on 127.0.0.1 with ephemeral ports; the
clients are websocket-client's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import websocket

from tests.integration.conftest import ROOT, Server, serve

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0
HOOK_FAILED = re.compile(r"WebSocket view \w+ failed|Traceback|NotImplementedError")


@contextlib.contextmanager
def connect(url: str) -> Iterator[websocket.WebSocket]:
    ws = websocket.create_connection(url, timeout=TIMEOUT)
    try:
        yield ws
    finally:
        ws.close(timeout=1)


def close_code(ws: websocket.WebSocket, code: int = 1000) -> int:
    """Send a Close, return the code of the server's answer, and close TCP."""
    ws.send_close(code)
    frame = ws.recv_frame()
    ws.shutdown()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    return struct.unpack("!H", frame.data[:2])[0]


def wait_for(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.05)


# examples/notify.py: the dashboard only listens, and a message from it closes nothing.


def test_a_dashboard_answers_ping_ignores_other_messages_and_still_gets_pushes() -> None:
    with serve("gunicorn", "examples.notify:app") as server, connect(server.url("/ws/dashboard")) as ws:
        ws.send("hello")
        ws.send_binary(b"\x00\x01")
        ws.send("ping")
        # Messages are handled in order: the answer to the last one shows the others closed nothing.
        assert ws.recv() == "pong"
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}/orders", data=b"item=duck", method="POST")
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            assert response.status == 201
            order = json.loads(response.read())
        assert json.loads(ws.recv()) == {"new_order": order}
        assert close_code(ws) == 1000
        time.sleep(0.2)  # the server's log of that connection, if any
        assert not HOOK_FAILED.search(server.log()), server.log()


# The access log of the examples: one line per WebSocket.


def access_lines(server: Server, client_port: int) -> list[str]:
    return [line for line in server.output if re.search(rf"127\.0\.0\.1:{client_port} /ws/chat close=", line)]


def test_the_quickstart_chat_prints_one_access_line_per_websocket() -> None:
    with serve("gunicorn", "examples.chat:app") as server:
        ws = websocket.create_connection(server.url("/ws/chat"), timeout=TIMEOUT)
        client_port = ws.sock.getsockname()[1]
        assert json.loads(ws.recv())["type"] == "system"  # the welcome
        online = json.loads(ws.recv())  # then the room's online list: the only user
        assert online["type"] == "online" and online["count"] == 1, online
        assert close_code(ws) == 1000
        wait_for(lambda: access_lines(server, client_port), "access-log line")
        time.sleep(0.3)  # a second line, if there were two handlers, would be here by now
        lines = access_lines(server, client_port)
        assert len(lines) == 1, server.log()
        assert "close=1000 by=client" in lines[0]


LOGGING_PROBE = """
import importlib, logging, sys
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.WARNING)
root_handlers = list(logging.root.handlers)
import examples.chat, examples.notify
importlib.reload(examples.chat)
access = logging.getLogger("duck_ws_sync.access")
print(len(access.handlers), logging.root.handlers == root_handlers, logging.root.level)
"""


def test_importing_the_examples_twice_adds_one_handler_and_leaves_a_configured_app_alone() -> None:
    def probe(mode: str) -> str:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        command = [sys.executable, "-c", LOGGING_PROBE, mode]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=True)
        return result.stdout.strip()

    assert probe("bare") == "1 True 30"  # one handler of its own; the root logger untouched (WARNING)
    assert probe("configured") == "0 True 30"  # the app's logging decides


# python3 -m examples.chat, stopped with Ctrl-C.


def test_ctrl_c_stops_the_pywsgi_chat_with_status_0_and_no_traceback() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.chat", "127.0.0.1", "0"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    started = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                output.append(line)
                started.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert started.wait(20), "".join(output)
        banner = re.fullmatch(r"Chat on http://127\.0\.0\.1:(\d+)/\n", output[0])
        assert banner, output
        ws = websocket.create_connection(f"ws://127.0.0.1:{banner.group(1)}/ws/chat", timeout=TIMEOUT)
        assert json.loads(ws.recv())["type"] == "system"  # the welcome
        assert json.loads(ws.recv())["type"] == "online"  # then the room's online list: the next frame is the Close

        process.send_signal(signal.SIGINT)
        frame = None
        with contextlib.suppress(websocket.WebSocketException, OSError):
            frame = ws.recv_frame()  # the server closes the open WebSocket as it stops
            ws.send_close(1001)
        ws.shutdown()
        status = process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    reader.join(5)
    log = "".join(output)
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert status == 0, log
    assert frame is not None and frame.opcode == websocket.ABNF.OPCODE_CLOSE, log
    assert struct.unpack("!H", frame.data[:2])[0] == 1001
    # Apart from the logs' lines (pywsgi's request line, the access line), one line at start and one at the end.
    said = [line for line in output if '"GET ' not in line and "[ACCESS]" not in line]
    assert said == [output[0], "Chat stopped\n"], log
