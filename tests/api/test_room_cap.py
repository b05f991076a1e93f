"""The global cap on open rooms (LIVEHUB_MAX_OPEN_ROOMS), over real HTTP on both engines: the
per-address create rate alone let many addresses fill the store with rooms (found by an audit).
Past the cap a creation is refused with 503 ``too_many_rooms`` and Retry-After, and nothing is
written; ended rooms do not count; on PostgreSQL the cap holds for every node of the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from livehub.config import Config, ConfigError
from tests.conftest import ADMIN_TOKEN, Client, make_config
from tests.engines import PostgresEngine

StartNode = Callable[..., Awaitable[Client]]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """One SQLite file (embedded), or one PostgreSQL database (cluster mode); dropped after the
    apps on it are closed (set up before ``aiohttp_client``, torn down after it)."""
    if request.param == "sqlite":
        yield {"db_path": str(tmp_path / "livehub.db")}
        return
    postgres: PostgresEngine = request.getfixturevalue("postgres")
    url = await postgres.create_database()
    yield {"database_url": url}
    await postgres.drop_database(url)


@pytest.fixture
def start_node(database: dict[str, str], aiohttp_client: AiohttpClient) -> StartNode:
    """Starts nodes of one service on ``database``: with PostgreSQL each one is another node of
    the cluster."""

    async def start(**config: Any) -> Client:
        client: Client = await aiohttp_client(create_app(make_config(**database, **config)))
        return client

    return start


async def create(client: Client, **headers: str) -> Any:
    return await client.post("/api/rooms", json={"title": "t"}, headers=headers)


async def test_past_the_cap_creation_is_refused_until_a_room_ends(start_node: StartNode) -> None:
    a = await start_node(max_open_rooms=3, create_rate_per_min=0)
    assert [(await create(a)).status for _ in range(2)] == [201, 201]
    # another node of the service sees the same rooms (one store)
    b = await start_node(max_open_rooms=3, create_rate_per_min=0)
    third = await create(b)
    assert third.status == 201
    for node in (a, b):
        refused = await create(node, **ADMIN)  # the admin token is capped too
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "60"
        assert await refused.json() == {
            "error": "Too many open rooms (at most 3): retry later",
            "code": "too_many_rooms",
            "details": {"maxOpenRooms": 3, "retryAfter": 60},
        }
    # nothing was written
    listed = await a.get("/api/rooms", headers=ADMIN)
    assert listed.headers["X-Total-Count"] == "3"
    # an ended room frees its place
    room = await third.json()
    closed = await b.post(
        f"/api/rooms/{room['id']}/close",
        headers={"Authorization": f"Bearer {room['ownerToken']}"},
    )
    assert closed.status == 200
    assert (await create(a)).status == 201
    assert (await create(b)).status == 503
    listed = await a.get("/api/rooms", headers=ADMIN)
    assert listed.headers["X-Total-Count"] == "4"  # 3 open, 1 ended


async def test_zero_means_no_cap(start_node: StartNode) -> None:
    client = await start_node(max_open_rooms=0, create_rate_per_min=0)
    assert {(await create(client)).status for _ in range(12)} == {201}


async def test_concurrent_creations_on_two_nodes_stop_at_the_cap(start_node: StartNode) -> None:
    """Racing creations: never fewer rooms than the cap; on PostgreSQL at most the creations
    in flight at once beyond it (documented), on SQLite (one writer) exactly the cap."""
    nodes = [await start_node(max_open_rooms=5, create_rate_per_min=0) for _ in range(2)]
    answers = await asyncio.gather(*(create(nodes[n % 2]) for n in range(30)))
    statuses = [answer.status for answer in answers]
    assert set(statuses) == {201, 503}
    created = statuses.count(201)
    total = (await nodes[0].get("/api/rooms", headers=ADMIN)).headers["X-Total-Count"]
    assert int(total) == created
    assert 5 <= created <= 5 + 2 * 10  # two nodes, 10 store connections each
    for answer in answers:
        if answer.status == 503:
            assert (await answer.json())["code"] == "too_many_rooms"


def test_the_setting() -> None:
    assert Config().max_open_rooms == 10_000  # the production default
    assert Config.from_env({"LIVEHUB_MAX_OPEN_ROOMS": "0"}).max_open_rooms == 0
    assert Config.from_env({"LIVEHUB_MAX_OPEN_ROOMS": "250"}).max_open_rooms == 250
    for raw in ("x", "-1", "1.5"):
        with pytest.raises(ConfigError, match="LIVEHUB_MAX_OPEN_ROOMS must"):
            Config.from_env({"LIVEHUB_MAX_OPEN_ROOMS": raw})


async def test_the_openapi_document_describes_the_cap(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_config()))
    spec = await (await client.get("/api/openapi.json")).json()
    refused = spec["paths"]["/api/rooms"]["post"]["responses"]["503"]
    assert "too_many_rooms" in refused["description"]
    assert "Retry-After" in refused["headers"]
