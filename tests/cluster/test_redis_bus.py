"""The Redis bus against a real (throwaway) Redis, with several buses in one process as nodes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from livehub.adapters.memory.bus import LocalBus
from livehub.adapters.redis.bus import BATCH_BYTES, CHUNK, RedisBus
from livehub.adapters.redis.leader import LeaderLock, lead
from livehub.domain.bus import Bus, Member, PresenceDelta
from tests.engines import RedisEngine
from tests.helpers import eventually

FAST: dict[str, Any] = {
    "heartbeat": 0.2,
    "node_ttl": 1.0,
    "reap_interval": 0.2,
    "retry_interval": 0.2,
}


class Recorder:
    """A node's hub as the bus sees it: records what arrives."""

    def __init__(self) -> None:
        self.rooms: list[tuple[str, bytes, str | None]] = []
        self.peers: list[tuple[str, bytes]] = []
        #: the frames of both, in arrival order
        self.frames: list[bytes] = []
        self.changed: list[str] = []
        self.deltas: list[PresenceDelta] = []
        self.lost: list[Member] = []
        self.notices: list[tuple[str, bytes]] = []
        self.kicks: list[tuple[str, str, str]] = []
        self.returned: list[Member] = []

    def deliver_room(self, room_id: str, frame: bytes, exclude: str | None) -> None:
        self.rooms.append((room_id, frame, exclude))
        self.frames.append(frame)

    def deliver_peer(self, peer_id: str, frame: bytes, room_id: str | None) -> None:
        self.peers.append((peer_id, frame))
        self.frames.append(frame)

    def presence_delta(self, delta: PresenceDelta) -> None:
        self.deltas.append(delta)

    def presence_changed(self, room_id: str) -> None:
        self.changed.append(room_id)

    def members_lost(self, members: list[Member]) -> None:
        self.lost.extend(members)

    def members_returned(self, members: list[Member]) -> None:
        self.returned.extend(members)

    def room_changed(self, room_id: str, notice: bytes) -> None:
        self.notices.append((room_id, notice))

    def kick_peer(self, room_id: str, peer_id: str, by: str) -> None:
        self.kicks.append((room_id, peer_id, by))


Nodes = Callable[..., Awaitable[tuple[RedisBus, Recorder]]]


@pytest.fixture
async def node(redis_server: RedisEngine, redis_prefix: str) -> AsyncIterator[Nodes]:
    """Start a bus (a node) on the test's Redis; every node is closed after the test."""
    started: list[RedisBus] = []

    async def start(node_id: str, **options: Any) -> tuple[RedisBus, Recorder]:
        settings = {**FAST, **options}
        bus = RedisBus(redis_server.url, node_id=node_id, prefix=redis_prefix, **settings)
        recorder = Recorder()
        bus.set_handler(recorder)
        await bus.start()
        assert bus.healthy
        started.append(bus)
        return bus, recorder

    yield start
    for bus in started:
        await bus.close()


async def test_broadcast_reaches_every_other_node_in_order(node: Nodes) -> None:
    a, rec_a = await node("a")
    b, rec_b = await node("b")
    c, rec_c = await node("c")
    b.join("r1", "pb", "bob", "viewer")
    c.join("r1", "pc", "carol", "viewer")
    await b.flush()
    await c.flush()
    frames = [f'{{"type":"chat","n":{i}}}'.encode() for i in range(200)]
    for frame in frames:
        a.broadcast("r1", frame, exclude="pa")
    await a.flush()

    async def arrived() -> bool:
        return len(rec_b.rooms) == 200 and len(rec_c.rooms) == 200

    await eventually(arrived, 5)
    assert rec_b.rooms == [("r1", frame, "pa") for frame in frames]
    assert rec_c.rooms == rec_b.rooms
    assert rec_a.rooms == []  # the sender's node delivers locally; no echo


async def test_a_node_without_members_in_a_room_gets_none_of_its_broadcasts(node: Nodes) -> None:
    a, _ = await node("a")
    b, rec_b = await node("b")
    b.join("r1", "pb", "bob", "viewer")
    b.leave("r1", "pb")
    b.join("r2", "pb", "bob", "viewer")
    await b.flush()
    a.broadcast("r1", b"for r1")
    a.broadcast("r2", b"for r2")
    await a.flush()
    await eventually(lambda: _true(bool(rec_b.rooms)), 5)
    await asyncio.sleep(0.1)
    assert rec_b.rooms == [("r2", b"for r2", None)]


async def test_a_room_left_empty_is_unsubscribed_and_a_new_join_subscribes_it_again(
    node: Nodes, redis_server: RedisEngine
) -> None:
    import redis.asyncio as aioredis

    a, _ = await node("a")
    b, rec_b = await node("b")
    channel = f"{b.prefix}room:r1"
    client = aioredis.Redis.from_url(redis_server.url)
    try:

        async def subscribers() -> int:
            ((_, count),) = await client.pubsub_numsub(channel)
            return int(count)

        for round_ in range(3):
            b.join("r1", "pb", "bob", "viewer")
            await b.flush()
            assert await subscribers() == 1
            a.broadcast("r1", f"round {round_}".encode())
            await a.flush()
            expected = round_ + 1
            await eventually(lambda: _true(len(rec_b.rooms) == expected), 5)  # noqa: B023
            b.leave("r1", "pb")
            b.broadcast("r2", b"anything")  # the writer runs: it unsubscribes r1 after it
            await b.flush()
            assert await eventually(lambda: _zero(subscribers()), 5)
    finally:
        await client.aclose()
    assert [frame for _, frame, _ in rec_b.rooms] == [b"round 0", b"round 1", b"round 2"]


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_an_error_reply_in_a_batch_ends_the_session_and_the_next_one_rebuilds(
    node: Nodes, redis_server: RedisEngine
) -> None:
    """Redis forgot the scripts (SCRIPT FLUSH; a restart does the same): the next join's
    EVALSHA fails, every reply of its batch is still read, the session ends, and the next one
    loads the scripts again and writes the presence back: counts exact on both nodes."""
    import redis.asyncio as aioredis

    a, _ = await node("a")
    b, _ = await node("b")
    b.join("r1", "p1", "bob", "viewer")
    await b.flush()
    sessions = b.sessions
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    b.join("r1", "p2", "bea", "viewer")
    b.broadcast("r1", b"in the same batch")
    await eventually(lambda: b.sessions > sessions, 5)

    async def exact() -> bool:
        return await a.count("r1") == 2 and await b.count("r1") == 2

    await eventually(exact, 5)


