"""Fault tests: the real server (``python -m livehub``) killed, stopped and restarted; SRS's API
down; hooks duplicated and reordered; WebSocket clients that vanish without closing.

Decision (docs/operations.md): a room that is live when livehub stops **stays live** across the
restart, with its publisher's client id and ``startTime``; the start-up reconciliation then asks
SRS whether the stream is still published and ends it (through the reconnect window) only if
SRS says it is not. While SRS cannot be asked, nothing is ended.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import secrets
import signal
import sqlite3
import struct
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.sqlite.store import MIGRATIONS, SQLiteStore
from livehub.app import create_app
from livehub.domain.service import RoomService
from livehub.domain.srs_params import HookEvent
from tests.conftest import Client, hook_for, make_config, send_hook
from tests.fake_srs import FakeSRS
from tests.helpers import eventually
from tests.processes import Server


def server(servers: list[Server], tmp_path: Path, **env: str) -> Server:
    instance = Server(tmp_path, tmp_path / "livehub.db", **env)
    servers.append(instance)
    return instance


def db_files(folder: Path) -> bytes:
    """The database and its WAL, as a leak of the data directory would expose them."""
    return b"".join(path.read_bytes() for path in folder.glob("livehub.db*"))


async def get_room(session: aiohttp.ClientSession, url: str, room_id: str) -> dict[str, Any]:
    async with session.get(f"{url}/api/rooms/{room_id}") as resp:
        assert resp.status == 200, room_id
        body: dict[str, Any] = await resp.json()
        return body


# -- kill -9 in the middle of writes -------------------------------------------------------------


async def test_kill_9_during_writes_loses_no_accepted_change(
    tmp_path: Path, servers: list[Server]
) -> None:
    first = server(servers, tmp_path)
    await first.start()
    created: dict[str, dict[str, Any]] = {}
    published: set[str] = set()
    attempted: set[str] = set()  # published, or in flight when the server was killed
    enough = asyncio.Event()

    async def writer(session: aiohttp.ClientSession, n: int) -> None:
        for i in range(200):  # bounded, whatever happens
            try:
                async with session.post(
                    f"{first.url}/api/rooms", json={"title": f"w{n}-{i}"}
                ) as resp:
                    if resp.status != 201:
                        return
                    room = await resp.json()
                created[room["id"]] = room
                if i % 3 == 0:  # a second kind of write: the room goes live
                    attempted.add(room["id"])
                    reply = await send_hook(
                        session, base_url=first.url, body=hook_for(room, "on_publish.json")
                    )
                    if reply == {"code": 0}:
                        published.add(room["id"])
            except (aiohttp.ClientError, TimeoutError):
                return  # the server is gone
            if len(created) >= 150:
                enough.set()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        writers = [asyncio.create_task(writer(session, n)) for n in range(6)]
        await asyncio.wait_for(enough.wait(), 30)
        first.send(signal.SIGKILL)  # with requests in flight
        await asyncio.gather(*writers)
    assert await first.exit_code() == -signal.SIGKILL
    assert len(created) >= 150 and published

    # the WAL holds the last writes; no owner token is on disk, in either file
    on_disk = db_files(tmp_path)
    assert not any(room["ownerToken"].encode() in on_disk for room in created.values())

    second = server(servers, tmp_path)
    await second.start()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{second.url}/api/rooms?limit=100") as resp:
            assert resp.status == 200
        for room_id, room in created.items():
            got = await get_room(session, second.url, room_id)
            assert got["title"] == room["title"]
            if room_id in published:  # acknowledged: kept
                assert got["status"] == "live"
            elif room_id in attempted:  # killed before it answered: either is right
                assert got["status"] in ("preparing", "live")
            else:
                assert got["status"] == "preparing"
        # tokens work after the restart: owner view, and a close with the owner token
        sample = created[next(iter(published))]
        owner = {"Authorization": f"Bearer {sample['ownerToken']}"}
        async with session.get(f"{second.url}/api/rooms/{sample['id']}", headers=owner) as resp:
            assert (await resp.json())["publish"] == sample["publish"]
        async with session.post(
            f"{second.url}/api/rooms/{sample['id']}/close", headers=owner
        ) as resp:
            assert resp.status == 200


# -- graceful shutdown -----------------------------------------------------------------------


async def test_sigterm_closes_websockets_with_1001_and_flushes_the_database(
    tmp_path: Path, servers: list[Server]
) -> None:
    live = server(servers, tmp_path)
    await live.start()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{live.url}/api/rooms", json={"title": "bye"}) as resp:
            room = await resp.json()
        sockets = [await session.ws_connect(f"{live.url}/ws") for _ in range(3)]
        for ws in sockets:
            await ws.send_json({"type": "join", "roomId": room["id"]})
            assert (await ws.receive_json(timeout=5))["type"] == "joined"
        live.send(signal.SIGTERM)
        for ws in sockets:
            message = await ws.receive(timeout=5)
            while message.type is WSMsgType.TEXT:  # viewer counts may still be on the way
                message = await ws.receive(timeout=5)
            got = (message.type, message.data, message.extra)
            assert got == (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY, "server shutdown"), got
            assert ws.close_code == WSCloseCode.GOING_AWAY
    assert await live.exit_code() == 0, live.log.read_text()
    assert "INFO livehub: livehub shut down cleanly" in live.log.read_text()
    wal = tmp_path / "livehub.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed into the main file
    with sqlite3.connect(tmp_path / "livehub.db") as db:
        rows = db.execute("SELECT id, status FROM rooms").fetchall()
    assert rows == [(room["id"], "preparing")]


async def test_a_newer_database_is_refused_at_start(tmp_path: Path, servers: list[Server]) -> None:
    db = tmp_path / "livehub.db"
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    refused = server(servers, tmp_path)
    await refused.start(wait=False)
    assert await refused.exit_code() == 2
    assert "Traceback" not in refused.log.read_text()
    assert (
        f"database {db} has schema version {len(MIGRATIONS) + 1}, newer than this livehub "
        f"supports ({len(MIGRATIONS)})"
    ) in refused.log.read_text()


# -- restart with a live room, SRS's API down -------------------------------------------------


async def test_restart_with_live_rooms_while_srs_is_down(
    tmp_path: Path, servers: list[Server]
) -> None:
    srs = FakeSRS()
    await srs.start()
    env = {
        "LIVEHUB_SRS_API_URL": srs.url,
        "LIVEHUB_RECONCILE_INTERVAL": "0.1",
        "LIVEHUB_RECONNECT_WINDOW": "0.5",
    }
    first = server(servers, tmp_path, **env)
    await first.start()
    try:
        async with aiohttp.ClientSession() as session:
            rooms = []
            for title, cid in (("stays", "st4ys000"), ("goes", "g0es0000")):
                async with session.post(f"{first.url}/api/rooms", json={"title": title}) as resp:
                    room = await resp.json()
                srs.publish(room["streamKey"], cid)
                hook = hook_for(room, "on_publish.json", client_id=cid)
                assert await send_hook(session, base_url=first.url, body=hook) == {"code": 0}
                rooms.append(await get_room(session, first.url, room["id"]))
            stays, goes = rooms
            first.send(signal.SIGKILL)
            await first.exit_code()

            await srs.stop()  # and SRS's API is unreachable while livehub comes back
            second = server(servers, tmp_path, **env)
            await second.start()
            deadline = time.monotonic() + 30  # fails a hung run, not a slow one
            while True:  # wait until several reconciliations were skipped
                async with session.get(f"{second.url}/metrics") as resp:
                    text = await resp.text()
                line = 'livehub_srs_reconciles_total{result="unreachable"} '
                skipped = [row for row in text.splitlines() if row.startswith(line)]
                if skipped and float(skipped[0].split()[-1]) >= 3:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            # nothing was ended on a guess: both rooms are as they were
            assert await get_room(session, second.url, stays["id"]) == stays
            assert await get_room(session, second.url, goes["id"]) == goes
            async with session.get(f"{second.url}/readyz") as resp:
                assert resp.status == 503
                checks = (await resp.json())["checks"]
            assert (checks["srs_api"], checks["reconcile"]) == ("unreachable", "skipped")

            # SRS answers again; it still has one stream, the other is gone. The publishes
            # were accepted moments ago: age them past the grace period (it is stored, so it
            # outlives a restart) so that this pass may take the stream for gone
            with sqlite3.connect(tmp_path / "livehub.db") as db:
                db.execute("UPDATE rooms SET published_at = published_at - 60000")
            srs.unpublish(goes["streamKey"])
            back = int(time.time() * 1000)
            await srs.start()
            deadline = time.monotonic() + 30  # fails a hung run, not a slow one
            while (await get_room(session, second.url, goes["id"]))["status"] != "ended":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            seen = int(time.time() * 1000)
            ended = await get_room(session, second.url, goes["id"])
            assert ended["startTime"] == goes["startTime"]
            assert back <= ended["endTime"] <= seen  # ended by a pass after SRS came back
            assert await get_room(session, second.url, stays["id"]) == stays
            # the publisher kept across the restart is still matched by its client id
            unpublish = hook_for(stays, "on_unpublish.json", client_id="st4ys000")
            assert await send_hook(session, base_url=second.url, body=unpublish) == {"code": 0}
            gone = await get_room(session, second.url, stays["id"])
            assert gone["reconnecting"] is True
    finally:
        await srs.stop()


# -- hooks duplicated and reordered, over HTTP ---------------------------------------------

SCRIPT = [
    ("on_publish.json", {}),
    ("on_publish.json", {}),  # duplicate
    ("on_publish.srt.json", {"client_id": "b2sy0000"}),  # busy second publisher
    ("on_unpublish.srt.json", {"client_id": "b2sy0000"}),  # SRT's unpublish for it
    ("on_play.json", {}),
    ("on_play.json", {}),  # duplicate
    ("on_play.hls.json", {}),
    ("on_stop.json", {}),
    ("on_stop.json", {}),  # duplicate
    ("on_unpublish.json", {}),
    ("on_unpublish.json", {}),  # duplicate
    ("on_unpublish.whip.json", {"client_id": "unkn0wn0"}),
    ("on_close.json", {}),
]


@pytest.mark.parametrize("window", [0.0, 30.0])
async def test_duplicated_and_reordered_hooks_leave_rooms_consistent(
    aiohttp_client: AiohttpClient, window: float
) -> None:
    client: Client = await aiohttp_client(create_app(make_config(reconnect_window=window)))
    service = client.app[keys.rooms]
    rng = random.Random(4)
    for round_ in range(16):
        room = await (await client.post("/api/rooms", json={"title": "shuffled"})).json()
        steps = [hook_for(room, name, **overrides) for name, overrides in SCRIPT]
        rng.shuffle(steps)
        if round_ % 2:  # all at once: the server sees them in whatever order they land
            replies = await asyncio.gather(*(send_hook(client, body) for body in steps))
        else:  # one after another, so a direct run of the same order must agree
            replies = [await send_hook(client, body) for body in steps]
        for body, reply in zip(steps, replies, strict=True):
            if body["action"] not in ("on_publish", "on_play"):
                assert reply == {"code": 0}  # end and passive events are always acknowledged
        got = await (await client.get(f"/api/rooms/{room['id']}")).json()
        accepted = any(
            body["action"] == "on_publish" and reply == {"code": 0}
            for body, reply in zip(steps, replies, strict=True)
        )
        assert accepted  # the first publish of the room is always allowed
        assert got["status"] in ("live", "ended") and got["startTime"] is not None
        assert (got["endTime"] is not None) == (got["status"] == "ended")
        if got["endTime"] is not None:
            assert got["endTime"] >= got["startTime"]
        assert got["reconnecting"] is False or (got["status"] == "live" and window > 0)
        assert 0 <= got["playerCount"] <= 2
        if round_ % 2 == 0:
            direct = RoomService(
                SQLiteStore(":memory:"), reconnect_window=window, players=MemoryPlayers()
            )
            twin, _ = await direct.create("twin")
            for body in steps:
                key, token = room["streamKey"], room["publish"]["token"]
                await direct.handle_hook(
                    HookEvent(
                        action=body["action"],
                        client_id=body["client_id"],
                        app=body.get("app", ""),
                        stream=body.get("stream", "").replace(key, twin.stream_key),
                        param=body.get("param", "").replace(token, twin.publish_token),
                        service_id=body.get("service_id"),
                    )
                )
            ours = await service.get(room["id"])
            twin = await direct.get(twin.id)
            assert (twin.status, twin.reconnecting, twin.publisher_client_id) == (
                ours.status,
                ours.reconnecting,
                ours.publisher_client_id,
            )
            assert direct.player_count(twin.id, twin.status) == got["playerCount"]


# -- WebSocket clients that vanish without closing -----------------------------------------------


async def raw_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A bare-TCP WebSocket client: it can disappear in ways a real library will not."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    writer.write(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


def masked_text(payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload).encode()
    mask = secrets.token_bytes(4)
    assert len(data) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return struct.pack("!BB", 0x81, 0x80 | len(data)) + mask + body


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        message = await ws.receive_json(timeout=5)
        if message["type"] == kind:
            return dict(message)


@pytest.mark.parametrize("how", ["reset", "silent"])
async def test_a_client_that_vanishes_is_no_longer_counted(
    aiohttp_client: AiohttpClient, how: str
) -> None:
    # heartbeat 0.2 s: a silent peer misses its pong after 0.1 s more
    client = await aiohttp_client(create_app(make_config(heartbeat=0.2)))
    room = await (await client.post("/api/rooms", json={"title": "vanish"})).json()
    watcher = await client.ws_connect("/ws", heartbeat=None, autoping=True)
    await watcher.send_json({"type": "join", "roomId": room["id"]})
    await next_of(watcher, "joined")

    port = client.port
    assert port is not None
    reader, writer = await raw_ws(port)
    writer.write(masked_text({"type": "join", "roomId": room["id"], "name": "ghost"}))
    joined = await next_of(watcher, "peer-joined")
    assert joined["peer"]["name"] == "ghost"
    while (await next_of(watcher, "viewer-count"))["viewerCount"] != 2:
        pass
    assert (await (await client.get(f"/api/rooms/{room['id']}")).json())["viewerCount"] == 2

    if how == "reset":
        writer.transport.abort()  # RST, no close frame
    # "silent": the socket stays open but never answers a ping again (a dead network path)
    left = await next_of(watcher, "peer-left")
    assert left == {"type": "peer-left", "roomId": room["id"], "peerId": joined["peer"]["peerId"]}
    while (await next_of(watcher, "viewer-count"))["viewerCount"] != 1:
        pass
    await watcher.close()
    await eventually(lambda: not client.app[keys.hub].peers)
    got = await (await client.get(f"/api/rooms/{room['id']}")).json()
    assert got["viewerCount"] == 0
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    del reader
