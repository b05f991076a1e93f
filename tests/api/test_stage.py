"""The stage over real HTTP and WebSocket connections: a host invites a member, the member
accepts and gets its own publish credentials, SRS's hooks (exact bodies) accept the guest's
stream only with its token, every member hears ``stage``; removal kicks the stream from SRS
(the fake SRS API records it) and revokes the token; limits and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.app import create_app
from livehub.domain.room import now_ms
from tests.conftest import ADMIN_TOKEN, Client, hook_fixture, make_config, send_hook
from tests.fake_srs import FakeSRS
from tests.helpers import Gate, eventually, until_room
from tests.signaling_client import error, expect, join, receive

WS = ClientWebSocketResponse
PUBLISH_KEYS = {"token", "rtmpUrl", "obsServer", "obsStreamKey", "whipUrl", "srtUrl"}


@dataclass
class Scene:
    client: Client
    room: dict[str, Any]
    host: WS
    host_id: str
    guest: WS
    guest_id: str
    viewer: WS
    viewer_id: str


async def start_scene(client: Client) -> Scene:
    resp = await client.post("/api/rooms", json={"title": "Stage room"})
    assert resp.status == 201
    room = await resp.json()
    host = await client.ws_connect("/ws")
    host_id = (await join(host, room["id"], role="host", token=room["ownerToken"], name="Hana"))[
        "peerId"
    ]
    guest = await client.ws_connect("/ws")
    guest_id = (await join(guest, room["id"], name="Gus"))["peerId"]
    await expect(host, "peer-joined")
    viewer = await client.ws_connect("/ws")
    viewer_id = (await join(viewer, room["id"], name="Vi"))["peerId"]
    await expect(host, "peer-joined")
    await expect(guest, "peer-joined")
    return Scene(client, room, host, host_id, guest, guest_id, viewer, viewer_id)


@pytest.fixture
async def scene(aiohttp_client: AiohttpClient, srs: FakeSRS) -> AsyncIterator[Scene]:
    client = await aiohttp_client(
        create_app(make_config(srs_api_url=srs.url, stage_max=2, reconnect_window=0.0))
    )
    yield await start_scene(client)


async def on_stage(scene: Scene) -> dict[str, Any]:
    """Invite the guest, accept: its credentials."""
    rid = scene.room["id"]
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.guest_id})
    assert await expect(scene.guest, "stage-invite") == {
        "type": "stage-invite",
        "roomId": rid,
        "from": scene.host_id,
        "name": "Hana",
    }
    await scene.guest.send_json({"type": "stage-accept", "roomId": rid})
    credentials = await expect(scene.guest, "stage-credentials")
    for ws in (scene.host, scene.guest, scene.viewer):
        stage = await expect(ws, "stage")
        assert [item["peerId"] for item in stage["stage"]] == [scene.guest_id]
        assert stage["stage"][0]["live"] is False
    return credentials


def guest_hook(name: str, stream_key: str, token: str, client_id: str) -> dict[str, Any]:
    body = hook_fixture(name)
    body.update(
        stream=stream_key,
        stream_url=f"/live/{stream_key}",
        param=f"?secret={token}",
        client_id=client_id,
    )
    return body


async def test_invite_accept_publish_and_everyone_sees_the_guest(scene: Scene) -> None:
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    key = f"{scene.room['streamKey']}-{scene.guest_id}"
    assert credentials["streamKey"] == key
    publish = credentials["publish"]
    assert set(publish) == PUBLISH_KEYS == set(scene.room["publish"])
    assert publish["obsStreamKey"] == f"{key}?secret={publish['token']}"
    assert publish["token"] != scene.room["publish"]["token"]
    # nobody else saw the credentials; the room view carries the stage without a token
    view = await (await client.get(f"/api/rooms/{rid}")).json()
    assert view["stage"] == [
        {
            "peerId": scene.guest_id,
            "name": "Gus",
            "streamKey": key,
            "live": False,
            "playUrls": view["stage"][0]["playUrls"],
        }
    ]
    assert view["stage"][0]["playUrls"]["flv"].endswith(f"/live/{key}.flv")
    assert publish["token"] not in str(view)
    owner = {"Authorization": f"Bearer {scene.room['ownerToken']}"}
    owned = await (await client.get(f"/api/rooms/{rid}", headers=owner)).json()
    assert owned["stage"] == view["stage"]  # the owner's view (through the schema) too
    # the guest publishes (the main stream is not live: no matter)
    reply = await send_hook(client, guest_hook("on_publish.json", key, publish["token"], "g1"))
    assert reply == {"code": 0}
    for ws in (scene.host, scene.guest, scene.viewer):
        stage = await expect(ws, "stage")
        assert stage["stage"][0]["live"] is True
        assert publish["token"] not in str(stage)
    view = await (await client.get(f"/api/rooms/{rid}")).json()
    assert view["status"] == "preparing" and view["stage"][0]["live"] is True
    # a player of the guest stream is let in
    play = hook_fixture("on_play.json")
    play.update(stream=key, stream_url=f"/live/{key}", client_id="p1")
    assert await send_hook(client, play) == {"code": 0}
    # the guest stops: not live, still on stage
    assert await send_hook(client, guest_hook("on_unpublish.json", key, "", "g1")) == {"code": 0}
    assert (await expect(scene.viewer, "stage"))["stage"][0]["live"] is False


async def test_wrong_token_uninvited_key_and_removed_guest_are_refused(
    scene: Scene, srs: FakeSRS
) -> None:
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    wrong = await send_hook(client, guest_hook("on_publish.json", key, "not-it", "g0"))
    assert wrong == {"code": 1, "msg": "guest token missing or wrong"}
    main = await send_hook(
        client, guest_hook("on_publish.json", key, scene.room["publish"]["token"], "g0")
    )
    assert main["code"] == 1  # the room's own token does not publish a guest stream
    uninvited = f"{scene.room['streamKey']}-{scene.viewer_id}"
    refused = await send_hook(client, guest_hook("on_publish.json", uninvited, token, "g0"))
    assert refused == {"code": 1, "msg": "not a guest on this room's stage"}
    assert await send_hook(client, guest_hook("on_publish.json", key, token, "g1")) == {"code": 0}
    # a second publisher of the same guest key is refused while the first is live
    busy = await send_hook(client, guest_hook("on_publish.json", key, token, "g2"))
    assert busy == {"code": 1, "msg": "this guest stream already has a live publisher"}
    for ws in (scene.host, scene.guest, scene.viewer):
        await expect(ws, "stage")
    # the host takes the guest off the stage: kicked from SRS, token revoked
    await scene.host.send_json({"type": "stage-remove", "roomId": rid, "peerId": scene.guest_id})
    assert await expect(scene.guest, "stage-removed") == {
        "type": "stage-removed",
        "roomId": rid,
        "peerId": scene.guest_id,
        "by": scene.host_id,
    }
    assert (await expect(scene.viewer, "stage"))["stage"] == []
    await eventually(lambda: srs.kicks == ["g1"])
    republish = await send_hook(client, guest_hook("on_publish.json", key, token, "g3"))
    assert republish == {"code": 1, "msg": "not a guest on this room's stage"}
    view = await (await client.get(f"/api/rooms/{rid}")).json()
    assert view["stage"] == []


async def test_decline_limits_and_errors(scene: Scene) -> None:
    rid = scene.room["id"]
    # a viewer cannot invite, remove or moderate
    for message in (
        {"type": "stage-invite", "to": scene.guest_id},
        {"type": "stage-remove", "peerId": scene.guest_id},
    ):
        await scene.viewer.send_json({**message, "roomId": rid})
        assert await receive(scene.viewer) == error(
            "forbidden",
            "Only the room's host may do this",
            inReplyTo=message["type"],
            roomId=rid,
        )
    # accepting or declining without an invitation
    for kind in ("stage-accept", "stage-decline"):
        await scene.guest.send_json({"type": kind, "roomId": rid})
        event = await receive(scene.guest)
        assert (event["type"], event["code"], event["inReplyTo"]) == ("error", "not_invited", kind)
    # bad targets
    for to, code in (
        (scene.host_id, "invalid_to"),
        ("nobody", "peer_not_found"),
        (5, "invalid_to"),
    ):
        await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": to})
        assert (await receive(scene.host))["code"] == code
    await scene.host.send_json({"type": "stage-remove", "roomId": rid, "peerId": "nobody"})
    assert (await receive(scene.host))["code"] == "not_on_stage"
    # decline: the host hears it, nothing changes
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.viewer_id})
    await expect(scene.viewer, "stage-invite")
    await scene.viewer.send_json({"type": "stage-decline", "roomId": rid})
    assert await expect(scene.host, "stage-declined") == {
        "type": "stage-declined",
        "roomId": rid,
        "peerId": scene.viewer_id,
        "name": "Vi",
    }
    await scene.viewer.send_json({"type": "stage-accept", "roomId": rid})
    assert (await receive(scene.viewer))["code"] == "not_invited"  # declined is gone
    # LIVEHUB_STAGE_MAX=2: two guests, a third invitation is refused
    await on_stage(scene)
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.guest_id})
    assert (await receive(scene.host))["code"] == "already_on_stage"
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.viewer_id})
    await expect(scene.viewer, "stage-invite")
    await scene.viewer.send_json({"type": "stage-accept", "roomId": rid})
    await expect(scene.viewer, "stage-credentials")
    for ws in (scene.host, scene.guest, scene.viewer):
        assert len((await expect(ws, "stage"))["stage"]) == 2
    third = await scene.client.ws_connect("/ws")
    third_id = (await join(third, rid))["peerId"]
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": third_id})
    event = await receive(scene.host, skip=("viewer-count", "peer-joined"))
    assert (event["code"], event["message"]) == ("stage_full", "The stage holds 2 guests")
    # a guest may leave by itself
    await expect(scene.viewer, "peer-joined")
    await scene.viewer.send_json({"type": "stage-leave", "roomId": rid})
    await expect(scene.viewer, "stage-removed")
    assert len((await expect(scene.viewer, "stage"))["stage"]) == 1


async def test_rest_removal_needs_the_owner_or_admin(scene: Scene, srs: FakeSRS) -> None:
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    await send_hook(
        client,
        guest_hook(
            "on_publish.json", credentials["streamKey"], credentials["publish"]["token"], "g9"
        ),
    )
    await expect(scene.guest, "stage")
    path = f"/api/rooms/{rid}/stage/{scene.guest_id}"
    resp = await client.delete(path)
    assert resp.status == 401 and (await resp.json())["code"] == "unauthorized"
    resp = await client.delete(path, headers={"Authorization": "Bearer not-the-owner-token"})
    assert resp.status == 403 and (await resp.json())["code"] == "forbidden"
    resp = await client.delete(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status == 204
    await expect(scene.guest, "stage-removed")
    await eventually(lambda: srs.kicks == ["g9"])
    resp = await client.delete(
        path, headers={"Authorization": f"Bearer {scene.room['ownerToken']}"}
    )
    assert resp.status == 404
    assert await resp.json() == {
        "error": "No such guest on this room's stage",
        "code": "not_on_stage",
        "details": {"peerId": scene.guest_id},
    }
    resp = await client.delete(f"/api/rooms/nope/stage/{scene.guest_id}")
    assert resp.status == 404 and (await resp.json())["code"] == "room_not_found"


async def test_closing_the_room_kicks_every_guest_stream(scene: Scene, srs: FakeSRS) -> None:
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    await send_hook(client, guest_hook("on_publish.json", key, token, "g5"))
    await expect(scene.viewer, "stage")
    resp = await client.post(
        f"/api/rooms/{rid}/close", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status == 200
    await eventually(lambda: "g5" in srs.kicks)
    stage = await receive(scene.viewer, skip=("viewer-count", "room-status"))
    assert stage == {"type": "stage", "roomId": rid, "stage": []}
    refused = await send_hook(client, guest_hook("on_publish.json", key, token, "g6"))
    assert refused == {"code": 1, "msg": "room has ended"}


async def test_a_guest_whose_socket_goes_leaves_after_the_window_unless_it_comes_back(
    aiohttp_client: AiohttpClient, srs: FakeSRS
) -> None:
    client = await aiohttp_client(
        create_app(make_config(srs_api_url=srs.url, reconnect_window=0.3))
    )
    scene = await start_scene(client)
    rid = scene.room["id"]
    credentials = await on_stage(scene)
    token = credentials["publish"]["token"]
    await send_hook(client, guest_hook("on_publish.json", credentials["streamKey"], token, "g7"))
    await expect(scene.viewer, "stage")
    # the guest's connection drops; it comes back on a new connection with its stage token
    await scene.guest.close()
    await expect(scene.viewer, "peer-left")
    back = await client.ws_connect("/ws")
    back_id = (await join(back, rid, name="Gus", stageToken=token))["peerId"]
    stage = await expect(back, "stage")
    assert [(g["peerId"], g["streamKey"], g["live"]) for g in stage["stage"]] == [
        (back_id, credentials["streamKey"], True)
    ]
    resumed = await receive(scene.viewer, skip=("viewer-count", "peer-joined"))
    assert resumed == stage
    rooms = client.app[keys.rooms]
    room = await rooms.get(rid)
    assert room.stage["guests"][back_id]["goneSince"] is None
    # gone again, for good: off the stage after the window, its stream kicked
    await back.close()
    await eventually(lambda: "g7" in srs.kicks, within=5)
    stage = await receive(scene.viewer, skip=("viewer-count", "peer-left", "peer-joined"))
    assert stage == {"type": "stage", "roomId": rid, "stage": []}
    # a stage token that is no guest's changes nothing
    other = await client.ws_connect("/ws")
    joined = await join(other, rid, stageToken=token)
    assert joined["room"]["stage"] == []


async def test_with_no_window_a_guest_that_disconnects_leaves_at_once(
    scene: Scene, srs: FakeSRS
) -> None:
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    await send_hook(client, guest_hook("on_publish.json", key, token, "g8"))
    await expect(scene.viewer, "stage")
    await scene.guest.close()
    stage = await receive(scene.viewer, skip=("viewer-count", "peer-left"))
    assert stage == {"type": "stage", "roomId": rid, "stage": []}
    await eventually(lambda: "g8" in srs.kicks)
    refused = await send_hook(client, guest_hook("on_publish.json", key, token, "g9"))
    assert refused == {"code": 1, "msg": "not a guest on this room's stage"}


async def test_withdrawn_invitations_and_ended_rooms(scene: Scene) -> None:
    client, rid = scene.client, scene.room["id"]
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.guest_id})
    await expect(scene.guest, "stage-invite")
    # the host withdraws it: the invitee hears it, and its accept finds nothing
    await scene.host.send_json({"type": "stage-remove", "roomId": rid, "peerId": scene.guest_id})
    removed = await expect(scene.guest, "stage-removed")
    assert removed["peerId"] == scene.guest_id
    await scene.guest.send_json({"type": "stage-accept", "roomId": rid})
    assert (await receive(scene.guest))["code"] == "not_invited"
    # a member of another room cannot accept here
    outsider = await client.ws_connect("/ws")
    await outsider.send_json({"type": "stage-accept", "roomId": rid})
    assert (await receive(outsider))["code"] == "not_in_room"
    # once the room has ended, nobody is invited
    resp = await client.post(
        f"/api/rooms/{rid}/close", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert resp.status == 200
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.guest_id})
    event = await receive(scene.host, skip=("viewer-count", "room-status"))
    assert (event["type"], event["code"]) == ("error", "room_ended")


async def test_reconciliation_takes_a_lost_unpublish_into_account(
    scene: Scene, srs: FakeSRS
) -> None:
    """SRS sent no on_unpublish (lost hook): the guest SRS no longer lists stops being live at
    the next reconciliation pass; one SRS still lists stays live."""
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    await send_hook(client, guest_hook("on_publish.json", key, token, "g1"))
    await expect(scene.viewer, "stage")
    client.app[keys.rooms].publish_grace_ms = 0  # the publish is not "just now" any more
    reconciler = client.app[keys.reconciler]
    srs.publish(key, "g1")
    assert await reconciler.run_once()
    assert (await client.app[keys.rooms].get(rid)).stage["guests"][scene.guest_id]["live"]
    srs.unpublish(key)
    assert await reconciler.run_once()
    stage = await expect(scene.viewer, "stage")
    assert stage["stage"][0]["live"] is False
    assert (await (await client.get(f"/api/rooms/{rid}")).json())["stage"][0]["live"] is False


async def test_an_invitation_lapses_when_the_invitee_leaves_or_after_ten_minutes(
    scene: Scene,
) -> None:
    client, rid = scene.client, scene.room["id"]
    rooms = client.app[keys.rooms]
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.viewer_id})
    await expect(scene.viewer, "stage-invite")
    await scene.viewer.close()
    await until_room(rooms, rid, lambda room: not room.stage.get("invites"))
    # an invitation nobody answers lapses after 10 minutes
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.guest_id})
    invite = await receive(scene.guest, skip=("viewer-count", "peer-left"))
    assert invite["type"] == "stage-invite"
    stage = client.app[keys.stage]
    real_clock = stage._clock
    stage._clock = lambda: real_clock() + 10 * 60 * 1000
    await scene.guest.send_json({"type": "stage-accept", "roomId": rid})
    assert (await receive(scene.guest))["code"] == "not_invited"


# -- kicks, closes and joins meeting the stage's writes -----------------------------------------


@pytest.fixture
async def windowed(aiohttp_client: AiohttpClient, srs: FakeSRS) -> Scene:
    """A scene whose guests keep their place for 30 s after their connection goes."""
    client = await aiohttp_client(
        create_app(make_config(srs_api_url=srs.url, reconnect_window=30.0))
    )
    return await start_scene(client)


async def events_within(ws: WS, within: float = 0.3) -> list[dict[str, Any]]:
    """Everything ``ws`` receives within ``within`` s of quiet (``viewer-count`` skipped)."""
    got: list[dict[str, Any]] = []
    try:
        while True:
            got.append(await receive(ws, within=within))
    except TimeoutError:
        return got


async def guest_gone(scene: Scene) -> str:
    """The guest on stage, its connection dropped: in its reconnect window. Its stage token."""
    credentials = await on_stage(scene)
    await scene.guest.close()
    await expect(scene.host, "peer-left")
    rooms, rid = scene.client.app[keys.rooms], scene.room["id"]

    async def gone() -> bool:
        guest = (await rooms.get(rid)).stage["guests"].get(scene.guest_id)
        return guest is not None and guest["goneSince"] is not None

    await eventually(gone)
    await events_within(scene.host, 0.1)
    await events_within(scene.viewer, 0.1)
    token: str = credentials["publish"]["token"]
    return token


async def coming_back(scene: Scene, token: str) -> tuple[WS, str, Gate]:
    """The guest joins again with its stage token; its place on stage is being written (held
    by the gate): its ``joined`` has come already."""
    gate = Gate(scene.client.app[keys.rooms].store, "update", before=True)
    gate.arm()
    back = await scene.client.ws_connect("/ws")
    await back.send_json(
        {"type": "join", "roomId": scene.room["id"], "name": "Gus", "stageToken": token}
    )
    joined = await receive(back)
    assert joined["type"] == "joined", joined  # first, before the stage is written
    await gate.entered()
    return back, joined["peerId"], gate


async def test_a_kicked_guest_leaves_the_stage_at_once(windowed: Scene, srs: FakeSRS) -> None:
    """No reconnect window for a kicked guest: off the stage, its stream kicked, its token
    refused."""
    scene, rid = windowed, windowed.room["id"]
    credentials = await on_stage(scene)
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    await send_hook(scene.client, guest_hook("on_publish.json", key, token, "gk1"))
    await expect(scene.viewer, "stage")
    await expect(scene.guest, "stage")
    await scene.host.send_json({"type": "kick", "roomId": rid, "peerId": scene.guest_id})
    await expect(scene.guest, "kicked")
    stage = await receive(scene.viewer, skip=("viewer-count", "peer-left"))
    assert stage == {"type": "stage", "roomId": rid, "stage": []}
    await eventually(lambda: "gk1" in srs.kicks)
    refused = await send_hook(scene.client, guest_hook("on_publish.json", key, token, "gk2"))
    assert refused == {"code": 1, "msg": "not a guest on this room's stage"}


async def test_a_guest_kicked_while_its_comeback_is_written_is_off_the_stage(
    windowed: Scene,
) -> None:
    """The kick lands while the guest's place is being moved to its new connection: the
    place does not end up held, without a window, by a peer that is not a member."""
    scene, rid = windowed, windowed.room["id"]
    token = await guest_gone(scene)
    back, back_id, gate = await coming_back(scene, token)
    try:
        assert (await expect(scene.host, "peer-joined"))["peer"]["peerId"] == back_id
        await scene.host.send_json({"type": "kick", "roomId": rid, "peerId": back_id})
        assert (await expect(back, "kicked"))["roomId"] == rid
        assert (await expect(scene.host, "peer-left"))["peerId"] == back_id
    finally:
        gate.close()
    stage = await receive(scene.viewer, skip=("viewer-count", "peer-joined", "peer-left"))
    assert stage == {"type": "stage", "roomId": rid, "stage": []}
    assert await events_within(back) == []  # joined, kicked, and nothing of the room after
    room = await scene.client.app[keys.rooms].get(rid)
    assert room.stage.get("guests", {}) == {}


async def test_a_member_joining_during_a_comeback_hears_of_the_guest_once(
    windowed: Scene,
) -> None:
    scene, rid = windowed, windowed.room["id"]
    token = await guest_gone(scene)
    back, back_id, gate = await coming_back(scene, token)
    try:
        other = await scene.client.ws_connect("/ws")
        joined = await join(other, rid, name="Oli")
        assert back_id in [m["peerId"] for m in joined["members"]]
    finally:
        gate.close()
    stage = await expect(other, "stage")
    assert [g["peerId"] for g in stage["stage"]] == [back_id]
    announced = [e for e in await events_within(other) if e["type"] == "peer-joined"]
    assert announced == []  # listed in its joined: not announced again
    assert [e["type"] for e in await events_within(back)] == ["peer-joined", "stage"]


async def test_a_room_closed_during_a_comeback_ends_for_the_joiner_too(windowed: Scene) -> None:
    scene, rid = windowed, windowed.room["id"]
    token = await guest_gone(scene)
    back, _, gate = await coming_back(scene, token)
    try:
        resp = await scene.client.post(
            f"/api/rooms/{rid}/close", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert resp.status == 200
    finally:
        gate.close()
    events = await events_within(back)
    statuses = [e["status"] for e in events if e["type"] == "room-status"]
    assert statuses == ["ended"]
    assert events[-1] == {"type": "stage", "roomId": rid, "stage": []}


async def test_a_member_kicked_while_its_acceptance_is_written_gets_no_credentials(
    windowed: Scene,
) -> None:
    scene, rid = windowed, windowed.room["id"]
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.guest_id})
    await expect(scene.guest, "stage-invite")
    gate = Gate(scene.client.app[keys.rooms].store, "update", before=False)
    gate.arm()
    try:
        await scene.guest.send_json({"type": "stage-accept", "roomId": rid})
        await gate.entered()  # written, not yet answered
        await scene.host.send_json({"type": "kick", "roomId": rid, "peerId": scene.guest_id})
        await expect(scene.guest, "kicked")
    finally:
        gate.close()
    assert await events_within(scene.guest) == []  # no stage-credentials, nothing of the room
    stage = await receive(scene.viewer, skip=("viewer-count", "peer-left"))
    assert stage == {"type": "stage", "roomId": rid, "stage": []}
    room = await scene.client.app[keys.rooms].get(rid)
    assert room.stage.get("guests", {}) == {}


async def test_the_members_last_stage_is_the_stored_one_when_an_acceptance_answers_late(
    windowed: Scene,
) -> None:
    """The acceptance's write is answered after the room's close emptied the stage: the
    members do not end on the older stage, nor does signaling keep the older room."""
    scene, rid = windowed, windowed.room["id"]
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.guest_id})
    await expect(scene.guest, "stage-invite")
    rooms = scene.client.app[keys.rooms]
    gate = Gate(rooms.store, "update", before=False)
    gate.arm()
    try:
        await scene.guest.send_json({"type": "stage-accept", "roomId": rid})
        await gate.entered()
        resp = await scene.client.post(
            f"/api/rooms/{rid}/close", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert resp.status == 200

        async def cleared() -> bool:
            return not (await rooms.get(rid)).stage.get("guests")

        await eventually(cleared)
    finally:
        gate.close()
    stages = [e["stage"] for e in await events_within(scene.viewer) if e["type"] == "stage"]
    assert stages and stages[-1] == []
    known = scene.client.app[keys.signaling].known.peek(rid)
    assert known is not None and known.status.value == "ended"


async def test_a_guest_republishing_after_srs_restarted_goes_on(scene: Scene) -> None:
    """SRS restarted (SIGTERM: no on_unpublish): the guest's encoder publishes again with a new
    client id, and SRS's new service id says why the old publisher is gone. The guest goes on
    as the room's own publisher does; a second publisher on the restarted SRS is refused."""
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    assert await send_hook(client, guest_hook("on_publish.json", key, token, "g1")) == {"code": 0}
    await expect(scene.viewer, "stage")
    again = {**guest_hook("on_publish.json", key, token, "g2"), "service_id": "n3wsrv01"}
    assert await send_hook(client, again) == {"code": 0}
    guest = (await client.app[keys.rooms].get(rid)).stage["guests"][scene.guest_id]
    assert (guest["live"], guest["clientId"]) == (True, "g2")
    # the old publisher's end, if SRS ever sent it, changes nothing now
    assert await send_hook(client, guest_hook("on_unpublish.json", key, "", "g1")) == {"code": 0}
    assert (await client.app[keys.rooms].get(rid)).stage["guests"][scene.guest_id]["live"]
    # on the restarted SRS, another publisher of the guest's stream is refused as before
    intruder = {**guest_hook("on_publish.json", key, token, "g3"), "service_id": "n3wsrv01"}
    assert (await send_hook(client, intruder))["code"] != 0


