"""The opening handshake (RFC 6455 §4.2) and the header parsers it relies on.

Requests are built from header pairs and checked against the exact response;
nothing here opens a socket.
"""

from __future__ import annotations

import re

import pytest

from duck_ws_sync.exceptions import WebSocketError
from duck_ws_sync.protocol import PerMessageDeflate
from duck_ws_sync.protocol.handshake import (
    MAGIC_STRING,
    HandshakeResult,
    InvalidHandshake,
    Request,
    Response,
    ServerHandshake,
    accept_key,
    origin_allowed,
)
from duck_ws_sync.protocol.headers import HeaderFormatError, Headers, parse_extensions, split_list

# RFC 6455 §1.3: the example key and the accept value it yields.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

VALID_HEADERS = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]

OPENING_HEADERS = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", ACCEPT)]


def make_request(
    *,
    method: str = "GET",
    http_version: str = "HTTP/1.1",
    without: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
) -> Request:
    """A valid handshake request, minus the headers named in ``without``, plus ``extra``."""
    dropped = {name.lower() for name in without}
    items = [(name, value) for name, value in VALID_HEADERS if name.lower() not in dropped]
    return Request(method, "/chat?room=1", Headers([*items, *extra]), http_version)


def replacing(name: str, *values: str) -> Request:
    """A valid request whose ``name`` header has exactly ``values`` (none: absent)."""
    return make_request(without=(name,), extra=tuple((name, value) for value in values))


def with_origin(*origins: str) -> Request:
    return make_request(extra=tuple(("Origin", origin) for origin in origins))


def accept(request: Request, **policy) -> HandshakeResult:
    return ServerHandshake(**policy).accept(request)


def header_values(response: Response, name: str) -> list[str]:
    return [value for key, value in response.headers if key.lower() == name.lower()]


def assert_rejected(result: HandshakeResult, status: int) -> Response:
    """The result refuses the request with ``status`` and a short plain-text body."""
    response = result.response
    assert not result.accepted
    assert isinstance(result.error, InvalidHandshake)
    assert result.error.status == status
    assert response.status == status
    assert response.headers[:3] == [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(response.body))),
        ("Connection", "close"),
    ]
    assert response.body == f"{result.error.reason}\n".encode()
    assert 0 < len(response.body) < 200
    assert header_values(response, "Sec-WebSocket-Accept") == []
    assert result.subprotocol is None
    assert result.extensions == []
    return response


def assert_accepted(result: HandshakeResult) -> Response:
    assert result.accepted
    assert result.error is None
    assert result.response.status == 101
    assert result.response.body == b""
    return result.response


# RFC 6455 §1.3 and §4.2.2: Sec-WebSocket-Accept.


class TestAcceptKey:
    def test_rfc_example_key(self):
        assert accept_key(KEY) == ACCEPT

    def test_magic_string_is_the_rfc_guid(self):
        assert MAGIC_STRING == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# RFC 6455 §4.2.2: the server's opening response.


class TestOpeningResponse:
    def test_valid_request_is_accepted_with_101(self):
        result = accept(make_request())
        assert assert_accepted(result).headers == OPENING_HEADERS
        assert result.subprotocol is None
        assert result.extensions == []

    def test_101_has_no_content_type(self):
        response = accept(make_request()).response
        assert header_values(response, "Content-Type") == []

    def test_101_serializes_exactly(self):
        assert accept(make_request()).response.serialize() == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"\r\n"
        )

    def test_101_status_line(self):
        assert accept(make_request()).response.status_line == "101 Switching Protocols"

    def test_accept_value_follows_the_key(self):
        key = "AQIDBAUGBwgJCgsMDQ4PEA=="
        response = accept(replacing("Sec-WebSocket-Key", key)).response
        assert header_values(response, "Sec-WebSocket-Accept") == [accept_key(key)]

    def test_header_names_are_case_insensitive(self):
        headers = Headers([(name.upper(), value) for name, value in VALID_HEADERS])
        assert accept(Request("GET", "/", headers)).accepted

    def test_response_without_body_serializes_to_head_only(self):
        assert Response(204, [("X-A", "1")]).serialize() == b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"

    def test_a_status_without_a_name_gets_a_neutral_phrase(self):
        assert Response(499, []).status_line == "499 Unknown"


