"""The behaviour every :class:`PlayerCounts` adapter keeps, run against each: in memory
(embedded) and on Redis (cluster, the real throwaway Redis). ``node()`` gives the counts a hook
reaches: the same object in one process, another node's in a cluster, so "counted on one node,
seen on the other" is the same test in both modes. Redis-only matters (outages, the mirror's
pruning) stay in ``tests/cluster/test_redis_players.py``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from livehub.adapters.memory.players import MemoryPlayers
from livehub.adapters.redis.players import RedisPlayers
from livehub.domain.ports import PlayerCounts
from tests.helpers import eventually

Node = Callable[[], Awaitable[PlayerCounts]]


@pytest.fixture(params=["memory", "redis"])
async def node(request: pytest.FixtureRequest) -> AsyncIterator[Node]:
    if request.param == "memory":
        one = MemoryPlayers()

        async def same() -> PlayerCounts:
            return one

        yield same
        return
    url = request.getfixturevalue("redis_server").url
    prefix = request.getfixturevalue("redis_prefix")
    started: list[RedisPlayers] = []

    async def start() -> PlayerCounts:
        players = RedisPlayers(url, prefix=prefix, retry_interval=0.2)
        await players.start()
        started.append(players)
        return players

    yield start
    for players in started:
        await players.close()


async def counts_are(nodes: list[PlayerCounts], expected: dict[str, int]) -> None:
    await eventually(
        lambda: all(n.count(room) == want for n in nodes for room, want in expected.items()),
        within=5,
    )


async def test_a_player_counts_once_per_client_id_whichever_node_hears_it(node: Node) -> None:
    a, b = await node(), await node()
    assert await a.add("r1", "c1") is True
    assert await b.add("r1", "c1") is False  # the same client id, again
    assert await b.add("r1", "c2") is True
    assert b.count("r1") == 2  # the caller's own count at once
    await counts_are([a, b], {"r1": 2})


async def test_a_client_id_counted_in_another_room_moves(node: Node) -> None:
    a, b = await node(), await node()
    assert await a.add("r1", "c1")
    assert await b.add("r2", "c1")
    await counts_are([a, b], {"r1": 0, "r2": 1})


async def test_remove_says_where_the_player_was_once(node: Node) -> None:
    a, b = await node(), await node()
    await a.add("r1", "c1")
    await a.add("r1", "c2")
    assert await b.remove("c1") == "r1"
    assert await a.remove("c1") is None
    assert await a.remove("never") is None
    await counts_are([a, b], {"r1": 1})
    assert await a.remove("c2") == "r1"
    await counts_are([a, b], {"r1": 0})


async def test_concurrent_changes_from_two_nodes_stay_exact(node: Node) -> None:
    a, b = await node(), await node()
    await asyncio.gather(
        *(a.add("r1", f"a{n}") for n in range(40)), *(b.add("r1", f"b{n}") for n in range(40))
    )
    await asyncio.gather(*(b.remove(f"a{n}") for n in range(0, 40, 2)))
    await asyncio.gather(*(a.add("r2", f"b{n}") for n in range(0, 40, 4)))
    await counts_are([a, b], {"r1": 50, "r2": 10})