async def test_a_guest_srs_lists_again_is_live_again(scene: Scene, srs: FakeSRS) -> None:
    """A pass did not see the guest's stream (a WebRTC publisher is listed active only once
    ICE and DTLS are done) and made it not live; SRS then lists the same client publishing:
    no hook will come, so a later pass makes it live again. Another client is not it."""
    client, rid = scene.client, scene.room["id"]
    credentials = await on_stage(scene)
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    await send_hook(client, guest_hook("on_publish.json", key, token, "g1"))
    await expect(scene.viewer, "stage")
    client.app[keys.rooms].publish_grace_ms = 0
    reconciler = client.app[keys.reconciler]
    assert await reconciler.run_once()
    assert (await expect(scene.viewer, "stage"))["stage"][0]["live"] is False
    srs.publish(key, "0th3rc1d")
    assert await reconciler.run_once()
    assert not (await client.app[keys.rooms].get(rid)).stage["guests"][scene.guest_id]["live"]
    unlisted = (await client.app[keys.rooms].get(rid)).stage["guests"][scene.guest_id]["unlistedAt"]
    await eventually(lambda: now_ms() > unlisted)  # a listing asked after it was missed
    srs.publish(key, "g1")
    assert await reconciler.run_once()
    assert (await expect(scene.viewer, "stage"))["stage"][0]["live"] is True
    # its on_unpublish, when it comes, is still the guest's
    assert await send_hook(client, guest_hook("on_unpublish.json", key, "", "g1")) == {"code": 0}
    assert (await expect(scene.viewer, "stage"))["stage"][0]["live"] is False