# RFC 6455 §4.2.2 item 1 and §4.4: refusing a request.


class TestRejectionResponse:
    def test_rejection_serializes_exactly(self):
        response = accept(make_request(method="POST")).response
        assert response.serialize() == (
            b"HTTP/1.1 405 Method Not Allowed\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 43\r\n"
            b"Connection: close\r\n"
            b"Allow: GET\r\n"
            b"\r\n"
            b"WebSocket handshake must use GET, not POST\n"
        )

    def test_rejection_status_line(self):
        assert accept(replacing("Upgrade")).response.status_line == "426 Upgrade Required"

    def test_invalid_handshake_response_lists_extra_headers_last(self):
        response = InvalidHandshake(418, "no", [("X-A", "1")]).response()
        assert response.headers[-1] == ("X-A", "1")
        assert response.body == b"no\n"

    def test_invalid_handshake_is_a_websocket_error(self):
        error = InvalidHandshake(400, "bad")
        assert isinstance(error, WebSocketError)
        assert str(error) == "bad"
        assert error.headers == []

    def test_reject_builds_a_refusing_result(self):
        error = InvalidHandshake(403, "go away")
        result = ServerHandshake.reject(error)
        assert result.error is error
        assert_rejected(result, 403)


# RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request".


class TestMethodAndVersion:
    def test_post_is_refused_with_405_and_allow_get(self):
        response = assert_rejected(accept(make_request(method="POST")), 405)
        assert header_values(response, "Allow") == ["GET"]

    def test_lowercase_get_is_refused(self):
        """Methods are case-sensitive (RFC 7230 §3.1.1)."""
        assert_rejected(accept(make_request(method="get")), 405)

    def test_http_1_0_is_refused_with_400(self):
        assert_rejected(accept(make_request(http_version="HTTP/1.0")), 400)

    @pytest.mark.parametrize("version", ["HTTP/2", "HTTP/1", "http/1.1", "HTTP/1.01", "HTTP/1.1 "])
    def test_malformed_http_version_is_refused_with_400(self, version):
        assert_rejected(accept(make_request(http_version=version)), 400)

    @pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.2", "HTTP/1.10"])
    def test_http_1_1_or_higher_is_accepted(self, version):
        assert accept(make_request(http_version=version)).accepted


# RFC 6455 §4.2.1 item 2: a Host header field.


class TestHost:
    def test_missing_host_is_refused_with_400(self):
        assert_rejected(accept(replacing("Host")), 400)

    def test_two_host_headers_are_refused_with_400(self):
        assert_rejected(accept(replacing("Host", "example.com", "example.com")), 400)

    def test_blank_host_is_refused_with_400(self):
        assert_rejected(accept(replacing("Host", "  ")), 400)


# RFC 6455 §4.2.1 item 3: Upgrade containing "websocket" (case-insensitive).


class TestUpgrade:
    def test_missing_upgrade_is_refused_with_426_and_upgrade_websocket(self):
        response = assert_rejected(accept(replacing("Upgrade")), 426)
        assert header_values(response, "Upgrade") == ["websocket"]

    def test_other_protocol_is_refused_with_426(self):
        assert_rejected(accept(replacing("Upgrade", "h2c")), 426)

    def test_empty_upgrade_is_refused_with_426(self):
        assert_rejected(accept(replacing("Upgrade", "")), 426)

    def test_upgrade_token_is_case_insensitive(self):
        assert accept(replacing("Upgrade", "WebSocket")).accepted

    def test_upgrade_token_found_in_a_comma_list(self):
        assert accept(replacing("Upgrade", "foo, WebSocket")).accepted

    def test_upgrade_token_found_in_a_repeated_header(self):
        assert accept(replacing("Upgrade", "foo", "websocket")).accepted


# RFC 6455 §4.2.1 item 4: Connection containing "Upgrade" (case-insensitive).


