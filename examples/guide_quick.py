"""Duck's "Quick Example": text messages come back as "You sent ...", binary ones are ignored.

The view is Duck's guide code as it stands; only the imports differ.
Serve it with either of:

gunicorn -k gevent -b 127.0.0.1:8000 examples.guide_quick:app
python3 -m examples.guide_quick   # gevent.pywsgi on 127.0.0.1:8000

and connect to ws://127.0.0.1:8000/ws/myws.
"""

from duck_ws_sync import OpCode, WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path
from examples.logs import log_connections


class MyWebSocket(WebSocketView):
    async def on_open(self):
        print("WebSocket connection established")

    async def on_receive(self, data: bytes, opcode: int):
        if opcode == OpCode.TEXT:
            message = "You sent " + data.decode("utf-8")
            await self.send_text(message)
        else:
            # Handle binary frames here
            pass


# Register your WebSocket route
urlpatterns = [
    path("/ws/myws", MyWebSocket, name="mywebsocket"),
    # other patterns here.
]

log_connections()
app = WebSocketMiddleware(None, urlpatterns)


if __name__ == "__main__":
    from gevent.pywsgi import WSGIServer

    WSGIServer(("127.0.0.1", 8000), app).serve_forever()
