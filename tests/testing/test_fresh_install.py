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

from tests.testing.test_plugin import ECHO

ROOT = Path(__file__).resolve().parents[2]

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
    project = tmp_path / "project"
    project.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*command: str | Path, timeout: float = 120) -> str:
        result = subprocess.run(
            command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run(python, "-m", "pip", "install", "-q", f"{ROOT}[test]", timeout=600)
    (project / "echo_app.py").write_text(ECHO)
    (project / "test_echo.py").write_text(textwrap.dedent(USER_TESTS))
    assert "3 passed" in run(environment / "bin" / "pytest", "-q")
    # What ran was the installed package, not this checkout.
    assert run(python, "-c", "import duck_ws_sync; print(duck_ws_sync.__file__)").startswith(str(environment))
