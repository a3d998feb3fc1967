"""Running one case on one connection, with the native helpers or in pure Python.

A run feeds the stream in the case's reads, does the host's actions where
they fall, answers at the end as a host does (``fail`` for a pending failure,
the echo of the client's Close), then maybe ``receive_eof``. It checks after
every call that no exception left the core and that what the connection
holds stays within its limits; the first problem ends the run (``Broken``).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from itertools import pairwise
from types import ModuleType
from typing import Any

from duck_ws_sync.protocol import Event, Message, ServerConnection, State, connection, mask, partial, writer
from duck_ws_sync.protocol.frames import MAX_CONTROL_PAYLOAD

from .cases import Action, Case, Options
from .wire import MAX_HEADER

__all__ = ["Broken", "Outcome", "pure_python", "run_connection"]

#: What ``_buffer`` may hold between reads: the start of one frame, up to a
#: control frame's whole payload (a data frame's payload goes to its
#: ``PartialFrame``).
MAX_BUFFERED = MAX_HEADER + MAX_CONTROL_PAYLOAD


# What the modules of the core look up at call time when they use a compiled
# helper, and its Python equivalent (None: the compiled parser's absence).
_HELPERS: tuple[tuple[ModuleType, str, Any], ...] = (
    (connection, "_native_parse_messages", None),
    (connection, "_native_receive_message", None),
    (writer, "_native_text_frame", None),
    (connection, "apply_mask", mask.python_apply_mask),
    (partial, "_NativePayload", None),
    (partial, "unmask_into", mask.python_unmask_into),
)


@contextmanager
def pure_python() -> Iterator[None]:
    """Make the core use only the Python equivalents of its compiled helpers, until exit."""
    saved = [getattr(module, name) for module, name, _ in _HELPERS]
    for module, name, python in _HELPERS:
        setattr(module, name, python)
    try:
        yield
    finally:
        for (module, name, _), value in zip(_HELPERS, saved, strict=True):
            setattr(module, name, value)


class Broken(Exception):
    """An exception left the core, or a bound was broken.

    Attributes:
        key: What broke, without the details: findings with the same key are one.
        description: What broke, with the details.
    """

    def __init__(self, key: str, description: str) -> None:
        super().__init__(description)
        self.key = key
        self.description = description


@dataclass
class Outcome:
    """What one run observed.

    Attributes:
        events: Every event in order, ``receive_message``'s returns included.
        output: Every byte of ``data_to_send``, joined.
        facts: The connection's state and counters at the end, by name.
        broken: The problem that ended the run early, if any.
        returned: How many messages ``receive_message`` returned.
        lends: How many reads went into a buffer the connection lent.
        actions_during_reads: How many host actions came between
            ``receive_buffer()`` and ``received_into()``.
    """

    events: list[Event] = field(default_factory=list)
    output: bytes = b""
    facts: dict[str, Any] = field(default_factory=dict)
    broken: Broken | None = None
    returned: int = 0
    lends: int = 0
    actions_during_reads: int = 0


def run_connection(case: Case, native: bool) -> Outcome:
    """Run ``case`` on a new connection: with the native helpers, or with their Python equivalents."""
    with nullcontext() if native else pure_python():
        return _Driver(case, native).run()


def check_bounds(connection: ServerConnection, options: Options) -> str | None:
    """Describe the first thing the connection holds beyond its limits, if any."""
    if connection.state not in (State.OPEN, State.CLOSING, State.CLOSED):
        return f"state {connection.state!r}"
    if len(connection._buffer) > MAX_BUFFERED:
        return f"_buffer holds {len(connection._buffer)} bytes"
    pending = connection._partial
    if pending is not None and not 0 <= pending.filled <= pending.header.length:
        return f"a partial frame filled with {pending.filled} of {pending.header.length} bytes"
    frame_limit, limit = options.max_frame_size, options.max_message_size
    if frame_limit is not None and pending is not None and pending.header.length > frame_limit:
        return f"a partial frame of {pending.header.length} bytes is collected, over max_frame_size"
    if limit is None:
        return None
    held = len(connection._message_buffer or b"")
    if connection._message_size > limit or held > limit:
        return f"a message of {held} bytes (costing {connection._message_size}) is held, over max_message_size"
    if pending is not None:
        length = pending.header.length
        if length > limit:
            return f"a partial frame of {length} bytes is collected, over max_message_size"
        # Uncompressed, a frame's payload is its message's; compressed, it
        # is held whole before it is inflated, beside what came before.
        if not connection._message_compressed and held + length > limit:
            return f"{held} bytes of message and a frame of {length} are held, over max_message_size"
    return None


def pending_input(connection: ServerConnection) -> tuple[int, int, tuple[int, int] | None]:
    """Where the parser stands: bytes buffered, bytes to skip, and the partial frame's progress."""
    pending = connection._partial
    progress = None if pending is None else (pending.filled, pending.header.length)
    return len(connection._buffer), connection._skip, progress


