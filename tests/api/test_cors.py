"""CORS on every REST route, over real HTTP: a browser frontend on another origin (an operator's
dashboard, an app using the SDK) sends ``Authorization``, so each of its calls is preflighted.
The webhook admin routes had no CORS at all (found by an audit): their preflight was refused
and their answers carried no ``Access-Control-Allow-Origin``. SRS's hooks are server to server
and stay without."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from livehub.app import create_app
from tests.conftest import ADMIN_TOKEN, Client, make_config
from tests.webhooks.conftest import secret

ALLOWED = "https://dashboard.example.com"
OTHER = "https://evil.example.net"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, tmp_path: Path) -> Client:
    app = create_app(
        make_config(
            db_path=str(tmp_path / "livehub.db"),
            cors_origins=(ALLOWED, "https://other-app.example.com"),
            webhook_urls=("http://127.0.0.1:9/hooks",),
            webhook_secrets=(secret(),),
        )
    )
    result: Client = await aiohttp_client(app)
    return result


def api_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every REST route a browser may call: /api/ but SRS's hooks."""
    found = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "OPTIONS") or not path.startswith("/api/"):
            continue
        if path.startswith("/api/hooks/"):
            continue
        found.append((route.method, path))
    return sorted(found)


def preflight(method: str, origin: str = ALLOWED) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_every_api_route_answers_a_preflight_from_an_allowed_origin(client: Client) -> None:
    routes = api_routes(client.app)
    assert ("GET", "/api/webhooks/deliveries") in routes
    assert ("POST", "/api/webhooks/deliveries/{delivery_id}/retry") in routes
    refused = []
    for method, path in routes:
        url = path.replace("{", "x").replace("}", "x")
        resp = await client.options(url, headers=preflight(method))
        allowed_methods = resp.headers.get("Access-Control-Allow-Methods", "")
        allowed_headers = resp.headers.get("Access-Control-Allow-Headers", "").lower()
        if not (
            resp.status == 200
            and resp.headers.get("Access-Control-Allow-Origin") == ALLOWED
            and method in allowed_methods.split(",")
            and {"authorization", "content-type"} <= set(allowed_headers.split(","))
        ):
            refused.append((method, path, resp.status))
    assert refused == []


async def test_the_webhook_admin_routes_answer_an_allowed_origin(client: Client) -> None:
    listed = await client.get("/api/webhooks/deliveries", headers={"Origin": ALLOWED, **ADMIN})
    assert listed.status == 200 and await listed.json() == []
    assert listed.headers["Access-Control-Allow-Origin"] == ALLOWED
    # an error is readable by the frontend too: the one JSON shape, with the CORS header
    retried = await client.post(
        "/api/webhooks/deliveries/42/retry", headers={"Origin": ALLOWED, **ADMIN}
    )
    assert retried.status == 404
    assert (await retried.json())["code"] == "delivery_not_found"
    assert retried.headers["Access-Control-Allow-Origin"] == ALLOWED
    unauthorized = await client.get("/api/webhooks/deliveries", headers={"Origin": ALLOWED})
    assert unauthorized.status == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == ALLOWED
    # a path with several methods (one resource per method): each answers
    created = await client.post(
        "/api/rooms", json={"title": "t"}, headers={"Origin": ALLOWED, **ADMIN}
    )
    assert created.status == 201
    assert created.headers["Access-Control-Allow-Origin"] == ALLOWED
    room = await created.json()
    deleted = await client.delete("/api/recordings/nope", headers={"Origin": ALLOWED, **ADMIN})
    assert deleted.status == 404
    assert deleted.headers["Access-Control-Allow-Origin"] == ALLOWED
    closed = await client.post(
        f"/api/rooms/{room['id']}/close", headers={"Origin": ALLOWED, **ADMIN}
    )
    assert closed.status == 200
    assert closed.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_another_origin_is_refused(client: Client) -> None:
    for method, path in (
        ("GET", "/api/webhooks/deliveries"),
        ("POST", "/api/webhooks/deliveries/1/retry"),
        ("POST", "/api/rooms"),
        ("DELETE", "/api/recordings/x"),
    ):
        resp = await client.options(path, headers=preflight(method, OTHER))
        assert resp.status == 403, (method, path)
        assert (await resp.json())["code"] == "forbidden"
        assert "Access-Control-Allow-Origin" not in resp.headers
    # the request itself (a browser would not show its answer to the page)
    listed = await client.get("/api/webhooks/deliveries", headers={"Origin": OTHER, **ADMIN})
    assert "Access-Control-Allow-Origin" not in listed.headers


async def test_a_method_the_route_does_not_have_is_not_allowed(client: Client) -> None:
    resp = await client.options("/api/webhooks/deliveries", headers=preflight("DELETE"))
    assert resp.status == 403
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_srs_hooks_have_no_cors(client: Client) -> None:
    resp = await client.options("/api/hooks/srs", headers=preflight("POST"))
    assert "Access-Control-Allow-Origin" not in resp.headers
