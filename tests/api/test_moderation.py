"""Chat moderation over real WebSocket connections: chat ids and roles, chat-delete, mute and
unmute, slow mode with room-settings; a viewer's moderation is forbidden; bad input is an
``error`` event that changes nothing."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.sqlite.store import SQLiteStore
from livehub.app import create_app
from livehub.domain import moderation
from tests.conftest import Client, make_config
from tests.helpers import eventually
from tests.signaling_client import expect, join, receive

WS = ClientWebSocketResponse
#: the test clients' address: a trusted proxy where a test needs other client addresses
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


async def room_with_members(client: Client) -> tuple[dict[str, Any], WS, str, WS, str]:
    room = await (await client.post("/api/rooms", json={"title": "Chatty"})).json()
    host = await client.ws_connect("/ws")
    host_id = (await join(host, room["id"], role="host", token=room["ownerToken"], name="H"))[
        "peerId"
    ]
    viewer = await client.ws_connect("/ws")
    joined = await join(viewer, room["id"], name="V")
    assert joined["slowMode"] == 0
    await expect(host, "peer-joined")
    return room, host, host_id, viewer, joined["peerId"]


async def chat(ws: WS, room_id: str, text: str) -> None:
    await ws.send_json({"type": "chat", "roomId": room_id, "text": text})


async def slow_mode_after_a_line(host: WS, viewer: WS, room_id: str) -> None:
    """The host sets slow mode to 600 s and the viewer chats once ("one")."""
    await host.send_json({"type": "slow-mode", "roomId": room_id, "seconds": 600})
    await expect(viewer, "room-settings")
    await chat(viewer, room_id, "one")
    assert (await expect(viewer, "chat"))["text"] == "one"


async def test_chat_lines_carry_id_and_role_and_hosts_delete_them(client: Client) -> None:
    room, host, _host_id, viewer, viewer_id = await room_with_members(client)
    rid = room["id"]
    await chat(viewer, rid, "hello")
    line = await expect(host, "chat")
    assert (line["from"], line["role"], line["text"]) == (viewer_id, "viewer", "hello")
    assert await expect(viewer, "chat") == line
    await chat(host, rid, "welcome")
    assert (await expect(viewer, "chat"))["role"] == "host"
    await expect(host, "chat")
    await viewer.send_json({"type": "chat-delete", "roomId": rid, "id": line["id"]})
    event = await receive(viewer)
    assert (event["type"], event["code"], event["inReplyTo"]) == (
        "error",
        "forbidden",
        "chat-delete",
    )
    await host.send_json({"type": "chat-delete", "roomId": rid, "id": line["id"]})
    for ws in (host, viewer):
        assert await expect(ws, "chat-deleted") == {
            "type": "chat-deleted",
            "roomId": rid,
            "id": line["id"],
        }
    for bad in (None, 5, "", "x" * 65):
        await host.send_json({"type": "chat-delete", "roomId": rid, "id": bad})
        assert (await receive(host))["code"] == "invalid_id"


async def test_a_muted_member_cannot_chat_until_unmuted(client: Client) -> None:
    room, host, host_id, viewer, viewer_id = await room_with_members(client)
    rid = room["id"]
    await viewer.send_json({"type": "mute", "roomId": rid, "peerId": host_id, "seconds": 60})
    assert (await receive(viewer))["code"] == "forbidden"
    for bad, code in (
        ({"peerId": viewer_id, "seconds": 0}, "invalid_seconds"),
        ({"peerId": viewer_id, "seconds": True}, "invalid_seconds"),
        ({"peerId": viewer_id, "seconds": 8 * 86400}, "invalid_seconds"),
        ({"peerId": "nobody", "seconds": 5}, "peer_not_found"),
        ({"peerId": host_id, "seconds": 5}, "peer_not_found"),
    ):
        await host.send_json({"type": "mute", "roomId": rid, **bad})
        assert (await receive(host))["code"] == code, bad
    await host.send_json({"type": "mute", "roomId": rid, "peerId": viewer_id, "seconds": 60})
    muted = await expect(viewer, "muted")
    assert (muted["peerId"], muted["by"]) == (viewer_id, host_id)
    await chat(viewer, rid, "can you hear me")
    refused = await receive(viewer)
    assert (refused["type"], refused["code"], refused["inReplyTo"]) == ("error", "muted", "chat")
    stored = await client.app[keys.rooms].get(rid)
    assert stored.moderation["mutes"] == {viewer_id: muted["until"]}
    await host.send_json({"type": "unmute", "roomId": rid, "peerId": viewer_id})
    assert (await expect(viewer, "unmuted"))["peerId"] == viewer_id
    await chat(viewer, rid, "back")
    assert (await expect(host, "chat"))["text"] == "back"


async def test_slow_mode_spaces_out_non_hosts(client: Client) -> None:
    room, host, _host_id, viewer, _viewer_id = await room_with_members(client)
    rid = room["id"]
    await viewer.send_json({"type": "slow-mode", "roomId": rid, "seconds": 2})
    assert (await receive(viewer))["code"] == "forbidden"
    for bad in (-1, 3601, "2", None):
        await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": bad})
        assert (await receive(host))["code"] == "invalid_seconds"
    await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": 600})
    for ws in (host, viewer):
        assert await expect(ws, "room-settings") == {
            "type": "room-settings",
            "roomId": rid,
            "slowMode": 600,
        }
    late = await client.ws_connect("/ws")
    assert (await join(late, rid))["slowMode"] == 600
    await expect(host, "peer-joined")
    await expect(viewer, "peer-joined")
    await chat(viewer, rid, "one")
    assert (await expect(host, "chat"))["text"] == "one"
    await expect(viewer, "chat")
    await expect(late, "chat")
    await chat(viewer, rid, "two")
    refused = await receive(viewer)
    assert (refused["type"], refused["code"]) == ("error", "slow_mode")
    # hosts are not slowed down
    for text in ("h1", "h2"):
        await chat(host, rid, text)
        assert (await expect(viewer, "chat"))["text"] == text
    await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": 0})
    assert (await expect(viewer, "room-settings"))["slowMode"] == 0
    assert (await client.app[keys.rooms].get(rid)).moderation == {}
    await chat(viewer, rid, "three")
    skip = ("viewer-count", "room-settings")
    texts = [(await receive(host, skip=skip))["text"] for _ in range(3)]
    assert texts == ["h1", "h2", "three"]  # the host's own lines, then the viewer's


async def test_slow_mode_outlasts_a_leave_and_a_join_again(client: Client) -> None:
    room, host, _host_id, viewer, _viewer_id = await room_with_members(client)
    rid = room["id"]
    await slow_mode_after_a_line(host, viewer, rid)
    await viewer.send_json({"type": "leave", "roomId": rid})
    await expect(viewer, "left")
    await join(viewer, rid, name="V")
    await chat(viewer, rid, "two")
    refused = await receive(viewer)
    assert (refused["type"], refused["code"]) == ("error", "slow_mode")


async def test_no_mute_or_slow_mode_in_an_ended_room(client: Client) -> None:
    room, host, _host_id, _viewer, viewer_id = await room_with_members(client)
    rid = room["id"]
    await host.send_json({"type": "close-room", "roomId": rid})
    await expect(host, "room-status")
    for message in (
        {"type": "mute", "peerId": viewer_id, "seconds": 60},
        {"type": "slow-mode", "seconds": 10},
    ):
        await host.send_json({**message, "roomId": rid})
        event = await receive(host)
        assert (event["type"], event["code"]) == ("error", "room_ended"), event
    assert (await client.app[keys.rooms].get(rid)).moderation == {}


async def test_slow_mode_outlasts_a_reconnect(aiohttp_client: AiohttpClient) -> None:
    """A viewer chatted, reloaded the page and chatted again at once: slow mode follows its
    address through the reconnect, as a mute does. Viewers already in the room from that
    address (one NAT) chat on; another address is not slowed; the room keeps a digest."""
    client = await aiohttp_client(create_app(make_config(trusted_proxies=(LOOPBACK,))))
    presence = ("viewer-count", "peer-joined", "peer-left")

    async def connect(address: str) -> WS:
        return await client.ws_connect("/ws", headers={"X-Forwarded-For": address})

    async def heard(ws: WS) -> str:
        event = await receive(ws, skip=presence)
        assert event["type"] == "chat", event
        text: str = event["text"]
        return text

    room = await (await client.post("/api/rooms", json={"title": "Slow"})).json()
    rid = room["id"]
    host = await connect("203.0.113.1")
    await join(host, rid, role="host", token=room["ownerToken"])
    await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": 600})
    await expect(host, "room-settings")
    neighbour = await connect("198.51.100.7")  # behind the same NAT, there before
    await join(neighbour, rid, name="N")
    viewer = await connect("198.51.100.7")
    viewer_id = (await join(viewer, rid, name="V"))["peerId"]
    await chat(viewer, rid, "one")
    assert await heard(host) == "one"
    await viewer.close()

    async def stored_keys() -> dict[str, Any]:
        kept = (await client.app[keys.rooms].get(rid)).moderation
        return dict(kept.get("slowKeys") or {})

    stored = await eventually(stored_keys)
    assert all(key.startswith("address:") for key in stored), stored
    assert "198.51.100" not in str(stored) and viewer_id not in str(stored)

    again = await connect("198.51.100.7")
    await join(again, rid, name="Someone else")
    await chat(again, rid, "two")
    refused = await receive(again)
    assert (refused["type"], refused["code"], refused["inReplyTo"]) == (
        "error",
        "slow_mode",
        "chat",
    )
    await chat(neighbour, rid, "hello from the same address")
    assert await heard(host) == "hello from the same address"
    elsewhere = await connect("192.0.2.9")
    await join(elsewhere, rid)
    await chat(elsewhere, rid, "hello from elsewhere")
    assert await heard(host) == "hello from elsewhere"
    # slow mode off: the kept keys go with it
    await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": 0})
    assert (await receive(again, skip=(*presence, "chat")))["type"] == "room-settings"
    assert (await client.app[keys.rooms].get(rid)).moderation == {}
    await chat(again, rid, "three")
    assert (await receive(host, skip=(*presence, "room-settings")))["text"] == "three"


async def test_a_room_keeps_the_latest_departed_chatters_only(
    aiohttp_client: AiohttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slow-mode keys a room stores are bounded (``MAX_SLOW_KEYS``): the latest lines'
    are kept, so a flood of departures cannot grow the room's row."""
    monkeypatch.setattr(moderation, "MAX_SLOW_KEYS", 3)
    client = await aiohttp_client(create_app(make_config(trusted_proxies=(LOOPBACK,))))
    room = await (await client.post("/api/rooms", json={"title": "Busy"})).json()
    rid = room["id"]
    host = await client.ws_connect("/ws")
    await join(host, rid, role="host", token=room["ownerToken"])
    await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": 600})
    await expect(host, "room-settings")

    async def stored() -> dict[str, int]:
        kept = (await client.app[keys.rooms].get(rid)).moderation
        return dict(kept.get("slowKeys") or {})

    order: list[str] = []  # each departure's key, in order
    for n in range(5):
        ws = await client.ws_connect("/ws", headers={"X-Forwarded-For": f"198.51.100.{n + 1}"})
        await join(ws, rid)
        await chat(ws, rid, f"line {n}")
        echoed = await receive(ws, skip=("viewer-count", "peer-joined"))
        assert echoed["type"] == "chat", echoed
        await ws.close()

        async def new_key() -> list[str]:
            return [key for key in await stored() if key not in order]

        (key,) = await eventually(new_key)
        order.append(key)
        assert len(await stored()) == min(n + 1, 3)
    assert set(await stored()) == set(order[-3:])


