"""Cluster mode in the app factory: two apps on one PostgreSQL and one Redis, built exactly as
``__main__`` builds them. The store and player counts are the shared ones; reconciliation runs
on the leader only (a triggered pass runs where it was triggered), and moves when the leader
stops."""

from __future__ import annotations

import time

from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.app import create_app
from livehub.cluster.players import RedisPlayers
from livehub.config import Config
from livehub.storage_pg import PostgresStore
from tests.conftest import make_config
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
