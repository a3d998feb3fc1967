"""Thread-per-connection servers: gunicorn's gthread worker and werkzeug's threaded server.

Each WebSocket is served in an OS thread of its own (gthread) or in its
request's thread (werkzeug, and gthread over TLS), with nothing
patched by gevent (``apps/threads_app.py``). The view suites
(test_views, test_shim, test_host, test_load, test_examples) run under
these servers too; here is what only they must show: blocking code in one
view holds up only its connection, sends from any thread never interleave,
open WebSockets leave gthread's threads to plain HTTP (over TLS, where a
session keeps its request's thread, the connection budget keeps some), and
a stopping worker closes every WebSocket with 1001. And what the connection's thread, waiting
in ``poll`` on its own socket, must get right: work from another thread
wakes it (a coroutine run on its loop, a Close whose closing deadline must
then come on time), a WebSocket costs its socket and one eventfd, no epoll
descriptor, and TLS bursts are read whole.
"""

from __future__ import annotations

import collections
import concurrent.futures
import http.client
import os
import re
import signal
import ssl
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websocket

from tests.helpers import TEXT, frame
from tests.integration.conftest import Server, serve
from tests.integration.wire import RawClient

APP = "tests.integration.apps.threads_app:app"
BUDGET_APP = "tests.integration.apps.threads_app:budget_app"
TIMEOUT = 10
MiB = 1024 * 1024


