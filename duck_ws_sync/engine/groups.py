"""Groups of connections, each user's connections, and one message to all of them in this process.

Membership is by topic: a group's (``group_topic``: ``WebSocketView.join``
and ``leave``) or a user's (``user_topic``: every connection whose view
set ``user_id``). A session leaves its topics when it ends. ``deliver``
hands a message to each member's outbox (``outbox.py``) and returns: the
one who broadcasts only appends or writes what the member's socket takes
at once. A group's members carry their presence ``info``
(``presence.py``).

A topic's messages from other processes come through the broker
(``broker()``): the first member of a topic here subscribes this process
to it, the last one to leave unsubscribes; joining and leaving a group
also enter and leave its presence there. Which broker is configuration:
``configure(url)`` (``duck_ws_sync.configure_broker``), or the environment
variable ``DUCK_WS_SYNC_BROKER`` read at first use. Unset or empty means
delivery within this process (``LocalBroker``); any other URL names a broker
by its scheme, found among the package's entry points
(``duck_ws_sync.brokers`` in setup.cfg: ``redis://``, ``rediss://``,
``unix://``, ``redis+sentinel://`` and ``redis+cluster://`` are
``duck_ws_sync.brokers.redis``). A package of its own can add a broker the
same way.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import OpCode, State
from ..protocol.frames import serialize_header
from .outbox import Outbox
from .presence import Member, Presence, UserId, connection_id

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "GROUP",
    "USER",
    "Broker",
    "LocalBroker",
    "broker",
    "configure",
    "deliver",
    "group_topic",
    "has_members",
    "identify",
    "join",
    "leave",
    "leave_all",
    "member",
    "members",
    "present",
    "present_everywhere",
    "start",
    "user_topic",
]

ENVIRONMENT_VARIABLE = "DUCK_WS_SYNC_BROKER"
# The entry point group where brokers are found by their URL's scheme.
ENTRY_POINTS = "duck_ws_sync.brokers"
# A topic is its kind, one character, then the group's name or the user's id.
GROUP, USER = "g", "u"

# Joins, leaves and deliveries may come from several threads; nothing waits while holding it.
_lock = threading.Lock()
_topics: dict[str, set[Session]] = {}
# A session's ``groups`` once it has left them all for good (``leave_all``): joins after that are no-ops,
# whatever thread makes them and whenever (an ``on_close`` that joins, a join racing the end).
_ENDED: dict[str, Any] = {}


def group_topic(group: str) -> str:
    """The topic of the group named ``group``."""
    return GROUP + group


def user_topic(user_id: UserId) -> str:
    """The topic of the user ``user_id``: its connections, whatever worker serves them (42 and "42" are one)."""
    return USER + str(user_id)


class Broker(Protocol):
    """What carries a topic's messages to every process with members, and keeps the groups' presence.

    ``broadcast`` and ``send_to_user`` publish through it; ``presence``
    reads it.
    """

    def publish(self, topic: str, message: str | bytes, exclude: Any) -> None: ...
    def subscribe(self, topic: str) -> None: ...
    def unsubscribe(self, topic: str) -> None: ...
    def enter(self, topic: str, member: Member) -> None: ...
    def depart(self, topic: str, connection_id: str) -> None: ...
    def presence(self, topic: str) -> Presence: ...


class LocalBroker:
    """Delivery within this process: no service, no subscription; presence is this process's members."""

    def publish(self, topic: str, message: str | bytes, exclude: Any) -> None:
        deliver(topic, message, exclude)

    def subscribe(self, topic: str) -> None:
        pass

    def unsubscribe(self, topic: str) -> None:
        pass

    def enter(self, topic: str, member: Member) -> None:
        pass

    def depart(self, topic: str, connection_id: str) -> None:
        pass

    def presence(self, topic: str) -> Presence:
        return Presence(tuple(present(topic)))


# Membership.


