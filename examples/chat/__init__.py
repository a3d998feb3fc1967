"""A small chat: a page at ``/`` and a WebSocket route at ``/ws/chat`` (``/ws/chat/<room>`` for other rooms).

Every message goes to every other member of the room, with the sender's
name; members are told when someone joins or leaves. Run it and open
http://127.0.0.1:8000/ in two browser tabs:

gunicorn -k gevent -b 127.0.0.1:8000 examples.chat:app
python3 -m examples.chat   # the same app on gevent.pywsgi

A room is a group (``view.join``), and messages go out with
``duck_ws_sync.broadcast``: within the process by default, and across
workers and machines through Redis when ``DUCK_WS_SYNC_BROKER`` says so:

DUCK_WS_SYNC_BROKER=redis://127.0.0.1:6379/0 gunicorn -k gevent -w 4 -b 127.0.0.1:8000 examples.chat:app

Each WebSocket prints one access-log line when it ends (``examples/logs.py``).

Messages from the server are JSON: ``{"type": "system", "text": ...}`` for
welcome, join and leave notices, ``{"type": "chat", "name": ..., "text": ...}``
for what others say.
"""

import json
import secrets
from pathlib import Path

from duck_ws_sync import BrokerUnavailable, OpCode, State, WebSocketMiddleware, WebSocketView, broadcast
from duck_ws_sync.urls import path
from examples.logs import log_connections

PAGE = Path(__file__).with_name("index.html").read_bytes()


class ChatSocket(WebSocketView):
    MAX_MESSAGE_SIZE = 64 * 1024  # a chat line, not a file upload

    async def on_open(self):
        self.room = self.kwargs.get("room", "lobby")
        self.name = f"User {secrets.randbelow(9000) + 1000}"  # workers share no counter
        await self.tell_room({"type": "system", "text": f"{self.name} joined"})
        self.join(self.room)
        await self.send_json({"type": "system", "text": f"👋 Welcome to the chat, {self.name}!"})

    async def on_receive(self, data: bytes, opcode: int):
        if opcode != OpCode.TEXT:
            return
        text = data.decode("utf-8").strip()
        if text:
            await self.tell_room({"type": "chat", "name": self.name, "text": text})

    async def on_close(self):
        await self.tell_room({"type": "system", "text": f"{self.name} left"})

    async def tell_room(self, message):
        """Send ``message`` to every other member of the room, in every worker."""
        try:
            broadcast(self.room, json.dumps(message), exclude=self)
        except BrokerUnavailable:  # Redis is down: say so rather than lose the line silently
            if self.state is State.OPEN:
                await self.send_json({"type": "system", "text": "⚠️ Not delivered: the chat is unavailable."})


def page(environ, start_response):
    """The plain WSGI app behind the WebSocket route: the chat page, and 404 for anything else."""
    if environ["PATH_INFO"] != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))])
    return [PAGE]


log_connections()
app = WebSocketMiddleware(page, [path("/ws/chat", ChatSocket, name="chat"), path("/ws/chat/<room>", ChatSocket)])
