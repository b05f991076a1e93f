"""Recordings over real HTTP (livehub/domain/recordings.py), on both stores: SRS's on_dvr (the
exact body SRS sends, shared/srs-hooks/on_dvr.json) keeps or deletes the file, refuses paths
outside the recordings directory; the list, the file with ranges, delete, retention, the
``recording.ready`` webhook. The same with a real SRS and ffmpeg: tests/test_recordings_srs.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import sqlite3
import struct
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.sqlite import store as sqlite_store
from livehub.app import create_app
from livehub.domain.room import now_ms
from livehub.webhook_settings import parse_secrets
from tests.conftest import ADMIN_TOKEN, HOOK_SECRET, Client, hook_fixture, make_config, send_hook
from tests.helpers import eventually, raw_request

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"livehub-test-webhook-secret-32by").decode()
DAY_MS = 86_400_000


def mp4(duration_ms: int, media: int = 4096) -> bytes:
    """A minimal MP4 (ftyp, mdat, then moov/mvhd as SRS writes it) of ``duration_ms``."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    mvhd = box(b"mvhd", bytes(4) + struct.pack(">IIII", 0, 0, 1000, duration_ms) + bytes(80))
    return (
        box(b"ftyp", b"isom" + bytes(4) + b"isomiso2mp41")
        + box(b"mdat", os.urandom(media))
        + box(b"moov", mvhd)
    )


