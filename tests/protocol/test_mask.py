"""Masking (RFC 6455 §5.3): native and pure-Python implementations."""

from __future__ import annotations

import sys

import pytest

from duck_ws_sync.protocol import mask, native
from tests.helpers import xor


@pytest.mark.parametrize("function", [mask.apply_mask, mask.python_apply_mask])
@pytest.mark.parametrize("size", [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 1000, 65537])
def test_matches_the_reference(function, size):
    data = bytes((index * 7 + 3) % 256 for index in range(size))
    key = b"\x01\x80\xfe\x7f"
    assert function(data, key) == xor(data, key)
    assert function(function(data, key), key) == data


@pytest.mark.parametrize("function", [mask.apply_mask, mask.python_apply_mask])
def test_accepts_any_buffer(function):
    assert function(memoryview(b"abcdef")[1:5], b"\x00\x00\x00\x00") == b"bcde"
    assert function(bytearray(b"ab"), b"\xff\xff\xff\xff") == b"\x9e\x9d"


@pytest.mark.parametrize("function", [mask.apply_mask, mask.python_apply_mask])
def test_mask_must_be_four_bytes(function):
    with pytest.raises(ValueError):
        function(b"data", b"abc")


def test_native_extension_is_built():
    # The project is installed with its C extension; CI must exercise it.
    assert mask.IMPLEMENTATION == "native"
    assert mask.apply_mask is mask.native_apply_mask


def test_native_rejects_wrong_argument_count():
    with pytest.raises(TypeError):
        mask.native_apply_mask(b"x")  # type: ignore[misc,call-arg]


def test_fallback_when_extension_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "duck_ws_sync.protocol._speedups", None)
    assert native.load() is None


UNMASK_INTO = [mask.native_unmask_into, mask.python_unmask_into]


@pytest.mark.parametrize("function", UNMASK_INTO)
@pytest.mark.parametrize("cuts", [(0,), (1, 5), (3, 4, 9, 17), (8, 16, 1000)])
def test_unmask_into_in_pieces_matches_unmasking_at_once(function, cuts):
    payload = bytes((index * 13 + 5) % 256 for index in range(1031))
    key = b"\x9a\x01\xff\x42"
    masked = xor(payload, key)
    target = bytearray()
    bounds = [*cuts, len(masked)]
    start = 0
    for stop in bounds:
        function(target, start, memoryview(masked)[start:stop], key)
        start = stop
    assert target == payload


@pytest.mark.parametrize("function", UNMASK_INTO)
def test_unmask_into_writes_in_place_without_growing(function):
    target = bytearray(b"xxxxxxxx")
    function(target, 2, xor(b"abcdef", b"\x01\x02\x03\x04")[2:4], b"\x01\x02\x03\x04")
    assert target == bytearray(b"xxcdxxxx")


@pytest.mark.parametrize("function", UNMASK_INTO)
def test_unmask_into_refuses_bad_arguments(function):
    with pytest.raises(ValueError):
        function(bytearray(), 0, b"data", b"abc")
    with pytest.raises(ValueError):
        function(bytearray(b"ab"), 3, b"data", b"abcd")


def test_native_unmask_into_checks_its_arguments():
    with pytest.raises(TypeError):
        mask.native_unmask_into(bytearray(), 0, b"x")  # type: ignore[misc,call-arg]
    with pytest.raises(TypeError):
        mask.native_unmask_into(b"immutable", 0, b"x", b"abcd")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        mask.native_unmask_into(bytearray(), "0", b"x", b"abcd")  # type: ignore[arg-type]
    target = bytearray()
    with memoryview(target), pytest.raises(BufferError):
        mask.native_unmask_into(target, 0, b"x", b"abcd")  # a bytearray that is exported cannot grow
