"""Chat moderation over real WebSocket connections: chat ids and roles, chat-delete, mute and
unmute, slow mode with room-settings; a viewer's moderation is forbidden; bad input is an
``error`` event that changes nothing."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientWebSocketResponse

from livehub import keys
from tests.conftest import Client
from tests.signaling_client import expect, join, receive

WS = ClientWebSocketResponse


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
    await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": 600})
    await expect(viewer, "room-settings")
    await chat(viewer, rid, "one")
    assert (await expect(viewer, "chat"))["text"] == "one"
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
