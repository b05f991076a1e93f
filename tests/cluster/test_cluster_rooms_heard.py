"""What a node knows of a room it does not hear of (no members there, or its subscription to
the room's notices not confirmed yet), in-process nodes on one PostgreSQL and one Redis:

- a node keeps what it read of a room only while it hears the room's changes, so a room closed
  while the node had no members there is not joined as it was;
- a close that lands between a join's read and the node hearing the room still reaches the
  joiner (``room_heard``), and a change of this node's own at that moment is told once;
- a guest coming back through a node that read the room earlier takes its place on stage;
- the count a node reports when its last member of a room leaves is the room's, not 0;
- a guest whose node is killed leaves the stage after its reconnect window (whole processes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from pytest_aiohttp import AiohttpClient
from pytest_aiohttp.plugin import AiohttpServer

from livehub import keys
from livehub.app import create_app
from livehub.config import Config
from tests.cluster.members import Cluster
from tests.conftest import Client, hook_for, make_config, send_hook
from tests.engines import RedisEngine
from tests.fake_srs import FakeSRS
from tests.helpers import Gate, created, eventually
from tests.webhooks.conftest import secret, start_receiver, webhook_app

WS = ClientWebSocketResponse


def cluster_config(pg_url: str, redis: RedisEngine, srs: FakeSRS, **fields: Any) -> Config:
    return make_config(database_url=pg_url, redis_url=redis.url, srs_api_url=srs.url, **fields)


async def next_of(ws: WS, *kinds: str, within: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            event: dict[str, Any] = await ws.receive_json()
            if event["type"] in kinds:
                return event


async def quiet(ws: WS, seconds: float = 0.5) -> list[dict[str, Any]]:
    """What ``ws`` receives within ``seconds``."""
    events: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                events.append(await ws.receive_json())
    except TimeoutError:
        return events


async def create(client: Client) -> dict[str, Any]:
    return await created(client, "heard")


async def close(client: Client, room: dict[str, Any]) -> None:
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200, await resp.text()


async def join(client: Client, room: dict[str, Any], **fields: Any) -> tuple[WS, str]:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": room["id"], **fields})
    return ws, (await next_of(ws, "joined"))["peerId"]


async def host_of(client: Client, room: dict[str, Any]) -> WS:
    ws, _ = await join(client, room, role="host", token=room["ownerToken"], name="Hana")
    return ws


async def test_a_room_closed_while_a_node_had_no_members_there_is_not_joined(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    one = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    two = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    room = await create(one)
    rid = room["id"]
    ws, _ = await join(two, room)  # node two reads the room, and keeps it while it hears it
    await eventually(lambda: two.app[keys.signaling].known.peek(rid) is not None)
    await ws.send_json({"type": "leave", "roomId": rid})
    await next_of(ws, "left")
    assert not two.app[keys.hub].hears(rid)
    assert two.app[keys.signaling].known.peek(rid) is None  # nothing would tell it changed
    await close(one, room)
    await ws.send_json({"type": "join", "roomId": rid})
    reply = await next_of(ws, "joined", "error")
    assert (reply["type"], reply.get("code")) == ("error", "room_ended"), reply
    await ws.send_json({"type": "chat", "roomId": rid, "text": "late"})
    assert (await next_of(ws, "error"))["code"] == "not_in_room"


async def test_a_close_before_the_node_hears_the_room_reaches_the_joiner(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    """The join on node two has read the room (live) and is reading its members on other
    nodes when node one closes it: the close's notice goes out before node two listens."""
    one = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    two = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    room = await create(one)
    host = await host_of(one, room)
    gate = Gate(two.app[keys.hub], "load", before=False)
    try:
        gate.arm()
        ws = await two.ws_connect("/ws")
        await ws.send_json({"type": "join", "roomId": room["id"]})
        await gate.entered()
        await close(one, room)
        assert (await next_of(host, "room-status"))["status"] == "ended"
    finally:
        gate.close()
    reply = await next_of(ws, "joined", "error")
    if reply["type"] == "error":  # the close was seen before the join was answered
        assert reply["code"] == "room_ended", reply
        return
    assert reply["room"]["status"] == "preparing"  # as read: then it hears the room ended
    status = await next_of(ws, "room-status")
    assert status["status"] == "ended" and status["room"]["status"] == "ended"
    assert [e for e in await quiet(ws) if e["type"] == "room-status"] == []  # once


