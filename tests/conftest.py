"""Fixtures shared by the unit and the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.redis_service import RedisService, running


@pytest.fixture(scope="module")
def redis_service() -> Iterator[RedisService]:
    """A real redis-server on 127.0.0.1 for the module's tests, stopped by its process id after them."""
    with running(RedisService()) as service:
        yield service
