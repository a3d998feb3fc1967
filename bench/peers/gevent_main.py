"""What the gevent peers share: serve until SIGTERM, after printing ``LISTENING <port>``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import gevent

BACKLOG = 4096  # the listen backlog of every peer that lets us set one
MAX_SIZE = 2 << 20  # the largest message a peer accepts: 1 MiB plus room for the header


def serve(server: Any, on_exit: Callable[[], None] | None = None) -> None:
    """Start ``server`` (a gevent StreamServer or WSGIServer), print its port, serve until SIGTERM or SIGINT."""

    def stop() -> None:
        server.stop(timeout=1)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    server.start()
    print(f"LISTENING {server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        if on_exit is not None:
            on_exit()
