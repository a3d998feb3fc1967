"""duck_ws_sync's echo: a ``WebSocketView`` served at ``/ws`` by ``WebSocketMiddleware``.

It sends every message back with ``await self.send(data, opcode)`` (text as
text, binary as binary) and fans a text message that begins with ``BCAST:``
out with ``send_text`` to every open view, kept in a module-level set. The
heartbeat is the default one (``PING_INTERVAL`` 20 s); the size limits are
raised to 2 MiB so that a 1 MiB message goes both ways as one frame.

``gunicorn -k gevent -w 1 duck_app:app`` serves it (``duck_pywsgi.py`` on
gevent.pywsgi). When ``DUCK_BENCH_ROOT`` is set, duck_ws_sync must be
imported from that checkout (``--root``/``--compare`` of ``bench/run.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duck_ws_sync
from duck_ws_sync import OpCode, WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

_root = os.environ.get("DUCK_BENCH_ROOT")
if _root and not Path(duck_ws_sync.__file__).resolve().is_relative_to(Path(_root).resolve()):
    # ImportError: gunicorn stops at a worker that fails to boot (it would restart one that exits).
    raise ImportError(f"duck_ws_sync comes from {duck_ws_sync.__file__}, not from {_root}")

MAX_SIZE = 2 << 20

VIEWS: set[Echo] = set()


class Echo(WebSocketView):
    MAX_FRAME_SIZE = MAX_SIZE
    MAX_MESSAGE_SIZE = MAX_SIZE
    # DUCK_BENCH_PING_INTERVAL: a shorter heartbeat, to measure what a ping costs.
    PING_INTERVAL = float(os.environ.get("DUCK_BENCH_PING_INTERVAL", "20"))

    async def on_open(self) -> None:
        VIEWS.add(self)

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if opcode == OpCode.TEXT and data.startswith(b"BCAST:"):
            text = data.decode("utf-8")
            for view in list(VIEWS):
                await view.send_text(text)
        else:
            await self.send(data, opcode)

    async def on_close(self) -> None:
        VIEWS.discard(self)


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"WebSocket at /ws\n"]


app = WebSocketMiddleware(hello, [path("/ws", Echo, name="echo")])