class TestConnection:
    def test_missing_connection_is_refused_with_400(self):
        assert_rejected(accept(replacing("Connection")), 400)

    def test_connection_without_upgrade_is_refused_with_400(self):
        assert_rejected(accept(replacing("Connection", "keep-alive")), 400)

    def test_upgrade_inside_another_token_is_not_enough(self):
        assert_rejected(accept(replacing("Connection", "keep-alive-upgrade")), 400)

    def test_connection_token_in_a_comma_list(self):
        assert accept(replacing("Connection", "keep-alive, Upgrade")).accepted

    def test_connection_token_is_case_insensitive(self):
        assert accept(replacing("Connection", "UPGRADE")).accepted

    def test_connection_token_in_a_repeated_header(self):
        assert accept(replacing("Connection", "keep-alive", "upgrade")).accepted


# RFC 6455 §4.2.1 item 6 and §4.4: Sec-WebSocket-Version 13.


class TestVersion:
    @pytest.mark.parametrize("version", ["99", "8", "", "13, 8", "13 "])
    def test_other_version_is_refused_with_426_and_version_13(self, version):
        response = assert_rejected(accept(replacing("Sec-WebSocket-Version", version)), 426)
        assert header_values(response, "Sec-WebSocket-Version") == ["13"]

    def test_missing_version_is_refused_with_426(self):
        response = assert_rejected(accept(replacing("Sec-WebSocket-Version")), 426)
        assert header_values(response, "Sec-WebSocket-Version") == ["13"]
        assert b"none" in response.body

    def test_two_version_headers_are_refused_with_426(self):
        response = assert_rejected(accept(replacing("Sec-WebSocket-Version", "13", "13")), 426)
        assert header_values(response, "Sec-WebSocket-Version") == ["13"]


# RFC 6455 §4.2.1 item 5 and §4.1: Sec-WebSocket-Key, base64 of 16 bytes.


class TestKey:
    @pytest.mark.parametrize(
        "key",
        [
            pytest.param("AQIDBAUGBwgJCgsMDQ4P", id="15-bytes"),
            pytest.param("AQIDBAUGBwgJCgsMDQ4PEBE=", id="17-bytes"),
            pytest.param("", id="empty"),
            pytest.param("!!!!!!!!!!!!!!!!!!!!!!==", id="not-base64"),
            pytest.param("dGhlIHNhbXBsZSBub25jZQ", id="missing-padding"),
            pytest.param(" dGhlIHNhbXBsZSBub25jZQ==", id="whitespace"),
            pytest.param("dGhlIHNhbXBsZSBub25jZQé=", id="non-ascii"),
        ],
    )
    def test_invalid_key_is_refused_with_400(self, key):
        assert_rejected(accept(replacing("Sec-WebSocket-Key", key)), 400)

    def test_missing_key_is_refused_with_400(self):
        assert_rejected(accept(replacing("Sec-WebSocket-Key")), 400)

    def test_two_key_headers_are_refused_with_400(self):
        assert_rejected(accept(replacing("Sec-WebSocket-Key", KEY, KEY)), 400)


# RFC 6455 §4.2.1 item 7 and §10.2: the Origin policy, same origin by default.


class TestSameOrigin:
    def test_unknown_scheme_without_port_is_refused(self):
        assert not origin_allowed("foo://example.com", "example.com", None)

    def test_unknown_scheme_with_matching_port_is_allowed(self):
        assert origin_allowed("foo://example.com:9000", "example.com:9000", None)

    def test_explicit_port_zero_is_not_the_default_port(self):
        assert not origin_allowed("https://example.com:0", "example.com", None)

    def test_long_refused_origin_is_shortened_in_the_reason(self):
        result = accept(with_origin("https://" + "x" * 300 + ".example"))
        assert_rejected(result, 403)
        assert result.error.reason.endswith("... is not allowed")

    def test_long_unsupported_version_is_shortened_in_the_reason(self):
        assert_rejected(accept(replacing("Sec-WebSocket-Version", "9" * 300)), 426)

    def test_matching_scheme_default_port(self):
        assert origin_allowed("https://example.com", "example.com", None)

    def test_http_origin_with_default_port(self):
        assert origin_allowed("http://example.com", "example.com", None)

    def test_origin_explicit_port_equals_host_port(self):
        assert origin_allowed("http://example.com:8080", "example.com:8080", None)

    def test_origin_port_differs_from_default_host_port(self):
        assert not origin_allowed("http://example.com:8080", "example.com", None)

    def test_host_port_equals_origin_default_port(self):
        assert origin_allowed("https://example.com", "example.com:443", None)

    def test_host_port_differs_from_origin_default_port(self):
        assert not origin_allowed("https://example.com", "example.com:80", None)

    def test_host_is_compared_case_insensitively(self):
        assert origin_allowed("https://EXAMPLE.com", "Example.COM", None)

    def test_other_site_is_refused(self):
        assert not origin_allowed("https://evil.example", "example.com", None)


