"""Moderation in cluster mode, whole livehub processes on a throwaway PostgreSQL and Redis over
real WebSocket connections: a message a member may not send costs no read of the shared state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.cluster.members import Cluster
from tests.engines import RedisEngine


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str, redis_alone: RedisEngine) -> AsyncIterator[Cluster]:
    instance = Cluster(tmp_path, pg_url, redis_alone.url)
    yield instance
    await instance.close()


def of(kind: str, **fields: Any) -> Any:
    return lambda e: e["type"] == kind and all(e.get(k) == v for k, v in fields.items())


async def test_a_strangers_moderation_reads_no_members_of_the_room(
    cluster: Cluster, redis_alone: RedisEngine
) -> None:
    """``mute`` / ``unmute`` of a room the sender is not in are refused (``not_in_room``) before
    anything is read: else any connection could make its node read every member of any room
    from Redis (thousands in a big room), 50 times a second."""
    a, b = await cluster.start("a", "b")
    room = await cluster.create_room(a)
    rid = room["id"]
    host = await cluster.join(a, room, "H", host=True)
    viewer = await cluster.join(a, room, "V")
    stranger = await cluster.join(b, await cluster.create_room(b), "S")
    commands = aioredis.from_url(redis_alone.url)
    try:
        await commands.config_set("slowlog-log-slower-than", 0)
        await commands.config_set("slowlog-max-len", 100_000)
        await commands.slowlog_reset()
        for kind in ("mute", "unmute"):
            await stranger.send(type=kind, roomId=rid, peerId=viewer.peer_id, seconds=60)
            refused = await stranger.until(of("error", inReplyTo=kind))
            assert refused["code"] == "not_in_room", refused
        entries = await commands.slowlog_get(100_000)
    finally:
        await commands.config_set("slowlog-log-slower-than", 10_000)
        await commands.aclose()
    touching = [e for e in entries if rid.encode() in b" ".join(e["command"].split())]
    assert touching == [], touching
    # the host's mute still reaches the viewer
    await host.send(type="mute", roomId=rid, peerId=viewer.peer_id, seconds=60)
    await viewer.until(of("muted", peerId=viewer.peer_id))
