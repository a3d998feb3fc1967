"""The compiled helpers of the protocol core, when they are built.

``_speedups`` (``_speedups.c``) holds the byte-level work: masking, and
parsing the common frames straight into messages. Every helper has a Python
equivalent that runs where the extension could not be compiled.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["load", "speedups"]


def load() -> ModuleType | None:
    """Return the compiled ``_speedups`` module, or None when it is not built."""
    try:
        return importlib.import_module("duck_ws_sync.protocol._speedups")
    except ImportError:
        return None


#: The compiled module, or None.
speedups = load()