class TestSameOriginWithAKnownScheme:
    """The scheme the client used, known from a trusted proxy, is compared too."""

    @pytest.mark.parametrize("scheme", ["https", "wss", "HTTPS"])
    def test_a_secure_page_for_a_secure_request(self, scheme):
        assert origin_allowed("https://example.com", "example.com", None, scheme)

    def test_host_port_defaults_by_the_request_scheme(self):
        assert origin_allowed("https://example.com:443", "example.com", None, "https")
        assert not origin_allowed("https://example.com", "example.com", None, "http")

    def test_a_plain_page_for_a_secure_request_is_another_origin(self):
        assert not origin_allowed("http://example.com:443", "example.com:443", None, "https")
        assert not origin_allowed("http://example.com", "example.com", None, "https")

    def test_an_unknown_request_scheme_allows_nothing(self):
        assert not origin_allowed("https://example.com", "example.com", None, "gopher")

    def test_the_handshake_uses_the_request_scheme(self):
        secure = Request("GET", "/", Headers([*VALID_HEADERS, ("Origin", "https://example.com")]), scheme="https")
        assert accept(secure).accepted
        plain = Request("GET", "/", Headers([*VALID_HEADERS, ("Origin", "https://example.com")]), scheme="http")
        assert_rejected(accept(plain), 403)

    def test_subdomain_is_refused(self):
        assert not origin_allowed("https://sub.example.com", "example.com", None)

    def test_null_origin_is_refused(self):
        assert not origin_allowed("null", "example.com", None)

    def test_garbage_origin_is_refused(self):
        assert not origin_allowed("not an origin", "example.com", None)

    def test_invalid_origin_port_is_refused(self):
        assert not origin_allowed("https://example.com:99999", "example.com", None)

    def test_non_numeric_origin_port_is_refused(self):
        assert not origin_allowed("https://example.com:https", "example.com", None)

    def test_invalid_host_port_is_refused(self):
        assert not origin_allowed("https://example.com", "example.com:abc", None)

    def test_ipv6_origin(self):
        assert origin_allowed("http://[::1]:8080", "[::1]:8080", None)


class TestConfiguredOrigins:
    def test_exact_origin_is_allowed(self):
        assert origin_allowed("https://app.example.com", "api.example.com", ["https://app.example.com"])

    def test_exact_origin_ignores_case(self):
        assert origin_allowed("https://App.Example.com", "example.com", ["https://app.EXAMPLE.com"])

    def test_unlisted_origin_is_refused(self):
        assert not origin_allowed("https://evil.example", "example.com", ["https://app.example.com"])

    def test_configured_list_replaces_same_origin(self):
        assert not origin_allowed("https://example.com", "example.com", ["https://app.example.com"])

    def test_empty_list_refuses_every_origin(self):
        assert not origin_allowed("https://example.com", "example.com", [])

    def test_glob_pattern_matches_subdomains(self):
        assert origin_allowed("https://app.example.com", "example.com", ["https://*.example.com"])

    def test_glob_pattern_refuses_lookalike_domain(self):
        assert not origin_allowed("https://evilexample.com", "example.com", ["https://*.example.com"])

    def test_glob_pattern_refuses_other_scheme(self):
        assert not origin_allowed("http://app.example.com", "example.com", ["https://*.example.com"])

    def test_question_mark_matches_one_character(self):
        assert origin_allowed("https://a1.example.com", "example.com", ["https://a?.example.com"])
        assert not origin_allowed("https://a12.example.com", "example.com", ["https://a?.example.com"])

    def test_exact_ipv6_origin_is_allowed(self):
        """Only ``*`` and ``?`` are wildcards: ``[::1]`` is an IPv6 literal, not a character class."""
        assert origin_allowed("http://[::1]:8080", "[::1]:8080", ["http://[::1]:8080"])

    def test_brackets_are_not_a_character_class(self):
        assert not origin_allowed("http://1:8080", "1:8080", ["http://[::1]:8080"])

    def test_regex_must_match_in_full(self):
        pattern = re.compile(r"https://[a-z]+\.example\.com")
        assert origin_allowed("https://app.example.com", "example.com", [pattern])
        assert not origin_allowed("https://app.example.com.evil.example", "example.com", [pattern])

    def test_later_pattern_may_allow_after_earlier_ones_fail(self):
        allowed = [re.compile(r"https://a\.example"), "https://b.example", "https://c.example"]
        assert origin_allowed("https://c.example", "example.com", allowed)

    def test_star_allows_any_origin(self):
        assert origin_allowed("https://anything.example", "example.com", ["*"])
        assert origin_allowed("null", "example.com", ["*"])


class TestOriginInHandshake:
    def test_no_origin_header_is_allowed(self):
        """Non-browser clients send no Origin; there is no browser to protect."""
        assert accept(make_request(), allowed_origins=["https://app.example.com"]).accepted

    def test_same_origin_is_accepted_by_default(self):
        assert accept(with_origin("https://example.com")).accepted

    def test_cross_origin_is_refused_with_403(self):
        assert_rejected(accept(with_origin("https://evil.example")), 403)

    def test_refused_origin_is_named_in_the_body(self):
        response = assert_rejected(accept(with_origin("https://evil.example")), 403)
        assert b"https://evil.example" in response.body

    def test_null_origin_is_refused_with_403(self):
        assert_rejected(accept(with_origin("null")), 403)

    def test_two_origin_headers_are_refused_with_400(self):
        assert_rejected(accept(with_origin("https://example.com", "https://example.com")), 400)

    def test_host_is_stripped_before_comparison(self):
        request = make_request(without=("Host",), extra=(("Host", " example.com "), ("Origin", "https://example.com")))
        assert accept(request).accepted

    def test_configured_exact_origin(self):
        allowed = ["https://app.example.com"]
        assert accept(with_origin("https://app.example.com"), allowed_origins=allowed).accepted
        assert_rejected(accept(with_origin("https://example.com"), allowed_origins=allowed), 403)

    def test_configured_glob(self):
        allowed = ["https://*.example.com"]
        assert accept(with_origin("https://app.example.com"), allowed_origins=allowed).accepted
        assert_rejected(accept(with_origin("https://evil.example"), allowed_origins=allowed), 403)

    def test_configured_regex(self):
        allowed = [re.compile(r"https://(app|admin)\.example\.com")]
        assert accept(with_origin("https://admin.example.com"), allowed_origins=allowed).accepted
        assert_rejected(accept(with_origin("https://admin.example.com.evil"), allowed_origins=allowed), 403)

    def test_configured_star(self):
        assert accept(with_origin("https://evil.example"), allowed_origins=["*"]).accepted


# RFC 6455 §4.2.2 item 5 (/subprotocol/) and §11.3.4: Sec-WebSocket-Protocol.


class TestSubprotocols:
    def test_server_preference_wins(self):
        request = make_request(extra=(("Sec-WebSocket-Protocol", "chat, chat.v2"),))
        result = accept(request, subprotocols=["chat.v2", "chat"])
        assert result.subprotocol == "chat.v2"
        assert assert_accepted(result).headers == [*OPENING_HEADERS, ("Sec-WebSocket-Protocol", "chat.v2")]

    def test_offers_across_repeated_headers(self):
        request = make_request(extra=(("Sec-WebSocket-Protocol", "soap"), ("Sec-WebSocket-Protocol", "chat")))
        assert accept(request, subprotocols=["chat"]).subprotocol == "chat"

    def test_no_common_subprotocol_sends_no_header(self):
        request = make_request(extra=(("Sec-WebSocket-Protocol", "soap, wamp"),))
        result = accept(request, subprotocols=["chat"])
        assert result.subprotocol is None
        assert assert_accepted(result).headers == OPENING_HEADERS

    def test_client_offering_none_gets_none(self):
        result = accept(make_request(), subprotocols=["chat"])
        assert result.subprotocol is None
        assert header_values(result.response, "Sec-WebSocket-Protocol") == []

    def test_server_supporting_none_picks_none(self):
        result = accept(make_request(extra=(("Sec-WebSocket-Protocol", "chat"),)))
        assert result.subprotocol is None
        assert header_values(result.response, "Sec-WebSocket-Protocol") == []

    def test_select_subprotocol_directly(self):
        handshake = ServerHandshake(subprotocols=["b", "a"])
        assert handshake.select_subprotocol(Headers([("sec-websocket-protocol", "a,b")])) == "b"
        assert handshake.select_subprotocol(Headers()) is None


# RFC 6455 §9.1 and RFC 7692 §5: Sec-WebSocket-Extensions in the handshake.


class TestExtensionsInHandshake:
    def deflate_result(self, *offers: str) -> tuple[PerMessageDeflate, HandshakeResult]:
        configured = PerMessageDeflate()
        request = make_request(extra=tuple(("Sec-WebSocket-Extensions", offer) for offer in offers))
        return configured, accept(request, extensions=[configured])

    def test_deflate_offer_is_agreed(self):
        configured, result = self.deflate_result("permessage-deflate; client_max_window_bits")
        response = assert_accepted(result)
        [agreed] = result.extensions
        assert isinstance(agreed, PerMessageDeflate)
        assert agreed is not configured
        assert response.headers == [*OPENING_HEADERS, ("Sec-WebSocket-Extensions", agreed.response_params())]
        assert agreed.response_params().startswith("permessage-deflate")

    def test_unknown_extension_is_ignored(self):
        _, result = self.deflate_result("x-webkit-deflate-frame")
        assert assert_accepted(result).headers == OPENING_HEADERS
        assert result.extensions == []

    def test_unknown_extension_before_deflate_is_skipped(self):
        _, result = self.deflate_result("x-webkit-deflate-frame, permessage-deflate")
        assert [extension.name for extension in result.extensions] == ["permessage-deflate"]
        assert len(header_values(result.response, "Sec-WebSocket-Extensions")) == 1

    def test_offer_in_a_second_header_is_agreed(self):
        _, result = self.deflate_result("x-foo", "permessage-deflate")
        assert [extension.name for extension in result.extensions] == ["permessage-deflate"]

    def test_no_offer_sends_no_header(self):
        _, result = self.deflate_result()
        assert assert_accepted(result).headers == OPENING_HEADERS
        assert result.extensions == []

    def test_offer_to_a_server_without_extensions_is_ignored(self):
        result = accept(make_request(extra=(("Sec-WebSocket-Extensions", "permessage-deflate"),)))
        assert assert_accepted(result).headers == OPENING_HEADERS
        assert result.extensions == []

    def test_malformed_header_is_refused_with_400(self):
        _, result = self.deflate_result("permessage-deflate; =15")
        assert_rejected(result, 400)

    def test_malformed_header_is_ignored_by_a_server_without_extensions(self):
        result = accept(make_request(extra=(("Sec-WebSocket-Extensions", "permessage-deflate; =15"),)))
        assert assert_accepted(result).headers == OPENING_HEADERS

    def test_request_errors_come_before_extension_errors(self):
        request = make_request(method="POST", extra=(("Sec-WebSocket-Extensions", ";;"),))
        assert_rejected(accept(request, extensions=[PerMessageDeflate()]), 405)


# RFC 7230 §3.2: header field names are case-insensitive; repeats are kept.


class TestHeaders:
    headers = Headers([("Host", "example.com"), ("X-Tag", "a"), ("x-tag", "b")])

    def test_get_is_case_insensitive(self):
        assert self.headers.get("HOST") == "example.com"

    def test_get_joins_repeated_values(self):
        assert self.headers.get("X-TAG") == "a, b"

    def test_get_missing_returns_none(self):
        assert self.headers.get("Origin") is None

    def test_get_missing_returns_default(self):
        assert self.headers.get("Origin", "none") == "none"

    def test_get_all_keeps_order(self):
        assert self.headers.get_all("x-TAG") == ["a", "b"]

    def test_get_all_missing_is_empty(self):
        assert self.headers.get_all("Origin") == []

    def test_contains_is_case_insensitive(self):
        assert "host" in self.headers
        assert "X-TAG" in self.headers

    def test_contains_missing(self):
        assert "Origin" not in self.headers

    def test_contains_non_string_is_false(self):
        assert 42 not in self.headers
        assert ("Host", "example.com") not in self.headers

    def test_iter_yields_pairs_as_received(self):
        assert list(self.headers) == [("Host", "example.com"), ("X-Tag", "a"), ("x-tag", "b")]

    def test_len_counts_repeated_names(self):
        assert len(self.headers) == 3

    def test_repr(self):
        assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"

    def test_empty_by_default(self):
        assert len(Headers()) == 0
        assert list(Headers()) == []

    def test_accepts_any_iterable(self):
        assert Headers(pair for pair in [("A", "1")]).get("a") == "1"


