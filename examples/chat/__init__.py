"""A small chat: a page at ``/`` and a WebSocket route at ``/ws/chat``.

Every message goes to every other client, with the sender's name; clients
are told when someone joins or leaves. Run it and open http://127.0.0.1:8000/
in two browser tabs:

gunicorn -k gevent -b 127.0.0.1:8000 examples.chat:app
python3 -m examples.chat   # the same app on gevent.pywsgi

Messages from the server are JSON: ``{"type": "system", "text": ...}`` for
welcome, join and leave notices, ``{"type": "chat", "name": ..., "text": ...}``
for what others say.
"""

import itertools
from pathlib import Path

from duck_ws_sync import OpCode, WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path

PAGE = Path(__file__).with_name("index.html").read_bytes()

clients = set()
user_numbers = itertools.count(1)


class ChatSocket(WebSocketView):
    MAX_MESSAGE_SIZE = 64 * 1024  # a chat line, not a file upload

    async def on_open(self):
        self.name = f"User {next(user_numbers)}"
        await self.broadcast({"type": "system", "text": f"{self.name} joined"})
        clients.add(self)
        await self.send_json({"type": "system", "text": f"👋 Welcome to the chat, {self.name}! {len(clients)} online."})

    async def on_receive(self, data: bytes, opcode: int):
        if opcode != OpCode.TEXT:
            return
        text = data.decode("utf-8").strip()
        if text:
            await self.broadcast({"type": "chat", "name": self.name, "text": text})

    async def on_close(self):
        clients.discard(self)
        await self.broadcast({"type": "system", "text": f"{self.name} left"})

    async def broadcast(self, message):
        """Send ``message`` to every client but this one."""
        # A copy: a send may wait for a slow client, and others join and leave meanwhile.
        for client in list(clients):
            if client is not self:
                await client.send_json(message)


def page(environ, start_response):
    """The plain WSGI app behind the WebSocket route: the chat page, and 404 for anything else."""
    if environ["PATH_INFO"] != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))])
    return [PAGE]


app = WebSocketMiddleware(page, [path("/ws/chat", ChatSocket, name="chat")])
