"""Fixtures of the interoperability suite, and the table it writes to ``docs/interop.md``.

The servers (gunicorn -k gevent, gevent.pywsgi, gunicorn -k gthread and
werkzeug, serving ``tests.interop.app:app``) and the clients live for the
whole run. Each test of ``test_clients.py`` is one check of one client under
one server; when a run has every check of every client under every server, the table of
results is written to ``docs/interop.md``; a run of part of it (``-k``, a
test named on the command line, ``-x`` stopping early) leaves the table alone.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SERVER_KINDS, Server, serve
from tests.interop import clients as clients_module
from tests.interop.clients import Client

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "interop.md"

# (client id, column) -> server -> outcomes; filled as tests report.
_RESULTS: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
_CLIENTS: dict[str, Client] = {}
_COLUMNS: list[str] = []
_ANSWERS: dict[str, str] = {}  # client id -> the server's Sec-WebSocket-Extensions
_RUN = {"collected": 0, "reported": 0, "partial": False}  # is this run the whole table?


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(request.param, "tests.interop.app:app") as running:
        yield running
    # No client, however it behaved, made the server log an error.
    errors = [line for line in running.output if "Traceback" in line or "ERROR" in line]
    assert not errors, running.log()


@pytest.fixture(scope="session", autouse=True)
def _stop_clients() -> Iterator[None]:
    yield
    for client in _CLIENTS.values():
        client.stop()
    clients_module.stop_browser()


def column(name: str) -> Any:
    """Mark a test as one column of the table."""
    if name not in _COLUMNS:
        _COLUMNS.append(name)
    return pytest.mark.interop_column(name)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interop_column(name): the column of docs/interop.md a test fills")
    # A test or a parameter named on the command line: only part of the table runs.
    _RUN["partial"] = any("test_clients.py::" in arg for arg in config.args)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _RUN["collected"] = sum(1 for item in items if item.get_closest_marker("interop_column"))


def pytest_deselected(items: list[pytest.Item]) -> None:
    if any(item.get_closest_marker("interop_column") for item in items):
        _RUN["partial"] = True  # -k, -m, --deselect or --last-failed left some out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("interop_column")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        client: Client = callspec.params["client"]
        _CLIENTS.setdefault(client.id, client)
        detail = ", ".join(f"{value}" for key, value in callspec.params.items() if key not in ("client", "server"))
        result = "skipped" if report.skipped else "passed" if report.passed else f"failed {detail}".strip()
        _RUN["reported"] += 1
        _RESULTS[client.id, marker.args[0]][callspec.params["server"]].append(result)
        for name, value in report.user_properties:
            if name == "extensions":
                _ANSWERS[client.id] = value


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    complete = (
        not _RUN["partial"]
        and _RUN["reported"] == _RUN["collected"] > 0
        and all(set(_RESULTS[client, name]) == set(SERVER_KINDS) for client in _CLIENTS for name in _COLUMNS)
    )
    if complete:
        TABLE.write_text(render_table())


def _cell(results: dict[str, list[str]]) -> str:
    outcomes = [outcome for kind in SERVER_KINDS for outcome in results[kind]]
    if all(outcome == "skipped" for outcome in outcomes):
        return "n/a"
    failed = [
        f"{kind}: {outcome}" for kind in SERVER_KINDS for outcome in results[kind] if outcome.startswith("failed")
    ]
    if failed:
        return "FAILED (" + "; ".join(failed) + ")"
    passed = sum(outcome == "passed" for outcome in outcomes)
    return f"pass ({passed}/{len(outcomes)})"


def render_table() -> str:
    lines = [
        "# Interoperability",
        "",
        "<!-- Written by the test run (tests/interop/conftest.py); do not edit by hand. -->",
        "",
        f"Written on {datetime.date.today().isoformat()} by `python3 -m pytest tests/interop`: every client below ran",
        "every check against the test app of `tests/interop/app.py` (the chat example with",
        "echo routes beside it) under gunicorn -k gevent, gevent.pywsgi, gunicorn -k gthread",
        "and werkzeug's threaded server. A cell says `pass (n/n)` when all its tests passed",
        "under every server (n counts",
        "parameters times servers), `n/a` when the client cannot do it.",
        "",
        "| Client | Version | Settings | Compression | Server's answer | " + " | ".join(_COLUMNS) + " |",
        "|---" * (len(_COLUMNS) + 5) + "|",
    ]
    for client in _CLIENTS.values():
        cells = [_cell(_RESULTS[client.id, name]) for name in _COLUMNS]
        version = client.version()
        compression = "on" if client.compression else "off"
        answer = f"`{_ANSWERS[client.id]}`" if _ANSWERS.get(client.id) else "(none)"
        row = [client.name, version, client.settings, compression, answer, *cells]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "The checks:",
        "",
        "- negotiation: permessage-deflate is agreed when the client offers it (with the",
        "  parameters it asked for) and not otherwise; the client and the server's `on_close`",
        "  see the same `Sec-WebSocket-Extensions` answer.",
        "- echo: text and binary messages of 0, 125, 126, 65535, 65536 bytes, 1 MiB and",
        "  16 MiB come back identical (length and SHA-256); text mixes 1- to 4-byte characters.",
        "- fragmented: a message sent by the client in 5 frames (split inside characters where the",
        "  client allows it) comes back whole.",
        "- server ping: the view's `await self.ping()` returns once the client's Pong arrived.",
        "- server close: the client sees the view's close code 4001 and its reason.",
        "- client close: the view's `on_close` sees the client's code 4002 and its reason.",
        "- large from server: a 1 MiB + 1 byte text and binary message from a view whose",
        "  `MAX_FRAME_SIZE` is 64 KiB, compressed where negotiated and sent in ten frames or",
        "  more (the server counts them), decode to what the server sent.",
        "",
        "websocket-client does not implement permessage-deflate; its `permessage-deflate offered`",
        "row compresses and inflates in `tests/interop/clients.py` around the library's frame API.",
        "",
    ]
    return "\n".join(lines)