# RFC 7230 §7: comma-separated lists.


class TestSplitList:
    def test_single_value(self):
        assert split_list(["websocket"]) == ["websocket"]

    def test_comma_list(self):
        assert split_list(["keep-alive, Upgrade"]) == ["keep-alive", "Upgrade"]

    def test_values_are_concatenated(self):
        assert split_list(["a, b", "c"]) == ["a", "b", "c"]

    def test_whitespace_around_elements_is_dropped(self):
        assert split_list(["  a ,\tb\t,c  "]) == ["a", "b", "c"]

    def test_empty_elements_are_ignored(self):
        assert split_list([", a,, ,b ,", "", " "]) == ["a", "b"]

    def test_no_values(self):
        assert split_list([]) == []


# RFC 6455 §9.1: the Sec-WebSocket-Extensions grammar.


class TestParseExtensions:
    def test_name_without_params(self):
        assert parse_extensions(["permessage-deflate"]) == [("permessage-deflate", [])]

    def test_param_without_value(self):
        assert parse_extensions(["permessage-deflate; client_max_window_bits"]) == [
            ("permessage-deflate", [("client_max_window_bits", None)])
        ]

    def test_param_with_token_value(self):
        assert parse_extensions(["permessage-deflate; server_max_window_bits=10"]) == [
            ("permessage-deflate", [("server_max_window_bits", "10")])
        ]

    def test_params_keep_order_and_repeats(self):
        assert parse_extensions(["x; a=1; b; a=2"]) == [("x", [("a", "1"), ("b", None), ("a", "2")])]

    def test_quoted_value_is_unquoted(self):
        assert parse_extensions(['x; a="10"']) == [("x", [("a", "10")])]

    def test_quoted_value_may_hold_separators(self):
        assert parse_extensions(['x; a="1, 2; b=3"']) == [("x", [("a", "1, 2; b=3")])]

    def test_backslash_escapes_are_removed(self):
        assert parse_extensions([r'x; a="q\"u\\o\te"']) == [("x", [("a", 'q"u\\ote')])]

    def test_empty_quoted_value(self):
        assert parse_extensions(['x; a=""']) == [("x", [("a", "")])]

    def test_several_offers_in_one_value(self):
        assert parse_extensions(["permessage-deflate; client_max_window_bits, permessage-deflate, x-foo"]) == [
            ("permessage-deflate", [("client_max_window_bits", None)]),
            ("permessage-deflate", []),
            ("x-foo", []),
        ]

    def test_offers_across_values(self):
        assert parse_extensions(["a; p=1", "b, c"]) == [("a", [("p", "1")]), ("b", []), ("c", [])]

    def test_whitespace_around_separators(self):
        assert parse_extensions(["  a ;p = 1\t;\tq ,  b  "]) == [("a", [("p", "1"), ("q", None)]), ("b", [])]

    def test_empty_list_elements_are_ignored(self):
        assert parse_extensions([", ,a,,\t,b,"]) == [("a", []), ("b", [])]

    @pytest.mark.parametrize("value", ["", "   ", ",", " , ,\t"])
    def test_empty_values_hold_no_offers(self, value):
        assert parse_extensions([value]) == []

    def test_no_values(self):
        assert parse_extensions([]) == []

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(";a", id="missing-name"),
            pytest.param('"x"', id="quoted-name"),
            pytest.param("x y", id="two-names-without-comma"),
            pytest.param("x=1", id="value-on-name"),
            pytest.param("x;", id="trailing-semicolon"),
            pytest.param("x;;a", id="empty-param"),
            pytest.param("x; =1", id="missing-param-name"),
            pytest.param("x; a=", id="missing-value"),
            pytest.param("x; a=@", id="non-token-value"),
            pytest.param("x; a=1 2", id="two-values"),
            pytest.param("x; a=b=c", id="double-equals"),
            pytest.param('x; a="open', id="unterminated-quote"),
            pytest.param('x; a="b\\"', id="escaped-closing-quote"),
            pytest.param('x; a="b"c', id="text-after-quote"),
            pytest.param("x, ;a", id="second-offer-missing-name"),
            pytest.param("é", id="non-ascii-name"),
        ],
    )
    def test_malformed_value_raises(self, value):
        with pytest.raises(HeaderFormatError):
            parse_extensions([value])

    def test_malformed_second_value_raises(self):
        with pytest.raises(HeaderFormatError):
            parse_extensions(["permessage-deflate", "x y"])

    def test_header_format_error_is_a_value_error(self):
        assert issubclass(HeaderFormatError, ValueError)


