"""Moderation in cluster mode, whole livehub processes on a throwaway PostgreSQL and Redis over
real WebSocket connections: a message a member may not send costs no read of the shared state."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import jwt
import redis.asyncio as aioredis

from tests.cluster.members import Cluster, Member, Node, of
from tests.engines import RedisEngine
from tests.helpers import eventually


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


async def test_a_kicked_viewers_token_is_banned_on_every_node(cluster: Cluster) -> None:
    """A viewer of a private room on node b, kicked by a host on node a, comes back with the
    same viewer token from another address: refused (``banned``) on its own node at once and on
    the others once the ban has spread (Redis); a fresh token from that address joins."""
    secret = "viewer-token-secret-of-the-cluster-test-0123"
    env = {"LIVEHUB_VIEWER_TOKEN_SECRET": secret, "LIVEHUB_TRUSTED_PROXIES": "127.0.0.0/8"}
    a, b = await cluster.start("a", "b", **env)
    room = await cluster.create_room(a, visibility="private")
    rid = room["id"]
    host = await cluster.join(a, room, "H", host=True)
    token = jwt.encode({"room": rid, "exp": 2**40}, secret)

    async def connect(node: Node, address: str) -> Member:
        ws = await cluster.session.ws_connect(node.ws_url, headers={"X-Forwarded-For": address})
        member = Member(ws)
        cluster.members.append(member)
        return member

    async def answer(node: Node, address: str, token: str) -> dict[str, Any]:
        member = await connect(node, address)
        await member.send(type="join", roomId=rid, token=token)
        event = await member.until(lambda e: e["type"] in ("joined", "error"))
        await member.close()
        return event

    viewer = await connect(b, "203.0.113.2")
    await viewer.send(type="join", roomId=rid, token=token, name="V")
    peer_id = (await viewer.until(of("joined")))["peerId"]
    await host.until(of("peer-joined"))
    await host.send(type="kick", roomId=rid, peerId=peer_id)
    await viewer.until(of("kicked"))
    assert (await answer(b, "198.51.100.7", token)).get("code") == "banned"

    async def banned_on_a() -> bool:
        return (await answer(a, "198.51.100.8", token)).get("code") == "banned"

    await eventually(banned_on_a)
    fresh = jwt.encode({"room": rid, "exp": 2**40, "sub": "new"}, secret)
    assert (await answer(a, "198.51.100.8", fresh))["type"] == "joined"


async def test_a_mute_follows_a_member_that_reconnects_to_another_node(cluster: Cluster) -> None:
    """The host on node a mutes a viewer connected to node b (whose address only b knows): when
    the viewer reconnects, to node a under another name, it is muted again (``muted``, its chat
    refused) until the host unmutes its new peer id."""
    a, b = await cluster.start("a", "b")
    room = await cluster.create_room(a)
    rid = room["id"]
    host = await cluster.join(a, room, "H", host=True)
    viewer = await cluster.join(b, room, "Troll")
    await host.until(of("peer-joined"))
    await host.send(type="mute", roomId=rid, peerId=viewer.peer_id, seconds=600)
    until = (await viewer.until(of("muted", peerId=viewer.peer_id)))["until"]
    await viewer.close()
    await host.until(of("peer-left", peerId=viewer.peer_id))

    async def keys_stored() -> bool:  # node b stores them once the viewer has left
        stored = await _moderation(cluster, rid)
        return any(e["peer"] == viewer.peer_id for e in stored.get("mutedKeys", {}).values())

    await eventually(keys_stored)
    again = await cluster.join(a, room, "Nice person")
    notice = await again.until(of("muted", peerId=again.peer_id))
    assert notice["until"] == until
    await again.send(type="chat", roomId=rid, text="new here")
    assert (await again.until(of("error", inReplyTo="chat")))["code"] == "muted"
    await host.send(type="unmute", roomId=rid, peerId=again.peer_id)
    await again.until(of("unmuted"))
    await again.send(type="chat", roomId=rid, text="thanks")
    await host.until(of("chat", text="thanks"))


async def test_slow_mode_follows_a_member_that_reconnects_to_another_node(
    cluster: Cluster,
) -> None:
    """A viewer on node b chats in slow mode and reconnects at once, to node a: its line is
    stored with the room under its address (a digest) when it leaves b, and a's new connection
    inherits it (``slow_mode``)."""
    a, b = await cluster.start("a", "b")
    room = await cluster.create_room(a)
    rid = room["id"]
    host = await cluster.join(a, room, "H", host=True)
    await host.send(type="slow-mode", roomId=rid, seconds=600)
    await host.until(of("room-settings", slowMode=600))
    viewer = await cluster.join(b, room, "V")
    await viewer.send(type="chat", roomId=rid, text="one")
    await host.until(of("chat", text="one"))
    await viewer.close()

    async def line_stored() -> bool:  # node b stores it once the viewer has left
        return bool((await _moderation(cluster, rid)).get("slowKeys"))

    await eventually(line_stored)
    again = await cluster.join(a, room, "Someone else")
    await again.send(type="chat", roomId=rid, text="two")
    assert (await again.until(of("error", inReplyTo="chat")))["code"] == "slow_mode"


async def _moderation(cluster: Cluster, room_id: str) -> dict[str, Any]:
    """The room's moderation as stored (PostgreSQL)."""
    connection = await asyncpg.connect(cluster.database_url)
    try:
        row = await connection.fetchrow("SELECT * FROM rooms WHERE id = $1", room_id)
    finally:
        await connection.close()
    assert row is not None
    value = row["moderation"]
    return json.loads(value) if isinstance(value, str) else dict(value)
