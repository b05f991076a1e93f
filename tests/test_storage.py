"""SQLite persistence: schema versions, what is stored (and what is not), restarts of the app."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from livehub.domain.rooms import HookEvent, Room, RoomService, RoomStatus, hash_token
from pytest_aiohttp import AiohttpClient

from livehub import storage
from livehub.app import create_app
from livehub.storage import MIGRATIONS, SchemaTooNew, SQLiteStore
from tests.conftest import hook_for, make_config, send_hook


def db_bytes(path: Path) -> bytes:
    """The database file with its WAL: everything a leak of the data directory would expose."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


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
    }
    values.update(overrides)
    return Room(**values)


def test_new_database_is_at_the_latest_version_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "sub" / "livehub.db"))
    try:
        assert store.schema_version == len(MIGRATIONS) >= 1
        assert store.ping()
        journal = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"
    finally:
        store.close()


def test_every_field_round_trips(tmp_path: Path) -> None:
    path = str(tmp_path / "livehub.db")
    store = SQLiteStore(path)
    room = make_room()
    ended = make_room(
        id="zzz",
        stream_key="stream-zzz",
        status=RoomStatus.ENDED,
        end_time=1_700_000_009_000,
        reconnecting_since=None,
        created_at=1_700_000_000_001,
    )
    store.save(room)
    store.save(ended)
    room.title = "renamed"
    store.save(room)  # an upsert, not a second row
    store.close()
    again = SQLiteStore(path)
    try:
        assert again.load_all() == [room, ended]
    finally:
        again.close()


def test_close_checkpoints_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    store = SQLiteStore(str(path))
    store.save(make_room())
    assert (tmp_path / "livehub.db-wal").stat().st_size > 0
    store.close()
    wal = tmp_path / "livehub.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # the main file alone holds the room now
    row = sqlite3.connect(path).execute("SELECT id, status FROM rooms").fetchall()
    assert row == [("abc123def456", "live")]


def test_owner_tokens_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    store = SQLiteStore(str(path))
    rooms = RoomService(store)
    created = [rooms.create(f"room {i}") for i in range(5)]
    room, _ = created[0]
    rooms.handle_hook(
        HookEvent(
            action="on_publish",
            client_id="c1",
            app="live",
            stream=room.stream_key,
            param=f"?secret={room.publish_token}",
        )
    )
    data = db_bytes(path)
    for stored, owner_token in created:
        assert owner_token.encode() not in data
        assert hash_token(owner_token).encode() in data
        assert stored.publish_token.encode() in data  # needed to check publishes and to show it
    store.close()
    data = db_bytes(path)
    assert not any(owner_token.encode() in data for _, owner_token in created)


def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    SQLiteStore(str(path)).close()
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(SchemaTooNew) as info:
        SQLiteStore(str(path))
    assert str(info.value) == (
        f"database {path} has schema version {newer}, newer than this livehub supports "
        f"({len(MIGRATIONS)}): upgrade livehub or restore a backup"
    )
    with sqlite3.connect(path) as db:  # untouched
        assert db.execute("PRAGMA user_version").fetchone()[0] == newer


async def test_the_app_does_not_start_on_a_newer_database(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    SQLiteStore(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    runner = web.AppRunner(create_app(make_config(db_path=str(path))))
    try:
        with pytest.raises(SchemaTooNew, match="newer than this livehub supports"):
            await runner.setup()
    finally:
        await runner.cleanup()


def test_upgrade_from_an_older_version_keeps_rooms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "livehub.db")
    old = SQLiteStore(path)
    old.save(make_room())
    old.close()
    current = len(MIGRATIONS)
    monkeypatch.setattr(
        storage,
        "MIGRATIONS",
        (*MIGRATIONS, "ALTER TABLE rooms ADD COLUMN note TEXT NOT NULL DEFAULT ''"),
    )
    upgraded = SQLiteStore(path)
    try:
        assert upgraded.schema_version == current + 1
        assert upgraded.load_all() == [make_room()]
        note = sqlite3.connect(path).execute("SELECT note FROM rooms").fetchall()
        assert note == [("",)]
    finally:
        upgraded.close()


def test_a_failed_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "livehub.db")
    old = SQLiteStore(path)
    old.save(make_room())
    old.close()
    broken = "ALTER TABLE rooms ADD COLUMN note TEXT;\nALTER TABLE no_such_table ADD COLUMN x TEXT"
    monkeypatch.setattr(storage, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        SQLiteStore(path)
    monkeypatch.setattr(storage, "MIGRATIONS", MIGRATIONS)
    again = SQLiteStore(path)
    try:
        assert again.schema_version == len(MIGRATIONS)
        assert again.load_all() == [make_room()]
        columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(rooms)")]
        assert "note" not in columns
    finally:
        again.close()


def test_upgrade_from_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    sqlite3.connect(path).close()  # version 0, no tables
    store = SQLiteStore(str(path))
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert store.load_all() == []
    finally:
        store.close()


# -- the app restarted on the same database file ------------------------------------------


async def test_rooms_and_tokens_survive_a_restart(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    config = make_config(db_path=str(tmp_path / "livehub.db"), reconnect_window=30.0)
    first = await aiohttp_client(create_app(config))
    waiting = await (await first.post("/api/rooms", json={"title": "waiting"})).json()
    streaming = await (await first.post("/api/rooms", json={"title": "streaming"})).json()
    assert await send_hook(first, hook_for(streaming, "on_publish.json")) == {"code": 0}
    before = await (await first.get(f"/api/rooms/{streaming['id']}")).json()
    await first.close()

    second = await aiohttp_client(create_app(config))
    listed = await (await second.get("/api/rooms")).json()
    assert [room["id"] for room in listed] == [streaming["id"], waiting["id"]]
    after = await (await second.get(f"/api/rooms/{streaming['id']}")).json()
    assert after == before  # still live, same startTime, same URLs
    assert after["status"] == "live" and isinstance(after["startTime"], int)
    # the owner token still opens the owner view, with the same publish token
    owner = {"Authorization": f"Bearer {waiting['ownerToken']}"}
    view = await (await second.get(f"/api/rooms/{waiting['id']}", headers=owner)).json()
    assert view["publish"] == waiting["publish"]
    # the publish token still lets the encoder in; a wrong one still does not
    wrong = hook_for(waiting, "on_publish.json", param="?secret=wrong")
    assert (await send_hook(second, wrong))["code"] != 0
    fresh = hook_for(waiting, "on_publish.json", client_id="n3wc1i3n")
    assert await send_hook(second, fresh) == {"code": 0}
    # the publisher accepted before the restart is still known by its client id
    assert await send_hook(second, hook_for(streaming, "on_unpublish.json")) == {"code": 0}
    gone = await (await second.get(f"/api/rooms/{streaming['id']}")).json()
    assert (gone["status"], gone["reconnecting"]) == ("live", True)
    # and the owner token still closes the room
    resp = await second.post(
        f"/api/rooms/{streaming['id']}/close",
        headers={"Authorization": f"Bearer {streaming['ownerToken']}"},
    )
    assert resp.status == 200
    closed = (await resp.json())["room"]
    assert closed["status"] == "ended" and closed["startTime"] == before["startTime"]
    await second.close()

    third = await aiohttp_client(create_app(config))
    got = await (await third.get(f"/api/rooms/{streaming['id']}")).json()
    assert got == {**closed, "viewerCount": 0, "playerCount": 0}
