"""A Django project outside this repository, served by gunicorn through ``duck_ws_sync.django.wsgi_application``.

The project (``django_site/``, copied to a temporary directory) has Django's
sessions and authentication, a model, an HTTP view and WebSocket routes in
``websocket_urlpatterns`` next to its ``urlpatterns``: the same chat written
with plain ``def`` hooks and with ``async def`` hooks.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websocket

from tests.integration.conftest import ROOT, Server, serve

pytest.importorskip("django")

SITE = Path(__file__).resolve().parent / "django_site"
APP = "mysite.wsgi:application"
TIMEOUT = 15


@dataclass
class Site:
    directory: Path
    env: dict[str, str]
    session_cookie: str

    def manage(self, *arguments: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *arguments],
            cwd=self.directory,
            env={**os.environ, **self.env},
            capture_output=True,
            check=False,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


LOGIN = """
from django.contrib.auth.models import User
from django.test import Client
if not User.objects.filter(username="alice").exists():
    User.objects.create_user("alice", password="wonderland")
client = Client()
assert client.login(username="alice", password="wonderland")
print(client.cookies["sessionid"].value)
"""


def make_site(directory: Path, env: dict[str, str] | None = None) -> Site:
    """Copy the project to ``directory``, create its tables, a user, and a logged-in session."""
    shutil.copytree(SITE, directory)
    site = Site(directory, {"PYTHONPATH": f"{directory}{os.pathsep}{ROOT}", **(env or {})}, "")
    site.manage("migrate", "-v", "0")
    site.session_cookie = "sessionid=" + site.manage("shell", "-c", LOGIN).strip().splitlines()[-1]
    return site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("django") / "site")


@pytest.fixture(scope="module", params=["gunicorn", "gthread"])
def server(request: pytest.FixtureRequest, site: Site) -> Iterator[Server]:
    """The site under gunicorn -k gevent -w 2, then -k gthread -w 2."""
    with serve(request.param, APP, "-w", "2", env=site.env) as running:
        yield running


def connect(server: Server, path: str, **options) -> websocket.WebSocket:
    return websocket.create_connection(server.url(path), timeout=TIMEOUT, **options)


def count(server: Server, kind: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/count/{kind}", timeout=TIMEOUT) as response:
        assert response.status == 200
        return json.loads(response.read())["count"]


@pytest.mark.parametrize("route", ["/ws/sync", "/ws/async"])
def test_an_anonymous_upgrade_gets_the_401_of_authorize(server, route):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server, route)
    assert refused.value.status_code == 401
    assert b"Log in first" in refused.value.resp_body
    with pytest.raises(websocket.WebSocketBadStatusException) as forged:
        connect(server, route, cookie="sessionid=not-a-session")
    assert forged.value.status_code == 401


@pytest.mark.parametrize("route", ["/ws/sync", "/ws/async"])
def test_a_logged_in_session_opens_and_on_open_sees_the_user(server, site, route):
    ws = connect(server, route, cookie=site.session_cookie)
    try:
        assert ws.recv() == "hello alice"
    finally:
        ws.close()


@pytest.mark.parametrize(("route", "kind"), [("/ws/sync", "sync"), ("/ws/async", "async")])
def test_twenty_clients_store_five_messages_each_through_the_orm(server, site, route, kind):
    before = count(server, kind)

    def chat(client: int) -> list[str]:
        ws = connect(server, route, cookie=site.session_cookie)
        try:
            assert ws.recv() == "hello alice"
            replies = []
            for number in range(5):
                ws.send(f"message {number} of client {client}")
                replies.append(ws.recv())
            return replies
        finally:
            ws.close()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(chat, range(20)))
    assert replies == [["stored"] * 5] * 20
    assert count(server, kind) == before + 100
    assert "Traceback" not in server.log()


def test_djangos_http_views_still_answer(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/count/sync", timeout=TIMEOUT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.read())["user"] == ""
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/nowhere", timeout=TIMEOUT)
    assert missing.value.code == 404


def test_a_foreign_origin_gets_403_and_one_in_csrf_trusted_origins_opens(server, site):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server, "/ws/sync", cookie=site.session_cookie, origin="https://evil.example")
    assert refused.value.status_code == 403
    for origin in ("https://trusted.example", f"http://127.0.0.1:{server.port}"):
        ws = connect(server, "/ws/sync", cookie=site.session_cookie, origin=origin)
        try:
            assert ws.recv() == "hello alice"
        finally:
            ws.close()


def test_a_host_outside_allowed_hosts_gets_400(server, site):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server, "/ws/sync", cookie=site.session_cookie, host="evil.example")
    assert refused.value.status_code == 400
    assert b"evil.example" in refused.value.resp_body


# PostgreSQL: an open WebSocket holds no database connection between its hooks.

IDLE = 200


@pytest.fixture(scope="module")
def postgres() -> Iterator[object]:
    from tests.integration.postgres_service import PostgresService, find_program

    if find_program("initdb") is None:
        pytest.fail("PostgreSQL is missing: tests/setup.sh installs it (Debian package postgresql)")
    service = PostgresService()
    service.start()
    try:
        yield service
    finally:
        service.stop()


def held_after_the_hooks(postgres):
    """The site's connections once the last hooks have returned: a hook sends its answer before its guard
    closes the connection, so a client may read the answer while the hook still holds one; they settle
    within a moment (1 s here), or stay (200 without the guard)."""
    deadline = time.monotonic() + 1
    while (held := postgres.connections_to("site")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


@pytest.mark.parametrize("kind", ["gunicorn", "gthread"])
def test_idle_websockets_hold_no_postgres_connection(tmp_path, postgres, kind):
    """200 WebSockets, each with a query in on_open and one per message: idle, they hold no connection."""
    site = make_site(tmp_path / "site", {"POSTGRES_PORT": str(postgres.port)})
    threads = ["--threads", str(IDLE + 80)] if kind == "gthread" else []
    with serve(kind, APP, *threads, env=site.env) as server:
        clients = []
        try:
            for _ in range(IDLE):
                ws = connect(server, "/ws/idle")
                assert ws.recv().isdigit()  # on_open read the database
                clients.append(ws)
            assert held_after_the_hooks(postgres) == 0
            for ws in clients:
                ws.send("count")
            for ws in clients:
                assert ws.recv().isdigit()
            assert held_after_the_hooks(postgres) == 0
            # The same hooks through Django's async ORM hold none either.
            chat = connect(server, "/ws/async", cookie=site.session_cookie)
            try:
                assert chat.recv() == "hello alice"
                chat.send("stored in postgres")
                assert chat.recv() == "stored"
                assert held_after_the_hooks(postgres) == 0
            finally:
                chat.close()
        finally:
            for ws in clients:
                ws.close()
        assert "Traceback" not in server.log()
