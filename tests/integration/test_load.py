"""Load on one worker: isolation under a blocked hook, many concurrent connections, many in a row."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import resource
import statistics
import time
from collections.abc import Iterator

import pytest
import websocket
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import TEXT, server_close, server_frame
from tests.integration.conftest import Server, serve
from tests.integration.wire import RawClient

TIMEOUT = 10.0
CONCURRENT = 300


@pytest.fixture(scope="module")
def server(server_kind: str) -> Iterator[Server]:
    # gthread: a thread for each of the CONCURRENT handshakes at most (the WebSockets run in threads of their own).
    extra = ("--threads", "400") if server_kind == "gthread" else ()
    with serve(server_kind, "tests.integration.apps.load_app:app", *extra) as running:
        yield running


def http_get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def open_views(port: int) -> int:
    """Views still open in the worker, once the last on_close has run (the app waits for it)."""
    status, body = http_get(port, "/open")
    assert status == 200
    return int(body)


def test_blocked_hook_does_not_delay_another_connection(server: Server) -> None:
    blocked = websocket.create_connection(server.url("/ws/block"), timeout=TIMEOUT)
    echo = websocket.create_connection(server.url("/ws/echo"), timeout=TIMEOUT)
    with contextlib.closing(blocked), contextlib.closing(echo):
        blocked.send("2.0")
        assert set(json.loads(blocked.recv())) == {"started"}
        durations = []
        first_sent = time.monotonic()
        for number in range(200):
            message = f"round trip {number}"
            started = time.monotonic()
            echo.send(message)
            assert echo.recv() == message
            durations.append(time.monotonic() - started)
        last_received = time.monotonic()
        block = json.loads(blocked.recv())
        # The 200 round trips all happened while the other hook was blocked.
        assert block["ended"] - block["started"] >= 2.0
        assert block["started"] <= first_sent and last_received <= block["ended"], (block, first_sent, last_received)
        p99 = statistics.quantiles(durations, n=100)[98]
        assert p99 < 0.05, (p99, max(durations))


def test_a_hook_that_blocks_holds_up_none_of_the_connections_read_with_it(server: Server) -> None:
    # The hub finds these sockets readable at once, and one runner takes them
    # one after another: the others must not wait behind the one that blocks.
    blocked = websocket.create_connection(server.url("/ws/block"), timeout=TIMEOUT)
    echoes = [websocket.create_connection(server.url("/ws/echo"), timeout=TIMEOUT) for _ in range(30)]
    try:
        for round_number in range(3):
            block_frame = websocket.ABNF.create_frame("1.0", websocket.ABNF.OPCODE_TEXT).format()
            frames = [
                websocket.ABNF.create_frame(f"echo {round_number} {number}", websocket.ABNF.OPCODE_TEXT).format()
                for number in range(len(echoes))
            ]
            half = len(echoes) // 2
            started = time.monotonic()
            for client, frame_bytes in zip(echoes[:half], frames[:half], strict=True):
                client.sock.sendall(frame_bytes)
            blocked.sock.sendall(block_frame)
            for client, frame_bytes in zip(echoes[half:], frames[half:], strict=True):
                client.sock.sendall(frame_bytes)
            for number, client in enumerate(echoes):
                assert client.recv() == f"echo {round_number} {number}"
            took = time.monotonic() - started
            assert took < 0.5, f"round {round_number}: the echoes took {took:.2f} s beside a hook blocked for 1 s"
            assert set(json.loads(blocked.recv())) == {"started"}
            assert set(json.loads(blocked.recv())) == {"started", "ended"}
    finally:
        for client in [blocked, *echoes]:
            client.close()


def test_many_concurrent_connections(server: Server) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * CONCURRENT
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))

    async def echo_five(ws: ClientConnection, number: int) -> None:
        for message in range(5):
            text = f"connection {number} message {message}"
            await ws.send(text)
            assert await ws.recv() == text

    async def run() -> None:
        connections: list[ClientConnection] = []
        try:
            url = server.url("/ws/echo")
            for _batch in range(0, CONCURRENT, 50):  # batches, to stay within the listen backlog
                batch = (connect(url, open_timeout=20, ping_interval=None, proxy=None) for _ in range(50))
                connections += await asyncio.gather(*batch)
            # All of them open at once, in the one worker. (On threads, the last
            # connections' on_open may still be running in their own threads.)
            deadline = time.monotonic() + 5
            while True:
                await connections[0].send("?open")
                answer = await connections[0].recv()
                if answer == f"open {CONCURRENT}" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert answer == f"open {CONCURRENT}"
            await asyncio.gather(*(echo_five(ws, number) for number, ws in enumerate(connections)))
        finally:
            await asyncio.gather(*(ws.close() for ws in connections))
        assert [ws.close_code for ws in connections] == [1000] * CONCURRENT

    assert open_views(server.port) == 0  # earlier tests' connections are gone
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(run(), 40))
    assert open_views(server.port) == 0  # every connection's on_close ran
    assert time.monotonic() - started < 40


def test_many_sequential_connections_then_plain_http(server: Server) -> None:
    for number in range(200):
        with RawClient(server.port) as client:
            assert client.handshake("/ws/echo") == 101
            message = f"cycle {number}".encode()
            client.send_frame(TEXT, message)
            client.send_close(1000)
            assert client.read_to_eof() == server_frame(TEXT, message) + server_close(1000)
    assert http_get(server.port, "/hello") == (200, b"hello")
    assert open_views(server.port) == 0
