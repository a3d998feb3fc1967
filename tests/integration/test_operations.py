"""Operations on every server: the access log, ``stats()`` and its endpoint, Prometheus under several workers.

The app is tests/integration/apps/security_app.py; it prints each access
log record as ``ACCESS <json>``.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from websockets.sync.client import connect as websockets_connect

from duck_ws_sync.testing import LiveServer, WebSocketClient
from duck_ws_sync.testing import serve as serve_live
from tests.integration.conftest import Server, serve

APP = "tests.integration.apps.security_app:app"
TIMEOUT = 10


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    with serve(server_kind, APP) as running:
        yield running


def get_json(port: int, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as response:
        assert response.status == 200
        return json.loads(response.read())


def access_line(server: Server, client_port: int) -> dict[str, Any]:
    """The access log record of the connection from ``client_port`` (waiting for it)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for line in server.log().splitlines():
            if line.startswith("ACCESS "):
                record = json.loads(line[len("ACCESS ") :])
                if record["client_port"] == client_port:
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no access log line for port {client_port}:\n{server.log()}")


# The access log


def test_the_access_log_line_of_a_connection_the_client_closed(server: Server) -> None:
    ws = websocket.create_connection(server.url("/ws/echo-plain"), timeout=TIMEOUT)
    port = ws.sock.getsockname()[1]
    for text in ("a", "bb", "ccc"):
        ws.send(text)
        assert ws.recv() == text
    time.sleep(0.2)
    ws.close(websocket.STATUS_NORMAL)
    record = access_line(server, port)
    assert record["level"] == "INFO"
    assert record["client_host"] == "127.0.0.1"
    assert record["path"] == "/ws/echo-plain"
    assert record["view"] == "EchoPlain"
    assert (record["close_code"], record["closed_by"]) == (1000, "client")
    assert record["subprotocol"] is None
    assert record["compression"] is False
    # Masked client frames of 1, 2, 3 bytes (6-byte headers) and a Close with a code; our echoes and our answer.
    assert (record["messages_received"], record["bytes_received"]) == (3, 7 + 8 + 9 + 8)
    assert (record["messages_sent"], record["bytes_sent"]) == (3, 3 + 4 + 5 + 4)
    assert 0.2 <= record["duration"] < TIMEOUT
    assert record["message"] == (
        f"127.0.0.1:{port} /ws/echo-plain close=1000 by=client duration={record['duration']:.3f}s "
        "received=3/32B sent=3/16B subprotocol=- compression=off"
    )


def test_the_access_log_line_of_a_compressed_connection_the_server_closed(server: Server) -> None:
    with websockets_connect(server.url("/ws/echo?secret=token"), open_timeout=TIMEOUT) as ws:
        port = ws.socket.getsockname()[1]
        ws.send("x" * 1000)
        assert ws.recv(TIMEOUT) == "x" * 1000
        ws.send("close")
        with pytest.raises(Exception):  # noqa: B017 (websockets' ConnectionClosedOK)
            ws.recv(TIMEOUT)
    record = access_line(server, port)
    assert (record["close_code"], record["closed_by"]) == (4000, "server")
    assert record["compression"] is True
    assert record["path"] == "/ws/echo"  # never the query string: it may hold a token
    assert "secret" not in record["message"]
    assert record["messages_received"] == 2 and record["messages_sent"] == 1
    assert record["bytes_received"] < 100  # 1000 bytes of "x", compressed
    assert "compression=on" in record["message"] and "close=4000 by=server" in record["message"]


def test_a_lost_connection_is_logged_with_1006(server: Server) -> None:
    ws = websocket.create_connection(server.url("/ws/echo-plain"), timeout=TIMEOUT)
    port = ws.sock.getsockname()[1]
    ws.send("bye")
    assert ws.recv() == "bye"
    ws.sock.close()  # no Close frame
    record = access_line(server, port)
    assert (record["close_code"], record["closed_by"]) == (1006, None)
    assert "close=1006 by=-" in record["message"]


# stats()


