"""The SQLite store keeps the SRS origin of a room's publisher (schema migration 3), and a
database written before it upgrades with its rooms."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from livehub.domain.room import RoomStatus
from livehub.storage import MIGRATIONS, SQLiteStore, apply_migrations
from tests.test_storage import every_room, make_room


async def test_the_publisher_origin_is_stored_and_updated(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "livehub.db"))
    try:
        room = make_room(publisher_server_id="vid-aaaaaa1", publisher_origin="srs-a")
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


async def test_a_version_2_database_upgrades_to_origins_with_its_rooms(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    with sqlite3.connect(path) as db:
        apply_migrations(db, str(path), upto=2)
        db.execute(
            "INSERT INTO rooms (id, title, stream_key, status, created_at, publish_token, "
            "owner_token_hash, publisher_client_id, publisher_service_id, version) "
            "VALUES ('r1', 't', 's1', 'live', 1000, 'pt', 'oh', 'c1', 'svc1', 4)"
        )
    store = SQLiteStore(str(path))
    try:
        assert store.schema_version == len(MIGRATIONS) >= 3
        [room] = await every_room(store)
        assert (room.id, room.status, room.version, room.publisher_service_id) == (
            "r1",
            RoomStatus.LIVE,
            4,
            "svc1",
        )
        assert (room.publisher_server_id, room.publisher_origin) == (None, None)
        assert await store.count(RoomStatus.LIVE) == 1
    finally:
        await store.close()
