"""Room lists over real HTTP: one page by default, X-Total-Count, a next link through an opaque
keyset cursor, the status filter, and history kept on disk (not in memory, not at start-up)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from yarl import URL

from livehub import keys
from livehub.adapters.sqlite.store import SQLiteStore
from livehub.app import create_app
from livehub.domain.room import RoomStatus
from tests.conftest import ADMIN_TOKEN, Client, hook_for, make_config, send_hook
from tests.helpers import until_room

ORIGIN = "https://app.example.com"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def fill(path: Path, count: int, *, status: str = "ended", start: int = 1_700_000_000_000) -> None:
    """``count`` rooms written straight into the database (as a long history would be)."""
    SQLiteStore(str(path))._db.close()  # create the schema
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO rooms (id, title, stream_key, status, created_at, start_time, end_time, "
            "publish_token, owner_token_hash) VALUES (?, ?, ?, ?, ?, ?, ?, 'pt', 'oh')",
            (
                (
                    f"h{i:07d}",
                    f"old {i}",
                    f"stream-h{i:07d}",
                    status,
                    start + i,
                    start + i,
                    start + i + 1 if status == "ended" else None,
                )
                for i in range(count)
            ),
        )


async def pages(client: Client, url: str) -> list[list[dict[str, Any]]]:
    """Follow the next links from ``url`` to the end."""
    got = []
    next_url: str | None = url
    while next_url is not None:
        resp = await client.get(next_url)
        assert resp.status == 200, await resp.text()
        got.append(await resp.json())
        link = resp.links.get("next")
        next_url = URL(link["url"]).path_qs if link else None
        assert len(got) < 100
    return got


async def test_a_list_is_one_page_with_the_total_and_a_next_link(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "livehub.db"
    fill(path, 250)
    client = await aiohttp_client(create_app(make_config(db_path=str(path))))
    resp = await client.get("/api/rooms")
    assert resp.status == 200
    first = await resp.json()
    assert isinstance(first, list) and len(first) == 100  # the bare array, one page
    assert [room["id"] for room in first] == [f"h{i:07d}" for i in range(249, 149, -1)]
    assert resp.headers["X-Total-Count"] == "250"
    link = resp.headers["Link"]
    assert link.startswith("</api/rooms?") and link.endswith('>; rel="next"')
    every = await pages(client, "/api/rooms?limit=60")
    assert [len(page) for page in every] == [60, 60, 60, 60, 10]
    ids = [room["id"] for page in every for room in page]
    assert ids == [f"h{i:07d}" for i in range(249, -1, -1)]  # newest first, none twice


async def test_pages_hold_still_while_rooms_are_created(client: Client) -> None:
    created = [await client.post("/api/rooms", json={"title": f"r{i}"}) for i in range(5)]
    ids = [(await resp.json())["id"] for resp in created]
    resp = await client.get("/api/rooms?limit=2")
    assert [room["id"] for room in await resp.json()] == ids[:2:-1][:2]
    for i in range(3):  # newer rooms appear on the first page, not in the middle of a walk
        assert (await client.post("/api/rooms", json={"title": f"new {i}"})).status == 201
    rest = await pages(client, URL(resp.links["next"]["url"]).path_qs)
    assert [room["id"] for page in rest for room in page] == ids[2::-1]
    total = await client.get("/api/rooms")
    assert total.headers["X-Total-Count"] == "8" and "Link" not in total.headers


async def test_the_status_filter_pages_and_counts_only_that_status(client: Client) -> None:
    rooms = [
        await (await client.post("/api/rooms", json={"title": f"r{i}"})).json() for i in range(5)
    ]
    for room in rooms[1:4]:
        body = hook_for(room, "on_publish.json", client_id=f"c{room['id']}")
        assert await send_hook(client, body) == {"code": 0}
    resp = await client.get("/api/rooms?status=live&limit=2")
    assert resp.headers["X-Total-Count"] == "3"
    assert [room["id"] for room in await resp.json()] == [rooms[3]["id"], rooms[2]["id"]]
    next_url = URL(resp.links["next"]["url"])
    assert next_url.query["status"] == "live" and next_url.query["limit"] == "2"
    last = await client.get(next_url.path_qs)
    assert [room["id"] for room in await last.json()] == [rooms[1]["id"]]
    assert last.headers["X-Total-Count"] == "3" and "Link" not in last.headers
    ended = await client.get("/api/rooms?status=ended")
    assert await ended.json() == [] and ended.headers["X-Total-Count"] == "0"


async def test_cors_exposes_the_paging_headers(client: Client) -> None:
    for i in range(3):
        await client.post("/api/rooms", json={"title": f"r{i}"})
    resp = await client.get("/api/rooms?limit=1", headers={"Origin": ORIGIN})
    exposed = {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-total-count", "link"} <= exposed


async def test_history_is_not_loaded_at_start_up(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Ended rooms stay on disk: start-up reads nothing of them, and asking for one reads it."""
    path = tmp_path / "livehub.db"
    fill(path, 20_000)
    started = time.perf_counter()
    client = await aiohttp_client(create_app(make_config(db_path=str(path))))
    took = time.perf_counter() - started
    assert took < 1.0  # loading 20,000 rooms took seconds before
    got = await (await client.get("/api/rooms/h0000007")).json()
    assert (got["id"], got["status"], got["title"]) == ("h0000007", "ended", "old 7")
    deep = await client.get("/api/rooms?status=ended&limit=1000")
    assert deep.headers["X-Total-Count"] == "20000"


