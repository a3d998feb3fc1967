"""A view's hooks: ``def`` or ``async def``, anything else refused when the class is defined."""

from __future__ import annotations

import functools

import pytest

from duck_ws_sync import WebSocketView
from duck_ws_sync.hooks import HOOK_NAMES


def test_a_view_says_which_of_its_hooks_are_plain():
    class Mixed(WebSocketView):
        def authorize(self):
            pass

        async def on_open(self):
            pass

        def on_receive(self, data, opcode):
            pass

    assert Mixed._plain_hooks == frozenset({"authorize", "on_receive"})
    assert WebSocketView._plain_hooks == frozenset()


def test_a_subclass_inherits_what_its_parent_wrote():
    class Parent(WebSocketView):
        def on_receive(self, data, opcode):
            pass

    class Child(Parent):
        async def on_close(self):
            pass

    assert Child._plain_hooks == frozenset({"on_receive"})


def test_a_decorated_async_hook_stays_async():
    def logged(hook):
        @functools.wraps(hook)
        async def wrapper(self, *args):
            return await hook(self, *args)

        return wrapper

    class Decorated(WebSocketView):
        @logged
        async def on_receive(self, data, opcode):
            pass

    assert Decorated._plain_hooks == frozenset()


@pytest.mark.parametrize("name", HOOK_NAMES)
@pytest.mark.parametrize("value", [3, None, "on_receive", property(lambda self: None)])
def test_anything_but_a_function_under_a_hook_name_fails_at_class_definition(name, value):
    with pytest.raises(TypeError, match=rf"Bad\.{name} must be a function \(def or async def\)"):
        type("Bad", (WebSocketView,), {name: value})
