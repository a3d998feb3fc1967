"""Duck's "Simple Chat App": each text message goes to every other connected client as "User: ...".

The view is Duck's guide code as it stands; only the imports differ. For a
chat with names, join and leave notices and a page to try it in a browser,
see ``examples/chat``. Serve it with either of:

gunicorn -k gevent -b 127.0.0.1:8000 examples.guide_chat:app
python3 -m examples.guide_chat   # gevent.pywsgi on 127.0.0.1:8000

and connect to ws://127.0.0.1:8000/ws/chat.
"""

from duck_ws_sync import OpCode, WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path
from examples.logs import log_connections

connected_clients = set()


class ChatSocket(WebSocketView):
    async def on_open(self):
        connected_clients.add(self)
        await self.send_text("👋 Welcome to the chat!")

    async def on_receive(self, data: bytes, opcode: int):
        if opcode == OpCode.TEXT:
            message = data.decode("utf-8")
            # Broadcast to all connected clients
            for client in connected_clients:
                if client != self:
                    await client.send_text(f"User: {message}")

    async def on_close(self):
        connected_clients.remove(self)


urlpatterns = [path("/ws/chat", ChatSocket, name="chat")]

log_connections()
app = WebSocketMiddleware(None, urlpatterns)


if __name__ == "__main__":
    from gevent.pywsgi import WSGIServer

    WSGIServer(("127.0.0.1", 8000), app).serve_forever()
