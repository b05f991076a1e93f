"""An audit of private rooms and moderation over real WebSocket and HTTP connections: what a
stranger can learn of a private room, and who may moderate what."""

from __future__ import annotations

import ipaddress
from typing import Any

import jwt
import pytest
from aiohttp import ClientWebSocketResponse
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.app import create_app
from tests.conftest import Client, make_config
from tests.helpers import eventually
from tests.signaling_client import expect, join, receive

SECRET = "viewer-token-secret-for-the-tests-0123456789"
#: the test clients' address: a trusted proxy where a test needs other client addresses
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_app(make_config(viewer_token_secret=SECRET)))


async def create(client: Client, visibility: str = "private") -> dict[str, Any]:
    resp = await client.post("/api/rooms", json={"title": "t", "visibility": visibility})
    assert resp.status == 201, await resp.text()
    room: dict[str, Any] = await resp.json()
    return room


async def private_room_with_host(
    aiohttp_client: AiohttpClient,
) -> tuple[Client, str, str, ClientWebSocketResponse]:
    """A client that may name its address (``X-Forwarded-For``), a private room, a viewer token
    of it, and its host joined from 203.0.113.1."""
    client = await aiohttp_client(
        create_app(make_config(viewer_token_secret=SECRET, trusted_proxies=(LOOPBACK,)))
    )
    room = await create(client)
    rid = room["id"]
    token = jwt.encode({"room": rid, "exp": 2**40}, SECRET)
    host = await client.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.1"})
    await join(host, rid, role="host", token=room["ownerToken"])
    return client, rid, token, host


def without_room(event: dict[str, Any], room_id: str) -> dict[str, Any]:
    """An error event with the room id asked for blanked out (it names what the client sent)."""
    return {k: v.replace(room_id, "R") if isinstance(v, str) else v for k, v in event.items()}


async def test_a_stranger_cannot_tell_a_private_room_from_an_unknown_id_on_join(
    client: Client,
) -> None:
    live = await create(client)
    ended = await create(client)
    other = await create(client, "public")
    resp = await client.post(
        f"/api/rooms/{ended['id']}/close",
        headers={"Authorization": f"Bearer {ended['ownerToken']}"},
    )
    assert resp.status == 200
    ws = await client.ws_connect("/ws")
    unknown_id = "zzzzzzzzzzzz"
    foreign = jwt.encode({"room": other["id"], "exp": 2**40}, SECRET)
    for fields in (
        {},
        {"token": "nope"},
        {"token": foreign},
        {"role": "host", "token": other["ownerToken"]},
        {"role": "host"},
    ):
        answers = []
        for rid in (unknown_id, live["id"], ended["id"]):
            await ws.send_json({"type": "join", "roomId": rid, **fields})
            answers.append(without_room(await receive(ws), rid))
        assert answers[0]["code"] == "room_not_found", answers
        assert answers[1] == answers[0], fields
        assert answers[2] == answers[0], fields
    # with a token the room is there (and an ended one says so)
    token = jwt.encode({"room": ended["id"], "exp": 2**40}, SECRET)
    await ws.send_json({"type": "join", "roomId": ended["id"], "token": token})
    assert (await receive(ws))["code"] == "room_ended"
    await join(ws, live["id"], token=jwt.encode({"room": live["id"], "exp": 2**40}, SECRET))
    host = await client.ws_connect("/ws")
    await join(host, live["id"], role="host", token=live["ownerToken"])
    await expect(ws, "peer-joined")


async def test_a_hosts_moderation_messages_are_rate_limited(client: Client) -> None:
    """Anyone may create a room (anonymous creation) and so be its host: each ``mute``,
    ``unmute`` and ``slow-mode`` writes the room to the database and tells members, so at the
    general rate (50/s per connection, 100 connections per address) a host could make thousands
    of writes a second. The room's moderation has a budget of its own (20 at once, then 2/s):
    40 back to back cannot all pass, whatever the machine's speed, short of 10 s between them."""
    room = await create(client, "public")
    rid = room["id"]
    host = await client.ws_connect("/ws")
    await join(host, rid, role="host", token=room["ownerToken"])
    for i in range(40):
        await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": i % 2 + 1})
    await host.send_json(
        {"type": "join", "roomId": rid, "role": "host", "token": room["ownerToken"]}
    )
    settings, refused = 0, []
    while (event := await receive(host))["type"] != "joined":
        if event["type"] == "room-settings":
            settings += 1
        else:
            refused.append(event)
    assert refused, settings
    assert refused[0]["code"] == "rate_limited" and refused[0]["inReplyTo"] == "slow-mode"
    assert settings + len(refused) == 40
    # a viewer's moderation is forbidden and costs the room's budget nothing
    viewer = await client.ws_connect("/ws")
    await join(viewer, rid)
    await viewer.send_json({"type": "chat-delete", "roomId": rid, "id": "x"})
    assert (await receive(viewer))["code"] == "forbidden"


