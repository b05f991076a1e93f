"""Issue 15's per-address limits and relay rules on whole ``python -m livehub`` cluster nodes (one
throwaway PostgreSQL, one throwaway Redis of this test alone), over real HTTP and WebSocket
connections from 127.0.0.1: two nodes share one connection limit per address (a killed node's
connections stop counting), the anonymous create limit and kick bans hold across nodes, and a
viewer's room-wide relay is refused in a room whose members are spread over the nodes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.cluster.nodes import Node, StartNode, create_room
from tests.helpers import eventually


@pytest.fixture
def node_settings() -> dict[str, str]:
    return {
        "LIVEHUB_MAX_CONNECTIONS_PER_ADDRESS": "3",
        "LIVEHUB_CREATE_RATE_PER_MIN": "3",
        "LIVEHUB_KICK_BAN_S": "3",
        "LIVEHUB_BROADCAST_RELAY_MAX_MEMBERS": "2",
        "LIVEHUB_VIEWER_COUNT_INTERVAL": "0.05",
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


class Member:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.peer_id = ""
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.events.append(msg.json())

    async def until(self, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            for event in self.events:
                if check(event):
                    self.events.remove(event)
                    return event
            assert time.monotonic() < deadline, f"no such event; got {self.events[-10:]}"
            await asyncio.sleep(0.02)

    async def join(self, room: dict[str, Any], **fields: Any) -> dict[str, Any]:
        await self.ws.send_json({"type": "join", "roomId": room["id"], **fields})
        event = await self.until(lambda e: e["type"] in ("joined", "error"))
        if event["type"] == "joined":
            self.peer_id = event["peerId"]
        return event

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def connect(session: aiohttp.ClientSession, node: Node) -> Member:
    return Member(await session.ws_connect(f"ws://127.0.0.1:{node.port}/ws"))


async def refused(session: aiohttp.ClientSession, node: Node) -> bool:
    """Whether an upgrade to ``node`` is refused with 429 before the handshake."""
    try:
        ws = await session.ws_connect(f"ws://127.0.0.1:{node.port}/ws")
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 429
        assert exc.headers is not None and exc.headers["Retry-After"] == "10"
        return True
    await ws.close()
    return False


async def test_two_nodes_share_the_connection_limit_and_a_dead_nodes_slots_come_back(
    make_node: StartNode, session: aiohttp.ClientSession
) -> None:
    a, b = make_node("a"), make_node("b")
    await a.start()
    await b.start()
    on_a = [await connect(session, a), await connect(session, a)]
    on_b = await connect(session, b)
    # 3 from 127.0.0.1 across the cluster: the next is refused on either node
    assert await refused(session, a)
    assert await refused(session, b)
    # closing one on A frees a slot for B
    await on_a.pop().close()

    async def slot_on_b() -> Member | None:
        with contextlib.suppress(aiohttp.WSServerHandshakeError):
            return await connect(session, b)
        return None

    second_on_b = await eventually(slot_on_b, within=10)
    assert await refused(session, b)

    # A dies (kill -9, nothing released): its connection stops counting within its TTL
    await a.kill()
    third_on_b = await eventually(slot_on_b, within=15)
    assert await refused(session, b)
    for member in (*on_a, on_b, second_on_b, third_on_b):
        with contextlib.suppress(Exception):
            await member.close()


async def test_the_create_limit_and_kick_bans_hold_across_nodes(
    make_node: StartNode, session: aiohttp.ClientSession
) -> None:
    a, b = make_node("a"), make_node("b")
    await a.start()
    await b.start()
    room = await create_room(session, a, "one")
    await create_room(session, b, "two")
    await create_room(session, a, "three")
    async with session.post(f"{b.url}/api/rooms", json={"title": "four"}) as resp:
        assert resp.status == 429  # 3 a minute from this address, whichever node
        assert (await resp.json())["code"] == "rate_limited"
        assert int(resp.headers["Retry-After"]) >= 1

    host = await connect(session, a)
    assert (await host.join(room, role="host", token=room["ownerToken"]))["type"] == "joined"
    viewer = await connect(session, b)
    assert (await viewer.join(room))["type"] == "joined"
    await host.until(lambda e: e["type"] == "peer-joined")
    await host.ws.send_json({"type": "kick", "roomId": room["id"], "peerId": viewer.peer_id})
    await viewer.until(lambda e: e["type"] == "kicked")
    await viewer.close()
    # the kicked peer's address, on the other node: banned
    again = await connect(session, a)
    event = await again.join(room)
    assert (event["type"], event["code"]) == ("error", "banned")

    async def ban_over() -> bool:
        return bool((await again.join(room))["type"] == "joined")

    await eventually(ban_over, within=10, every=0.2)  # LIVEHUB_KICK_BAN_S=3
    for member in (host, again):
        await member.close()


async def test_a_viewers_room_wide_relay_is_refused_across_nodes(
    make_node: StartNode, session: aiohttp.ClientSession
) -> None:
    a, b = make_node("a"), make_node("b")
    await a.start()
    await b.start()
    room = await create_room(session, a, "relays")
    host = await connect(session, a)
    assert (await host.join(room, role="host", token=room["ownerToken"]))["type"] == "joined"
    viewer = await connect(session, b)
    assert (await viewer.join(room))["type"] == "joined"
    # a room of 2 (the limit here): a viewer may still relay to the whole room
    await viewer.ws.send_json({"type": "offer", "roomId": room["id"], "payload": 1})
    assert (await host.until(lambda e: e["type"] == "offer"))["payload"] == 1
    third = await connect(session, a)
    assert (await third.join(room))["type"] == "joined"

    async def three_on_b() -> bool:
        counts = [e["viewerCount"] for e in viewer.events if e["type"] == "viewer-count"]
        return bool(counts) and counts[-1] == 3

    await eventually(three_on_b, within=10)
    await viewer.ws.send_json({"type": "offer", "roomId": room["id"], "payload": 2})
    error = await viewer.until(lambda e: e["type"] == "error")
    assert (error["code"], error["inReplyTo"]) == ("relay_needs_to", "offer")
    # the host's relay to the room reaches the members on both nodes
    await host.ws.send_json({"type": "candidate", "roomId": room["id"], "payload": 3})
    for member in (viewer, third):
        assert (await member.until(lambda e: e["type"] == "candidate"))["payload"] == 3
    assert not any(e["type"] == "offer" for e in third.events)  # the refused one went nowhere
    for member in (host, viewer, third):
        await member.close()
