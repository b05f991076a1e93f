"""SQLite persistence: schema versions, what is stored (and what is not), conditional writes,
keyset pages, the webhook outbox, restarts of the app."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.sqlite import store as storage
from livehub.adapters.sqlite.outbox import SQLiteDeliveryQueue
from livehub.adapters.sqlite.store import MIGRATIONS, SchemaTooNew, SQLiteStore, apply_migrations
from livehub.app import create_app
from livehub.config import DbSync
from livehub.domain.recordings import Recording
from livehub.domain.room import LISTED_COLUMNS, EventType, Room, RoomEvent, RoomStatus
from livehub.domain.service import RoomService
from livehub.domain.srs_params import HookEvent
from livehub.domain.tokens import hash_token
from tests.conftest import HOOK_SECRET, hook_for, make_config, send_hook


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
        "published_at": 1_700_000_001_000,
    }
    values.update(overrides)
    return Room(**values)


async def every_room(store: SQLiteStore) -> list[Room]:
    """Every stored room, oldest first."""
    return (await store.page(None, 1000))[::-1]


async def test_new_database_is_at_the_latest_version_in_wal_mode(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "sub" / "livehub.db"))
    try:
        assert store.schema_version == len(MIGRATIONS) >= 2
        assert await store.ping()
        journal = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert journal == "wal"
    finally:
        await store.close()


async def test_every_field_round_trips(tmp_path: Path) -> None:
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
    await store.insert(room)
    await store.insert(ended)
    assert (room.version, room.event_seq) == (1, 0)
    renamed = dataclasses.replace(room, title="renamed")
    assert await store.update(renamed, 1)  # an update of the row, not a second row
    await store.close()
    again = SQLiteStore(path)
    try:
        assert await every_room(again) == [renamed, ended]
        assert renamed.version == 2
        assert await again.get("zzz") == ended
        assert await again.get_by_stream("stream-abc123def456") == renamed
        assert await again.get_by_publisher("2o5x91ed") == renamed
        assert await again.get("nope") is None and await again.get_by_stream("nope") is None
        with pytest.raises(sqlite3.IntegrityError):  # one room per id and per stream key
            await again.insert(make_room(id="other"))
    finally:
        await again.close()


async def test_events_stage_one_delivery_per_endpoint_in_the_same_transaction() -> None:
    endpoints = ("https://a.example/hook", "https://b.example/hook")
    views: list[str] = []

    def view(room: Room) -> dict[str, object]:
        views.append(room.id)
        return {"id": room.id, "status": room.status.value, "viewerCount": 0}

    store = SQLiteStore(":memory:", webhook_endpoints=endpoints, event_view=view)
    room = make_room(status=RoomStatus.PREPARING, reconnecting_since=None)
    at = 1_796_050_000_123
    await store.insert(room, [RoomEvent(type=EventType.ROOM_CREATED, room_id=room.id, at=at)])
    live = dataclasses.replace(room, status=RoomStatus.LIVE)
    assert await store.update(
        live, 1, [RoomEvent(type=EventType.ROOM_LIVE, room_id=room.id, at=at)]
    )
    await store.append_events(
        [
            RoomEvent(type=EventType.HOST_JOINED, room_id=room.id, at=at, extra={"peerId": "p1"}),
            RoomEvent(type=EventType.HOST_LEFT, room_id="gone", at=at),  # no such room: dropped
        ]
    )
    rows = store._db.execute(
        "SELECT endpoint, room_id, seq, type, body, created_at, state, attempts, "
        "next_attempt_at FROM webhook_deliveries ORDER BY id"
    ).fetchall()
    assert [(r[0], r[2], r[3]) for r in rows] == [
        (endpoints[0], 1, "room.created"),
        (endpoints[1], 1, "room.created"),
        (endpoints[0], 2, "room.live"),
        (endpoints[1], 2, "room.live"),
        (endpoints[0], 3, "host.joined"),
        (endpoints[1], 3, "host.joined"),
    ]
    assert all(r[1] == room.id and r[5] == at == r[8] and r[6:8] == ("pending", 0) for r in rows)
    assert json.loads(rows[2][4]) == {
        "type": "room.live",
        "timestamp": "2026-11-30T14:46:40.123Z",
        "data": {"id": room.id, "status": "live", "viewerCount": 0, "seq": 2},
    }
    assert json.loads(rows[4][4])["data"] == {
        "id": room.id,
        "status": "live",
        "viewerCount": 0,
        "peerId": "p1",
        "seq": 3,
    }
    assert (await store.get(room.id)).event_seq == 3  # type: ignore[union-attr]
    await store.close()


async def test_without_endpoints_nothing_is_staged_but_seq_still_counts() -> None:
    store = SQLiteStore(":memory:")
    room = make_room()
    await store.insert(room, [RoomEvent(type=EventType.ROOM_LIVE, room_id=room.id, at=1)])
    assert store._db.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)
    assert room.event_seq == 1
    await store.close()


async def test_webhook_bodies_carry_no_secret() -> None:
    endpoints = ("https://a.example/hook",)
    store = SQLiteStore(":memory:", webhook_endpoints=endpoints)
    rooms = RoomService(store, players=MemoryPlayers())
    room, owner_token = await rooms.create("secret-free")
    await rooms.handle_hook(
        HookEvent(
            action="on_publish",
            client_id="c1",
            app="live",
            stream=room.stream_key,
            param=f"?secret={room.publish_token}",
        )
    )
    await rooms.close(room.id)
    bodies = [row[0] for row in store._db.execute("SELECT body FROM webhook_deliveries")]
    assert len(bodies) == 3
    for body in bodies:
        assert room.publish_token not in body and owner_token not in body
        assert room.owner_token_hash not in body
    await store.close()


async def test_close_checkpoints_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    store = SQLiteStore(str(path))
    await store.insert(make_room())
    assert (tmp_path / "livehub.db-wal").stat().st_size > 0
    await store.close()
    wal = tmp_path / "livehub.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # the main file alone holds the room now
    row = sqlite3.connect(path).execute("SELECT id, status FROM rooms").fetchall()
    assert row == [("abc123def456", "live")]


async def test_owner_tokens_are_never_written(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    store = SQLiteStore(str(path), webhook_endpoints=("https://a.example/h",))
    rooms = RoomService(store, players=MemoryPlayers())
    created = [await rooms.create(f"room {i}") for i in range(5)]
    room, _ = created[0]
    await rooms.handle_hook(
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
    await store.close()
    data = db_bytes(path)
    assert not any(owner_token.encode() in data for _, owner_token in created)


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    await SQLiteStore(str(path)).close()
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
    await SQLiteStore(str(path)).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    runner = web.AppRunner(create_app(make_config(db_path=str(path))))
    try:
        with pytest.raises(SchemaTooNew, match="newer than this livehub supports"):
            await runner.setup()
    finally:
        await runner.cleanup()


async def test_a_version_1_database_upgrades_with_its_rooms(tmp_path: Path) -> None:
    """A database written before the store redesign (schema 1) keeps every room."""
    path = tmp_path / "livehub.db"
    with sqlite3.connect(path) as db:
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
        for i, status in enumerate(("preparing", "live", "ended", "ended")):
            db.execute(
                "INSERT INTO rooms (id, title, stream_key, status, created_at, publish_token, "
                "owner_token_hash, publisher_client_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (f"r{i}", f"t{i}", f"s{i}", status, 1000 + i, "pt", "oh", "c1" if i else None),
            )
    store = SQLiteStore(str(path))
    try:
        assert store.schema_version == len(MIGRATIONS)
        rooms = await every_room(store)
        assert [(r.id, r.status.value, r.version, r.event_seq) for r in rooms] == [
            ("r0", "preparing", 1, 0),
            ("r1", "live", 1, 0),
            ("r2", "ended", 1, 0),
            ("r3", "ended", 1, 0),
        ]
        assert [await store.count(s) for s in RoomStatus] == [1, 1, 2]
        assert (await store.get_by_publisher("c1")) == rooms[1]
        updated = dataclasses.replace(rooms[0], title="after the upgrade")
        assert await store.update(updated, 1)
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


async def test_upgrade_from_an_older_version_keeps_rooms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "livehub.db")
    old = SQLiteStore(path)
    await old.insert(make_room())
    await old.close()
    current = len(MIGRATIONS)
    monkeypatch.setattr(
        storage,
        "MIGRATIONS",
        (*MIGRATIONS, "ALTER TABLE rooms ADD COLUMN note TEXT NOT NULL DEFAULT ''"),
    )
    upgraded = SQLiteStore(path)
    try:
        assert upgraded.schema_version == current + 1
        assert await every_room(upgraded) == [make_room(version=1)]
        note = sqlite3.connect(path).execute("SELECT note FROM rooms").fetchall()
        assert note == [("",)]
    finally:
        await upgraded.close()


async def test_a_failed_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "livehub.db")
    old = SQLiteStore(path)
    await old.insert(make_room())
    await old.close()
    broken = "ALTER TABLE rooms ADD COLUMN note TEXT;\nALTER TABLE no_such_table ADD COLUMN x TEXT"
    monkeypatch.setattr(storage, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        SQLiteStore(path)
    monkeypatch.setattr(storage, "MIGRATIONS", MIGRATIONS)
    again = SQLiteStore(path)
    try:
        assert again.schema_version == len(MIGRATIONS)
        assert await every_room(again) == [make_room(version=1)]
        columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(rooms)")]
        assert "note" not in columns
    finally:
        await again.close()


async def test_upgrade_from_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "livehub.db"
    sqlite3.connect(path).close()  # version 0, no tables
    store = SQLiteStore(str(path))
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert await every_room(store) == []
    finally:
        await store.close()


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


async def test_a_locked_database_answers_503_quickly_and_recovers(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    """Another writer holds the lock (a tool, a second process): the loop waits at most
    BUSY_TIMEOUT_MS, the write answers 503 ``database_unavailable``, nothing half-done."""
    path = tmp_path / "livehub.db"
    client = await aiohttp_client(create_app(make_config(db_path=str(path))))
    room = await (await client.post("/api/rooms", json={"title": "before"})).json()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held
    try:
        started = time.perf_counter()
        resp = await client.post("/api/rooms", json={"title": "while locked"})
        took = time.perf_counter() - started
        assert resp.status == 503
        assert await resp.json() == {
            "error": "The database is unavailable: try again",
            "code": "database_unavailable",
            "details": None,
        }
        assert took < storage.BUSY_TIMEOUT_MS / 1000 + 1.0
        # an SRS publish is refused (fails closed), reads still work (WAL)
        hook = await client.post(
            f"/api/hooks/srs?secret={HOOK_SECRET}", json=hook_for(room, "on_publish.json")
        )
        assert hook.status == 503  # SRS refuses the publish on any non-200
        assert (await client.get(f"/api/rooms/{room['id']}")).status == 200
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert (await client.post("/api/rooms", json={"title": "after"})).status == 201
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    assert (await client.get("/api/rooms")).headers["X-Total-Count"] == "2"


@pytest.mark.parametrize("status", [None, RoomStatus.LIVE, RoomStatus.ENDED])
@pytest.mark.parametrize("after", [None, (1_700_000_000_500, "room00500")])
async def test_pages_read_a_range_of_an_index_and_counts_read_the_counts_table(
    tmp_path: Path, status: RoomStatus | None, after: tuple[int, str] | None
) -> None:
    """Any page costs O(limit): SQLite walks ``rooms_created`` (``rooms_status_created`` with a
    status) backwards from the cursor and never sorts; X-Total-Count reads ``room_counts``."""
    store = SQLiteStore(str(tmp_path / "livehub.db"))
    for n in range(1000):
        status_n = [RoomStatus.ENDED, RoomStatus.LIVE, RoomStatus.PREPARING][n % 3]
        await store.insert(
            make_room(id=f"room{n:05d}", stream_key=f"k{n}", created_at=1_700_000_000_000 + n)
            if status_n is RoomStatus.LIVE
            else make_room(
                id=f"room{n:05d}",
                stream_key=f"k{n}",
                created_at=1_700_000_000_000 + n,
                status=status_n,
                reconnecting_since=None,
            )
        )
    where, args = storage.page_query(status, 101, after)
    query = f"SELECT {', '.join(LISTED_COLUMNS)} FROM rooms WHERE {where}"  # what lists read
    plan = store._db.execute(f"EXPLAIN QUERY PLAN {query}", args)
    steps = [row[3] for row in plan]
    index = "rooms_created" if status is None else "rooms_status_created"
    assert len(steps) == 1 and f"USING INDEX {index}" in steps[0], steps  # no TEMP B-TREE
    if after is not None:
        assert "(created_at,id)<(?,?)" in steps[0]  # a range of the index, not a filter
    counted = "" if status is None else " WHERE status = ?"
    plan = store._db.execute(
        f"EXPLAIN QUERY PLAN SELECT coalesce(sum(n), 0) FROM room_counts{counted}",
        () if status is None else (status.value,),
    )
    assert all("room_counts" in row[3] for row in plan)
    expected = 1000 if status is None else 333 + (status is RoomStatus.ENDED)
    assert await store.count(status) == expected
    await store.close()


async def test_a_page_is_rendered_in_the_reader_thread(tmp_path: Path) -> None:
    """On a file database, the page's rows are read and rendered off the event loop's thread
    (``:memory:`` is private to its connection: read and rendered inline)."""
    loop_thread = threading.get_ident()
    for path in (str(tmp_path / "livehub.db"), ":memory:"):
        store = SQLiteStore(path)
        await store.insert(make_room())
        seen: list[tuple[int, list[Any]]] = []

        def render(rows: list[Any]) -> str:
            seen.append((threading.get_ident(), rows))  # noqa: B023 - called before the loop goes on
            return "rendered"

        assert await store.render_page(None, 10, None, render) == "rendered"
        [(thread, rows)] = seen
        room = make_room()
        assert rows == [
            (room.id, room.title, room.stream_key, "live", room.created_at, room.start_time,
             room.end_time, room.reconnecting_since, "public", "{}")
        ]  # fmt: skip
        assert (thread != loop_thread) is (path != ":memory:")
        await store.close()


# -- durability: which writes are fsynced (LIVEHUB_DB_SYNC) -----------------------------------

#: temporary triggers on the writer's connection: each write records, inside its own
#: transaction, the ``synchronous`` level that connection commits it with
WATCH_SYNC = """
CREATE TEMP TABLE seen (what TEXT NOT NULL, level INTEGER NOT NULL);
CREATE TEMP TRIGGER seen_room_insert AFTER INSERT ON main.rooms BEGIN
    INSERT INTO seen SELECT 'room insert', synchronous FROM pragma_synchronous; END;
