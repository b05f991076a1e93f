"""Fixtures for the cluster engines: one throwaway Redis per test session (PostgreSQL's
``postgres_engine``, ``postgres`` and ``pg_url`` are in ``tests/conftest.py``: the webhook
queue suite uses them too).

Each test gets its own PostgreSQL database (``pg_url``) and its own Redis key prefix
(``redis_prefix``), so tests stay independent while the servers start only once. Fault tests
stop, kill and restart the session's servers; the fixtures bring them back up afterwards.
Without the Debian packages the tests skip with the reason (as the browser tests do without
Chromium); ``.ci/run`` installs them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.engines import EngineUnavailable, RedisEngine


@pytest.fixture(scope="session")
def redis_engine() -> Iterator[RedisEngine]:
    try:
        engine = RedisEngine()
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    engine.start()
    yield engine
    engine.close()


@pytest.fixture
def redis_server(redis_engine: RedisEngine) -> Iterator[RedisEngine]:
    """The session's Redis, running again after the test whatever the test did to it."""
    if redis_engine.process is None or redis_engine.process.poll() is not None:
        redis_engine.start()
    yield redis_engine
    if redis_engine.process is None or redis_engine.process.poll() is not None:
        redis_engine.start()


@pytest.fixture
def redis_prefix() -> str:
    """A key and channel prefix of this test alone."""
    return f"t{secrets.token_hex(4)}:"
