"""Marshmallow schemas of the webhook admin endpoints (camelCase on the wire)."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from livehub.api.schemas import QueryInteger
from livehub.webhooks.queue import DeliveryState

LIST_LIMIT_MAX = 1000
LIST_LIMIT_DEFAULT = 100
#: SQLite and PostgreSQL ids are signed 64-bit
ID_MAX = 2**63 - 1


class DeliveryListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    state = fields.Enum(DeliveryState, by_value=True, metadata={"description": "Only this state"})
    limit = QueryInteger(
        load_default=LIST_LIMIT_DEFAULT,
        validate=validate.Range(min=1, max=LIST_LIMIT_MAX),
        metadata={"description": f"At most this many (default {LIST_LIMIT_DEFAULT})"},
    )
    offset = QueryInteger(
        load_default=0,
        validate=validate.Range(min=0, max=ID_MAX),
        metadata={"description": "Skip this many first"},
    )


class DeliveryPathSchema(Schema):
    class Meta:
        unknown = RAISE

    delivery_id = QueryInteger(
        required=True, data_key="deliveryId", validate=validate.Range(min=1, max=ID_MAX)
    )


class DeliverySchema(Schema):
    """One event for one endpoint. Times are epoch milliseconds."""

    id = fields.Integer(required=True)
    webhook_id = fields.String(
        required=True,
        data_key="webhookId",
        metadata={"description": "The `webhook-id` header of every attempt"},
    )
    endpoint = fields.String(
        required=True,
        metadata={
            "description": "Scheme, host and port of the endpoint (its path may hold a token)"
        },
    )
    room_id = fields.String(required=True, data_key="roomId")
    seq = fields.Integer(
        required=True, metadata={"description": "The room's event sequence number"}
    )
    type = fields.String(required=True)
    state = fields.Enum(DeliveryState, by_value=True, required=True)
    attempts = fields.Integer(required=True)
    created_at = fields.Integer(required=True, data_key="createdAt")
    next_attempt_at = fields.Integer(
        required=True,
        allow_none=True,
        data_key="nextAttemptAt",
        metadata={"description": "When a pending delivery is tried next (null otherwise)"},
    )
    last_status = fields.Integer(required=True, allow_none=True, data_key="lastStatus")
    last_error = fields.String(required=True, allow_none=True, data_key="lastError")
    delivered_at = fields.Integer(required=True, allow_none=True, data_key="deliveredAt")
    payload = fields.Dict(required=True, metadata={"description": "The JSON body sent"})
