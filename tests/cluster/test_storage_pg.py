"""What only PostgreSQL's store has to keep, as a server several processes share: nodes migrating
together, a newer schema refused, racing writers from two pools, a PostgreSQL restart or kill
under a running store. The behaviour every adapter keeps (SQLite and PostgreSQL alike) is the
suite in ``tests/test_store_behaviour.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from livehub.domain.room import EventType, Room, RoomEvent, RoomStatus
from livehub.domain.store import StoreUnavailable
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
