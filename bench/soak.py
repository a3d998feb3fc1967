"""A soak run: connection churn against gunicorn with two workers, for a bounded time, memory and descriptors watched.

    python3 bench/soak.py                    # 10 minutes, a sample a minute
    python3 bench/soak.py --minutes 1 --sample-every 10

Clients, all at once, each starting over as soon as it is done:

- healthy (most): connect with compression on or off, send 1-20 messages
  of 1 B to 256 KiB, check each echo, close;
- vanishing: connect, send a little, drop TCP without a Close;
- not reading: ask the firehose for data and never read it (the server
  must drop them after its SEND_TIMEOUT), then go;
- garbage: a valid handshake followed by bytes that are no WebSocket
  (the server must close), or an HTTP request that is not one (400).

Every ``--sample-every`` seconds each worker's resident memory and open
descriptors are read from /proc, with the machine's load, and a row is
printed. It fails (exit status 1) when a worker's memory grows more than
``--growth-limit`` (10%) past the highest of its samples during the warm-up (the first two
minutes, or half of a shorter run), when a worker has more descriptors once idle at the end
than once idle at the start, when a worker was replaced, or when a
healthy client saw any error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from websockets.asyncio.client import connect  # noqa: E402

from duck_ws_sync.testing import LiveServer, serve  # noqa: E402

APP = "bench.soak_app:app"
GROWTH_LIMIT = 0.10
TIMEOUT = 10.0
SIZES = [1, 16, 125, 126, 1000, 4096, 65535, 65536, 200_000, 262_144]
SIZE_WEIGHTS = [20, 20, 10, 10, 15, 10, 5, 4, 3, 3]
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Tally:
    """What the clients did, and the healthy clients' errors."""

    connections: int = 0
    messages: int = 0
    vanished: int = 0
    stalled: int = 0
    garbage: int = 0
    errors: list[str] = field(default_factory=list)


def workers(master: int) -> list[int]:
    return sorted(int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split())


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE // 1024


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_descriptors(pid: int) -> int:
    """A worker's open descriptors once idle: the fewest over two seconds.

    The connection of the last ``/stats`` request may still be closing when
    the first sample is taken; a leaked descriptor stays in every sample.
    """
    fewest = descriptors(pid)
    for _ in range(10):
        time.sleep(0.2)
        fewest = min(fewest, descriptors(pid))
    return fewest


def descriptor_targets(pid: int) -> list[str]:
    """What a worker's descriptors point to (sockets, pipes, files), for a failure's message."""
    targets = []
    for name in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        with contextlib.suppress(OSError):
            targets.append(f"{name}->{os.readlink(f'/proc/{pid}/fd/{name}')}")
    return targets


def open_connections(port: int, pids: list[int]) -> dict[int, int]:
    """``open`` of every worker's stats, asking until each has answered (the kernel picks the worker)."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < len(pids) and time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=TIMEOUT) as response:
            snapshot = json.loads(response.read())
        seen[snapshot["pid"]] = snapshot["open"]
    return seen


def wait_idle(server: LiveServer, pids: list[int], timeout: float = 30.0) -> bool:
    """Wait until no worker holds a WebSocket; whether that happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(count == 0 for count in open_connections(server.port, pids).values()):
            return True
        time.sleep(0.5)
    return False


async def healthy(url: str, stop: float, tally: Tally, rng: random.Random) -> None:
    while time.monotonic() < stop:
        compression = rng.choice(["deflate", None])
        try:
            async with connect(
                url, compression=compression, max_size=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT
            ) as ws:
                tally.connections += 1
                for _ in range(rng.randint(1, 20)):
                    size = rng.choices(SIZES, SIZE_WEIGHTS)[0]
                    message: str | bytes = "é" * (size // 2) if rng.random() < 0.5 else rng.randbytes(size)
                    await ws.send(message)
                    echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
                    if echo != message:
                        tally.errors.append(f"echo of {len(message)} {type(message).__name__} differs")
                    tally.messages += 1
        except Exception as exc:  # every failure of a healthy client is a finding
            tally.errors.append(f"{type(exc).__name__}: {exc}")


async def vanishing(url: str, stop: float, tally: Tally, rng: random.Random) -> None:
    while time.monotonic() < stop:
        try:
            ws = await connect(url, open_timeout=TIMEOUT)
            await ws.send(rng.randbytes(rng.choice([10, 5000])))
            await asyncio.sleep(rng.random() * 0.2)
            ws.transport.abort()  # no Close: TCP reset
            tally.vanished += 1
        except Exception:  # misbehaving clients may fail: only healthy ones are judged
            continue
        await asyncio.sleep(0.05)


async def not_reading(port: int, stop: float, tally: Tally) -> None:
    while time.monotonic() < stop:
        _, writer = await raw_handshake(port, "/ws/firehose", receive_buffer=4096)
        if writer is None:
            continue
        writer.write(masked_frame(0x1, b"go"))
        await asyncio.sleep(3)  # the server's SEND_TIMEOUT is 2 s
        writer.transport.abort()
        tally.stalled += 1


async def garbage(port: int, stop: float, tally: Tally, rng: random.Random) -> None:
    while time.monotonic() < stop:
        if rng.random() < 0.5:
            reader, writer = await raw_handshake(port, "/ws/echo")
            if writer is None:
                continue
            writer.write(rng.choice([b"\x8f\x80\0\0\0\0", b"\x01\x05hello", rng.randbytes(200)]))
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(reader.read(), TIMEOUT)  # until the server closes
        writer.close()
        tally.garbage += 1
        await asyncio.sleep(0.05)


async def raw_handshake(
    port: int, path: str, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter | None]:
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        writer.close()
        return reader, None
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        return reader, None
    return reader, writer


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def load(port: int, seconds: float, tally: Tally, seed: int) -> None:
    stop = time.monotonic() + seconds
    url = f"ws://127.0.0.1:{port}/ws/echo"
    rng = random.Random(seed)
    tasks = [healthy(url, stop, tally, random.Random(rng.random())) for _ in range(40)]
    tasks += [vanishing(url, stop, tally, random.Random(rng.random())) for _ in range(4)]
    tasks += [not_reading(port, stop, tally) for _ in range(3)]
    tasks += [garbage(port, stop, tally, random.Random(rng.random())) for _ in range(3)]
    await asyncio.gather(*tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the churn (default 10)")
    parser.add_argument("--sample-every", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--worker", default="gevent", choices=["gevent", "gthread"], help="gunicorn worker class")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--growth-limit", type=float, default=GROWTH_LIMIT,
        help=f"a worker's memory may grow this fraction past its warm-up's highest (default {GROWTH_LIMIT})",
    )  # fmt: skip
    options = parser.parse_args()
    seconds = options.minutes * 60
    warmup = min(120.0, seconds / 2)
    args = ["-w", "2", "--threads", "100"] if options.worker == "gthread" else ["-w", "2"]
    failures: list[str] = []
    with serve(APP, "gunicorn", worker=options.worker, args=args, timeout=60) as server:
        master = server.pid
        assert master is not None  # a gunicorn server has one
        pids = workers(master)
        # A first round of each kind of client opens what a worker opens once (its epoll, its buffers).
        asyncio.run(load(server.port, 3, Tally(), options.seed))
        wait_idle(server, pids)
        idle_fds = {pid: settled_descriptors(pid) for pid in pids}
        print(f"gunicorn -k {options.worker} -w 2, workers {pids}; {options.minutes:g} min of churn")
        print("| t (s) | load 1m | " + " | ".join(f"RSS {pid} (MiB) | fds {pid}" for pid in pids) + " | conns | msgs |")
        print("|---" * (3 + 2 * len(pids)) + "|")
        tally = Tally()
        start = time.monotonic()
        rows: list[tuple[float, dict[int, int]]] = []

        async def sample(done: asyncio.Event) -> None:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), options.sample_every)
                elapsed = time.monotonic() - start
                if done.is_set() and rows and elapsed - rows[-1][0] < 1:
                    return  # the last sample has just been taken
                memory = {pid: rss_kib(pid) for pid in pids}
                rows.append((elapsed, memory))
                cells = " | ".join(f"{memory[pid] / 1024:.1f} | {descriptors(pid)}" for pid in pids)
                print(
                    f"| {elapsed:.0f} | {os.getloadavg()[0]:.2f} | {cells} | {tally.connections} | {tally.messages} |",
                    flush=True,
                )
                if done.is_set():
                    return

        async def run() -> None:
            done = asyncio.Event()

            async def churn() -> None:
                try:
                    await load(server.port, seconds, tally, options.seed)
                finally:
                    done.set()

            await asyncio.gather(churn(), sample(done))

        asyncio.run(run())
        if workers(master) != pids:
            failures.append(f"a worker was replaced: {pids} -> {workers(master)}")
        if not wait_idle(server, pids):
            failures.append(f"WebSockets still open 30 s after the churn: {open_connections(server.port, pids)}")
        end_fds = {pid: settled_descriptors(pid) for pid in pids}
        for pid in pids:
            if end_fds[pid] > idle_fds[pid]:
                failures.append(
                    f"worker {pid}: {end_fds[pid]} descriptors once idle, {idle_fds[pid]} at the start: "
                    f"{descriptor_targets(pid)}"
                )
        # Each worker's baseline: the most it held during the warm-up (samples a second late count in).
        in_warmup = [memory for t, memory in rows if t <= warmup + 1] or [rows[0][1]]
        baseline = {pid: max(memory[pid] for memory in in_warmup) for pid in pids}
        for elapsed, memory in rows[len(in_warmup) :]:
            for pid in pids:
                if memory[pid] > baseline[pid] * (1 + options.growth_limit):
                    failures.append(
                        f"worker {pid}: {memory[pid] / 1024:.1f} MiB at {elapsed:.0f} s, "
                        f"over {baseline[pid] / 1024:.1f} MiB (the warm-up's highest) + {options.growth_limit:.0%}"
                    )
        print(
            f"\n{tally.connections} healthy connections, {tally.messages} messages echoed, "
            f"{tally.vanished} vanished, {tally.stalled} stopped reading, {tally.garbage} sent garbage; "
            f"descriptors idle at the start {idle_fds}, at the end {end_fds}; warm-up {warmup:.0f} s"
        )
    if tally.errors:
        failures.append(f"{len(tally.errors)} errors of healthy clients, the first: {tally.errors[:5]}")
    for failure in failures:
        print("FAIL:", failure)
    print("soak:", "FAILED" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
