"""A leader lock on Redis: at most one node runs a singleton job (reconciliation, sweeps).

One script takes the lock (``SET key owner NX PX ttl``) or, if ``owner`` holds it already,
extends it (``PEXPIRE``), every ``ttl / 3``: a take whose reply was lost (a timeout) is still
this node's lock at the next attempt, not a lock that nobody uses for ``ttl``. When the holder
dies its key expires and another node takes it within ``ttl`` plus one renewal interval. A
holder that cannot renew (Redis unreachable) stops calling itself leader once its last
successful renewal is ``ttl`` old, so two nodes never both believe they lead for longer than
clock drift (the lock is advisory: jobs under it must still be safe to repeat, as
reconciliation and the store's conditional writes are).

Use::

    lock = LeaderLock(url, "reconcile", node_id)
    await lock.start()
    ...
    if lock.is_leader:
        await reconcile()
    ...
    await lock.close()   # releases the lock if held
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from livehub.adapters.redis import scripts
from livehub.adapters.redis.bus import SESSION_ERRORS, connect
from livehub.tasks import cancel_and_wait, pause

log = logging.getLogger(__name__)


class LeaderLock:
    def __init__(
        self,
        url: str,
        name: str,
        owner: str,
        *,
        prefix: str = "livehub:",
        ttl: float = 5.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.url = url
        self.key = f"{prefix}leader:{name}"
        self.owner = owner
        self.ttl = ttl
        self.on_change = on_change
        self._held_until = 0.0
        self._leader = False
        self._task: asyncio.Task[None] | None = None
        #: what the renewal loop stops on (with its cancellation)
        self._stop = asyncio.Event()
        self._client = connect(url, timeout=max(0.2, ttl / 3))

    @property
    def is_leader(self) -> bool:
        self._expire()
        return self._leader

    def _expire(self) -> None:
        if self._leader and time.monotonic() >= self._held_until:
            self._set(False)

    async def start(self) -> None:
        if self._task is None:
            await self._attempt()
            self._task = asyncio.create_task(self._run(), name=f"leader-{self.key}")

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._leader:
            with contextlib.suppress(*SESSION_ERRORS):
                await self._client.eval(scripts.RELEASE, 1, self.key, self.owner)
            self._set(False)
        await self._client.aclose()

    async def abandon(self) -> None:
        """Stop renewing without releasing, as a crash would (tests play dead nodes with it)."""
        self._stop.set()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        self._set(False)
        await self._client.aclose()

    def _set(self, leader: bool) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        log.info("%s leader lock %s: %s", "took" if leader else "lost", self.key, self.owner)
        if self.on_change is not None:
            try:
                self.on_change(leader)
            except Exception:
                log.exception("leader lock %s: on_change failed", self.key)

    async def _attempt(self) -> None:
        started = time.monotonic()
        ttl_ms = int(self.ttl * 1000)
        try:
            held = bool(await self._client.eval(scripts.TAKE, 1, self.key, self.owner, ttl_ms))
        except SESSION_ERRORS as exc:
            log.debug("leader lock %s: Redis unreachable (%s)", self.key, exc)
            self._expire()
            return
        if held:
            self._held_until = started + self.ttl
        self._set(held)

    async def _run(self) -> None:
        while not await pause(self._stop, self.ttl / 3):
            await self._attempt()


async def lead(lock: LeaderLock, interval: float, job: Callable[[], Awaitable[object]]) -> None:
    """Run ``job`` every ``interval`` seconds while this node holds ``lock``; forever (cancel the
    task to stop). A failing job is logged and runs again at the next interval. For the
    cluster-wide singletons: reconciliation with SRS, the reconnect-window sweep."""
    while True:
        if lock.is_leader:
            try:
                await job()
            except Exception:
                log.exception("leader job %s failed", lock.key)
        await asyncio.sleep(interval)
