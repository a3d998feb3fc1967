"""A group's presence in Redis: who is there, across workers and machines, and gone when a worker dies.

Two keys per group, with one hash tag so that a cluster keeps them on one
slot (a script may touch only one slot's keys):

- ``duck_ws_sync:{g:<group>}:members``, a hash: connection id -> the JSON
  ``[user_id, info]``;
- ``duck_ws_sync:{g:<group>}:expiry``, a sorted set: connection id -> the
  time (Redis's clock, ms) after which the entry counts as gone.

A worker writes its members' entries when they join, deletes them when
they leave or close, and writes them all again every ``REFRESH_EVERY``
seconds with a new expiry ``EXPIRE_AFTER`` seconds ahead. A worker that
dies without cleaning up (SIGKILL, out of memory) stops refreshing: its
entries expire, and every reader removes the expired ones before it reads
(one script, so a reader never sees an expired entry). Writing every entry
again, rather than only its expiry, also restores a group's presence after
Redis lost it (restarted, failed over to a replica that had not caught up).
Both keys expire with their last entry, so a group that every worker left
without cleaning up leaves nothing behind.

The sorted set makes "who expired" a range query, O(log n + expired),
instead of a scan of every entry; the hash keeps each entry's payload
apart from its score, and one ``HGETALL`` reads a group. Centrifugo keeps a
group's presence the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..engine.presence import Member, Presence

__all__ = ["EXPIRE_AFTER", "REFRESH_EVERY", "PresenceScripts", "decode_members", "decode_reply", "keys"]

# A live worker writes its entries again this often...
REFRESH_EVERY = 4.0
# ...and an entry not written again within this many seconds is gone.
EXPIRE_AFTER = 12.0
# Lua's unpack takes a few thousand values at most: entries go to HSET and ZADD in batches.
_BATCH = 500

# KEYS: members, expiry. ARGV: lifetime (ms), then id, entry, id, entry...
_ENTER = """
local now = redis.call('TIME')
local expiry = now[1] * 1000 + math.floor(now[2] / 1000) + tonumber(ARGV[1])
local fields, scores = {}, {}
for i = 2, #ARGV, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    scores[#scores + 1] = expiry
    scores[#scores + 1] = ARGV[i]
    if #fields >= {batch} or i + 1 >= #ARGV then
        redis.call('HSET', KEYS[1], unpack(fields))
        redis.call('ZADD', KEYS[2], unpack(scores))
        fields, scores = {}, {}
    end
end
local ttl = tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
""".replace("{batch}", str(2 * _BATCH))

# KEYS: members, expiry. ARGV: the ids that leave.
_DEPART = """
redis.call('HDEL', KEYS[1], unpack(ARGV))
redis.call('ZREM', KEYS[2], unpack(ARGV))
return 1
"""

# KEYS: members, expiry. Removes the expired entries, then answers every entry left as one JSON
# array of [id, entry] (one reply to parse rather than two per member; an entry is JSON already,
# and our ids need no escaping: a field that does spoils the array, and ``read`` decodes one by one).
_READ = """
local now = redis.call('TIME')
local limit = now[1] * 1000 + math.floor(now[2] / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', limit)
for i = 1, #gone, {batch} do
    redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + {batch} - 1, #gone)))
end
if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', limit)
end
local flat = redis.call('HGETALL', KEYS[1])
local parts = {}
for i = 1, #flat, 2 do
    parts[#parts + 1] = '["' .. flat[i] .. '",' .. flat[i + 1] .. ']'
end
return '[' .. table.concat(parts, ',') .. ']'
""".replace("{batch}", str(_BATCH))


def keys(topic: str) -> list[str]:
    """The hash and the sorted set of a group's ``topic`` (``engine.groups.group_topic``), on one slot."""
    tag = "{" + topic[0] + ":" + topic[1:] + "}"
    return [f"duck_ws_sync:{tag}:members", f"duck_ws_sync:{tag}:expiry"]


def entries(members: Iterable[Member]) -> list[Any]:
    """The script arguments for ``members``: id, JSON entry, id, JSON entry..."""
    arguments: list[Any] = []
    for member in members:
        arguments.append(member.connection_id)
        arguments.append(json.dumps([member.user_id, member.info], separators=(",", ":")))
    return arguments


def decode_members(entries: Iterable[tuple[bytes, bytes]]) -> Presence:
    """The ``Presence`` of a hash's fields and values: connection id, entry.

    The entries that are not ``[user_id, info]`` (not ours) are left out.
    """
    members = []
    for cid, raw in entries:
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if _well_formed(value):
            members.append(Member(cid.decode("utf-8", "replace"), value[0], value[1]))
    return Presence(tuple(members))


def decode_reply(reply: bytes) -> Presence | None:
    """The ``Presence`` of a ``_READ`` reply, in one ``json.loads``; None if an entry that is not ours spoils it."""
    try:
        pairs = json.loads(reply)
    except ValueError:
        return None
    try:
        if all(_well_formed(entry) for _, entry in pairs):
            return Presence(tuple([Member(cid, entry[0], entry[1]) for cid, entry in pairs]))
    except (TypeError, ValueError):  # not pairs
        pass
    return None


def _well_formed(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and (value[0] is None or (isinstance(value[0], (str, int)) and not isinstance(value[0], bool)))
    )


class PresenceScripts:
    """The three scripts on one Redis client (``redis.Redis`` or ``redis.RedisCluster``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._enter = client.register_script(_ENTER)
        self._depart = client.register_script(_DEPART)
        self._read = client.register_script(_READ)

    def enter(self, topic: str, members: Iterable[Member]) -> None:
        """Write the entries of ``members`` in the group ``topic``, to expire ``EXPIRE_AFTER`` s from now."""
        arguments = entries(members)
        if arguments:
            self._enter(keys=keys(topic), args=[int(EXPIRE_AFTER * 1000), *arguments])

    def depart(self, topic: str, connection_ids: list[str]) -> None:
        """Delete the entries of ``connection_ids`` in the group ``topic``."""
        if connection_ids:
            self._depart(keys=keys(topic), args=connection_ids)

    def read(self, topic: str) -> Presence:
        """The group ``topic``'s entries that have not expired (expired ones are removed).

        Should an entry that is not ours spoil the reply, the hash is read
        again and its entries decoded one by one, the others left out.
        """
        found = decode_reply(self._read(keys=keys(topic)))
        if found is None:
            return decode_members(self._client.hgetall(keys(topic)[0]).items())
        return found