async def test_a_shutdown_writes_the_lines_of_the_members_it_closes(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A restart closes every connection: the slow-mode line of a viewer that chatted just
    before is written while the shutdown waits for the connections' handlers, before the store
    closes, so its reconnect after the restart is slowed."""
    path = str(tmp_path / "livehub.db")
    client = await aiohttp_client(create_app(make_config(db_path=path)))
    room, host, _host_id, viewer, _viewer_id = await room_with_members(client)
    rid = room["id"]
    await slow_mode_after_a_line(host, viewer, rid)
    await client.close()  # the viewer is still connected: the shutdown closes it
    assert [key.split(":")[0] for key in await stored_slow_keys(path, rid)] == ["address"]

    again = await aiohttp_client(create_app(make_config(db_path=path)))
    ws = await again.ws_connect("/ws")
    await join(ws, rid)
    await chat(ws, rid, "two")
    assert (await receive(ws))["code"] == "slow_mode"


async def stored_slow_keys(path: str, room_id: str) -> dict[str, Any]:
    store = SQLiteStore(path)
    try:
        stored = await store.get(room_id)
    finally:
        await store.close()
    assert stored is not None
    keys: dict[str, Any] = stored.moderation.get("slowKeys", {})
    return keys


def delay_writes(app: Any, seconds: float) -> None:
    """The app's store answers each write ``seconds`` late (a slow database)."""
    store = app[keys.store]
    update = store.update

    async def late_update(*args: Any) -> bool:
        await asyncio.sleep(seconds)
        answer: bool = await update(*args)
        return answer

    store.update = late_update


async def line_then_slow_store(
    aiohttp_client: AiohttpClient, tmp_path: Path, shutdown_timeout: float, delay: float
) -> tuple[str, Client, str]:
    """An app on a database file (with ``shutdown_timeout``), slow mode on and a viewer's line
    in a room, then every store write ``delay`` seconds late: the file, the client, the room."""
    path = str(tmp_path / "livehub.db")
    app = create_app(make_config(db_path=path, shutdown_timeout=shutdown_timeout))
    client = await aiohttp_client(app)
    room, host, _host_id, viewer, _viewer_id = await room_with_members(client)
    await slow_mode_after_a_line(host, viewer, room["id"])
    delay_writes(app, delay)
    return path, client, room["id"]


async def test_a_shutdown_waits_for_a_slow_store_to_write_the_lines(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The line of a member the shutdown disconnects is written even when the store is slower
    than the handlers' end: the shutdown waits for it (up to a quarter of its timeout) before
    the store closes."""
    path, client, room_id = await line_then_slow_store(aiohttp_client, tmp_path, 10.0, 0.5)
    await client.close()
    assert [key.split(":")[0] for key in await stored_slow_keys(path, room_id)] == ["address"]


async def test_a_shutdown_gives_a_store_that_does_not_answer_a_quarter_of_its_timeout(
    aiohttp_client: AiohttpClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that does not answer holds the shutdown a quarter of its timeout, no longer:
    the write is cancelled and said so, and the room is as it was."""
    path, client, room_id = await line_then_slow_store(aiohttp_client, tmp_path, 2.0, 60)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="livehub.domain.moderation"):
        await client.close()
    assert time.monotonic() - started < 30  # bounded: not the store's 60 s
    assert "1 moderation key writes cancelled at shutdown" in caplog.text
    assert await stored_slow_keys(path, room_id) == {}
