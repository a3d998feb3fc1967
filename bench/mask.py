"""Unmasking throughput for a 1 MiB payload: ours next to Duck's approach, in one run.

Duck's ``apply_mask`` XORs with a per-byte generator expression; it is
reproduced here as ``duck_per_byte`` so both are timed on the same machine in
the same process. Usage: ``python bench/mask.py [--seconds 1.0]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from duck_ws_sync.protocol import mask

SIZE = 1 << 20


def duck_per_byte(data: bytes, key: bytes) -> bytes:
    """Duck's approach: one Python-level XOR per byte."""
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(data))


def throughput(function: Callable[[bytes, bytes], bytes], data: bytes, key: bytes, seconds: float) -> float:
    """Bytes per second over repeated calls lasting at least ``seconds`` (and at least 3 calls)."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while calls < 3 or time.perf_counter() < deadline:
        function(data, key)
        calls += 1
    return calls * len(data) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time spent on each implementation")
    arguments = parser.parse_args()
    data, key = os.urandom(SIZE), os.urandom(4)
    candidates: list[tuple[str, Callable[[bytes, bytes], bytes]]] = [
        (f"duck_ws_sync apply_mask ({mask.IMPLEMENTATION})", mask.apply_mask),
        ("duck_ws_sync pure-Python fallback", mask.python_apply_mask),
        ("Duck per-byte generator", duck_per_byte),
    ]
    reference = duck_per_byte(data, key)
    print(f"unmasking {SIZE} bytes")
    results = {}
    for name, function in candidates:
        assert function(data, key) == reference, name
        results[name] = throughput(function, data, key, arguments.seconds)
    baseline = results["Duck per-byte generator"]
    for name, rate in results.items():
        print(f"  {name:<42} {rate / 1e9:9.3f} GB/s  {rate / baseline:9.1f}x Duck")


if __name__ == "__main__":
    main()
