"""livehub migrate-db: an embedded SQLite database copied into PostgreSQL, owner tokens and the
webhook outbox included."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from livehub.adapters.postgres.store import PostgresStore
from livehub.adapters.rows import ROOM_COLUMNS
from livehub.adapters.sqlite import store as storage
from livehub.domain.room import EventType, RoomEvent, RoomStatus, Visibility
from livehub.migrate_db import copy_sqlite_to_postgres, main

T0 = 1_790_000_000_000
SCHEMAS = list(range(1, len(storage.MIGRATIONS) + 1))


def sqlite_db(path: Path, version: int, rooms: int) -> list[dict[str, Any]]:
    """A SQLite database at schema ``version`` (the embedded store's own migrations) holding
    ``rooms`` rooms; returns them as rows."""
    db = sqlite3.connect(path)
    storage.apply_migrations(db, str(path), upto=version)
    present = [row[1] for row in db.execute("PRAGMA table_info(rooms)")]
    rows = []
    for n in range(rooms):
        row: dict[str, Any] = {
            "id": f"room{n:04d}",
            "title": f"Room {n}",
            "stream_key": f"key{n:04d}",
            "status": ("preparing", "live", "ended")[n % 3],
            "created_at": T0 + n,
            "start_time": T0 + n + 5 if n % 3 else None,
            "end_time": T0 + n + 9 if n % 3 == 2 else None,
            "publish_token": f"publish-{n}",
            "owner_token_hash": storage_hash(f"owner-{n}"),
            "publisher_client_id": f"client{n}" if n % 3 == 1 else None,
            "publisher_service_id": "svc1" if n % 3 == 1 else None,
            "reconnecting_since": T0 + n + 7 if n % 6 == 1 else None,
            "published_at": T0 + n + 5 if "published_at" in present and n % 3 else None,
            "version": 3 if "version" in present else 1,
            "event_seq": n % 4 if "event_seq" in present else 0,
            "publisher_server_id": (
                "vid-orig001" if "publisher_server_id" in present and n % 3 == 1 else None
            ),
            "publisher_origin": "srs-a" if "publisher_origin" in present and n % 3 == 1 else None,
            "record": "record" in present and n % 2 == 1,
            # schema 5: private rooms, the stage (stored JSON text), moderation
            "visibility": "private" if "visibility" in present and n % 5 == 0 else "public",
            "stage": (
                '{"guests":{"p-1":{"name":"Gus","streamKey":"key-p-1","live":true}}}'
                if "stage" in present and n % 4 == 1
                else "{}"
            ),
            "moderation": '{"slowMode":5}' if "moderation" in present and n % 4 == 2 else "{}",
        }
        columns = [c for c in present if c in row]
        db.execute(
            f"INSERT INTO rooms ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [row[c] for c in columns],
        )
        rows.append(row)
    if "version" in present:
        db.executemany(
            "INSERT INTO webhook_deliveries (endpoint, room_id, seq, type, body, created_at, "
            "state, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    "http://hooks.example/a",
                    "room0001",
                    1,
                    "room.live",
                    '{"type":"room.live"}',
                    T0,
                    "delivered",
                    1,
                    T0,
                ),
                (
                    "http://hooks.example/a",
                    "room0002",
                    1,
                    "room.ended",
                    '{"type":"room.ended"}',
                    T0,
                    "pending",
                    2,
                    T0 + 100,
                ),
            ],
        )
    if "record" in present:  # schema 4: a recording of room 1
        db.execute(
            "INSERT INTO recordings (id, room_id, started_at, ended_at, duration_ms, "
            "size_bytes, path) VALUES ('rec1', 'room0001', ?, ?, 5000, 1234, 'live/a.mp4')",
            (T0, T0 + 5000),
        )
    db.commit()
    db.close()
    return rows


def storage_hash(token: str) -> str:
    from livehub.domain.tokens import hash_token

    return hash_token(token)


@pytest.mark.parametrize("version", SCHEMAS)
async def test_every_room_and_delivery_is_copied(tmp_path: Path, pg_url: str, version: int) -> None:
    source = tmp_path / "livehub.db"
    rows = sqlite_db(source, version, 25)
    report = await copy_sqlite_to_postgres(str(source), pg_url, batch=7)
    assert report.rooms == 25
    store = await PostgresStore.open(pg_url, webhook_endpoints=("http://hooks.example/b",))
    try:
        for n, row in enumerate(rows):
            room = await store.get(row["id"])
            assert room is not None
            assert {c: getattr(room, c) for c in ROOM_COLUMNS} == {
                **row,
                "status": RoomStatus(row["status"]),
                "visibility": Visibility(row["visibility"]),
                "stage": json.loads(row["stage"]),
                "moderation": json.loads(row["moderation"]),
            }
            assert room.is_owner_token(f"owner-{n}")  # owners keep their tokens
        assert [await store.count(s) for s in RoomStatus] == [9, 8, 8]
        if rows[1]["record"]:  # schema 4: the recordings' rows came along
            (recording,) = await store.recordings_of("room0001")
            assert (recording.id, recording.duration_ms, recording.path) == (
                "rec1",
                5000,
                "live/a.mp4",
            )
        assert (await store.get_by_publisher("client1")) is not None
        # the copied rooms take conditional writes like any other
        room = await store.get("room0000")
        assert room is not None
        room.status = RoomStatus.LIVE
        assert await store.update(
            room, room.version, [RoomEvent(type=EventType.ROOM_LIVE, room_id=room.id, at=T0)]
        )
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        deliveries = await conn.fetch(
            "SELECT id, room_id, state, attempts FROM webhook_deliveries ORDER BY id"
        )
    finally:
        await conn.close()
    copied = [tuple(d) for d in deliveries[: report.deliveries]]
    if version >= 2:
        assert report.deliveries == 2
        assert copied == [(1, "room0001", "delivered", 1), (2, "room0002", "pending", 2)]
        assert deliveries[2]["id"] == 3  # new ones continue after the copied ids
    else:
        assert report.deliveries == 0
    assert len(deliveries) == report.deliveries + 1


async def test_the_cli_refuses_a_target_that_holds_rooms(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "livehub.db"
    sqlite_db(source, SCHEMAS[-1], 3)
    assert (
        await asyncio.to_thread(main, ["--from", str(source)], {"LIVEHUB_DATABASE_URL": pg_url})
        == 0
    )
    sqlite_db(tmp_path / "other.db", SCHEMAS[-1], 5)
    code = await asyncio.to_thread(main, ["--from", str(tmp_path / "other.db"), "--to", pg_url], {})
    assert code == 2
    store = await PostgresStore.open(pg_url)
    try:
        assert await store.count() == 3  # nothing of the second copy landed
    finally:
        await store.close()


async def test_the_cli_refuses_a_target_without_rooms_that_holds_deliveries(
    tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ended rooms are pruned after their retention, failed deliveries are kept for good: a
    database without rooms can still hold rows whose ids the copy's would collide with. Refused
    in words, not with a traceback of a unique violation."""
    source = tmp_path / "livehub.db"
    sqlite_db(source, SCHEMAS[-1], 3)
    assert await asyncio.to_thread(main, ["--from", str(source), "--to", pg_url], {}) == 0
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("DELETE FROM rooms")  # pruned; their deliveries stay
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") > 0
    finally:
        await conn.close()
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["--from", str(source), "--to", pg_url], {})
    assert code == 2
    assert "already holds webhook deliveries: copy into an empty one" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--from", "missing.db", "--to", "postgresql://u@127.0.0.1:9/x"], {}, "no such SQLite"),
        (["--from", "x.db"], {}, "give --to or set LIVEHUB_DATABASE_URL"),
        (["--from", "x.db", "--to", "mysql://u:hunter22@db/x"], {}, "--to must be a postgresql"),
        (["--from", "x.db"], {"LIVEHUB_DATABASE_URL": "redis://db"}, "LIVEHUB_DATABASE_URL must"),
    ],
)
def test_the_cli_explains_bad_arguments(
    args: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args, env) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "hunter22" not in err


def test_the_cli_refuses_an_unknown_sqlite_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "future.db"
    db = sqlite3.connect(source)
    db.execute("PRAGMA user_version = 99")
    db.close()
    assert main(["--from", str(source), "--to", "postgresql://u@127.0.0.1:9/x"], {}) == 2
    assert "schema version 99" in capsys.readouterr().err


def test_the_cli_says_when_postgres_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.engines import free_port

    source = tmp_path / "livehub.db"
    sqlite_db(source, SCHEMAS[-1], 1)
    target = f"postgresql://postgres@127.0.0.1:{free_port()}/livehub"
    assert main(["--from", str(source), "--to", target], {}) == 1
    assert "PostgreSQL unreachable" in capsys.readouterr().err
