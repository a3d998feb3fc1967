"""A raw-socket WebSocket client for the integration tests: exact bytes on the wire."""

from __future__ import annotations

import base64
import os
import socket
import struct

from tests.helpers import CLOSE, close_frame, frame

DEFAULT_TIMEOUT = 10.0


class RawClient:
    """A TCP connection to a server, with helpers to speak WebSocket byte by byte."""

    def __init__(self, port: int, timeout: float = DEFAULT_TIMEOUT, receive_buffer: int | None = None) -> None:
        """Connect; ``receive_buffer`` sets SO_RCVBUF first (a slow client's small window)."""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    @staticmethod
    def upgrade_request(path: str = "/", headers: dict[str, str] | None = None, method: str = "GET") -> bytes:
        """A valid upgrade request; ``headers`` override or add (a None value removes a header)."""
        all_headers: dict[str, str | None] = {
            "Host": "127.0.0.1",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
        }
        all_headers.update(headers or {})
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in all_headers.items() if v is not None)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def handshake(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET", then: bytes = b""
    ) -> int:
        """Send an upgrade request (plus ``then`` in the same write) and read the response head; return the status."""
        self.sock.sendall(self.upgrade_request(path, headers, method) + then)
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed during the handshake: {self.buffer!r}")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status != 101:
            length = int(self.headers.get("content-length", "0"))
            while len(self.buffer) < length:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk
            self.body, self.buffer = self.buffer[:length], self.buffer[length:]
        return self.status

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        self.sock.sendall(frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        self.sock.sendall(close_frame(code, reason))

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(max(65536, size - len(self.buffer)))
            if not chunk:
                raise EOFError(f"connection closed with {len(self.buffer)} of {size} bytes read")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[bool, bool, int, bytes]:
        """Read one server frame: ``(fin, rsv1, opcode, payload)``; masked server frames fail the test."""
        first, second = self._read(2)
        assert not second & 0x80, "server frames must not be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        return bool(first & 0x80), bool(first & 0x40), first & 0x0F, self._read(length)

    def read_close(self) -> tuple[int | None, bytes]:
        """Read frames up to a Close; return its code (None if empty) and reason."""
        while True:
            _fin, _rsv1, opcode, payload = self.read_frame()
            if opcode == CLOSE:
                if not payload:
                    return None, b""
                return struct.unpack("!H", payload[:2])[0], payload[2:]

    def read_to_eof(self) -> bytes:
        """Everything the server writes until it closes TCP (a timeout fails the test)."""
        data, self.buffer = self.buffer, b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk
