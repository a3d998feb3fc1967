"""Which host serves a connection, from what the takeover of the server's socket found.

The hosts are known by name (``Found.host``) and each is imported when
first used, so that a thread-per-connection server never loads gevent.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Host

__all__ = ["HOSTS", "host"]


def _gevent() -> Host:
    from .gevent.sessions import HOST  # noqa: PLC0415 (gevent only where it serves)

    return HOST


def _threads() -> Host:
    from .threads.sessions import HOST  # noqa: PLC0415

    return HOST


#: Each host by its name (``takeover.GEVENT``, ``takeover.THREADS``).
HOSTS: dict[str, Callable[[], Host]] = {"gevent": _gevent, "threads": _threads}


def host(name: str) -> Host:
    """The host called ``name``."""
    return HOSTS[name]()
