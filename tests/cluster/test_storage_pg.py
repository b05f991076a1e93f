"""The room store's behaviour on PostgreSQL (and on SQLite, once the async SQLite store is merged:
the same suite runs against every adapter), then what only a shared server brings: concurrent
migrations, racing writers from two pools, a PostgreSQL restart under a running store."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from livehub import storage
from livehub.domain.room import EventType, Room, RoomEvent, RoomStatus
from livehub.domain.store import RoomStore, StoreUnavailable
from livehub.domain.tokens import hash_token
from livehub.storage_pg import MIGRATIONS, PostgresStore, SchemaTooNew
from tests.engines import PostgresEngine

ENDPOINTS = ("http://hooks.example/a", "http://hooks.example/b")
T0 = 1_790_000_000_000


def make_room(n: int, *, created_at: int | None = None, **changes: Any) -> Room:
    values: dict[str, Any] = {
        "id": f"room{n:03d}",
        "title": f"Room {n}",
        "stream_key": f"key{n:03d}",
        "created_at": T0 + n if created_at is None else created_at,
        "publish_token": f"publish-secret-{n}",
        "owner_token_hash": hash_token(f"owner-secret-{n}"),
    }
    values.update(changes)
    return Room(**values)


def event(kind: EventType, room: Room, at: int = T0, **extra: Any) -> RoomEvent:
    return RoomEvent(type=kind, room_id=room.id, at=at, extra=extra)


def _sqlite_is_async() -> bool:
    store_class = getattr(storage, "SQLiteStore", None)
    insert = getattr(store_class, "insert", None)
    return insert is not None and inspect.iscoroutinefunction(insert)


ADAPTERS = [
    "postgres",
    pytest.param(
        "sqlite",
        marks=pytest.mark.skipif(
            not _sqlite_is_async(), reason="the async SQLite store (branch store) is not merged"
        ),
    ),
]


class Deliveries:
    """Reads the staged webhook rows of either engine (what a webhook sender would read)."""

    def __init__(self, kind: str, target: Any) -> None:
        self.kind = kind
        self.target = target

    async def rows(self) -> list[dict[str, Any]]:
        query = (
            "SELECT endpoint, room_id, seq, type, body, state, attempts FROM webhook_deliveries "
            "ORDER BY id"
        )
        if self.kind == "postgres":
            conn = await asyncpg.connect(self.target)
            try:
                return [dict(row.items()) for row in await conn.fetch(query)]
            finally:
                await conn.close()
        db = sqlite3.connect(self.target)
        try:
            cursor = db.execute(query)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        finally:
            db.close()


@contextlib.asynccontextmanager
async def open_store(
    request: pytest.FixtureRequest, endpoints: tuple[str, ...]
) -> AsyncIterator[tuple[RoomStore, Deliveries]]:
    """The adapter ``request.param`` names, on an empty database."""
    if request.param == "postgres":
        engine: PostgresEngine = request.getfixturevalue("postgres")
        url = await engine.create_database()
        store = await PostgresStore.open(url, webhook_endpoints=endpoints)
        try:
            yield store, Deliveries("postgres", url)
        finally:
            await store.close()
            await engine.drop_database(url)
        return
    path = str(request.getfixturevalue("tmp_path") / "livehub.db")
    sqlite_store: Any = storage.SQLiteStore(path, webhook_endpoints=endpoints)
    try:
        yield sqlite_store, Deliveries("sqlite", path)
    finally:
        await sqlite_store.close()


@pytest.fixture(params=ADAPTERS)
async def adapter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RoomStore, Deliveries]]:
    async with open_store(request, ENDPOINTS) as opened:
        yield opened


@pytest.fixture(params=ADAPTERS)
async def quiet_store(request: pytest.FixtureRequest) -> AsyncIterator[RoomStore]:
    """A store with no webhook endpoints configured."""
    async with open_store(request, ()) as (store, _):
        yield store


# -- the behaviour suite, every adapter ---------------------------------------------------


async def test_insert_then_read_by_every_key(adapter: tuple[RoomStore, Deliveries]) -> None:
    store, _ = adapter
    room = make_room(1, publisher_client_id="c1", status=RoomStatus.LIVE, start_time=T0 + 5)
    await store.insert(room)
    assert room.version == 1
    for found in (
        await store.get("room001"),
        await store.get_by_stream("key001"),
        await store.get_by_publisher("c1"),
    ):
        assert found == room
        assert found is not room
    assert await store.get("nope") is None
    assert await store.get_by_stream("nope") is None
    # reads are fresh objects: mutating one changes nothing stored
    copy = await store.get("room001")
    assert copy is not None
    copy.title = "changed"
    assert (await store.get("room001")) == room
    assert await store.ping()


async def test_duplicate_id_or_stream_key_raises_and_is_not_unavailability(
    adapter: tuple[RoomStore, Deliveries],
) -> None:
    store, _ = adapter
    await store.insert(make_room(1))
    for duplicate in (make_room(1, stream_key="other"), make_room(2, stream_key="key001")):
        with pytest.raises(Exception) as raised:
            await store.insert(duplicate)
        assert not isinstance(raised.value, StoreUnavailable)
        assert duplicate.version == 0  # not stored
    assert await store.count() == 1


async def test_conditional_update_writes_only_on_the_expected_version(
    adapter: tuple[RoomStore, Deliveries],
) -> None:
    store, deliveries = adapter
    room = make_room(1)
    await store.insert(room, [event(EventType.ROOM_CREATED, room)])
    first = await store.get(room.id)
    second = await store.get(room.id)
    assert first is not None and second is not None
    first.status, first.start_time, first.publisher_client_id = RoomStatus.LIVE, T0 + 9, "c1"
    assert await store.update(first, 1, [event(EventType.ROOM_LIVE, first, T0 + 9)])
    assert (first.version, first.event_seq) == (2, 2)
    # the second writer read version 1 too: it loses, and nothing of it is written
    second.status, second.end_time = RoomStatus.ENDED, T0 + 10
    assert not await store.update(second, 1, [event(EventType.ROOM_ENDED, second, T0 + 10)])
    assert (second.version, second.event_seq) == (1, 1)
    assert await store.get(room.id) == first
    assert [(r["type"], r["seq"]) for r in await deliveries.rows()] == [
        ("room.created", 1),
        ("room.created", 1),
        ("room.live", 2),
        ("room.live", 2),
    ]
    # the loser reads again and decides again
    assert await store.update(first, 2) is True
    assert first.version == 3


async def test_events_are_staged_once_per_endpoint_with_the_public_view(
    adapter: tuple[RoomStore, Deliveries],
) -> None:
    store, deliveries = adapter
    room = make_room(7)
    await store.insert(room, [event(EventType.ROOM_CREATED, room, T0 + 1)])
    room.status = RoomStatus.LIVE
    await store.update(
        room,
        1,
        [
            event(EventType.ROOM_LIVE, room, T0 + 2),
            event(EventType.HOST_JOINED, room, T0 + 3, peerId="p1"),
        ],
    )
    rows = await deliveries.rows()
    assert [(r["endpoint"], r["seq"], r["type"]) for r in rows] == [
        (ENDPOINTS[0], 1, "room.created"),
        (ENDPOINTS[1], 1, "room.created"),
        (ENDPOINTS[0], 2, "room.live"),
        (ENDPOINTS[1], 2, "room.live"),
        (ENDPOINTS[0], 3, "host.joined"),
        (ENDPOINTS[1], 3, "host.joined"),
    ]
    assert {(r["state"], r["attempts"], r["room_id"]) for r in rows} == {("pending", 0, "room007")}
    body = json.loads(rows[4]["body"])
    assert body["type"] == "host.joined"
    assert body["timestamp"] == "2026-09-21T14:13:20.003Z"
    assert body["data"]["id"] == "room007"
    assert body["data"]["peerId"] == "p1"
    assert body["data"]["seq"] == 3
    for row in rows:  # never a secret in a webhook body
        assert "secret" not in row["body"]
        assert room.owner_token_hash not in row["body"]


async def test_without_endpoints_nothing_is_staged_but_seq_counts(
    quiet_store: RoomStore,
) -> None:
    room = make_room(1)
    await quiet_store.insert(room, [event(EventType.ROOM_CREATED, room)])
    await quiet_store.append_events([event(EventType.VIEWERS_UPDATED, room)])
    stored = await quiet_store.get(room.id)
    assert stored is not None and stored.event_seq == 2


async def test_append_events_counts_and_stages_and_drops_unknown_rooms(
    adapter: tuple[RoomStore, Deliveries],
) -> None:
    store, deliveries = adapter
    room = make_room(1)
    await store.insert(room)
    gone = make_room(2)
    await store.append_events(
        [
            event(EventType.VIEWERS_UPDATED, room, viewers=3),
            event(EventType.VIEWERS_UPDATED, gone),
            event(EventType.HOST_LEFT, room),
        ]
    )
    stored = await store.get(room.id)
    assert stored is not None and stored.event_seq == 2 and stored.version == 1
    rows = await deliveries.rows()
    assert [(r["room_id"], r["seq"], r["type"]) for r in rows[::2]] == [
        ("room001", 1, "viewers.updated"),
        ("room001", 2, "host.left"),
    ]
    assert json.loads(rows[0]["body"])["data"]["viewers"] == 3


async def test_keyset_pages_cover_every_room_once_newest_first(
    quiet_store: RoomStore,
) -> None:
    rooms = [make_room(n, created_at=T0 + n // 3) for n in range(25)]  # ties on created_at
    for n, room in enumerate(rooms):
        if n % 4 == 0:
            room.status = RoomStatus.LIVE
        await quiet_store.insert(room)
    expected = sorted(rooms, key=lambda r: (r.created_at, r.id), reverse=True)
    seen: list[Room] = []
    after = None
    while True:
        page = await quiet_store.page(None, 10, after)
        if not page:
            break
        seen.extend(page)
        after = (page[-1].created_at, page[-1].id)
    assert [r.id for r in seen] == [r.id for r in expected]
    live = await quiet_store.page(RoomStatus.LIVE, 3)
    assert [r.id for r in live] == [r.id for r in expected if r.status is RoomStatus.LIVE][:3]
    more = await quiet_store.page(RoomStatus.LIVE, 10, (live[-1].created_at, live[-1].id))
    assert [r.id for r in live + more] == [r.id for r in expected if r.status is RoomStatus.LIVE]


async def test_counts_follow_inserts_transitions_and_deletes(quiet_store: RoomStore) -> None:
    rooms = [make_room(n) for n in range(6)]
    for room in rooms:
        await quiet_store.insert(room)
    for room in rooms[:3]:
        room.status = RoomStatus.LIVE
        assert await quiet_store.update(room, room.version)
    rooms[0].status, rooms[0].end_time = RoomStatus.ENDED, T0 + 100
    assert await quiet_store.update(rooms[0], rooms[0].version)
    rooms[5].status, rooms[5].end_time = RoomStatus.ENDED, T0 + 200
    assert await quiet_store.update(rooms[5], rooms[5].version)
    counts = [await quiet_store.count(s) for s in RoomStatus] + [await quiet_store.count()]
    assert counts == [2, 2, 2, 6]  # preparing, live, ended, all
    assert await quiet_store.delete_ended_before(T0 + 150) == 1
    assert await quiet_store.count(RoomStatus.ENDED) == 1
    assert await quiet_store.count() == 5
    assert await quiet_store.get(rooms[0].id) is None


async def test_due_queries(quiet_store: RoomStore) -> None:
    live = make_room(1, status=RoomStatus.LIVE, reconnecting_since=T0 + 10)
    later = make_room(2, status=RoomStatus.LIVE, reconnecting_since=T0 + 50)
    steady = make_room(3, status=RoomStatus.LIVE)
    old = make_room(4, created_at=T0 - 1000)
    fresh = make_room(5)
    for room in (live, later, steady, old, fresh):
        await quiet_store.insert(room)
    assert [r.id for r in await quiet_store.reconnect_due(T0 + 10)] == ["room001"]
    assert sorted(r.id for r in await quiet_store.reconnect_due(T0 + 60)) == ["room001", "room002"]
    assert [r.id for r in await quiet_store.live()] == ["room001", "room002", "room003"]
    assert [r.id for r in await quiet_store.preparing_before(T0)] == ["room004"]
    assert [r.id for r in await quiet_store.preparing_before(T0 + 100, limit=1)] == ["room004"]
    ended = [make_room(10 + n, status=RoomStatus.ENDED, end_time=T0 + n) for n in range(5)]
    for room in ended:
        await quiet_store.insert(room)
    # (Any: the Protocol merged here, store@20c3752, predates the ``limit`` argument)
    batched: Any = quiet_store
    assert [await batched.delete_ended_before(T0 + 100, limit=2) for _ in range(4)] == [2, 2, 1, 0]


# -- PostgreSQL only: a server shared by several processes ----------------------------------


async def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(pg_url) for _ in range(4)))
    try:
        assert [await s.schema_version() for s in stores] == [len(MIGRATIONS)] * 4
        conn = await asyncpg.connect(pg_url)
        try:
            versions = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        assert [row["version"] for row in versions] == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (99)")
    finally:
        await conn.close()
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        await PostgresStore.open(pg_url)


async def test_racing_conditional_updates_from_two_pools_exactly_one_wins(pg_url: str) -> None:
    one = await PostgresStore.open(pg_url, webhook_endpoints=ENDPOINTS)
    two = await PostgresStore.open(pg_url, webhook_endpoints=ENDPOINTS)
    try:
        for n in range(20):
            room = make_room(n)
            await one.insert(room)
            seen_by_one, seen_by_two = await asyncio.gather(one.get(room.id), two.get(room.id))
            assert seen_by_one is not None and seen_by_two is not None
            # two publishers for one room, on two nodes
            seen_by_one.status, seen_by_one.publisher_client_id = RoomStatus.LIVE, "pub-1"
            seen_by_two.status, seen_by_two.publisher_client_id = RoomStatus.LIVE, "pub-2"
            won = await asyncio.gather(
                one.update(seen_by_one, 1, [event(EventType.ROOM_LIVE, seen_by_one)]),
                two.update(seen_by_two, 1, [event(EventType.ROOM_LIVE, seen_by_two)]),
            )
            assert sorted(won) == [False, True]
            winner = seen_by_one if won[0] else seen_by_two
            assert await two.get(room.id) == winner
        conn = await asyncpg.connect(pg_url)
        try:
            staged = await conn.fetchval("SELECT count(*) FROM webhook_deliveries")
        finally:
            await conn.close()
        assert staged == 20 * len(ENDPOINTS)  # only the winners' events
    finally:
        await one.close()
        await two.close()


async def test_postgres_restart_the_pool_recovers_and_nothing_acknowledged_is_lost(
    pg_url: str, postgres: PostgresEngine
) -> None:
    store = await PostgresStore.open(pg_url, min_size=2, max_size=4)
    try:
        acknowledged = [make_room(1), make_room(2)]
        for room in acknowledged:
            await store.insert(room)

        postgres.stop()
        with pytest.raises(StoreUnavailable):
            await store.insert(make_room(3))
        with pytest.raises(StoreUnavailable):
            await store.get("room001")
        assert not await store.ping()

        postgres.start()
        assert await store.get("room001") == acknowledged[0]  # stale connections replaced
        assert await store.ping()
        room = make_room(4)
        await store.insert(room)
        acknowledged.append(room)

        postgres.kill()  # SIGKILL, every backend at once
        postgres.start()
        for room in acknowledged:
            assert await store.get(room.id) == room
        assert await store.get("room003") is None  # refused, so never acknowledged
        assert await store.count() == 3
    finally:
        await store.close()


async def test_postgres_down_at_start_is_unavailable(postgres: PostgresEngine) -> None:
    url = postgres.database_url("postgres")
    postgres.stop()
    with pytest.raises(StoreUnavailable):
        await PostgresStore.open(url, command_timeout=2)
