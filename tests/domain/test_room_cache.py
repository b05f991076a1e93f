"""The room cache signaling reads instead of the store: one read per room per change."""

from __future__ import annotations

import asyncio

import pytest

from livehub.domain.errors import RoomNotFound
from livehub.domain.room import Room, RoomStatus
from livehub.domain.room_cache import STALE_READS, RoomCache
from livehub.domain.tokens import hash_token


def room(room_id: str = "r1", status: RoomStatus = RoomStatus.PREPARING, version: int = 0) -> Room:
    return Room(
        id=room_id,
        title="cached",
        stream_key=f"stream-{room_id}",
        status=status,
        created_at=1,
        publish_token="p",
        owner_token_hash=hash_token("o"),
        version=version,
    )


class Store:
    """Answers reads with what it holds; ``gate`` holds every read until it is set."""

    def __init__(self, *rooms: Room) -> None:
        self.rooms = {r.id: r for r in rooms}
        self.reads: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False
        #: set when a read reaches the store
        self.asked = asyncio.Event()

    async def read(self, room_id: str) -> Room:
        self.reads.append(room_id)
        found = self.rooms.get(room_id)  # what the read sees: its answer may come later
        self.asked.set()
        await self.gate.wait()
        if self.down:
            raise ConnectionError("store unreachable")
        if found is None:
            raise RoomNotFound(room_id)
        return found


async def test_peers_asking_at_once_share_one_read() -> None:
    store = Store(room())
    cache = RoomCache(store.read)
    store.gate.clear()
    asks = [asyncio.create_task(cache.get("r1")) for _ in range(50)]
    await asyncio.sleep(0)
    store.gate.set()
    assert {(await ask).id for ask in asks} == {"r1"}
    assert store.reads == ["r1"]
    await cache.get("r1")
    assert store.reads == ["r1"]  # kept: no read until the room changes


async def test_a_room_nobody_asked_for_is_not_taken_in() -> None:
    store = Store(room())
    cache = RoomCache(store.read)
    cache.put(room("new"))  # created here: no peer has asked for it
    assert len(cache) == 0
    store.rooms["new"] = room("new", status=RoomStatus.LIVE, version=1)
    assert (await cache.get("new")).status is RoomStatus.LIVE  # read once when asked
    await cache.get("new")
    assert store.reads == ["new"]


async def test_a_change_during_the_first_read_is_kept_instead_of_the_read() -> None:
    store = Store(room())
    cache = RoomCache(store.read)
    store.gate.clear()
    first = asyncio.create_task(cache.get("r1"))
    await store.asked.wait()
    ended = room(status=RoomStatus.ENDED, version=1)
    cache.put(ended)  # heard while the read is in flight: the read is stale
    store.gate.set()
    assert await first is ended  # not what it read: the change is the answer, no read again
    store.down = True
    assert await cache.get("r1") is ended
    assert store.reads == ["r1"]


async def test_a_change_here_replaces_the_room_without_a_read() -> None:
    store = Store(room())
    cache = RoomCache(store.read)
    await cache.get("r1")
    ended = room(status=RoomStatus.ENDED, version=1)
    cache.put(ended)
    store.down = True  # the store is not asked again
    assert await cache.get("r1") is ended
    assert store.reads == ["r1"]


async def test_a_change_elsewhere_is_read_again_once() -> None:
    store = Store(room())
    cache = RoomCache(store.read)
    await cache.get("r1")
    store.rooms["r1"] = room(status=RoomStatus.LIVE, version=1)
    cache.forget("r1")
    assert (await cache.get("r1")).status is RoomStatus.LIVE
    assert (await cache.get("r1")).status is RoomStatus.LIVE
    assert store.reads == ["r1", "r1"]


