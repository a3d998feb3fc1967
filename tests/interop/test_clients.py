"""Every client against both servers: negotiation, echo at the RFC's size boundaries,
fragments, ping, close both ways, and large compressed messages fragmented by the server.

Each test opens its own connection. ``docs/interop.md`` is written from the
results (see ``conftest.py``).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.conftest import Server
from tests.interop.clients import (
    Client,
    Received,
    aiohttp_client,
    chromium,
    node_ws,
    websocket_client,
    websockets_client,
    websockets_deflate,
)
from tests.interop.conftest import column
from tests.interop.payloads import KiB, MiB

CLIENTS = [
    websocket_client(deflate=False),
    websocket_client(deflate=True),
    websockets_client("default"),
    websockets_client("compression=None", compression=None),
    *(
        websockets_client(
            f"client_max_window_bits={bits}",
            (("client_max_window_bits", bits),),
            **websockets_deflate(client_max_window_bits=bits),
        )
        for bits in range(9, 16)
    ),
    *(
        websockets_client(
            f"server_max_window_bits={bits}",
            (("server_max_window_bits", bits),),
            **websockets_deflate(server_max_window_bits=bits),
        )
        for bits in range(9, 16)
    ),
    websockets_client(
        "client_no_context_takeover",
        (("client_no_context_takeover", None),),
        **websockets_deflate(client_no_context_takeover=True),
    ),
    websockets_client(
        "server_no_context_takeover",
        (("server_no_context_takeover", None),),
        **websockets_deflate(server_no_context_takeover=True),
    ),
    aiohttp_client(compress=15),
    aiohttp_client(compress=0),
    node_ws(deflate=True),
    node_ws(deflate=False),
    chromium(compression=True),
    chromium(compression=False),
]
SIZES = [0, 125, 126, 65535, 65536, 1 * MiB, 16 * MiB]
KINDS = ["text", "binary"]

pytestmark = pytest.mark.timeout(180)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Not a session fixture: the servers, the costly part, stay up for all clients.
    metafunc.parametrize("client", CLIENTS, ids=[client.id for client in CLIENTS])


def size_id(size: int) -> str:
    return f"{size // MiB}MiB" if size >= MiB and size % MiB == 0 else str(size)


def closed_on_server(server: Server, key: str) -> dict[str, Any]:
    """What the echo view ``?id=key`` saw in ``on_close`` (the server waits for it)."""
    with urllib.request.urlopen(server.url(f"/interop/closed?id={key}", "http"), timeout=15) as response:
        return json.load(response)


def expect_message(received: Received, kind: str, sent: dict[str, Any]) -> None:
    assert (received.type, received.length, received.sha256) == (kind, sent["length"], sent["sha256"])


@column("negotiation")
def test_compression_is_negotiated_when_offered(server: Server, client: Client, record_property: Any) -> None:
    key = uuid.uuid4().hex
    connection = client.connect(server.url(f"/ws/interop/echo?id={key}"))
    assert connection.close(1000, "").type == "close"
    seen = closed_on_server(server, key)
    record_property("extensions", seen["extensions"])
    assert connection.extensions == seen["extensions"]
    if client.compression:
        name, *params = [param.strip() for param in seen["extensions"].split(";")]
        assert name == "permessage-deflate"
        answer = dict(param.partition("=")[::2] for param in params)
        for param, bits in client.expected_params:
            assert param in answer or (bits == 15 and param.endswith("bits"))  # 15 bits need no mention
            if bits is not None:
                assert int(answer.get(param) or 15) <= bits
    else:
        assert seen["extensions"] == ""


@column("echo")
@pytest.mark.parametrize("size", SIZES, ids=size_id)
@pytest.mark.parametrize("kind", KINDS)
def test_echo(server: Server, client: Client, kind: str, size: int) -> None:
    connection = client.connect(server.url("/ws/interop/echo"))
    sent = connection.send(kind, size)
    assert sent["length"] == size
    expect_message(connection.receive(), kind, sent)
    connection.close(1000, "")


@column("fragmented")
@pytest.mark.parametrize("kind", KINDS)
def test_fragmented_message_comes_back_whole(server: Server, client: Client, kind: str) -> None:
    if not client.can_fragment:
        pytest.skip(f"{client.name} sends whole messages only")
    connection = client.connect(server.url("/ws/interop/echo"))
    sent = connection.send(kind, 300 * KiB + 7, fragments=5)
    expect_message(connection.receive(), kind, sent)
    connection.close(1000, "")


@column("server ping")
def test_server_ping_is_answered(server: Server, client: Client) -> None:
    connection = client.connect(server.url("/ws/interop/ping"))
    received = connection.receive()
    assert (received.type, received.text) == ("text", "pong received")
    connection.close(1000, "")


@column("server close")
def test_server_close_code_and_reason_reach_the_client(server: Server, client: Client) -> None:
    reason = "server says bye ✓"
    connection = client.connect(server.url(f"/ws/interop/close?code=4001&reason={quote(reason)}"))
    received = connection.receive()
    assert (received.type, received.code, received.reason) == ("close", 4001, reason)


@column("client close")
def test_client_close_code_and_reason_reach_on_close(server: Server, client: Client) -> None:
    key = uuid.uuid4().hex
    connection = client.connect(server.url(f"/ws/interop/echo?id={key}"))
    reason = "client says bye ✓"
    answer = connection.close(4002, reason)
    assert answer.type == "close"
    seen = closed_on_server(server, key)
    assert (seen["code"], seen["reason"]) == (4002, reason)


@column("large from server")
def test_large_messages_from_the_server_compressed_and_fragmented_decode(server: Server, client: Client) -> None:
    connection = client.connect(server.url(f"/ws/interop/send?size={MiB + 1}"))
    text, binary, report = connection.receive(), connection.receive(), connection.receive()
    assert report.type == "text" and report.text is not None
    sent = json.loads(report.text)
    expect_message(text, "text", sent["text"])
    expect_message(binary, "binary", sent["binary"])
    assert sent["text"]["length"] == MiB + 1
    assert sent["extensions"] == connection.extensions
    assert sent["extensions"].startswith("permessage-deflate") == client.compression
    # Deflated random data stays far over MAX_FRAME_SIZE (64 KiB): ten frames or more.
    assert sent["text"]["frames"] >= 10 and sent["binary"]["frames"] >= 10
    connection.close(1000, "")
