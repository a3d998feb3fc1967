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
- ``/ws/quiet?print=ID``: echoes, with a ``CLOSE_TIMEOUT`` of 0.5 s and no
  heartbeat, so its thread waits on its socket with no deadline at all.
- ``POST /close-quiet``: a Close 4000 to every quiet view, from the HTTP
  request's thread; answers how many were sent.
- ``POST /coroutine``: runs a coroutine on every quiet view's loop from the
  HTTP request's thread (``asyncio.run_coroutine_threadsafe``), which sends
  ``from a coroutine``; answers how many ran, each in its connection's thread.
- anything else: ``plain``.

``app`` has the default connection budget; ``budget_app`` holds 6.
"""

from __future__ import annotations

import asyncio
import threading
import time

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

ROOM: set[WebSocketView] = set()
QUIET: set[Quiet] = set()


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


class Quiet(Echo):
    PING_INTERVAL = None
    CLOSE_TIMEOUT = 0.5

    async def on_open(self) -> None:
        QUIET.add(self)

    async def on_close(self) -> None:
        QUIET.discard(self)
        await super().on_close()

    async def greet(self, caller: int) -> bool:
        """Send from the connection's own loop; whether that is another thread than the caller's."""
        await self.send_text("from a coroutine")
        return threading.get_ident() != caller


def _on_its_loop(view: Quiet) -> bool:
    assert view.session is not None
    future = asyncio.run_coroutine_threadsafe(view.greet(threading.get_ident()), view.session.loop)
    return future.result(5)


def plain(environ, start_response):
    method, where = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if where == "/notify" and method == "POST":
        text = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
        body = str(sum(bool(member.send_text(text)) for member in list(ROOM))).encode()
    elif where == "/close-quiet" and method == "POST":
        body = str(sum(bool(view.send_close(4000, "from HTTP")) for view in list(QUIET))).encode()
    elif where == "/coroutine" and method == "POST":
        body = str(sum(_on_its_loop(view) for view in list(QUIET))).encode()
    else:
        body = b"plain"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


urlpatterns = [
    path("/ws/echo", Echo),
    path("/ws/sleepy", Sleepy),
    path("/ws/blast", Blast),
    path("/ws/room", Room),
    path("/ws/quiet", Quiet),
]

app = WebSocketMiddleware(plain, urlpatterns)
budget_app = WebSocketMiddleware(plain, urlpatterns, max_connections=6)
