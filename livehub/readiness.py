"""What ``/readyz`` reports, checked at most once per ``ttl`` seconds and once at a time.

``/readyz`` answers on the public port too (orchestrators on either network): without this,
anyone polling it would make livehub call SRS's API and ping the database on every request.
Requests within ``ttl`` of a check get its answer; requests during a check wait for it (one
check in flight, whatever the number of requests).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

_T = TypeVar("_T")

#: seconds a readiness answer is reused
READINESS_TTL = 1.0


class Readiness(Generic[_T]):
    def __init__(
        self,
        check: Callable[[], Awaitable[_T]],
        *,
        ttl: float = READINESS_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._clock = clock
        self._answer: _T | None = None
        self._at = 0.0
        self._pending: asyncio.Future[_T] | None = None
        #: checks made (for tests)
        self.checks = 0

    async def answer(self) -> _T:
        """The last check's answer if it is fresh, else a new check's (shared)."""
        if self._answer is not None and self._clock() - self._at < self._ttl:
            return self._answer
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._check_once())
        # shielded: a caller that goes away does not cancel the check the others wait for
        return await asyncio.shield(self._pending)

    async def _check_once(self) -> _T:
        try:
            self.checks += 1
            answer = await self._check()
            self._answer, self._at = answer, self._clock()
            return answer
        finally:
            self._pending = None
