"""What signaling knows of a room between its changes, so that no message reads the store.

Signaling needs a room's status (is it ended?) and its owner-token hash (may this peer join as
host?) on every join, chat line and close-room. Those change only when the room changes, and
every change is heard: this process's own through :meth:`RoomService.subscribe` (the new
:class:`Room` itself replaces a kept one, :meth:`RoomCache.put`), another node's through
the bus's room notice (:meth:`RoomCache.forget`), and a bus session that ended or began
again may have missed notices (:meth:`RoomCache.clear`). So a room is read from the store once
per change, however many peers join it, and chat goes on while the store is briefly
unreachable.

Reads are single-flight: peers that join a room nobody has read yet share one store read (the
first asker reads in its own task; the others wait for its answer, and ask again if it went
away before it came). A read that started before a change was heard is not kept (a generation
per room), so a late answer never puts back what the change replaced, nor is it the answer:
the askers get the room the change kept, or read it again. The cache holds at most ``size``
rooms and drops the least recently used; a dropped room is read again when asked.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from livehub.domain.room import Room

#: rooms kept by default: signaling touches the rooms with members; the rest is read again
DEFAULT_SIZE = 10_000
#: reads of a room that keeps changing while it is read before the last one is taken as it is
STALE_READS = 3


class RoomCache:
    def __init__(
        self,
        read: Callable[[str], Awaitable[Room]],
        *,
        size: int = DEFAULT_SIZE,
        keeps: Callable[[str], bool] = lambda room_id: True,
    ) -> None:
        """``keeps(room_id)``: whether the room's changes are heard now (a room read while
        they are not is the answer, but is not kept: nothing would tell that it changed)."""
        self._read = read
        self._size = size
        self._keeps = keeps
        self._rooms: OrderedDict[str, Room] = OrderedDict()
        #: room id -> the askers waiting for the read in flight (made by the first asker): its
        #: room and whether it is fresh, or None if it went away
        self._reads: dict[str, list[asyncio.Future[tuple[Room, bool] | None]]] = {}
        #: room id -> changes heard while its read is in flight
        self._generation: dict[str, int] = {}
        self._epoch = 0
        #: store reads made (for tests and metrics: once per room per change)
        self.reads = 0

    async def get(self, room_id: str) -> Room:
        """The room as of its last change (read from the store only when not known); raises
        what the read raises (``RoomNotFound``, the store being unreachable)."""
        stale: Room | None = None
        for _ in range(STALE_READS):
            room = self._rooms.get(room_id)
            if room is not None:
                self._rooms.move_to_end(room_id)
                return room
            waiters = self._reads.get(room_id)
            if waiters is None:  # the first asker reads, in its own task
                room, fresh = await self._load(room_id)
                if fresh:
                    return room
                stale = room
                continue  # changed while it was read: the kept room, or read it again
            waiter: asyncio.Future[tuple[Room, bool] | None]
            waiter = asyncio.get_running_loop().create_future()
            waiters.append(waiter)
            shared = await waiter
            if shared is not None:
                room, fresh = shared
                if fresh:
                    return room
                stale = room
            # the reader went away before its answer, or it was stale: ask again
        if stale is None:  # readers kept going away: read it here
            room, _ = await self._load(room_id)
            return room
        return stale  # the room changes all the time: the last read

    def peek(self, room_id: str) -> Room | None:
        """The room if it is kept (no read): the same object as long as it has not changed."""
        return self._rooms.get(room_id)

    async def _load(self, room_id: str) -> tuple[Room, bool]:
        waiters: list[asyncio.Future[tuple[Room, bool] | None]] = []
        self._reads[room_id] = waiters
        generation, epoch = self._generation.get(room_id, 0), self._epoch
        self.reads += 1
        try:
            room = await self._read(room_id)
        except Exception as exc:
            self._read_ended(room_id)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        except BaseException:  # cancelled: the others ask again
            self._read_ended(room_id)
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            raise
        heard = self._read_ended(room_id) != generation or self._epoch != epoch
        if not heard and self._keeps(room_id):
            self._keep(room)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result((room, not heard))  # stale: they ask again
        return room, not heard

    def _read_ended(self, room_id: str) -> int:
        """Forget the read in flight; the changes heard meanwhile."""
        del self._reads[room_id]
        return self._generation.pop(room_id, 0)

    def put(self, room: Room) -> None:
        """This process changed the room: the new state replaces the kept one, no read
        needed. A room nobody asked for is not taken in (a burst of creates would otherwise
        fill the cache, and the garbage collector's passes, with rooms no peer joins): it is
        read once when first asked. A room older than the kept one (its writer was slow to
        tell) changes nothing."""
        kept = self._rooms.get(room.id)
        if kept is not None and kept.version > room.version:
            return  # a writer that waited tells of a change the kept room already has
        if kept is not None or room.id in self._reads:
            self._bump(room.id)
            if self._keeps(room.id):
                self._keep(room)
            else:
                self._rooms.pop(room.id, None)

    def forget(self, room_id: str) -> None:
        """Another process changed the room: read it again when next asked."""
        self._bump(room_id)
        self._rooms.pop(room_id, None)

    def clear(self) -> None:
        """Changes may have gone unheard (the bus's session ended or began): forget them all."""
        self._epoch += 1
        self._rooms.clear()

    def __len__(self) -> int:
        return len(self._rooms)

    def _bump(self, room_id: str) -> None:
        """A change heard while the room is being read: that read is stale when it answers."""
        if room_id in self._reads:
            self._generation[room_id] = self._generation.get(room_id, 0) + 1

    def _keep(self, room: Room) -> None:
        self._rooms[room.id] = room
        self._rooms.move_to_end(room.id)
        while len(self._rooms) > self._size:
            self._rooms.popitem(last=False)
