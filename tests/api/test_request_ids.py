"""Request ids (docs/protocol.md "Request ids"): a client may put ``"id"`` on any message; the
server echoes it on the message's reply and on any ``error`` it causes, and only there."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse

from tests.conftest import Client, CreateRoom

WS = ClientWebSocketResponse


async def receive(ws: WS) -> dict[str, Any]:
    """The next event that is not a (coalesced, unsolicited) viewer count."""
    async with asyncio.timeout(3):
        while True:
            data: dict[str, Any] = json.loads((await ws.receive()).data)
            if data["type"] != "viewer-count":
                return data


async def test_replies_and_errors_carry_the_id_and_others_see_none(
    client: Client, create_room: CreateRoom
) -> None:
    room = await create_room()
    host = await client.ws_connect("/ws")
    guest = await client.ws_connect("/ws")
    await host.send_json(
        {
            "type": "join",
            "roomId": room["id"],
            "role": "host",
            "token": room["ownerToken"],
            "id": "j-1",
        }
    )
    joined = await receive(host)
    assert (joined["type"], joined["id"]) == ("joined", "j-1")
    await guest.send_json({"type": "join", "roomId": room["id"], "name": "Bo", "id": 7})
    assert (await receive(guest))["id"] == 7
    peer_joined = await receive(host)
    assert peer_joined["type"] == "peer-joined" and "id" not in peer_joined

    # chat: the sender's own copy is the reply; its ``id`` is the line's own (the one every
    # member gets, chat-delete names it), the request's comes back as ``requestId``
    await guest.send_json({"type": "chat", "roomId": room["id"], "text": "hi", "id": "c-9"})
    mine, theirs = await receive(guest), await receive(host)
    assert mine == {**theirs, "requestId": "c-9"}
    assert theirs["type"] == "chat" and "requestId" not in theirs and theirs["text"] == "hi"
    assert isinstance(theirs["id"], str) and theirs["id"] != "c-9"

    # errors the message causes, at every stage of its handling
    await guest.send_json({"type": "nope", "roomId": room["id"], "id": "u"})
    assert (await receive(guest))["id"] == "u"
    await guest.send_json({"id": "m"})
    error = await receive(guest)
    assert (error["code"], error["id"]) == ("missing_type", "m")
    await guest.send_json({"type": "kick", "roomId": room["id"], "peerId": "x", "id": -3})
    error = await receive(guest)
    assert (error["code"], error["inReplyTo"], error["id"]) == ("forbidden", "kick", -3)

    # a relay has no reply, and its id is not relayed
    await guest.send_json({"type": "offer", "roomId": room["id"], "payload": 1, "id": "r"})
    relayed = await receive(host)
    assert relayed["type"] == "offer" and "id" not in relayed

    await guest.send_json({"type": "leave", "roomId": room["id"], "id": "bye"})
    assert await receive(guest) == {"type": "left", "roomId": room["id"], "id": "bye"}
    await host.close()
    await guest.close()


@pytest.mark.parametrize("bad", ["x" * 65, 1.5, True, [1], {"a": 1}, 2**53, -(2**53)], ids=repr)
async def test_an_invalid_id_is_an_error_and_changes_nothing(
    client: Client, create_room: CreateRoom, bad: Any
) -> None:
    room = await create_room()
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": room["id"], "id": bad})
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == "invalid_id" and "id" not in error
    assert (await (await client.get(f"/api/rooms/{room['id']}")).json())["viewerCount"] == 0
    # the socket stays open: the same message with a good id is handled
    await ws.send_json({"type": "join", "roomId": room["id"], "id": "x" * 64})
    joined = await receive(ws)
    assert (joined["type"], joined["id"]) == ("joined", "x" * 64)
    await ws.close()


async def test_clients_that_send_no_id_see_no_change(
    client: Client, create_room: CreateRoom
) -> None:
    room = await create_room()
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": room["id"], "id": None})
    assert "id" not in await receive(ws)
    await ws.send_json({"type": "chat", "roomId": room["id"], "text": "hi"})
    assert "requestId" not in await receive(ws)  # its ``id`` is the chat line's own
    await ws.send_json({"type": "chat", "roomId": room["id"], "text": " "})
    error = await receive(ws)
    assert error["code"] == "invalid_text" and "id" not in error
    await ws.close()