CREATE TEMP TRIGGER seen_room_update AFTER UPDATE ON main.rooms BEGIN
    INSERT INTO seen SELECT 'room update', synchronous FROM pragma_synchronous; END;
CREATE TEMP TRIGGER seen_room_delete AFTER DELETE ON main.rooms BEGIN
    INSERT INTO seen SELECT 'room prune', synchronous FROM pragma_synchronous; END;
CREATE TEMP TRIGGER seen_recording AFTER INSERT ON main.recordings BEGIN
    INSERT INTO seen SELECT 'recording', synchronous FROM pragma_synchronous; END;
CREATE TEMP TRIGGER seen_staged AFTER INSERT ON main.webhook_deliveries BEGIN
    INSERT INTO seen SELECT 'webhook staged', synchronous FROM pragma_synchronous; END;
CREATE TEMP TRIGGER seen_outbox_update AFTER UPDATE ON main.webhook_deliveries BEGIN
    INSERT INTO seen SELECT 'outbox ' || NEW.state, synchronous FROM pragma_synchronous; END;
CREATE TEMP TRIGGER seen_outbox_prune AFTER DELETE ON main.webhook_deliveries BEGIN
    INSERT INTO seen SELECT 'outbox prune', synchronous FROM pragma_synchronous; END;
"""

FULL, NORMAL = 2, 1  # PRAGMA synchronous's numbers


@pytest.mark.parametrize(
    ("sync", "durable"),
    [("full", FULL), ("normal", NORMAL)],
)
async def test_store_writes_commit_with_full_sync_and_outbox_bookkeeping_with_normal(
    tmp_path: Path, sync: DbSync, durable: int
) -> None:
    """LIVEHUB_DB_SYNC=full (the default): every store write (a room and the webhook rows it
    stages, a recording) is committed with ``synchronous=FULL``, fsynced before it answers, so a
    power loss cannot take back a 201; the outbox's own bookkeeping (claims, outcomes, pruning)
    and the rooms' retention stay on NORMAL, whatever came before them on the one writer
    (losing them only sends a webhook again, or deletes a room again). ``normal``: all NORMAL."""
    path = str(tmp_path / "livehub.db")
    store = SQLiteStore(path, webhook_endpoints=("https://a.example/hook",), sync=sync)
    assert store.writer is not None
    queue = SQLiteDeliveryQueue(path, writer=store.writer)
    await store.writer.run(lambda db: db.executescript(WATCH_SYNC))
    at = 1_796_050_000_000
    room = make_room(status=RoomStatus.PREPARING, reconnecting_since=None)
    await store.insert(room, [RoomEvent(type=EventType.ROOM_CREATED, room_id=room.id, at=at)])
    [claimed] = await queue.claim(at, 10, 30_000)  # the outbox writes between store writes
    live = dataclasses.replace(room, status=RoomStatus.LIVE)
    assert await store.update(
        live, 1, [RoomEvent(type=EventType.ROOM_LIVE, room_id=room.id, at=at)]
    )
    assert await queue.delivered(claimed, at, 200)
    await store.insert_recording(
        Recording(
            id="rec1",
            room_id=room.id,
            started_at=at,
            ended_at=at + 1000,
            duration_ms=1000,
            size_bytes=10,
            path="abc123def456/a.flv",
        )
    )
    assert await queue.prune(at + 1, 100) == 1
    ended = make_room(
        id="endedroom001",
        stream_key="k-ended",
        status=RoomStatus.ENDED,
        end_time=at,
        reconnecting_since=None,
    )
    await store.insert(ended)
    assert await store.delete_ended_before(at + 1) == 1
    await store.append_events([RoomEvent(type=EventType.HOST_JOINED, room_id=room.id, at=at)])

    def seen(db: sqlite3.Connection) -> set[tuple[str, int]]:
        return set(db.execute("SELECT what, level FROM seen").fetchall())

    assert await store.writer.run(seen) == {
        ("room insert", durable),
        ("webhook staged", durable),
        ("room update", durable),
        ("recording", durable),
        ("outbox pending", NORMAL),  # the claim's lease
        ("outbox delivered", NORMAL),
        ("outbox prune", NORMAL),
        ("room prune", NORMAL),
    }
    await queue.close()
    await store.close()


@pytest.mark.parametrize(("sync", "level"), [(None, FULL), ("normal", NORMAL)])
async def test_the_app_commits_a_created_room_as_livehub_db_sync_says(
    aiohttp_client: AiohttpClient, tmp_path: Path, sync: str | None, level: int
) -> None:
    """The setting reaches the app's writer; unset, the 201 of a create is fsynced (FULL)."""
    options = {} if sync is None else {"db_sync": sync}
    client = await aiohttp_client(
        create_app(make_config(db_path=str(tmp_path / "livehub.db"), **options))
    )
    store = client.app[keys.store]
    assert isinstance(store, SQLiteStore) and store.writer is not None
    await store.writer.run(lambda db: db.executescript(WATCH_SYNC))
    assert (await client.post("/api/rooms", json={"title": "durable"})).status == 201
    levels = await store.writer.run(
        lambda db: db.execute("SELECT what, level FROM seen").fetchall()
    )
    assert levels == [("room insert", level)]
