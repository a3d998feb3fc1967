"""Fixtures of the protocol core's tests."""

from __future__ import annotations

import pytest

from duck_ws_sync.protocol import connection, writer


@pytest.fixture(params=["native", "python"])
def frame_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the native parser of whole messages and the connection's shortcuts, then in Python alone."""
    if request.param == "python":
        monkeypatch.setattr(connection, "_native_parse_messages", None)
        monkeypatch.setattr(connection, "_native_receive_message", None)
        monkeypatch.setattr(writer, "_native_text_frame", None)
    return str(request.param)
