"""Fixtures of the protocol core's tests."""

from __future__ import annotations

import pytest

from duck_ws_sync.protocol import connection


@pytest.fixture(params=["native", "python"])
def frame_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the native parser of whole messages, then with the Python parser alone."""
    if request.param == "python":
        monkeypatch.setattr(connection, "_native_parse_messages", None)
    return str(request.param)
