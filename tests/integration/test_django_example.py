"""examples/django_project as a newcomer uses it: sign up, log in, chat; served by gunicorn -k gevent.

The example's own ``wsgi.py`` is served as it is, with its SQLite database
in a temporary directory (``CHAT_SQLITE_PATH``): the first start creates
it. A browser is played by ``urllib`` (cookies, the CSRF token of the
forms) and ``websocket-client`` (the chat page's WebSocket, with the
session cookie).
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from tests.integration.conftest import ROOT, Server, serve

pytest.importorskip("django")

APP = "examples.django_project.wsgi:application"
TIMEOUT = 10
PASSWORD = "a long pass phrase 42"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("django_example") / "db.sqlite3"


@pytest.fixture(scope="module")
def server(database: Path) -> Iterator[Server]:
    with serve("gunicorn", APP, env={"CHAT_SQLITE_PATH": str(database)}) as running:
        yield running


class Browser:
    """Cookies kept between requests, redirects followed, as a browser does."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[str, str]:
        """The page at ``path`` after redirects: its path and its HTML."""
        with self.opener.open(self.url(path), timeout=TIMEOUT) as response:
            return urllib.parse.urlsplit(response.url).path, response.read().decode()

    def submit(self, path: str, fields: dict[str, str]) -> tuple[str, str]:
        """Fill in the form of the page at ``path`` and post it, with the CSRF token it holds."""
        _, page = self.get(path)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **fields}).encode()
        with self.opener.open(self.url(path), data=body, timeout=TIMEOUT) as response:
            return urllib.parse.urlsplit(response.url).path, response.read().decode()

    def session_cookie(self) -> str:
        (session,) = [cookie.value for cookie in self.cookies if cookie.name == "sessionid"]
        return f"sessionid={session}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


def sign_up(server: Server, username: str) -> Browser:
    browser = Browser(server)
    fields = {"username": username, "password1": PASSWORD, "password2": PASSWORD}
    landed, page = browser.submit("/signup/", fields)
    assert landed == "/", page  # logged in, on the chat page
    assert f"{username} ·" in page
    return browser


def log_in(server: Server, username: str) -> Browser:
    browser = Browser(server)
    landed, page = browser.submit("/login/?next=/", {"username": username, "password": PASSWORD, "next": "/"})
    assert landed == "/", page
    return browser


def connect(server: Server, browser: Browser | None = None) -> websocket.WebSocket:
    cookie = browser.session_cookie() if browser is not None else None
    return websocket.create_connection(server.url("/ws/chat"), timeout=TIMEOUT, cookie=cookie)


def receive(ws: websocket.WebSocket) -> dict[str, object]:
    return json.loads(ws.recv())


def lines(messages: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(message["name"], message["text"]) for message in messages]


def test_two_users_sign_up_chat_and_a_new_connection_gets_the_last_20_lines_in_order(server, database):
    alice = sign_up(server, "alice")
    bob = sign_up(server, "bob")
    assert database.exists()

    first = connect(server, alice)
    try:
        assert receive(first) == {"type": "system", "text": "Welcome, alice!"}  # a new chat: no history
        first.send("hello")
        first.send("is anyone <b>here</b>?")
        said = [receive(first), receive(first)]  # stored, then broadcast to the room, sender included
        assert lines(said) == [("alice", "hello"), ("alice", "is anyone <b>here</b>?")]
        assert said[0]["type"] == "chat" and said[0]["id"] < said[1]["id"]

        second = connect(server, bob)
        try:
            assert [receive(second), receive(second)] == said  # replayed from the database, in order
            assert receive(second) == {"type": "system", "text": "Welcome, bob!"}
            assert receive(first) == {"type": "system", "text": "bob joined"}
            second.send("hi alice")
            assert lines([receive(first)]) == lines([receive(second)]) == [("bob", "hi alice")]
            for number in range(22):
                first.send(f"line {number}")
            for ws in (first, second):
                assert lines([receive(ws) for _ in range(22)]) == [("alice", f"line {n}") for n in range(22)]
        finally:
            second.close()
        assert receive(first) == {"type": "system", "text": "bob left"}
    finally:
        first.close()

    # Alice again, through the login form: the last 20 of the 25 lines, oldest first.
    again = connect(server, log_in(server, "alice"))
    try:
        replayed = [receive(again) for _ in range(20)]
        expected = [("bob", "hi alice")] + [("alice", f"line {n}") for n in range(22)]
        assert lines(replayed) == expected[-20:]
        assert receive(again) == {"type": "system", "text": "Welcome, alice!"}
    finally:
        again.close()
    assert "Traceback" not in server.log()


def test_an_anonymous_upgrade_gets_401(server):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server)
    assert refused.value.status_code == 401
    assert b"Log in first" in refused.value.resp_body
    with pytest.raises(websocket.WebSocketBadStatusException) as forged:
        websocket.create_connection(server.url("/ws/chat"), timeout=TIMEOUT, cookie="sessionid=not-a-session")
    assert forged.value.status_code == 401


def test_the_chat_page_sends_an_anonymous_browser_to_the_login_form(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 302
        assert response.headers["Location"] == "/login/?next=/"
    finally:
        connection.close()
    landed, page = Browser(server).get("/")
    assert landed == "/login/"
    assert 'name="password"' in page and 'href="/signup/"' in page


def test_workers_starting_together_create_the_database_once(tmp_path):
    """Three processes load the application at once on a new database: one creates it, none fails."""
    database = tmp_path / "db.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHAT_SQLITE_PATH": str(database)}
    load = "import examples.django_project.wsgi"
    workers = [
        subprocess.Popen([sys.executable, "-c", load], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = []
    for worker in workers:
        _, stderr = worker.communicate(timeout=60)
        outputs.append((worker.returncode, stderr))
    assert [code for code, _ in outputs] == [0, 0, 0], outputs
    assert sum(stderr.count("Created the database") for _, stderr in outputs) == 1, outputs
