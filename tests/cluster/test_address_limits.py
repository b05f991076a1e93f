"""Per-address limits shared through Redis (livehub/adapters/redis/address_limits.py), against the
real throwaway Redis: nodes share one connection limit, a node that stops heartbeating stops
counting, a Redis that restarted empty gets every node's counts back, bans and create buckets
are seen by every node, and while Redis is away each node limits on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from livehub.adapters.redis.address_limits import RedisAddressLimits
from livehub.domain.addresses import SharedUnavailable
from livehub.tasks import cancel_and_wait
from tests.engines import RedisEngine

Start = Callable[..., Awaitable[RedisAddressLimits]]


@pytest.fixture
async def start(redis_server: RedisEngine, redis_prefix: str) -> AsyncIterator[Start]:
    started: list[RedisAddressLimits] = []

    async def start_one(node_id: str, **options: Any) -> RedisAddressLimits:
        settings: dict[str, Any] = {
            "limit": 3,
            "ban_seconds": 60.0,
            "ttl": 1.5,  # long enough that a stalled CI host does not expire a live node
            "heartbeat": 0.1,
            "retry_interval": 0.2,
            **options,
        }
        limits = RedisAddressLimits(
            redis_server.url, node_id=node_id, prefix=redis_prefix, **settings
        )
        await limits.start()
        started.append(limits)
        return limits

    yield start_one
    for limits in started:
        await limits.close()


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not reached within {within} s"
        await asyncio.sleep(0.05)


async def test_two_nodes_share_one_limit_per_address(start: Start) -> None:
    a, b = await start("a"), await start("b")
    assert await a.acquire("198.51.100.1")
    assert await a.acquire("198.51.100.1")
    assert await b.acquire("198.51.100.1")
    # the address holds 3 across the two nodes: refused on both
    assert not await a.acquire("198.51.100.1")
    assert not await b.acquire("198.51.100.1")
    assert await b.acquire("2001:db8::/64")  # another address has its own count
    # a connection closed on A frees a slot for B
    a.release("198.51.100.1")
    await until(lambda: b.acquire("198.51.100.1"))
    assert not await a.acquire("198.51.100.1")
    assert (a.local.counts, b.local.counts) == (
        {"198.51.100.1": 1},
        {"198.51.100.1": 2, "2001:db8::/64": 1},
    )


async def test_a_node_that_stops_heartbeating_stops_counting(start: Start) -> None:
    a, b = await start("a"), await start("b")
    for _ in range(3):
        assert await a.acquire("198.51.100.2")
    assert not await b.acquire("198.51.100.2")
    # A dies: its heartbeat stops and it never releases (as with kill -9)
    assert a._beat is not None
    await cancel_and_wait(a._beat)
    a._beat = None
    await until(lambda: b.acquire("198.51.100.2"), within=5)  # within A's TTL (1.5 s)
    assert await b.acquire("198.51.100.2")
    assert await b.acquire("198.51.100.2")
    assert not await b.acquire("198.51.100.2")


async def test_a_redis_that_restarted_empty_gets_the_counts_back(
    start: Start, redis_server: RedisEngine
) -> None:
    a, b = await start("a"), await start("b")
    for _ in range(2):
        assert await a.acquire("198.51.100.3")
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.flushall()  # as a Redis restarted without persistence
    finally:
        await client.aclose()

    async def refused_at_one() -> bool:
        # A's heartbeat writes its two back; then B's one more fills the limit
        if not await b.acquire("198.51.100.3"):
            return False
        if await b.acquire("198.51.100.3"):
            b.release("198.51.100.3")
            b.release("198.51.100.3")
            return False
        return True

    await until(refused_at_one)


async def test_kick_bans_and_create_buckets_are_shared(start: Start) -> None:
    a, b = await start("a", ban_seconds=0.5), await start("b", ban_seconds=0.5)
    a.ban("room-1", "198.51.100.4")
    assert await a.banned("room-1", "198.51.100.4")  # on the banning node at once
    await until(lambda: b.banned("room-1", "198.51.100.4"))
    assert not await b.banned("room-2", "198.51.100.4")
    assert not await b.banned("room-1", "198.51.100.5")

    async def ended() -> bool:
        return not await a.banned("room-1", "198.51.100.4") and not await b.banned(
            "room-1", "198.51.100.4"
        )

    await until(ended)

    # 2 creations a minute, whichever node they reach
    assert await a.take_create("198.51.100.6", 2) == 0
    assert await b.take_create("198.51.100.6", 2) == 0
    wait = await a.take_create("198.51.100.6", 2)
    assert 1 <= wait <= 30
    assert await b.take_create("198.51.100.6", 2) >= 1
    assert await b.take_create("198.51.100.7", 2) == 0


async def test_a_creation_given_back_is_there_again_on_every_node(start: Start) -> None:
    a, b = await start("a"), await start("b")
    assert await a.take_create("198.51.100.9", 2) == 0
    assert await b.take_create("198.51.100.9", 2) == 0
    assert await a.take_create("198.51.100.9", 2) >= 1  # spent
    await b.give_back_create("198.51.100.9", 2)  # its room was not written
    assert await a.take_create("198.51.100.9", 2) == 0
    assert await b.take_create("198.51.100.9", 2) >= 1
    # never more than the burst: a bucket that is full (or gone) stays as it is
    await a.give_back_create("198.51.100.10", 2)
    await a.give_back_create("198.51.100.10", 2)
    assert await a.take_create("198.51.100.10", 2) == 0
    assert await a.take_create("198.51.100.10", 2) == 0
    assert await a.take_create("198.51.100.10", 2) >= 1
    for _ in range(3):
        await a.give_back_create("198.51.100.10", 2)
    assert [await b.take_create("198.51.100.10", 2) == 0 for _ in range(3)] == [True, True, False]


async def test_without_redis_each_node_limits_on_its_own(
    start: Start, redis_server: RedisEngine
) -> None:
    a = await start("a", limit=2)
    assert await a.acquire("198.51.100.8")
    redis_server.kill()
    assert await a.acquire("198.51.100.8")  # its own count: 2
    assert not await a.acquire("198.51.100.8")
    a.ban("room-1", "198.51.100.8")
    assert await a.banned("room-1", "198.51.100.8")  # its own bans
    with pytest.raises(SharedUnavailable):
        await a.take_create("198.51.100.8", 2)  # the create policy falls back to its own
    with pytest.raises(SharedUnavailable):
        await a.give_back_create("198.51.100.8", 2)
    a.release("198.51.100.8")
    redis_server.start()

    b = await start("b", limit=2)

    async def counted_again() -> bool:
        # back: A's heartbeat wrote its count (1); B gets one slot, not two
        if not await b.acquire("198.51.100.8"):
            return False
        if await b.acquire("198.51.100.8"):
            b.release("198.51.100.8")
            b.release("198.51.100.8")
            return False
        return True

    await until(counted_again, within=10)


async def _calls(redis_server: RedisEngine, command: str) -> int:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def _mirrored(limits: RedisAddressLimits) -> bool:
    return limits.bans_mirrored


async def test_ban_checks_are_answered_from_every_node_s_mirror(
    start: Start, redis_server: RedisEngine
) -> None:
    """Bans are announced: every node mirrors them, and a join's check (a storm's thousands)
    costs no Redis command at all; a node started later reads the bans already there, with
    what is left of them; IPv6 address keys (colons) survive the key's round trip."""
    a, b = await start("a", ban_seconds=60), await start("b", ban_seconds=60)
    await until(lambda: _mirrored(a))
    await until(lambda: _mirrored(b))
    a.ban("room-1", "198.51.100.20")
    a.ban("room-1", "2001:db8:1:2::/64")
    await until(lambda: b.banned("room-1", "2001:db8:1:2::/64"))
    await until(lambda: b.banned("room-1", "198.51.100.20"))
    exists_before = await _calls(redis_server, "exists")
    asked = [("room-1", f"198.51.100.{n}") for n in range(18, 23)] + [("room-2", "198.51.100.20")]
    answers = await asyncio.gather(*(b.banned(room, address) for room, address in asked * 200))
    assert answers == [
        (room, address) == ("room-1", "198.51.100.20") for room, address in asked * 200
    ]
    assert await _calls(redis_server, "exists") == exists_before  # no round trip for them

    # a node that starts later reads the bans made before it subscribed
    c = await start("c", ban_seconds=60)
    await until(lambda: _mirrored(c))
    assert await c.banned("room-1", "198.51.100.20")
    assert await c.banned("room-1", "2001:db8:1:2::/64")
    assert not await c.banned("room-1", "2001:db8:1:3::/64")

    # ... with what is left of each: a short ban ends on time on the late node too
    d = await start("d", ban_seconds=0.6)
    d.ban("room-3", "198.51.100.21")
    e = await start("e", ban_seconds=60)
    await until(lambda: _mirrored(e))
    assert await e.banned("room-3", "198.51.100.21")
    await until(lambda: _not(e.banned("room-3", "198.51.100.21")), within=3)


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def test_while_its_ban_feed_is_down_a_node_asks_redis(
    start: Start, redis_server: RedisEngine, redis_prefix: str
) -> None:
    """A node whose subscription was cut (here by Redis itself: CLIENT KILL TYPE pubsub) does
    not trust its mirror: a storm of checks asks Redis, in one shared round trip, and finds a
    ban its mirror never heard of (a key written straight to Redis, as by a node of an older
    livehub); then it subscribes again and reads that ban into its mirror."""
    d = await start("d", ban_seconds=60, retry_interval=1.5)
    await until(lambda: _mirrored(d))
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set(f"{redis_prefix}ban:room-3:198.51.100.7", b"1", px=60_000)
        assert not await d.banned("room-3", "198.51.100.7")  # the mirror never heard of it
        await client.client_kill_filter(_type="pubsub")
    finally:
        await client.aclose()
    await until(lambda: _not(_mirrored(d)), within=2)
    # a storm of joins asks at once: each gets its own answer from one shared round trip
    exists_before = await _calls(redis_server, "exists")
    asked = [("room-3", f"198.51.100.{n}") for n in range(5, 10)] + [("room-4", "198.51.100.7")]
    answers = await asyncio.gather(*(d.banned(room, address) for room, address in asked * 20))
    assert answers == [
        address == "198.51.100.7" and room == "room-3" for room, address in asked * 20
    ]
    exists_calls = await _calls(redis_server, "exists") - exists_before
    assert len(asked) <= exists_calls < len(asked) * 20  # shared, not one per check
    # back on the feed: the key written straight to Redis is in the mirror now
    await until(lambda: _mirrored(d), within=5)
    assert await d.banned("room-3", "198.51.100.7")


