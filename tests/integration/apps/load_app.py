"""Views for test_load.py, with a count of open connections.

- ``/ws/echo``: echoes; the text ``"?open"`` answers ``"open N"``, the number of
  views of this app open in the worker right now.
- ``/ws/block``: a text message ``"S"`` makes on_receive answer
  ``{"started": t}``, block for S seconds in ``time.sleep`` (cooperative where
  gevent patched it, a real one on a thread-per-connection server), and
  answer ``{"started": t, "ended": t'}`` (``time.monotonic``, which on Linux
  is the same clock in every process).
- ``GET /open``: the open count, once it is zero (waits up to 5 s for the last
  ``on_close``); any other path answers ``hello``.
"""

from __future__ import annotations

import threading
import time

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

IDLE = threading.Event()  # a gevent event where gevent patched threading
IDLE.set()


class Tally:
    """Views of this app open in the worker right now."""

    open = 0
    lock = threading.Lock()  # views open and close in threads of their own on gthread


class Counted(WebSocketView):
    PING_INTERVAL = None

    async def on_open(self) -> None:
        with Tally.lock:
            Tally.open += 1
            IDLE.clear()

    async def on_close(self) -> None:
        with Tally.lock:
            Tally.open -= 1
            if Tally.open == 0:
                IDLE.set()


class Echo(Counted):
    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"?open":
            await self.send_text(f"open {Tally.open}")
        else:
            await self.send(data, opcode)


class Block(Counted):
    async def on_receive(self, data: bytes, opcode: int) -> None:
        started = time.monotonic()
        await self.send_json({"started": started})
        time.sleep(float(data))
        await self.send_json({"started": started, "ended": time.monotonic()})


def plain(environ, start_response):
    if environ.get("PATH_INFO") == "/open":
        IDLE.wait(5)
        body = str(Tally.open).encode()
    else:
        body = b"hello"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = WebSocketMiddleware(plain, [path("/ws/echo", Echo), path("/ws/block", Block)])