async def test_a_guest_coming_back_through_a_node_that_read_the_room_before_takes_its_place(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    config = cluster_config(pg_url, redis_alone, srs, reconnect_window=30.0)
    one, two, three = [await aiohttp_client(create_app(config)) for _ in range(3)]
    room = await create(one)
    rid = room["id"]
    host = await host_of(one, room)
    passer, _ = await join(three, room)  # node three reads the room once, then has no member
    await passer.send_json({"type": "leave", "roomId": rid})
    await next_of(passer, "left")
    guest, guest_id = await join(two, room, name="Gus")
    while (await next_of(host, "peer-joined"))["peer"]["peerId"] != guest_id:
        pass
    await host.send_json({"type": "stage-invite", "roomId": rid, "to": guest_id})
    await next_of(guest, "stage-invite")
    await guest.send_json({"type": "stage-accept", "roomId": rid})
    token = (await next_of(guest, "stage-credentials"))["publish"]["token"]
    await next_of(host, "stage")
    await guest.close()

    async def gone() -> bool:
        stored = await one.app[keys.rooms].get(rid)
        return stored.stage["guests"][guest_id]["goneSince"] is not None

    await eventually(gone)
    back, back_id = await join(three, room, name="Gus", stageToken=token)
    stage = await next_of(back, "stage", within=5)
    assert [g["peerId"] for g in stage["stage"]] == [back_id]


async def test_the_count_a_node_reports_when_its_last_member_leaves_is_the_room_s(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    pg_url: str,
    redis_alone: RedisEngine,
    srs: FakeSRS,
) -> None:
    receiver = await start_receiver(aiohttp_server)
    config = cluster_config(
        pg_url,
        redis_alone,
        srs,
        webhook_urls=(receiver.url,),
        webhook_secrets=(secret(),),
        webhook_viewers_interval=0.1,
    )
    one = await aiohttp_client(webhook_app(config))
    two = await aiohttp_client(webhook_app(config))
    room = await create(one)
    rid = room["id"]
    await host_of(one, room)
    viewer, _ = await join(two, room)

    def counts() -> list[int]:
        return [
            e["data"]["viewerCount"]
            for e in receiver.received
            if e["type"] == "viewers.updated" and e["data"]["id"] == rid
        ]

    await eventually(lambda: counts()[-1:] == [2], within=5)
    await viewer.close()  # node two's last member of the room: the host stays, on node one
    await eventually(lambda: len(counts()) >= 3 and counts()[-1] == 1, within=5)
    assert 0 not in counts(), counts()


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str, redis_server: RedisEngine) -> AsyncIterator[Cluster]:
    instance = Cluster(tmp_path, pg_url, redis_server.url)
    yield instance
    await instance.close()


async def test_a_guest_whose_node_is_killed_leaves_the_stage(
    cluster: Cluster, srs: FakeSRS
) -> None:
    a, b = await cluster.start(
        "a",
        "b",
        LIVEHUB_SRS_API_URL=srs.url,
        LIVEHUB_RECONNECT_WINDOW="1",
        LIVEHUB_RECONCILE_INTERVAL="1",
        LIVEHUB_SWEEP_INTERVAL="1",
    )
    room = await cluster.create_room(a)
    rid = room["id"]
    host = await cluster.join(a, room, "Hana", host=True)
    guest = await cluster.join(b, room, "Gus")
    await host.until(lambda e: e["type"] == "peer-joined")
    await host.send(type="stage-invite", roomId=rid, to=guest.peer_id)
    await guest.until(lambda e: e["type"] == "stage-invite")
    await guest.send(type="stage-accept", roomId=rid)
    await guest.until(lambda e: e["type"] == "stage-credentials")
    await host.until(lambda e: e["type"] == "stage" and e["stage"])
    await b.kill()  # the guest's node dies with its connection: nobody times its window
    await host.until(
        lambda e: e == {"type": "peer-left", "roomId": rid, "peerId": guest.peer_id}, within=15
    )
    # node a reaped it: the window opens there, and the place ends with it
    await host.until(lambda e: e["type"] == "stage" and e["stage"] == [], within=10)


async def test_a_change_of_this_node_s_own_is_not_told_twice_when_it_hears_the_room(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    """When the node starts hearing the room, a publish on this node is committed but not yet
    told to the members: the check of what the joiner missed does not take it for another
    node's change (the publish tells it once)."""
    node = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    signaling = node.app[keys.signaling]
    room = await create(node)
    heard = Gate(signaling, "room_heard", before=True)
    heard.arm()
    written = Gate(node.app[keys.rooms].store, "update", before=False)
    try:
        ws, _ = await join(node, room)  # answered "preparing"; the node does not hear it yet
        await heard.entered()
        written.arm()
        publish = asyncio.create_task(send_hook(node, hook_for(room, "on_publish.json")))
        await written.entered()  # committed "live", not yet told
        heard.open()
        await asyncio.sleep(0.1)  # the check runs meanwhile
        written.open()
        assert await publish == {"code": 0}
    finally:
        heard.close()
        written.close()
    statuses = [e["status"] for e in await quiet(ws) if e["type"] == "room-status"]
    assert statuses == ["live"]
