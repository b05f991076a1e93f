"""The stream lifecycle over real HTTP hooks, watched by a room member over a real WebSocket:
publish → unpublish (reconnecting) → publish again (same broadcast) → window passes (ended)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from tests.conftest import Client, hook_for, make_config, send_hook
from tests.helpers import room_json

WINDOW = 0.3

WS = aiohttp.ClientWebSocketResponse


def now_ms() -> int:
    return int(time.time() * 1000)


async def next_status(ws: WS, within: float = 2.0) -> dict[str, Any]:
    """The next ``room-status`` event (viewer counts and the like are skipped)."""
    deadline = time.monotonic() + within
    while True:
        message = await ws.receive_json(timeout=max(deadline - time.monotonic(), 0.01))
        if message["type"] == "room-status":
            return dict(message)


async def member(client: Client, room_id: str) -> WS:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": room_id, "name": "watcher"})
    joined = await ws.receive_json(timeout=2)
    assert joined["type"] == "joined"
    return ws


@pytest.fixture
async def lifecycle_client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(make_config(reconnect_window=WINDOW)))


async def new_room(client: Client) -> dict[str, Any]:
    resp = await client.post("/api/rooms", json={"title": "Lifecycle"})
    assert resp.status == 201
    room: dict[str, Any] = await resp.json()
    return room


async def test_reconnect_inside_the_window_continues_the_broadcast(
    lifecycle_client: Client,
) -> None:
    client = lifecycle_client
    room = await new_room(client)
    ws = await member(client, room["id"])

    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    live = await next_status(ws)
    assert (live["roomId"], live["status"]) == (room["id"], "live")
    assert live["room"]["reconnecting"] is False
    start_time = live["room"]["startTime"]
    assert isinstance(start_time, int) and live["room"]["endTime"] is None

    assert await send_hook(client, hook_for(room, "on_unpublish.json")) == {"code": 0}
    away = await next_status(ws)
    assert away["status"] == "live" and away["room"]["reconnecting"] is True
    assert away["room"]["startTime"] == start_time
    assert await room_json(client, room["id"]) == {**away["room"], "viewerCount": 1}

    # the encoder reconnects (a new connection, so a new client id) inside the window
    back_hook = hook_for(room, "on_publish.json", client_id="n3wc1i3n")
    assert await send_hook(client, back_hook) == {"code": 0}
    back = await next_status(ws)
    assert back["status"] == "live" and back["room"]["reconnecting"] is False
    assert back["room"]["startTime"] == start_time and back["room"]["endTime"] is None

    # past the old window nothing happens: the next event is one this test causes
    await asyncio.sleep(WINDOW + 0.1)
    assert await send_hook(client, hook_for(room, "on_play.json")) == {"code": 0}
    played = await next_status(ws)
    assert (played["status"], played["room"]["playerCount"]) == ("live", 1)
    await ws.close()


async def test_window_passes_and_the_room_ends_at_the_unpublish(lifecycle_client: Client) -> None:
    client = lifecycle_client
    room = await new_room(client)
    ws = await member(client, room["id"])
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    start_time = (await next_status(ws))["room"]["startTime"]

    before = now_ms()
    assert await send_hook(client, hook_for(room, "on_unpublish.json")) == {"code": 0}
    after = now_ms()
    away = await next_status(ws)
    assert away["room"]["reconnecting"] is True

    ended = await next_status(ws, within=WINDOW + 2)
    ended_seen = now_ms()
    assert ended["status"] == "ended"
    assert ended["room"]["reconnecting"] is False
    assert ended["room"]["startTime"] == start_time
    assert before <= ended["room"]["endTime"] <= after  # the unpublish, not the window's end
    assert ended_seen - before >= WINDOW * 1000
    assert await room_json(client, room["id"]) == {**ended["room"], "viewerCount": 1}
    # a publish after the end is refused
    refused = await send_hook(client, hook_for(room, "on_publish.json", client_id="l4t3c0m3"))
    assert refused["code"] != 0
    await ws.close()


async def test_window_zero_ends_at_once(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_config(reconnect_window=0.0)))
    room = await new_room(client)
    ws = await member(client, room["id"])
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    assert (await next_status(ws))["status"] == "live"
    before = now_ms()
    assert await send_hook(client, hook_for(room, "on_unpublish.json")) == {"code": 0}
    ended = await next_status(ws)
    assert ended["status"] == "ended" and ended["room"]["reconnecting"] is False
    assert before <= ended["room"]["endTime"] <= now_ms()
    await ws.close()


async def test_busy_publisher_and_unknown_ids_change_nothing(lifecycle_client: Client) -> None:
    client = lifecycle_client
    room = await new_room(client)
    ws = await member(client, room["id"])
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    live = await next_status(ws)
    # a second encoder with the right token while the first is live: refused (busy)
    busy = await send_hook(client, hook_for(room, "on_publish.srt.json", client_id="b2sy0000"))
    assert busy == {"code": 1, "msg": "room already has a live publisher"}
    # SRT then sends on_unpublish for the refused client; ids never accepted are ignored too
    for client_id in ("b2sy0000", "unkn0wn0"):
        hook = hook_for(room, "on_unpublish.srt.json", client_id=client_id)
        assert await send_hook(client, hook) == {"code": 0}
    stop = hook_for(room, "on_stop.json", client_id="n0tp1ay3")
    assert await send_hook(client, stop) == {"code": 0}
    # a duplicated on_publish of the live publisher is allowed and changes nothing
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    assert await room_json(client, room["id"]) == {**live["room"], "viewerCount": 1}
    # the next event is the one this play causes: nothing was announced in between
    assert await send_hook(client, hook_for(room, "on_play.json")) == {"code": 0}
    played = await next_status(ws)
    assert played["room"] == {**live["room"], "playerCount": 1}
    await ws.close()


async def test_closing_while_reconnecting_ends_at_the_unpublish(lifecycle_client: Client) -> None:
    client = lifecycle_client
    room = await new_room(client)
    ws = await member(client, room["id"])
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    await next_status(ws)
    before = now_ms()
    assert await send_hook(client, hook_for(room, "on_unpublish.json")) == {"code": 0}
    after = now_ms()
    assert (await next_status(ws))["room"]["reconnecting"] is True
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200
    ended = await next_status(ws)
    assert ended["status"] == "ended"
    assert before <= ended["room"]["endTime"] <= after
    # the window's timer was cancelled: no second "ended" after it would have passed
    await asyncio.sleep(WINDOW + 0.1)
    assert (await room_json(client, room["id"]))["endTime"] == ended["room"]["endTime"]
    await ws.close()


async def test_players_drop_to_zero_at_the_close_and_late_on_stop_changes_nothing(
    lifecycle_client: Client,
) -> None:
    """Issue 20 item 7: a closed room's players are cut off with it. SRS times the old play
    sessions out later (its on_stop hooks can come a minute after the close); meanwhile, and
    after them, every view of the room says 0 players."""
    client = lifecycle_client
    room = await new_room(client)
    ws = await member(client, room["id"])
    assert await send_hook(client, hook_for(room, "on_publish.json")) == {"code": 0}
    assert (await next_status(ws))["status"] == "live"
    players = ["p1ay3r01", "p1ay3r02"]
    for client_id in players:
        assert await send_hook(client, hook_for(room, "on_play.json", client_id=client_id)) == {
            "code": 0
        }
    assert (await next_status(ws))["room"]["playerCount"] == 1
    assert (await next_status(ws))["room"]["playerCount"] == 2

    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    resp = await client.post(f"/api/rooms/{room['id']}/close", headers=owner)
    assert resp.status == 200
    assert (await resp.json())["room"]["playerCount"] == 0
    ended = await next_status(ws)
    assert (ended["status"], ended["room"]["playerCount"]) == ("ended", 0)

    async def shown() -> list[int]:
        listed = await (await client.get("/api/rooms")).json()
        ended_page = await (await client.get("/api/rooms?status=ended")).json()
        owned = await (await client.get(f"/api/rooms/{room['id']}", headers=owner)).json()
        return [
            (await room_json(client, room["id"]))["playerCount"],
            owned["playerCount"],
            *(r["playerCount"] for r in listed + ended_page if r["id"] == room["id"]),
        ]

    assert await shown() == [0, 0, 0, 0]
    # a new player of the ended room is refused; SRS's late on_stop hooks are answered
    # and change nothing: no event, still 0 everywhere
    refused = await send_hook(client, hook_for(room, "on_play.json", client_id="l4t3p1ay"))
    assert refused["code"] != 0
    for client_id in players:
        assert await send_hook(client, hook_for(room, "on_stop.json", client_id=client_id)) == {
            "code": 0
        }
    assert await shown() == [0, 0, 0, 0]
    with pytest.raises(asyncio.TimeoutError):
        await next_status(ws, within=0.3)
    await ws.close()