async def test_a_read_that_a_change_overtook_is_read_again() -> None:
    """A change heard while a read is in flight makes its answer stale: it is neither kept nor
    the answer (a join would let a peer into a room closed meanwhile); the askers read again."""
    store = Store(room())
    cache = RoomCache(store.read)
    store.gate.clear()
    first = asyncio.create_task(cache.get("r1"))
    await store.asked.wait()  # the read is in flight, with the room as it was
    sharing = asyncio.create_task(cache.get("r1"))
    await asyncio.sleep(0)
    # the room ends on another node while this read is in flight
    store.rooms["r1"] = room(status=RoomStatus.ENDED, version=1)
    cache.forget("r1")
    store.gate.set()
    assert (await first).status is RoomStatus.ENDED
    assert (await sharing).status is RoomStatus.ENDED
    assert (await cache.get("r1")).status is RoomStatus.ENDED  # kept
    assert store.reads == ["r1", "r1"]


async def test_a_room_older_than_the_kept_one_does_not_replace_it() -> None:
    """A writer that waited (its store write answered late) tells of a version the kept room
    has gone past: members must not be told, nor joins decided on, the older room."""
    store = Store(room(version=1))
    cache = RoomCache(store.read)
    await cache.get("r1")
    newer = room(status=RoomStatus.ENDED, version=3)
    cache.put(newer)
    cache.put(room(status=RoomStatus.LIVE, version=2))
    assert cache.peek("r1") is newer
    assert await cache.get("r1") is newer


async def test_a_room_that_keeps_changing_is_answered_after_a_few_reads() -> None:
    store = Store(room())

    async def read_and_change(room_id: str) -> Room:
        found = await Store.read(store, room_id)
        cache.forget(room_id)  # every read is overtaken by a change
        return found

    cache = RoomCache(read_and_change)
    assert (await cache.get("r1")).id == "r1"
    assert store.reads == ["r1"] * STALE_READS


async def test_clear_forgets_every_room_and_any_read_in_flight() -> None:
    store = Store(room("a"), room("b"))
    cache = RoomCache(store.read)
    await cache.get("a")
    store.gate.clear()
    store.asked.clear()
    in_flight = asyncio.create_task(cache.get("b"))
    await store.asked.wait()  # the read is in flight
    cache.clear()
    assert len(cache) == 0
    store.gate.set()
    await in_flight  # its read was stale: read again, and kept
    await cache.get("a")
    await cache.get("b")
    assert store.reads == ["a", "b", "b", "a"]


async def test_failures_reach_every_asker_and_are_not_kept() -> None:
    store = Store()
    cache = RoomCache(store.read)
    for _ in range(2):
        with pytest.raises(RoomNotFound):
            await cache.get("nope")
    store.down = True
    store.rooms["r1"] = room()
    with pytest.raises(ConnectionError):
        await cache.get("r1")
    store.down = False
    assert (await cache.get("r1")).id == "r1"
    assert store.reads == ["nope", "nope", "r1", "r1"]


async def test_askers_that_go_away_leave_the_others_their_answer() -> None:
    store = Store(room())
    cache = RoomCache(store.read)
    store.gate.clear()
    reader = asyncio.create_task(cache.get("r1"))  # the first asker reads
    await store.asked.wait()
    waiters = [asyncio.create_task(cache.get("r1")) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # a waiter going away changes nothing for the others
    await asyncio.sleep(0)
    reader.cancel()  # the reader going away: one of the others reads again
    await asyncio.sleep(0)
    store.gate.set()
    assert [(await waiter).id for waiter in waiters[1:]] == ["r1", "r1"]
    assert reader.cancelled() and waiters[0].cancelled()
    assert store.reads == ["r1", "r1"]


async def test_the_least_recently_used_room_goes_beyond_the_size() -> None:
    store = Store(*(room(f"r{n}") for n in range(4)))
    cache = RoomCache(store.read, size=3)
    for n in range(3):
        await cache.get(f"r{n}")
    await cache.get("r0")  # used again: r1 is now the oldest
    await cache.get("r3")
    assert len(cache) == 3
    await cache.get("r0")
    await cache.get("r1")
    assert store.reads == ["r0", "r1", "r2", "r3", "r1"]
