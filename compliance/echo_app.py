"""The echo app the Autobahn|Testsuite fuzzing client runs against (see compliance/README.md).

    gunicorn -k gevent -b 127.0.0.1:8000 compliance.echo_app:app    # route: /ws/echo

It is ``examples/echo.py`` with settings for the suite:

- limits that let every case of groups 9.x through: 16 MiB messages in a
  single frame (9.1.6, 9.2.6), 16 MiB messages in 64-byte fragments (9.3.x,
  9.4.x); both limits are 32 MiB, and our own echoes are sent in frames of up
  to that size;
- permessage-deflate on, with the library's default settings (groups 12, 13);
- no heartbeat pings: a Ping of ours in the middle of a case would be an
  event the fuzzer did not expect. Every other timeout keeps its default.

``DUCK_WS_COMPLIANCE_LOG_LEVEL`` (default ``INFO``) sets the level of the
``duck_ws_sync`` logger, which writes to stderr (the runner's server.log).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.protocol import PerMessageDeflate
from duck_ws_sync.urls import path

MiB = 1024 * 1024


class AutobahnEcho(WebSocketView):
    MAX_FRAME_SIZE = 32 * MiB
    MAX_MESSAGE_SIZE = 32 * MiB
    COMPRESSION = PerMessageDeflate()
    PING_INTERVAL = None

    async def on_receive(self, data: bytes, opcode: int) -> None:
        await self.send(data, opcode)


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Plain HTTP on every other path: the runner polls it to know the server is up."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"duck_ws_sync compliance echo server\n"]


def _configure_logging() -> None:
    level = os.environ.get("DUCK_WS_COMPLIANCE_LOG_LEVEL", "INFO").upper()
    logger = logging.getLogger("duck_ws_sync")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)


_configure_logging()

app = WebSocketMiddleware(hello, [path("/ws/echo", AutobahnEcho, name="echo")])
