"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from livehub import keys
from livehub.adapters.srs.api import probe
from livehub.api.jsonio import json_response
from livehub.api.listeners import local_port


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves requests. Checks nothing else on purpose."""
    return json_response({"status": "ok", "checks": {}})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and the SRS API is reachable (503 otherwise).

    ``reconcile`` tells how the last reconciliation went (``pending`` before the first one,
    ``skipped`` while SRS could not be reached: then no room is ended on a guess). In cluster
    mode ``redis`` tells whether the other nodes are reachable; it does not make the node unready.

    With several SRS origins every one is probed at once (each within the probe timeout) and
    reported in ``srs_origins``; ``srs_api`` is ``ok`` when all answer, ``degraded`` when some
    do (ready: encoders move to an origin that answers, and the down one's rooms are kept until
    it is back), ``unreachable`` when none does (not ready, as with one origin).
    """
    app = request.app
    origins = app[keys.srs_origins].clients
    database, answers = await app[keys.readiness].answer()
    up = sum(answers)
    last_ok = app[keys.reconciler].last_ok
    checks: dict[str, Any] = {
        "database": "ok" if database else "failing",
        "srs_api": "ok" if up == len(origins) else "degraded" if up else "unreachable",
        "reconcile": "pending" if last_ok is None else "ok" if last_ok else "skipped",
    }
    bus = app.get(keys.bus)
    if bus is not None:
        # reported, not required: a node without Redis still serves REST and its own members,
        # and taking every node out of the balancer at once would be worse
        checks["redis"] = "ok" if bus.healthy else "unreachable"
    # the errors name SRS's internal address: with an internal port, only there
    internal_port = app[keys.config].internal_port
    details = internal_port is None or local_port(request) == internal_port
    if len(origins) == 1:
        if not up and origins[0].last_error and details:
            checks["srs_api_error"] = origins[0].last_error
    else:
        checks["srs_origins"] = {
            client.name: "ok" if ok else "unreachable"
            for client, ok in zip(origins, answers, strict=True)
        }
        errors = {
            client.name: client.last_error
            for client, ok in zip(origins, answers, strict=True)
            if not ok and client.last_error
        }
        if errors and details:
            checks["srs_api_errors"] = errors
    ready = bool(database) and up > 0
    return json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


async def check(app: web.Application) -> tuple[bool, list[bool]]:
    """The database's and every SRS origin's answer, at once (each within its timeout); what
    :class:`~livehub.readiness.Readiness` reuses for a second."""
    origins = app[keys.srs_origins].clients
    database, *answers = await asyncio.gather(
        app[keys.store].ping(), *(probe(client) for client in origins)
    )
    return database, answers


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[keys.metrics].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
