"""Testing WebSocket endpoints: a live server and websocket-client connections to it.

``serve(app)`` runs a WSGI application on 127.0.0.1 and an ephemeral port
for the length of a ``with`` block, in this process (``server="thread"``)
or under a real gunicorn (``server="gunicorn"``), and yields a
``LiveServer``, whose ``connect(path)`` opens a ``WebSocketClient``::

    from duck_ws_sync.testing import serve

    with serve(app) as server:
        ws = server.connect("/ws")
        ws.send("hi")
        assert ws.receive() == "You sent hi"

The pytest plugin (``plugin.py``, loaded by pytest when this package is
installed) gives the fixtures ``ws_live_server`` and ``ws_connect`` for
the application a test module's ``ws_app`` fixture returns.
"""

from .client import WebSocketClient
from .live import LiveServer, serve

__all__ = ["LiveServer", "WebSocketClient", "serve"]
