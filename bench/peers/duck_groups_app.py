"""duck_ws_sync's W5 through groups: every connection joins one group, and ``BCAST:`` goes out with ``broadcast``.

The same echo as ``duck_app.py`` otherwise. With ``DUCK_WS_SYNC_BROKER``
set (the bench's redis-server), a broadcast reaches the members of every
gunicorn worker; without it, those of this worker.
"""

from __future__ import annotations

from duck_app import Echo, hello

from duck_ws_sync import OpCode, WebSocketMiddleware, broadcast
from duck_ws_sync.urls import path

GROUP = "bench"


class Member(Echo):
    async def on_open(self) -> None:
        self.join(GROUP)

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if opcode == OpCode.TEXT and data.startswith(b"BCAST:"):
            broadcast(GROUP, data.decode("utf-8"))
        else:
            await self.send(data, opcode)

    async def on_close(self) -> None:
        pass


app = WebSocketMiddleware(hello, [path("/ws", Member, name="echo")])