async def test_a_kicked_viewer_of_a_private_room_cannot_rejoin_with_its_token_elsewhere(
    aiohttp_client: AiohttpClient,
) -> None:
    """A kick bans the kicked peer's address; in a private room the viewer token it joined with
    is who it is, so it is banned too: the same token from another address (a phone's mobile
    network, a VPN) gets ``banned``. A token the application mints anew is its decision."""
    client = await aiohttp_client(
        create_app(
            make_config(viewer_token_secret=SECRET, trusted_proxies=(LOOPBACK,), kick_ban_s=300)
        )
    )
    room = await create(client)
    rid = room["id"]
    token = jwt.encode({"room": rid, "exp": 2**40, "sub": "troll"}, SECRET)
    host = await client.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.1"})
    await join(host, rid, role="host", token=room["ownerToken"])
    viewer = await client.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.2"})
    peer_id = (await join(viewer, rid, token=token))["peerId"]
    await expect(host, "peer-joined")
    await host.send_json({"type": "kick", "roomId": rid, "peerId": peer_id})
    assert (await expect(viewer, "kicked"))["roomId"] == rid
    again = await client.ws_connect("/ws", headers={"X-Forwarded-For": "198.51.100.9"})
    await again.send_json({"type": "join", "roomId": rid, "token": token})
    refused = await receive(again)
    assert refused["type"] == "error" and refused["code"] == "banned", refused
    assert token not in refused["message"]
    fresh = jwt.encode({"room": rid, "exp": 2**40, "sub": "another"}, SECRET)
    await join(again, rid, token=fresh)


async def test_a_mute_outlasts_a_reconnect_under_a_new_name(client: Client) -> None:
    """A mute named one connection: the muted member reloaded the page and chatted again under
    another name. Now it follows the member's address (and in a private room its viewer token)
    for as long as it lasts: the new connection is muted when it joins (``muted``), and the
    host's ``unmute`` of the new peer id lifts it."""
    room = await create(client, "public")
    rid = room["id"]
    host = await client.ws_connect("/ws")
    await join(host, rid, role="host", token=room["ownerToken"])
    viewer = await client.ws_connect("/ws")
    viewer_id = (await join(viewer, rid, name="Troll"))["peerId"]
    await expect(host, "peer-joined")
    await host.send_json({"type": "mute", "roomId": rid, "peerId": viewer_id, "seconds": 600})
    until = (await expect(viewer, "muted"))["until"]
    await viewer.close()
    await expect(host, "peer-left")
    again = await client.ws_connect("/ws")
    new_id = (await join(again, rid, name="Nice person"))["peerId"]
    notice = await expect(again, "muted")
    assert (notice["peerId"], notice["until"]) == (new_id, until)
    await again.send_json({"type": "chat", "roomId": rid, "text": "I am new here"})
    refused = await receive(again)
    assert refused["type"] == "error" and refused["code"] == "muted", refused
    await host.send_json({"type": "unmute", "roomId": rid, "peerId": new_id})
    await expect(again, "unmuted")
    await again.send_json({"type": "chat", "roomId": rid, "text": "thanks"})
    assert (await expect(again, "chat"))["text"] == "thanks"


async def test_a_mute_in_a_private_room_follows_the_viewer_token(
    aiohttp_client: AiohttpClient,
) -> None:
    client, rid, token, host = await private_room_with_host(aiohttp_client)
    viewer = await client.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.2"})
    viewer_id = (await join(viewer, rid, token=token))["peerId"]
    await expect(host, "peer-joined")
    await host.send_json({"type": "mute", "roomId": rid, "peerId": viewer_id})
    await expect(viewer, "muted")
    await viewer.close()
    again = await client.ws_connect("/ws", headers={"X-Forwarded-For": "198.51.100.3"})
    await join(again, rid, token=token)
    await expect(again, "muted")
    await again.send_json({"type": "chat", "roomId": rid, "text": "hi"})
    assert (await receive(again))["code"] == "muted"
    # another viewer, another address and token: not muted
    other = await client.ws_connect("/ws", headers={"X-Forwarded-For": "198.51.100.4"})
    await join(other, rid, token=jwt.encode({"room": rid, "exp": 2**40, "sub": "b"}, SECRET))
    await other.send_json({"type": "chat", "roomId": rid, "text": "hello"})
    assert (await expect(other, "chat"))["text"] == "hello"


async def test_slow_mode_in_a_private_room_follows_the_viewer_token(
    aiohttp_client: AiohttpClient,
) -> None:
    """A viewer of a private room chats in slow mode, leaves and comes back at once with the
    same viewer token from another address: its line is handed on (``slow_mode``)."""
    client, rid, token, host = await private_room_with_host(aiohttp_client)
    await host.send_json({"type": "slow-mode", "roomId": rid, "seconds": 600})
    await expect(host, "room-settings")
    viewer = await client.ws_connect("/ws", headers={"X-Forwarded-For": "203.0.113.2"})
    await join(viewer, rid, token=token)
    await viewer.send_json({"type": "chat", "roomId": rid, "text": "one"})
    assert (await receive(viewer, skip=("viewer-count", "peer-joined")))["type"] == "chat"
    await viewer.close()

    async def stored() -> bool:
        kept = (await client.app[keys.rooms].get(rid)).moderation.get("slowKeys") or {}
        return any(key.startswith("token:") for key in kept)

    await eventually(stored)
    again = await client.ws_connect("/ws", headers={"X-Forwarded-For": "198.51.100.3"})
    await join(again, rid, token=token)
    await again.send_json({"type": "chat", "roomId": rid, "text": "two"})
    assert (await receive(again))["code"] == "slow_mode"