async def test_a_room_notice_reaches_the_other_nodes_with_members_in_order(node: Nodes) -> None:
    a, rec_a = await node("a")
    b, rec_b = await node("b")
    c, rec_c = await node("c")
    a.join("r1", "pa", "ann", "host")
    b.join("r1", "pb", "bob", "viewer")
    c.join("r2", "pc", "cid", "viewer")  # no member of r1 on c
    await asyncio.gather(a.flush(), b.flush(), c.flush())
    a.notify("r1", b'{"n": 1}')
    a.broadcast("r1", b"between")
    a.notify("r1", b'{"n": 2}')
    await a.flush()
    await eventually(lambda: _true(len(rec_b.notices) == 2), 5)
    assert rec_b.notices == [("r1", b'{"n": 1}'), ("r1", b'{"n": 2}')]
    assert rec_b.rooms == [("r1", b"between", None)]
    await asyncio.sleep(0.1)
    assert rec_a.notices == [] and rec_c.notices == []  # no echo; c has no member of r1


async def test_direct_send_reaches_the_peer_on_its_node_in_order_with_broadcasts(
    node: Nodes,
) -> None:
    a, _ = await node("a")
    b, rec_b = await node("b")
    c, rec_c = await node("c")
    b.join("r1", "pb", "bob", "viewer")
    c.join("r1", "pc", "carol", "viewer")
    await b.flush()
    await c.flush()
    a.send("pb", b"offer")
    a.broadcast("r1", b"chat")
    a.send("pb", b"candidate")
    a.send("nobody", b"lost")  # unknown peer: dropped, nothing breaks
    await a.flush()
    await eventually(lambda: _true(len(rec_b.peers) == 2 and len(rec_c.rooms) == 1), 5)
    assert rec_b.peers == [("pb", b"offer"), ("pb", b"candidate")]
    assert rec_b.rooms == [("r1", b"chat", None)]
    assert rec_c.peers == []
    # after the peer leaves its last room, it is no longer reachable
    b.leave("r1", "pb")
    await b.flush()
    a.send("pb", b"late")
    a.broadcast("r1", b"marker")
    await a.flush()
    await eventually(lambda: _true(len(rec_c.rooms) == 2), 5)
    assert rec_b.peers == [("pb", b"offer"), ("pb", b"candidate")]


async def test_joins_and_leaves_reach_the_other_nodes_as_deltas_with_contiguous_seqs(
    node: Nodes,
) -> None:
    """Each change is one delta on the room's channel: ``prev`` is the sender's previous seq in
    the room (0 when it had nobody there: the first join, and the first after the room emptied
    on that node); a snapshot carries the sender's latest seq while it has members there."""
    a, _ = await node("a")
    b, rec_b = await node("b")
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()
    a.join("r1", "p1", "ann", "host")
    a.join("r1", "p2", "al", "viewer")
    a.join("r2", "p1", "ann", "host")  # another room: its own run, one counter
    a.leave("r1", "p1")
    a.leave("r1", "p2")  # r1 empty on a
    a.join("r1", "p3", "cy", "viewer")
    await a.flush()
    await eventually(lambda: _true(len(rec_b.deltas) == 5), 5)
    d = rec_b.deltas
    assert [(x.room_id, x.node_id, x.peer_id, x.joined) for x in d] == [
        ("r1", "a", "p1", True),
        ("r1", "a", "p2", True),
        ("r1", "a", "p1", False),
        ("r1", "a", "p2", False),
        ("r1", "a", "p3", True),
    ]
    assert (d[0].name, d[0].role, d[1].name, d[1].role) == ("ann", "host", "al", "viewer")
    assert d[0].prev == 0 and d[4].prev == 0
    assert [x.prev for x in d[1:4]] == [x.seq for x in d[0:3]]  # contiguous
    assert d[2].seq - d[1].seq == 2  # the r2 join in between took a number of the counter
    snapshot = await b.snapshot("r1")
    assert snapshot.seqs == {"a": d[4].seq, "b": snapshot.seqs["b"]}
    assert sorted(m.peer_id for m in snapshot.members) == ["p3", "pb"]
    a.leave("r1", "p3")
    await a.flush()
    assert "a" not in (await b.snapshot("r1")).seqs  # no member of a left there
    assert rec_b.changed == []  # no notice to read the room per change


async def test_a_direct_send_to_a_known_node_needs_no_look_up_and_keeps_order(
    node: Nodes,
) -> None:
    a, _ = await node("a")
    b, rec_b = await node("b")
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()
    for i in range(20):
        if i % 2:
            a.broadcast("r1", str(i).encode())
        else:
            a.send("pb", str(i).encode(), "b")
    await a.flush()
    await eventually(lambda: _true(len(rec_b.frames) == 20), 5)
    assert rec_b.frames == [str(i).encode() for i in range(20)]
    assert all(peer == "pb" for peer, _ in rec_b.peers)
    assert a.looked_up == 0  # plain PUBLISHes on b's channel
    a.send("pb", b"unknown node")
    await a.flush()
    await eventually(lambda: _true(len(rec_b.peers) == 11), 5)
    assert a.looked_up == 1


