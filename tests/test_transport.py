"""The transport in-process: a view served over a gevent socket pair, the client side written by hand.

What an idle connection does in the hub (Pongs handled without waking the
loop's greenlet, a shutdown that wakes it) is checked here, where the
greenlets can be watched; the integration tests run the same views under
real servers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import gevent
import gevent.socket
import greenlet
import pytest

from duck_ws_sync import WebSocketView
from duck_ws_sync.request import WebSocketRequest
from tests.helpers import PONG, TEXT, frame, parse_server_frames

UPGRADE = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/ws",
    "HTTP_HOST": "127.0.0.1",
    "HTTP_UPGRADE": "websocket",
    "HTTP_CONNECTION": "Upgrade",
    "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    "HTTP_SEC_WEBSOCKET_VERSION": "13",
}


class Echo(WebSocketView):
    PING_INTERVAL = None
    COMPRESSION = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.round_trips: list[float] = []
        self.closed = gevent.event.Event()

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"ping me":
            self.round_trips.append(await self.ping(b"rt"))
        await self.send(data, opcode)

    async def on_close(self) -> None:
        self.closed.set()


def serve() -> tuple[Echo, gevent.socket.socket, gevent.Greenlet]:
    server_side, client = gevent.socket.socketpair()
    view = Echo(WebSocketRequest(dict(UPGRADE)))
    return view, client, gevent.spawn(view.serve, server_side)


def read_frames(client: gevent.socket.socket, count: int) -> list[tuple[bool, bool, int, bytes]]:
    data = b""
    with gevent.Timeout(5):
        while len(parse_server_frames(data)) < count:
            data += client.recv(65536)
    return parse_server_frames(data)


def test_a_message_while_idle_is_answered():
    view, client, serving = serve()
    try:
        client.sendall(frame(TEXT, b"hello"))
        assert read_frames(client, 1) == [(True, False, TEXT, b"hello")]
    finally:
        client.close()
        serving.join(5)
    assert view.closed.is_set()


def test_pongs_while_idle_are_handled_in_the_hub_without_waking_the_loop():
    view, client, serving = serve()
    switches_into_loop = []
    try:
        client.sendall(frame(TEXT, b"ping me"))
        (fin, _, opcode, payload), *_ = read_frames(client, 1)
        assert (fin, opcode, payload) == (True, 0x9, b"rt")
        gevent.sleep(0.05)  # the loop's greenlet is idle again, waiting for the Pong

        def trace(event: str, args: tuple[Any, Any]) -> None:
            if event == "switch" and args[1] is serving:
                switches_into_loop.append(args)

        previous = greenlet.settrace(trace)
        try:
            client.sendall(frame(PONG, b"unsolicited") + frame(PONG, b"another"))
            gevent.sleep(0.05)
            assert switches_into_loop == []  # Pongs that answer nothing of the view's: the hub alone
            client.sendall(frame(PONG, b"rt"))  # answers the view's ping: its hook resumes
            assert read_frames(client, 1) == [(True, False, TEXT, b"ping me")]
        finally:
            greenlet.settrace(previous)
        assert switches_into_loop
        assert len(view.round_trips) == 1 and view.round_trips[0] >= 0
    finally:
        client.close()
        serving.join(5)


def test_the_heartbeat_of_an_idle_connection_never_wakes_the_loop():
    # The timer sends the Ping from the hub and points the socket's watcher
    # at the hub's read, which handles the Pong: the loop's greenlet sleeps on.
    class Beating(Echo):
        PING_INTERVAL = 0.05

    server_side, client = gevent.socket.socketpair()
    view = Beating(WebSocketRequest(dict(UPGRADE)))
    serving = gevent.spawn(view.serve, server_side)
    switches_into_loop = []

    def trace(event: str, args: tuple[Any, Any]) -> None:
        if event == "switch" and args[1] is serving:
            switches_into_loop.append(args)

    try:
        client.sendall(frame(TEXT, b"hello"))
        assert read_frames(client, 1) == [(True, False, TEXT, b"hello")]
        gevent.sleep(0.01)  # the loop's greenlet is idle
        previous = greenlet.settrace(trace)
        try:
            payloads = []
            for _ in range(3):
                [(fin, _, opcode, payload)] = read_frames(client, 1)
                assert (fin, opcode) == (True, 0x9)
                payloads.append(payload)
                client.sendall(frame(PONG, payload))
            gevent.sleep(0.02)
        finally:
            greenlet.settrace(previous)
        assert len(set(payloads)) == 3
        assert switches_into_loop == []
        client.sendall(frame(TEXT, b"still here"))  # and a message still reaches the view
        data = b""
        with gevent.Timeout(5):
            while (True, False, TEXT, b"still here") not in parse_server_frames(data):
                data += client.recv(65536)  # heartbeat Pings may come first
    finally:
        client.close()
        serving.join(5)


def test_a_message_that_comes_after_a_short_read_is_read_without_waiting_for_more():
    # A read that does not fill the buffer is taken to have drained the
    # socket, and the loop waits on the watcher instead of reading again:
    # what came meanwhile must still be reported by the watcher at once.
    server_side, client = gevent.socket.socketpair()

    class SendsMore(Echo):
        async def on_receive(self, data: bytes, opcode: int) -> None:
            if data == b"first":
                client.sendall(frame(TEXT, b"second"))  # arrives while this hook runs, after the read
            await self.send(data, opcode)

    view = SendsMore(WebSocketRequest(dict(UPGRADE)))
    serving = gevent.spawn(view.serve, server_side)
    try:
        client.sendall(frame(TEXT, b"first"))
        assert read_frames(client, 2) == [(True, False, TEXT, b"first"), (True, False, TEXT, b"second")]
    finally:
        client.close()
        serving.join(5)


@pytest.mark.parametrize("pong_expected", [False, True], ids=["loop-reads", "hub-reads"])
def test_a_shutdown_while_idle_wakes_the_loop_and_ends_the_session(monkeypatch, pong_expected):
    # gevent cancels the waits on a socket that is shut down by calling
    # throw() on its watcher's callback's owner: the waiting loop's greenlet,
    # or the transport while the hub reads for it (a Pong is expected).
    hub_errors: list[Any] = []
    hub = gevent.get_hub()
    monkeypatch.setattr(hub, "handle_error", lambda *args: hub_errors.append(args))
    view, client, serving = serve()
    try:
        client.sendall(frame(TEXT, b"ping me" if pong_expected else b"hello"))
        read_frames(client, 1)
        gevent.sleep(0.05)  # idle: the socket is watched for the loop
        assert view.session is not None
        view.session.abort()
        serving.join(5)
        assert serving.dead
        assert view.closed.is_set()
        assert view.close_code == 1006
        assert hub_errors == []
    finally:
        client.close()


def test_the_session_task_is_current_in_hooks_run_for_a_read_the_hub_made():
    seen: list[Any] = []

    class Tasks(Echo):
        async def on_receive(self, data: bytes, opcode: int) -> None:
            seen.append(asyncio.current_task())
            await self.send(data, opcode)

    server_side, client = gevent.socket.socketpair()
    view = Tasks(WebSocketRequest(dict(UPGRADE)))
    serving = gevent.spawn(view.serve, server_side)
    try:
        for text in (b"one", b"two"):
            client.sendall(frame(TEXT, text))
            read_frames(client, 1)
        assert len(seen) == 2 and seen[0] is seen[1] and seen[0] is not None
    finally:
        client.close()
        serving.join(5)