class _Driver:
    """One run of one case; see ``run_connection``."""

    def __init__(self, case: Case, native: bool) -> None:
        self.case = case
        self.native = native
        self.connection = case.options.connect()
        self.outcome = Outcome()
        self.output = bytearray()
        self.applied: list[bool] = []
        self.reused = bytearray()  # the transport's read buffer, reused from read to read

    def run(self) -> Outcome:
        try:
            self.read_stream()
            self.collect()
            connection = self.connection
            before = {
                "state before the host answers": connection.state,
                "input_ended before the host answers": connection.input_ended,
                "failure_pending before the host answers": connection.failure_pending,
                "pending input": pending_input(connection),
            }
            self.answer()
            after = self.facts()
            if self.case.eof:
                self.call("receive_eof", connection.receive_eof)
            self.collect()
        except Broken as broken:
            self.outcome.broken = broken
            self.outcome.output = bytes(self.output)
            return self.outcome
        self.outcome.output = bytes(self.output)
        self.outcome.facts = {
            **before,
            **after,
            "state at the end": connection.state,
            "host actions applied": tuple(self.applied),
        }
        return self.outcome

    def facts(self) -> dict[str, Any]:
        connection = self.connection
        error = connection.protocol_error
        return {
            "state": connection.state,
            "close_sent": connection.close_sent,
            "close_received": connection.close_received,
            "close_initiator": connection.close_initiator,
            "protocol_error": None if error is None else (type(error).__name__, error.close_code, str(error)),
            "bytes_received": connection.bytes_received,
            "frames_received": connection.frames_received,
            "messages_received": connection.messages_received,
            "frames_sent": connection.frames_sent,
            "bytes_sent": connection.bytes_sent,
            "messages_sent": connection.messages_sent,
        }

    # Calls into the core.

    def call(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        """Call the core; an exception or a broken bound ends the run."""
        try:
            result = function(*args)
        except Exception as error:
            where = traceback.extract_tb(error.__traceback__)[-1]
            raise Broken(
                f"{type(error).__name__} from {name}",
                f"{name} raised {type(error).__name__}: {error} (at {where.name}, line {where.lineno})",
            ) from None
        problem = check_bounds(self.connection, self.case.options)
        if problem is not None:
            raise Broken(f"bound broken after {name}", f"after {name}: {problem}")
        return result

    def collect(self) -> None:
        self.outcome.events += self.call("events_received", self.connection.events_received)
        for chunk in self.call("data_to_send", self.connection.data_to_send):
            self.output += chunk

    # Reading the stream.

    def read_stream(self) -> None:
        case = self.case
        stream, size = case.stream, len(case.stream)
        cuts = case.native_cuts if self.native else case.python_cuts
        actions: dict[int, list[Action]] = {}
        for action in case.actions:
            actions.setdefault(min(max(action.offset, 0), size), []).append(action)
        edges = sorted({0, size, *(cut for cut in cuts if 0 < cut < size), *actions})
        ways = case.native_ways if self.native else "D"
        for index, (start, stop) in enumerate(list(pairwise(edges)) or [(0, 0)]):
            position = self.act(actions.pop(start, []), stream[start:stop])
            way = ways[index % len(ways)]
            self.read(stream[start + position : stop], way)
            if way.isupper():
                self.collect()
        for late in actions.values():
            self.act(late, b"")

    def act(self, actions: list[Action], chunk: bytes) -> int:
        """Do the host's actions at the start of ``chunk``; return how much of it was read meanwhile."""
        during = [action for action in actions if action.during_read]
        for action in actions:
            if not action.during_read:
                self.apply(action)
        read = 0
        for action in during:
            buffer = None if read or not self.native else self.call("receive_buffer", self.connection.receive_buffer)
            if buffer is None:
                self.apply(action)
                continue
            read = self.fill(buffer, chunk)
            self.apply(action)  # another thread, while this one reads into the buffer
            self.outcome.actions_during_reads += 1
            self.call("received_into", self.connection.received_into, read)
        return read

    def read(self, data: bytes, way: str) -> None:
        """One read of ``data``: into lent buffers while there are some (``b``), the rest fed (``d``, ``m``)."""
        connection = self.connection
        while way in "bB" and data:
            buffer = self.call("receive_buffer", connection.receive_buffer)
            if buffer is None:
                break
            size = self.fill(buffer, data)
            self.call("received_into", connection.received_into, size)
            data = data[size:]
            if not data:
                return
        if way in "mM":
            message = self.feed("receive_message", connection.receive_message, data)
            if message is not None:
                if type(message) is not Message:
                    raise Broken("receive_message returned a non-message", f"it returned {message!r}")
                self.outcome.events.append(message)
                self.outcome.returned += 1
        else:
            self.feed("receive_data", connection.receive_data, data)

    def fill(self, buffer: memoryview, data: bytes) -> int:
        """What a transport does with a lent buffer: read into it, release it; return the count."""
        with buffer:
            size = min(len(buffer), len(data))
            buffer[:size] = data[:size]
        self.outcome.lends += 1
        return size

    def feed(self, name: str, method: Callable[[Any], Any], data: bytes) -> Any:
        """Feed ``data`` as bytes or, for the native run, as a view of a buffer the transport reuses."""
        if not self.native or self.case.native_input == "bytes":
            return self.call(name, method, data)
        reused = self.reused
        if len(reused) < len(data):
            reused.extend(bytes(len(data) - len(reused)))
        reused[: len(data)] = data
        with memoryview(reused) as whole, whole[: len(data)] as view:
            result = self.call(name, method, view)
        try:
            reused.append(0)  # refused while any view of it is alive
            reused.pop()
        except BufferError:
            raise Broken(f"{name} kept a view", f"{name} kept a view of the caller's read buffer") from None
        reused[:] = b"\xaa" * len(reused)  # the next read overwrites it: nothing may depend on it
        return result

    # The host.

    def apply(self, action: Action) -> None:
        """Do what a host does: ``send_close`` only while it may, ``fail`` whenever."""
        connection = self.connection
        if action.kind == "send_close":
            if connection.state is not State.OPEN or connection.close_sent is not None:
                self.applied.append(False)
                return
            self.call("send_close", connection.send_close, action.code, action.reason)
        else:
            self.call("fail", connection.fail, action.code, action.reason)
        self.applied.append(True)

    def answer(self) -> None:
        """The host's answer once input ended: fail for a pending failure, or echo the client's Close."""
        connection = self.connection
        error = connection.protocol_error
        if connection.failure_pending and error is not None:
            self.call("fail", connection.fail, error.close_code, str(error))
        elif connection.close_received is not None and connection.close_sent is None and connection.state is State.OPEN:
            code = connection.close_received.code
            self.call("send_close", connection.send_close, None if code == 1005 else code)
