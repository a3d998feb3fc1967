"""The WebSocket floor: the least work a message-based WebSocket echo on gevent can do.

Not a server anyone should run: it checks nothing (no UTF-8, no limits, no
fragmentation, no closing handshake beyond echoing a Close) and exists only
to show what the protocol itself costs in this harness next to the raw TCP
echo. The raw echo sends each chunk back as it arrives, while the client is
still writing; a WebSocket echo must hold the whole message first, and the
client must mask what it sends. A frame's payload is read into one buffer
(``recv_into``, large frames straight into place), unmasked in C (the
``_speedups`` module of duck_ws_sync, found through PYTHONPATH) and written
back with its header in one ``sendmsg``. A text message that begins with
``BCAST:`` goes to every connection. Prints ``LISTENING <port>``.
"""

# ruff: noqa: E402
from gevent import monkey

monkey.patch_all()

import base64
import contextlib
import hashlib
import socket
import struct
from typing import Any

from duck_ws_sync.protocol._speedups import unmask_into
from gevent.server import StreamServer
from gevent_main import BACKLOG, serve

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHUNK = 65536
CLIENTS: set[socket.socket] = set()


class Reader:
    """Bytes of one connection, read in chunks of up to CHUNK, large payloads straight into place."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.data = bytearray()

    def take(self, n: int) -> bytearray:
        if len(self.data) < n and n - len(self.data) > CHUNK:
            out = bytearray(n)
            held = len(self.data)
            out[:held] = self.data
            self.data.clear()
            view = memoryview(out)
            while held < n:
                got = self.sock.recv_into(view[held:])
                if not got:
                    raise EOFError
                held += got
            return out
        while len(self.data) < n:
            chunk = self.sock.recv(CHUNK)
            if not chunk:
                raise EOFError
            self.data += chunk
        out = self.data[:n]
        del self.data[:n]
        return out


def header(opcode: int, length: int) -> bytes:
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, length)
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


def send(sock: socket.socket, head: bytes, payload: bytearray) -> None:
    sent = sock.sendmsg([head, payload])
    if sent < len(head):
        sock.sendall(head[sent:])
        sent = len(head)
    if sent - len(head) < len(payload):
        sock.sendall(memoryview(payload)[sent - len(head) :])


def handshake(sock: socket.socket, reader: Reader) -> bool:
    while b"\r\n\r\n" not in reader.data:
        chunk = sock.recv(CHUNK)
        if not chunk or len(reader.data) > CHUNK:
            return False
        reader.data += chunk
    end = reader.data.index(b"\r\n\r\n") + 4
    request = bytes(reader.take(end))
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            accept = base64.b64encode(hashlib.sha1(value.strip() + GUID).digest())
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            return True
    return False


def handle(sock: socket.socket, address: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = Reader(sock)
    if not handshake(sock, reader):
        return
    CLIENTS.add(sock)
    try:
        while True:
            first, second = reader.take(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", reader.take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", reader.take(8))
            mask = bytes(reader.take(4))
            payload = reader.take(length)
            unmask_into(payload, 0, payload, mask)
            if opcode == 0x8:
                send(sock, header(0x8, length), payload)
                return
            if opcode == 0x9:
                send(sock, header(0xA, length), payload)
            elif opcode == 0x1 and payload.startswith(b"BCAST:"):
                head = header(opcode, length)
                for client in list(CLIENTS):
                    with contextlib.suppress(OSError):
                        send(client, head, payload)
            elif opcode in (0x1, 0x2):
                send(sock, header(opcode, length), payload)
    except (OSError, EOFError, ValueError):
        pass
    finally:
        CLIENTS.discard(sock)


if __name__ == "__main__":
    serve(StreamServer(("127.0.0.1", 0), handle, backlog=BACKLOG))
