"""gevent-websocket 0.10's ``WebSocketHandler`` on gevent.pywsgi, as shipped (it sets no TCP_NODELAY).

Text comes back as text and binary as binary (``receive()`` gives ``str`` or
``bytearray``, ``send()`` picks the opcode from the type); a text message that
begins with ``BCAST:`` goes to every connection. Prints ``LISTENING <port>``.
"""

# ruff: noqa: E402
from gevent import monkey

monkey.patch_all()

import contextlib
from typing import Any

from gevent.pywsgi import WSGIServer
from gevent_main import BACKLOG, serve
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import WebSocketHandler

CLIENTS: set[Any] = set()


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"WebSocket only\n"]
    CLIENTS.add(ws)
    try:
        while (message := ws.receive()) is not None:
            if isinstance(message, str) and message.startswith("BCAST:"):
                for client in list(CLIENTS):
                    with contextlib.suppress(WebSocketError, OSError):
                        client.send(message)
            else:
                ws.send(message)
    except (WebSocketError, OSError):
        pass
    finally:
        CLIENTS.discard(ws)
    return []


if __name__ == "__main__":
    serve(WSGIServer(("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None, backlog=BACKLOG))
