"""Cluster mode in the app factory: two apps on one PostgreSQL and one Redis, built exactly as
``__main__`` builds them. The store and player counts are the shared ones; reconciliation runs
on the leader only (a triggered pass runs where it was triggered), and moves when the leader
stops."""

from __future__ import annotations

import time
from collections.abc import Callable

from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.postgres.store import PostgresStore
from livehub.adapters.redis.players import RedisPlayers
from livehub.app import create_app
from livehub.config import Config
from tests.conftest import Client, hook_for, make_config, send_hook
from tests.engines import RedisEngine
from tests.fake_srs import FakeSRS
from tests.helpers import eventually


def cluster_config(pg_url: str, redis: RedisEngine, srs: FakeSRS) -> Config:
    return make_config(
        database_url=pg_url,
        redis_url=redis.url,
        srs_api_url=srs.url,
        reconcile_interval=0.2,
    )


async def test_cluster_mode_uses_the_shared_store_and_counts(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    one = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    two = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    assert isinstance(one.app[keys.store], PostgresStore)
    assert isinstance(one.app[keys.rooms].players, RedisPlayers)
    resp = await one.post("/api/rooms", json={"title": "shared"})
    assert resp.status == 201
    room = await resp.json()
    resp = await two.get(f"/api/rooms/{room['id']}")
    assert resp.status == 200 and (await resp.json())["title"] == "shared"
    resp = await two.get("/readyz")
    assert (await resp.json())["checks"]["database"] == "ok"


async def test_only_the_leader_reconciles_and_the_job_moves_when_it_stops(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    first = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    second = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    lock, other = first.app[keys.leader], second.app[keys.leader]
    assert lock.is_leader and not other.is_leader
    leader, follower = first.app[keys.reconciler], second.app[keys.reconciler]
    await eventually(lambda: srs.stream_reads >= 3)  # the leader's periodic passes
    assert leader.last_ok is True and follower.last_run is None  # the follower never asked

    # SRS restarted, seen in a hook on the follower: it reconciles there at once
    follower.trigger()
    await eventually(lambda: follower.last_run is not None)
    ran_once = follower.last_run

    # the leader stops (its lock is released): the follower's passes start within a renewal
    await first.close()
    await eventually(lambda: other.is_leader, within=4)
    await eventually(lambda: (follower.last_run or 0) > (ran_once or 0) + 0.3, within=3)
    assert follower.last_ok is True and time.time() - (follower.last_run or 0) < 1


async def test_player_counts_are_restored_from_srs_after_redis_restarts_empty(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    leader = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    follower = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    assert leader.app[keys.leader].is_leader
    room = await (await leader.post("/api/rooms", json={"title": "t"})).json()
    other = await (await leader.post("/api/rooms", json={"title": "u"})).json()
    srs.publish(room["streamKey"], "pub00001")
    body = srs.hook(hook_for(room, "on_publish.json", client_id="pub00001"))
    assert await send_hook(leader, body) == {"code": 0}
    # three players of the room (FLV, HLS, one more), as SRS's client list shows them too
    for cid, kind in (
        ("ply00001", "flv-play"),
        ("ply00002", "hls-play"),
        ("ply00003", "rtmp-play"),
    ):
        srs.play(room["streamKey"], cid, kind)
        assert await send_hook(follower, hook_for(room, "on_play.json", client_id=cid)) == {
            "code": 0
        }
    # the publisher is a client too, but not a player
    srs.clients.append(
        {**srs.clients[0], "id": "pub00001", "type": "fmle-publish", "publish": True}
    )
    srs.play(other["streamKey"], "ply00004")  # a room that is not live: not counted
    srs.play("not-a-room", "ply00005")

    async def players(client: Client) -> int:
        count: int = (await (await client.get(f"/api/rooms/{room['id']}")).json())["playerCount"]
        return count

    for client in (leader, follower):  # each node's mirror follows the shared counts
        await eventually(counted(client, room["id"], 3), within=5)
    assert await players(leader) == 3 and await players(follower) == 3

    redis_alone.kill()  # kill -9; it comes back empty (no persistence)
    redis_alone.start()
    for client in (leader, follower):  # both nodes are back on the (empty) Redis
        shared = client.app[keys.rooms].players
        assert isinstance(shared, RedisPlayers)
        await eventually(reconnected(shared), within=10)
    # the leader lists SRS's players again: exact on every node, without a player coming or
    # going; nothing is counted twice
    for client in (leader, follower):
        await eventually(counted(client, room["id"], 3), within=15)
    assert ("GET", "/api/v1/clients/?start=0&count=500") in srs.requests
    assert await players(leader) == 3 and await players(follower) == 3
    assert await players_of(leader, other["id"]) == 0

    # players keep coming and going as usual afterwards
    assert await send_hook(follower, hook_for(room, "on_stop.json", client_id="ply00001")) == {
        "code": 0
    }
    await eventually(lambda: _sync_count(leader, room["id"]) == 2, within=5)


def reconnected(players: RedisPlayers) -> Callable[[], bool]:
    return lambda: players.sessions >= 2


def counted(client: Client, room_id: str, players: int) -> Callable[[], bool]:
    """Whether the node's mirror of the shared player counts says ``players``."""
    return lambda: _sync_count(client, room_id) == players


def _sync_count(client: Client, room_id: str) -> int:
    return client.app[keys.rooms].players.count(room_id)


async def players_of(client: Client, room_id: str) -> int:
    count: int = (await (await client.get(f"/api/rooms/{room_id}")).json())["playerCount"]
    return count


async def test_players_whose_on_stop_was_lost_are_forgotten_on_every_node(
    aiohttp_client: AiohttpClient, pg_url: str, redis_alone: RedisEngine, srs: FakeSRS
) -> None:
    """As in embedded mode: a player SRS no longer lists (its on_stop lost) stops counting,
    read from the shared registry by the leader, on every node."""
    leader = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    follower = await aiohttp_client(create_app(cluster_config(pg_url, redis_alone, srs)))
    assert leader.app[keys.leader].is_leader
    room = await (await leader.post("/api/rooms", json={"title": "t"})).json()
    srs.publish(room["streamKey"], "pub00001")
    body = srs.hook(hook_for(room, "on_publish.json", client_id="pub00001"))
    assert await send_hook(leader, body) == {"code": 0}
    for cid in ("ply00001", "ply00002"):
        srs.play(room["streamKey"], cid)
        play = srs.hook(hook_for(room, "on_play.json", client_id=cid))
        assert await send_hook(follower, play) == {"code": 0}
    for client in (leader, follower):
        await eventually(counted(client, room["id"], 2), within=5)
    leader.app[keys.rooms].publish_grace_ms = 0  # SRS has had time to list them
    srs.stop_playing("ply00001")  # its on_stop was lost
    for client in (leader, follower):
        await eventually(counted(client, room["id"], 1), within=5)

    # by the leader (which may have changed under load): once. The pass counts what it forgot
    # after the registry's write returns, so a count already down may come before it
    def forgotten() -> int:
        return sum(c.app[keys.reconciler].players_forgotten for c in (leader, follower))

    await eventually(lambda: forgotten() >= 1, within=5)
    assert forgotten() == 1
