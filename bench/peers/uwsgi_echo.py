"""uWSGI's own WebSocket API in gevent mode: ``uwsgi --http-socket ... --gevent N --wsgi-file uwsgi_echo.py``.

uWSGI monkey-patches (``--gevent-early-monkey-patch``) and runs each request
in a greenlet of its own; this app upgrades it with
``uwsgi.websocket_handshake()`` and reads with ``uwsgi.websocket_recv_nb()``,
which answers pings and closes by itself, and pings when it finds nothing to
read (at most every ``--websocket-ping-freq``). That API works on the
current request only, so a connection's own greenlet must send its frames:
it waits on its socket (``uwsgi.connection_fd()``) and on an event that
other connections set when they leave it a broadcast, whichever comes
first, or PING_EVERY seconds.

The message type: ``websocket_recv`` and ``websocket_recv_nb`` return the
payload alone (uWSGI parses the opcode but does not hand it to Python), so
a message that is valid UTF-8 goes back as text (``websocket_send``) and
any other as binary (``websocket_send_binary``). The load generator's
binary messages are random bytes, never valid UTF-8 in practice, so every
echo keeps its type; a binary message that happens to be valid UTF-8 would
come back as text. A text message that begins with ``BCAST:`` goes to every
connection. When it is imported, the module prints ``LISTENING <port>``.
"""

from __future__ import annotations

import collections
import socket
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.event
import uwsgi  # type: ignore[import-not-found]  # uWSGI's embedded module: only under uwsgi

PING_EVERY = 30.0  # uWSGI's --websocket-ping-freq: a silent connection calls recv_nb this often, which pings


class Client:
    """One connection: the broadcasts left for it, and the event that wakes its greenlet."""

    def __init__(self) -> None:
        self.outbox: collections.deque[bytes] = collections.deque()
        self.wakeup = gevent.event.Event()

    def leave(self, message: bytes) -> None:
        """Called from another connection's greenlet: this one sends it."""
        self.outbox.append(message)
        self.wakeup.set()


CLIENTS: set[Client] = set()


def _is_text(message: bytes) -> bool:
    if message.isascii():
        return True
    try:
        message.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _answer(message: bytes) -> None:
    if not _is_text(message):
        uwsgi.websocket_send_binary(message)
    elif message.startswith(b"BCAST:"):
        for client in list(CLIENTS):
            client.leave(message)
    else:
        uwsgi.websocket_send(message)


def _serve(me: Client) -> None:
    """The connection's loop, until the client closes it (``websocket_recv_nb`` raises OSError)."""
    watcher = gevent.get_hub().loop.io(uwsgi.connection_fd(), 1)  # 1: readable
    try:
        while True:
            watcher.start(me.wakeup.set)  # only while waiting: the socket stays readable until we read
            me.wakeup.wait(PING_EVERY)
            watcher.stop()
            me.wakeup.clear()
            while me.outbox:
                uwsgi.websocket_send(me.outbox.popleft())
            # Every whole message uWSGI has buffered: the socket will not wake us for those.
            while message := uwsgi.websocket_recv_nb():
                _answer(message)
    finally:
        watcher.stop()
        watcher.close()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/ws" or "HTTP_SEC_WEBSOCKET_KEY" not in environ:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"WebSocket only\n"]
    uwsgi.websocket_handshake()
    me = Client()
    CLIENTS.add(me)
    try:
        _serve(me)
    except OSError:
        pass  # closed by the client, or the connection failed
    finally:
        CLIENTS.discard(me)
    return []


def _port() -> int:
    with socket.fromfd(uwsgi.sockets[0], socket.AF_INET, socket.SOCK_STREAM) as listener:  # a dup of uWSGI's
        return int(listener.getsockname()[1])


print(f"LISTENING {_port()}", flush=True)