def join(session: Session, topic: str, info: Any = None) -> None:
    """Make ``session`` a member of ``topic``, with presence ``info`` for a group (a no-op once it has ended).

    Before the session runs (a join in ``authorize``), it is only recorded:
    the session joins when it starts (``start``), and a refused one never does.
    """
    if session.state is State.CLOSED:
        return
    if session.loop is None:
        if session.groups is None:
            session.groups = {}
        session.groups[topic] = info
        return
    with _lock:
        if session.groups is _ENDED:
            return
        topic_members = _topics.get(topic)
        first = topic_members is None
        if topic_members is None:
            topic_members = _topics[topic] = set()
        topic_members.add(session)
        if session.groups is None:
            session.groups = {}
        session.groups[topic] = info
    found = broker()
    if first:  # the broker delivers the topic's messages to this process from now on
        found.subscribe(topic)
    if topic[0] == GROUP:
        found.enter(topic, member(session, info))


def start(session: Session) -> None:
    """``session`` runs: it joins its user's topic and the groups it joined before it ran."""
    recorded, session.groups = session.groups, None
    if session.user_id is not None:
        join(session, user_topic(session.user_id))
    for topic, info in (recorded or {}).items():
        join(session, topic, info)


def leave(session: Session, topic: str) -> None:
    """``session`` is no longer a member of ``topic``."""
    with _lock:
        was_member = session.groups is not None and topic in session.groups
        emptied = _leave(session, topic)
    _left(session, [topic] if was_member else [], [topic] if emptied else [])


def leave_all(session: Session) -> None:
    """``session`` leaves every topic, for good: it has ended, and joins no more."""
    with _lock:
        topics = list(session.groups or ())
        emptied = [topic for topic in topics if _leave(session, topic)]
        session.groups = _ENDED
    _left(session, topics, emptied)


def identify(session: Session, user_id: UserId | None) -> None:
    """``session``'s connection is ``user_id``'s from now on (None: nobody's), for ``send_to_user`` and presence.

    Before the session runs, it only records it: the session becomes a
    member of the user's topic when it starts (``start``).
    """
    old, session.user_id = session.user_id, user_id
    if session.loop is None or session.state is State.CLOSED:
        return
    if old is not None and (user_id is None or user_topic(old) != user_topic(user_id)):
        leave(session, user_topic(old))
    if user_id is not None:
        join(session, user_topic(user_id))
    found = broker()
    for topic, info in list((session.groups or {}).items()):
        if topic[0] == GROUP:  # its presence names the user now
            found.enter(topic, member(session, info))


def _leave(session: Session, topic: str) -> bool:
    """Take ``session`` out of ``topic`` (the caller holds the lock); True when that left it without members here."""
    topic_members = _topics.get(topic)
    emptied = False
    if topic_members is not None:
        topic_members.discard(session)
        if not topic_members:
            del _topics[topic]
            emptied = True
    if session.groups is not None and session.groups is not _ENDED:
        session.groups.pop(topic, None)
    return emptied


def _left(session: Session, topics: list[str], emptied: list[str]) -> None:
    """Tell the broker: ``session`` left ``topics``, and ``emptied`` have no members here any more."""
    if not topics:
        return
    found = broker()
    for topic in topics:
        if topic[0] == GROUP:
            found.depart(topic, connection_id(session))
    for topic in emptied:
        found.unsubscribe(topic)


def has_members(topic: str) -> bool:
    """Whether ``topic`` has members in this process."""
    return topic in _topics


def members(topic: str) -> list[Session]:
    """The members of ``topic`` in this process."""
    with _lock:
        return list(_topics.get(topic, ()))


def member(session: Session, info: Any) -> Member:
    """``session`` as a member of a group's presence, with ``info``."""
    return Member(connection_id(session), session.user_id, info)


def present(topic: str) -> list[Member]:
    """The members of the group ``topic`` in this process, with their info."""
    with _lock:
        return [member(session, (session.groups or {}).get(topic)) for session in _topics.get(topic, ())]


def present_everywhere() -> dict[str, list[Member]]:
    """Every group with members in this process, and its members with their info (what a broker refreshes)."""
    with _lock:
        return {
            topic: [member(session, (session.groups or {}).get(topic)) for session in sessions]
            for topic, sessions in _topics.items()
            if topic[0] == GROUP
        }


def deliver(topic: str, message: str | bytes, exclude: Any = None) -> int:
    """Queue ``message`` (``str``: text, ``bytes``: binary) for every member of ``topic`` here but ``exclude``.

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
    frame = serialize_header(opcode, len(data)) + data  # for every member that takes it as it is
    queued = 0
    for session in members(topic):
        if session not in skipped and (session.outbox or _outbox(session)).push(data, opcode, frame):
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