# Regressions for the Duck 2.3.2 defects this package replaces.


def test_duck_defect_1_cross_site_origin_refused():
    assert_rejected(accept(with_origin("https://attacker.example")), 403)
    assert not origin_allowed("https://attacker.example", "example.com", None)


def test_duck_defect_3_version_99_is_426():
    response = assert_rejected(accept(replacing("Sec-WebSocket-Version", "99")), 426)
    assert header_values(response, "Sec-WebSocket-Version") == ["13"]


def test_duck_defect_3_missing_connection_upgrade_refused():
    assert_rejected(accept(replacing("Connection", "keep-alive")), 400)
    assert_rejected(accept(replacing("Connection")), 400)


def test_duck_defect_3_key_validated():
    assert_rejected(accept(replacing("Sec-WebSocket-Key", "not-a-key")), 400)
    assert_rejected(accept(replacing("Sec-WebSocket-Key", "AQIDBAUGBwgJCgsMDQ4P")), 400)


def test_duck_defect_3_subprotocols_negotiated():
    request = make_request(extra=(("Sec-WebSocket-Protocol", "v1.chat, v2.chat"),))
    result = accept(request, subprotocols=["v2.chat"])
    assert result.subprotocol == "v2.chat"
    assert header_values(result.response, "Sec-WebSocket-Protocol") == ["v2.chat"]


def test_duck_defect_3_101_has_no_content_type():
    result = accept(make_request(extra=(("Sec-WebSocket-Protocol", "chat"),)), subprotocols=["chat"])
    assert assert_accepted(result).status == 101
    assert header_values(result.response, "Content-Type") == []
    assert b"content-type" not in result.response.serialize().lower()


REFUSED_REQUESTS = [
    pytest.param(make_request(method="POST"), id="post"),
    pytest.param(make_request(http_version="HTTP/1.0"), id="http-1.0"),
    pytest.param(replacing("Host"), id="no-host"),
    pytest.param(replacing("Host", "a", "b"), id="two-hosts"),
    pytest.param(replacing("Upgrade"), id="no-upgrade"),
    pytest.param(replacing("Connection", "keep-alive"), id="no-connection-upgrade"),
    pytest.param(replacing("Sec-WebSocket-Version", "99"), id="version-99"),
    pytest.param(replacing("Sec-WebSocket-Version"), id="no-version"),
    pytest.param(replacing("Sec-WebSocket-Key", "short"), id="bad-key"),
    pytest.param(replacing("Sec-WebSocket-Key"), id="no-key"),
    pytest.param(with_origin("https://attacker.example"), id="cross-origin"),
    pytest.param(with_origin("https://example.com", "https://example.com"), id="two-origins"),
    pytest.param(make_request(extra=(("Sec-WebSocket-Extensions", "permessage-deflate;"),)), id="bad-extensions"),
]


@pytest.mark.parametrize("request_", REFUSED_REQUESTS)
def test_duck_defect_2_rejection_is_short_plain_4xx(request_):
    response = ServerHandshake(extensions=[PerMessageDeflate()]).accept(request_).response
    assert 400 <= response.status < 500
    assert dict(response.headers)["Content-Type"] == "text/plain; charset=utf-8"
    assert len(response.body) < 200
    response.body.decode("utf-8")
    assert b"<" not in response.body  # plain text, not an HTML debug page
