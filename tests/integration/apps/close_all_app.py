"""The app behind test_close_all.py: ``close_all`` as the package exports it, on a route.

- ``/ws/echo``: echoes; ``on_close`` prints ``CLOSED <code>`` and keeps the code.
- ``POST /close-all``: ``duck_ws_sync.close_all()`` in this process,
  ``close_all(code, reason)`` given ``?code=N&reason=TEXT``; answers how
  many connections it closed.
- ``GET /closed``: the close codes ``on_close`` saw, as JSON.
"""

from __future__ import annotations

import json
import sys
from urllib.parse import parse_qs

from duck_ws_sync import WebSocketMiddleware, WebSocketView, close_all
from duck_ws_sync.urls import path

closed: list[int | None] = []


class Echo(WebSocketView):
    PING_INTERVAL = None
    CLOSE_TIMEOUT = 3

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)

    async def on_close(self) -> None:  # type: ignore[override]
        closed.append(self.close_code)
        sys.stdout.write(f"CLOSED {self.close_code}\n")
        sys.stdout.flush()


def http_app(environ, start_response):
    route, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
    if route == "/close-all" and method == "POST":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        count = close_all(int(query["code"][0]), query["reason"][0]) if "code" in query else close_all()
        body = str(count).encode()
    elif route == "/closed":
        body = json.dumps(closed).encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = WebSocketMiddleware(http_app, [path("/ws/echo", Echo)])
