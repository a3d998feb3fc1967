"""One fuzz case: the client's bytes, how they are split into reads, the limits and options, and what a host does.

``generate_case(seed)`` draws everything from ``random.Random(seed)``, in a
fixed order, so a seed is the whole case; ``Case`` is also plain data that a
finding is written as (``to_json``) and replayed from (``from_json``), after
the reducer has shrunk it.
"""

from __future__ import annotations

import base64
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from duck_ws_sync.protocol import PerMessageDeflate, ServerConnection
from duck_ws_sync.protocol.connection import DIRECT_READ
from duck_ws_sync.protocol.extensions import Extension

from .streams import build_stream
from .wire import ClientDeflater, random_text

__all__ = ["Action", "Case", "Options", "from_json", "generate_case", "to_json"]

# Codes a host sends: its own Close, and the failures it reports.
HOST_CLOSE_CODES = (None, 1000, 1001, 1008, 1011, 3000, 4999)
HOST_FAIL_CODES = (1000, 1001, 1011)


@dataclass(frozen=True)
class Options:
    """How the server's connection is made.

    Attributes:
        max_frame_size, max_message_size, answer_close_at_once: The
            ``ServerConnection`` arguments.
        deflate: The server's ``PerMessageDeflate`` settings, or None when
            the server does not offer the extension.
        offer: The client's permessage-deflate offer (the server may decline it).
    """

    max_frame_size: int | None
    max_message_size: int | None
    answer_close_at_once: bool
    deflate: dict[str, int | bool] | None = None
    offer: tuple[tuple[str, str | None], ...] = ()

    def agreed(self) -> PerMessageDeflate | None:
        """A fresh agreed extension (one per connection: it holds the inflate state), or None."""
        if self.deflate is None:
            return None
        return PerMessageDeflate(**self.deflate).negotiate(list(self.offer))  # type: ignore[arg-type]

    def connect(self) -> ServerConnection:
        """A new connection with these options."""
        agreed = self.agreed()
        extensions: list[Extension] = [] if agreed is None else [agreed]
        return ServerConnection(
            max_frame_size=self.max_frame_size,
            max_message_size=self.max_message_size,
            extensions=extensions,
            answer_close_at_once=self.answer_close_at_once,
        )

    @property
    def simple_limit(self) -> int:
        """The size limit the native parser is given: the lower of the two limits, -1 for none."""
        limits = [limit for limit in (self.max_frame_size, self.max_message_size) if limit is not None]
        return min(limits, default=-1)


@dataclass(frozen=True)
class Action:
    """What a host does at one point of the stream, as another thread may.

    Attributes:
        offset: How many bytes of the stream were read before it.
        kind: ``"send_close"`` (only while OPEN and no Close sent, as a host
            checks) or ``"fail"``.
        code, reason: Its arguments.
        during_read: When the connection lends a buffer at ``offset``, do it
            between ``receive_buffer()`` and ``received_into()``.
    """

    offset: int
    kind: str
    code: int | None
    reason: str
    during_read: bool


@dataclass(frozen=True)
class Case:
    """Everything one case runs, as data.

    Attributes:
        seed: The seed it was drawn from (kept by the reducer, for reference).
        options: The connection's options.
        stream: The client's bytes.
        pieces: Where each frame or run of garbage starts (the reducer cuts there).
        native_cuts, python_cuts: Where each run splits the stream into reads.
        native_ways: The native run's reads, in turn (cycled): ``d``
            ``receive_data``, ``m`` ``receive_message``, ``b`` into the lent
            buffer when there is one (else ``receive_data``); upper case:
            ``events_received`` right after the read.
        native_input: What the native run's reads are: ``bytes``, or
            ``reused``, views of one buffer that the transport overwrites
            after each read (as the gevent transport does).
        actions: What a host does in the middle, in both runs.
        eof: End with ``receive_eof``.
        parser_starts: Where the native parser is run on the stream by itself.
        parser_input: What it is given: ``bytes``, ``bytearray`` or ``memoryview``.
        expect_close: The framing is honest and the last frame is a valid
            Close, so the connection must end CLOSED.
        race: The Close that follows a frame dropped during a read into the
            lent buffer must be seen.
        notes: What the generator put in.
    """

    seed: int
    options: Options
    stream: bytes
    pieces: tuple[int, ...] = ()
    native_cuts: tuple[int, ...] = ()
    native_ways: str = "d"
    native_input: str = "bytes"
    python_cuts: tuple[int, ...] = ()
    actions: tuple[Action, ...] = ()
    eof: bool = False
    parser_starts: tuple[int, ...] = (0,)
    parser_input: str = "bytes"
    expect_close: bool = False
    race: bool = False
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """One line: the options and what the stream holds."""
        options = self.options
        deflate = "permessage-deflate" if options.agreed() is not None else "no extension"
        parts = [
            f"{len(self.stream)} bytes",
            f"max_frame_size={options.max_frame_size}",
            f"max_message_size={options.max_message_size}",
            f"answer_close_at_once={options.answer_close_at_once}",
            deflate,
        ]
        if self.actions:
            parts.append("host: " + ", ".join(f"{action.kind} at {action.offset}" for action in self.actions))
        if self.notes:
            parts.append("with " + ", ".join(self.notes))
        return "; ".join(parts)