@pytest.fixture(params=["sqlite", "postgres"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(
    request: pytest.FixtureRequest, mode: str, tmp_path: Path, recordings_dir: Path
) -> web.Application:
    store: dict[str, Any] = {"db_path": str(tmp_path / "livehub.db")}
    if mode == "postgres":
        store = {"database_url": request.getfixturevalue("pg_url")}
    return create_app(
        make_config(
            **store,
            recordings_dir=str(recordings_dir),
            recording_retention_days=1.0,
            webhook_urls=("http://127.0.0.1:9/hook",),
            webhook_secrets=parse_secrets("LIVEHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        )
    )


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


async def new_room(client: Client, **body: Any) -> dict[str, Any]:
    resp = await client.post("/api/rooms", json={"title": "Recorded", **body})
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = await resp.json()
    return room


def dvr_body(room: dict[str, Any], cwd: str, file: str) -> dict[str, Any]:
    """shared/srs-hooks/on_dvr.json pointed at ``room`` and a file."""
    body = hook_fixture("on_dvr.json")
    body.update(
        stream=room["streamKey"], stream_url=f"/live/{room['streamKey']}", cwd=cwd, file=file
    )
    return body


def write(path: Path, duration_ms: int) -> bytes:
    data = mp4(duration_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


async def recordings(client: Client, room_id: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/rooms/{room_id}/recordings")
    assert resp.status == 200
    body: list[dict[str, Any]] = await resp.json()
    return body


async def test_a_recording_room_keeps_its_files_in_order_and_serves_ranges(
    client: Client, recordings_dir: Path
) -> None:
    room = await new_room(client, record=True)
    assert room["record"] is True
    first = write(recordings_dir / "live" / f"{room['streamKey']}.1.mp4", 5000)
    # as SRS names it: relative to its working directory
    body = dvr_body(room, str(recordings_dir), f"./live/{room['streamKey']}.1.mp4")
    before = now_ms()
    assert await send_hook(client, body) == {"code": 0}
    # the encoder reconnected inside the window: a second file of the same broadcast
    write(recordings_dir / "live" / f"{room['streamKey']}.2.mp4", 2000)
    body = dvr_body(room, "/", str(recordings_dir / "live" / f"{room['streamKey']}.2.mp4"))
    assert await send_hook(client, body) == {"code": 0}

    listed = await recordings(client, room["id"])
    assert [r["durationMs"] for r in listed] == [5000, 2000]  # oldest first
    one = listed[0]
    assert set(one) == {"id", "roomId", "startedAt", "endedAt", "durationMs", "sizeBytes", "url"}
    assert one["roomId"] == room["id"] and one["sizeBytes"] == len(first)
    assert one["endedAt"] - one["startedAt"] == 5000 and one["endedAt"] >= before
    assert one["url"] == f"/api/recordings/{one['id']}/file"

    whole = await client.get(one["url"])
    assert whole.status == 200 and whole.headers["Content-Type"] == "video/mp4"
    assert await whole.read() == first
    part = await client.get(one["url"], headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(first)}"
    assert await part.read() == first[100:200]

    # the recording.ready webhook, one per file, with the recording's public view
    resp = await client.get(
        "/api/webhooks/deliveries", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    ready = [d for d in await resp.json() if d["type"] == "recording.ready"]
    assert sorted(d["payload"]["data"]["recording"]["id"] for d in ready) == sorted(
        r["id"] for r in listed
    )
    assert all(d["payload"]["data"]["id"] == room["id"] for d in ready)

    # SRS sending the same hook again keeps one recording
    assert await send_hook(client, body) == {"code": 0}
    assert len(await recordings(client, room["id"])) == 2


async def ready_events(client: Client) -> list[dict[str, Any]]:
    """The ``recording.ready`` rows of the webhook outbox, newest first."""
    resp = await client.get(
        "/api/webhooks/deliveries", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status == 200
    return [d for d in await resp.json() if d["type"] == "recording.ready"]


@contextlib.asynccontextmanager
async def outbox_refusing(
    request: pytest.FixtureRequest, mode: str, tmp_path: Path
) -> AsyncIterator[None]:
    """While open, the app's database refuses every new webhook row (a trigger raises, as a
    full disk would): a real failure of the event's write, in the database itself."""
    if mode == "sqlite":
        db = sqlite3.connect(tmp_path / "livehub.db", isolation_level=None)
        try:
            db.execute(
                "CREATE TRIGGER refuse_outbox BEFORE INSERT ON webhook_deliveries "
                "BEGIN SELECT RAISE(ABORT, 'the outbox refuses rows'); END"
            )
            yield
            db.execute("DROP TRIGGER refuse_outbox")
        finally:
            db.close()
        return
    conn = await asyncpg.connect(request.getfixturevalue("pg_url"))
    try:
        await conn.execute(
            "CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the outbox refuses rows'; END $$; "
            "CREATE TRIGGER refuse_outbox BEFORE INSERT ON webhook_deliveries "
            "FOR EACH ROW EXECUTE FUNCTION refuse_outbox()"
        )
        yield
        await conn.execute(
            "DROP TRIGGER refuse_outbox ON webhook_deliveries; DROP FUNCTION refuse_outbox()"
        )
    finally:
        await conn.close()


async def test_a_recording_is_never_kept_without_its_recording_ready(
    client: Client, request: pytest.FixtureRequest, mode: str, tmp_path: Path, recordings_dir: Path
) -> None:
    """The row and its ``recording.ready`` are one transaction: the event's write failing
    leaves no recording either, and the hook sent again (twice) keeps one recording with one
    ``recording.ready``, its seq the room's next. (Before the fix the row was committed alone:
    the hook again found it, answered "kept" and reported nothing; the webhook was lost.)"""
    room = await new_room(client, record=True)  # room.created: seq 1
    write(recordings_dir / "live" / "d.mp4", 4000)
    body = dvr_body(room, str(recordings_dir), "live/d.mp4")
    async with outbox_refusing(request, mode, tmp_path):
        resp = await client.post(f"/api/hooks/srs?secret={HOOK_SECRET}", json=body)
        assert (resp.status, (await resp.json())["code"]) == (500, "internal_error")
        assert await recordings(client, room["id"]) == []
        assert await ready_events(client) == []
    assert await send_hook(client, body) == {"code": 0}
    assert await send_hook(client, body) == {"code": 0}
    (kept,) = await recordings(client, room["id"])
    (ready,) = await ready_events(client)
    assert ready["payload"]["data"]["recording"]["id"] == kept["id"]
    assert ready["payload"]["data"]["seq"] == 2


async def test_the_same_hook_at_once_keeps_one_recording_and_one_recording_ready(
    client: Client, recordings_dir: Path
) -> None:
    """SRS's ``on_dvr`` for one file arriving several times at once (sent again while the
    first is being answered; in a cluster, to several nodes): every one is answered, one
    recording is kept and one ``recording.ready`` reported. (Before the fix, on PostgreSQL
    the deliveries that found no row yet inserted it too: all but one failed with 500.)"""
    room = await new_room(client, record=True)
    write(recordings_dir / "live" / "e.mp4", 3000)
    body = dvr_body(room, str(recordings_dir), "live/e.mp4")
    replies = await asyncio.gather(*(send_hook(client, body) for _ in range(6)))
    assert replies == [{"code": 0}] * 6
    (kept,) = await recordings(client, room["id"])
    (ready,) = await ready_events(client)
    assert ready["payload"]["data"]["recording"]["id"] == kept["id"]
    assert ready["payload"]["data"]["seq"] == 2


@contextlib.asynccontextmanager
async def writer_busy(app: web.Application) -> AsyncIterator[None]:
    """The SQLite store's writer in a long transaction (as in a burst of webhook outcomes)
    until the block ends; then its transaction commits."""
    began, release = threading.Event(), threading.Event()

    def hold(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        began.set()
        release.wait(30)
        db.execute("COMMIT")

    store = app[keys.store]
    assert isinstance(store, sqlite_store.SQLiteStore) and store.writer is not None
    holding = asyncio.ensure_future(store.writer.run(hold))
    try:
        await eventually(began.is_set)
        yield
    finally:
        release.set()
        await holding


async def test_on_sqlite_recording_writes_wait_for_the_writer_instead_of_failing(
    aiohttp_client: AiohttpClient, tmp_path: Path, recordings_dir: Path
) -> None:
    """On SQLite every write goes through the store's one writer, recordings too: while it is
    in a long transaction, an ``on_dvr`` and a delete wait their turn (the event loop does not
    wait at all) and succeed. (Before the fix they wrote on the loop's own connection: each
    blocked the loop for BUSY_TIMEOUT_MS on the writer's lock, then answered 503.)"""
    app = create_app(
        make_config(
            db_path=str(tmp_path / "livehub.db"),
            recordings_dir=str(recordings_dir),
            webhook_urls=("http://127.0.0.1:9/hook",),
            webhook_secrets=parse_secrets("LIVEHUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
        )
    )
    client = await aiohttp_client(app)
    room = await new_room(client, record=True)
    file = recordings_dir / "live" / "f.mp4"
    write(file, 2000)
    body = dvr_body(room, str(recordings_dir), "live/f.mp4")
    longer = 3 * sqlite_store.BUSY_TIMEOUT_MS / 1000  # than the loop's connection would wait

    async with writer_busy(app):
        hook = asyncio.ensure_future(client.post(f"/api/hooks/srs?secret={HOOK_SECRET}", json=body))
        await asyncio.sleep(longer)
        assert not hook.done(), f"answered while the writer was busy: {(await hook).status}"
    resp = await hook
    assert (resp.status, await resp.json()) == (200, {"code": 0})
    (kept,) = await recordings(client, room["id"])
    (ready,) = await ready_events(client)
    assert ready["payload"]["data"]["recording"]["id"] == kept["id"]

    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    async with writer_busy(app):
        delete = asyncio.ensure_future(
            client.delete(f"/api/recordings/{kept['id']}", headers=owner)
        )
        await asyncio.sleep(longer)
        assert not delete.done(), f"answered while the writer was busy: {(await delete).status}"
    assert (await delete).status == 204
    assert await recordings(client, room["id"]) == [] and not file.exists()


async def test_a_room_that_does_not_record_leaves_no_file(
    client: Client, recordings_dir: Path
) -> None:
    room = await new_room(client)
    assert room["record"] is False
    file = recordings_dir / "live" / "x.mp4"
    write(file, 1000)
    assert await send_hook(client, dvr_body(room, str(recordings_dir), "live/x.mp4")) == {"code": 0}
    assert not file.exists()
    assert await recordings(client, room["id"]) == []
    # no room at all: deleted too
    write(file, 1000)
    stray = dvr_body({"streamKey": "stream-nobody"}, str(recordings_dir), "live/x.mp4")
    assert await send_hook(client, stray) == {"code": 0}
    assert not file.exists()


async def test_record_default_comes_from_the_config(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(record_default=True)))
    assert (await new_room(client))["record"] is True
    assert (await new_room(client, record=False))["record"] is False
    resp = await client.post("/api/rooms", json={"title": "x", "record": "yes"})
    assert resp.status == 400 and "record" in (await resp.json())["details"]


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink", "directory", "missing"])
async def test_a_file_outside_the_directory_is_refused_and_left_alone(
    client: Client,
    recordings_dir: Path,
    tmp_path: Path,
    where: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    room = await new_room(client, record=True)
    outside = tmp_path / "elsewhere" / "secret.mp4"
    write(outside, 1000)
    cwd, file = {
        "outside": ("/", str(outside)),
        "dotdot": (str(recordings_dir), "./live/../../elsewhere/secret.mp4"),
        "symlink": (str(recordings_dir), "live/link.mp4"),
        "directory": (str(recordings_dir), "live"),
        "missing": (str(recordings_dir), "live/none.mp4"),
    }[where]
    if where == "symlink":
        (recordings_dir / "live" / "link.mp4").symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="livehub.api.srs_hooks"):
        reply = await send_hook(client, dvr_body(room, cwd, file))
    # acknowledged all the same: SRS logs a non-zero on_dvr reply with the hook URL's secret
    assert reply == {"code": 0}
    assert "refused: file is not in the recordings directory" in caplog.text
    assert HOOK_SECRET not in caplog.text
    assert outside.read_bytes()  # not deleted
    assert await recordings(client, room["id"]) == []


async def test_delete_needs_the_owner_or_admin_and_removes_file_and_row(
    client: Client, recordings_dir: Path
) -> None:
    room = await new_room(client, record=True)
    file = recordings_dir / "live" / "a.mp4"
    write(file, 1000)
    await send_hook(client, dvr_body(room, str(recordings_dir), "live/a.mp4"))
    (recording,) = await recordings(client, room["id"])
    target = f"/api/recordings/{recording['id']}"
    resp = await client.delete(target)
    assert (resp.status, (await resp.json())["code"]) == (401, "unauthorized")
    other = await new_room(client)
    resp = await client.delete(target, headers={"Authorization": f"Bearer {other['ownerToken']}"})
    assert (resp.status, (await resp.json())["code"]) == (403, "forbidden")
    assert file.exists()

    resp = await client.delete(target, headers={"Authorization": f"Bearer {room['ownerToken']}"})
    assert resp.status == 204
    assert not file.exists()
    assert await recordings(client, room["id"]) == []
    resp = await client.get(f"{target}/file")
    assert resp.status == 404
    assert await resp.json() == {
        "error": "Recording not found",
        "code": "recording_not_found",
        "details": {"recordingId": recording["id"]},
    }
    resp = await client.delete(target, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status == 404
    resp = await client.get("/api/rooms/nosuchroom/recordings")
    assert (resp.status, (await resp.json())["code"]) == (404, "room_not_found")


async def test_the_admin_may_delete_any_recording(client: Client, recordings_dir: Path) -> None:
    room = await new_room(client, record=True)
    write(recordings_dir / "live" / "b.mp4", 1000)
    await send_hook(client, dvr_body(room, str(recordings_dir), "live/b.mp4"))
    (recording,) = await recordings(client, room["id"])
    resp = await client.delete(
        f"/api/recordings/{recording['id']}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status == 204


async def test_retention_and_deleted_rooms_remove_file_and_row(
    client: Client, app: web.Application, recordings_dir: Path
) -> None:
    room = await new_room(client, record=True)
    old, gone = recordings_dir / "live" / "old.mp4", recordings_dir / "live" / "gone.mp4"
    write(old, 1000)
    await send_hook(client, dvr_body(room, str(recordings_dir), "live/old.mp4"))
    service = app[keys.recordings]
    assert await service.sweep() == 0  # young, and its room exists
    assert await service.sweep(now=now_ms() + 2 * DAY_MS) == 1  # retention: 1 day
    assert not old.exists() and await recordings(client, room["id"]) == []

    # a room deleted by its own retention takes its recordings with it at the next sweep
    doomed = await new_room(client, record=True)
    write(gone, 1000)
    await send_hook(client, dvr_body(doomed, str(recordings_dir), "live/gone.mp4"))
    await client.post(
        f"/api/rooms/{doomed['id']}/close",
        headers={"Authorization": f"Bearer {doomed['ownerToken']}"},
    )
    assert await app[keys.store].delete_ended_before(now_ms() + 1) == 1
    assert await service.sweep() == 1
    assert not gone.exists()


async def test_a_file_that_cannot_be_deleted_keeps_its_row_until_it_can(
    client: Client, app: web.Application, recordings_dir: Path
) -> None:
    """Deleting the file fails (here a directory stands where the file was: EISDIR; on a
    share, EACCES or EBUSY): the recording stays listed, the API answers 503, the sweep goes
    on with the others and deletes it once it can. No file is left that no row names."""
    room = await new_room(client, record=True)
    stuck, other = recordings_dir / "live" / "stuck.mp4", recordings_dir / "live" / "other.mp4"
    for file in (stuck, other):
        write(file, 1000)
        await send_hook(client, dvr_body(room, str(recordings_dir), f"live/{file.name}"))
    first, second = await recordings(client, room["id"])
    stuck.unlink()
    stuck.mkdir()
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    resp = await client.delete(f"/api/recordings/{first['id']}", headers=owner)
    assert resp.status == 503
    assert (await resp.json())["code"] == "recording_not_deleted"
    assert [r["id"] for r in await recordings(client, room["id"])] == [first["id"], second["id"]]
    service = app[keys.recordings]
    assert await service.sweep(now=now_ms() + 2 * DAY_MS) == 1  # the other one
    assert not other.exists()
    assert [r["id"] for r in await recordings(client, room["id"])] == [first["id"]]
    stuck.rmdir()  # it can be deleted now (a file gone already is deleted)
    assert await service.sweep(now=now_ms() + 2 * DAY_MS) == 1
    assert await recordings(client, room["id"]) == []


async def test_any_node_of_a_cluster_serves_and_deletes_from_the_shared_directory(
    aiohttp_client: AiohttpClient, pg_url: str, recordings_dir: Path, tmp_path: Path
) -> None:
    """Two nodes on one PostgreSQL and one shared directory (mounted elsewhere on the second):
    the file one node kept at on_dvr is served and deleted by the other."""
    elsewhere = tmp_path / "mnt-recordings"
    elsewhere.symlink_to(recordings_dir)
    node_a = await aiohttp_client(
        create_app(make_config(database_url=pg_url, recordings_dir=str(recordings_dir)))
    )
    node_b = await aiohttp_client(
        create_app(make_config(database_url=pg_url, recordings_dir=str(elsewhere)))
    )
    room = await new_room(node_a, record=True)
    data = write(recordings_dir / "c.mp4", 3000)
    assert await send_hook(node_a, dvr_body(room, str(recordings_dir), "c.mp4")) == {"code": 0}
    (recording,) = await recordings(node_b, room["id"])
    resp = await node_b.get(recording["url"], headers={"Range": "bytes=10-19"})
    assert (resp.status, await resp.read()) == (206, data[10:20])
    resp = await node_b.delete(
        f"/api/recordings/{recording['id']}",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert resp.status == 204 and not (recordings_dir / "c.mp4").exists()
    assert await recordings(node_a, room["id"]) == []


@pytest.mark.parametrize("bad", [0, 1, "true", None, [True]], ids=repr)
async def test_record_must_be_a_json_boolean(aiohttp_client: AiohttpClient, bad: Any) -> None:
    client = await aiohttp_client(create_app(make_config()))
    resp = await client.post("/api/rooms", json={"title": "x", "record": bad})
    assert resp.status == 400
    reason = "Field may not be null." if bad is None else "Not a valid boolean."
    assert (await resp.json())["details"] == {"record": [reason]}
    assert (await (await client.get("/api/rooms")).json()) == []


async def test_a_private_rooms_recordings_need_a_viewer_owner_or_admin_token(
    client: Client, recordings_dir: Path
) -> None:
    room = await new_room(client, record=True, visibility="private")
    data = write(recordings_dir / "live" / f"{room['streamKey']}.1.mp4", 3000)
    body = dvr_body(room, str(recordings_dir), f"./live/{room['streamKey']}.1.mp4")
    assert await send_hook(client, body) == {"code": 0}
    path = f"/api/rooms/{room['id']}/recordings"
    [rec] = await (
        await client.get(path, headers={"Authorization": f"Bearer {room['ownerToken']}"})
    ).json()
    file = f"/api/recordings/{rec['id']}/file"

    # without a token (or with one of another room) neither the list nor the file exists
    other = await new_room(client, visibility="private")
    resp = await client.post(
        f"/api/rooms/{other['id']}/viewer-tokens",
        headers={"Authorization": f"Bearer {other['ownerToken']}"},
        json={},
    )
    foreign = (await resp.json())["token"]
    for query in ("", f"?token={foreign}", "?token=not-a-token"):
        resp = await client.get(path + query)
        assert (resp.status, (await resp.json())["code"]) == (404, "room_not_found"), query
        resp = await client.get(file + query)
        assert (resp.status, (await resp.json())["code"]) == (404, "recording_not_found"), query

    # a viewer token opens both; the listed url carries it, so a <video src> plays it
    resp = await client.post(
        f"/api/rooms/{room['id']}/viewer-tokens",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
        json={"ttl": 600},
    )
    token = (await resp.json())["token"]
    [listed] = await (await client.get(f"{path}?token={token}")).json()
    assert listed["url"] == f"{file}?token={token}"
    part = await client.get(listed["url"], headers={"Range": "bytes=0-99"})
    assert part.status == 206 and await part.read() == data[:100]
    resp = await client.get(file, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200 and await resp.read() == data

    # the owner's (and the admin's) list carries a viewer token minted for it, never theirs
    for bearer in (room["ownerToken"], ADMIN_TOKEN):
        [mine] = await (
            await client.get(path, headers={"Authorization": f"Bearer {bearer}"})
        ).json()
        assert bearer not in mine["url"] and "?token=" in mine["url"]
        assert (await client.get(mine["url"])).status == 200


@pytest.mark.parametrize("visibility", ["private", "public"])
async def test_a_token_that_is_no_ascii_is_a_wrong_token_never_a_500(
    client: Client, recordings_dir: Path, visibility: str
) -> None:
    """A private room's recordings compared the caller's token with the admin token through
    compare_digest on str: a token that is no ASCII (``?token=%C3%A9``, a header's UTF-8)
    raised (500), and one that is no UTF-8 (a header's bytes) everywhere a token is read."""
    room = await new_room(client, record=True, visibility=visibility)
    write(recordings_dir / "live" / f"{room['streamKey']}.1.mp4", 1000)
    body = dvr_body(room, str(recordings_dir), f"./live/{room['streamKey']}.1.mp4")
    assert await send_hook(client, body) == {"code": 0}
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    [rec] = await (await client.get(f"/api/rooms/{room['id']}/recordings", headers=owner)).json()
    routes = [
        ("GET", f"/api/rooms/{room['id']}/recordings"),
        ("GET", f"/api/recordings/{rec['id']}/file"),
        ("DELETE", f"/api/recordings/{rec['id']}"),
    ]
    for method, path in routes:
        wrong = await raw_request(client, method, path, b"Bearer not-the-token")
        assert wrong[0] < 500, wrong
        for header in ("é".encode(), "ключ".encode(), b"\xff\xfe", b"\xed\xa0\x80"):
            answer = await raw_request(client, method, path, b"Bearer " + header)
            assert answer == wrong, (method, path, header)
        if method == "GET":
            wrong = await raw_request(client, method, f"{path}?token=not-the-token")
            for query in ("%C3%A9", "%D0%BA%D0%BB%D1%8E%D1%87", "%FF%FE", "%ED%A0%80"):
                answer = await raw_request(client, method, f"{path}?token={query}")
                assert answer == wrong, (method, path, query)
    assert (recordings_dir / "live" / f"{room['streamKey']}.1.mp4").exists()


async def test_a_private_rooms_recording_is_an_unknown_id_to_delete_for_strangers(
    client: Client, recordings_dir: Path
) -> None:
    """Deleting a private room's recording without its owner or the admin token is answered as
    for an id no recording has (it answered 401/403: the recording, and its room, existed)."""
    room = await new_room(client, record=True, visibility="private")
    file = recordings_dir / "live" / f"{room['streamKey']}.1.mp4"
    write(file, 1000)
    body = dvr_body(room, str(recordings_dir), f"./live/{room['streamKey']}.1.mp4")
    assert await send_hook(client, body) == {"code": 0}
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    [rec] = await (await client.get(f"/api/rooms/{room['id']}/recordings", headers=owner)).json()
    other = await new_room(client)
    viewer = await client.post(f"/api/rooms/{room['id']}/viewer-tokens", headers=owner)
    for token in (None, "not-a-token", other["ownerToken"], (await viewer.json())["token"]):
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        resp = await client.delete(f"/api/recordings/{rec['id']}", headers=headers)
        assert (resp.status, await resp.json()) == (
            404,
            {
                "error": "Recording not found",
                "code": "recording_not_found",
                "details": {"recordingId": rec["id"]},
            },
        ), token
        resp = await client.delete("/api/recordings/rnosuchrecording", headers=headers)
        assert (resp.status, (await resp.json())["code"]) == (404, "recording_not_found")
    assert file.exists()
    resp = await client.delete(f"/api/recordings/{rec['id']}", headers=owner)
    assert resp.status == 204 and not file.exists()
