"""A client that stops reading must not hold up the connections that send to it (Duck defect 16, done right)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
import websocket

from tests.integration.conftest import serve
from tests.integration.wire import RawClient


@pytest.fixture(scope="module")
def server(server_kind):
    with serve(server_kind, "tests.integration.apps.slow_client_app:app") as running:
        yield running


def test_sends_to_a_client_that_stops_reading_time_out_and_drop_it(server):
    stalled = RawClient(server.port)
    assert stalled.handshake("/room") == 101
    assert stalled.read_frame()[3] == b"joined"  # a member of the room before anyone sends
    sender = websocket.create_connection(server.url("/room"), timeout=10)
    try:
        assert sender.recv() == "joined"
        payload = b"x" * 65536
        started = time.monotonic()
        replies = []
        for _ in range(200):  # ~13 MiB: far more than the stalled client's socket buffers hold
            sender.send_binary(payload)
            replies.append(sender.recv())
            if replies[-1] == "done 0":
                break
        # The stalled client was dropped after SEND_TIMEOUT (1 s), and the sender carried on.
        assert replies[-1] == "done 0", replies[-3:]
        assert time.monotonic() - started < 8
        sender.send("still here")
        assert sender.recv() == "done 0"
        # The server dropped TCP: what was queued drains, then the stream ends.
        stalled.sock.settimeout(5)
        while stalled.sock.recv(1 << 20):
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            codes = json.loads(urllib.request.urlopen(server.url("/closed", "http"), timeout=5).read())
            if 1006 in codes:
                break
            time.sleep(0.05)
        assert 1006 in codes
    finally:
        sender.close()
        stalled.sock.close()
