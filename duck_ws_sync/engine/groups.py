"""Groups of connections, and one message to all of a group's members in this process.

``WebSocketView.join(group)`` and ``leave(group)`` keep the membership
here; a session leaves its groups when it ends. ``deliver`` hands a
message to each member's outbox (``outbox.py``) and returns: the one who
broadcasts only appends or writes what the member's socket takes at once.

A group's messages from other processes come through the broker
(``broker()``): the first member of a group here subscribes this process
to it, the last one to leave unsubscribes. Which broker is configuration:
``configure(url)`` (``duck_ws_sync.configure_broker``), or the environment
variable ``DUCK_WS_SYNC_BROKER`` read at first use. Unset or empty means
delivery within this process (``LocalBroker``); any other URL names a broker
by its scheme, found among the package's entry points
(``duck_ws_sync.brokers`` in setup.cfg: ``redis://``, ``rediss://`` and
``unix://`` are ``duck_ws_sync.brokers.redis``). A package of its own can
add a broker the same way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import OpCode, State
from .outbox import Outbox

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "Broker",
    "LocalBroker",
    "broker",
    "configure",
    "deliver",
    "has_members",
    "join",
    "leave",
    "leave_all",
    "members",
]

ENVIRONMENT_VARIABLE = "DUCK_WS_SYNC_BROKER"
# The entry point group where brokers are found by their URL's scheme.
ENTRY_POINTS = "duck_ws_sync.brokers"

# Joins, leaves and deliveries may come from several threads; nothing waits while holding it.
_lock = threading.Lock()
_groups: dict[str, set[Session]] = {}


class Broker(Protocol):
    """What carries a group's messages to every process with members: ``broadcast`` publishes through it."""

    def publish(self, group: str, message: str | bytes, exclude: Any) -> None: ...
    def subscribe(self, group: str) -> None: ...
    def unsubscribe(self, group: str) -> None: ...


class LocalBroker:
    """Delivery within this process: no service, no subscription."""

    def publish(self, group: str, message: str | bytes, exclude: Any) -> None:
        deliver(group, message, exclude)

    def subscribe(self, group: str) -> None:
        pass

    def unsubscribe(self, group: str) -> None:
        pass


# Membership.


def join(session: Session, group: str) -> None:
    """Make ``session`` a member of ``group`` (a no-op once its connection has ended)."""
    if session.state is State.CLOSED:
        return
    with _lock:
        group_members = _groups.get(group)
        first = group_members is None
        if group_members is None:
            group_members = _groups[group] = set()
        group_members.add(session)
        if session.groups is None:
            session.groups = set()
        session.groups.add(group)
    if first:  # the broker delivers the group's messages to this process from now on
        broker().subscribe(group)


def leave(session: Session, group: str) -> None:
    """``session`` is no longer a member of ``group``."""
    with _lock:
        emptied = _leave(session, group)
    if emptied:
        broker().unsubscribe(group)


def leave_all(session: Session) -> None:
    """``session`` leaves every group (it has ended)."""
    with _lock:
        emptied = [group for group in list(session.groups or ()) if _leave(session, group)]
    for group in emptied:
        broker().unsubscribe(group)


def _leave(session: Session, group: str) -> bool:
    """Take ``session`` out of ``group``; True when that left the group without members here."""
    group_members = _groups.get(group)
    emptied = False
    if group_members is not None:
        group_members.discard(session)
        if not group_members:
            del _groups[group]
            emptied = True
    if session.groups is not None:
        session.groups.discard(group)
    return emptied


def has_members(group: str) -> bool:
    """Whether ``group`` has members in this process."""
    return group in _groups


def members(group: str) -> list[Session]:
    """The members of ``group`` in this process."""
    with _lock:
        return list(_groups.get(group, ()))


def deliver(group: str, message: str | bytes, exclude: Any = None) -> int:
    """Queue ``message`` (``str``: text, ``bytes``: binary) for every member of ``group`` here but ``exclude``.

    ``exclude``: a view or session, or several, of this process.

    Returns:
        How many members it was queued for.
    """
    if isinstance(message, str):
        data, opcode = message.encode("utf-8"), OpCode.TEXT
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data, opcode = bytes(message), OpCode.BINARY
    else:
        raise TypeError(f"a broadcast is str (text) or bytes (binary), not {type(message).__name__}")
    skipped = _excluded(exclude)
    queued = 0
    for member in members(group):
        if member not in skipped and _outbox(member).push(data, opcode):
            queued += 1
    return queued


def _excluded(exclude: Any) -> set[Any]:
    """The sessions of ``exclude``: views stand for their sessions."""
    if exclude is None:
        return set()
    if isinstance(exclude, Iterable):
        return {getattr(item, "session", item) for item in exclude}
    return {getattr(exclude, "session", exclude)}


def _outbox(session: Session) -> Outbox:
    outbox: Outbox | None = session.outbox
    if outbox is None:
        with _lock:
            outbox = session.outbox
            if outbox is None:
                outbox = session.outbox = Outbox(session)
    return outbox


# The broker.

_broker_lock = threading.Lock()
_configured: str | None = None  # the URL given to configure ("" for in-process)
_broker: Broker | None = None
_broker_pid = 0  # a broker is not inherited across fork (gunicorn --preload)


def configure(url: str | None) -> None:
    """Use the broker at ``url``, or in-process delivery for None or "" (``duck_ws_sync.configure_broker``).

    Raises:
        ValueError: A URL whose scheme names no broker.
    """
    global _configured, _broker  # noqa: PLW0603 (one broker per process)
    _factory(url or "")
    with _broker_lock:
        old, _broker = _broker, None
        _configured = url or ""
    close = getattr(old, "close", None)
    if close is not None:
        close()


def broker() -> Broker:
    """The broker of this process, made at first use."""
    global _broker, _broker_pid
    found = _broker
    if found is not None and _broker_pid == os.getpid():
        return found
    with _broker_lock:
        if _broker is None or _broker_pid != os.getpid():
            url = _configured if _configured is not None else os.environ.get(ENVIRONMENT_VARIABLE, "")
            factory = _factory(url)
            _broker, _broker_pid = (LocalBroker() if factory is None else factory(url)), os.getpid()
        return _broker


def _factory(url: str) -> Any:
    """The broker class for ``url`` (None: in-process); ValueError for a scheme no broker has."""
    if not url:
        return None
    scheme = url.partition("://")[0] if "://" in url else ""
    found = entry_points(group=ENTRY_POINTS, name=scheme) if scheme else ()
    for entry_point in found:
        return entry_point.load()
    known = sorted(entry_point.name for entry_point in entry_points(group=ENTRY_POINTS))
    schemes = ", ".join(f"{name}://" for name in known) or "none (is duck-ws-sync installed?)"
    raise ValueError(f"a broker URL is one of {schemes}, not {url!r}")
