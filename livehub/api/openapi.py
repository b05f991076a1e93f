"""The OpenAPI 3 document, generated with apispec from the same marshmallow schemas."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from livehub import __version__, keys
from livehub.api.jsonio import json_response
from livehub.api.schemas import (
    CloseResultSchema,
    ErrorSchema,
    HealthSchema,
    OwnerRoomSchema,
    RoomCreatedSchema,
    RoomCreateSchema,
    RoomListQuerySchema,
    RoomSchema,
    SRSHookReplySchema,
    SRSHookSchema,
)


def _json(schema: Any, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


ROOM_ID = {
    "in": "path",
    "name": "roomId",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
BEARER: list[dict[str, list[str]]] = [{"ownerToken": []}]


def build_spec() -> dict[str, Any]:
    spec = APISpec(
        title="livehub",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Live rooms, WebSocket signaling (see docs/protocol.md), SRS hooks"},
    )
    spec.components.security_scheme(
        "ownerToken", {"type": "http", "scheme": "bearer", "description": "owner or admin token"}
    )
    for name, schema in (
        ("Error", ErrorSchema),
        ("Room", RoomSchema),
        ("OwnerRoom", OwnerRoomSchema),
        ("RoomCreated", RoomCreatedSchema),
        ("RoomCreate", RoomCreateSchema),
        ("CloseResult", CloseResultSchema),
        ("SRSHook", SRSHookSchema),
        ("SRSHookReply", SRSHookReplySchema),
        ("Health", HealthSchema),
    ):
        spec.components.schema(name, schema=schema)
    bad = _error("Invalid input; `details` names the fields")
    spec.path(
        path="/api/rooms",
        operations={
            "get": {
                "summary": "List rooms, newest first",
                "parameters": [{"in": "query", "schema": RoomListQuerySchema}],
                "responses": {
                    "200": _json({"type": "array", "items": "Room"}, "Rooms"),
                    "400": bad,
                },
            },
            "post": {
                "summary": "Create a room; the reply alone carries the owner token",
                "requestBody": _body("RoomCreate"),
                "responses": {
                    "201": _json("RoomCreated", "The room with its secrets"),
                    "400": bad,
                    "413": _error("Body too large"),
                },
            },
        },
    )
    spec.path(
        path="/api/rooms/{roomId}",
        operations={
            "get": {
                "summary": "A room (with publish credentials for its owner's bearer token)",
                "parameters": [ROOM_ID],
                "security": [{}, *BEARER],
                "responses": {
                    "200": _json({"oneOf": ["OwnerRoom", "Room"]}, "The room"),
                    "404": _error("No such room"),
                },
            },
        },
    )
    spec.path(
        path="/api/rooms/{roomId}/close",
        operations={
            "post": {
                "summary": "End a room for good and kick its publisher",
                "parameters": [ROOM_ID],
                "security": BEARER,
                "responses": {
                    "200": _json("CloseResult", "Closed (idempotent)"),
                    "401": _error("No bearer token"),
                    "403": _error("Wrong token"),
                    "404": _error("No such room"),
                },
            },
        },
    )
    spec.path(
        path="/api/hooks/srs",
        operations={
            "post": {
                "summary": "SRS HTTP callbacks (on_publish, on_unpublish, on_play, on_stop)",
                "parameters": [
                    {
                        "in": "query",
                        "name": "secret",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": _body("SRSHook"),
                "responses": {
                    "200": _json("SRSHookReply", "code 0 allows, non-zero refuses"),
                    "400": bad,
                    "403": _error("Hook secret missing or wrong"),
                    "413": _error("Body too large"),
                },
            },
        },
    )
    spec.path(
        path="/healthz",
        operations={"get": {"summary": "Liveness", "responses": {"200": _json("Health", "Alive")}}},
    )
    spec.path(
        path="/readyz",
        operations={
            "get": {
                "summary": "Readiness: database and SRS API",
                "responses": {
                    "200": _json("Health", "Ready"),
                    "503": _json("Health", "Not ready"),
                },
            }
        },
    )
    return spec.to_dict()


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[keys.openapi])
