"""What one case checks: the native parser against the Python one, and the native run against the pure-Python run.

See the package's docstring for what is compared and why.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from duck_ws_sync.protocol import Close, Event, Message, OpCode, Ping, Pong, State, connection
from duck_ws_sync.protocol.opcodes import is_valid_close_code

from .cases import Case
from .known import KnownDefect, known_defect
from .run import Outcome, pending_input, pure_python, run_connection
from .wire import masked

__all__ = ["Finding", "Report", "check_case", "simple_frame_at"]

#: The compiled parser of whole messages (None when the extension is not built).
native_parse_messages: Callable[..., int] | None = connection._native_parse_messages

#: A problem: what went wrong without the details (a finding's key), then with them.
Problem = tuple[str, str]

#: The close code of invalid text, after which ``frames_received`` depends on the splits (see ``compare``).
TEXT_FAILURE = 1007


@dataclass(frozen=True)
class Finding:
    """A problem a case showed.

    Attributes:
        seed: The case's seed.
        key: What went wrong, without the details: findings with one key
            are taken for one problem (the reducer keeps a case's key).
        description: What went wrong, with the details.
    """

    seed: int
    key: str
    description: str


@dataclass
class Report:
    """What ``check_case`` found, and what the runs observed (for the statistics).

    Attributes:
        finding: The first problem found, if any.
        known: The known defect that explains it, if one does.
        parsed: How many events the native parser made on its own.
        native, python: The two runs (None when the native parser's check failed first).
        compared: Whether the runs were compared (not for a frame the native
            run could not allocate).
    """

    finding: Finding | None
    known: KnownDefect | None = None
    parsed: int = 0
    native: Outcome | None = None
    python: Outcome | None = None
    compared: bool = False


def check_case(case: Case) -> Report:
    """Run every check of one case; the first problem found is the finding."""
    problem, parsed = check_native_parser(case)
    if problem is not None:
        return Report(Finding(case.seed, *problem), parsed=parsed)
    native = run_connection(case, native=True)
    python = run_connection(case, native=False)
    report = Report(None, parsed=parsed, native=native, python=python)
    for name, outcome in (("native", native), ("python", python)):
        problem = check_outcome(case, outcome)
        if problem is not None:
            key, description = problem
            report.finding = Finding(case.seed, f"{name} run: {key}", f"{name} run: {description}")
            report.known = known_defect(case, key, outcome)
            return report
    if unallocatable(native):
        return report  # a documented difference: see the package's docstring
    report.compared = True
    problem = compare(native, python)
    if problem is not None:
        report.finding = Finding(case.seed, *problem)
    return report


def unallocatable(outcome: Outcome) -> bool:
    """The native run refused a frame whose announced length no buffer can have (with no limit set)."""
    error = outcome.facts["protocol_error"]
    return error is not None and "cannot be held in memory" in error[2]


# The native parser on its own.


def check_native_parser(case: Case) -> tuple[Problem | None, int]:
    """Run ``parse_messages`` at each of the case's starts; the Python parser must agree with what it returns.

    Returns:
        The first problem, if any, and how many events the parser made.
    """
    parsed = 0
    if native_parse_messages is None:
        return None, parsed
    for start in case.parser_starts:
        events: list[Any] = []
        problem = check_parser_at(case, min(start, len(case.stream)), events)
        parsed += len(events)
        if problem is not None:
            return problem, parsed
    return None, parsed


def parser_input(case: Case) -> bytes | bytearray | memoryview:
    if case.parser_input == "bytearray":
        return bytearray(case.stream)
    if case.parser_input == "memoryview":
        return memoryview(b"pad" + case.stream)[3:]  # a view that does not start at its buffer's start
    return case.stream


def check_parser_at(case: Case, start: int, events: list[Any]) -> Problem | None:
    """What ``parse_messages`` reads from ``start`` (into ``events``) is whole messages and Pongs to Python too."""
    data, limit = case.stream, case.options.simple_limit
    parse = native_parse_messages
    assert parse is not None
    try:
        stop = parse(parser_input(case), start, limit, Message, OpCode.TEXT, OpCode.BINARY, Pong, events)
    except Exception as error:
        return f"parse_messages raised {type(error).__name__}", f"parse_messages raised {error!r} at {start}"
    where = f"parse_messages from {start} to {stop} (limit {limit})"
    if not start <= stop <= len(data):
        return "parse_messages returned a position out of range", where
    with pure_python():
        reference = case.options.connect()
        try:
            reference.receive_data(data[start:stop])
        except Exception as error:
            return f"the reference parser raised {type(error).__name__}", f"{where}: {error!r}"
    expected = reference.events_received()
    if events != expected:
        return "parse_messages disagrees on events", f"{where}: native {events!r}, Python {expected!r}"
    if any(type(getattr(event, "data", getattr(event, "payload", b""))) is not bytes for event in events):
        return "parse_messages made an event of another type than bytes", f"{where}: {events!r}"
    settled = (reference.protocol_error, reference.close_sent, pending_input(reference), reference.frames_received)
    if settled != (None, None, (0, 0, None), len(events)):
        return "parse_messages read what is not whole messages", f"{where}: the Python parser ends with {settled}"
    if simple_frame_at(data, stop, limit):
        return "parse_messages stopped before a frame it reads", f"{where}: {data[stop : stop + 16]!r}..."
    return None


def simple_frame_at(data: bytes, position: int, limit: int) -> bool:
    """Whether the frame at ``position`` is one ``parse_messages`` promises to read.

    That is a whole, masked frame, FIN set and no RSV bit, text (valid
    UTF-8) or binary or a Pong with a 7-bit length, at most ``limit`` bytes
    long (-1: any length). Written from that promise, not from the C code.
    """
    if len(data) - position < 2:
        return False
    first, second = data[position], data[position + 1]
    opcode, code = first & 0x0F, second & 0x7F
    if first & 0xF0 != 0x80 or opcode not in (OpCode.TEXT, OpCode.BINARY, OpCode.PONG) or not second & 0x80:
        return False
    if opcode == OpCode.PONG and code > 125:
        return False
    size = 2 + {126: 2, 127: 8}.get(code, 0)
    start = position + size + 4
    if len(data) < start:
        return False
    length = code if code < 126 else int.from_bytes(data[position + 2 : position + size], "big")
    if 0 <= limit < length or len(data) - start < length:
        return False
    if opcode == OpCode.TEXT:
        try:
            masked(data[start : start + length], data[start - 4 : start]).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


# One run on its own.


def check_outcome(case: Case, outcome: Outcome) -> Problem | None:
    """Nothing escaped, the events and the bytes sent are sane, and the expectations of the case hold."""
    if outcome.broken is not None:
        return outcome.broken.key, outcome.broken.description
    return check_events(outcome.events, case) or check_output(outcome) or check_expectations(case, outcome)


def check_events(events: list[Event], case: Case) -> Problem | None:
    """Every event is what the RFC allows a client to have sent, within the limits; nothing follows a Close."""
    limit = case.options.max_message_size
    for index, event in enumerate(events):
        where = f"event {index} of {len(events)}: {event!r}"
        if index and type(events[index - 1]) is Close:
            return "an event after the Close", where
        if type(event) is Message:
            if type(event.data) is not bytes or event.opcode not in (OpCode.TEXT, OpCode.BINARY):
                return "a malformed message", where
            if limit is not None and len(event.data) > limit:
                return "a message over max_message_size", where
            if event.opcode is OpCode.TEXT:
                try:
                    event.data.decode("utf-8")
                except UnicodeDecodeError:
                    return "a text message that is not UTF-8", where
        elif type(event) in (Ping, Pong):
            payload = event.payload  # type: ignore[union-attr]
            if type(payload) is not bytes or len(payload) > 125:
                return "a malformed control frame", where
        elif type(event) is Close:
            if not (event.code == 1005 or is_valid_close_code(event.code)) or len(event.reason.encode()) > 123:
                return "a malformed Close", where
        else:
            return "an unknown event", where
    return None


def read_server_frames(output: bytes) -> list[tuple[int, bytes]]:
    """Split the server's bytes into ``(first byte, payload)``; raise ValueError if they are not whole frames."""
    frames = []
    position = 0
    while position < len(output):
        if len(output) - position < 2 or output[position + 1] & 0x80:
            raise ValueError(f"a truncated or masked frame at {position}")
        code = output[position + 1] & 0x7F
        size = 2 + {126: 2, 127: 8}.get(code, 0)
        length = code if code < 126 else int.from_bytes(output[position + 2 : position + size], "big")
        if len(output) - position - size < length:
            raise ValueError(f"a truncated frame at {position}")
        frames.append((output[position], output[position + size : position + size + length]))
        position += size + length
    return frames


def check_output(outcome: Outcome) -> Problem | None:
    """The server wrote whole frames: Pongs answering the Pings in order, then at most one Close, its close_sent."""
    try:
        frames = read_server_frames(outcome.output)
    except ValueError as error:
        return "malformed output", str(error)
    pings = [event.payload for event in outcome.events if type(event) is Ping]
    pongs = [payload for first, payload in frames if first == 0x80 | OpCode.PONG]
    closes = [payload for first, payload in frames if first == 0x80 | OpCode.CLOSE]
    if len(pongs) + len(closes) != len(frames):
        return "a frame other than a Pong or a Close was sent", repr(frames)
    if pongs != pings[: len(pongs)]:
        return "the Pongs do not answer the Pings", f"Pings {pings!r}, Pongs {pongs!r}"
    close_sent = outcome.facts["close_sent"]
    expected = 0 if close_sent is None else 1
    if len(closes) != expected or (closes and frames[-1][0] != 0x80 | OpCode.CLOSE):
        return "not one Close, last, for close_sent", f"{close_sent!r}; frames {frames!r}"
    if closes:
        code = struct.unpack("!H", closes[0][:2])[0] if closes[0] else 1005
        if code != close_sent.code:
            return "the Close sent is not close_sent", f"sent {closes[0]!r}, close_sent {close_sent!r}"
    return None


def check_expectations(case: Case, outcome: Outcome) -> Problem | None:
    """An honest stream ending with a valid Close ends CLOSED; the Close after a frame dropped mid-read is seen."""
    facts = outcome.facts
    state = facts["state"]
    if case.expect_close and state is not State.CLOSED:
        error = facts["protocol_error"]
        cause = "no protocol error" if error is None else error[0]
        return f"not CLOSED after the client's Close ({cause})", describe_end(outcome)
    if case.race and outcome.actions_during_reads:
        action, applied = case.actions[0], facts["host actions applied"][0]
        if action.kind == "send_close" and applied and not (outcome.events and type(outcome.events[-1]) is Close):
            return "the Close after the dropped frame was not seen", describe_end(outcome)
        if state is not State.CLOSED:
            return "not CLOSED after the Close that follows the dropped frame", describe_end(outcome)
    return None


def describe_end(outcome: Outcome) -> str:
    facts = outcome.facts
    names = ("state", "close_sent", "close_received", "protocol_error", "pending input")
    return ", ".join(f"{name}={facts[name]!r}" for name in names)


# The two runs against each other.


def compare(native: Outcome, python: Outcome) -> Problem | None:
    """The same events, bytes and facts, whatever the splits and the helpers.

    ``frames_received`` is the one fact that legitimately depends on the
    splits: a frame of invalid text counts as received when it arrived whole
    (it is parsed, then refused), not when its bytes came in pieces (refused
    as they come, before the frame ends). It is compared unless the
    connection failed for invalid text (1007).
    """
    if native.events != python.events:
        index = next(
            (index for index, pair in enumerate(zip(native.events, python.events, strict=False)) if pair[0] != pair[1]),
            min(len(native.events), len(python.events)),
        )
        return "the events differ", (
            f"event {index}: native {native.events[index : index + 1]!r}, python {python.events[index : index + 1]!r}"
            f" ({len(native.events)} and {len(python.events)} events)"
        )
    if native.output != python.output:
        return "the bytes to send differ", f"native {native.output[-64:]!r}, python {python.output[-64:]!r} (ends)"
    error = native.facts["protocol_error"]
    for name, value in native.facts.items():
        if name == "frames_received" and error is not None and error[1] == TEXT_FAILURE:
            continue
        if python.facts[name] != value:
            return f"{name} differs", f"{name}: native {value!r}, python {python.facts[name]!r}"
    return None
