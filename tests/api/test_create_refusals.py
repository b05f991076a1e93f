"""A refused room creation changes no state: an anonymous POST /api/rooms refused by the cap on
open rooms (503 ``too_many_rooms``), by its body (400) or by the rate itself (429) does not
spend its address's creation allowance (LIVEHUB_CREATE_RATE_PER_MIN), in embedded mode (SQLite,
this process's buckets) and in cluster mode (PostgreSQL, the buckets every node shares in
Redis). Concurrent creations still never pass more than the allowance."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.domain.addresses import SharedUnavailable
from livehub.domain.admission import CreatePolicy
from livehub.domain.errors import RateLimited
from tests.conftest import ADMIN_TOKEN, Client, make_config
from tests.engines import RedisEngine

StartNodes = Callable[..., Awaitable[list[Client]]]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(params=["embedded", "cluster"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """An SQLite file, or a PostgreSQL database and a Redis of this test alone."""
    if request.param == "embedded":
        return {"db_path": str(tmp_path / "livehub.db")}
    pg_url: str = request.getfixturevalue("pg_url")
    redis: RedisEngine = request.getfixturevalue("redis_alone")
    return {"database_url": pg_url, "redis_url": redis.url}


@pytest.fixture
def start_nodes(deployment: dict[str, str], aiohttp_client: AiohttpClient) -> StartNodes:
    """``start_nodes(n, **config)``: n nodes of one service in cluster mode; in embedded mode
    (one process) the one node, n times."""

    async def start(n: int, **config: Any) -> list[Client]:
        app_config = make_config(**deployment, **config)
        if not app_config.cluster:
            client: Client = await aiohttp_client(create_app(app_config))
            return [client] * n
        return [await aiohttp_client(create_app(app_config)) for _ in range(n)]

    return start


async def create(client: Client, title: Any = "t", **headers: str) -> Any:
    return await client.post("/api/rooms", json={"title": title}, headers=headers)


async def close(client: Client, room: dict[str, Any]) -> None:
    resp = await client.post(
        f"/api/rooms/{room['id']}/close",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert resp.status == 200


async def statuses(client: Client, n: int) -> list[int]:
    return [(await create(client)).status for _ in range(n)]


async def test_a_creation_refused_by_the_cap_spends_no_allowance(start_nodes: StartNodes) -> None:
    a, b = await start_nodes(2, max_open_rooms=2, create_rate_per_min=2)
    filler = await create(a, **ADMIN)  # the admin token is not limited
    first = await create(a)
    assert (filler.status, first.status) == (201, 201)  # one creation a minute left
    # at the cap: refused, on this node and another one (cluster: the shared buckets)
    for node in (a, b, a, b):
        refused = await create(node)
        assert refused.status == 503
        assert (await refused.json())["code"] == "too_many_rooms"
    for room in (filler, first):
        await close(a, await room.json())
    # the refusals took none of it
    assert await statuses(b, 2) == [201, 429]


async def test_a_bad_body_spends_no_allowance(start_nodes: StartNodes) -> None:
    [client] = await start_nodes(1, create_rate_per_min=1)
    for title in ("", " \u200b ", "x" * 101, 7):
        refused = await create(client, title)
        assert refused.status == 400
        assert (await refused.json())["code"] == "validation_error"
    malformed = await client.post(
        "/api/rooms", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status == 400
    assert await statuses(client, 2) == [201, 429]


async def test_concurrent_creations_never_pass_more_than_the_allowance(
    start_nodes: StartNodes,
) -> None:
    nodes = await start_nodes(2, create_rate_per_min=1)
    answers = await asyncio.gather(*(create(nodes[n % 2]) for n in range(8)))
    assert sorted(answer.status for answer in answers) == [201] + [429] * 7
    assert (await nodes[0].get("/api/rooms")).headers["X-Total-Count"] == "1"


async def test_concurrent_refusals_give_back_only_what_they_took(start_nodes: StartNodes) -> None:
    """Creations racing at the cap: each gives back its own creation, a rate-limited one none,
    so the allowance is what it was before them (no more)."""
    nodes = await start_nodes(2, max_open_rooms=3, create_rate_per_min=3)
    rooms = [await create(nodes[0], **ADMIN) for _ in range(2)] + [await create(nodes[0])]
    assert [room.status for room in rooms] == [201, 201, 201]  # two of three a minute left
    answers = await asyncio.gather(*(create(nodes[n % 2]) for n in range(6)))
    assert {answer.status for answer in answers} <= {429, 503}
    assert 503 in {answer.status for answer in answers}
    for room in rooms:
        await close(nodes[0], await room.json())
    assert await statuses(nodes[1], 3) == [201, 201, 429]


class _Unreachable:
    async def take_create(self, key: str, rate_per_min: int) -> int:
        raise SharedUnavailable("Redis unreachable")

    async def give_back_create(self, key: str, rate_per_min: int) -> None:
        raise AssertionError("taken from this process's bucket: given back there")


async def test_a_creation_is_given_back_where_it_was_taken() -> None:
    """Redis unreachable: the creation is taken from this process's bucket, and given back to it
    (not to Redis)."""
    policy = CreatePolicy(rate_per_min=1, shared=_Unreachable())
    with pytest.raises(LookupError):
        async with policy.admission("198.51.100.1"):
            raise LookupError("the room was not written")
    async with policy.admission("198.51.100.1"):
        pass  # written: spent
    with pytest.raises(RateLimited):
        async with policy.admission("198.51.100.1"):
            raise AssertionError("not reached")
