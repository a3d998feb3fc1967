"""duck_ws_sync's W5 through groups and users: ``BCAST:`` goes out with ``broadcast`` (``app``) or ``send_to_user``.

``app``: every connection joins one group, and a broadcast goes to it.
``users_app``: every connection is the same user's (``user_id``), as a
user with 1,000 tabs and devices, and ``send_to_user`` reaches them all.
The same echo as ``duck_app.py`` otherwise. With ``DUCK_WS_SYNC_BROKER``
set (the bench's redis-server), a broadcast reaches the members of every
gunicorn worker; without it, those of this worker.
"""

from __future__ import annotations

from duck_app import Echo, hello

from duck_ws_sync import OpCode, WebSocketMiddleware, broadcast, send_to_user
from duck_ws_sync.urls import path

GROUP = "bench"
USER = "everywhere"


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


class Tab(Echo):
    async def on_open(self) -> None:
        self.user_id = USER

    async def on_receive(self, data: bytes, opcode: int) -> None:
        if opcode == OpCode.TEXT and data.startswith(b"BCAST:"):
            send_to_user(USER, data.decode("utf-8"))
        else:
            await self.send(data, opcode)

    async def on_close(self) -> None:
        pass


users_app = WebSocketMiddleware(hello, [path("/ws", Tab, name="echo")])