async def test_a_rewrite_of_the_counts_loses_no_change_made_meanwhile(
    start: Start, redis_server: RedisEngine, redis_prefix: str
) -> None:
    """The heartbeat rewrites a node's hash from its mirror (after a failed call, or when Redis
    lost it). Connections opened and closed while it does so must not be lost: an increment
    counted in Redis but not yet in the snapshot, or a decrement in the snapshot whose script
    runs after the rewrite, would leave Redis wrong for good (a CI run saw another node admit a
    fourth connection of an address limited to three)."""
    a = await start("a", limit=1000, heartbeat=3600)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    key = f"{redis_prefix}conns:a"
    try:
        for n in range(30):
            address = f"198.51.100.{n}"

            async def churn(address: str = address) -> None:
                for _ in range(4):
                    assert await a.acquire(address)
                    await asyncio.sleep(0)
                a.release(address)

            await asyncio.gather(churn(), a.write_counts(), churn(), a.write_counts(), churn())
            if a._tasks:
                await asyncio.wait(set(a._tasks))
            stored = {k: int(v) for k, v in (await client.hgetall(key)).items()}
            assert stored == a.local.counts, f"round {n}"
            assert a.local.counts[address] == 9
    finally:
        await client.aclose()


async def test_close_ends_the_loops_even_when_a_redis_call_spends_their_cancellation(
    start: Start,
) -> None:
    """redis-py 8.2 was seen to spend a cancellation inside a call (livehub/tasks.py): the
    heartbeat then went back to its sleep and ignored the stop (CI, teardown of a ban test).
    The loops end on close()'s stop event too."""
    limits = await start("a")
    inside = asyncio.Event()
    spent = False

    async def spends_its_cancellation() -> None:
        nonlocal spent
        inside.set()
        if spent:
            return
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            spent = True  # what redis-py did, once: the cancellation is gone

    limits._beat_once = spends_its_cancellation  # type: ignore[method-assign]
    await asyncio.wait_for(inside.wait(), 5)
    started = time.monotonic()
    await limits.close()  # the suite fails a test whose task ignored its cancellation
    assert time.monotonic() - started < 1.0
