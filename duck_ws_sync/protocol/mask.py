"""Masking and unmasking of frame payloads (RFC 6455 §5.3).

Masking XORs the payload with a 4-byte key, repeated. It runs on every byte a
client sends, so it must not be a Python loop over bytes: the native
``_speedups`` extension does it at memory speed, and the pure-Python fallback
XORs the whole payload as one big integer (still no per-byte loop), which is
what runs where the extension could not be compiled.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["apply_mask", "native_apply_mask", "python_apply_mask"]

MaskFunction = Callable[[bytes | bytearray | memoryview, bytes], bytes]


def python_apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask`` in pure Python.

    Args:
        data: The payload, masked or not (the operation is its own inverse).
        mask: The 4-byte masking key.

    Returns:
        The transformed payload.

    Raises:
        ValueError: If ``mask`` is not 4 bytes long.
    """
    if len(mask) != 4:
        raise ValueError("mask must contain 4 bytes")
    length = len(data)
    if length == 0:
        return b""
    repeated = (mask * (length // 4 + 1))[:length]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(length, "little")


def _load_native() -> MaskFunction | None:
    """Return the compiled ``apply_mask``, or None when it is not built."""
    try:
        speedups = importlib.import_module("duck_ws_sync.protocol._speedups")
    except ImportError:
        return None
    function: MaskFunction = speedups.apply_mask
    return function


native_apply_mask = _load_native()

#: The masking function in use: native when available.
apply_mask: MaskFunction = native_apply_mask or python_apply_mask

#: Which implementation ``apply_mask`` is: ``"native"`` or ``"python"``.
IMPLEMENTATION = "native" if native_apply_mask is not None else "python"
