"""The app behind test_hostile.py: views with the limits a hostile client runs into.

- ``/ws/sizes``: the default limits; answers each message with
  ``len:<its length>``, and ``pid`` with the worker's process id.
- ``/ws/rate``: ``MAX_MESSAGE_RATE = 5``; answers as ``/ws/sizes``.
- ``/ws/unbounded``: ``MAX_FRAME_SIZE = None`` (compression on, as by
  default); answers as ``/ws/sizes``.
- ``/ws/sink``: takes frames of up to 8 MiB and answers nothing.
- ``POST /close-all``: ``duck_ws_sync.views.close_all()`` in this worker;
  answers how many connections it closed.
"""

from __future__ import annotations

import os

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path
from duck_ws_sync.views import close_all

MiB = 1024 * 1024


class Sizes(WebSocketView):
    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send_text(str(os.getpid()) if data == b"pid" else f"len:{len(data)}")


class Rate(Sizes):
    MAX_MESSAGE_RATE = 5


class Unbounded(Sizes):
    MAX_FRAME_SIZE = None


class Sink(WebSocketView):
    PING_INTERVAL = None
    MAX_FRAME_SIZE = 8 * MiB
    MAX_MESSAGE_SIZE = 64 * MiB

    async def on_receive(self, data: bytes, opcode: int) -> None:
        pass


def http_app(environ, start_response):
    if environ.get("PATH_INFO") == "/close-all" and environ.get("REQUEST_METHOD") == "POST":
        body = str(close_all()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


app = WebSocketMiddleware(
    http_app,
    [
        path("/ws/sizes", Sizes),
        path("/ws/rate", Rate),
        path("/ws/unbounded", Unbounded),
        path("/ws/sink", Sink),
    ],
)
