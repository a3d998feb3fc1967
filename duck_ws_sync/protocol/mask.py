"""Masking and unmasking of frame payloads (RFC 6455 §5.3).

Masking XORs the payload with a 4-byte key, repeated. It runs on every byte a
client sends, so it must not be a Python loop over bytes: the native
``_speedups`` extension does it at memory speed, and the pure-Python fallback
XORs the whole payload as one big integer (still no per-byte loop), which is
what runs where the extension could not be compiled.
"""

from __future__ import annotations

from collections.abc import Callable

from .native import speedups

__all__ = ["apply_mask", "native_apply_mask", "python_apply_mask", "python_unmask_into", "unmask_into"]

MaskFunction = Callable[[bytes | bytearray | memoryview, bytes], bytes]
UnmaskIntoFunction = Callable[[bytearray, int, bytes | bytearray | memoryview, bytes], None]


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


def python_unmask_into(target: bytearray, position: int, data: bytes | bytearray | memoryview, mask: bytes) -> None:
    """Write ``data`` unmasked into ``target[position:]``, growing ``target`` if needed.

    ``position`` is where ``data`` starts in its frame's payload, which sets
    where in the 4-byte ``mask`` unmasking starts.
    """
    if not 0 <= position <= len(target):
        raise ValueError("position out of range")
    phase = position % 4
    target[position : position + len(data)] = python_apply_mask(data, mask[phase:] + mask[:phase])


native_apply_mask: MaskFunction | None = getattr(speedups, "apply_mask", None)
native_unmask_into: UnmaskIntoFunction | None = getattr(speedups, "unmask_into", None)

#: The masking function in use: native when available.
apply_mask: MaskFunction = native_apply_mask or python_apply_mask
#: Unmasking into a frame's payload buffer: native when available.
unmask_into: UnmaskIntoFunction = native_unmask_into or python_unmask_into

#: Which implementation ``apply_mask`` is: ``"native"`` or ``"python"``.
IMPLEMENTATION = "native" if native_apply_mask is not None else "python"
