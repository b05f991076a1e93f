"""Whole-cluster signaling: three ``python -m livehub`` processes on one throwaway PostgreSQL and
one throwaway Redis, driven over real HTTP and WebSocket connections on 127.0.0.1.

What a member on one node sends reaches members on the others in send order, presence and
``viewerCount`` are exact on every node (REST and WebSocket), a node killed with -9 leaves the
counts and is announced, a Redis restart is reported and recovered from without a restart, and a
room change made on one node reaches members on another as ``room-status``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.members import Cluster, Member, Node
from tests.conftest import ADMIN_TOKEN
from tests.engines import RedisEngine
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def peer_joined(peer_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "peer-joined" and e["peer"]["peerId"] == peer_id


def peer_left(peer_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "peer-left" and e["peerId"] == peer_id


@pytest.fixture
async def cluster(tmp_path: Path, pg_url: str, redis_server: RedisEngine) -> AsyncIterator[Cluster]:
    # each test has its own database; the Redis is shared, and rooms are never shared
    instance = Cluster(tmp_path, pg_url, redis_server.url)
    yield instance
    await instance.close()


async def counts_are(cluster: Cluster, room_id: str, expected: int, members: list[Member]) -> bool:
    """Every node's REST view and every member's last ``viewer-count`` say ``expected``."""
    for node in cluster.nodes:
        alive = node.proc is not None and node.proc.returncode is None
        if alive and await cluster.viewer_count(node, room_id) != expected:
            return False
    return all(member.last_count() == expected for member in members)


# -- messages across nodes ----------------------------------------------------------------------


async def test_relays_chat_and_presence_cross_nodes_in_order(cluster: Cluster) -> None:
    a, b, c = await cluster.start("a", "b", "c")
    room = await cluster.create_room(a)
    room_id = room["id"]

    host = await cluster.join(a, room, "host", host=True)
    ann = await cluster.join(b, room, "ann")
    await eventually(lambda: counts_are(cluster, room_id, 2, [host, ann]), 10, every=0.05)
    bob = await cluster.join(c, room, "bob")
    await eventually(lambda: counts_are(cluster, room_id, 3, [host, ann, bob]), 10, every=0.05)

    # the last joiner's member list holds everyone, on every node
    joined = bob.of_type("joined")[0]
    assert joined["viewerCount"] == 3
    assert sorted((m["peerId"], m["name"], m["role"]) for m in joined["members"]) == sorted(
        [
            (host.peer_id, "host", "host"),
            (ann.peer_id, "ann", "viewer"),
            (bob.peer_id, "bob", "viewer"),
        ]
    )
    # presence: the earlier members heard of the later ones, across nodes
    for member, later in ((host, [ann, bob]), (ann, [bob])):
        for peer in later:
            await member.until(peer_joined(peer.peer_id))

    # a relay with `to`, B -> A, and `from` set by the server whatever the client says
    await ann.send(
        type="offer", roomId=room_id, to=host.peer_id, payload={"sdp": "o"}, **{"from": "x"}
    )
    offer = await host.until(lambda e: e["type"] == "offer")
    assert offer == {
        "type": "offer",
        "roomId": room_id,
        "payload": {"sdp": "o"},
        "from": ann.peer_id,
        "to": host.peer_id,
    }
    assert not bob.of_type("offer")

    # A -> C: direct sends and broadcasts interleaved, in send order
    for i in range(20):
        if i % 2:
            await host.send(type="candidate", roomId=room_id, payload={"i": i})
        else:
            await host.send(type="candidate", roomId=room_id, to=bob.peer_id, payload={"i": i})
    await bob.until(lambda e: e["type"] == "candidate" and e["payload"] == {"i": 19})
    assert [e["payload"]["i"] for e in bob.of_type("candidate")] == list(range(20))
    assert {e["from"] for e in bob.of_type("candidate")} == {host.peer_id}
    await ann.until(lambda e: e["type"] == "candidate" and e["payload"] == {"i": 19})
    assert [e["payload"]["i"] for e in ann.of_type("candidate")] == list(range(1, 20, 2))
    assert not host.of_type("candidate")  # the sender is skipped

    # chat from C reaches A and B in order, with the sender's name
    for i in range(5):
        await bob.send(type="chat", roomId=room_id, text=f"hello {i}")
    for member in (host, ann, bob):
        await member.until(lambda e: e["type"] == "chat" and e["text"] == "hello 4")
        chats = member.of_type("chat")
        assert [(e["text"], e["from"], e["name"]) for e in chats] == [
            (f"hello {i}", bob.peer_id, "bob") for i in range(5)
        ]

    # the members endpoint pages the whole cluster, from any node
    for node in (a, b, c):
        status, page = await cluster.get(
            node, f"/api/rooms/{room_id}/members?limit=2", headers=ADMIN
        )
        assert status == 200, page
        assert page["total"] == 3 and len(page["members"]) == 2
        status, rest = await cluster.get(
            node, f"/api/rooms/{room_id}/members?limit=2&offset=2", headers=ADMIN
        )
        assert rest["total"] == 3 and len(rest["members"]) == 1
        assert {m["peerId"] for m in page["members"] + rest["members"]} == {
            host.peer_id,
            ann.peer_id,
            bob.peer_id,
        }

    # a member leaves on B: A and C hear it, counts are exact everywhere
    await ann.close()
    for member in (host, bob):
        await member.until(peer_left(ann.peer_id))
    await eventually(lambda: counts_are(cluster, room_id, 2, [host, bob]), 10, every=0.05)


async def test_a_room_closed_on_one_node_reaches_members_on_another(cluster: Cluster) -> None:
    a, b, c = await cluster.start("a", "b", "c")
    room = await cluster.create_room(b)
    host = await cluster.join(b, room, "host", host=True)
    viewer = await cluster.join(c, room, "viewer")
    await eventually(lambda: counts_are(cluster, room["id"], 2, [host, viewer]), 10, every=0.05)

    async with cluster.session.post(f"{a.url}/api/rooms/{room['id']}/close", headers=ADMIN) as resp:
        assert resp.status == 200
    for member in (viewer, host):
        status = await member.until(lambda e: e["type"] == "room-status")
        assert status["status"] == "ended"
        assert status["room"]["id"] == room["id"]
        assert status["room"]["viewerCount"] == 2  # each node's own (exact) count
        assert "ownerToken" not in status["room"] and "publish" not in status["room"]
        assert len(member.of_type("room-status")) == 1  # one notice, not one per node
    # chat is closed everywhere now
    await viewer.send(type="chat", roomId=room["id"], text="late")
    error = await viewer.until(lambda e: e["type"] == "error")
    assert error["code"] == "room_ended"


async def test_a_host_kicks_members_on_other_nodes(cluster: Cluster) -> None:
    a, b, c = await cluster.start("a", "b", "c")
    room = await cluster.create_room(a)
    room_id = room["id"]
    host = await cluster.join(a, room, "host", host=True)
    ann = await cluster.join(b, room, "ann")
    bob = await cluster.join(c, room, "bob")
    await eventually(lambda: counts_are(cluster, room_id, 3, [host, ann, bob]), 10, every=0.05)

    await host.send(type="kick", roomId=room_id, peerId=ann.peer_id)
    kicked = await ann.until(lambda e: e["type"] == "kicked")
    assert kicked == {"type": "kicked", "roomId": room_id, "by": host.peer_id}
    for member in (host, bob):  # announced on every node, as a local kick is
        await member.until(peer_left(ann.peer_id))
    await eventually(lambda: counts_are(cluster, room_id, 2, [host, bob]), 10, every=0.05)
    assert not host.of_type("error")
    # the kicked member is out of the room: its messages there are refused
    await ann.send(type="chat", roomId=room_id, text="still here?")
    error = await ann.until(lambda e: e["type"] == "error")
    assert error["code"] == "not_in_room"

    # a peer that is a member nowhere is still refused, and nobody is removed
    await host.send(type="kick", roomId=room_id, peerId="nobody")
    error = await host.until(lambda e: e["type"] == "error")
    assert error["code"] == "peer_not_found"
    assert await cluster.viewer_count(b, room_id) == 2
    # only the host may kick, wherever the target is
    await bob.send(type="kick", roomId=room_id, peerId=host.peer_id)
    error = await bob.until(lambda e: e["type"] == "error")
    assert error["code"] == "forbidden"
    assert not host.of_type("kicked")


async def test_a_relay_to_a_peer_that_just_joined_on_another_node(cluster: Cluster) -> None:
    a, b = await cluster.start("a", "b")
    room = await cluster.create_room(a)
    host = await cluster.join(a, room, "host", host=True)
    for i in range(5):
        # the host answers each newcomer's `peer-joined` at once, while A's read of the
        # room's members may still be in flight: the registry is asked, never `peer_not_found`
        viewer = await cluster.join(b, room, f"v{i}")
        await host.until(peer_joined(viewer.peer_id))
        await host.send(type="offer", roomId=room["id"], to=viewer.peer_id, payload={"i": i})
        offer = await viewer.until(lambda e: e["type"] == "offer")
        assert offer["from"] == host.peer_id and offer["payload"] == {"i": i}
    assert not host.of_type("error")


async def test_counted_presence_is_decided_on_every_node_once(cluster: Cluster) -> None:
    """Above the presence limit, members on every node switch to counted presence, each told
    once by its own node; viewers joining then are counted, not announced."""
    a, b, c = await cluster.start("a", "b", "c", LIVEHUB_PRESENCE_LIMIT="2")
    room = await cluster.create_room(a)
    room_id = room["id"]
    host = await cluster.join(a, room, "host", host=True)
    ann = await cluster.join(b, room, "ann")
    await eventually(lambda: counts_are(cluster, room_id, 2, [host, ann]), 10, every=0.05)
    bob = await cluster.join(c, room, "bob")  # 3 > 2
    assert bob.of_type("joined")[0]["presence"] == "counted"
    for member in (host, ann):
        mode = await member.until(lambda e: e["type"] == "presence-mode")
        assert mode["presence"] == "counted"
    await eventually(lambda: counts_are(cluster, room_id, 3, [host, ann, bob]), 10, every=0.05)
    cid = await cluster.join(b, room, "cid")
    await eventually(lambda: counts_are(cluster, room_id, 4, [host, ann, bob, cid]), 10, every=0.05)
    assert not any(e["peer"]["peerId"] == cid.peer_id for e in host.of_type("peer-joined"))
    for member in (host, ann):
        assert len(member.of_type("presence-mode")) == 1


# -- failures -----------------------------------------------------------------------------------


async def test_a_node_killed_leaves_the_counts_and_is_announced(cluster: Cluster) -> None:
    a, b, c = await cluster.start("a", "b", "c")
    room = await cluster.create_room(a)
    room_id = room["id"]
    host = await cluster.join(a, room, "host", host=True)
    ann = await cluster.join(b, room, "ann")
    doomed = [await cluster.join(c, room, f"c{i}") for i in range(2)]
    await eventually(lambda: counts_are(cluster, room_id, 4, [host, ann]), 10, every=0.05)

    await c.kill()
    await eventually(lambda: counts_are(cluster, room_id, 2, [host, ann]), 15)
    for member in (host, ann):
        for gone in doomed:
            event = await member.until(peer_left(gone.peer_id), within=2)
            assert event == {"type": "peer-left", "roomId": room_id, "peerId": gone.peer_id}
        # announced once (one survivor reaps the dead node)
        assert len(member.of_type("peer-left")) == 2


async def test_redis_lost_and_back_without_a_restart(
    cluster: Cluster, redis_server: RedisEngine
) -> None:
    a, b = await cluster.start("a", "b")
    room = await cluster.create_room(a)
    room_id = room["id"]
    host = await cluster.join(a, room, "host", host=True)
    ann = await cluster.join(b, room, "ann")
    await eventually(lambda: counts_are(cluster, room_id, 2, [host, ann]), 10, every=0.05)

    async def redis_check(node: Node) -> str:
        _, body = await cluster.get(node, "/readyz")
        check: str = body["checks"]["redis"]
        return check

    assert await redis_check(a) == "ok"
    redis_server.kill()

    async def reported_down() -> bool:
        return all([await redis_check(node) == "unreachable" for node in (a, b)])

    await eventually(reported_down, 10)
    # the nodes keep serving REST and their own members
    late = await cluster.join(a, room, "late")
    await host.until(peer_joined(late.peer_id))
    await host.send(type="chat", roomId=room_id, text="still here")
    await late.until(lambda e: e["type"] == "chat" and e["text"] == "still here")
    assert await cluster.viewer_count(b, room_id) >= 1

    redis_server.start()

    async def recovered() -> bool:
        if not all([await redis_check(node) == "ok" for node in (a, b)]):
            return False
        return await counts_are(cluster, room_id, 3, [host, ann, late])

    await eventually(recovered, 10)
    # messages cross nodes again
    await ann.send(type="chat", roomId=room_id, text="back")
    for member in (host, late):
        await member.until(lambda e: e["type"] == "chat" and e["text"] == "back")


PAUSE = 20.0  # seconds a node is stopped: well past the 5 s death timeout


async def test_a_node_paused_past_the_death_timeout_repairs_itself(cluster: Cluster) -> None:
    """SIGSTOP a node for 20 s: the others reap it (its members are reported gone); SIGCONT:
    within 10 s its members are present again on every node with exact counts, announced
    again, and relays to and from them work."""
    a, b, c = await cluster.start("a", "b", "c")
    room = await cluster.create_room(a)
    room_id = room["id"]
    host = await cluster.join(a, room, "host", host=True)
    ann = await cluster.join(b, room, "ann")
    paused = [await cluster.join(c, room, f"c{i}") for i in range(2)]
    everyone = [host, ann, *paused]
    await eventually(lambda: counts_are(cluster, room_id, 4, everyone), 10, every=0.05)

    async def counted_on(nodes: list[Node], expected: int, members: list[Member]) -> bool:
        for node in nodes:
            if await cluster.viewer_count(node, room_id) != expected:
                return False
        return all(member.last_count() == expected for member in members)

    c.send(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        await eventually(lambda: counted_on([a, b], 2, [host, ann]), PAUSE - 2, every=0.05)
        for member in (host, ann):
            for gone in paused:
                await member.until(peer_left(gone.peer_id), within=2)
        await asyncio.sleep(max(0.0, PAUSE - (time.monotonic() - stopped)))
        marks = {id(member): len(member.events) for member in everyone}
    finally:
        c.send(signal.SIGCONT)

    await eventually(lambda: counts_are(cluster, room_id, 4, everyone), 10, every=0.05)
    for member in (host, ann):  # announced again, as their joins were
        for back in paused:
            joined_again = await member.until_after(
                marks[id(member)], peer_joined(back.peer_id), within=2
            )
            assert joined_again["peer"] == {
                "peerId": back.peer_id,
                "name": f"c{paused.index(back)}",
                "role": "viewer",
            }
    # relays to and from the members of the node that came back
    to_c0 = {"sdp": "v=0 to c0"}
    await host.send(type="offer", roomId=room_id, to=paused[0].peer_id, payload=to_c0)
    offer = await paused[0].until(lambda e: e["type"] == "offer")
    assert offer["from"] == host.peer_id and offer["payload"] == to_c0
    from_c1 = {"sdp": "v=0 from c1"}
    await paused[1].send(type="answer", roomId=room_id, to=host.peer_id, payload=from_c1)
    answer = await host.until(lambda e: e["type"] == "answer")
    assert answer["from"] == paused[1].peer_id and answer["payload"] == from_c1
    await ann.send(type="chat", roomId=room_id, text="welcome back")
    for member in paused:
        await member.until(lambda e: e["type"] == "chat" and e["text"] == "welcome back")
