"""``stats_app``: a WSGI endpoint for a health route, with this process's ``stats()``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .engine.registry import stats
from .hosts.takeover import gunicorn_worker

__all__ = ["stats", "stats_app"]


def stats_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI endpoint for a health route: this process's ``stats()`` as JSON.

    ``200 OK`` while the process serves; ``503 Service Unavailable`` once
    its gunicorn worker is stopping (SIGTERM, a reload, ``--max-requests``),
    so that a load balancer stops sending it new connections. Any path and
    method; ``HEAD`` gets the headers only.
    """
    worker = gunicorn_worker()
    stopping = worker is not None and not worker.alive
    snapshot = stats()
    snapshot["status"] = "stopping" if stopping else "ok"
    body = json.dumps(snapshot).encode()
    status = "503 Service Unavailable" if stopping else "200 OK"
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
