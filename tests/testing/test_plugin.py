"""The pytest plugin, as a user meets it: a test file of theirs, plain pytest, no conftest and no flag.

Each test writes a user's project into a temporary directory and runs
pytest there in a subprocess (``pytest.main`` in a script that then looks
for anything left behind: threads, child processes, listening sockets).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ECHO = """
import pytest

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path


class Echo(WebSocketView):
    async def on_receive(self, data, opcode):
        await self.send_text("You sent " + data.decode("utf-8"))


app = WebSocketMiddleware(None, [path("/ws", Echo)])
"""

# Runs the user's tests, then reports what the session left in this process.
RUNNER = """
import os, sys, threading, time
import pytest

status = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]])
threads = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
deadline = time.monotonic() + 1  # a thread that was joined takes a moment to leave the OS's list
while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
    time.sleep(0.01)
tasks = len(os.listdir("/proc/self/task"))
children = open(f"/proc/self/task/{os.getpid()}/children").read().split()
sockets = set()
for fd in os.listdir("/proc/self/fd"):
    try:
        sockets.add(os.readlink(f"/proc/self/fd/{fd}"))
    except FileNotFoundError:  # the listing's own descriptor
        pass
listening = []
for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and f"socket:[{fields[9]}]" in sockets:
            listening.append(fields[1])
print("LEFT", threads, tasks, children, listening)
sys.exit(status)
"""


def run_pytest(directory: Path) -> subprocess.CompletedProcess[str]:
    """pytest on the user's tests in ``directory``, in a process of its own."""
    (directory / "run_tests.py").write_text(RUNNER)
    return subprocess.run(
        [sys.executable, "run_tests.py"], cwd=directory, capture_output=True, text=True, timeout=120, check=False
    )


def run_user_tests(directory: Path) -> str:
    """Their output, once they have passed and left nothing behind."""
    result = run_pytest(directory)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "LEFT [] 1 [] []" in output, output  # no thread, child process or listening socket
    return output


def test_module_scoped_app_one_server_for_the_module(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        ECHO
        + textwrap.dedent("""
        ports = []


        @pytest.fixture(scope="module")
        def ws_app():
            return app


        def test_echo(ws_connect, ws_live_server):
            ws = ws_connect("/ws")
            ws.send("hi")
            assert ws.recv() == "You sent hi"
            ports.append(ws_live_server.port)


        def test_the_same_server_serves_the_next_test(ws_connect, ws_live_server):
            ws = ws_connect("/ws")
            ws.send_json({"a": 1})
            assert ws.receive() == 'You sent {"a": 1}'
            assert ports == [ws_live_server.port]


        def test_connections_close_after_each_test(ws_live_server):
            assert ws_live_server._clients and all(not ws.connected for ws in ws_live_server._clients)
        """)
    )
    output = run_user_tests(tmp_path)
    assert "3 passed" in output


def test_function_scoped_app_one_server_per_test(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        ECHO
        + textwrap.dedent("""
        servers = []


        @pytest.fixture
        def ws_app():
            return app


        @pytest.mark.parametrize("round", [1, 2])
        def test_echo(ws_connect, ws_live_server, round):
            ws = ws_connect("/ws")
            ws.send(str(round))
            assert ws.receive() == f"You sent {round}"
            servers.append(ws_live_server)
            assert all(server.stopped for server in servers[:-1])
            assert len({server.port for server in servers}) == len(servers)
        """)
    )
    output = run_user_tests(tmp_path)
    assert "2 passed" in output


def test_class_scoped_app_one_server_per_class(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        ECHO
        + textwrap.dedent("""
        servers = []


        @pytest.fixture(scope="class")
        def ws_app():
            return app


        class TestFirst:
            @pytest.mark.parametrize("round", [1, 2])
            def test_echo(self, ws_connect, ws_live_server, round):
                ws = ws_connect("/ws")
                ws.send(str(round))
                assert ws.receive() == f"You sent {round}"
                servers.append(ws_live_server)
                assert len(set(servers)) == 1 and not ws_live_server.stopped


        class TestSecond:
            def test_another_server(self, ws_live_server):
                assert servers[0].stopped and ws_live_server is not servers[0]
                assert not ws_live_server.stopped
        """)
    )
    output = run_user_tests(tmp_path)
    assert "3 passed" in output


def test_a_module_scoped_fixture_cannot_ask_for_the_live_server(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        ECHO
        + textwrap.dedent("""
        @pytest.fixture(scope="module")
        def ws_app():
            return app


        @pytest.fixture(scope="module")
        def module_client(ws_connect):
            return ws_connect("/ws")


        def test_echo(module_client):
            pass
        """)
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 1, result.stdout
    assert "ScopeMismatch" in result.stdout, result.stdout
    assert "LEFT [] 1 [] []" in result.stdout


def test_the_marker_chooses_gunicorn_and_its_worker(tmp_path: Path) -> None:
    (tmp_path / "userapp.py").write_text(ECHO)
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent("""
        import os
        import pytest

        pytestmark = pytest.mark.ws_server("gunicorn", worker="gthread")


        @pytest.fixture(scope="module")
        def ws_app():
            return "userapp:app"  # gunicorn imports it from the test's directory


        def test_echo_under_gunicorn(ws_connect, ws_live_server):
            ws = ws_connect("/ws")
            ws.send("hi")
            assert ws.receive() == "You sent hi"
            assert ws_live_server.pid != os.getpid()
            assert "Using worker: gthread" in ws_live_server.output
        """)
    )
    output = run_user_tests(tmp_path)
    assert "1 passed" in output


def test_a_failing_assertion_says_what_happened(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        ECHO
        + textwrap.dedent("""
        @pytest.fixture(scope="module")
        def ws_app():
            return app


        def test_nothing_comes(ws_connect):
            ws = ws_connect("/ws")
            ws.receive(timeout=0.2)
        """)
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    assert "AssertionError: no message from ws://127.0.0.1:" in result.stdout
    assert "/ws within 0.2 s" in result.stdout
    assert "LEFT [] 1 [] []" in result.stdout


@pytest.mark.parametrize("marker", ['pytest.mark.ws_server("uwsgi")'])
def test_a_wrong_marker_is_an_error_of_the_test(tmp_path: Path, marker: str) -> None:
    (tmp_path / "test_user.py").write_text(
        ECHO
        + textwrap.dedent(f"""
        @pytest.fixture
        def ws_app():
            return app


        @{marker}
        def test_echo(ws_connect):
            ws_connect("/ws")
        """)
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 1
    assert "server must be one of thread, gunicorn, not 'uwsgi'" in result.stdout
