"""Signaling without a store read per message, in both modes: a room is read once per change
however many peers join it, another node's change is heard (and read again), and chat and
joins go on while PostgreSQL is down."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientWebSocketResponse
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.app import create_app
from livehub.config import Config
from tests.conftest import Client, make_config
from tests.engines import PostgresEngine, RedisEngine
from tests.fake_srs import FakeSRS
from tests.helpers import created, eventually

WS = ClientWebSocketResponse


def cluster_config(pg_url: str, redis: RedisEngine, srs: FakeSRS) -> Config:
    return make_config(database_url=pg_url, redis_url=redis.url, srs_api_url=srs.url)


async def next_of(ws: WS, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            event: dict[str, Any] = await ws.receive_json()
            if event["type"] == kind:
                return event


async def joined(client: Client, room_id: str, **fields: Any) -> WS:
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "join", "roomId": room_id, **fields})
    reply = await next_of(ws, "joined")
    assert reply["roomId"] == room_id
    return ws


async def create(client: Client) -> dict[str, Any]:
    return await created(client, "cached")


async def test_embedded_a_room_is_read_once_however_many_join_and_chat(client: Client) -> None:
    known = client.app[keys.signaling].known
    room = await create(client)  # not taken in until a peer asks for it
    peers = [await joined(client, room["id"]) for _ in range(30)]
    host = await joined(client, room["id"], role="host", token=room["ownerToken"])
    for n in range(10):
        await peers[n].send_json({"type": "chat", "roomId": room["id"], "text": f"hi {n}"})
    for n in range(10):
        assert (await next_of(host, "chat"))["text"] == f"hi {n}"
    assert known.reads == 1  # thirty-one joins and ten chat lines, one read

    # closed here: the change itself is kept, so chat is refused without a read
    resp = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200
    assert (await next_of(host, "room-status"))["status"] == "ended"
    await host.send_json({"type": "chat", "roomId": room["id"], "text": "late"})
    assert (await next_of(host, "error"))["code"] == "room_ended"
    assert known.reads == 1


async def test_cluster_joins_read_a_room_once_and_another_nodes_change_is_heard(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    one = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    two = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    known = two.app[keys.signaling].known
    room = await create(one)  # node two has never seen it
    watchers = [await joined(two, room["id"])]
    # the first join's read is not kept until node two hears the room's notices (a change
    # before that would go unheard): then it reads it once more, and keeps it
    await eventually(lambda: two.app[keys.hub].hears(room["id"]))
    watchers += [await joined(two, room["id"]) for _ in range(19)]
    assert known.reads == 2  # twenty joins, two reads

    resp = await one.post(
        f"/api/rooms/{room['id']}/close", headers={"Authorization": f"Bearer {room['ownerToken']}"}
    )
    assert resp.status == 200
    assert (await next_of(watchers[0], "room-status"))["status"] == "ended"
    # node two heard the change: the next message that needs the room reads it again, once
    await watchers[0].send_json({"type": "chat", "roomId": room["id"], "text": "late"})
    assert (await next_of(watchers[0], "error"))["code"] == "room_ended"
    await watchers[1].send_json({"type": "chat", "roomId": room["id"], "text": "late"})
    assert (await next_of(watchers[1], "error"))["code"] == "room_ended"
    assert known.reads == 3


async def test_cluster_chat_and_joins_go_on_while_postgres_is_down(
    aiohttp_client: AiohttpClient,
    pg_url: str,
    postgres: PostgresEngine,
    redis_alone: RedisEngine,
    srs: FakeSRS,
) -> None:
    one = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    two = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    room = await create(one)
    host = await joined(one, room["id"], role="host", token=room["ownerToken"])
    viewer = await joined(two, room["id"])
    for node in (one, two):  # each reads the room once more when it hears of it, then keeps it
        hub, known = node.app[keys.hub], node.app[keys.signaling].known
        await eventually(lambda: hub.hears(room["id"]))  # noqa: B023 - awaited in the loop
        await eventually(lambda: known.peek(room["id"]) is not None)  # noqa: B023

    postgres.stop()
    try:
        late = await joined(two, room["id"])  # a room known here needs no store to join
        await viewer.send_json({"type": "chat", "roomId": room["id"], "text": "across"})
        await host.send_json({"type": "chat", "roomId": room["id"], "text": "back"})
        for receiver in (host, late):  # every member hears both (two senders: any order)
            heard = {(await next_of(receiver, "chat"))["text"] for _ in range(2)}
            assert heard == {"across", "back"}
        # a room nobody here has read cannot be joined until PostgreSQL answers: said so
        other = await one.ws_connect("/ws")
        await other.send_json({"type": "join", "roomId": "unknownroom1"})
        assert (await next_of(other, "error"))["code"] == "database_unavailable"
    finally:
        postgres.start()
