"""Masking (RFC 6455 §5.3): native and pure-Python implementations."""

from __future__ import annotations

import sys

import pytest

from duck_ws_sync.protocol import mask
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
    assert mask._load_native() is None