# Drawing a case.


def draw_limit(rng: random.Random, large: bool) -> int | None:
    """None, small, medium or large; with ``large``, mostly room for a large frame."""
    if large and rng.random() < 0.8:
        return rng.choice([None, 4 * DIRECT_READ, 1 << 20, 16 << 20])
    kind = rng.random()
    if kind < 0.3:
        return None
    if kind < 0.45:
        return rng.randrange(0, 300)
    if kind < 0.75:
        return rng.randrange(300, 20_000)
    return rng.choice([DIRECT_READ, 4 * DIRECT_READ, 1 << 20, 16 << 20])


def draw_offer(rng: random.Random) -> tuple[tuple[str, str | None], ...]:
    """A client's permessage-deflate offer (RFC 7692 §7.1), now and then one the server declines."""
    offer: list[tuple[str, str | None]] = []
    if rng.random() < 0.4:
        offer.append(("client_no_context_takeover", None))
    if rng.random() < 0.3:
        offer.append(("server_no_context_takeover", None))
    if rng.random() < 0.5:
        offer.append(("client_max_window_bits", None if rng.random() < 0.3 else str(rng.randint(8, 15))))
    if rng.random() < 0.3:
        offer.append(("server_max_window_bits", str(rng.randint(9, 15))))
    if rng.random() < 0.03:
        offer.append(("x_unknown", None))
    rng.shuffle(offer)
    return tuple(offer)


def draw_options(rng: random.Random, large: bool) -> Options:
    deflate: dict[str, int | bool] | None = None
    if rng.random() < 0.4:
        deflate = {
            "client_no_context_takeover": rng.random() < 0.2,
            "client_max_window_bits": rng.randint(9, 15),
            "server_max_window_bits": rng.randint(9, 15),
        }
    return Options(
        max_frame_size=draw_limit(rng, large),
        max_message_size=draw_limit(rng, large),
        answer_close_at_once=rng.random() < 0.5,
        deflate=deflate,
        offer=draw_offer(rng) if deflate is not None else (),
    )