async def test_page_bodies_are_the_public_views_byte_for_byte(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Pages are built from rows in the store's reader thread, counts filled in on the loop:
    the bytes stay those of each room's public view, whatever the room's state, title or
    stream key (rooms from an older history may hold what the API refuses today)."""
    path = tmp_path / "livehub.db"
    fill(path, 40)
    odd = [
        ("o1", 'say "hi" \\ back', "stream o1/é?&=+"),  # a key that needs escaping in URLs
        ("o2", "tab\tnew\nline\x00\x1f\x7f", "stream-o2"),  # control characters
        ("o3", "测试 🎥 \u2028 </script>", "stream-o3"),
    ]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO rooms (id, title, stream_key, status, created_at, publish_token, "
            "owner_token_hash) VALUES (?, ?, ?, 'ended', 1700000000020, 'pt', 'oh')",
            odd,
        )
    config = make_config(db_path=str(path), reconnect_window=30.0)
    client = await aiohttp_client(create_app(config))
    made = [
        await (await client.post("/api/rooms", json={"title": f"made {i}"})).json()
        for i in range(4)
    ]
    played, away, watched, closed = made
    assert await send_hook(client, hook_for(played, "on_publish.json")) == {"code": 0}
    assert await send_hook(client, hook_for(played, "on_play.json")) == {"code": 0}
    assert await send_hook(client, hook_for(away, "on_publish.json", client_id="c2")) == {"code": 0}
    assert await send_hook(client, hook_for(away, "on_unpublish.json", client_id="c2")) == {
        "code": 0
    }
    viewer = await client.ws_connect("/ws")
    await viewer.send_json({"type": "join", "roomId": watched["id"]})
    assert (await viewer.receive_json())["type"] == "joined"
    assert (await client.post(f"/api/rooms/{closed['id']}/close", headers=ADMIN)).status == 200
    views, rooms = client.app[keys.views], client.app[keys.rooms]
    shown = [views.public(room) for room in await rooms.page(None, 100)]
    # every kind of room is on the first page: counts, a reconnect window, escaped URLs
    assert {(v["viewerCount"], v["playerCount"], v["reconnecting"]) for v in shown} == {
        (0, 0, False),
        (0, 1, False),
        (0, 0, True),
        (1, 0, False),
    }
    escaped = next(v["playUrls"] for v in shown if v["id"] == "o1")
    assert escaped["flv"].endswith("/stream%20o1/%C3%A9%3F%26%3D%2B.flv")
    assert escaped["whep"].endswith("&stream=stream+o1%2F%C3%A9%3F%26%3D%2B")
    middle = (1_700_000_000_020, "o2")
    for url, status, limit, after in [
        ("/api/rooms", None, 100, None),
        ("/api/rooms?limit=5", None, 5, None),
        ("/api/rooms?status=live", RoomStatus.LIVE, 100, None),
        ("/api/rooms?status=ended&limit=3", RoomStatus.ENDED, 3, None),
        ("/api/rooms?cursor=1700000000020.o2&limit=2", None, 2, middle),
        ("/api/rooms?status=ended&cursor=1700000000020.o2", RoomStatus.ENDED, 100, middle),
    ]:
        resp = await client.get(url)
        assert resp.status == 200
        expected = [views.public(room) for room in await rooms.page(status, limit, after)]
        assert await resp.read() == orjson.dumps(expected), url
    await viewer.close()


async def test_a_preparing_room_past_the_ttl_ends_and_old_history_is_deleted(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "livehub.db"
    long_ago = int(time.time() * 1000) - 400 * 24 * 3600 * 1000
    fill(path, 3, status="ended", start=long_ago)  # ended 400 days ago
    config = make_config(
        db_path=str(path),
        preparing_ttl_hours=0.3 / 3600,  # 0.3 s
        ended_retention_days=365.0,
        sweep_interval=0.05,
    )
    client = await aiohttp_client(create_app(config))
    room = await (await client.post("/api/rooms", json={"title": "never used"})).json()
    rooms = client.app[keys.rooms]
    ended = await until_room(rooms, room["id"], lambda r: r.status is RoomStatus.ENDED)
    assert ended.start_time is None and ended.end_time is not None
    listed = await client.get("/api/rooms")
    assert [r["id"] for r in await listed.json()] == [room["id"]]  # the old history is gone
    assert listed.headers["X-Total-Count"] == "1"


async def test_zero_ttl_and_retention_keep_everything(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "livehub.db"
    fill(path, 2, status="ended", start=1)
    config = make_config(
        db_path=str(path), preparing_ttl_hours=0.0, ended_retention_days=0.0, sweep_interval=0.01
    )
    app: web.Application = create_app(config)
    client = await aiohttp_client(app)
    room = await (await client.post("/api/rooms", json={"title": "waits"})).json()
    await asyncio.sleep(0.1)  # several sweeps
    assert (await client.get("/api/rooms")).headers["X-Total-Count"] == "3"
    assert (await (await client.get(f"/api/rooms/{room['id']}")).json())["status"] == "preparing"