async def test_counts_and_members_are_exact_on_every_node(node: Nodes) -> None:
    a, _ = await node("a")
    b, rec_b = await node("b")
    c, _ = await node("c")
    a.join("r1", "p1", "ann", "host")
    a.join("r1", "p2", "al", "viewer")
    b.join("r1", "p3", "bob", "viewer")
    b.join("r1", "p3", "bob", "viewer")  # a repeated join counts once
    c.join("r1", "p4", "cy", "viewer")
    c.join("r2", "p4", "cy", "viewer")
    c.leave("r1", "nobody")  # leaving what one never joined changes nothing
    for bus in (a, b, c):
        await bus.flush()
    assert [await bus.count("r1") for bus in (a, b, c)] == [4, 4, 4]
    assert await a.count("r2") == 1
    assert await a.count("never") == 0
    members = sorted(await b.members("r1"), key=lambda m: m.peer_id)
    assert members == [
        Member("r1", "p1", "a", "ann", "host"),
        Member("r1", "p2", "a", "al", "viewer"),
        Member("r1", "p3", "b", "bob", "viewer"),
        Member("r1", "p4", "c", "cy", "viewer"),
    ]
    a.leave("r1", "p2")
    c.leave("r1", "p4")
    await a.flush()
    await c.flush()
    assert [await bus.count("r1") for bus in (a, b, c)] == [2, 2, 2]
    assert await c.count("r2") == 1
    # other nodes hear each change (to push viewer-count)
    await eventually(lambda: _true(any(not d.joined for d in rec_b.deltas)), 5)


async def test_a_dead_node_leaves_the_counts_and_one_survivor_reaps_it(node: Nodes) -> None:
    # the default timings: the promise is "within 15 s of kill -9"
    defaults = {"heartbeat": 1.0, "node_ttl": 5.0, "reap_interval": 1.0}
    a, rec_a = await node("a", **defaults)
    b, _ = await node("b", **defaults)
    c, rec_c = await node("c", **defaults)
    a.join("r1", "pa", "ann", "viewer")
    b.join("r1", "pb1", "bob", "viewer")
    b.join("r1", "pb2", "bea", "host")
    b.join("r2", "pb1", "bob", "viewer")
    c.join("r1", "pc", "cy", "viewer")
    for bus in (a, b, c):
        await bus.flush()
    assert await a.count("r1") == 4
    await b.stop()  # no goodbye: as kill -9

    async def counted_out() -> bool:
        return await a.count("r1") == 2 and await c.count("r1") == 2 and await a.count("r2") == 0

    await eventually(counted_out, 15)

    async def reaped() -> bool:
        return bool(rec_a.lost or rec_c.lost)

    await eventually(reaped, 15)
    await asyncio.sleep(0.5)
    assert not (rec_a.lost and rec_c.lost)  # exactly one survivor announces
    lost = sorted(rec_a.lost + rec_c.lost, key=lambda m: (m.room_id, m.peer_id))
    assert lost == [
        Member("r1", "pb1", "b", "bob", "viewer"),
        Member("r1", "pb2", "b", "bea", "host"),
        Member("r2", "pb1", "b", "bob", "viewer"),
    ]
    assert sorted(m.peer_id for m in await c.members("r1")) == ["pa", "pc"]
    a.send("pb1", b"gone")  # the dead node's peers are unreachable, quietly
    await a.flush()


async def test_redis_lost_and_back_rebuilds_presence(
    node: Nodes, redis_server: RedisEngine
) -> None:
    a, _ = await node("a")
    b, rec_b = await node("b")
    a.join("r1", "pa1", "ann", "viewer")
    a.join("r1", "pa2", "al", "viewer")
    b.join("r1", "pb", "bob", "viewer")
    await a.flush()
    await b.flush()
    assert await a.count("r1") == 3

    redis_server.kill()

    async def unhealthy() -> bool:
        return not a.healthy and not b.healthy

    await eventually(unhealthy, 10)
    # local serving goes on: membership changes while Redis is away are kept
    a.leave("r1", "pa2")
    a.join("r1", "pa3", "amy", "viewer")
    a.broadcast("r1", b"while down")  # cannot reach b; dropped, no error
    assert await a.count("r1") == 2  # this node's own count meanwhile
    assert a.dropped == 1

    redis_server.start()  # empty: no persistence

    async def healthy() -> bool:
        return a.healthy and b.healthy

    await eventually(healthy, 10)
    assert await a.count("r1") == 3
    assert await b.count("r1") == 3
    assert sorted(m.peer_id for m in await b.members("r1")) == ["pa1", "pa3", "pb"]
    a.broadcast("r1", b"after")
    await a.flush()
    await eventually(lambda: _true(bool(rec_b.rooms)), 5)
    assert rec_b.rooms == [("r1", b"after", None)]


