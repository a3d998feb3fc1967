"""Raw gevent TCP echo: no WebSocket work at all, the ceiling of any gevent-based server.

A gevent ``StreamServer`` (TCP_NODELAY on every connection) sends back each
chunk it reads; a chunk that begins with ``BCAST:`` goes to every connection
instead. ``python bench/peers/raw_tcp.py`` prints ``LISTENING <port>``.
"""

# ruff: noqa: E402
from gevent import monkey

monkey.patch_all()

import contextlib
import socket
from typing import Any

from gevent.server import StreamServer
from gevent_main import BACKLOG, serve

CLIENTS: set[socket.socket] = set()


def handle(sock: socket.socket, address: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    CLIENTS.add(sock)
    try:
        while data := sock.recv(65536):
            if data.startswith(b"BCAST:"):
                for client in list(CLIENTS):
                    with contextlib.suppress(OSError):
                        client.sendall(data)
            else:
                sock.sendall(data)
    except OSError:
        pass
    finally:
        CLIENTS.discard(sock)


if __name__ == "__main__":
    serve(StreamServer(("127.0.0.1", 0), handle, backlog=BACKLOG))
