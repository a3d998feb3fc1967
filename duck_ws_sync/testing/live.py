"""``serve``: a WSGI application on a live server for the length of a ``with`` block, and ``LiveServer``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import websocket

from .client import WebSocketClient
from .servers import GunicornServer, InProcessServer, listen, load

__all__ = ["LiveServer", "serve"]

logger = logging.getLogger("duck_ws_sync")

# What a connection waits for, at most, in any one call (websocket-client's socket timeout).
DEFAULT_TIMEOUT = 10.0
# How long a server may take to answer after it starts.
START_TIMEOUT = 30.0
# How long stopping may take before a server is given up on (gunicorn: killed).
STOP_TIMEOUT = 20.0
SERVERS = ("thread", "gunicorn")
WORKERS = ("gevent", "gthread")


class LiveServer:
    """A server running an application on 127.0.0.1, made by ``serve``.

    Attributes:
        host: ``127.0.0.1``.
        port: The port it listens on.
        url: ``http://127.0.0.1:PORT``.
    """

    def __init__(self, server: InProcessServer | GunicornServer, host: str, port: int) -> None:
        self._server = server
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self._clients: list[WebSocketClient] = []
        self.stopped = False

    def __repr__(self) -> str:
        return f"<LiveServer {self.url}{' stopped' if self.stopped else ''}>"

    @property
    def output(self) -> str:
        """What a gunicorn server printed (empty for a server in this process, whose log is this process's)."""
        return self._server.output

    @property
    def pid(self) -> int | None:
        """The gunicorn master's process id (None for a server in this process)."""
        return self._server.pid if isinstance(self._server, GunicornServer) else None

    def ws_url(self, path: str = "/") -> str:
        """The ``ws://`` URL of ``path`` on this server."""
        return f"ws://{self.host}:{self.port}/{path.lstrip('/')}"

    def connect(self, path: str = "/", **options: Any) -> WebSocketClient:
        """Open a WebSocket to ``path``: a connected ``WebSocketClient`` (websocket-client's ``WebSocket``).

        ``options`` go to ``websocket.create_connection``: ``header`` (or
        ``headers``), ``subprotocols``, ``origin``, ``cookie``, ``timeout``
        (10 s unless given, so that no test waits forever)... The connection
        is closed when the server stops, if it is still open.
        """
        __tracebackhide__ = True  # a failed handshake is the test's
        if self.stopped:
            raise RuntimeError(f"{self!r}: the server has stopped")
        if "headers" in options:
            options["header"] = options.pop("headers")
        options.setdefault("timeout", DEFAULT_TIMEOUT)
        client = websocket.create_connection(self.ws_url(path), class_=WebSocketClient, **options)
        assert isinstance(client, WebSocketClient)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        """Close every WebSocket with 1001, stop the server and close the connections ``connect`` made.

        Nothing is left behind: the server's thread and hub, or gunicorn's
        processes, and the listening socket are gone when this returns.
        """
        if self.stopped:
            return
        self.stopped = True
        self._server.begin_stop()
        # Our clients answer the server's Close (websocket-client does when it
        # reads it), so the sessions end at once rather than at CLOSE_TIMEOUT.
        for client in self._clients:
            client.finish(timeout=2)
        self._clients.clear()
        if not self._server.wait_stopped(STOP_TIMEOUT):
            logger.warning("%r did not stop within %s s", self, STOP_TIMEOUT)


@contextlib.contextmanager
def serve(
    app: Callable[..., Any] | str,
    server: str = "thread",
    *,
    worker: str = "gevent",
    args: Sequence[str] = (),
    port: int = 0,
    env: dict[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[LiveServer]:
    """Serve ``app`` on 127.0.0.1 for the length of the ``with`` block; yield a ``LiveServer``.

    Args:
        app: A WSGI application, or its import string ``"package.module:app"``.
        server: ``"thread"``: in this process, on a thread with its own
            gevent hub (no monkey patching needed). ``"gunicorn"``: a real
            gunicorn subprocess, one worker; ``app`` must be an import string.
        worker: gunicorn's worker class: ``"gevent"`` or ``"gthread"``.
        args: More gunicorn arguments (``["--threads", "8"]``...).
        port: The port; an ephemeral one by default.
        env: More environment variables for gunicorn.
        timeout: How long the server may take to start.

    Raises:
        RuntimeError: The port cannot be had, or the server did not start
            (gunicorn's output is in the message).
    """
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, not {server!r}")
    if worker not in WORKERS:
        raise ValueError(f"worker must be one of {', '.join(WORKERS)}, not {worker!r}")
    if server == "gunicorn" and not isinstance(app, str):
        raise TypeError("gunicorn imports the application itself: give it as 'package.module:app'")
    application = load(app) if isinstance(app, str) and server == "thread" else app
    listener = listen("127.0.0.1", port)
    bound = listener.getsockname()[1]
    if server == "gunicorn":
        runner: InProcessServer | GunicornServer = GunicornServer(str(app), listener, worker, list(args), env)
    else:
        runner = InProcessServer(application, listener)  # type: ignore[arg-type]
    live = LiveServer(runner, "127.0.0.1", bound)
    try:
        runner.start(timeout)
    except BaseException:
        live.stopped = True
        runner.wait_stopped(5)
        listener.close()
        raise
    try:
        yield live
    finally:
        live.stop()
