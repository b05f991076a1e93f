"""The sweep: housekeeping every process runs periodically over the shared store.

It ends what is due whoever opened it: reconnect windows that passed (the process that opened
one may be gone; its local timer, :mod:`livehub.domain.windows`, is only the on-time path) and
rooms preparing longer than the TTL; and deletes ended rooms older than the retention, in
bounded batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from livehub.domain import lifecycle
from livehub.domain.lifecycle import Decision
from livehub.domain.room import Room
from livehub.domain.store import RoomStore

log = logging.getLogger(__name__)

#: rooms deleted per statement by the retention sweep, and statements per sweep at most
RETENTION_BATCH = 1000
RETENTION_BATCHES = 50

#: ends a room whose reconnect window passed (``RoomService.expire``)
Expire = Callable[[str], Awaitable[Room | None]]
#: read → decide → conditional write of one room (``RoomService``'s): the room as stored, and
#: whether it changed
Change = Callable[[Room | None, Decision], Awaitable[tuple[Room | None, bool]]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sweep:
    """What the sweep ends and deletes (0: never): the reconnect window, the preparing TTL and
    the retention of ended rooms, in milliseconds."""

    window_ms: int
    preparing_ttl_ms: int
    retention_ms: int
    clock: Callable[[], int]

    async def run(self, store: RoomStore, expire: Expire, change: Change) -> list[Room]:
        """End what is due and delete what is past the retention; the rooms ended."""
        now = self.clock()
        ended: list[Room] = []
        if self.window_ms > 0:
            for room in await store.reconnect_due(now - self.window_ms):
                done = await expire(room.id)
                if done is not None:
                    ended.append(done)
        if self.preparing_ttl_ms > 0:
            for room in await store.preparing_before(now - self.preparing_ttl_ms):
                done, changed = await change(room, lambda room: lifecycle.stale(room, self.clock))
                if changed and done is not None:
                    log.info("room %s never went live within the TTL: ended", room.id)
                    ended.append(done)
        if self.retention_ms > 0:
            # bounded batches with the loop given back in between; what is left waits for
            # the next sweep (a first sweep over a long history catches up over a few)
            deleted = 0
            for _ in range(RETENTION_BATCHES):
                batch = await store.delete_ended_before(now - self.retention_ms, RETENTION_BATCH)
                deleted += batch
                if batch < RETENTION_BATCH:
                    break
                await asyncio.sleep(0)
            if deleted:
                log.info("deleted %d rooms ended before the retention period", deleted)
        return ended
