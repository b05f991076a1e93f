"""SRS HTTP callbacks: one endpoint for every action, authenticated by a shared secret that
srs.conf carries in the hook URL's query. Allow is HTTP 200 ``{"code": 0}``; refuse is HTTP 200
with a non-zero code (SRS refuses on either). End events are always acknowledged.

SRS's heartbeat carries the same secret as the last segment of its path (SRS drops the query
of the heartbeat URL). A hook or heartbeat without the secret is refused with 403. During a
rotation (``LIVEHUB_HOOK_SECRET=new,old``) any of the secrets is accepted."""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from livehub import keys
from livehub.api.body import read_json
from livehub.api.jsonio import json_response
from livehub.api.middlewares import error_response
from livehub.api.schemas import SRSHeartbeatSchema, SRSHookSchema
from livehub.domain.srs_params import HookEvent
from livehub.domain.tokens import same_token

log = logging.getLogger(__name__)

REFUSED = 1  # any non-zero code refuses the client
UNPARSED = "-"  # the action label of hooks refused before their body was read
_HOOK = SRSHookSchema()
_HEARTBEAT = SRSHeartbeatSchema()


def _authorized(request: web.Request, given: str) -> bool:
    """``given`` is one of the hook secrets (``new,old`` during a rotation): compared with
    each of them in constant time, every one of them every time, so neither the time taken nor
    an early exit tells which one matched, or how far a guess got."""
    authorized = False
    for expected in request.app[keys.config].hook_secrets:
        authorized |= same_token(given, expected)
    return authorized


def _refused() -> web.Response:
    return error_response(403, "bad_hook_secret", "Hook secret missing or wrong")


async def srs_hook(request: web.Request) -> web.Response:
    metrics = request.app[keys.metrics]
    if not _authorized(request, request.query.get("secret", "")):
        metrics.hooks.labels(UNPARSED, "unauthorized").inc()
        return _refused()
    started = time.perf_counter()
    try:
        data = _HOOK.load(await read_json(request, strict_content_type=False))
    except Exception:  # rendered by the error middleware; counted here
        metrics.hooks.labels(UNPARSED, "invalid").inc()
        raise
    event = HookEvent(
        action=data["action"],
        client_id=data["client_id"],
        app=data["app"],
        stream=data["stream"],
        param=data["param"],
        stream_url=data["stream_url"],
        service_id=data["service_id"],
        server_id=data["server_id"],
    )
    app = request.app
    if event.action == "on_dvr":
        return await _on_dvr(request, data, started)
    result = await app[keys.stage].handle_hook(event)  # the rooms', or a guest stream's
    if result.srs_restarted and app[keys.reconciler].trigger(event.server_id):
        log.warning("SRS restarted (service id changed): reconciling")
    metrics.hooks.labels(event.action, result.outcome).inc()
    metrics.hook_seconds.labels(event.action).observe(time.perf_counter() - started)
    room_id = result.room.id if result.room else "-"
    if result.allowed:
        log.info("%s client=%s room=%s: %s", event.action, event.client_id, room_id, result.outcome)
        return json_response({"code": 0})
    log.info("%s client=%s refused: %s", event.action, event.client_id, result.reason)
    return json_response({"code": REFUSED, "msg": result.reason})


async def _on_dvr(request: web.Request, data: dict[str, Any], started: float) -> web.Response:
    """A DVR file is complete: kept as a recording, deleted, or (a path outside the
    recordings directory) refused and left alone. SRS acts on no ``on_dvr`` reply: it only
    logs one that is not ``code: 0``, with the hook URL and so the secret in it, at WARN. So
    every outcome is acknowledged; a refusal is said in livehub's log and metrics instead."""
    metrics = request.app[keys.metrics]
    outcome = await request.app[keys.recordings].on_dvr(
        app=data["app"],
        stream=data["stream"],
        stream_url=data["stream_url"],
        cwd=data["cwd"],
        file=data["file"],
    )
    metrics.hooks.labels("on_dvr", outcome.outcome).inc()
    metrics.hook_seconds.labels("on_dvr").observe(time.perf_counter() - started)
    if outcome.outcome == "refused":
        log.warning("on_dvr client=%s refused: %s", data["client_id"], outcome.reason)
    return json_response({"code": 0})


async def srs_heartbeat(request: web.Request) -> web.Response:
    """SRS's heartbeat, signed by the secret in its path: a changed ``service`` means SRS
    restarted (a pass at most once per origin per throttle interval, see
    :mod:`livehub.reconcile`)."""
    metrics = request.app[keys.metrics]
    if not _authorized(request, request.match_info["secret"]):
        metrics.hooks.labels("heartbeat", "unauthorized").inc()
        return _refused()
    try:
        data = _HEARTBEAT.load(await read_json(request, strict_content_type=False))
    except Exception:  # rendered by the error middleware; counted here
        metrics.hooks.labels("heartbeat", "invalid").inc()
        raise
    if request.app[keys.reconciler].heartbeat(data["server"], data["service"]):
        log.warning("SRS restarted (heartbeat service id changed): reconciling")
    metrics.hooks.labels("heartbeat", "accepted").inc()
    return json_response({"code": 0})


async def unsigned_heartbeat(request: web.Request) -> web.Response:
    """The heartbeat path without its secret (an srs.conf from before it was signed)."""
    global _unsigned_seen
    request.app[keys.metrics].hooks.labels("heartbeat", "unauthorized").inc()
    log.log(  # once: anyone can post here, and the log is not theirs to fill
        logging.DEBUG if _unsigned_seen else logging.WARNING,
        "unsigned SRS heartbeat refused: srs.conf's heartbeat url must end in "
        "/api/hooks/srs/heartbeat/<LIVEHUB_HOOK_SECRET>",
    )
    _unsigned_seen = True
    return _refused()


_unsigned_seen = False