async def test_guests_of_an_embedded_livehub_that_stopped_leave_after_the_window(
    aiohttp_client: AiohttpClient, srs: FakeSRS, tmp_path: Path
) -> None:
    """Embedded mode: livehub stopped (every connection with it) while a guest was on stage,
    and no other node is left to time its window, as a cluster's nodes do for a node that
    died. The restarted process gives it the window, then it leaves the stage."""
    config = make_config(
        db_path=str(tmp_path / "livehub.db"), srs_api_url=srs.url, reconnect_window=0.3
    )
    first = await aiohttp_client(create_app(config))
    scene = await start_scene(first)
    await on_stage(scene)
    rid = scene.room["id"]
    await first.close()

    second = await aiohttp_client(create_app(config))

    async def left() -> bool:
        room = await second.app[keys.rooms].get(rid)
        return not room.stage.get("guests") and not room.stage.get("invites")

    await eventually(left, within=5)
    assert (await (await second.get(f"/api/rooms/{rid}")).json())["stage"] == []


async def test_a_guest_cannot_take_a_second_place_on_stage(windowed: Scene, srs: FakeSRS) -> None:
    """A connection that holds a place on stage (here in its reconnect window: it left and
    joined again) and joins with another guest's stage token takes nothing: both places stay
    as they were, its own is not overwritten (its stream would go on unaccounted for)."""
    scene, rid = windowed, windowed.room["id"]
    await on_stage(scene)
    await scene.host.send_json({"type": "stage-invite", "roomId": rid, "to": scene.viewer_id})
    await expect(scene.viewer, "stage-invite")
    await scene.viewer.send_json({"type": "stage-accept", "roomId": rid})
    other_token = (await expect(scene.viewer, "stage-credentials"))["publish"]["token"]
    await expect(scene.viewer, "stage")
    rooms = scene.client.app[keys.rooms]
    before = (await rooms.get(rid)).stage["guests"]
    assert set(before) == {scene.guest_id, scene.viewer_id}

    await scene.guest.send_json({"type": "leave", "roomId": rid})

    async def in_window() -> bool:
        guest = (await rooms.get(rid)).stage["guests"].get(scene.guest_id)
        return guest is not None and guest["goneSince"] is not None

    await eventually(in_window)
    await events_within(scene.guest, 0.1)
    joined = await join(scene.guest, rid, name="Gus", stageToken=other_token)
    assert joined["peerId"] == scene.guest_id
    await events_within(scene.guest, 0.3)
    after = (await rooms.get(rid)).stage["guests"]
    assert set(after) == {scene.guest_id, scene.viewer_id}
    assert after[scene.viewer_id] == before[scene.viewer_id]
    assert after[scene.guest_id]["token"] == before[scene.guest_id]["token"]
