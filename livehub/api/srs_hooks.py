"""SRS HTTP callbacks: one endpoint for every action, authenticated by a shared secret that
srs.conf carries in the hook URL's query. Allow is HTTP 200 ``{"code": 0}``; refuse is HTTP 200
with a non-zero code (SRS refuses on either). End events are always acknowledged."""

from __future__ import annotations

import hmac
import logging
import time

from aiohttp import web

from livehub import keys
from livehub.api.body import read_json
from livehub.api.jsonio import json_response
from livehub.api.middlewares import error_response
from livehub.api.schemas import SRSHeartbeatSchema, SRSHookSchema
from livehub.domain.srs_params import HookEvent

log = logging.getLogger(__name__)

REFUSED = 1  # any non-zero code refuses the client
UNPARSED = "-"  # the action label of hooks refused before their body was read
_HOOK = SRSHookSchema()
_HEARTBEAT = SRSHeartbeatSchema()


def _authorized(request: web.Request) -> bool:
    given = request.query.get("secret", "")
    expected = request.app[keys.config].hook_secret
    return hmac.compare_digest(given.encode(), expected.encode())


async def srs_hook(request: web.Request) -> web.Response:
    metrics = request.app[keys.metrics]
    if not _authorized(request):
        metrics.hooks.labels(UNPARSED, "unauthorized").inc()
        return error_response(403, "bad_hook_secret", "Hook secret missing or wrong")
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
    result = await app[keys.stage].handle_hook(event)  # the rooms', or a guest stream's
    if result.srs_restarted:
        log.warning("SRS restarted (service id changed): reconciling")
        app[keys.reconciler].trigger()
    metrics.hooks.labels(event.action, result.outcome).inc()
    metrics.hook_seconds.labels(event.action).observe(time.perf_counter() - started)
    room_id = result.room.id if result.room else "-"
    if result.allowed:
        log.info("%s client=%s room=%s: %s", event.action, event.client_id, room_id, result.outcome)
        return json_response({"code": 0})
    log.info("%s client=%s refused: %s", event.action, event.client_id, result.reason)
    return json_response({"code": REFUSED, "msg": result.reason})


async def srs_heartbeat(request: web.Request) -> web.Response:
    """SRS's heartbeat: a changed ``service`` means SRS restarted.

    SRS drops the heartbeat URL's query, so it cannot carry the secret. It is safe unsigned:
    all it can do is make livehub ask SRS's own API for the truth sooner, and at most once
    per :data:`livehub.reconcile.UNSIGNED_TRIGGER_INTERVAL` seconds however often it is sent.
    """
    data = _HEARTBEAT.load(await read_json(request, strict_content_type=False))
    app = request.app
    restarted = app[keys.rooms].service_changed(data["service"], data["server"])
    if restarted and app[keys.reconciler].trigger_unsigned():
        log.warning("SRS restarted (heartbeat service id changed): reconciling")
    return json_response({"code": 0})