async def test_a_node_presumed_dead_writes_its_presence_back(
    node: Nodes, redis_server: RedisEngine, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as aioredis

    a, _ = await node("a")
    b, _ = await node("b")
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        # b's heartbeat key vanishes (a long pause would do the same): a reaps b
        await client.delete(f"{b.prefix}alive:b")
    finally:
        await client.aclose()

    async def back() -> bool:
        return await a.count("r1") == 1 and [m.peer_id for m in await a.members("r1")] == ["pb"]

    # reaped by a first (then announced again) or back before a reaped it: either way
    await eventually(lambda: _true("node b was" in caplog.text), 5)
    await eventually(back, 5)


async def test_a_node_reaped_while_away_rebuilds_and_announces_its_members_again(
    node: Nodes, redis_server: RedisEngine
) -> None:
    import redis.asyncio as aioredis

    from livehub.adapters.redis import scripts

    # a slow heartbeat: the test reaps b, as a survivor would, before b's next beat
    b, rec_b = await node("b", heartbeat=0.5, node_ttl=5.0, reap_interval=60.0)
    a, _ = await node("a", reap_interval=60.0)
    b.join("r1", "pb", "bob", "host")
    b.join("r2", "pb", "bob", "host")
    await b.flush()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        # b alive: the reaping script checks the heartbeat itself and leaves it alone
        assert await client.eval(scripts.REAP_DEAD, 0, b.prefix, "b") is None
        await client.delete(f"{b.prefix}alive:b")
        reaped = await client.eval(scripts.REAP_DEAD, 0, b.prefix, "b")
        assert sorted(reaped[1::4]) == [b"pb", b"pb"]
        # reaped once: a second survivor finds nothing to reap
        assert await client.eval(scripts.REAP_DEAD, 0, b.prefix, "b") is None
        assert await a.count("r1") == 0
    finally:
        await client.aclose()

    async def back() -> bool:
        return await a.count("r1") == 1 and await a.count("r2") == 1

    await eventually(back, 5)
    assert sorted((m.room_id, m.peer_id) for m in rec_b.returned) == [("r1", "pb"), ("r2", "pb")]


async def _presence_in_redis(url: str, prefix: str, room: str, node_id: str) -> set[str]:
    """The peers Redis lists in ``room`` on node ``node_id``."""
    import orjson
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        raw = await client.hgetall(f"{prefix}room:{room}:members")
    finally:
        await client.aclose()
    return {str(peer) for peer, info in raw.items() if orjson.loads(info)["node"] == node_id}


def _noticed(recorder: Recorder, room_id: str, before: int) -> Callable[[], Awaitable[bool]]:
    """A check that ``recorder`` got another presence notice for the room."""

    async def noticed() -> bool:
        return recorder.changed.count(room_id) > before

    return noticed


async def test_a_rebuild_undoes_no_join_or_leave_written_meanwhile(
    node: Nodes, redis_server: RedisEngine
) -> None:
    """A node presumed dead rebuilds its presence from its mirror while its members come and
    go. Made beside the writer, the rebuild undid for good every join and leave the writer wrote
    between the mirror's snapshot and the rebuild's MULTI: a leave came back (a ghost on every
    node), a join was erased (a member nobody else could reach). 1,100 members: redis-py packs
    a MULTI of 1,000 commands or more in a worker thread, which leaves the loop to the writer
    meanwhile (this failed 4 of 4 runs before the writer made the rebuild)."""
    import redis.asyncio as aioredis

    b, _ = await node("b", heartbeat=0.05, node_ttl=5.0, reap_interval=60.0)
    a, rec_a = await node("a", reap_interval=60.0)
    a.join("r1", "pa", "ann", "viewer")
    await a.flush()
    joined = 0
    for _ in range(1100):
        b.join("r1", f"p{joined}", "x", "viewer")
        joined += 1
    await b.flush()
    stop = asyncio.Event()

    async def churn() -> None:  # members come and go, one at a time, as on a busy node
        nonlocal joined
        while not stop.is_set():
            b.leave("r1", next(iter(b._local["r1"])))
            b.join("r1", f"p{joined}", "x", "viewer")
            joined += 1
            await b.flush()

    churning = asyncio.create_task(churn())
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        for _ in range(10):
            await client.delete(f"{b.prefix}alive:b")  # as a pause longer than node_ttl would
            await eventually(_noticed(rec_a, "r1", rec_a.changed.count("r1")), 5)
    finally:
        stop.set()
        await churning
        await client.aclose()
    await b.flush()
    assert b.healthy and b.sessions == 1
    mirror = set(b._local["r1"])
    stored = await _presence_in_redis(redis_server.url, b.prefix, "r1", "b")
    assert (sorted(stored - mirror), sorted(mirror - stored)) == ([], [])
    assert {m.peer_id for m in await a.members("r1") if m.node_id == "b"} == mirror
    assert await a.count("r1") == 1 + len(mirror)


async def test_a_node_reaped_while_its_session_was_down_announces_its_members_again(
    node: Nodes, redis_server: RedisEngine
) -> None:
    """b loses Redis (here its pub/sub connection is killed, as a network cut would) for
    longer than node_ttl: a reaps it and announces b's host gone. b's next session writes its
    presence back and announces its members again (before, only a heartbeat that found the
    node reaped did: a session that started after the reap stayed silent, and the peer-left
    stood on every other node)."""
    import redis.asyncio as aioredis

    a, rec_a = await node("a", reap_interval=0.2, retry_interval=0.2)
    b, rec_b = await node("b", heartbeat=0.2, node_ttl=1.0, retry_interval=2.5)
    a.join("r1", "pa", "ann", "viewer")
    b.join("r1", "pb", "bob", "host")
    await a.flush()
    await b.flush()
    assert await a.count("r1") == 2
    sessions = b.sessions
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.client_kill_filter(_type="pubsub")
    finally:
        await client.aclose()
    await eventually(lambda: _true([m.peer_id for m in rec_a.lost] == ["pb"]), 10)
    await eventually(lambda: _true(b.sessions > sessions and b.healthy), 10)
    await eventually(lambda: _true([m.peer_id for m in rec_b.returned] == ["pb"]), 5)

    async def back() -> bool:
        return await a.count("r1") == 2

    await eventually(back, 5)


async def test_a_heartbeat_during_close_leaves_the_closed_node_gone(
    redis_server: RedisEngine, redis_prefix: str
) -> None:
    """close() removes the node's presence, then stops its session; a heartbeat in between
    found the registration gone, took the node for reaped, and wrote its members back (and
    announced them) for node_ttl. A 3 ms heartbeat makes the window likely (before the fix,
    2 of 3 runs of 20 closes put a node's 5,000 members back)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_server.url)
    wrong = []
    try:
        for n in range(20):
            bus = RedisBus(
                redis_server.url,
                node_id=f"b{n}",
                prefix=redis_prefix,
                heartbeat=0.003,
                node_ttl=5.0,
                reap_interval=60.0,
                retry_interval=0.2,
            )
            recorder = Recorder()
            bus.set_handler(recorder)
            await bus.start()
            for m in range(5000):
                bus.join("r1", f"p{n}-{m}", "x", "host")
            await bus.flush()
            await asyncio.sleep(0.01)
            await bus.close()
            left = await _presence_in_redis(redis_server.url, redis_prefix, "r1", f"b{n}")
            alive = await client.exists(f"{redis_prefix}alive:b{n}")
            if left or alive or recorder.returned:
                wrong.append((n, len(left), alive, len(recorder.returned)))
    finally:
        await client.aclose()
    assert wrong == []  # (node, members left in Redis, alive, announced again)


async def test_a_foreign_message_on_a_livehub_channel_is_ignored(
    node: Nodes, redis_server: RedisEngine
) -> None:
    import redis.asyncio as aioredis

    a, _ = await node("a")
    b, rec_b = await node("b")
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.publish(f"{b.prefix}room:r1", b"not json\nframe")
        await client.publish(f"{b.prefix}room:r1", b"[1]\nframe")
    finally:
        await client.aclose()
    a.broadcast("r1", b"real")
    await a.flush()
    await eventually(lambda: _true(bool(rec_b.rooms)), 5)
    assert rec_b.rooms == [("r1", b"real", None)]
    assert b.healthy and b.sessions == 1


async def test_close_leaves_the_cluster_at_once(node: Nodes) -> None:
    a, rec_a = await node("a")
    b, _ = await node("b")
    a.join("r1", "pa", "ann", "viewer")
    b.join("r1", "pb", "bob", "viewer")
    b.join("r1", "pb2", "bea", "viewer")  # queued, written by close
    await b.flush()
    rec_a.changed.clear()
    b.join("r1", "pb3", "cy", "viewer")
    await b.close()
    assert await a.count("r1") == 1
    assert [m.peer_id for m in await a.members("r1")] == ["pa"]
    await eventually(lambda: _true("r1" in rec_a.changed), 5)


async def test_redis_down_at_start_then_up(redis_server: RedisEngine, redis_prefix: str) -> None:
    redis_server.stop()
    bus = RedisBus(redis_server.url, node_id="a", prefix=redis_prefix, **FAST)
    try:
        await bus.start(wait=0.5)
        assert not bus.healthy
        bus.join("r1", "p1", "ann", "viewer")
        assert await bus.count("r1") == 1
        redis_server.start()
        await eventually(lambda: _true(bus.healthy), 10)
        other = RedisBus(redis_server.url, node_id="b", prefix=redis_prefix, **FAST)
        await other.start()
        try:
            assert await other.count("r1") == 1
        finally:
            await other.close()
    finally:
        await bus.close()


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:{port}/0?password={secret}", "unix://{dir}/nothing.sock?password={secret}"],
)
async def test_a_password_in_the_url_s_query_is_not_logged(
    redis_server: RedisEngine, redis_prefix: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``unix://`` URL can only carry its password in the query (redis-py reads it there
    for ``redis://`` too): the bus's warnings that Redis is unreachable do not show it."""
    secret = "Redis-query-password-0123"
    redis_server.stop()
    bus = RedisBus(
        url.format(port=redis_server.port, dir=redis_server.dir, secret=secret),
        node_id="a",
        prefix=redis_prefix,
        **FAST,
    )
    try:
        with caplog.at_level(logging.DEBUG):
            await bus.start(wait=0.3)
            assert not bus.healthy
        assert "unreachable" in caplog.text
        assert secret not in caplog.text
    finally:
        await bus.close()


@pytest.fixture(params=["local", "redis"])
async def one_bus(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[Bus]:
    """Each adapter; the in-process one needs no Redis."""
    bus: Bus
    if request.param == "local":
        bus = LocalBus("a")
    else:
        server: RedisEngine = request.getfixturevalue("redis_server")
        bus = RedisBus(server.url, node_id="a", prefix=redis_prefix, **FAST)
    await bus.start()
    yield bus
    await bus.close()


async def test_every_bus_counts_one_nodes_presence(one_bus: Bus) -> None:
    """The behaviour both adapters share, on a single node."""
    one_bus.join("r1", "p1", "ann", "host")
    one_bus.join("r1", "p2", "bob", "viewer")
    one_bus.join("r1", "p2", "bob", "viewer")
    one_bus.join("r2", "p2", "bob", "viewer")
    one_bus.leave("r2", "nobody")
    # no flush: a node reads its own writes
    assert await one_bus.count("r1") == 2
    assert sorted(await one_bus.members("r1"), key=lambda m: m.peer_id) == [
        Member("r1", "p1", one_bus.node_id, "ann", "host"),
        Member("r1", "p2", one_bus.node_id, "bob", "viewer"),
    ]
    one_bus.leave("r1", "p1")
    one_bus.leave("r1", "p2")
    assert await one_bus.count("r1") == 0
    assert await one_bus.members("r1") == []
    assert await one_bus.count("r2") == 1
    assert one_bus.healthy


async def test_leader_lock_moves_when_the_holder_dies(
    redis_server: RedisEngine, redis_prefix: str
) -> None:
    changes: list[tuple[str, bool]] = []

    def record(name: str) -> Callable[[bool], None]:
        return lambda held: changes.append((name, held))

    locks = [
        LeaderLock(
            redis_server.url,
            "reconcile",
            name,
            prefix=redis_prefix,
            ttl=1.0,
            on_change=record(name),
        )
        for name in ("a", "b")
    ]
    first, second = locks
    await first.start()
    await second.start()
    try:
        assert first.is_leader and not second.is_leader
        await asyncio.sleep(1.5)  # renewals keep it where it is
        assert first.is_leader and not second.is_leader
        await first.abandon()  # dies holding the lock
        abandoned = time.monotonic()
        await eventually(lambda: _true(second.is_leader), 5)
        assert time.monotonic() - abandoned < 2.5  # ttl plus one renewal interval, with slack
        assert changes == [("a", True), ("a", False), ("b", True)]
        # a clean close hands it over at once
        third = LeaderLock(redis_server.url, "reconcile", "c", prefix=redis_prefix, ttl=1.0)
        await second.close()
        await third.start()
        try:
            assert third.is_leader
        finally:
            await third.close()
    finally:
        await second.close()


async def test_a_leader_job_runs_on_one_node_at_a_time_and_moves(
    redis_server: RedisEngine, redis_prefix: str
) -> None:
    runs: list[str] = []

    def job_of(name: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            runs.append(name)
            if len(runs) == 2:
                raise RuntimeError("a failing run does not stop the loop")

        return job

    locks = {
        name: LeaderLock(redis_server.url, "sweep", name, prefix=redis_prefix, ttl=0.6)
        for name in ("a", "b")
    }
    for lock in locks.values():
        await lock.start()
    tasks = [asyncio.create_task(lead(lock, 0.05, job_of(n))) for n, lock in locks.items()]
    try:
        await eventually(lambda: _true(len(runs) >= 5), 5)
        assert set(runs) == {"a"}
        await locks["a"].abandon()
        tasks[0].cancel()
        before = len(runs)
        await eventually(lambda: _true("b" in runs[before:]), 5)
        assert set(runs[before:]) <= {"b"}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await locks["b"].close()


async def test_leader_lock_holder_steps_down_without_redis(
    redis_server: RedisEngine, redis_prefix: str
) -> None:
    lock = LeaderLock(redis_server.url, "sweep", "a", prefix=redis_prefix, ttl=1.0)
    await lock.start()
    try:
        assert lock.is_leader
        redis_server.kill()
        await eventually(lambda: _true(not lock.is_leader), 3)
        redis_server.start()
        await eventually(lambda: _true(lock.is_leader), 5)
    finally:
        await lock.close()


async def test_a_take_that_ran_after_its_timeout_is_the_node_s_lock_at_the_next_attempt(
    redis_server: RedisEngine, redis_prefix: str
) -> None:
    """Redis stalls while a node tries to take a free lock: the take runs when Redis resumes,
    after the node gave it up as timed out. The lock is that node's in Redis, so the node takes
    it at its next attempt; it does not lie unused until it expires."""
    ttl = 3.0  # attempts every ttl / 3, each timing out after ttl / 3
    lock = LeaderLock(redis_server.url, "sweep", "a", prefix=redis_prefix, ttl=ttl)
    other = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        await other.set(lock.key, "b", px=1200)  # another node's, which it will not renew
        await lock.start()  # connected, and b holds it
        assert not lock.is_leader
        redis_server.pause()  # the attempt at 1 s waits, then times out at 2 s
        try:
            await asyncio.sleep(2.3)
        finally:
            redis_server.resume()  # b's lock has expired: the late take gives it to a
        assert await other.get(lock.key) == b"a"
        deadline = time.monotonic() + 3 * ttl
        while not _leads(lock):  # a's key never lapses before a leads
            assert await other.exists(lock.key), "the lock lay unused until it expired"
            assert time.monotonic() < deadline, "a never took the lock"
            await asyncio.sleep(0.02)
        assert await other.get(lock.key) == b"a"
    finally:
        redis_server.resume()
        await lock.close()
        await other.aclose()


def _leads(lock: LeaderLock) -> bool:
    return lock.is_leader


async def _true(value: bool) -> bool:
    return value


async def test_a_burst_of_reads_beyond_the_pool_waits_instead_of_failing(node: Nodes) -> None:
    """A join storm over hundreds of rooms reads their members all at once: more calls than
    the client has connections must queue for one, not end the session as if Redis were gone
    (redis-py's default pool raised MaxConnectionsError past 100)."""
    a, _ = await node("a")
    b, _ = await node("b")
    rooms = [f"room-{n}" for n in range(300)]
    for room_id in rooms:
        a.join(room_id, f"p-{room_id}", "", "viewer")
    await a.flush()
    counts = await asyncio.gather(*(b.count(room_id) for room_id in rooms))
    members = await asyncio.gather(*(b.members(room_id) for room_id in rooms))
    assert counts == [1] * len(rooms)
    assert [[m.peer_id for m in listed] for listed in members] == [[f"p-{r}"] for r in rooms]
    assert a.healthy and b.healthy


async def test_producers_wait_while_the_queue_is_full_and_nothing_is_lost(node: Nodes) -> None:
    """Past ``max_queued`` operations waiting for the writer, :meth:`RedisBus.writable` makes
    producers wait until it has written them (in pipelines of at most CHUNK); order is kept."""
    a, _ = await node("a", max_queued=50)
    b, rec_b = await node("b")
    b.join("r1", "pb", "bob", "viewer")
    a.join("r1", "pa", "ann", "viewer")
    await a.flush()
    await b.flush()
    frames = [str(n).encode() for n in range(2 * CHUNK + 10)]
    for frame in frames:
        a.broadcast("r1", frame)
    assert a.backed_up()
    waiting = asyncio.create_task(a.writable())
    await asyncio.sleep(0)
    assert not waiting.done()  # over the bound: the producer waits for the writer
    async with asyncio.timeout(10):
        await waiting
    assert not a.backed_up()
    await a.flush()
    await eventually(lambda: _true(len(rec_b.rooms) == len(frames)), 10)
    assert [frame for _, frame, _ in rec_b.rooms] == frames


async def test_with_a_cluster_key_unsigned_and_forged_messages_are_dropped(
    node: Nodes, redis_server: RedisEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """``LIVEHUB_CLUSTER_KEY``: nodes with the key sign every message and drop what is not
    signed with it: a message published straight to a livehub channel (unsigned, or signed
    with another key) reaches no handler; the nodes with the key still work together."""
    import hashlib

    import orjson
    import redis.asyncio as aioredis

    key = b"k" * 32
    a, _ = await node("a", key=key)
    b, rec_b = await node("b", key=key)
    a.join("r1", "pa", "ann", "host")
    b.join("r1", "pb", "bob", "viewer")
    await a.flush()
    await b.flush()
    assert await a.count("r1") == await b.count("r1") == 2

    def message(kind: str, **header: Any) -> bytes:
        return orjson.dumps({"k": kind, "n": "intruder", **header}) + b"\n" + b"forged"

    forged_room = message("b", r="r1", x=None)
    forged_peer = message("d", p="pb")
    wrong_key = hashlib.blake2b(forged_room, digest_size=32, key=b"w" * 32).hexdigest().encode()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.publish(f"{b.prefix}room:r1", forged_room)
        await client.publish(f"{b.prefix}node:b", forged_peer)
        await client.publish(f"{b.prefix}room:r1", wrong_key + b"\n" + forged_room)
    finally:
        await client.aclose()
    a.broadcast("r1", b"real")
    a.send("pb", b"direct")
    await a.flush()
    await eventually(lambda: _true(bool(rec_b.rooms) and bool(rec_b.peers)), 5)
    assert rec_b.rooms == [("r1", b"real", None)]
    assert rec_b.peers == [("pb", b"direct")]
    assert b.forged == 3
    assert "not signed with LIVEHUB_CLUSTER_KEY" in caplog.text
    assert "k" * 32 not in caplog.text  # the key is never logged
    # presence works between the nodes with the key
    b.leave("r1", "pb")
    await b.flush()
    assert await a.count("r1") == 1


async def test_a_signed_message_altered_on_the_way_is_dropped(
    node: Nodes, redis_server: RedisEngine
) -> None:
    """The tag covers the whole message: a real node's broadcast, taken off Redis with its tag
    and published again with one byte of the frame changed, is dropped as forged; the
    original, published again as it was, is accepted (the tag does not stop replays: the
    documented limit of ``LIVEHUB_CLUSTER_KEY``)."""
    import redis.asyncio as aioredis

    key = b"k" * 40
    a, _ = await node("a", key=key)
    b, rec_b = await node("b", key=key)
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(f"{b.prefix}room:r1")
        a.broadcast("r1", b"genuine frame")
        await a.flush()
        await eventually(lambda: _true(bool(rec_b.rooms)), 5)
        original: bytes | None = None
        async with asyncio.timeout(5):
            while original is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    original = message["data"]
        assert original.endswith(b"genuine frame")
        altered = original.replace(b"genuine frame", b"genuine frami")
        await client.publish(f"{b.prefix}room:r1", altered)
        await client.publish(f"{b.prefix}room:r1", original)
        await eventually(lambda: _true(len(rec_b.rooms) == 2), 5)
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert b.forged == 1
    assert [frame for _, frame, _ in rec_b.rooms] == [b"genuine frame", b"genuine frame"]


async def test_a_run_of_messages_on_one_channel_is_one_publish_in_order(node: Nodes) -> None:
    """The writer batches consecutive publishes on one channel: 100 direct sends, a broadcast,
    100 more are three PUBLISHes (one per run, signed once each), and the other node gets all
    201 frames, binary ones and ones holding newlines included, in send order."""
    key = b"c" * 32
    a, _ = await node("a", key=key)
    b, rec_b = await node("b", key=key)
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()
    await a.flush()
    published, batched = a.published, a.batched
    frames = [b'%d\n{"x":1}\n\x00\xff' % i for i in range(201)]
    for i, frame in enumerate(frames):
        if i == 100:
            a.broadcast("r1", frame)
        else:
            a.send("pb", frame, "b")
    await a.flush()
    await eventually(lambda: _true(len(rec_b.frames) == len(frames)), 5)
    assert rec_b.frames == frames
    assert rec_b.rooms == [("r1", frames[100], None)]
    assert (a.published - published, a.batched - batched) == (3, 200)
    assert b.forged == 0


async def test_a_batch_holds_at_most_batch_bytes_of_messages(node: Nodes) -> None:
    """Messages of 30 KB go two to a PUBLISH (``BATCH_BYTES`` is 64 KiB); one larger than the
    limit goes alone; the order holds across the batches."""
    a, _ = await node("a")
    b, rec_b = await node("b")
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()
    await a.flush()
    published = a.published
    frames = [bytes([i]) * 30_000 for i in range(5)] + [b"L" * (BATCH_BYTES + 1), b"tail"]
    for frame in frames:
        a.send("pb", frame, "b")
    await a.flush()
    await eventually(lambda: _true(len(rec_b.frames) == len(frames)), 5)
    assert rec_b.frames == frames
    # [0, 1] [2, 3] [4] [large] [tail]
    assert a.published - published == 5


async def test_a_malformed_batch_is_dropped_and_a_bad_message_in_one_skipped(
    node: Nodes, redis_server: RedisEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Batches signed with the key but built wrong (as a bug would): lengths that do not add
    up to the body drop the whole batch; a message in a batch whose header is not JSON is
    skipped and the rest delivered. A batch altered on the way is dropped as forged. The node
    goes on working."""
    import orjson
    import redis.asyncio as aioredis

    key = b"m" * 32
    a, _ = await node("a", key=key)
    b, rec_b = await node("b", key=key)
    b.join("r1", "pb", "bob", "viewer")
    await b.flush()

    def direct(frame: bytes) -> bytes:
        return orjson.dumps({"k": "d", "n": "a", "p": "pb"}) + b"\n" + frame

    def batch(lengths: list[Any], body: bytes) -> bytes:
        return orjson.dumps({"k": "B", "n": "a", "l": lengths}) + b"\n" + body

    one, two, bad = direct(b"one"), direct(b"two"), b"{not json\nframe"
    channel = f"{b.prefix}node:b"
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        for lengths in ([len(one), len(two) + 1], [len(one)], [len(one), -1], "x", [1.5]):
            await client.publish(channel, a._signed(batch(lengths, one + two)))  # type: ignore[arg-type]
        good = a._signed(batch([len(one), len(bad), len(two)], one + bad + two))
        await client.publish(channel, good.replace(b"one", b"ONE"))  # altered: forged
        await client.publish(channel, good)
    finally:
        await client.aclose()
    await eventually(lambda: _true(len(rec_b.peers) == 2), 5)
    assert rec_b.peers == [("pb", b"one"), ("pb", b"two")]
    assert b.forged == 1
    assert caplog.text.count("ignored a malformed message on a livehub channel") == 5
    assert "ignored a malformed message in a batch" in caplog.text
    a.send("pb", b"after", "b")
    await a.flush()
    await eventually(lambda: _true(len(rec_b.peers) == 3), 5)


def test_the_bus_packs_its_commands_as_redis_py_does() -> None:
    """The writer packs its batches itself (redis-py's packer was a tenth of a node's CPU):
    the bytes must be redis-py's own, for every kind of argument the bus sends (text with
    non-ASCII, bytes holding CR LF and a 70 KB frame, integers), and anything else is refused
    rather than sent wrong."""
    from redis.asyncio.connection import Connection

    from livehub.adapters.redis.bus import _packed

    frame = b"\x81\x7e" + bytes(range(256)) * 280
    commands: list[tuple[str | bytes | int, ...]] = [
        ("PUBLISH", "livehub:room:r1", b"0123abcd\n" + b'{"k":"b"}\n\r\n' + frame),
        ("PUBLISH", "livehub:node:n1", b""),
        ("EVALSHA", "f" * 40, 0, "livehub:", "r\u00e9union", '{"name":"\u00e9"}', "7"),
        ("EVALSHA", "a" * 40, 0, -1, 2**40),
    ]
    expected = b"".join(Connection().pack_commands(commands))
    assert _packed(commands) == expected
    assert _packed([commands[0]]) + _packed(commands[1:]) == expected
    for wrong in (1.5, True, None):
        with pytest.raises(TypeError):
            _packed([("PUBLISH", "c", wrong)])  # type: ignore[list-item]


async def test_the_cluster_key_is_rotated_node_by_node(node: Nodes) -> None:
    """``LIVEHUB_CLUSTER_KEY=new,old``: a node signs with its first key and accepts a message
    signed with any of its keys, so nodes are restarted one by one (docs/security.md): first
    every node gets ``old,new`` (still signs with the old key, already accepts the new one),
    then ``new,old`` (signs with the new one), then ``new``. At each step the nodes of the
    step before and those of the step after exchange broadcasts, direct sends and presence
    both ways. A node whose key is unrelated is still dropped as forged, both ways."""
    old, new, unrelated = b"o" * 32, b"n" * 40, b"u" * 32

    async def exchange(
        room: str, x: tuple[RedisBus, Recorder], y: tuple[RedisBus, Recorder]
    ) -> None:
        (bx, _), (by, _) = x, y
        bx.join(room, f"p{bx.node_id}", "x", "host")
        by.join(room, f"p{by.node_id}", "y", "viewer")
        await bx.flush()
        await by.flush()
        assert await bx.count(room) == await by.count(room) == 2
        for sender, receiver in ((bx, by), (by, bx)):
            sender.broadcast(room, b"from " + sender.node_id.encode())
            sender.send(f"p{receiver.node_id}", b"to " + receiver.node_id.encode())
            await sender.flush()
        for (bus, rec), other in ((x, by), (y, bx)):

            async def arrived(
                bus: RedisBus = bus, rec: Recorder = rec, other: RedisBus = other
            ) -> bool:
                return (room, b"from " + other.node_id.encode(), None) in rec.rooms and (
                    f"p{bus.node_id}",
                    b"to " + bus.node_id.encode(),
                ) in rec.peers

            await eventually(arrived, 5)

    before = await node("before", key=old)
    adding = await node("adding", key=old, old_keys=(new,))  # step 1: old,new
    await exchange("r1", before, adding)
    switched = await node("switched", key=new, old_keys=(old,))  # step 2: new,old
    await exchange("r2", adding, switched)
    after = await node("after", key=new)  # step 3: new
    await exchange("r3", switched, after)
    assert [bus.forged for bus, _ in (before, adding, switched, after)] == [0, 0, 0, 0]

    # step 1 skipped is what breaks: a node with only the old key drops the new key's messages;
    # and a node with an unrelated key drops every other node's, and they drop its
    intruder, rec_intruder = await node("intruder", key=unrelated)
    for bus, _ in (before, switched, adding):
        bus.join("r4", f"p{bus.node_id}4", "z", "viewer")
        await bus.flush()
    intruder.join("r4", "pi", "intruder", "viewer")
    await intruder.flush()
    for bus, frame in (
        (switched[0], b"signed with the new key"),
        (before[0], b"signed with the old key"),
        (intruder, b"signed with an unrelated key"),
        (adding[0], b"marker"),  # Redis delivers each subscriber its messages in order
    ):
        bus.broadcast("r4", frame)
        await bus.flush()

    def r4(rec: Recorder) -> list[bytes]:
        return [frame for room, frame, _ in rec.rooms if room == "r4"]

    await eventually(lambda: _true(b"marker" in r4(before[1]) and b"marker" in r4(switched[1])), 5)
    assert r4(before[1]) == [b"marker"]
    assert r4(switched[1]) == [b"signed with the old key", b"marker"]
    assert before[0].forged >= 2 and switched[0].forged >= 1 and adding[0].forged >= 1
    await eventually(lambda: _true(intruder.forged >= 3), 5)
    assert rec_intruder.rooms == []