def draw_cuts(rng: random.Random, size: int, pieces: list[int]) -> tuple[int, ...]:
    """Where TCP splits the stream: nowhere, at random, every few bytes, or around frame edges."""
    kind = rng.random()
    if kind < 0.15 or size < 2:
        return ()
    if kind < 0.55:
        cuts = {rng.randrange(1, size) for _ in range(rng.randint(1, 30))}
    elif kind < 0.75:
        step = max(rng.choice([1, 2, 3, 7, 64, 1000, 4096]), size // 2000 + 1)
        cuts = set(range(step, size, step))
    else:
        chosen = rng.sample(pieces, min(len(pieces), rng.randint(1, 20)))
        cuts = {piece + rng.choice([-1, 0, 1, 2, 6, 14]) for piece in chosen}
    return tuple(sorted(cut for cut in cuts if 0 < cut < size))


def draw_ways(rng: random.Random) -> str:
    weights = [rng.random() for _ in "dmb"]
    ways = rng.choices("dmb", weights, k=rng.randint(1, 8))
    return "".join(way.upper() if rng.random() < 0.5 else way for way in ways)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three byte-level changes: a flipped or replaced byte, bytes inserted, deleted or repeated."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not buffer:
            buffer += rng.randbytes(4)
        at = rng.randrange(len(buffer))
        kind = rng.choice(["flip", "set", "insert", "delete", "repeat"])
        if kind == "flip":
            buffer[at] ^= 1 << rng.randrange(8)
        elif kind == "set":
            buffer[at] = rng.choice([0x00, 0x7E, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif kind == "insert":
            buffer[at:at] = rng.randbytes(rng.randint(1, 8))
        elif kind == "delete":
            del buffer[at : at + rng.randint(1, 8)]
        else:
            buffer[at:at] = buffer[at : at + rng.randint(1, 16)]
    return bytes(buffer)


def draw_action(rng: random.Random, offset: int, during_read: bool) -> Action:
    if rng.random() < 0.7:
        kind, code = "send_close", rng.choice(HOST_CLOSE_CODES)
    else:
        kind, code = "fail", rng.choice(HOST_FAIL_CODES)
    # Up to 150 bytes: a reason over 123 is cut on a character boundary.
    reason = random_text(rng, rng.choice([0, 10, 150])).decode() if code is not None else ""
    return Action(offset, kind, code, reason, during_read)


def generate_case(seed: int) -> Case:
    """Draw the case of ``seed``: the same seed gives the same case (compressed payloads: with the same zlib)."""
    rng = random.Random(seed)
    race = rng.random() < 0.08
    large = race or rng.random() < 0.12
    options = draw_options(rng, large)
    agreed = options.agreed()
    deflater = None
    if agreed is not None:
        context_takeover = not agreed.client_no_context_takeover and rng.random() < 0.8
        deflater = ClientDeflater(agreed.client_max_window_bits, context_takeover)
    # Half the streams are valid frames only; the others hold invalid ones,
    # or valid ones with bytes changed afterwards, or both.
    kind = 1.0 if race else rng.random()
    stream = build_stream(rng, deflater, hostile=kind < 0.35, large=large, race=race)
    data, honest, notes = stream.data, stream.honest, list(stream.notes)
    if 0.25 < kind < 0.5:
        data, honest = mutate(rng, data), False
        notes.append("bytes mutated")
    if kind < 0.5 and rng.random() < 0.15:
        data, honest = data[: rng.randrange(len(data) + 1)], False
        notes.append("cut short")

    actions: tuple[Action, ...] = ()
    if race and stream.large is not None:
        start, stop = stream.large
        actions = (draw_action(rng, rng.randint(start, stop - DIRECT_READ), during_read=True),)
    elif rng.random() < 0.2:
        offset = rng.randint(0, len(data))
        if stream.large is not None and rng.random() < 0.5:
            offset = min(rng.randint(*stream.large), len(data))
        actions = (draw_action(rng, offset, during_read=rng.random() < 0.6),)

    pieces = [piece for piece in stream.pieces if piece < len(data)]
    starts = {0, rng.randint(0, len(data)), *rng.choices(pieces or [0], k=3)}
    return Case(
        seed=seed,
        options=options,
        stream=data,
        pieces=tuple(pieces),
        native_cuts=draw_cuts(rng, len(data), pieces),
        native_ways=draw_ways(rng),
        native_input=rng.choice(["bytes", "reused"]),
        python_cuts=draw_cuts(rng, len(data), pieces),
        actions=actions,
        eof=rng.random() < 0.3,
        parser_starts=tuple(sorted(starts)),
        parser_input=rng.choice(["bytes", "bytearray", "memoryview"]),
        expect_close=honest and stream.ends_with_close,
        race=race,
        notes=tuple(notes),
    )


# Cases as JSON: what a finding is written as.


def to_json(case: Case) -> dict[str, Any]:
    """The case as JSON-ready data (the stream in base64)."""
    data = asdict(case)
    data["stream"] = base64.b64encode(case.stream).decode("ascii")
    return data


def from_json(data: dict[str, Any]) -> Case:
    """The case ``to_json`` wrote."""
    fields = dict(data)
    options = dict(fields.pop("options"))
    options["offer"] = tuple(tuple(pair) for pair in options["offer"])
    fields["options"] = Options(**options)
    fields["stream"] = base64.b64decode(fields["stream"])
    fields["actions"] = tuple(Action(**action) for action in fields["actions"])
    for name in ("pieces", "native_cuts", "python_cuts", "parser_starts", "notes"):
        fields[name] = tuple(fields[name])
    return Case(**fields)
