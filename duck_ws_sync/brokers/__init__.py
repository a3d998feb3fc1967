"""``broadcast``, ``send_to_user`` and ``presence``: groups and users across every worker attached to the broker.

``configure_broker(url)``, or the environment variable ``DUCK_WS_SYNC_BROKER``
read at first use: unset (or empty) means delivery within this process;
``redis://host:port/db``, ``rediss://...``, ``unix://...``,
``redis+sentinel://...`` or ``redis+cluster://...`` means Redis
(``redis.py``, the ``redis`` extra), so that a broadcast reaches the
members of a group, and ``send_to_user`` a user's connections, in every
worker and on every machine attached to the same Redis, and ``presence``
sees them all. The membership and the delivery to this process's members
are the engine's (``engine/groups.py``), which finds a broker by its URL's
scheme among the package's entry points.
"""

from __future__ import annotations

from typing import Any

from ..engine.groups import Broker, broker, configure, group_topic, user_topic
from ..engine.presence import Member, Presence, UserId, check_user_id
from ..exceptions import BrokerUnavailable

__all__ = [
    "BrokerUnavailable",
    "Member",
    "Presence",
    "broadcast",
    "configure_broker",
    "current",
    "presence",
    "send_to_user",
]


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
    broker().publish(group_topic(group), message, exclude)


def send_to_user(user_id: UserId, message: str | bytes, exclude: Any = None) -> None:
    """Send ``message`` to every open connection of ``user_id`` (a view's ``user_id``), in every worker.

    As ``broadcast`` does, to the user's connections instead of a group's:
    ``str`` goes out as text, ``bytes`` as binary, it returns at once, a
    member too slow to keep up is closed with 1013, and ``exclude`` is a
    view, or views, of this process to skip (the tab that sent it, say).
    42 and "42" are the same user. A user with no open connection gets
    nothing, and it is not an error.

    Raises:
        TypeError: ``user_id`` is not a str or an int.
        BrokerUnavailable: As for ``broadcast``.
    """
    if user_id is None:
        raise TypeError("send_to_user needs a user_id, not None")
    check_user_id(user_id)
    broker().publish(user_topic(user_id), message, exclude)


def presence(group: str) -> Presence:
    """Who is in ``group`` now, in every worker attached to the broker: ``count``, ``users``, ``members``.

    A connection is in it from its view's ``join(group, info)`` until it
    leaves the group or closes. Through Redis, the members of a worker
    that died without cleaning up (SIGKILL, out of memory) stay at most
    ``brokers.redis_presence.EXPIRE_AFTER`` seconds (12).

    Raises:
        BrokerUnavailable: The broker cannot answer now (Redis is down).
    """
    return broker().presence(group_topic(group))
