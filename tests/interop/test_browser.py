"""The chat example's page in headless Chromium, used as a person would.

Two tabs join the chat and talk: one user, as the page's cookie makes them,
shown once in the online line; a message over the chat's 64 KiB limit makes
the server close with 1009 and a reason, which the page's ``onclose`` shows.
The binary ``ArrayBuffer`` round trip and the other client checks run in
``test_clients.py`` from a page of the same app. A screenshot of the chat is
saved under ``build/interop/``.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from tests.integration.conftest import Server
from tests.interop.clients import browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "interop"
TEXT, MESSAGES, ONLINE = "#text", "#messages li", "#online"

pytestmark = pytest.mark.timeout(120)


def join(url: str, timeout: int = 15_000) -> int:
    """Open the chat page at ``url``; return the page once its form is enabled (the socket is open)."""
    page = browser().call("openPage", url=url)
    browser().call("waitEnabled", page=page, selector=TEXT, timeout=timeout)
    return page


def say(page: int, text: str) -> None:
    browser().call("type", page=page, selector=TEXT, text=text)


def wait_for(page: int, text: str) -> None:
    browser().call("waitText", page=page, selector=MESSAGES, text=text, timeout=15_000)


def messages(page: int) -> list[str]:
    return browser().call("texts", page=page, selector=MESSAGES)


def test_two_tabs_chat_and_the_page_shows_the_servers_close(server: Server) -> None:
    first, second = join(server.url("/", "http")), join(server.url("/", "http"))
    try:
        wait_for(first, "joined")  # the second tab's arrival, announced to the first
        # Both tabs are the same user (the cookie the page set): told so, and online once.
        wait_for(first, "You joined #lobby in another tab")
        (welcome,) = [line for line in messages(first) if line.startswith("👋 Welcome to the chat, ")]
        name = welcome.removeprefix("👋 Welcome to the chat, ").removesuffix("!")
        for page in (first, second):
            browser().call("waitText", page=page, selector=ONLINE, text=f"1 online: {name}", timeout=15_000)
            assert browser().call("texts", page=page, selector=ONLINE) == [f"1 online: {name}"]
        say(first, "Hello from the first tab ✓")
        wait_for(second, ": Hello from the first tab ✓")
        say(second, "And hello back 🦆")
        wait_for(first, ": And hello back 🦆")
        first_lines, second_lines = messages(first), messages(second)
        assert "You: Hello from the first tab ✓" in first_lines
        assert any(line.startswith("User ") and line.endswith(": And hello back 🦆") for line in first_lines)
        assert "You: And hello back 🦆" in second_lines
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = Path(browser().call("screenshot", page=first, path=str(ARTIFACTS / f"chat-{server.kind}.png")))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", shot.read_bytes()[16:24])
        assert (width, height) >= (800, 300)

        # Over the chat's MAX_MESSAGE_SIZE (64 KiB): the server closes with 1009 and says why.
        say(second, "x" * (70 * 1024))
        wait_for(second, "Disconnected (1009: message")
        (closed,) = [line for line in messages(second) if line.startswith("Disconnected")]
        # Chromium compresses, so the limit is met while inflating.
        reason = "message inflates beyond the limit of 65536 bytes"
        assert closed == f"Disconnected (1009: {reason}). Reload the page to join again."
        wait_for(first, "left")
        assert browser().call("errors", page=first) == []
        assert browser().call("errors", page=second) == []
    finally:
        browser().call("closePage", page=first)
        browser().call("closePage", page=second)


def test_a_broken_page_script_fails_the_check(server: Server) -> None:
    # The same steps on the chat page with a typo in its script: the form is never enabled.
    with pytest.raises(RuntimeError, match="Timeout"):
        join(server.url("/interop/broken", "http"), timeout=2_000)


def test_a_server_that_is_down_fails_the_check() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RuntimeError, match="ERR_CONNECTION_REFUSED"):
        join(f"http://127.0.0.1:{port}/")
