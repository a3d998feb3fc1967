"""The examples' access log: one line on stderr per WebSocket, when it ends.

``log_connections()``, called by each example at import, gives the logger
``duck_ws_sync.access`` a handler, unless logging is configured already
(a handler on that logger or above it, the root logger's included): then
the app's own configuration decides, and nothing is changed. Calling it
again, as a second import of an example does, adds nothing.
"""

import logging

FORMAT = "%(asctime)s [%(process)d] [ACCESS] %(message)s"


def log_connections() -> None:
    """Print ``duck_ws_sync.access``'s lines on stderr, when nothing else handles them."""
    logger = logging.getLogger("duck_ws_sync.access")
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT, "[%Y-%m-%d %H:%M:%S %z]"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
