"""Duck-compatible names at the package's top level."""

from __future__ import annotations

import pytest

import duck_ws_sync
from duck_ws_sync import CloseCode, OpCode, State, exceptions

DUCK_CLOSE_CODES = {
    "NORMAL_CLOSURE": 1000,
    "GOING_AWAY": 1001,
    "PROTOCOL_ERROR": 1002,
    "UNSUPPORTED_DATA": 1003,
    "NO_STATUS_RCVD": 1005,
    "ABNORMAL_CLOSURE": 1006,
    "INVALID_DATA": 1007,
    "POLICY_VIOLATION": 1008,
    "MESSAGE_TOO_BIG": 1009,
    "MANDATORY_EXTENSION": 1010,
    "INTERNAL_ERROR": 1011,
    "SERVICE_RESTART": 1012,
    "TRY_AGAIN_LATER": 1013,
    "BAD_GATEWAY": 1014,
    "TLS_HANDSHAKE": 1015,
}


def test_opcodes_match_duck():
    assert {member.name: member.value for member in OpCode} == {
        "CONTINUATION": 0,
        "TEXT": 1,
        "BINARY": 2,
        "CLOSE": 8,
        "PING": 9,
        "PONG": 10,
    }
    assert duck_ws_sync.CONTROL_OPCODES == (OpCode.CLOSE, OpCode.PING, OpCode.PONG)
    assert duck_ws_sync.DATA_OPCODES == (OpCode.CONTINUATION, OpCode.TEXT, OpCode.BINARY)


def test_close_codes_match_duck():
    assert {member.name: member.value for member in CloseCode} == DUCK_CLOSE_CODES


def test_states_keep_duck_values():
    assert (State.OPEN, State.CLOSED, State.INITIATING, State.INITIATED) == (1, 0, -1, 2)


def test_one_exception_hierarchy():
    for name in ("ProtocolError", "PayloadTooBig", "ExtensionError", "InvalidPayloadData", "LocalProtocolError"):
        assert issubclass(getattr(duck_ws_sync, name), duck_ws_sync.WebSocketError)
    assert issubclass(duck_ws_sync.PayloadTooBig, duck_ws_sync.ProtocolError)
    assert duck_ws_sync.PayloadTooBig().close_code == 1009
    assert duck_ws_sync.ProtocolError("x", close_code=1003).close_code == 1003


def test_duck_base_exception_name_is_an_alias_not_a_shadow():
    from duck_ws_sync.exceptions import BaseException as DuckBase

    assert DuckBase is duck_ws_sync.WebSocketError
    assert "BaseException" not in vars(exceptions)
    with pytest.raises(AttributeError):
        exceptions.NoSuchName  # noqa: B018


def test_reject_carries_a_status_a_one_line_reason_and_headers():
    rejection = duck_ws_sync.Reject(401, "Log in\nfirst", [("WWW-Authenticate", "Bearer")])
    assert isinstance(rejection, duck_ws_sync.WebSocketError)
    assert (rejection.status, rejection.reason, rejection.headers) == (
        401,
        "Log in first",
        [("WWW-Authenticate", "Bearer")],
    )
    assert duck_ws_sync.Reject(403).reason == "Forbidden"
    assert duck_ws_sync.Reject(499).reason == "Refused"


@pytest.mark.parametrize("status", [101, 200, 302, 600, "401"])
def test_reject_needs_an_error_status(status):
    with pytest.raises(ValueError, match="needs an error status"):
        duck_ws_sync.Reject(status)


def test_reject_refuses_a_header_that_would_split_the_response():
    with pytest.raises(ValueError, match="line break"):
        duck_ws_sync.Reject(401, headers=[("WWW-Authenticate", "Bearer\r\nSet-Cookie: x=1")])
