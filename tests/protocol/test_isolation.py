"""The protocol core is free of I/O: importing it loads no networking or concurrency module."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("gevent", "socket", "threading", "selectors", "asyncio", "ssl", "select")


def test_protocol_imports_no_io_modules():
    code = "import sys, json; import duck_ws_sync.protocol, duck_ws_sync;print(json.dumps(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=30)
    loaded = json.loads(output.stdout)
    offending = [name for name in loaded if name.split(".")[0] in FORBIDDEN]
    assert "duck_ws_sync.protocol.connection" in loaded
    assert offending == []
