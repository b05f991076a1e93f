"""The hub's behaviour suite, run against every engine: the embedded hub (one process) and the
cluster hub (nodes on the real throwaway Redis).

``nodes()`` gives the hub a peer connects to: always the same one in embedded mode (one
process), a new node of the cluster in cluster mode; so "a peer on one node, another on the
next" is the same test in both modes, and what one mode does and the other does not (exact
counts, order, the pacing of count pushes in big rooms, slow consumers) fails here.

The hubs' ``call_later`` timers (count pushes, big-room flushes) are cranked by hand and their
clock is the test's, so pacing is checked without waiting for wall time; their ``call_soon``
flushes and the Redis bus run on the real loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from livehub.adapters.redis.bus import RedisBus
from livehub.domain.cluster_hub import ClusterHub
from livehub.domain.delivery import BATCH_MIN_MEMBERS, CLOSE_TRY_AGAIN_LATER
from livehub.domain.hub import Hub
from livehub.domain.peer import Peer
from livehub.domain.room_hub import RoomHub
from tests.domain.fakes import FakeSink, Timer
from tests.helpers import eventually

FAST_BUS: dict[str, Any] = {
    "heartbeat": 0.2,
    "node_ttl": 2.0,
    "reap_interval": 0.2,
    "retry_interval": 0.2,
}
MAX_BUFFER = 64 * 1024


def _encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


def _call_soon(callback: Callable[[], None]) -> object:
    return asyncio.get_running_loop().call_soon(callback)


class Timers:
    """The hubs' ``call_later``, fired by the test; ``now`` is their clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pending: list[Timer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(delay, callback)
        self.pending.append(timer)
        return timer

    def clock(self) -> float:
        return self.now

    def fire(self, advance: float = 0.0) -> None:
        """Move the clock on by ``advance`` and run the timers pending now (not those they
        schedule: the next round)."""
        self.now += advance
        timers, self.pending = self.pending, []
        for timer in timers:
            if not timer.cancelled:
                timer.callback()


class Engine:
    def __init__(self, mode: str, timers: Timers) -> None:
        self.mode = mode
        self.timers = timers
        self.hubs: list[RoomHub] = []
        self.buses: list[RedisBus] = []

    async def settle(self) -> None:
        """Everything sent so far was handed to the other nodes (nothing in embedded mode)."""
        for bus in self.buses:
            await bus.flush()


Nodes = Callable[[], "asyncio.Future[RoomHub]"]


