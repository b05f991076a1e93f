"""/healthz, /readyz and /metrics over real HTTP; every metric is shown to move."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from livehub import keys
from livehub.adapters.sqlite.store import SQLiteStore
from livehub.app import create_app
from tests.conftest import HOOK_SECRET, Client, hook_for, make_config, send_hook
from tests.fake_srs import FakeSRS
from tests.helpers import eventually, scrape


async def test_healthz_is_liveness_only(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_config()))  # SRS unreachable: still alive
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "checks": {}}


async def test_readyz_when_everything_answers(
    srs: FakeSRS, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = make_config(srs_api_url=srs.url, db_path=str(tmp_path / "livehub.db"))
    client = await aiohttp_client(create_app(config))
    await eventually(lambda: client.app[keys.reconciler].last_ok is True)
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ready",
        "checks": {"database": "ok", "srs_api": "ok", "reconcile": "ok"},
    }
    assert ("GET", "/api/v1/versions") in srs.requests


@pytest.mark.parametrize("mode", ["down", "http500"])
async def test_readyz_when_srs_cannot_be_reached(
    srs: FakeSRS, aiohttp_client: AiohttpClient, mode: str
) -> None:
    srs.mode = mode
    if mode == "down":
        await srs.stop()
    client = await aiohttp_client(create_app(make_config(srs_api_url=srs.url)))
    await eventually(lambda: client.app[keys.reconciler].last_ok is False)
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    error = body["checks"].pop("srs_api_error")
    assert body == {
        "status": "not_ready",
        "checks": {"database": "ok", "srs_api": "unreachable", "reconcile": "skipped"},
    }
    if mode == "http500":
        assert error == "GET /api/v1/versions: HTTP 500"
    else:
        assert error.startswith("GET /api/v1/versions: ClientConnectorError")
    # SRS comes back: ready again without a restart
    srs.mode = "up"
    await srs.start()
    await eventually(lambda: ready(client))  # once its last answer (a second) has aged


async def test_readyz_checks_srs_and_the_database_once_however_many_ask(
    srs: FakeSRS, aiohttp_client: AiohttpClient
) -> None:
    """/readyz is public: a flood of it does not become a flood of SRS API calls and database
    pings (one check in flight, its answer reused for a second)."""
    client = await aiohttp_client(create_app(make_config(srs_api_url=srs.url)))
    readiness = client.app[keys.readiness]
    before = srs.requests.count(("GET", "/api/v1/versions"))
    answers = await asyncio.gather(*(client.get("/readyz") for _ in range(50)))
    assert {resp.status for resp in answers} == {200}
    assert srs.requests.count(("GET", "/api/v1/versions")) - before <= 2
    assert readiness.checks <= 2
    checks = readiness.checks
    await asyncio.sleep(1.1)  # the answer is a second old: checked again
    assert (await client.get("/readyz")).status == 200
    assert readiness.checks == checks + 1


async def test_readyz_when_the_database_fails(
    srs: FakeSRS, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    path = tmp_path / "livehub.db"
    client = await aiohttp_client(create_app(make_config(srs_api_url=srs.url, db_path=str(path))))
    with sqlite3.connect(path) as db:  # the table vanishes under the running app
        db.execute("DROP TABLE rooms")
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "failing" and body["checks"]["srs_api"] == "ok"


async def test_readyz_when_writes_fail_and_reads_do_not(
    srs: FakeSRS, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """A full disk: reads answer, writes do not. The node is not ready (a load balancer takes
    it out) until a write succeeds again."""
    path = tmp_path / "livehub.db"
    client = await aiohttp_client(create_app(make_config(srs_api_url=srs.url, db_path=str(path))))
    store = client.app[keys.store]
    assert isinstance(store, SQLiteStore) and store.writer is not None
    writer = store.writer

    def limit(pages: int | None) -> Any:
        def run(db: sqlite3.Connection) -> None:  # SQLITE_FULL past this many pages
            count = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages or count}")

        return run

    await writer.run(limit(None))
    for n in range(500):
        resp = await client.post("/api/rooms", json={"title": f"{'x' * 90} {n}"})
        if resp.status != 201:
            break
    assert resp.status == 503 and (await resp.json())["code"] == "database_unavailable"
    assert (await client.get("/api/rooms")).status == 200  # reads still answer
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["database"] == "failing"
    await writer.run(limit(1_000_000))  # space again
    assert (await client.post("/api/rooms", json={"title": "again"})).status == 201
    await eventually(lambda: ready(client))


async def ready(client: Client) -> bool:
    return (await client.get("/readyz")).status == 200


# -- metrics -----------------------------------------------------------------------------------


async def test_metrics_is_prometheus_text(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_config()))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    text = await resp.text()
    for name in (
        "livehub_rooms",
        "livehub_rooms_reconnecting",
        "livehub_ws_connections",
        "livehub_ws_room_members",
        "livehub_ws_messages_relayed_total",
        "livehub_ws_messages_dropped_total",
        "livehub_ws_slow_disconnects_total",
        "livehub_srs_hooks_total",
        "livehub_srs_hook_seconds",
        "livehub_srs_reconciles_total",
        "livehub_srs_api_up",
    ):
        assert f"# TYPE {name} " in text, name


async def rooms_by_status(client: Client) -> dict[str, float]:
    return {
        status: await scrape(client, "livehub_rooms", status=status)
        for status in ("preparing", "live", "ended")
    }


async def test_room_gauges_follow_the_lifecycle(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_config(reconnect_window=30.0)))
    assert await rooms_by_status(client) == {"preparing": 0, "live": 0, "ended": 0}
    rooms = [await (await client.post("/api/rooms", json={"title": "m"})).json() for _ in range(3)]
    assert await rooms_by_status(client) == {"preparing": 3, "live": 0, "ended": 0}
    await send_hook(client, hook_for(rooms[0], "on_publish.json"))
    assert await rooms_by_status(client) == {"preparing": 2, "live": 1, "ended": 0}
    assert await scrape(client, "livehub_rooms_reconnecting") == 0
    await send_hook(client, hook_for(rooms[0], "on_unpublish.json"))
    assert await scrape(client, "livehub_rooms_reconnecting") == 1
    resp = await client.post(
        f"/api/rooms/{rooms[0]['id']}/close",
        headers={"Authorization": f"Bearer {rooms[0]['ownerToken']}"},
    )
    assert resp.status == 200
    assert await rooms_by_status(client) == {"preparing": 2, "live": 0, "ended": 1}
    assert await scrape(client, "livehub_rooms_reconnecting") == 0


async def test_hook_counters_and_timing_by_action_and_result(
    aiohttp_client: AiohttpClient,
) -> None:
    client = await aiohttp_client(create_app(make_config()))
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "m"})).json()

    async def hooks(action: str, result: str) -> float:
        return await scrape(client, "livehub_srs_hooks_total", action=action, result=result)

    await send_hook(client, hook_for(room, "on_publish.json", param="?secret=wrong"))
    await send_hook(client, hook_for(room, "on_publish.json"))
    await send_hook(client, hook_for(room, "on_publish.json"))  # duplicate: accepted again
    await send_hook(client, hook_for(room, "on_unpublish.json", client_id="unkn0wn0"))
    await send_hook(client, hook_for(room, "on_play.json"))
    await send_hook(client, hook_for(room, "on_dvr.json"))
    assert await hooks("on_publish", "rejected") == 1
    assert await hooks("on_publish", "accepted") == 2
    assert await hooks("on_unpublish", "ignored") == 1
    assert await hooks("on_play", "accepted") == 1
    assert (
        await hooks("on_dvr", "refused") == 1
    )  # the fixture names no file of LIVEHUB_RECORDINGS_DIR
    count = await scrape(client, "livehub_srs_hook_seconds_count", action="on_publish")
    assert count == 3
    total = await scrape(client, "livehub_srs_hook_seconds_sum", action="on_publish")
    assert 0 < total < 3
    inf = await scrape(client, "livehub_srs_hook_seconds_bucket", action="on_publish", le="+Inf")
    assert inf == 3
    # refused before the body is read: wrong secret, malformed body
    resp = await client.post("/api/hooks/srs?secret=wrong", json=hook_for(room, "on_play.json"))
    assert resp.status == 403
    resp = await client.post(f"/api/hooks/srs?secret={HOOK_SECRET}", data=b"{not json")
    assert resp.status == 400
    assert await hooks("-", "unauthorized") == 1
    assert await hooks("-", "invalid") == 1


async def test_connection_and_relay_counters(aiohttp_client: AiohttpClient) -> None:
    # a join costs 10 tokens: 2 chat lines are left of the burst for each connection
    config = make_config(rate_per_s=1.0, rate_burst=12)
    client = await aiohttp_client(create_app(config))
    room: dict[str, Any] = await (await client.post("/api/rooms", json={"title": "m"})).json()
    assert await scrape(client, "livehub_ws_connections") == 0
    first = await client.ws_connect("/ws")
    second = await client.ws_connect("/ws")
    await eventually(lambda: len(client.app[keys.hub].peers) == 2)
    assert await scrape(client, "livehub_ws_connections") == 2
    for ws in (first, second):
        await ws.send_json({"type": "join", "roomId": room["id"]})
        assert (await ws.receive_json(timeout=2))["type"] == "joined"
    assert await scrape(client, "livehub_ws_room_members") == 2
    relayed = await scrape(client, "livehub_ws_messages_relayed_total")
    await first.send_json({"type": "chat", "roomId": room["id"], "text": "hello"})
    for ws in (first, second):  # the sender gets its chat too
        message = await ws.receive_json(timeout=2)
        while message["type"] != "chat":
            message = await ws.receive_json(timeout=2)
    assert await scrape(client, "livehub_ws_messages_relayed_total") >= relayed + 2
    # over the rate limit: throttled messages are dropped
    dropped = await scrape(client, "livehub_ws_messages_dropped_total")
    for _ in range(4):
        await second.send_json({"type": "chat", "roomId": room["id"], "text": "flood"})
    await eventually(lambda: client.app[keys.hub].stats.dropped >= dropped + 2)
    assert await scrape(client, "livehub_ws_messages_dropped_total") >= dropped + 2
    await first.close()
    await second.close()
    await eventually(lambda: not client.app[keys.hub].peers)
    assert await scrape(client, "livehub_ws_connections") == 0
    assert await scrape(client, "livehub_ws_room_members") == 0


async def test_reconcile_counters(srs: FakeSRS, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(
        create_app(make_config(srs_api_url=srs.url, reconcile_interval=0.05))
    )
    reconciler = client.app[keys.reconciler]
    await eventually(lambda: reconciler.last_ok is True)
    assert await scrape(client, "livehub_srs_reconciles_total", result="ok") >= 1
    assert await scrape(client, "livehub_srs_api_up") == 1
    await srs.stop()
    await eventually(lambda: reconciler.last_ok is False)
    assert await scrape(client, "livehub_srs_reconciles_total", result="unreachable") >= 1
    assert await scrape(client, "livehub_srs_api_up") == 0


def test_each_app_has_its_own_metrics_registry() -> None:
    """Two apps in one process keep separate registries (no duplicate-metric errors)."""
    first: web.Application = create_app(make_config())
    second: web.Application = create_app(make_config())
    assert first[keys.metrics].registry is not second[keys.metrics].registry
