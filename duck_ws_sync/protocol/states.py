"""The states of a WebSocket connection and the moves between them (RFC 6455 §7).

::

    OPEN --send_close--> CLOSING --receive_close--> CLOSED
    OPEN --receive_close (answered at once)-------> CLOSED
    OPEN --receive_close (answer deferred), then send_close--> CLOSED
    OPEN, CLOSING --fail, receive_eof-------------> CLOSED

In CLOSED the transport closes TCP (the server closes first, §7.1.1). In
CLOSING it waits, with a deadline of its own, for the client's Close.
"""

from __future__ import annotations

import enum

__all__ = ["CLOSED", "CLOSING", "OPEN", "TRANSITIONS", "Side", "State"]


class State(enum.IntEnum):
    """Connection states, with Duck's values; CLOSING is ours."""

    INITIATING = -1  # Duck: opening handshake in progress
    CLOSED = 0
    OPEN = 1
    INITIATED = 2  # Duck: handshake done (Duck never reaches OPEN)
    CLOSING = 3  # we sent a Close frame and wait for the peer's


class Side(enum.Enum):
    """Which end of the connection started the closing handshake."""

    LOCAL = "local"
    REMOTE = "remote"


OPEN, CLOSING, CLOSED = State.OPEN, State.CLOSING, State.CLOSED

# Every state change, as data: (state, what happened) -> next state. A pair
# that is missing is something the caller may not do in that state.
TRANSITIONS: dict[tuple[State, str], State] = {
    (OPEN, "send_close"): CLOSING,
    (OPEN, "answer_close"): CLOSED,  # the deferred answer to the peer's Close
    (OPEN, "receive_close"): CLOSED,  # the Close is answered at once
    (CLOSING, "receive_close"): CLOSED,
    (OPEN, "fail"): CLOSED,
    (CLOSING, "fail"): CLOSED,
    (CLOSED, "fail"): CLOSED,
    (OPEN, "receive_eof"): CLOSED,
    (CLOSING, "receive_eof"): CLOSED,
    (CLOSED, "receive_eof"): CLOSED,
}