@pytest.fixture(params=["embedded", "cluster"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    mode: str = request.param
    engine = Engine(mode, Timers())
    started: list[ClusterHub] = []
    if mode == "embedded":
        hub = Hub(
            _encode,
            _call_soon,
            engine.timers.call_later,
            max_buffer=MAX_BUFFER,
            count_interval=0.2,
            clock=engine.timers.clock,
        )
        engine.hubs.append(hub)
        yield engine
        return
    redis = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("redis_prefix")
    engine.redis_url = redis.url  # type: ignore[attr-defined]
    engine.prefix = prefix  # type: ignore[attr-defined]
    engine.started = started  # type: ignore[attr-defined]
    yield engine
    for cluster_hub in started:
        await cluster_hub.close()


async def node(engine: Engine) -> RoomHub:
    """The hub the next peer connects to (see the module docstring)."""
    if engine.mode == "embedded":
        return engine.hubs[0]
    bus = RedisBus(
        engine.redis_url,  # type: ignore[attr-defined]
        node_id=f"n{len(engine.buses)}",
        prefix=engine.prefix,  # type: ignore[attr-defined]
        **FAST_BUS,
    )
    hub = ClusterHub(
        bus,
        _encode,
        _call_soon,
        engine.timers.call_later,
        max_buffer=MAX_BUFFER,
        count_interval=0.2,
        clock=engine.timers.clock,
        watch_interval=0.05,
    )
    await hub.start()
    engine.started.append(hub)  # type: ignore[attr-defined]
    engine.hubs.append(hub)
    engine.buses.append(bus)
    return hub


def connect(hub: RoomHub, sink: FakeSink | None = None) -> Peer:
    peer = Peer(sink or FakeSink())
    hub.connect(peer)
    return peer


def sink(peer: Peer) -> FakeSink:
    assert isinstance(peer.sink, FakeSink)
    return peer.sink


def counts(peer: Peer) -> list[int]:
    return [m["viewerCount"] for m in sink(peer).of_type("viewer-count")]


async def test_counts_are_exact_on_every_node_whatever_the_order(engine: Engine) -> None:
    a, b = await node(engine), await node(engine)
    on_a = [connect(a) for _ in range(3)]
    on_b = [connect(b) for _ in range(2)]
    for peer in on_a:
        a.join(peer, "r", "a", "viewer")
    for peer in on_b:
        b.join(peer, "r", "b", "viewer")
    b.join(on_b[0], "r", "b again", "host")  # a second join counts once
    await eventually(lambda: a.count("r") == b.count("r") == 5, within=5.0)
    hosts = [d["peerId"] for d in a.describe_hosts("r")]
    assert hosts == [on_b[0].id]
    assert sorted(d["peerId"] for d in b.describe_members("r")) == sorted(p.id for p in on_a + on_b)

    a.leave(on_a[0], "r")
    b.disconnect(on_b[1])
    assert a.leave(on_a[0], "r") is False  # twice: counted once
    await engine.settle()
    await eventually(lambda: a.count("r") == b.count("r") == 3, within=5.0)
    engine.timers.fire()
    # each remaining member was told the exact count, last
    for peer in (on_a[1], on_a[2], on_b[0]):
        await eventually(lambda peer=peer: counts(peer)[-1:] == [3], within=5.0)  # type: ignore[misc]


async def test_a_recipient_gets_broadcasts_and_direct_sends_in_send_order(engine: Engine) -> None:
    a, b = await node(engine), await node(engine)
    sender, recipient, other = connect(a), connect(b), connect(b)
    for peer, hub in ((sender, a), (recipient, b), (other, b)):
        hub.join(peer, "r", "", "viewer")
    await eventually(lambda: a.count("r") == 3, within=5.0)
    for n in range(60):
        if n % 3 == 0:
            assert a.send_to("r", recipient.id, {"type": "chat", "n": n}) is True
        else:
            a.broadcast("r", {"type": "chat", "n": n}, exclude=sender)
    await engine.settle()

    def chat(peer: Peer) -> list[int]:
        return [m["n"] for m in sink(peer).of_type("chat")]

    await eventually(lambda: len(chat(recipient)) == 60, within=5.0)
    assert chat(recipient) == list(range(60))
    await eventually(lambda: len(chat(other)) == 40, within=5.0)
    assert chat(other) == [n for n in range(60) if n % 3]
    assert chat(sender) == []  # the sender is skipped, on every node


async def test_count_pushes_in_a_big_room_are_paced_by_its_size_and_stay_exact(
    engine: Engine,
) -> None:
    """A big room's count is pushed at most once per ``members x COUNT_PER_MEMBER`` (here
    150 x 0.5 ms = 75 ms of the hub's clock), in every mode: the write storm of a join storm
    stays away, and the count it finally pushes is exact."""
    hub = await node(engine)
    timers = engine.timers
    members = [connect(hub) for _ in range(BATCH_MIN_MEMBERS + 50)]
    for peer in members:
        hub.join(peer, "big", "", "viewer")
    await engine.settle()
    timers.fire()
    watcher = members[0]
    await eventually(lambda: counts(watcher) == [150])

    late = connect(hub)
    hub.join(late, "big", "", "viewer")
    await engine.settle()
    timers.fire(0.05)  # 50 ms later: under 75 ms, not yet
    timers.fire(0.02)
    await asyncio.sleep(0)  # what was pushed is flushed on the next iterations
    await asyncio.sleep(0)
    assert counts(watcher) == [150]
    assert hub.count("big") == 151
    timers.fire(0.01)  # 80 ms: due
    await eventually(lambda: counts(watcher) == [150, 151])


async def test_a_small_rooms_count_is_pushed_every_interval(engine: Engine) -> None:
    hub = await node(engine)
    first, second = connect(hub), connect(hub)
    hub.join(first, "small", "", "viewer")
    engine.timers.fire()
    await eventually(lambda: counts(first) == [1])
    hub.join(second, "small", "", "viewer")
    engine.timers.fire()
    await eventually(lambda: counts(first) == [1, 2] and counts(second) == [2])


async def test_a_slow_consumer_is_cut_with_1013_and_never_delays_the_others(
    engine: Engine,
) -> None:
    a, b = await node(engine), await node(engine)
    slow = connect(b, FakeSink(backlog=MAX_BUFFER + 1))
    fast = [connect(b), connect(a)]
    sender = connect(a)
    b.join(slow, "r", "", "viewer")
    for peer in fast:
        (b if peer is fast[0] else a).join(peer, "r", "", "viewer")
    a.join(sender, "r", "", "host")
    await eventually(lambda: a.count("r") == b.count("r") == 4, within=5.0)
    for n in range(20):
        a.broadcast("r", {"type": "chat", "n": n}, exclude=sender)
    await engine.settle()
    for peer in fast:
        await eventually(
            lambda peer=peer: len(sink(peer).of_type("chat")) == 20,  # type: ignore[misc]
            within=5.0,
        )
    await eventually(lambda: sink(slow).aborted is not None, within=5.0)
    assert sink(slow).aborted == (CLOSE_TRY_AGAIN_LATER, "outbound queue full")
    had = len(sink(slow).frames)
    a.broadcast("r", {"type": "chat", "n": 20}, exclude=sender)
    await engine.settle()
    for peer in fast:
        await eventually(
            lambda peer=peer: len(sink(peer).of_type("chat")) == 21,  # type: ignore[misc]
            within=5.0,
        )
    assert len(sink(slow).frames) == had  # nothing more after the cut
