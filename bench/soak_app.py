"""The app of the soak run (bench/soak.py): an echo, a firehose, and the process's stats.

- ``/ws/echo``: sends back each message as it came (compression as the client offers).
- ``/ws/firehose``: on any message, sends 64 KiB messages until the send
  fails: a client that stops reading is dropped after ``SEND_TIMEOUT``.
- ``/stats``: ``duck_ws_sync.stats_app`` (this worker's).
"""

from __future__ import annotations

from duck_ws_sync import WebSocketMiddleware, WebSocketView, stats_app
from duck_ws_sync.urls import path

CHUNK = b"\x5a" * 65536


class Echo(WebSocketView):
    PING_INTERVAL = 5
    PONG_TIMEOUT = 5
    RECEIVE_TIMEOUT = 30
    CLOSE_TIMEOUT = 3

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


class Firehose(WebSocketView):
    PING_INTERVAL = None
    SEND_TIMEOUT = 2
    CLOSE_TIMEOUT = 2

    async def on_receive(self, data: bytes, opcode: int) -> None:
        while await self.send_binary(CHUNK):
            pass


def http_app(environ, start_response):
    if environ.get("PATH_INFO") == "/stats":
        return stats_app(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


app = WebSocketMiddleware(http_app, [path("/ws/echo", Echo), path("/ws/firehose", Firehose)])
