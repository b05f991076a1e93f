"""``stage.joined`` and ``stage.left`` webhooks, from the app as production builds it: the
guest's peer id and name next to the room's public view, in ``seq`` order with the room's other
events, and no guest token in any body."""

from __future__ import annotations

from pathlib import Path

from pytest_aiohttp import AiohttpClient

from tests.signaling_client import expect, join
from tests.webhooks.conftest import StartReceiver, start
from tests.webhooks.rooms import create


async def test_stage_joined_and_left_are_reported(
    aiohttp_client: AiohttpClient, tmp_path: Path, receiver_factory: StartReceiver
) -> None:
    receiver = await receiver_factory()
    client, _ = await start(aiohttp_client, tmp_path, receiver)
    room = await create(client)
    rid = room["id"]
    async with client.ws_connect("/ws") as host, client.ws_connect("/ws") as guest:
        await join(host, rid, role="host", token=room["ownerToken"])
        guest_id = (await join(guest, rid, name="Gus"))["peerId"]
        await host.send_json({"type": "stage-invite", "roomId": rid, "to": guest_id})
        await expect(guest, "stage-invite")
        await guest.send_json({"type": "stage-accept", "roomId": rid})
        token = (await expect(guest, "stage-credentials"))["publish"]["token"]
        await receiver.wait_for_types(["room.created", "host.joined", "stage.joined"])
        await host.send_json({"type": "stage-remove", "roomId": rid, "peerId": guest_id})
        await expect(guest, "stage")
        await expect(guest, "stage-removed")
        await receiver.wait_for_types(["stage.left"])
    stage = [e for e in receiver.received if e["type"].startswith("stage.")]
    joined, left = stage
    assert (joined["data"]["peerId"], joined["data"]["name"]) == (guest_id, "Gus")
    assert joined["data"]["id"] == rid
    assert [g["peerId"] for g in joined["data"]["stage"]] == [guest_id]
    assert (left["data"]["peerId"], left["data"]["name"], left["data"]["stage"]) == (
        guest_id,
        "Gus",
        [],
    )
    assert left["data"]["seq"] > joined["data"]["seq"]
    assert all(token not in str(event) for event in receiver.received)
