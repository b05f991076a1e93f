"""Webhook admin endpoints (admin bearer token): list deliveries, retry a failed one."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from livehub import keys
from livehub.api.body import bearer_token, query_params
from livehub.api.jsonio import json_response
from livehub.domain.errors import Forbidden, Unauthorized
from livehub.domain.tokens import same_token
from livehub.webhook_settings import endpoint_label
from livehub.webhooks.queue import Delivery, DeliveryQueue, DeliveryState, WebhooksDisabled
from livehub.webhooks.schemas import DeliveryListQuerySchema, DeliveryPathSchema, DeliverySchema
from livehub.webhooks.signing import message_id

_LIST_QUERY = DeliveryListQuerySchema()
_PATH = DeliveryPathSchema()
_DELIVERY = DeliverySchema()


def authorize_admin(bearer: str | None, admin_token: str | None) -> None:
    if not bearer:
        raise Unauthorized("This action needs Authorization: Bearer <admin token>")
    if admin_token and same_token(bearer, admin_token):
        return
    raise Forbidden("The token does not grant access to webhook deliveries")


def _queue(request: web.Request) -> DeliveryQueue:
    authorize_admin(bearer_token(request), request.app[keys.config].admin_token)
    queue = request.app.get(keys.webhook_queue)
    if queue is None:
        raise WebhooksDisabled()
    return queue


def view(delivery: Delivery) -> dict[str, Any]:
    data = {
        "id": delivery.id,
        "webhook_id": message_id(delivery.id),
        "endpoint": endpoint_label(delivery.endpoint),
        "room_id": delivery.room_id,
        "seq": delivery.seq,
        "type": delivery.type,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "created_at": delivery.created_at,
        "next_attempt_at": (
            delivery.next_attempt_at if delivery.state is DeliveryState.PENDING else None
        ),
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "delivered_at": delivery.delivered_at,
        "payload": orjson.loads(delivery.body),
    }
    dumped: dict[str, Any] = _DELIVERY.dump(data)
    return dumped


async def list_deliveries(request: web.Request) -> web.Response:
    queue = _queue(request)
    query = _LIST_QUERY.load(query_params(request))
    rows = await queue.list(query.get("state"), query["limit"], query["offset"])
    return json_response([view(row) for row in rows])


async def retry_delivery(request: web.Request) -> web.Response:
    queue = _queue(request)
    delivery_id = _PATH.load({"deliveryId": request.match_info["delivery_id"]})["delivery_id"]
    dispatcher = request.app[keys.webhook_dispatcher]
    delivery = await queue.retry(delivery_id, dispatcher.now_ms())
    dispatcher.wake()
    return json_response(view(delivery))
