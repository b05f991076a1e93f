"""Fixtures shared by the API tests that talk to a fake SRS HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api.test_reconcile import FakeSRS


@pytest.fixture
async def srs() -> AsyncIterator[FakeSRS]:
    fake = FakeSRS()
    await fake.start()
    yield fake
    await fake.stop()
