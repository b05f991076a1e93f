"""The stage, private rooms and moderation across cluster nodes: ``python -m livehub``
processes on one throwaway PostgreSQL and Redis, driven over real HTTP and WebSocket
connections. A host on one node invites a member on another, SRS's hook (exact body) reaches a
third, and every member on every node hears the stage; a viewer token minted by one node opens
the room on another; mutes, slow mode and deletions reach members wherever they are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.members import Cluster, Member, of
from tests.conftest import hook_fixture, send_hook
from tests.engines import RedisEngine
from tests.fake_srs import FakeSRS
from tests.helpers import eventually


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str, redis_server: RedisEngine) -> AsyncIterator[Cluster]:
    instance = Cluster(tmp_path, pg_url, redis_server.url)
    yield instance
    await instance.close()


async def test_a_guest_on_stage_is_seen_on_every_node(cluster: Cluster, srs: FakeSRS) -> None:
    # d holds no member of the room: SRS's hook and the REST removal reach it
    a, b, c, d = await cluster.start("a", "b", "c", "d", LIVEHUB_SRS_API_URL=srs.url)
    room = await cluster.create_room(a)
    rid = room["id"]
    host = await cluster.join(a, room, "Hana", host=True)
    guest = await cluster.join(b, room, "Gus")
    viewer = await cluster.join(c, room, "Vi")
    await host.until(of("peer-joined"))
    await host.send(type="stage-invite", roomId=rid, to=guest.peer_id)
    invite = await guest.until(of("stage-invite"))
    assert (invite["from"], invite["name"]) == (host.peer_id, "Hana")
    await guest.send(type="stage-accept", roomId=rid)
    credentials = await guest.until(of("stage-credentials"))
    key, token = credentials["streamKey"], credentials["publish"]["token"]
    for member in (host, guest, viewer):
        stage = await member.until(of("stage"))
        assert [g["peerId"] for g in stage["stage"]] == [guest.peer_id]
    # SRS's on_publish reaches a node where the room has no member
    body = hook_fixture("on_publish.json")
    body.update(stream=key, stream_url=f"/live/{key}", param=f"?secret={token}", client_id="g1")
    assert await send_hook(cluster.session, body, base_url=d.url) == {"code": 0}
    live = lambda e: e["type"] == "stage" and e["stage"] and e["stage"][0]["live"]  # noqa: E731
    for member in (host, guest, viewer):
        await member.until(live)
    for node in (a, b, c, d):
        status, view = await cluster.get(node, f"/api/rooms/{rid}")
        assert status == 200 and view["stage"][0]["live"] is True
    # the owner removes the guest over REST on node d: kicked, its republish refused on node b
    async with cluster.session.delete(
        f"{d.url}/api/rooms/{rid}/stage/{guest.peer_id}",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    ) as resp:
        assert resp.status == 204
    await guest.until(of("stage-removed", peerId=guest.peer_id))
    await host.until(lambda e: e["type"] == "stage" and e["stage"] == [])
    await viewer.until(lambda e: e["type"] == "stage" and e["stage"] == [])
    await eventually(lambda: "g1" in srs.kicks, within=10)
    body["client_id"] = "g2"
    refused = await send_hook(cluster.session, body, base_url=b.url)
    assert refused == {"code": 1, "msg": "not a guest on this room's stage"}


async def test_private_rooms_and_moderation_across_nodes(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    room = await cluster.create_room(a, visibility="private")
    rid = room["id"]
    owner = {"Authorization": f"Bearer {room['ownerToken']}"}
    async with cluster.session.post(
        f"{a.url}/api/rooms/{rid}/viewer-tokens", json={"ttl": 600}, headers=owner
    ) as resp:
        assert resp.status == 201
        token = (await resp.json())["token"]
    # minted on a, accepted on b (one secret for the cluster)
    assert (await cluster.get(b, f"/api/rooms/{rid}"))[0] == 404
    status, view = await cluster.get(b, f"/api/rooms/{rid}?token={token}")
    assert status == 200 and token in view["playUrls"]["flv"]
    play = hook_fixture("on_play.json")
    play.update(stream=room["streamKey"], stream_url=f"/live/{room['streamKey']}", param="")
    assert (await send_hook(cluster.session, play, base_url=b.url))["code"] == 1
    play["param"] = f"?token={token}"
    assert await send_hook(cluster.session, play, base_url=b.url) == {"code": 0}

    host = await cluster.join(a, room, "Hana", host=True)
    ws = await cluster.session.ws_connect(b.ws_url)
    viewer = Member(ws)
    cluster.members.append(viewer)
    await viewer.send(type="join", roomId=rid, name="Vi")
    assert (await viewer.until(of("error")))["code"] == "room_not_found"
    await viewer.send(type="join", roomId=rid, name="Vi", token=token)
    viewer.peer_id = (await viewer.until(of("joined")))["peerId"]
    await host.until(of("peer-joined"))

    # a chat line from node b, deleted by the host on node a
    await viewer.send(type="chat", roomId=rid, text="hi")
    line = await host.until(of("chat", text="hi"))
    assert line["role"] == "viewer" and line["id"]
    await host.send(type="chat-delete", roomId=rid, id=line["id"])
    await viewer.until(of("chat-deleted", id=line["id"]))
    # muted from node a: refused on node b
    await host.send(type="mute", roomId=rid, peerId=viewer.peer_id, seconds=120)
    await viewer.until(of("muted", peerId=viewer.peer_id))
    await viewer.send(type="chat", roomId=rid, text="still here?")
    assert (await viewer.until(of("error", inReplyTo="chat")))["code"] == "muted"
    await host.send(type="unmute", roomId=rid, peerId=viewer.peer_id)
    await viewer.until(of("unmuted"))
    # slow mode set on node a applies on node b
    await host.send(type="slow-mode", roomId=rid, seconds=300)
    await viewer.until(of("room-settings", slowMode=300))
    # the viewer's line "hi" was less than 300 s ago; hosts are not slowed down
    await viewer.send(type="chat", roomId=rid, text="one")
    await viewer.until(lambda e: e["type"] == "error" and e["code"] == "slow_mode")
    await host.send(type="chat", roomId=rid, text="from the host")
    await viewer.until(of("chat", text="from the host", role="host"))
    assert not [e for e in host.events if e["type"] == "chat" and e["text"] == "one"]
