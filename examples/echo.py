"""An echo server: every text and binary message comes back as it was sent.

gunicorn -k gevent -b 127.0.0.1:8000 examples.echo:app
python3 -m examples.echo 127.0.0.1 8000   # the same app on gevent.pywsgi
"""

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path
from examples.logs import log_connections


class Echo(WebSocketView):
    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello from plain WSGI\n"]


log_connections()
app = WebSocketMiddleware(hello, [path("/ws/echo", Echo, name="echo")])


if __name__ == "__main__":
    import sys

    from gevent.pywsgi import WSGIServer

    host, port = (sys.argv[1], int(sys.argv[2])) if len(sys.argv) > 2 else ("127.0.0.1", 8000)
    WSGIServer((host, port), app).serve_forever()