def wait_until_open(port: int, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while (snapshot := get_json(port, "/stats"))["open"] != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return snapshot


def test_stats_count_a_known_sequence(server: Server) -> None:
    before = wait_until_open(server.port, 0)
    first = websocket.create_connection(server.url("/ws/echo-plain"), timeout=TIMEOUT)
    second = websocket.create_connection(server.url("/ws/echo-plain"), timeout=TIMEOUT)
    for ws, text in ((first, "one"), (first, "two"), (second, "three")):
        ws.send(text)
        assert ws.recv() == text
    during = get_json(server.port, "/stats")
    assert during["open"] == 2
    assert during["opened"] - before["opened"] == 2
    assert during["messages_received"] - before["messages_received"] == 3
    assert during["messages_sent"] - before["messages_sent"] == 3
    first.close()
    second.send("close")  # the server closes with 4000; websocket-client answers with 1000
    assert second.recv() == ""
    third = websocket.create_connection(server.url("/ws/echo-plain"), timeout=TIMEOUT)
    third.sock.close()  # 1006
    after = wait_until_open(server.port, 0)
    assert after["status"] == "ok"
    assert after["opened"] - before["opened"] == 3
    assert after["closed"] - before["closed"] == 3
    assert after["messages_received"] - before["messages_received"] == 4
    assert after["messages_sent"] - before["messages_sent"] == 3
    # one+two+Close from first (9+9+8), three+Close from second (11+8); echoes 5+5+7, Closes 4 and 11.
    assert after["bytes_received"] - before["bytes_received"] == 9 + 9 + 8 + 11 + 11 + 8
    assert after["bytes_sent"] - before["bytes_sent"] == 5 + 5 + 7 + 4 + 11
    codes = {code: count - before["close_codes"].get(code, 0) for code, count in after["close_codes"].items()}
    assert {code: count for code, count in codes.items() if count} == {"1000": 1, "4000": 1, "1006": 1}


def test_stats_app_answers_head_and_says_json() -> None:
    from duck_ws_sync import stats_app

    seen: list[Any] = []
    body = stats_app({"REQUEST_METHOD": "HEAD"}, lambda status, headers: seen.append((status, dict(headers))))
    assert body == [b""]
    assert seen[0][0] == "200 OK" and seen[0][1]["Content-Type"] == "application/json"


# Prometheus


def test_metrics_of_one_process(server: Server) -> None:
    ws = websocket.create_connection(server.url("/ws/echo-plain"), timeout=TIMEOUT)
    try:
        ws.send("hi")
        assert ws.recv() == "hi"
        metrics = scrape(server.port)
        snapshot = get_json(server.port, "/stats")
        assert metrics["duck_ws_sync_connections_open"] == snapshot["open"] == 1
        assert metrics["duck_ws_sync_messages_received_total"] == snapshot["messages_received"]
        assert metrics["duck_ws_sync_connections_opened_total"] == snapshot["opened"]
    finally:
        ws.close()


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"(duck_ws_sync_\w+(?:\{[^}]*\})?) (\S+)", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def fetch(port: int, path: str = "/metrics", method: str = "GET", **headers: str) -> tuple[Any, bytes]:
    """The headers and body of the answer to ``path``, once it said 200."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return response.headers, body
    finally:
        connection.close()


def families(text: str) -> set[str]:
    """The metric families of an exposition, by their ``# TYPE`` lines."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_metrics_in_openmetrics_when_the_scraper_asks(server: Server) -> None:
    headers, body = fetch(server.port, Accept="application/openmetrics-text; version=1.0.0")
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE duck_ws_sync_connections_opened counter" in text
    assert re.search(r"^duck_ws_sync_connections_opened_total \S+$", text, re.MULTILINE)


def test_metrics_filtered_by_name(server: Server) -> None:
    _, body = fetch(server.port, "/metrics?name[]=duck_ws_sync_connections_open")
    text = body.decode()
    assert families(text) == {"duck_ws_sync_connections_open"}
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(samples) == 1 and samples[0].startswith("duck_ws_sync_connections_open ")


def test_metrics_gzipped_when_the_scraper_accepts_it(server: Server) -> None:
    headers, body = fetch(server.port, **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(body)
    assert re.search(r"^duck_ws_sync_messages_sent_total \S+$", gzip.decompress(body).decode(), re.MULTILINE)


def test_metrics_answer_head_with_the_headers_only(server: Server) -> None:
    headers, body = fetch(server.port, method="HEAD")
    assert body == b""
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert int(headers["Content-Length"]) > 0


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory: Path = tmp_path_factory.mktemp("prometheus")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "DUCK_WS_SYNC_METRICS_INTERVAL": "0.2"}
    with serve_live(APP, "gunicorn", worker="gevent", args=["-w", "2"], env=env) as running:
        yield running


def echo_client(server: LiveServer) -> tuple[WebSocketClient, int]:
    ws = server.connect("/ws/echo-plain?hold")
    ws.send("pid")
    return ws, int(ws.receive())


def test_prometheus_under_two_workers_sums_both(two_workers: LiveServer) -> None:
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        clients = list(pool.map(lambda _: echo_client(two_workers), range(12)))
    pids = {pid for _, pid in clients}
    assert len(pids) == 2, "the kernel gave every connection to one worker"
    try:
        for ws, _ in clients:
            ws.send("m")
            assert ws.receive() == "m"
        clients[0][0].close()
        deadline = time.monotonic() + TIMEOUT
        expected = {
            "duck_ws_sync_connections_open": 11,
            "duck_ws_sync_connections_opened_total": 12,
            'duck_ws_sync_connections_closed_total{code="1000"}': 1,
            "duck_ws_sync_messages_received_total": 24,  # "pid" and "m" from each
            "duck_ws_sync_messages_sent_total": 24,
        }
        while time.monotonic() < deadline:
            metrics = scrape(two_workers.port)
            if all(metrics.get(name) == value for name, value in expected.items()):
                break
            time.sleep(0.1)
        assert {name: metrics.get(name) for name in expected} == expected
        # Each worker alone knows only its own: the sum is over both.
        per_worker = [
            get_json(two_workers.port, "/stats")["pid"] for _ in range(20)
        ]  # whichever worker answers, it is one of the two
        assert set(per_worker) <= pids
    finally:
        for ws, _ in clients:
            ws.close()


def test_prometheus_under_two_workers_filters_by_name(two_workers: LiveServer) -> None:
    headers, body = fetch(
        two_workers.port,
        "/metrics?name[]=duck_ws_sync_connections_opened_total",
        Accept="application/openmetrics-text; version=1.0.0",
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert families(text) == {"duck_ws_sync_connections_opened"}
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(samples) == 1 and samples[0].startswith("duck_ws_sync_connections_opened_total ")
