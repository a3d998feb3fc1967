"""The access log: one line per WebSocket when it ends, on the logger ``duck_ws_sync.access`` at INFO.

A line reads (here folded in two)::

    203.0.113.7:51544 /ws/chat close=1000 by=client duration=12.503s received=3/96B sent=5/310B
    subprotocol=- compression=on

with the client's address and port (the real client's behind a trusted proxy),
the path (never the query string, which may hold a token), the code of
the first Close (1006: TCP ended without one) and who sent it (``client``,
``server``, or ``-`` for neither), how long the WebSocket was open, the
messages and bytes received and sent (bytes of frames on the wire), the
subprotocol and whether permessage-deflate was on. The same values are on
the record as attributes (``extra``) for formatters that emit them, such as
JSON ones: ``client_host``, ``client_port``, ``path``, ``view``,
``close_code``, ``closed_by``, ``duration``, ``messages_received``,
``bytes_received``, ``messages_sent``, ``bytes_sent``, ``subprotocol``,
``compression``.

Nothing is built unless the logger is enabled for INFO.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..protocol import PerMessageDeflate, Side
from .addresses import format_address
from .registry import COUNTS, close_code

if TYPE_CHECKING:
    from .session import Session

__all__ = ["log_session", "logger"]

logger = logging.getLogger("duck_ws_sync.access")

_FORMAT = (
    "%(client)s %(path)s close=%(close_code)s by=%(closed_by)s duration=%(duration).3fs "
    "received=%(messages_received)d/%(bytes_received)dB sent=%(messages_sent)d/%(bytes_sent)dB "
    "subprotocol=%(subprotocol)s compression=%(compression)s"
)
_CLOSED_BY: dict[Side | None, str | None] = {Side.REMOTE: "client", Side.LOCAL: "server", None: None}


def log_session(session: Session, duration: float) -> None:
    """Log the line of ``session``'s connection, which has ended after ``duration`` seconds."""
    if not logger.isEnabledFor(logging.INFO):
        return
    connection = session.connection
    host, port, path = session.where
    endpoint = session.endpoint
    fields: dict[str, Any] = {
        "client_host": host,
        "client_port": port,
        "path": path,
        "view": session.name,
        "close_code": close_code(connection),
        "closed_by": _CLOSED_BY[connection.close_initiator],
        "duration": duration,
        "subprotocol": endpoint.subprotocol,
        "compression": any(isinstance(extension, PerMessageDeflate) for extension in endpoint.extensions),
    }
    for name in COUNTS:
        fields[name] = getattr(connection, name)
    line = dict(fields)
    line["client"] = format_address(host, port)
    line["closed_by"] = fields["closed_by"] or "-"
    line["subprotocol"] = fields["subprotocol"] or "-"
    line["compression"] = "on" if fields["compression"] else "off"
    logger.info(_FORMAT, line, extra=fields)
