"""``broadcast``: one message to every member of a group, in every worker attached to the broker.

``configure_broker(url)``, or the environment variable ``DUCK_WS_SYNC_BROKER``
read at first use: unset (or empty) means delivery within this process;
``redis://host:port/db``, ``rediss://...`` or ``unix://...`` means Redis
pub/sub (``redis.py``, the ``redis`` extra), so that a broadcast reaches
the members of a group in every worker and on every machine attached to
the same Redis. The membership and the delivery to this process's members
are the engine's (``engine/groups.py``), which finds a broker by its URL's
scheme among the package's entry points.
"""

from __future__ import annotations

from typing import Any

from ..engine.groups import Broker, broker, configure
from ..exceptions import BrokerUnavailable

__all__ = ["BrokerUnavailable", "broadcast", "configure_broker", "current"]


def configure_broker(url: str | None) -> None:
    """Use the broker at ``url`` (``redis://``, ``rediss://``, ``unix://``), or in-process delivery for None or "".

    Call it before the first broadcast or join, in each process (gunicorn:
    at import of the app, or in a ``post_fork`` hook); it replaces
    ``DUCK_WS_SYNC_BROKER``.

    Raises:
        ValueError: A URL of another scheme.
        ImportError: Redis asked for without the ``redis`` package.
    """
    configure(url)


def current() -> Broker:
    """The broker of this process, made at first use."""
    return broker()


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
    broker().publish(group, message, exclude)
