"""Flask-Sock (simple-websocket) for ``gunicorn -k gevent -w 1 flask_sock_app:app``, as shipped.

Text comes back as text and binary as binary (``receive()`` gives ``str`` or
``bytes``, ``send()`` picks the opcode from the type); a text message that
begins with ``BCAST:`` goes to every connection. No heartbeat: Flask-Sock
pings only when ``SOCK_SERVER_OPTIONS`` asks for it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from flask import Flask
from flask_sock import ConnectionClosed, Sock

app = Flask(__name__)
sock = Sock(app)

CLIENTS: set[Any] = set()


@sock.route("/ws")
def echo(ws: Any) -> None:
    CLIENTS.add(ws)
    try:
        while True:
            message = ws.receive()
            if isinstance(message, str) and message.startswith("BCAST:"):
                for client in list(CLIENTS):
                    with contextlib.suppress(ConnectionClosed, OSError):
                        client.send(message)
            else:
                ws.send(message)
    finally:
        CLIENTS.discard(ws)
