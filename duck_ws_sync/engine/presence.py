"""Who is connected: a group's ``Presence``, its ``Member``s, and the ids that name connections and users.

A connection is in a group's presence from ``join(group, info)`` until it
leaves the group or ends. The broker keeps it where every worker can read
it (``groups.Broker.presence``): in this process for the in-process broker,
in Redis for Redis (``brokers/redis_presence.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .session import Session

__all__ = ["MAX_INFO", "Member", "Presence", "UserId", "check_info", "check_user_id", "connection_id", "process_id"]

UserId = str | int
# The largest presence info, as JSON: presence is read whole, so each entry stays small.
MAX_INFO = 4096

_process: tuple[int, str] = (0, "")


class Member(NamedTuple):
    """One connection in a group: its id (unique across workers and machines), its user, its ``info``.

    A named tuple: a presence of 10,000 members makes 10,000 of them.
    """

    connection_id: str
    user_id: UserId | None
    info: Any = None


@dataclass(frozen=True, slots=True)
class Presence:
    """Who is in a group, across every worker attached to the broker."""

    members: tuple[Member, ...] = ()

    @property
    def count(self) -> int:
        """How many connections are in the group."""
        return len(self.members)

    @property
    def users(self) -> frozenset[UserId]:
        """The distinct ``user_id`` values of the members (connections without one are not counted)."""
        return frozenset(member.user_id for member in self.members if member.user_id is not None)


def check_user_id(user_id: object) -> None:
    """Raise TypeError unless ``user_id`` is a str, an int (not a bool) or None."""
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, (str, int))):
        raise TypeError(f"a user_id is a str or an int, not {type(user_id).__name__}")


def check_info(info: object) -> None:
    """Raise unless ``info`` is JSON-serializable (TypeError) and at most ``MAX_INFO`` bytes of it (ValueError)."""
    size = len(json.dumps(info, separators=(",", ":")).encode("utf-8"))
    if size > MAX_INFO:
        raise ValueError(f"a presence info is at most {MAX_INFO} bytes of JSON, not {size}")


def process_id() -> str:
    """This process's id: 16 random hex digits, new in each forked worker."""
    global _process  # noqa: PLW0603 (one per process)
    pid, token = _process
    if pid != os.getpid():
        pid, token = _process = os.getpid(), os.urandom(8).hex()
    return token


def connection_id(session: Session) -> str:
    """The id of ``session``'s connection in every presence: this process's id and the session's."""
    return f"{process_id()}-{id(session):x}"
