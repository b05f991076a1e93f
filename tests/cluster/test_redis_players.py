"""Player counts shared through Redis: any node counts, every node reads the same figure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from livehub.adapters.redis.players import RedisPlayers
from tests.engines import RedisEngine
from tests.helpers import eventually

Start = Callable[[], Awaitable[RedisPlayers]]


@pytest.fixture
async def start(redis_server: RedisEngine, redis_prefix: str) -> AsyncIterator[Start]:
    started: list[RedisPlayers] = []

    async def start_one() -> RedisPlayers:
        players = RedisPlayers(redis_server.url, prefix=redis_prefix, retry_interval=0.2)
        await players.start()
        started.append(players)
        return players

    yield start_one
    for players in started:
        await players.close()


async def test_players_counted_on_one_node_are_seen_on_every_node(start: Start) -> None:
    a, b = await start(), await start()
    assert await a.add("r1", "c1")
    assert await b.add("r1", "c2")
    assert not await a.add("r1", "c2")  # once per client id, whichever node hears it
    assert (a.count("r1"), b.count("r1")) == (2, 2)  # the caller's mirror at once
    await eventually(lambda: a.count("r1") == 2 and b.count("r1") == 2)
    # a client id counted in another room moves
    assert await b.add("r2", "c1")
    await eventually(
        lambda: (a.count("r1"), a.count("r2"), b.count("r1"), b.count("r2")) == (1, 1, 1, 1)
    )
    assert await a.remove("c1") == "r2"
    assert await a.remove("c1") is None
    assert await b.remove("c2") == "r1"
    await eventually(lambda: [p.count(r) for p in (a, b) for r in ("r1", "r2")] == [0, 0, 0, 0])


async def test_a_node_started_later_loads_the_counts(start: Start) -> None:
    a = await start()
    for n in range(5):
        await a.add("r1", f"c{n}")
    late = await start()
    assert late.count("r1") == 5
    assert late.count("other") == 0


async def test_many_concurrent_changes_from_two_nodes_stay_exact(start: Start) -> None:
    a, b = await start(), await start()
    await asyncio.gather(
        *(a.add("r1", f"a{n}") for n in range(50)), *(b.add("r1", f"b{n}") for n in range(50))
    )
    await asyncio.gather(*(b.remove(f"a{n}") for n in range(0, 50, 2)))
    await eventually(lambda: a.count("r1") == 75 and b.count("r1") == 75)


async def test_redis_lost_then_back(start: Start, redis_server: RedisEngine) -> None:
    a, b = await start(), await start()
    await a.add("r1", "c1")
    await eventually(lambda: b.count("r1") == 1)
    redis_server.kill()
    assert not await a.add("r1", "c2")  # not counted, no error
    assert await a.remove("c1") is None
    await eventually(lambda: not a.healthy and not b.healthy)
    assert b.count("r1") == 1  # last known figure meanwhile
    redis_server.start()  # empty
    await eventually(lambda: a.healthy and b.healthy, within=10)
    assert (a.count("r1"), b.count("r1")) == (0, 0)
    assert await b.add("r1", "c3")
    await eventually(lambda: a.count("r1") == 1)


async def test_the_mirror_keeps_only_rooms_with_players(start: Start) -> None:
    """A room back at zero leaves every node's mirror (it kept every room that ever had a
    player), and late replies about it do not bring it back."""
    a, b = await start(), await start()
    for n in range(50):
        assert await (a if n % 2 else b).add(f"room{n}", f"c{n}")
    await eventually(lambda: a.count("room49") == 1 and b.count("room0") == 1)
    for n in range(50):
        assert await (b if n % 2 else a).remove(f"c{n}") == f"room{n}"
    await eventually(lambda: not a._counts and not b._counts)
    assert [a.count(f"room{n}") for n in range(50)] == [0] * 50
    assert await a.add("room7", "again")  # and a room counted again is mirrored again
    await eventually(lambda: a.count("room7") == b.count("room7") == 1)
    assert set(a._counts) == set(b._counts) == {"room7"}
