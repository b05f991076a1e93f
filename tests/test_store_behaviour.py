"""The behaviour every :class:`RoomStore` adapter keeps (``livehub/domain/store.py``), run
against each adapter through the parametrized ``store`` fixture. An adapter joins by adding
itself to ``ADAPTERS`` (PostgreSQL: a fixture that opens it on the test database and skips
without one); adapter-specific checks (SQLite's files, migrations, the outbox rows as stored)
stay in that adapter's own test module."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from livehub.domain.room import EventType, Room, RoomEvent, RoomStatus
from livehub.domain.store import RoomStore
from livehub.domain.tokens import hash_token
from livehub.storage import SQLiteStore


async def sqlite_store(tmp_path: Path) -> RoomStore:
    return SQLiteStore(str(tmp_path / "livehub.db"), webhook_endpoints=("https://a.example/h",))


ADAPTERS: dict[str, Callable[[Path], Awaitable[RoomStore]]] = {"sqlite": sqlite_store}


@pytest.fixture(params=sorted(ADAPTERS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RoomStore]:
    opened = await ADAPTERS[request.param](tmp_path)
    yield opened
    await opened.close()


def make_room(**overrides: Any) -> Room:
    values: dict[str, Any] = {
        "id": "abc123def456",
        "title": "测试 room",
        "stream_key": "stream-abc123def456",
        "status": RoomStatus.LIVE,
        "created_at": 1_700_000_000_000,
        "start_time": 1_700_000_001_000,
        "end_time": None,
        "publish_token": "publish-token",
        "owner_token_hash": hash_token("owner-token"),
        "publisher_client_id": "2o5x91ed",
        "publisher_service_id": "t3q9z0bm",
        "reconnecting_since": 1_700_000_002_000,
        "published_at": 1_700_000_001_000,
    }
    values.update(overrides)
    return Room(**values)


async def test_rooms_round_trip_and_reads_are_fresh_objects(store: RoomStore) -> None:
    room = make_room()
    await store.insert(room)
    assert (room.version, room.event_seq) == (1, 0)
    got = await store.get(room.id)
    assert got == room and got is not room
    assert got is not None
    got.title = "changed here only"
    assert await store.get(room.id) == room
    assert await store.get_by_stream(room.stream_key) == room
    assert await store.get("nope") is None and await store.get_by_stream("nope") is None
    assert await store.ping()


async def test_a_duplicate_id_or_stream_key_is_refused(store: RoomStore) -> None:
    await store.insert(make_room())
    with pytest.raises(Exception):  # noqa: B017 - each adapter's integrity error
        await store.insert(make_room(stream_key="other"))
    with pytest.raises(Exception):  # noqa: B017
        await store.insert(make_room(id="other"))
    assert await store.count() == 1


async def test_events_count_into_event_seq(store: RoomStore) -> None:
    room = make_room()
    await store.insert(room, [RoomEvent(type=EventType.ROOM_CREATED, room_id=room.id, at=1)])
    went = dataclasses.replace(room, status=RoomStatus.ENDED, end_time=2)
    events = [RoomEvent(type=EventType.ROOM_ENDED, room_id=room.id, at=2)]
    assert await store.update(went, 1, events)
    await store.append_events([RoomEvent(type=EventType.HOST_LEFT, room_id=room.id, at=3)])
    await store.append_events([RoomEvent(type=EventType.HOST_LEFT, room_id="gone", at=3)])
    stored = await store.get(room.id)
    assert stored is not None and (stored.version, stored.event_seq) == (2, 3)


async def test_a_conditional_update_on_a_stale_version_writes_nothing(store: RoomStore) -> None:
    room = make_room()
    await store.insert(room)
    first = dataclasses.replace(room, title="first")
    second = dataclasses.replace(room, title="second")
    event = RoomEvent(type=EventType.ROOM_ENDED, room_id=room.id, at=1)
    assert await store.update(first, 1, [event])
    assert not await store.update(second, 1, [event])
    assert (second.version, second.event_seq) == (1, 0)  # the object is left as it was
    assert await store.get(room.id) == first and (first.version, first.event_seq) == (2, 1)
    assert not await store.update(dataclasses.replace(room, id="missing"), 1)


async def test_publisher_lookup_ignores_ended_rooms_and_prefers_the_latest_publish(
    store: RoomStore,
) -> None:
    old = make_room(id="old", stream_key="s-old", status=RoomStatus.ENDED, published_at=1)
    older = make_room(id="older", stream_key="s-older", published_at=5)
    newer = make_room(id="newer", stream_key="s-newer", published_at=9)
    for room in (old, older, newer):
        await store.insert(room)
    assert await store.get_by_publisher("2o5x91ed") == newer
    assert await store.get_by_publisher("unknown") is None


async def test_keyset_pages_by_status_and_counts(store: RoomStore) -> None:
    statuses = [RoomStatus.ENDED, RoomStatus.PREPARING, RoomStatus.LIVE]
    rooms = [
        make_room(
            id=f"r{i:03d}",
            stream_key=f"s{i:03d}",
            created_at=1000 + i // 2,  # pairs share a millisecond: the id breaks the tie
            status=statuses[i % 3],
        )
        for i in range(30)
    ]
    for room in rooms:
        await store.insert(room)
    newest_first = sorted(rooms, key=lambda r: (r.created_at, r.id), reverse=True)
    seen: list[Room] = []
    after = None
    while True:
        page = await store.page(None, 7, after)
        if not page:
            break
        seen.extend(page)
        after = (page[-1].created_at, page[-1].id)
    assert seen == newest_first
    ended = await store.page(RoomStatus.ENDED, 4, (rooms[20].created_at, rooms[20].id))
    expected = [r for r in newest_first if r.status is RoomStatus.ENDED and r.created_at <= 1010]
    assert ended == [r for r in expected if (r.created_at, r.id) < (1010, "r020")][:4]
    assert await store.count() == 30
    assert [await store.count(status) for status in statuses] == [10, 10, 10]
    assert {room.id for room in await store.live()} == {r.id for r in rooms if r.status == "live"}
    # counts follow status changes and deletions (kept by triggers)
    live = rooms[2]
    assert await store.update(dataclasses.replace(live, status=RoomStatus.ENDED, end_time=5), 1)
    assert [await store.count(status) for status in statuses] == [11, 10, 9]
    assert await store.delete_ended_before(6, limit=3) == 1  # only that one ended before 6
    assert await store.count() == 29 and await store.count(RoomStatus.ENDED) == 10


async def test_due_queries(store: RoomStore) -> None:
    due = make_room(id="due", stream_key="s1", reconnecting_since=100)
    later = make_room(id="later", stream_key="s2", reconnecting_since=200)
    fresh = make_room(id="fresh", stream_key="s3", reconnecting_since=None)
    stale = make_room(
        id="stale",
        stream_key="s4",
        status=RoomStatus.PREPARING,
        reconnecting_since=None,
        created_at=50,
    )
    for room in (due, later, fresh, stale):
        await store.insert(room)
    assert [room.id for room in await store.reconnect_due(150)] == ["due"]
    assert [room.id for room in await store.preparing_before(51)] == ["stale"]
    assert await store.preparing_before(50) == []


async def test_retention_deletes_in_bounded_batches(store: RoomStore) -> None:
    for i in range(7):
        await store.insert(
            make_room(id=f"e{i}", stream_key=f"s{i}", status=RoomStatus.ENDED, end_time=i)
        )
    assert await store.delete_ended_before(5, limit=3) == 3
    assert await store.delete_ended_before(5, limit=3) == 2
    assert await store.delete_ended_before(5, limit=3) == 0
    assert sorted(room.id for room in await store.page(None, 10)) == ["e5", "e6"]
