"""A failing helper of ``duck_ws_sync.testing`` points at the user's line, not at its own frames.

Each test runs a user's failing test with pytest's ``pytester``, in a
subprocess, and reads its report.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

USER_APP = """
import pytest

from duck_ws_sync import WebSocketMiddleware, WebSocketView
from duck_ws_sync.urls import path


class Echo(WebSocketView):
    PING_INTERVAL = None

    async def on_receive(self, data, opcode):
        if data == b"close":
            await self.send_close(4000, "bye")
        elif data != b"quiet":
            await self.send_text(data.decode())


class Closing(WebSocketView):
    async def on_open(self):
        await self.send_close(4000, "bye")


@pytest.fixture(scope="module")
def ws_app():
    return WebSocketMiddleware(None, [path("/ws", Echo), path("/closing", Closing)])
"""

# The user's failing line, and what pytest says about it.
CASES = {
    "receive": ('ws.send("quiet")\n    ws.receive(timeout=0.2)', "AssertionError: no message from ws://"),
    "receive_json": ('ws.send("not json")\n    ws.receive_json()', "AssertionError: not a JSON message: 'not json'"),
    "expect_close": (
        'ws.send("close")\n    ws.expect_close(1000)',
        "AssertionError: the server closed with 4000 'bye', not 1000",
    ),
    "ping_pong": (
        'ws = ws_connect("/closing")\n    ws.ping_pong()',
        "AssertionError: the server closed the connection (4000 'bye') before its Pong",
    ),
    "send_json": ("ws.send_json(object())", "TypeError: Object of type object is not JSON serializable"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("helper", sorted(CASES))
def test_a_failing_helper_shows_the_users_line_and_none_of_its_own(pytester: pytest.Pytester, helper: str) -> None:
    lines, error = CASES[helper]
    pytester.makepyfile(
        test_user=USER_APP
        + textwrap.dedent("""

        def test_it(ws_connect):
            ws = ws_connect("/ws")
            {lines}
        """).replace("{lines}", lines)
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=90)
    output = result.stdout.str()
    result.assert_outcomes(failed=1)
    assert error in output
    last_line = lines.splitlines()[-1].strip()
    assert f">       {last_line}" in output, output  # the user's line, marked as the failing one
    assert "duck_ws_sync/testing/" not in output, output  # no frame of the helpers


@pytest.mark.timeout(120)
def test_a_failed_handshake_shows_the_users_line_and_none_of_the_connect_helpers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user=USER_APP
        + textwrap.dedent("""

        def test_it(ws_connect):
            ws_connect("/nowhere")
        """)
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=90)
    output = result.stdout.str()
    result.assert_outcomes(failed=1)
    assert "Handshake status 404" in output, output
    assert '>       ws_connect("/nowhere")' in output, output
    assert "duck_ws_sync/testing/" not in output, output