@pytest.fixture(scope="module", params=["gthread", "werkzeug"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(request.param, APP) as running:
        yield running


def connect(server: Server, path: str, timeout: float = TIMEOUT) -> websocket.WebSocket:
    return websocket.create_connection(server.url(path), timeout=timeout)


def get(server: Server, path: str = "/plain", timeout: float = TIMEOUT) -> tuple[int, bytes, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()


def each_still_echoes(clients: list[websocket.WebSocket]) -> None:
    for index, ws in enumerate(clients):
        ws.send(f"still {index}")
        assert ws.recv() == f"still {index}"


def close_code(ws: websocket.WebSocket) -> int:
    """Read until the server's Close frame; its code."""
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big")


def test_blocking_sleep_in_one_view_holds_up_only_its_connection(server: Server) -> None:
    sleeper, other = connect(server, "/ws/sleepy"), connect(server, "/ws/echo")
    try:
        started = time.monotonic()
        sleeper.send("sleep")  # a real time.sleep(2) in on_receive, in that connection's thread
        round_trips = []
        for number in range(200):
            sent_at = time.monotonic()
            other.send(f"echo {number}")
            assert other.recv() == f"echo {number}"
            round_trips.append(time.monotonic() - sent_at)
        assert time.monotonic() - started < 2, "the echoes waited for the sleeping view"
        p99 = statistics.quantiles(round_trips, n=100)[98]
        assert p99 < 0.05, f"p99 {p99 * 1000:.1f} ms"
        assert sleeper.recv() == "slept"
        assert time.monotonic() - started >= 2
    finally:
        sleeper.close()
        other.close()


def test_threads_broadcasting_1_mib_messages_through_one_connection_never_interleave(server: Server) -> None:
    ws = connect(server, "/ws/blast", timeout=30)
    try:
        ws.send(f"blast 10 {MiB}")
        seen = set()
        for _ in range(10):
            message = ws.recv()
            assert isinstance(message, bytes) and len(message) == MiB
            assert message == bytes([message[0]]) * MiB, "frames of two messages interleaved"
            seen.add(message[0])
        assert seen == set(range(10))
        assert ws.recv() == "done"
    finally:
        ws.close()


def test_sends_from_another_connections_thread_and_from_a_plain_http_request(server: Server) -> None:
    members = [connect(server, "/ws/room") for _ in range(3)]
    try:
        for member in members:
            assert member.recv() == "joined"
        members[0].send("from member 0")  # sent by member 0's thread to the others
        assert [member.recv() for member in members[1:]] == ["from member 0"] * 2
        assert server.post("/notify", b"from an HTTP POST") == b"3"  # sent by the POST's thread
        assert [member.recv() for member in members] == ["from an HTTP POST"] * 3
    finally:
        for member in members:
            member.close()


def test_200_sequential_sessions_then_a_plain_get(server: Server) -> None:
    for number in range(200):
        ws = connect(server, "/ws/echo")
        ws.send(f"session {number}")
        assert ws.recv() == f"session {number}"
        ws.close()
    assert get(server)[:2] == (200, b"plain")


def test_300_concurrent_connections_each_echo_5_messages() -> None:
    with serve("gthread", APP, "--threads", "400") as own:
        clients = []
        try:
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                clients = list(pool.map(lambda _: connect(own, "/ws/echo", timeout=30), range(300)))

                def echo_five(indexed: tuple[int, websocket.WebSocket]) -> int:
                    index, ws = indexed
                    for number in range(5):
                        ws.send(f"{index}:{number}")
                        assert ws.recv() == f"{index}:{number}"
                    return 5

                assert sum(pool.map(echo_five, enumerate(clients))) == 1500
            assert get(own)[:2] == (200, b"plain")
        finally:
            for ws in clients:
                ws.close()


def test_the_budget_refuses_upgrades_beyond_it_and_keeps_threads_for_http() -> None:
    with serve("gthread", BUDGET_APP, "--threads", "8") as own:
        held = [connect(own, "/ws/echo") for _ in range(6)]
        try:
            for _ in range(6):
                with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                    connect(own, "/ws/echo")
                assert refused.value.status_code == 503
                assert refused.value.resp_headers["retry-after"] == "5"
                assert b"Too many WebSocket connections" in refused.value.resp_body
            for _ in range(5):
                started = time.monotonic()
                assert get(own, timeout=1)[:2] == (200, b"plain")
                assert time.monotonic() - started < 1
            each_still_echoes(held)
        finally:
            for ws in held:
                ws.close()
        assert re.search(r"WebSocket refused with 503: 6 open", own.log()), own.log()


def test_open_websockets_hold_none_of_gthreads_threads() -> None:
    # Each session runs in a thread of its own: the worker's two threads stay for HTTP.
    with serve("gthread", APP, "--threads", "2") as own:
        held: list[websocket.WebSocket] = []
        try:
            for index in range(30):
                held.append(connect(own, "/ws/echo"))
                started = time.monotonic()
                assert get(own, timeout=2)[:2] == (200, b"plain")
                assert time.monotonic() - started < 1, f"with {index + 1} open"
            each_still_echoes(held)
        finally:
            for ws in held:
                ws.close()


def test_over_tls_the_default_budget_keeps_a_quarter_of_gthreads_threads_for_http(
    certificates: tuple[Path, Path, Path],
) -> None:
    # A TLS socket cannot leave the server's object: its session holds the request's thread.
    ca_file, cert_file, key_file = certificates
    with serve("gthread", APP, "--threads", "4", "--certfile", str(cert_file), "--keyfile", str(key_file)) as own:

        def connect_tls() -> websocket.WebSocket:
            url = own.url("/ws/echo", scheme="wss")
            return websocket.create_connection(url, timeout=TIMEOUT, sslopt={"ca_certs": str(ca_file)})

        held: list[websocket.WebSocket] = []
        try:
            for _ in range(3):
                held.append(connect_tls())
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                connect_tls()
            assert refused.value.status_code == 503
            context = ssl.create_default_context(cafile=str(ca_file))
            connection = http.client.HTTPSConnection("127.0.0.1", own.port, timeout=2, context=context)
            try:
                connection.request("GET", "/plain")
                response = connection.getresponse()
                assert (response.status, response.read()) == (200, b"plain")
            finally:
                connection.close()
        finally:
            for ws in held:
                ws.close()


def test_sigterm_closes_every_websocket_with_1001_and_the_master_exits_in_time() -> None:
    with serve("gthread", APP, "--threads", "32", "--graceful-timeout", "10") as own:
        clients = [connect(own, f"/ws/echo?print=c{index}") for index in range(20)]
        try:
            for index, ws in enumerate(clients):
                ws.send(f"hello {index}")
                assert ws.recv() == f"hello {index}"
            started = time.monotonic()
            own.process.send_signal(signal.SIGTERM)
            codes = [close_code(ws) for ws in clients]
            for ws in clients:
                ws.send_close(1001)
            own.process.wait(15)
            assert time.monotonic() - started < 10, "the master waited for the graceful timeout"
        finally:
            for ws in clients:
                ws.close(timeout=1)
        assert codes == [1001] * 20
        deadline = time.monotonic() + 5
        while own.log().count("ON_CLOSE") < 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # the output pipe is read by another thread
        for index in range(20):
            assert own.log().count(f"ON_CLOSE c{index} ") == 1, own.log()


def test_a_reload_closes_the_old_workers_websockets_with_1001() -> None:
    """SIGHUP: the master starts new workers and stops the old ones (SIGTERM), whose WebSockets get 1001."""
    with serve("gthread", APP, "--threads", "8") as own:
        clients = [connect(own, f"/ws/echo?print=h{index}") for index in range(3)]
        try:
            own.process.send_signal(signal.SIGHUP)
            assert [close_code(ws) for ws in clients] == [1001] * 3
        finally:
            for ws in clients:
                ws.close(timeout=1)
        fresh = connect(own, "/ws/echo")  # a new worker serves
        try:
            fresh.send("after the reload")
            assert fresh.recv() == "after the reload"
        finally:
            fresh.close()


def test_a_max_requests_recycle_closes_websockets_with_1001() -> None:
    with serve("gthread", APP, "--threads", "8", "--max-requests", "4") as own:
        clients = [connect(own, f"/ws/echo?print=r{index}") for index in range(2)]
        try:
            for _ in range(2):  # the worker's third and fourth requests: it stops after the fourth
                get(own)
            assert [close_code(ws) for ws in clients] == [1001, 1001]
        finally:
            for ws in clients:
                ws.close(timeout=1)
        deadline = time.monotonic() + 10
        while own.log().count("ON_CLOSE r") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # on_close ran once each.
        assert own.log().count("ON_CLOSE r0 ") == 1 and own.log().count("ON_CLOSE r1 ") == 1, own.log()
        assert get(own)[:2] == (200, b"plain")  # the new worker answers


def test_the_budget_works_on_gevent_and_a_closed_websocket_frees_its_place() -> None:
    with serve("gunicorn", BUDGET_APP) as own:
        held = [connect(own, "/ws/echo") for _ in range(6)]
        try:
            with pytest.raises(websocket.WebSocketBadStatusException) as refused:
                connect(own, "/ws/echo")
            assert refused.value.status_code == 503
            assert refused.value.resp_headers["retry-after"] == "5"
            held.pop().close()
            deadline = time.monotonic() + 5
            while True:  # the closed session gives its place back when its on_close has run
                try:
                    held.append(connect(own, "/ws/echo"))
                    break
                except websocket.WebSocketBadStatusException:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            held[-1].send("the seventh")
            assert held[-1].recv() == "the seventh"
        finally:
            for ws in held:
                ws.close()


def test_werkzeug_serving_one_request_at_a_time_refuses_clearly() -> None:
    with serve("werkzeug", APP, "--single") as own:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(own, "/ws/echo")
        assert refused.value.status_code == 500
        assert b"one request at a time" in refused.value.resp_body
        assert b"threaded=True" in refused.value.resp_body
        assert get(own)[:2] == (200, b"plain")
    assert "cannot serve a WebSocket" in own.log()


# The connection's thread, waiting on its socket.


def test_a_coroutine_run_from_a_plain_http_request_reaches_connections_waiting_on_their_sockets(server: Server) -> None:
    clients = [connect(server, f"/ws/quiet?print=co{index}") for index in range(3)]
    try:
        for index, ws in enumerate(clients):
            ws.send(f"hello {index}")
            assert ws.recv() == f"hello {index}"
        time.sleep(0.1)  # each thread waits on its socket, with no deadline (no heartbeat)
        started = time.monotonic()
        assert server.post("/coroutine") == b"3"  # each ran in its connection's thread
        assert time.monotonic() - started < 2
        assert [ws.recv() for ws in clients] == ["from a coroutine"] * 3
    finally:
        for ws in clients:
            ws.close()
    wait_for_log(server, [f"ON_CLOSE co{index} " for index in range(3)])


def test_a_close_from_a_plain_http_request_ends_tcp_at_the_closing_deadline(server: Server) -> None:
    with RawClient(server.port) as client:
        assert client.handshake("/ws/quiet?print=quiet") == 101
        client.send_frame(TEXT, b"hello")
        assert client.read_frame()[3] == b"hello"
        time.sleep(0.1)  # its thread waits on its socket, with no deadline
        started = time.monotonic()
        assert server.post("/close-quiet") == b"1"  # sent from the POST's thread
        assert client.read_close() == (4000, b"from HTTP")
        assert client.read_to_eof() == b""  # we never answer: TCP ends at CLOSE_TIMEOUT (0.5 s)
        assert 0.45 <= time.monotonic() - started < 2.5
    wait_for_log(server, ["ON_CLOSE quiet 4000"])


def worker_pid(server: Server) -> int:
    """The process that serves the WebSockets: gunicorn's one worker, or werkzeug's server itself."""
    if server.kind != "gthread":
        return server.process.pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == server.process.pid:
                return int(entry.name)
    raise AssertionError("gunicorn's worker was not found")


def descriptors(pid: int) -> collections.Counter[str]:
    """A process's open descriptors by kind: ``socket``, ``anon_inode:[eventpoll]``, ``anon_inode:[eventfd]``..."""
    kinds: collections.Counter[str] = collections.Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kinds[target.split(":[")[0] if target.startswith("socket:") else target] += 1
    return kinds


def settled_descriptors(pid: int) -> collections.Counter[str]:
    """The descriptors once earlier connections have ended (the same twice in a row)."""
    deadline = time.monotonic() + 10
    last = descriptors(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = descriptors(pid)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the descriptors did not settle: {last}")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/PID/fd")
def test_a_websocket_costs_its_socket_and_one_eventfd_and_no_epoll_descriptor(server: Server) -> None:
    pid = worker_pid(server)
    before = settled_descriptors(pid)
    clients = [connect(server, "/ws/echo") for _ in range(20)]
    try:
        for index, ws in enumerate(clients):
            ws.send(f"echo {index}")
            assert ws.recv() == f"echo {index}"
        during = descriptors(pid)
    finally:
        for ws in clients:
            ws.close()
    assert during["anon_inode:[eventpoll]"] == before["anon_inode:[eventpoll]"], (before, during)
    assert during["anon_inode:[eventfd]"] - before["anon_inode:[eventfd]"] == 20, (before, during)
    assert during["socket"] - before["socket"] == 20, (before, during)
    assert settled_descriptors(pid)["anon_inode:[eventfd]"] == before["anon_inode:[eventfd]"]  # closed with the loops


def test_a_burst_of_frames_over_tls_is_read_whole(certificates: tuple[Path, Path, Path]) -> None:
    ca_file, cert_file, key_file = certificates
    with serve("gthread", APP, "--certfile", str(cert_file), "--keyfile", str(key_file)) as tls:
        ws = websocket.create_connection(
            tls.url("/ws/echo", scheme="wss"), timeout=TIMEOUT, sslopt={"ca_certs": str(ca_file)}
        )
        try:
            messages = [f"message {number} " * (number % 50 + 1) for number in range(300)]
            assert isinstance(ws.sock, ssl.SSLSocket)
            ws.sock.sendall(b"".join(frame(TEXT, message.encode()) for message in messages))  # in one write
            assert [ws.recv() for _ in messages] == messages
            big = os.urandom(MiB)  # read in place, record by record
            ws.send_binary(big)
            assert ws.recv() == big
        finally:
            ws.close()


def wait_for_log(server: Server, lines: list[str], timeout: float = 5) -> None:
    """Wait until each of ``lines`` is in the server's output once (its pipe is read by another thread)."""
    deadline = time.monotonic() + timeout
    while not all(server.log().count(line) == 1 for line in lines):
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
