"""The WSGI app behind ``tests/integration/test_plain_hooks.py``: views whose hooks are plain ``def``.

Each hook records, under the ``id`` of the query string (``views_app.record``,
read back with ``GET /events?id=X``), whether an asyncio loop was running
when it was called: a plain ``def`` hook runs with none, even after it
blocked. Everything else goes to ``views_app``'s app.
"""

from __future__ import annotations

import asyncio
import time

from duck_ws_sync import OpCode, Reject, WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

from . import views_app
from .views_app import record


def loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class PlainEcho(WebSocketView):
    """Every hook a plain ``def``: ``sleep S`` blocks with ``time.sleep``, anything else is echoed."""

    PING_INTERVAL = None
    CLOSE_TIMEOUT = 2

    def authorize(self) -> None:
        self.key = self.request.query_params.get("id")
        record(self.key, "authorize", loop=loop_running())
        if self.request.query_params.get("token") == "bad":
            raise Reject(401, "bad token")

    def on_open(self) -> None:
        record(self.key, "on_open", loop=loop_running())
        sent = self.send_text("welcome")
        record(self.key, "sent", result=bool(sent), type=type(sent).__name__)

    def on_receive(self, data: bytes, opcode: int) -> None:
        if opcode == OpCode.TEXT and data.startswith(b"sleep "):
            time.sleep(float(data[6:]))
            record(self.key, "slept", loop=loop_running())
            self.send_text("slept")
            return
        if data == b"raise":
            raise ValueError("a plain hook failed")
        record(self.key, "on_receive", loop=loop_running())
        self.send(data, opcode)

    def on_close(self) -> None:
        record(self.key, "on_close", loop=loop_running(), code=self.close_code)


class AsyncEcho(WebSocketView):
    """The same echo with ``async def``: its hooks run on the connection's loop."""

    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        record(self.request.query_params.get("id"), "on_receive", loop=loop_running())
        await self.send(data, opcode)


app = WebSocketMiddleware(views_app.app, [path("/ws/plain", PlainEcho), path("/ws/async", AsyncEcho)])
