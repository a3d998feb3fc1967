"""Where ``broadcast`` sends: to this process's members, or through a broker to every worker's.

``configure_broker(url)``, or the environment variable ``DUCK_WS_SYNC_BROKER``
read at first use: unset (or empty) means delivery within this process;
``redis://host:port/db`` or ``rediss://...`` means Redis pub/sub
(``redis_broker.py``, the ``redis`` extra), so that a broadcast reaches
the members of a group in every worker and on every machine attached to
the same Redis.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

from . import fanout
from .exceptions import BrokerUnavailable

__all__ = ["BrokerUnavailable", "broadcast", "configure_broker", "current"]

ENVIRONMENT_VARIABLE = "DUCK_WS_SYNC_BROKER"


class Broker(Protocol):
    def publish(self, group: str, message: str | bytes, exclude: Any) -> None: ...
    def subscribe(self, group: str) -> None: ...
    def unsubscribe(self, group: str) -> None: ...


class LocalBroker:
    """Delivery within this process: no service, no subscription."""

    def publish(self, group: str, message: str | bytes, exclude: Any) -> None:
        fanout.deliver(group, message, exclude)

    def subscribe(self, group: str) -> None:
        pass

    def unsubscribe(self, group: str) -> None:
        pass


_lock = threading.Lock()
_configured: str | None = None  # the URL given to configure_broker ("" for in-process)
_broker: Broker | None = None
_broker_pid = 0  # a broker is not inherited across fork (gunicorn --preload)


def configure_broker(url: str | None) -> None:
    """Use the broker at ``url`` (``redis://``, ``rediss://``), or in-process delivery for None or "".

    Call it before the first broadcast or join, in each process (gunicorn:
    at import of the app, or in a ``post_fork`` hook); it replaces
    ``DUCK_WS_SYNC_BROKER``.

    Raises:
        ValueError: A URL of another scheme.
        ImportError: Redis asked for without the ``redis`` package.
    """
    global _configured, _broker  # noqa: PLW0603 (one broker per process)
    _check(url or "")
    with _lock:
        old, _broker = _broker, None
        _configured = url or ""
    _close(old)


def current() -> Broker:
    """The broker of this process, made at first use."""
    global _broker, _broker_pid
    broker = _broker
    if broker is not None and _broker_pid == os.getpid():
        return broker
    with _lock:
        if _broker is None or _broker_pid != os.getpid():
            url = _configured if _configured is not None else os.environ.get(ENVIRONMENT_VARIABLE, "")
            _broker, _broker_pid = _make(url), os.getpid()
        return _broker


def broadcast(group: str, message: str | bytes, exclude: Any = None) -> None:
    """Send ``message`` to every member of ``group``, in every worker attached to the broker.

    ``str`` goes out as text, ``bytes`` as binary. Callable from anywhere: a
    hook, another greenlet or thread, a plain WSGI view, a script. It
    returns at once (it never waits on a member's socket): each member's
    own loop writes the message, in the order of the broadcasts. ``exclude``
    is a view, or views, of this process to skip (the sender, say).

    Raises:
        BrokerUnavailable: The broker cannot take the message now (Redis
            is down); nobody got it. Raised at once while an outage is
            known, else within the broker's socket timeout (1 s).
    """
    current().publish(group, message, exclude)


def _check(url: str) -> None:
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"a broker URL is redis://, rediss:// or unix://, not {url!r}")


def _make(url: str) -> Broker:
    _check(url)
    if not url:
        return LocalBroker()
    from .redis_broker import RedisBroker  # noqa: PLC0415 (the redis extra, when asked for)

    return RedisBroker(url)


def _close(broker: Broker | None) -> None:
    close = getattr(broker, "close", None)
    if close is not None:
        close()
