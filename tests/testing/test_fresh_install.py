"""A user's project, in a fresh virtual environment that installed only ``duck-ws-sync[test]``.

Its tests use the plugin's fixtures, ``serve(app)`` and ``serve("module:app",
server="gunicorn")``, and run under plain ``pytest``: no conftest of ours,
no plugin flag, nothing from this checkout on the path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_APP = """
from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path


class Echo(WebSocketView):
    async def on_receive(self, data, opcode):
        await self.send_text("You sent " + data.decode("utf-8"))


app = WebSocketMiddleware(None, [path("/ws", Echo)])
"""

USER_TESTS = """
import pytest

from duck_ws_sync.testing import serve
from echo_app import app


@pytest.fixture(scope="module")
def ws_app():
    return app


def test_with_the_fixtures(ws_connect):
    ws = ws_connect("/ws")
    ws.send("hi")
    assert ws.recv() == "You sent hi"


def test_with_serve():
    with serve(app) as server:
        ws = server.connect("/ws")
        ws.send("hi")
        assert ws.recv() == "You sent hi"


def test_with_serve_under_gunicorn():
    with serve("echo_app:app", server="gunicorn") as server:
        ws = server.connect("/ws")
        ws.send("hi")
        assert ws.recv() == "You sent hi"
"""


@pytest.mark.timeout(900)
def test_a_fresh_install_tests_its_endpoints_with_plain_pytest(tmp_path: Path) -> None:
    environment = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True, timeout=120)
    python = environment / "bin" / "python"
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{ROOT}[test]"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    project = tmp_path / "project"
    project.mkdir()
    (project / "echo_app.py").write_text(textwrap.dedent(USER_APP))
    (project / "test_echo.py").write_text(textwrap.dedent(USER_TESTS))
    result = subprocess.run(
        [str(environment / "bin" / "pytest"), "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    # What ran was the installed package, not this checkout.
    located = subprocess.run(
        [str(python), "-c", "import duck_ws_sync; print(duck_ws_sync.__file__)"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert located.stdout.startswith(str(environment))
