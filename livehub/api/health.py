"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from livehub import keys
from livehub.api.jsonio import json_response
from livehub.srs import probe
from livehub.storage import SQLiteStore


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "checks": {}})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    store = app[keys.store]
    database = store.ping() if isinstance(store, SQLiteStore) else True
    srs = await probe(app[keys.srs])
    checks = {
        "database": "ok" if database else "failing",
        "srs_api": "ok" if srs else "unreachable",
    }
    if not srs and app[keys.srs].last_error:
        checks["srs_api_error"] = app[keys.srs].last_error or ""
    ready = database and srs
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = request.app[keys.metrics].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
