"""Groups and broadcast in one process (duck_ws_sync.broadcast, view.join/leave).

- ``/ws/room/<room>``: joins the group ``room`` and says ``joined``; each
  message is broadcast to the room (text as text, binary as binary), the
  sender excluded; ``leave``
  leaves the room (answering ``left``), ``join:<group>`` joins another.
- ``/ws/small/<room>``: the same, with ``MAX_FRAME_SIZE`` 4: broadcasts
  reach it in fragments.
- ``POST /notify/<room>``: the body, broadcast to the room from a plain
  WSGI view (binary if the query string is ``binary``).
- ``POST /flood/<room>?count=N&size=S``: N messages of S bytes, numbered,
  broadcast to the room from the request.
- ``GET /closed``: the close codes that on_close saw, as JSON.

Every plain response says which worker made it (``X-Worker-Pid``).

A broadcast the broker cannot take (``BrokerUnavailable``) answers
``unavailable: ...`` to the WebSocket sender and 503 to the HTTP one.
With ``DUCK_WS_SYNC_BROKER`` set, the same app spans every worker
(test_redis.py); ``pid`` tells which worker serves a connection, and
``?hold`` holds its upgrade request a moment in its WSGI call, so that the
next connections go to the other workers (``held.py``).
"""

import json
import os
import re

from duck_ws_sync import BrokerUnavailable, OpCode, WebSocketMiddleware, WebSocketView, broadcast
from duck_ws_sync.urls import path
from tests.integration.apps.held import held

closed: list = []


class Room(WebSocketView):
    PING_INTERVAL = None
    SEND_TIMEOUT = 3
    CLOSE_TIMEOUT = 2

    async def on_open(self):
        self.join(self.kwargs["room"])
        await self.send_text("joined")

    async def on_receive(self, data, opcode):
        text = data.decode("utf-8") if opcode == OpCode.TEXT else None
        if text == "pid":
            await self.send_text(str(os.getpid()))
        elif text == "leave":
            self.leave(self.kwargs["room"])
            await self.send_text("left")
        elif text is not None and text.startswith("join:"):
            self.join(text[5:])
            await self.send_text("joined " + text[5:])
        else:
            try:
                broadcast(self.kwargs["room"], data if text is None else text, exclude=self)
            except BrokerUnavailable as exc:
                await self.send_text(f"unavailable: {exc}")

    async def on_close(self):
        closed.append(self.close_code)


class SmallFrames(Room):
    MAX_FRAME_SIZE = 4


def plain(environ, start_response):
    try:
        return answer(environ, start_response)
    except BrokerUnavailable as exc:
        start_response("503 Service Unavailable", headers())
        return [f"unavailable: {exc}".encode()]


def headers():
    return [("Content-Type", "text/plain"), ("X-Worker-Pid", str(os.getpid()))]


def answer(environ, start_response):
    route = environ["PATH_INFO"]
    if route == "/closed":
        body = json.dumps(closed).encode()
    elif match := re.fullmatch(r"/notify/(\w+)", route):
        message = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        broadcast(match.group(1), message if environ.get("QUERY_STRING") == "binary" else message.decode("utf-8"))
        body = b"sent"
    elif match := re.fullmatch(r"/flood/(\w+)", route):
        query = dict(part.split("=") for part in environ["QUERY_STRING"].split("&"))
        size = int(query["size"])
        for number in range(int(query["count"])):
            broadcast(match.group(1), f"{number:08d}".encode() + b"x" * (size - 8))
        body = b"sent"
    else:
        start_response("404 Not Found", headers())
        return [b"not found"]
    start_response("200 OK", headers())
    return [body]


app = held(WebSocketMiddleware(plain, [path("/ws/room/<room>", Room), path("/ws/small/<room>", SmallFrames)]))
