"""``duck_ws_sync.presence()`` through Redis: how long one call takes for a group of 1,000 and of 10,000 members.

The group's entries are written as workers write them (the broker's own
script, 500 entries a batch), one user and a name per member; then
``presence()`` is called through a ``RedisBroker`` of the checkout under
test, as an HTTP view would, ``calls`` times in a row. The median and the
slowest call are reported, with the time Redis spent in the script (from
``INFO commandstats``) apart from the client's decoding.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

SIZES = (1_000, 10_000)


def measure(root: Path, url: str, calls: int = 20, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """``{size: {"median_ms", "max_ms", "redis_us_per_call"}}`` for groups of each size, on the Redis at ``url``."""
    sys.path.insert(0, str(root))  # the checkout under test (--root)
    import redis

    from duck_ws_sync.brokers.redis import RedisBroker
    from duck_ws_sync.brokers.redis_presence import PresenceScripts
    from duck_ws_sync.engine.groups import group_topic
    from duck_ws_sync.engine.presence import Member

    client = redis.Redis.from_url(url)
    broker = RedisBroker(url)
    results: dict[str, Any] = {}
    try:
        for size in sizes:
            topic = group_topic(f"presence-{size}")
            members = [
                Member(f"0123456789abcdef-{index:x}", f"user-{index}", {"name": f"User {index}"})
                for index in range(size)
            ]
            PresenceScripts(client).enter(topic, members)
            assert broker.presence(topic).count == size  # and the script is loaded
            client.config_resetstat()
            seconds = []
            for _ in range(calls):
                started = time.perf_counter()
                found = broker.presence(topic)
                seconds.append(time.perf_counter() - started)
                assert found.count == size
            commands = client.info("commandstats").items()
            redis_us = sum(stats["usec"] for name, stats in commands if name.startswith("cmdstat_evalsha"))
            results[str(size)] = {
                "median_ms": round(1000 * statistics.median(seconds), 2),
                "max_ms": round(1000 * max(seconds), 2),
                "redis_us_per_call": round(redis_us / calls),
            }
            client.delete(*(f"duck_ws_sync:{{g:presence-{size}}}:{part}" for part in ("members", "expiry")))
    finally:
        broker.close()
        client.close()
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        "presence() through Redis, one call (median of 20, the slowest, and Redis's own time per call):",
        "",
        "| members | median, ms | slowest, ms | in Redis, ms |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for size, cell in results.items():
        in_redis = cell["redis_us_per_call"] / 1000
        lines.append(f"| {int(size):,} | {cell['median_ms']:.2f} | {cell['max_ms']:.2f} | {in_redis:.2f} |")
    return "\n".join(lines)
