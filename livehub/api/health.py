"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from livehub import keys
from livehub.api.jsonio import json_response
from livehub.srs import probe


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests. Checks nothing else on purpose."""
    return json_response({"status": "ok", "checks": {}})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and the SRS API is reachable (503 otherwise).

    ``reconcile`` tells how the last reconciliation went (``pending`` before the first one,
    ``skipped`` while SRS could not be reached: then no room is ended on a guess). In cluster
    mode ``redis`` tells whether the other nodes are reachable; it does not make the node unready.
    """
    app = request.app
    database = await app[keys.store].ping()
    srs_client = app[keys.srs]
    srs = await probe(srs_client)
    last_ok = app[keys.reconciler].last_ok
    checks = {
        "database": "ok" if database else "failing",
        "srs_api": "ok" if srs else "unreachable",
        "reconcile": "pending" if last_ok is None else "ok" if last_ok else "skipped",
    }
    bus = app.get(keys.bus)
    if bus is not None:
        # reported, not required: a node without Redis still serves REST and its own members,
        # and taking every node out of the balancer at once would be worse
        checks["redis"] = "ok" if bus.healthy else "unreachable"
    if not srs and srs_client.last_error:
        checks["srs_api_error"] = srs_client.last_error
    ready = database and srs
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[keys.metrics].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
