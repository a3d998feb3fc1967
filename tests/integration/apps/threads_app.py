"""The WSGI app behind ``tests/integration/test_threads.py``: what thread-per-connection servers must hold.

Nothing here is patched by gevent: on gunicorn's gthread worker and on
werkzeug every view runs in an OS thread of its own.

- ``/ws/echo``: echoes; with ``?print=ID`` its ``on_close`` prints
  ``ON_CLOSE ID CODE``.
- ``/ws/sleepy``: ``sleep`` blocks its hook in a real ``time.sleep(2)``,
  then answers ``slept``; anything else is echoed.
- ``/ws/blast``: ``blast N SIZE``: N threads send a binary message of SIZE
  bytes each at once (thread i sends SIZE bytes of value i), in fragments
  of 256 KiB; then ``done``.
- ``/ws/room``: each message goes to every other member of the room, from
  the sender's thread.
- ``POST /notify``: the body goes to every member of the room, from the
  HTTP request's thread; answers how many got it.
- anything else: ``plain``.

``app`` has the default connection budget; ``budget_app`` holds 6.
"""

from __future__ import annotations

import threading
import time

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

ROOM: set[WebSocketView] = set()


class Echo(WebSocketView):
    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)

    async def on_close(self) -> None:
        key = self.request.query_params.get("print")
        if key:
            print(f"ON_CLOSE {key} {self.close_code}", flush=True)


class Sleepy(WebSocketView):
    async def on_receive(self, data: bytes, opcode: int) -> None:
        if data == b"sleep":
            time.sleep(2)  # blocks this connection's thread, and only it
            await self.send_text("slept")
        else:
            await self.send(data, opcode)


class Blast(WebSocketView):
    MAX_FRAME_SIZE = 256 * 1024  # 1 MiB goes out as four frames: fragments must not interleave either

    async def on_receive(self, data: bytes, opcode: int) -> None:
        _, count, size = data.decode().split()
        senders = [
            threading.Thread(target=self.send_binary, args=(bytes([index]) * int(size),)) for index in range(int(count))
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(30)
        await self.send_text("done")


class Room(WebSocketView):
    async def on_open(self) -> None:
        ROOM.add(self)
        await self.send_text("joined")

    async def on_receive(self, data: bytes, opcode: int) -> None:
        for member in list(ROOM):
            if member is not self:
                member.send(data, opcode)

    async def on_close(self) -> None:
        ROOM.discard(self)


def plain(environ, start_response):
    if environ["PATH_INFO"] == "/notify" and environ["REQUEST_METHOD"] == "POST":
        text = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        body = str(sum(bool(member.send_text(text)) for member in list(ROOM))).encode()
    else:
        body = b"plain"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


urlpatterns = [
    path("/ws/echo", Echo),
    path("/ws/sleepy", Sleepy),
    path("/ws/blast", Blast),
    path("/ws/room", Room),
]

app = WebSocketMiddleware(plain, urlpatterns)
budget_app = WebSocketMiddleware(plain, urlpatterns, max_connections=6)
