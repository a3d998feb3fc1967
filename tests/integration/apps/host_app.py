"""A WSGI app with WebSocket routes in front of plain HTTP ones, for test_host.py.

- ``/ws/echo``: echoes every message; the text ``"close me"`` makes the server
  start the closing handshake instead.
- ``/ws/crash``: echoes, except ``"raise"`` (an exception in on_receive) and
  ``"cancelled"`` (a CancelledError escaping on_receive, from awaiting a task
  that was cancelled).
- ``/ws/crash-open``: on_open raises.
- any other path: the wrapped plain WSGI app (``/pid`` answers the worker's pid).

    python -m tests.integration.apps.host_app   # on wsgiref.simple_server (no gevent); prints LISTENING <port>
"""

from __future__ import annotations

import asyncio
import os

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path


class Echo(WebSocketView):
    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"close me":
            await self.send_close(1000, "as asked")
            return
        await self.send(data, opcode)


class Crash(WebSocketView):
    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"raise":
            raise RuntimeError("a bug in the view")
        if data == b"cancelled":
            task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
            await asyncio.sleep(0)
            task.cancel()
            await task  # raises CancelledError into this hook: a bug in the view, not a cancellation of the session
        await self.send(data, opcode)


class CrashOnOpen(WebSocketView):
    PING_INTERVAL = None

    async def on_open(self) -> None:
        raise RuntimeError("a bug in on_open")

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


def plain(environ, start_response):
    if environ.get("PATH_INFO") == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = f"plain {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = WebSocketMiddleware(
    plain,
    [path("/ws/echo", Echo), path("/ws/crash", Crash), path("/ws/crash-open", CrashOnOpen)],
)


def serve_wsgiref() -> None:
    """Serve ``app`` on the standard library's wsgiref server: no gevent, no socket to take over."""
    from wsgiref.simple_server import make_server

    server = make_server("127.0.0.1", 0, app)
    print(f"LISTENING {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve_wsgiref()
