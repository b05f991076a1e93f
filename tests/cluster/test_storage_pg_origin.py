"""The PostgreSQL store keeps the SRS origin of a room's publisher (its migration 2), and a
database at schema 1 upgrades with its rooms."""

from __future__ import annotations

import dataclasses

import asyncpg

from livehub.domain.room import RoomStatus
from livehub.storage_pg import MIGRATIONS, PostgresStore
from tests.cluster.test_storage_pg import make_room


async def test_the_publisher_origin_is_stored_and_updated(pg_url: str) -> None:
    store = await PostgresStore.open(pg_url)
    try:
        room = make_room(
            1,
            status=RoomStatus.LIVE,
            publisher_client_id="c1",
            publisher_server_id="vid-aaaaaa1",
            publisher_origin="srs-a",
        )
        await store.insert(room)
        assert await store.get(room.id) == room
        moved = dataclasses.replace(
            room, publisher_client_id="c2", publisher_server_id="vid-bbbbbb2", publisher_origin="b"
        )
        assert await store.update(moved, room.version)
        again = await store.get(room.id)
        assert again is not None
        assert (again.publisher_server_id, again.publisher_origin) == ("vid-bbbbbb2", "b")
        assert await store.get_by_publisher("c2") == again
        assert [r.publisher_origin for r in await store.live()] == ["b"]
    finally:
        await store.close()


async def test_a_schema_1_database_upgrades_to_origins_with_its_rooms(pg_url: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        await conn.execute(MIGRATIONS[0])
        await conn.execute("INSERT INTO schema_migrations (version) VALUES (1)")
        await conn.execute(
            "INSERT INTO rooms (id, title, stream_key, status, created_at, publish_token, "
            "owner_token_hash, publisher_client_id, version) "
            "VALUES ('r1', 't', 's1', 'live', 1000, 'pt', 'oh', 'c1', 4)"
        )
    finally:
        await conn.close()
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.schema_version() == len(MIGRATIONS) >= 2
        room = await store.get("r1")
        assert room is not None
        assert (room.status, room.version, room.publisher_client_id) == (RoomStatus.LIVE, 4, "c1")
        assert (room.publisher_server_id, room.publisher_origin) == (None, None)
        assert await store.count(RoomStatus.LIVE) == 1
    finally:
        await store.close()
