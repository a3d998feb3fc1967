"""The protocol core is free of I/O: importing it loads no networking or concurrency module."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("gevent", "socket", "threading", "selectors", "asyncio", "ssl", "select")


def loaded_modules(imports: str) -> set[str]:
    """The modules a fresh interpreter (this one) has loaded after ``imports``."""
    code = f"import sys, json; {imports}; print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=30)
    return set(json.loads(output.stdout))


def test_protocol_imports_no_io_modules():
    # What the interpreter loads by itself (a .pth file may load threading) is not the core's doing.
    bare = loaded_modules("pass")
    loaded = loaded_modules("import duck_ws_sync.protocol, duck_ws_sync")
    offending = sorted(name for name in loaded - bare if name.split(".")[0] in FORBIDDEN)
    assert "duck_ws_sync.protocol.connection" in loaded
    assert offending == []
